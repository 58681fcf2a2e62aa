import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { tables } from '../src/db/index';
import { MeDocument, RefreshTokenDocument, RequestResetDocument } from './generated/graphql';
import { expectCode, expectData, OTHER_STRONG_PASSWORD, startApp, STRONG_PASSWORD, testClock, uniqueEmail, waitFor, type TestApp } from './helpers/harness';
import { startSmsCatcher, startSmtpCatcher, type SmsCatcher, type SmtpCatcher } from './helpers/mail-catchers';
import { confirm, loginWith, PUBLIC_URL, register, resetReader, sha256, THIRD_STRONG_PASSWORD } from './helpers/reset';

let phoneCounter = randomInt(0, 8000);
/** A valid E.164 number from the fictional 555 exchange, unique within this file (each file has its own database). */
const uniquePhone = () => `+1201555${String(1000 + phoneCounter++)}`;

let mail: SmtpCatcher;
let sms: SmsCatcher;
let t: TestApp;
const clock = testClock();

before(async () => {
  [mail, sms] = await Promise.all([startSmtpCatcher(), startSmsCatcher()]);
  t = await startApp({
    clock: clock.now,
    // Limits are tested on apps of their own below; this one must not trip over them.
    env: { SMTP_URL: mail.url, SMS_WEBHOOK_URL: sms.url, PUBLIC_URL, RESET_MAX_PER_LOGIN: '1000', RESET_MAX_PER_IP: '100000' },
  });
});
after(async () => {
  await t?.stop();
  await Promise.all([mail?.stop(), sms?.stop()]);
});

const requestAndRead = resetReader(() => ({ mail, sms }));

