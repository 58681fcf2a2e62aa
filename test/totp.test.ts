import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { generate } from 'otplib';
import { tables } from '../src/db/index';
import { ConfirmTotpDocument, DisableTotpDocument, EnableTotpDocument, LoginDocument, MeDocument, RegisterDocument } from './generated/graphql';
import { expectCode, expectData, OTHER_STRONG_PASSWORD, startApp, STRONG_PASSWORD, testClock, uniqueEmail, type TestApp } from './helpers/harness';

let t: TestApp;
const clock = testClock();
before(async () => {
  t = await startApp({ clock: clock.now });
});
after(() => t.stop());

/** The code an authenticator app shows `offsetS` seconds from the server's now. */
const codeAt = (secret: string, offsetS = 0) => generate({ secret, epoch: Math.floor(clock.now().getTime() / 1000) + offsetS });

/** Moves the clock to the middle of a 30 s step, so a step boundary cannot fall inside a test's few requests. */
function midStep() {
  const into = clock.now().getTime() % 30_000;
  clock.advance((45_000 - into) % 30_000);
}

async function newUser() {
  const email = uniqueEmail('totp');
  const r = expectData(await t.gql(RegisterDocument, { input: { email, password: STRONG_PASSWORD } }));
  return { email, token: r.register.accessToken, userId: r.register.user.id };
}

/** A user with 2FA on; returns the secret and recovery codes. */
async function enrolled() {
  const u = await newUser();
  const { secret } = expectData(await t.gql(EnableTotpDocument, {}, { token: u.token })).enableTotp;
  midStep();
  const codes = expectData(await t.gql(ConfirmTotpDocument, { code: await codeAt(secret) }, { token: u.token })).confirmTotp;
  // The next step, so that logins in the test are not replays of the confirmation code.
  clock.advance(30_000);
  return { ...u, secret, codes };
}

const loginWith = (login: string, password: string, totp?: string) => t.gql(LoginDocument, { input: { login, password, totp } });

async function userRow(id: string) {
  const [row] = await t.app.db.db.select().from(tables.users).where(eq(tables.users.id, id));
  return row!;
}

test('enableTotp returns a base32 secret and an otpauth URL for Vigil and the email, and leaves 2FA off', async () => {
  const u = await newUser();
  const e = expectData(await t.gql(EnableTotpDocument, {}, { token: u.token })).enableTotp;
  assert.match(e.secret, /^[A-Z2-7]{32}$/);
  const url = new URL(e.otpauthUrl);
  assert.equal(url.protocol, 'otpauth:');
  assert.equal(url.host, 'totp');
  assert.equal(decodeURIComponent(url.pathname), `/Vigil:${u.email}`);
  assert.equal(url.searchParams.get('secret'), e.secret);
  assert.equal(url.searchParams.get('issuer'), 'Vigil');
  assert.equal(expectData(await t.gql(MeDocument, {}, { token: u.token })).me.totpEnabled, false);
  // Pending enrolment does not gate login.
  expectData(await loginWith(u.email, STRONG_PASSWORD));
  // Stored encrypted, not as the base32 secret.
  const row = await userRow(u.userId);
  assert.ok(row.totpSecret && !row.totpSecret.includes(e.secret));
});

test('enableTotp labels the secret with the phone when the account has no email', async () => {
  const r = expectData(await t.gql(RegisterDocument, { input: { phone: '+1 415 555 2671', password: STRONG_PASSWORD } }));
  const e = expectData(await t.gql(EnableTotpDocument, {}, { token: r.register.accessToken })).enableTotp;
  assert.equal(decodeURIComponent(new URL(e.otpauthUrl).pathname), '/Vigil:+14155552671');
});

test('enableTotp is UNAUTHENTICATED when no token is sent', async () => {
  expectCode(await t.gql(EnableTotpDocument, {}), 'UNAUTHENTICATED');
  expectCode(await t.gql(ConfirmTotpDocument, { code: '123456' }), 'UNAUTHENTICATED');
  expectCode(await t.gql(DisableTotpDocument, { password: STRONG_PASSWORD }), 'UNAUTHENTICATED');
});

