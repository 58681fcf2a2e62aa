import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { accessTokenSigner, loadSigningKey } from '../src/accounts/access-tokens';

/** A signer on a clock the test moves by hand. */
async function signerAt(startMs: number, verifiedCacheSize?: number) {
  let nowMs = startMs;
  const signer = accessTokenSigner(await loadSigningKey(undefined, ':memory:'), 600, () => new Date(nowMs), { verifiedCacheSize });
  return { signer, setNow: (ms: number) => void (nowMs = ms) };
}

const flip = (c: string) => (c === 'A' ? 'B' : 'A');

describe('access token verification with the memory of verified tokens', () => {
  test('a token verified before is refused from the second its lifetime ends, as jose refuses it', async () => {
    const start = Date.parse('2026-12-01T10:00:00.000Z');
    const { signer, setNow } = await signerAt(start);
    const userId = randomUUID();
    const sessionId = randomUUID();
    const { token, expiresAt } = await signer.sign(userId, sessionId);
    const claims = await signer.verify(token);
    assert.equal(claims?.userId, userId);
    assert.equal(claims?.sessionId, sessionId);
    setNow(expiresAt.getTime() - 1);
    assert.equal((await signer.verify(token))?.sessionId, sessionId);
    setNow(expiresAt.getTime());
    assert.equal(await signer.verify(token), null);
    // Without the memory, the same answers.
    const fresh = await signerAt(start, 0);
    const other = await fresh.signer.sign(userId, sessionId);
    fresh.setNow(other.expiresAt.getTime() - 1);
    assert.equal((await fresh.signer.verify(other.token))?.sessionId, sessionId);
    fresh.setNow(other.expiresAt.getTime());
    assert.equal(await fresh.signer.verify(other.token), null);
  });

  test('a token that differs in any part from one verified before is refused when its signature does not check out', async () => {
    const { signer } = await signerAt(Date.now());
    const { token } = await signer.sign(randomUUID(), randomUUID());
    assert.ok(await signer.verify(token));
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const tampered = [
      `${header}.${payload}.${signature.slice(0, 10)}${flip(signature[10]!)}${signature.slice(11)}`,
      `${header}.${payload.slice(0, 10)}${flip(payload[10]!)}${payload.slice(11)}.${signature}`,
      `${header}.${payload}.`,
    ];
    for (const t of tampered) assert.equal(await signer.verify(t), null, t);
    assert.ok(await signer.verify(token));
  });

  test('a token signed with another key is refused when a token of the same claims was verified before', async () => {
    const { signer } = await signerAt(Date.now());
    const { signer: stranger } = await signerAt(Date.now());
    const userId = randomUUID();
    const sessionId = randomUUID();
    assert.ok(await signer.verify((await signer.sign(userId, sessionId)).token));
    assert.equal(await signer.verify((await stranger.sign(userId, sessionId)).token), null);
  });

  test('a token the memory has dropped (over its bound) verifies again when sent', async () => {
    const { signer } = await signerAt(Date.now(), 2);
    const tokens = await Promise.all([1, 2, 3].map(async () => (await signer.sign(randomUUID(), randomUUID())).token));
    for (const t of tokens) assert.ok(await signer.verify(t));
    for (const t of tokens) assert.ok(await signer.verify(t));
  });
});