/** Raw POST, so answers can be compared byte for byte. */
async function rawRequestReset(login: string): Promise<{ body: string }> {
  const res = await fetch(`${t.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: REQUEST_RESET_QUERY, variables: { login } }),
  });
  return { body: await res.text() };
}

const REQUEST_RESET_QUERY = 'mutation ($login: String!) { requestReset(login: $login) { accepted } }';


/**
 * Times `rounds` pairs of requests (one known, one unknown login, in random order) from a separate process: the
 * client then sees what a remote caller sees, and its event loop is not the server's (in the test
 * process, the server's background work would stall the client's reads). Between requests it
 * waits until the previous request's background work is done (message queued and delivered), so
 * that work never lands on the next request's clock, whichever kind that is.
 */
async function timeRequestResets(app: TestApp, known: string[], unknown: string[], rounds: number) {
  const script = `
    process.on('message', async ({ url, query, login }) => {
      const started = process.hrtime.bigint();
      const res = await fetch(url + '/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables: { login } }) });
      const body = await res.text();
      process.send({ ms: Number(process.hrtime.bigint() - started) / 1e6, body });
    });
    process.on('disconnect', () => process.exit(0));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ask = (login: string) =>
    new Promise<{ ms: number; body: string }>((resolve, reject) => {
      child.once('message', (m) => {
        child.off('error', reject);
        resolve(m as { ms: number; body: string });
      });
      child.once('error', reject);
      child.send({ url: app.url, query: REQUEST_RESET_QUERY, login });
    });
  const db = app.app.db.db;
  // An unknown login's work ends when its decoy message is dropped.
  let dropped = 0;
  const unobserve = app.app.db.observeStatements((q) => {
    if (q.startsWith('delete from "outbox"')) dropped++;
  });
  let unknownAsked = 0;
  const delivered = async (recipient: string) => (await db.select().from(tables.outbox).where(eq(tables.outbox.recipient, recipient))).filter((r) => r.sentAt).length;
  const settled = async (login: string, expected: number) => waitFor(async () => (await delivered(login)) >= expected, 10_000, 'background work');
  try {
    const sentSoFar = new Map<string, number>();
    for (const login of known) sentSoFar.set(login, await delivered(login));
    for (let i = 0; i < 6; i++) await ask(unknown[i % unknown.length]!); // warm up both sides
    await waitFor(() => dropped >= 6, 10_000, 'warm-up decoys dropped');
    dropped -= 6;
    const times = { known: [] as number[], unknown: [] as number[] };
    const bodies = new Set<string>();
    for (let i = 0; i < rounds; i++) {
      // One of each kind per round, in random order: a pair sees the same machine load.
      const order = randomInt(2) ? (['known', 'unknown'] as const) : (['unknown', 'known'] as const);
      for (const kind of order) {
        const login = (kind === 'known' ? known : unknown)[i % 2]!;
        const { ms, body } = await ask(login);
        times[kind].push(ms);
        bodies.add(body);
        // A known login's work ends with its message delivered; an unknown one's with its lookup,
        // which this query (on PGlite queued behind it) outlasts. The same barrier for both kinds.
        if (kind === 'known') sentSoFar.set(login, sentSoFar.get(login)! + 1);
        else {
          unknownAsked++;
          await waitFor(() => dropped >= unknownAsked, 10_000, 'decoy dropped');
        }
        await settled(known[0]!, sentSoFar.get(known[0]!)!);
        await settled(known[1]!, sentSoFar.get(known[1]!)!);
      }
    }
    return { ...times, bodies: [...bodies] };
  } finally {
    unobserve();
    child.disconnect();
  }
}

describe('requestReset', () => {
  test('answers the same bytes for known and unknown logins when a reset is requested', async () => {
    const email = uniqueEmail('known');
    const phone = uniquePhone();
    await register(t, { email, phone });
    const unknownEmail = uniqueEmail('nobody');
    const unknownPhone = uniquePhone();
    // Unknown first: the queue is FIFO, so once the known logins' messages arrive the unknown ones were processed.
    const answers = [];
    for (const login of [unknownEmail, unknownPhone, email, phone]) answers.push(await rawRequestReset(login));
    assert.equal(new Set(answers.map((a) => a.body)).size, 1, `answers differ: ${answers.map((a) => a.body).join(' | ')}`);
    assert.deepEqual(JSON.parse(answers[0]!.body), { data: { requestReset: { accepted: true } } });
    await mail.waitForMessage((m) => m.to === email);
    await sms.waitForMessage((m) => m.to === phone);
    assert.equal([...mail.messages, ...sms.messages].filter((m) => m.to === unknownEmail || m.to === unknownPhone).length, 0);
    // An unknown login's decoy message (the same work as a real one) is dropped, never sent, and leaves no row.
    await waitFor(async () => (await t.app.db.db.select().from(tables.outbox).where(eq(tables.outbox.recipient, unknownEmail))).length === 0, 5000, 'decoy dropped');
    assert.equal([...mail.messages, ...sms.messages].filter((m) => m.to === unknownEmail || m.to === unknownPhone).length, 0);
  });

  test('answers known and unknown logins alike and leaves the work for known ones to the background', async () => {
    // The timing itself is measured by bench/reset-timing.ts (a figure, not an assertion: load on a
    // shared 2-core box makes any fixed bound flaky); the statement-shape test below is the guard.
    const knownEmail = uniqueEmail('timing');
    const knownPhone = uniquePhone();
    await register(t, { email: knownEmail, phone: knownPhone });
    const { bodies } = await timeRequestResets(t, [knownEmail, knownPhone], [uniqueEmail('timing-nobody'), uniquePhone()], 3);
    assert.equal(bodies.length, 1, 'one answer for all');
    // The known requests did reach their accounts: the work happened, just not in the request.
    await mail.waitForMessage((m) => m.to === knownEmail);
    await sms.waitForMessage((m) => m.to === knownPhone);
  });

  test('runs the same statements in the background for known and unknown logins, bar the reset row and the send', async () => {
    // On the embedded database the queued work shares the gateway's thread: work done only for
    // real accounts slowed the caller's next request by ~7-28 ms (bench/reset-timing.ts).
    const email = uniqueEmail('shape');
    await register(t, { email });
    const statementsOf = async (login: string, last: RegExp) => {
      const seen: string[] = [];
      const stop = t.app.db.observeStatements((text) => seen.push(text.replace(/\s+/g, ' ')));
      try {
        expectData(await t.gql(RequestResetDocument, { login }));
        await waitFor(() => seen.some((q) => last.test(q)), 10_000, 'background work done');
      } finally {
        stop();
      }
      // Only the work of this request: the GraphQL request itself touches none of these tables.
      return new Set(seen.filter((q) => /"(users|password_resets|outbox)"/.test(q)));
    };
    const sent = /^update "outbox" set .*"sent_at" = /;
    const known = await statementsOf(email, sent);
    const unknown = await statementsOf(uniqueEmail('shape-nobody'), /^delete from "outbox"/);
    const onlyKnown = [...known].filter((q) => !unknown.has(q));
    const onlyUnknown = [...unknown].filter((q) => !known.has(q));
    assert.equal(onlyKnown.length, 2, onlyKnown.join('\n'));
    assert.ok(onlyKnown.some((q) => q.startsWith('insert into "password_resets"')) && onlyKnown.some((q) => sent.test(q)), onlyKnown.join('\n'));
    assert.equal(onlyUnknown.length, 1, onlyUnknown.join('\n'));
    assert.ok(onlyUnknown[0]!.startsWith('delete from "outbox"'), onlyUnknown[0]);
  });

  test('answers BAD_USER_INPUT and sends nothing when the login is malformed', async () => {
    expectCode(await t.gql(RequestResetDocument, { login: 'not-an-email' }), 'BAD_USER_INPUT');
    expectCode(await t.gql(RequestResetDocument, { login: '12345' }), 'BAD_USER_INPUT');
    expectCode(await t.gql(RequestResetDocument, { login: `${'a'.repeat(300_000)}@example.com` }), 'BAD_USER_INPUT');
  });

  test('mails a 6-digit code and a PUBLIC_URL link with a 256-bit token when the login is an email', async () => {
    const email = uniqueEmail('mailme');
    await register(t, { email });
    const { message, code, token, link } = await requestAndRead(t, email);
    assert.equal(message.channel, 'email');
    assert.match(message.subject, /reset/i);
    assert.match(code, /^\d{6}$/);
    assert.equal(link, `${PUBLIC_URL}/reset?token=${token}`);
    assert.ok(Buffer.from(token, 'base64url').length >= 16, 'token carries at least 128 bits');
    assert.equal(Buffer.from(token, 'base64url').length, 32);
  });

  test('texts a 6-digit code and a PUBLIC_URL link when the login is a phone', async () => {
    const phone = uniquePhone();
    await register(t, { phone });
    const { message, code, token } = await requestAndRead(t, phone);
    assert.equal(message.channel, 'sms');
    assert.match(message.body, new RegExp(`\\b${code}\\b`));
    assert.ok(message.body.includes(`${PUBLIC_URL}/reset?token=${token}`));
    assert.ok(message.body.length < 320, 'fits in two SMS segments');
  });

  test('stores only hashes of the code and the token when a reset is created', async () => {
    const email = uniqueEmail('hashes');
    const user = await register(t, { email });
    const { code, token } = await requestAndRead(t, email);
    const rows = await t.app.db.db.select().from(tables.passwordResets).where(eq(tables.passwordResets.userId, user.user.id));
    assert.equal(rows.length, 1);
    const row = rows[0]!;
    assert.equal(row.tokenHash, sha256(token));
    const stored = JSON.stringify(row);
    assert.ok(!stored.includes(token), 'token not stored');
    assert.notEqual(row.codeHash, sha256(code), 'the code is not a plain sha256 (10^6 codes are brute-forced in a blink)');
    assert.notEqual(row.codeHash, sha256(`${row.id}:${code}`));
    assert.match(row.codeHash, /^[0-9a-f]{64}$/);
    assert.ok(!row.codeHash.includes(code));
    assert.equal(row.expiresAt.getTime() - row.createdAt.getTime(), 15 * 60_000);
  });
});

describe('confirmReset', () => {
  test('sets the new password, ends every session and sends a notice when confirmed with the token', async () => {
    const email = uniqueEmail('token');
    const phone = uniquePhone();
    const first = await register(t, { email, phone });
    const second = expectData(await loginWith(t, email, STRONG_PASSWORD)).login;
    const { token } = await requestAndRead(t, email);

    assert.equal(expectData(await confirm(t, { token, newPassword: OTHER_STRONG_PASSWORD })).confirmReset, true);

    expectCode(await loginWith(t, email, STRONG_PASSWORD), 'INVALID_CREDENTIALS');
    expectData(await loginWith(t, email, OTHER_STRONG_PASSWORD));
    for (const session of [first, second]) {
      expectCode(await t.gql(MeDocument, {}, { token: session.accessToken }), 'UNAUTHENTICATED');
      expectCode(await t.gql(RefreshTokenDocument, { refreshToken: session.refreshToken }), 'UNAUTHENTICATED');
    }
    // The notice goes to every address of the account, so a hijacked channel is not the only one told.
    const notice = await mail.waitForMessage((m) => m.to === email && /password was changed/i.test(m.subject));
    assert.doesNotMatch(notice.body, /\d{6}/);
    await sms.waitForMessage((m) => m.to === phone && /reset/i.test(m.body) && !m.body.includes('/reset?token='));
  });

  test('sets the new password and ends sessions when confirmed with login and code', async () => {
    const phone = uniquePhone();
    const reg = await register(t, { phone });
    const { code } = await requestAndRead(t, phone);
    assert.equal(expectData(await confirm(t, { login: phone, code, newPassword: OTHER_STRONG_PASSWORD })).confirmReset, true);
    expectData(await loginWith(t, phone, OTHER_STRONG_PASSWORD));
    expectCode(await t.gql(MeDocument, {}, { token: reg.accessToken }), 'UNAUTHENTICATED');
    expectCode(await t.gql(RefreshTokenDocument, { refreshToken: reg.refreshToken }), 'UNAUTHENTICATED');
    await sms.waitForMessage((m) => m.to === phone && /password/i.test(m.body) && !m.body.includes('/reset?token='));
  });

  test('accepts the code with the login spelt differently when it is the same email or phone', async () => {
    const email = uniqueEmail('spelling');
    await register(t, { email });
    const { code } = await requestAndRead(t, email);
    expectData(await confirm(t, { login: `  ${email.toUpperCase()} `, code, newPassword: OTHER_STRONG_PASSWORD }));
  });

  test('fails with INVALID_RESET_CODE when the token or the code is used a second time', async () => {
    const email = uniqueEmail('twice');
    await register(t, { email });
    const { token, code } = await requestAndRead(t, email);
    expectData(await confirm(t, { token, newPassword: OTHER_STRONG_PASSWORD }));
    expectCode(await confirm(t, { token, newPassword: THIRD_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    expectCode(await confirm(t, { login: email, code, newPassword: THIRD_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    expectData(await loginWith(t, email, OTHER_STRONG_PASSWORD));
  });

  test('fails with INVALID_RESET_CODE when 15 minutes have passed', async () => {
    const email = uniqueEmail('late');
    await register(t, { email });
    const { token, code } = await requestAndRead(t, email);
    clock.advance(15 * 60_000 + 1000);
    expectCode(await confirm(t, { token, newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    expectCode(await confirm(t, { login: email, code, newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    expectData(await loginWith(t, email, STRONG_PASSWORD));
  });

  test('fails with INVALID_RESET_CODE for the older request when a newer one was made', async () => {
    const email = uniqueEmail('superseded');
    await register(t, { email });
    const older = await requestAndRead(t, email);
    const newer = await requestAndRead(t, email);
    expectCode(await confirm(t, { token: older.token, newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    if (older.code !== newer.code) {
      expectCode(await confirm(t, { login: email, code: older.code, newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    }
    expectData(await confirm(t, { token: newer.token, newPassword: OTHER_STRONG_PASSWORD }));
  });

  test('stops taking codes after five wrong ones but keeps the mailed link working', async () => {
    const email = uniqueEmail('burn');
    await register(t, { email });
    const { code, token } = await requestAndRead(t, email);
    const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, '0');
    for (let i = 0; i < 5; i++) expectCode(await confirm(t, { login: email, code: wrong, newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    const [row] = await t.app.db.db.select().from(tables.passwordResets).where(eq(tables.passwordResets.tokenHash, sha256(token)));
    assert.equal(row!.failedAttempts, 5);
    // The code is refused now, unchecked, even the right one...
    expectCode(await confirm(t, { login: email, code, newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    // ...but a guesser cannot make the owner's link fail (before, the fifth wrong code burnt it).
    expectData(await confirm(t, { token, newPassword: OTHER_STRONG_PASSWORD }));
    expectData(await loginWith(t, email, OTHER_STRONG_PASSWORD));
  });

  test('answers WEAK_PASSWORD without using up the code when the new password is weak', async () => {
    const email = uniqueEmail('weak');
    await register(t, { email });
    const { code, token } = await requestAndRead(t, email);
    const weak = expectCode(await confirm(t, { login: email, code, newPassword: 'password1' }), 'WEAK_PASSWORD');
    assert.match(weak.message, /common|guess|characters/i);
    expectCode(await confirm(t, { token, newPassword: 'short' }), 'WEAK_PASSWORD');
    // A weak password with a wrong proof says nothing about the password: the proof is checked first.
    expectCode(await confirm(t, { token: 'x'.repeat(43), newPassword: 'password1' }), 'INVALID_RESET_CODE');
    expectData(await confirm(t, { login: email, code, newPassword: OTHER_STRONG_PASSWORD }));
    expectData(await loginWith(t, email, OTHER_STRONG_PASSWORD));
  });

  test('fails with INVALID_RESET_CODE whatever the reason when the proof is not valid', async () => {
    const email = uniqueEmail('reasons');
    await register(t, { email });
    await requestAndRead(t, email);
    const bad = [
      { login: uniqueEmail('nobody'), code: '123456' }, // unknown login
      { login: 'not a login', code: '123456' }, // malformed login
      { login: email, code: '12345' }, // malformed code
      { login: email, code: 'abcdef' },
      { token: 'garbage' }, // unknown token
      { token: 'A'.repeat(43) },
    ];
    const messages = new Set<string>();
    for (const proof of bad) messages.add(expectCode(await confirm(t, { ...proof, newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE').message);
    assert.equal(messages.size, 1, 'one message for every reason');
    // Neither proof, or both, is a malformed request rather than a wrong proof.
    expectCode(await confirm(t, { newPassword: OTHER_STRONG_PASSWORD }), 'BAD_USER_INPUT');
    expectCode(await confirm(t, { token: 'a', login: email, code: '123456', newPassword: OTHER_STRONG_PASSWORD }), 'BAD_USER_INPUT');
    expectData(await loginWith(t, email, STRONG_PASSWORD));
  });
});