test('enableTotp replaces the pending secret when called again before confirming', async () => {
  const u = await newUser();
  const first = expectData(await t.gql(EnableTotpDocument, {}, { token: u.token })).enableTotp.secret;
  const second = expectData(await t.gql(EnableTotpDocument, {}, { token: u.token })).enableTotp.secret;
  assert.notEqual(first, second);
  midStep();
  expectCode(await t.gql(ConfirmTotpDocument, { code: await codeAt(first) }, { token: u.token }), 'BAD_USER_INPUT');
  expectData(await t.gql(ConfirmTotpDocument, { code: await codeAt(second) }, { token: u.token }));
});

test('confirmTotp is BAD_USER_INPUT and leaves 2FA off when the code is wrong, malformed or too old', async () => {
  const u = await newUser();
  const { secret } = expectData(await t.gql(EnableTotpDocument, {}, { token: u.token })).enableTotp;
  midStep();
  const good = await codeAt(secret);
  const wrong = String((Number(good) + 1) % 1_000_000).padStart(6, '0');
  const wrongErr = expectCode(await t.gql(ConfirmTotpDocument, { code: wrong }, { token: u.token }), 'BAD_USER_INPUT');
  assert.match(wrongErr.message, /wrong or expired/);
  for (const code of ['', 'abcdef', '12345', '1234567', '12-34-56', '1'.repeat(100)]) {
    expectCode(await t.gql(ConfirmTotpDocument, { code }, { token: u.token }), 'BAD_USER_INPUT');
  }
  // Two steps back is beyond the ±1 step of drift allowed.
  expectCode(await t.gql(ConfirmTotpDocument, { code: await codeAt(secret, -60) }, { token: u.token }), 'BAD_USER_INPUT');
  assert.equal((await userRow(u.userId)).totpEnabled, false);
  assert.equal(expectData(await t.gql(MeDocument, {}, { token: u.token })).me.totpEnabled, false);
});

test('confirmTotp is BAD_USER_INPUT when no enrolment was started', async () => {
  const u = await newUser();
  expectCode(await t.gql(ConfirmTotpDocument, { code: '123456' }, { token: u.token }), 'BAD_USER_INPUT');
});

test('confirmTotp turns 2FA on and returns ten distinct recovery codes stored only as hashes when the code is from one step back', async () => {
  const u = await newUser();
  const { secret } = expectData(await t.gql(EnableTotpDocument, {}, { token: u.token })).enableTotp;
  midStep();
  const codes = expectData(await t.gql(ConfirmTotpDocument, { code: `${(await codeAt(secret, -30)).slice(0, 3)} ${(await codeAt(secret, -30)).slice(3)}` }, { token: u.token })).confirmTotp;
  assert.equal(codes.length, 10);
  assert.equal(new Set(codes).size, 10);
  for (const c of codes) assert.match(c, /^[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}$/);
  assert.equal(expectData(await t.gql(MeDocument, {}, { token: u.token })).me.totpEnabled, true);
  const rows = await t.app.db.db.select().from(tables.recoveryCodes).where(eq(tables.recoveryCodes.userId, u.userId));
  assert.equal(rows.length, 10);
  const stored = rows.map((r) => r.codeHash).join(' ');
  for (const c of codes) {
    assert.ok(!stored.includes(c) && !stored.includes(c.replace(/-/g, '')), 'recovery codes must be stored hashed');
  }
});

test('enableTotp and confirmTotp are BAD_USER_INPUT when 2FA is already on', async () => {
  const u = await enrolled();
  expectCode(await t.gql(EnableTotpDocument, {}, { token: u.token }), 'BAD_USER_INPUT');
  expectCode(await t.gql(ConfirmTotpDocument, { code: await codeAt(u.secret) }, { token: u.token }), 'BAD_USER_INPUT');
  // The secret was not replaced: the app's codes still work.
  midStep();
  expectData(await loginWith(u.email, STRONG_PASSWORD, await codeAt(u.secret)));
});

