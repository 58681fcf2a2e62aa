import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import argon2 from 'argon2';
import { eq, sql } from 'drizzle-orm';
import { print } from 'graphql';
import { base64url, decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT } from 'jose';
import { tables } from '../src/db/index';
import { sha256 } from '../src/lib/secrets';
import {
  ChangePasswordDocument,
  LoginDocument,
  LogoutDocument,
  MeDocument,
  RefreshTokenDocument,
  RegisterDocument,
  RevokeSessionDocument,
  SessionsDocument,
  type RegisterInput,
} from './generated/graphql';
import { expectCode, expectData, OTHER_STRONG_PASSWORD, startApp, STRONG_PASSWORD, testClock, uniqueEmail, type TestApp } from './helpers/harness';

type Tokens = { accessToken: string; refreshToken: string; userId: string };

async function register(t: TestApp, input: Partial<RegisterInput> = {}): Promise<Tokens> {
  const r = expectData(await t.gql(RegisterDocument, { input: { email: uniqueEmail(), password: STRONG_PASSWORD, ...input } }));
  return { accessToken: r.register.accessToken, refreshToken: r.register.refreshToken, userId: r.register.user.id };
}

async function login(t: TestApp, loginName: string, password = STRONG_PASSWORD): Promise<Tokens> {
  const r = expectData(await t.gql(LoginDocument, { input: { login: loginName, password } }));
  return { accessToken: r.login.accessToken, refreshToken: r.login.refreshToken, userId: r.login.user.id };
}

const sessionIdOf = (accessToken: string) => decodeJwt(accessToken).sid as string;

async function userRow(t: TestApp, id: string) {
  const [row] = await t.app.db.db.select().from(tables.users).where(eq(tables.users.id, id));
  return row!;
}

async function userCount(t: TestApp) {
  return (await t.app.db.db.select({ id: tables.users.id }).from(tables.users)).length;
}

