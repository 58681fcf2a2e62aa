import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { tables } from '../src/db/index';
import { LoginDocument, RequestResetDocument } from './generated/graphql';
import { expectCode, expectData, OTHER_STRONG_PASSWORD, startApp, STRONG_PASSWORD, testClock, uniqueEmail, waitFor, type TestApp } from './helpers/harness';
import { startSmsCatcher, startSmtpCatcher, type SmsCatcher, type SmtpCatcher } from './helpers/mail-catchers';
import { confirm, loginWith, PUBLIC_URL, register, resetReader, sha256, THIRD_STRONG_PASSWORD, wrongOf } from './helpers/reset';

// Reset limits, each on an app of its own (split from password-reset.test.ts to keep both files
// well inside the per-file time limit on a loaded machine).
let mail: SmtpCatcher;
let sms: SmsCatcher;
const clock = testClock();
before(async () => {
  [mail, sms] = await Promise.all([startSmtpCatcher(), startSmsCatcher()]);
});
after(async () => {
  await Promise.all([mail?.stop(), sms?.stop()]);
});
const requestAndRead = resetReader(() => ({ mail, sms }));

describe('limits', () => {
  test('accepts silently and sends nothing when the per-login limit is reached', async (ctx) => {
    const limited = await startApp({ env: { SMTP_URL: mail.url, SMS_WEBHOOK_URL: sms.url, PUBLIC_URL, RESET_MAX_PER_LOGIN: '2', RESET_MAX_PER_IP: '100' } });
    ctx.after(() => limited.stop());
    const email = uniqueEmail('perlogin');
    await register(limited, { email });
    await requestAndRead(limited, email);
    await requestAndRead(limited, email);
    // The third answers the same, but no message follows; a later request for another login proves the queue moved on.
    assert.deepEqual(expectData(await limited.gql(RequestResetDocument, { login: email })), { requestReset: { accepted: true } });
    assert.deepEqual(expectData(await limited.gql(RequestResetDocument, { login: email.toUpperCase() })), { requestReset: { accepted: true } });
    const other = uniqueEmail('perlogin-other');
    await register(limited, { email: other });
    await requestAndRead(limited, other);
    assert.equal(mail.messages.filter((m) => m.to === email).length, 2);
    const rows = await limited.app.db.db.select().from(tables.outbox).where(eq(tables.outbox.recipient, email));
    assert.equal(rows.length, 2);
  });

  test('accepts silently and sends nothing when the per-IP limit is reached', async (ctx) => {
    const limited = await startApp({ env: { SMTP_URL: mail.url, PUBLIC_URL, RESET_MAX_PER_LOGIN: '100', RESET_MAX_PER_IP: '3' } });
    ctx.after(() => limited.stop());
    const emails = [uniqueEmail('perip-a'), uniqueEmail('perip-b'), uniqueEmail('perip-c'), uniqueEmail('perip-d')];
    for (const email of emails) await register(limited, { email });
    for (const email of emails.slice(0, 3)) await requestAndRead(limited, email);
    assert.deepEqual(expectData(await limited.gql(RequestResetDocument, { login: emails[3]! })), { requestReset: { accepted: true } });
    // Everything queued before was delivered, and nothing was written for the fourth.
    await waitFor(async () => (await limited.app.db.db.select().from(tables.outbox)).every((r) => r.sentAt), 5000, 'outbox drained');
    const rows = await limited.app.db.db.select().from(tables.outbox).where(eq(tables.outbox.recipient, emails[3]!));
    assert.equal(rows.length, 0);
    const resets = await limited.app.db.db.select().from(tables.passwordResets);
    assert.equal(resets.length, 3);
  });

  test('refuses codes from a source that failed too often, but not the mailed link', async (ctx) => {
    // Wrong codes per source are capped at RESET_MAX_PER_IP x 5 (the wrong codes its requests could earn).
    const limited = await startApp({ env: { SMTP_URL: mail.url, PUBLIC_URL, RESET_MAX_PER_IP: '2' } });
    ctx.after(() => limited.stop());
    const [email, other] = [uniqueEmail('confirm-ip'), uniqueEmail('confirm-ip-other')];
    await register(limited, { email });
    await register(limited, { email: other });
    const { token } = await requestAndRead(limited, email);
    const { code } = await requestAndRead(limited, other);
    for (let i = 0; i < 10; i++) expectCode(await confirm(limited, { login: uniqueEmail('nobody'), code: '000000', newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    expectCode(await confirm(limited, { login: other, code, newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    expectData(await confirm(limited, { token, newPassword: OTHER_STRONG_PASSWORD }));
    expectData(await loginWith(limited, email, OTHER_STRONG_PASSWORD));
  });

  test('bounds wrong codes per account over a day, across resets, while links keep working', async (ctx) => {
    const limited = await startApp({ clock: clock.now, env: { SMTP_URL: mail.url, PUBLIC_URL, RESET_MAX_PER_LOGIN: '100' } });
    ctx.after(() => limited.stop());
    const email = uniqueEmail('daily');
    await register(limited, { email });
    const first = await requestAndRead(limited, email);
    for (let i = 0; i < 5; i++) expectCode(await confirm(limited, { login: email, code: wrongOf(first.code), newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    // Before: a new request gave 5 fresh guesses (15 an hour, 360 a day). Now the day's 5 are spent.
    const second = await requestAndRead(limited, email);
    expectCode(await confirm(limited, { login: email, code: second.code, newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    const [row] = await limited.app.db.db.select().from(tables.passwordResets).where(eq(tables.passwordResets.tokenHash, sha256(second.token)));
    assert.equal(row!.failedAttempts, 0, 'refused unchecked, not counted');
    expectData(await confirm(limited, { token: second.token, newPassword: OTHER_STRONG_PASSWORD }));
    // A day later the code works again.
    clock.advance(25 * 3600_000);
    const third = await requestAndRead(limited, email);
    expectData(await confirm(limited, { login: email, code: third.code, newPassword: THIRD_STRONG_PASSWORD }));
  });

  test('bounds wrong codes per account over 30 days', async (ctx) => {
    const limited = await startApp({ clock: clock.now, env: { SMTP_URL: mail.url, PUBLIC_URL, RESET_MAX_PER_LOGIN: '100', RESET_CODE_MAX_PER_DAY: '100', RESET_CODE_MAX_PER_30_DAYS: '7' } });
    ctx.after(() => limited.stop());
    const email = uniqueEmail('monthly');
    await register(limited, { email });
    for (const wrongCount of [5, 2]) {
      const r = await requestAndRead(limited, email);
      for (let i = 0; i < wrongCount; i++) expectCode(await confirm(limited, { login: email, code: wrongOf(r.code), newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    }
    clock.advance(10 * 86_400_000);
    const later = await requestAndRead(limited, email);
    expectCode(await confirm(limited, { login: email, code: later.code, newPassword: OTHER_STRONG_PASSWORD }), 'INVALID_RESET_CODE');
    clock.advance(21 * 86_400_000);
    const fresh = await requestAndRead(limited, email);
    expectData(await confirm(limited, { login: email, code: fresh.code, newPassword: OTHER_STRONG_PASSWORD }));
  });

  test('lets the owner sign in from anywhere again after a reset, past an attacker-filled login ceiling', async (ctx) => {
    const limited = await startApp({ env: { SMTP_URL: mail.url, PUBLIC_URL, TRUST_PROXY: 'true', LOGIN_MAX_PER_ACCOUNT: '4' } });
    ctx.after(() => limited.stop());
    const email = uniqueEmail('ceiling');
    await register(limited, { email });
    const at = (ip: string) => ({ headers: { 'x-forwarded-for': ip } });
    for (let i = 0; i < 4; i++) expectCode(await limited.gql(LoginDocument, { input: { login: email, password: OTHER_STRONG_PASSWORD } }, at(`198.51.100.${i + 1}`)), 'INVALID_CREDENTIALS');
    expectCode(await limited.gql(LoginDocument, { input: { login: email, password: STRONG_PASSWORD } }, at('192.0.2.50')), 'RATE_LIMITED');
    const { token } = await requestAndRead(limited, email);
    expectData(await confirm(limited, { token, newPassword: THIRD_STRONG_PASSWORD }));
    expectData(await limited.gql(LoginDocument, { input: { login: email, password: THIRD_STRONG_PASSWORD } }, at('192.0.2.50')));
  });
});