test('login is TOTP_REQUIRED when 2FA is on and the password is right but no code is given', async () => {
  const u = await enrolled();
  expectCode(await loginWith(u.email, STRONG_PASSWORD), 'TOTP_REQUIRED');
  expectCode(await loginWith(u.email, STRONG_PASSWORD, ''), 'TOTP_REQUIRED');
});

test('login is INVALID_CREDENTIALS, not TOTP_REQUIRED, when 2FA is on and the password is wrong', async () => {
  const u = await enrolled();
  expectCode(await loginWith(u.email, OTHER_STRONG_PASSWORD), 'INVALID_CREDENTIALS');
  midStep();
  expectCode(await loginWith(u.email, OTHER_STRONG_PASSWORD, await codeAt(u.secret)), 'INVALID_CREDENTIALS');
});

test('login accepts a current code once and refuses it or an older one when replayed', async () => {
  const u = await enrolled();
  midStep();
  const code = await codeAt(u.secret);
  const ok = expectData(await loginWith(u.email, STRONG_PASSWORD, code));
  assert.equal(ok.login.user.totpEnabled, true);
  expectCode(await loginWith(u.email, STRONG_PASSWORD, code), 'INVALID_CREDENTIALS');
  // The previous step's code is within the drift window but older than the last accepted step.
  expectCode(await loginWith(u.email, STRONG_PASSWORD, await codeAt(u.secret, -30)), 'INVALID_CREDENTIALS');
  // A code for a later step works: the app's clock runs 30 s ahead of ours.
  expectData(await loginWith(u.email, STRONG_PASSWORD, await codeAt(u.secret, 30)));
  expectCode(await loginWith(u.email, STRONG_PASSWORD, await codeAt(u.secret)), 'INVALID_CREDENTIALS');
});

test('login is INVALID_CREDENTIALS when the code is the one used to confirm enrolment', async () => {
  const u = await newUser();
  const { secret } = expectData(await t.gql(EnableTotpDocument, {}, { token: u.token })).enableTotp;
  midStep();
  const code = await codeAt(secret);
  expectData(await t.gql(ConfirmTotpDocument, { code }, { token: u.token }));
  expectCode(await loginWith(u.email, STRONG_PASSWORD, code), 'INVALID_CREDENTIALS');
});

test('login is INVALID_CREDENTIALS when the code is wrong or two steps away', async () => {
  const u = await enrolled();
  midStep();
  const good = await codeAt(u.secret);
  expectCode(await loginWith(u.email, STRONG_PASSWORD, String((Number(good) + 7) % 1_000_000).padStart(6, '0')), 'INVALID_CREDENTIALS');
  expectCode(await loginWith(u.email, STRONG_PASSWORD, await codeAt(u.secret, 60)), 'INVALID_CREDENTIALS');
  expectCode(await loginWith(u.email, STRONG_PASSWORD, 'not-a-code'), 'INVALID_CREDENTIALS');
});

test('login accepts each recovery code once, in any case and with or without dashes', async () => {
  const u = await enrolled();
  const [first, second] = u.codes as [string, string];
  expectData(await loginWith(u.email, STRONG_PASSWORD, first.toUpperCase().replace(/-/g, '')));
  expectCode(await loginWith(u.email, STRONG_PASSWORD, first), 'INVALID_CREDENTIALS');
  expectData(await loginWith(u.email, STRONG_PASSWORD, ` ${second} `));
  const used = await t.app.db.db.select().from(tables.recoveryCodes).where(eq(tables.recoveryCodes.userId, u.userId));
  assert.equal(used.filter((r) => r.usedAt).length, 2);
});

test("login is INVALID_CREDENTIALS when the recovery code is another user's", async () => {
  const a = await enrolled();
  const b = await enrolled();
  expectCode(await loginWith(a.email, STRONG_PASSWORD, b.codes[0]!), 'INVALID_CREDENTIALS');
  expectData(await loginWith(b.email, STRONG_PASSWORD, b.codes[0]!));
});