// Sign-up validation. Every accepted-for-checking register spends the per-IP sign-up budget
// (20 an hour), so this app registers few users.
describe('register', () => {
  let t: TestApp;
  before(async () => {
    t = await startApp();
  });
  after(() => t.stop());

  test('register creates an account with a lower-cased email when only an email is given', async () => {
    const email = uniqueEmail('Mixed').replace('Mixed', 'MiXeD');
    const r = expectData(await t.gql(RegisterDocument, { input: { email: `  ${email.toUpperCase()} `, password: STRONG_PASSWORD } }));
    assert.equal(r.register.user.email, email.toLowerCase());
    assert.equal(r.register.user.phone, null);
    assert.equal(r.register.user.totpEnabled, false);
    assert.ok(r.register.accessToken && r.register.refreshToken);
  });

  test('register stores the phone in E.164 when it is spelled with spaces', async () => {
    const r = expectData(await t.gql(RegisterDocument, { input: { phone: '+1 415 555 0123', password: STRONG_PASSWORD } }));
    assert.equal(r.register.user.phone, '+14155550123');
    assert.equal(r.register.user.email, null);
  });

  test('register keeps both when an email and a phone are given', async () => {
    const email = uniqueEmail();
    const r = expectData(await t.gql(RegisterDocument, { input: { email, phone: '+44 20 7946 0958', password: STRONG_PASSWORD, displayName: 'Bea' } }));
    assert.equal(r.register.user.email, email);
    assert.equal(r.register.user.phone, '+442079460958');
    assert.equal(r.register.user.displayName, 'Bea');
  });

  test('register is BAD_USER_INPUT and creates nothing when neither email nor phone is given', async () => {
    const before = await userCount(t);
    expectCode(await t.gql(RegisterDocument, { input: { password: STRONG_PASSWORD } }), 'BAD_USER_INPUT');
    expectCode(await t.gql(RegisterDocument, { input: { email: null, phone: null, password: STRONG_PASSWORD } }), 'BAD_USER_INPUT');
    assert.equal(await userCount(t), before);
  });

  test('register is BAD_USER_INPUT when the email is malformed', async () => {
    for (const email of ['not-an-email', 'a@', '@example.com', 'a b@example.com', `${'x'.repeat(250)}@example.com`]) {
      expectCode(await t.gql(RegisterDocument, { input: { email, password: STRONG_PASSWORD } }), 'BAD_USER_INPUT');
    }
  });

  test('register is BAD_USER_INPUT when the phone is malformed or not international', async () => {
    for (const phone of ['4155550123', '+1 415 555 01234', '+999 123', 'call me', '+1'.padEnd(40, '5')]) {
      expectCode(await t.gql(RegisterDocument, { input: { phone, password: STRONG_PASSWORD } }), 'BAD_USER_INPUT');
    }
  });

  test('register is refused with 413 and a BAD_USER_INPUT body when an argument is 10 MB', async () => {
    const before = await userCount(t);
    const res = await t.gql(RegisterDocument, { input: { email: uniqueEmail(), password: 'x'.repeat(10 * 1024 * 1024) } });
    assert.equal(res.status, 413);
    expectCode(res, 'BAD_USER_INPUT');
    assert.equal(await userCount(t), before);
  });

  test('register is BAD_USER_INPUT when the password is 200 KB', async () => {
    const before = await userCount(t);
    expectCode(await t.gql(RegisterDocument, { input: { email: uniqueEmail(), password: 'Aa1-'.repeat(50 * 1024) } }), 'BAD_USER_INPUT');
    assert.equal(await userCount(t), before);
  });

  test('register is BAD_USER_INPUT when arguments have the wrong types', async () => {
    const wrong = [
      { email: uniqueEmail(), password: 12345678 },
      { email: ['a@example.com'], password: STRONG_PASSWORD },
      { email: uniqueEmail(), password: { value: STRONG_PASSWORD } },
      { email: uniqueEmail() },
      'not an object',
    ];
    for (const input of wrong) {
      expectCode(await t.gql(RegisterDocument, { input: input as unknown as RegisterInput }), 'BAD_USER_INPUT');
    }
  });

  test('register is BAD_USER_INPUT without naming the field when the email or the phone is taken', async () => {
    const email = uniqueEmail();
    const phone = '+1 212 555 0199';
    await register(t, { email, phone });
    const byEmail = expectCode(await t.gql(RegisterDocument, { input: { email: email.toUpperCase(), password: STRONG_PASSWORD } }), 'BAD_USER_INPUT');
    const byPhone = expectCode(await t.gql(RegisterDocument, { input: { phone: '+12125550199', password: STRONG_PASSWORD } }), 'BAD_USER_INPUT');
    assert.equal(byEmail.message, byPhone.message, 'a taken email and a taken phone must read the same');
    assert.ok(!byEmail.message.toLowerCase().includes(email.toLowerCase()) && !byPhone.message.includes('5550199'));
    assert.doesNotMatch(byEmail.message, /already|exists|registered/i);
    const rows = await t.app.db.db.select().from(tables.users).where(eq(tables.users.email, email));
    assert.equal(rows.length, 1);
  });

  test('register is WEAK_PASSWORD saying why when the password breaks the policy', async () => {
    const email = 'marigold.walker@example.net';
    const cases: Array<[Partial<RegisterInput>, RegExp]> = [
      [{ email: uniqueEmail(), password: 'Qz7!kp2' }, /at least 8/],
      [{ email: uniqueEmail(), password: 'password123' }, /common|guess/i],
      [{ email: uniqueEmail(), password: 'P@ssw0rd2024' }, /common|guess/i],
      [{ email, password: 'Marigold.Walker-Quartz-71' }, /email/i],
      [{ phone: '+1 650 253 0000', password: 'Quartz-6502530000-Violet' }, /phone/i],
      [{ email: uniqueEmail(), password: `${STRONG_PASSWORD}-${'Zebra-Lamp-'.repeat(10)}` }, /at most 128/],
    ];
    for (const [input, why] of cases) {
      const err = expectCode(await t.gql(RegisterDocument, { input: { password: '', ...input } as RegisterInput }), 'WEAK_PASSWORD');
      assert.match(err.message, why, `for ${input.password}`);
    }
    const rows = await t.app.db.db.select().from(tables.users).where(eq(tables.users.email, email));
    assert.equal(rows.length, 0);
  });
});