test('confirmTotp again after re-enrolling replaces the old recovery codes', async () => {
  const u = await enrolled();
  expectData(await t.gql(DisableTotpDocument, { password: STRONG_PASSWORD }, { token: u.token }));
  const { secret } = expectData(await t.gql(EnableTotpDocument, {}, { token: u.token })).enableTotp;
  midStep();
  const fresh = expectData(await t.gql(ConfirmTotpDocument, { code: await codeAt(secret) }, { token: u.token })).confirmTotp;
  expectCode(await loginWith(u.email, STRONG_PASSWORD, u.codes[3]!), 'INVALID_CREDENTIALS');
  expectData(await loginWith(u.email, STRONG_PASSWORD, fresh[3]!));
});

test('disableTotp is INVALID_CREDENTIALS and keeps 2FA on when the password is wrong', async () => {
  const u = await enrolled();
  expectCode(await t.gql(DisableTotpDocument, { password: OTHER_STRONG_PASSWORD }, { token: u.token }), 'INVALID_CREDENTIALS');
  expectCode(await t.gql(DisableTotpDocument, { password: '' }, { token: u.token }), 'INVALID_CREDENTIALS');
  assert.equal((await userRow(u.userId)).totpEnabled, true);
  expectCode(await loginWith(u.email, STRONG_PASSWORD), 'TOTP_REQUIRED');
});

test('disableTotp turns 2FA off and deletes the secret and recovery codes when the password is right', async () => {
  const u = await enrolled();
  assert.equal(expectData(await t.gql(DisableTotpDocument, { password: STRONG_PASSWORD }, { token: u.token })).disableTotp, true);
  const row = await userRow(u.userId);
  assert.equal(row.totpEnabled, false);
  assert.equal(row.totpSecret, null);
  assert.equal((await t.app.db.db.select().from(tables.recoveryCodes).where(eq(tables.recoveryCodes.userId, u.userId))).length, 0);
  const plain = expectData(await loginWith(u.email, STRONG_PASSWORD));
  assert.equal(plain.login.user.totpEnabled, false);
});

test('confirmTotp is RATE_LIMITED when wrong codes keep coming', async () => {
  const u = await newUser();
  const { secret } = expectData(await t.gql(EnableTotpDocument, {}, { token: u.token })).enableTotp;
  midStep();
  const good = await codeAt(secret);
  const wrong = String((Number(good) + 500_000) % 1_000_000).padStart(6, '0');
  for (let i = 0; i < 10; i++) expectCode(await t.gql(ConfirmTotpDocument, { code: wrong }, { token: u.token }), 'BAD_USER_INPUT');
  const limited = expectCode(await t.gql(ConfirmTotpDocument, { code: good }, { token: u.token }), 'RATE_LIMITED');
  assert.ok((limited.extensions?.retryAfterSeconds ?? 0) >= 1);
});

test('disableTotp is RATE_LIMITED like login when wrong passwords keep coming', async () => {
  const u = await enrolled();
  let limited;
  for (let i = 0; i < 11 && !limited; i++) {
    const res = await t.gql(DisableTotpDocument, { password: OTHER_STRONG_PASSWORD }, { token: u.token });
    if (res.errors?.[0]?.extensions?.code === 'RATE_LIMITED') limited = res.errors[0];
    else expectCode(res, 'INVALID_CREDENTIALS');
  }
  assert.ok(limited, 'no RATE_LIMITED after 11 wrong passwords');
  assert.ok((limited.extensions?.retryAfterSeconds ?? 0) >= 1);
  // Even the right password waits now.
  expectCode(await t.gql(DisableTotpDocument, { password: STRONG_PASSWORD }, { token: u.token }), 'RATE_LIMITED');
  assert.equal((await userRow(u.userId)).totpEnabled, true);
});