describe('login, tokens and sessions', () => {
  let t: TestApp;
  const clock = testClock();
  before(async () => {
    t = await startApp({ clock: clock.now });
  });
  after(() => t.stop());

  test('login succeeds when the email is given in another case or the phone in another spelling', async () => {
    const email = uniqueEmail();
    const reg = await register(t, { email, phone: '+1 415 555 2671' });
    assert.equal((await login(t, `  ${email.toUpperCase()}`)).userId, reg.userId);
    const byPhone = await login(t, '+1 (415) 555-2671');
    assert.equal(byPhone.userId, reg.userId);
    assert.equal(expectData(await t.gql(MeDocument, {}, { token: byPhone.accessToken })).me.id, reg.userId);
  });

  test('login is INVALID_CREDENTIALS with the same message when the login is unknown or the password wrong', async () => {
    const email = uniqueEmail();
    await register(t, { email });
    const wrongPassword = expectCode(await t.gql(LoginDocument, { input: { login: email, password: OTHER_STRONG_PASSWORD } }), 'INVALID_CREDENTIALS');
    const unknown = expectCode(await t.gql(LoginDocument, { input: { login: uniqueEmail(), password: STRONG_PASSWORD } }), 'INVALID_CREDENTIALS');
    const unknownPhone = expectCode(await t.gql(LoginDocument, { input: { login: '+49 30 901820', password: STRONG_PASSWORD } }), 'INVALID_CREDENTIALS');
    assert.equal(wrongPassword.message, unknown.message);
    assert.equal(unknown.message, unknownPhone.message);
  });

  test('login is BAD_USER_INPUT when the login is neither an email nor a phone', async () => {
    expectCode(await t.gql(LoginDocument, { input: { login: 'bob', password: STRONG_PASSWORD } }), 'BAD_USER_INPUT');
    expectCode(await t.gql(LoginDocument, { input: { login: '', password: STRONG_PASSWORD } }), 'BAD_USER_INPUT');
  });

  test('login rehashes the password with argon2id at OWASP parameters when the stored hash is weaker', async () => {
    const email = uniqueEmail();
    const { userId } = await register(t, { email });
    const weak = [
      await argon2.hash(STRONG_PASSWORD, { type: argon2.argon2id, memoryCost: 4096, timeCost: 1, parallelism: 1 }),
      await argon2.hash(STRONG_PASSWORD, { type: argon2.argon2i, memoryCost: 19456, timeCost: 2, parallelism: 1 }),
    ];
    for (const hash of weak) {
      await t.app.db.db.update(tables.users).set({ passwordHash: hash }).where(eq(tables.users.id, userId));
      await login(t, email);
      const stored = (await userRow(t, userId)).passwordHash;
      const [, variant, , params] = stored.split('$');
      assert.equal(variant, 'argon2id');
      assert.deepEqual(Object.fromEntries(params!.split(',').map((kv) => kv.split('='))), { m: '19456', t: '2', p: '1' });
      assert.ok(await argon2.verify(stored, STRONG_PASSWORD));
    }
  });

  test('login stores the session with its client and lifetime, and only a hash of the refresh token', async () => {
    const email = uniqueEmail();
    await register(t, { email });
    const before = clock.now().getTime();
    const r = expectData(await t.gql(LoginDocument, { input: { login: email, password: STRONG_PASSWORD } }, { headers: { 'user-agent': `UA-${'x'.repeat(400)}` } })).login;
    const sessionId = sessionIdOf(r.accessToken);
    const [session] = await t.app.db.db.select().from(tables.sessions).where(eq(tables.sessions.id, sessionId));
    assert.ok(session, 'the access token names a stored session');
    assert.equal(session.userId, r.user.id);
    assert.equal(session.userAgent, `UA-${'x'.repeat(297)}`);
    assert.equal(session.ip, '127.0.0.1');
    assert.equal(session.revokedAt, null);
    assert.ok(session.createdAt.getTime() >= before - 1000 && session.createdAt.getTime() <= clock.now().getTime());
    assert.ok(Math.abs(session.lastUsedAt.getTime() - session.createdAt.getTime()) < 1000);
    assert.ok(Math.abs(session.expiresAt.getTime() - session.createdAt.getTime() - 30 * 24 * 3600 * 1000) < 1000);
    const tokens = await t.app.db.db.select().from(tables.refreshTokens).where(eq(tables.refreshTokens.sessionId, sessionId));
    assert.deepEqual(
      tokens.map((row) => ({ tokenHash: row.tokenHash, usedAt: row.usedAt })),
      [{ tokenHash: sha256(r.refreshToken), usedAt: null }],
    );
  });

  test('login leaves no session behind and answers INTERNAL when its refresh token cannot be stored', async () => {
    const email = uniqueEmail();
    const { userId } = await register(t, { email });
    const db = t.app.db.db;
    await db.execute(sql`create function refuse_refresh_token() returns trigger language plpgsql as $$ begin raise exception 'refused by the test'; end $$`);
    await db.execute(sql`create trigger refuse_refresh_token before insert on refresh_tokens for each row execute function refuse_refresh_token()`);
    try {
      const res = await fetch(`${t.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: print(LoginDocument), variables: { input: { login: email, password: STRONG_PASSWORD } } }),
      });
      const body = (await res.json()) as { data?: unknown; errors?: Array<{ extensions?: { code?: string } }> };
      assert.equal(body.errors?.[0]?.extensions?.code, 'INTERNAL');
    } finally {
      await db.execute(sql`drop trigger refuse_refresh_token on refresh_tokens`);
      await db.execute(sql`drop function refuse_refresh_token()`);
    }
    const sessions = await db.select({ id: tables.sessions.id }).from(tables.sessions).where(eq(tables.sessions.userId, userId));
    assert.equal(sessions.length, 1, 'only the session register opened');
  });

  test('refreshToken rotates, and revokes the whole session when a used refresh token comes back', async () => {
    const email = uniqueEmail();
    const first = await register(t, { email });
    const r2 = expectData(await t.gql(RefreshTokenDocument, { refreshToken: first.refreshToken })).refreshToken;
    assert.notEqual(r2.refreshToken, first.refreshToken);
    assert.equal(sessionIdOf(r2.accessToken), sessionIdOf(first.accessToken));
    expectData(await t.gql(MeDocument, {}, { token: r2.accessToken }));

    // The thief replays the first token: refused, and the legitimate holder's tokens die with it.
    expectCode(await t.gql(RefreshTokenDocument, { refreshToken: first.refreshToken }), 'UNAUTHENTICATED');
    expectCode(await t.gql(RefreshTokenDocument, { refreshToken: r2.refreshToken }), 'UNAUTHENTICATED');
    expectCode(await t.gql(MeDocument, {}, { token: r2.accessToken }), 'UNAUTHENTICATED');
    expectCode(await t.gql(MeDocument, {}, { token: first.accessToken }), 'UNAUTHENTICATED');
    // Other sessions of the account are not touched.
    await login(t, email);
  });

  test('refreshToken accepts each new refresh token exactly once when refreshing in a chain', async () => {
    const s = await register(t);
    let token = s.refreshToken;
    for (let i = 0; i < 3; i++) {
      const next = expectData(await t.gql(RefreshTokenDocument, { refreshToken: token })).refreshToken;
      expectData(await t.gql(MeDocument, {}, { token: next.accessToken }));
      token = next.refreshToken;
    }
  });

  test('refreshToken is UNAUTHENTICATED when the token is unknown or malformed', async () => {
    expectCode(await t.gql(RefreshTokenDocument, { refreshToken: 'nope' }), 'UNAUTHENTICATED');
    expectCode(await t.gql(RefreshTokenDocument, { refreshToken: '' }), 'BAD_USER_INPUT');
    expectCode(await t.gql(RefreshTokenDocument, { refreshToken: 'x'.repeat(5000) }), 'BAD_USER_INPUT');
  });

  test('logout ends the session at once when called with its refresh token', async () => {
    const s = await register(t);
    expectData(await t.gql(MeDocument, {}, { token: s.accessToken }));
    assert.equal(expectData(await t.gql(LogoutDocument, { refreshToken: s.refreshToken })).logout, true);
    expectCode(await t.gql(MeDocument, {}, { token: s.accessToken }), 'UNAUTHENTICATED');
    expectCode(await t.gql(RefreshTokenDocument, { refreshToken: s.refreshToken }), 'UNAUTHENTICATED');
  });

  test('logout answers true without revealing anything when the refresh token is unknown', async () => {
    assert.equal(expectData(await t.gql(LogoutDocument, { refreshToken: 'never-issued' })).logout, true);
  });

  test('sessions lists the open sessions and flags the current one when the user is signed in twice', async () => {
    const email = uniqueEmail();
    const a = await register(t, { email });
    const b = await login(t, email);
    const list = expectData(await t.gql(SessionsDocument, {}, { token: a.accessToken })).sessions;
    assert.deepEqual(list.map((s) => s.id).sort(), [sessionIdOf(a.accessToken), sessionIdOf(b.accessToken)].sort());
    assert.deepEqual(
      list.filter((s) => s.current).map((s) => s.id),
      [sessionIdOf(a.accessToken)],
    );
    assert.ok(list.every((s) => s.ip && s.createdAt && s.lastUsedAt));
    expectCode(await t.gql(SessionsDocument, {}), 'UNAUTHENTICATED');
  });

  test('revokeSession ends another own session at once when given its id', async () => {
    const email = uniqueEmail();
    const a = await register(t, { email });
    const b = await login(t, email);
    expectData(await t.gql(MeDocument, {}, { token: b.accessToken }));
    assert.equal(expectData(await t.gql(RevokeSessionDocument, { id: sessionIdOf(b.accessToken) }, { token: a.accessToken })).revokeSession, true);
    expectCode(await t.gql(MeDocument, {}, { token: b.accessToken }), 'UNAUTHENTICATED');
    expectCode(await t.gql(RefreshTokenDocument, { refreshToken: b.refreshToken }), 'UNAUTHENTICATED');
    const list = expectData(await t.gql(SessionsDocument, {}, { token: a.accessToken })).sessions;
    assert.deepEqual(
      list.map((s) => s.id),
      [sessionIdOf(a.accessToken)],
    );
    // A second revoke of the same session finds nothing open.
    expectCode(await t.gql(RevokeSessionDocument, { id: sessionIdOf(b.accessToken) }, { token: a.accessToken }), 'NOT_FOUND');
  });

  test("revokeSession is NOT_FOUND and changes nothing when the session is another user's or the id is junk", async () => {
    const mine = await register(t);
    const theirs = await register(t);
    expectCode(await t.gql(RevokeSessionDocument, { id: sessionIdOf(theirs.accessToken) }, { token: mine.accessToken }), 'NOT_FOUND');
    expectCode(await t.gql(RevokeSessionDocument, { id: 'not-a-uuid' }, { token: mine.accessToken }), 'NOT_FOUND');
    expectCode(await t.gql(RevokeSessionDocument, { id: '00000000-0000-4000-8000-000000000000' }, { token: mine.accessToken }), 'NOT_FOUND');
    expectData(await t.gql(MeDocument, {}, { token: theirs.accessToken }));
  });

  test('changePassword is INVALID_CREDENTIALS when the current password is wrong', async () => {
    const email = uniqueEmail();
    const s = await register(t, { email });
    expectCode(
      await t.gql(ChangePasswordDocument, { currentPassword: OTHER_STRONG_PASSWORD, newPassword: 'Amber-Falcon-Rivet-52' }, { token: s.accessToken }),
      'INVALID_CREDENTIALS',
    );
    await login(t, email, STRONG_PASSWORD);
  });

  test('changePassword is WEAK_PASSWORD saying why when the new password breaks the policy', async () => {
    const email = uniqueEmail('ferdinand');
    const s = await register(t, { email });
    const short = expectCode(await t.gql(ChangePasswordDocument, { currentPassword: STRONG_PASSWORD, newPassword: 'short' }, { token: s.accessToken }), 'WEAK_PASSWORD');
    assert.match(short.message, /at least 8/);
    const mail = expectCode(
      await t.gql(ChangePasswordDocument, { currentPassword: STRONG_PASSWORD, newPassword: `${email.split('@')[0]}-Quartz-9` }, { token: s.accessToken }),
      'WEAK_PASSWORD',
    );
    assert.match(mail.message, /email/i);
    await login(t, email, STRONG_PASSWORD);
  });

  test('changePassword revokes the other sessions and keeps the current one when it succeeds', async () => {
    const email = uniqueEmail();
    const current = await register(t, { email });
    const other = await login(t, email);
    assert.equal(
      expectData(await t.gql(ChangePasswordDocument, { currentPassword: STRONG_PASSWORD, newPassword: OTHER_STRONG_PASSWORD }, { token: current.accessToken })).changePassword,
      true,
    );
    expectData(await t.gql(MeDocument, {}, { token: current.accessToken }));
    expectData(await t.gql(RefreshTokenDocument, { refreshToken: current.refreshToken }));
    expectCode(await t.gql(MeDocument, {}, { token: other.accessToken }), 'UNAUTHENTICATED');
    expectCode(await t.gql(RefreshTokenDocument, { refreshToken: other.refreshToken }), 'UNAUTHENTICATED');
    expectCode(await t.gql(LoginDocument, { input: { login: email, password: STRONG_PASSWORD } }), 'INVALID_CREDENTIALS');
    await login(t, email, OTHER_STRONG_PASSWORD);
  });

  test('changePassword is UNAUTHENTICATED when no token is sent', async () => {
    expectCode(await t.gql(ChangePasswordDocument, { currentPassword: STRONG_PASSWORD, newPassword: OTHER_STRONG_PASSWORD }), 'UNAUTHENTICATED');
  });

  test('access tokens carry kid, iss, aud, sub, jti and expire within 15 minutes when issued', async () => {
    const a = await register(t);
    const b = await login(t, (await userRow(t, a.userId)).email!);
    const header = decodeProtectedHeader(a.accessToken);
    assert.equal(header.alg, 'EdDSA');
    assert.equal(typeof header.kid, 'string');
    assert.ok(header.kid!.length > 10);
    const claims = decodeJwt(a.accessToken);
    assert.equal(claims.iss, 'vigil');
    assert.equal(claims.aud, 'vigil-api');
    assert.equal(claims.sub, a.userId);
    assert.equal(typeof claims.jti, 'string');
    assert.notEqual(claims.jti, decodeJwt(b.accessToken).jti);
    const nowS = Math.floor(clock.now().getTime() / 1000);
    assert.ok(claims.exp! - claims.iat! <= 15 * 60, 'lifetime <= 15 min');
    assert.ok(claims.exp! > nowS && claims.exp! <= nowS + 15 * 60 + 1);
  });

  test('an access token is UNAUTHENTICATED when it is signed with another key, alg none or HS256', async () => {
    const s = await register(t);
    const header = decodeProtectedHeader(s.accessToken);
    const claims = decodeJwt(s.accessToken);
    const stranger = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const forged = [
      await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: header.kid, typ: 'JWT' }).sign(stranger.privateKey),
      `${base64url.encode(JSON.stringify({ alg: 'none', kid: header.kid, typ: 'JWT' }))}.${base64url.encode(JSON.stringify(claims))}.`,
      await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: header.kid, typ: 'JWT' }).sign(new TextEncoder().encode(header.kid!.padEnd(32, 'k'))),
      // The genuine signature over a tampered payload.
      `${s.accessToken.split('.')[0]}.${base64url.encode(JSON.stringify({ ...claims, exp: claims.exp! + 86400 }))}.${s.accessToken.split('.')[2]}`,
    ];
    for (const token of forged) expectCode(await t.gql(MeDocument, {}, { token }), 'UNAUTHENTICATED');
    expectData(await t.gql(MeDocument, {}, { token: s.accessToken }));
  });

  test('an access token is UNAUTHENTICATED when 16 minutes have passed, and refresh still works', async () => {
    const s = await register(t);
    expectData(await t.gql(MeDocument, {}, { token: s.accessToken }));
    clock.advance(16 * 60 * 1000);
    expectCode(await t.gql(MeDocument, {}, { token: s.accessToken }), 'UNAUTHENTICATED');
    const fresh = expectData(await t.gql(RefreshTokenDocument, { refreshToken: s.refreshToken })).refreshToken;
    expectData(await t.gql(MeDocument, {}, { token: fresh.accessToken }));
  });
});
