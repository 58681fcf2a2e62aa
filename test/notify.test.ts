import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { pino } from 'pino';
import { openDb, tables, type DbHandle } from '../src/db/index';
import { randomBytes } from 'node:crypto';
import { aesGcmSecretBox } from '../src/accounts/totp.service';
import { createDeliveryWorker, enqueueMessage, openBody, REMOVED_SECRET, retryDelayMs, sealedBody, smsWebhookTransport, type ClaimedMessage, type Transport } from '../src/notify/index';
import { RegisterDocument, RequestResetDocument } from './generated/graphql';
import { expectData, freshDatabase, startApp, STRONG_PASSWORD, uniqueEmail, waitFor, type TestApp } from './helpers/harness';
import { readResetMessage, startSmsCatcher, startSmtpCatcher, type SmsCatcher, type SmtpCatcher } from './helpers/mail-catchers';

const PUBLIC_URL = 'https://vigil.example';
const silent = pino({ level: 'silent' });
let phoneCounter = 3000 + (process.pid % 3000);
const uniquePhone = () => `+1202555${String(phoneCounter++).padStart(4, '0')}`;

/** A migrated database of our own (fresh Postgres database, or PGlite in `dataDir`/memory), outside any app. */
async function openTestDb(dataDir = ':memory:'): Promise<{ handle: DbHandle; databaseUrl: string | undefined; close(): Promise<void>; drop(): Promise<void> }> {
  const fresh = await freshDatabase();
  const handle = await openDb({ databaseUrl: fresh?.url, dataDir });
  await handle.migrate();
  let closed: Promise<void> | undefined;
  const close = () => (closed ??= handle.close());
  return {
    handle,
    databaseUrl: fresh?.url,
    close,
    drop: async () => {
      await close();
      await fresh?.drop();
    },
  };
}

const outboxRows = (app: TestApp, recipient: string) => app.app.db.db.select().from(tables.outbox).where(eq(tables.outbox.recipient, recipient));

async function register(app: TestApp, login: { email?: string; phone?: string }) {
  return expectData(await app.gql(RegisterDocument, { input: { ...login, password: STRONG_PASSWORD } })).register;
}

describe('delivery through the app', () => {
  let mail: SmtpCatcher;
  let sms: SmsCatcher;
  let t: TestApp;
  before(async () => {
    [mail, sms] = await Promise.all([startSmtpCatcher(), startSmsCatcher()]);
    t = await startApp({ env: { SMTP_URL: mail.url, SMS_WEBHOOK_URL: sms.url, PUBLIC_URL, RESET_MAX_PER_IP: '1000' } });
  });
  after(async () => {
    await t?.stop();
    await Promise.all([mail?.stop(), sms?.stop()]);
  });

  test('retries mail with backoff when the SMTP server is down and delivers it once it is back', async () => {
    const email = uniqueEmail('smtp-down');
    await register(t, { email });
    await mail.down();
    try {
      expectData(await t.gql(RequestResetDocument, { login: email }));
      const [failed] = await waitFor(async () => {
        const rows = await outboxRows(t, email);
        return rows.length && rows[0]!.attempts >= 1 && rows[0]!.lastError ? rows : null;
      }, 10_000, 'a failed attempt');
      assert.equal(failed!.sentAt, null);
      assert.equal(failed!.failedAt, null, 'one failure does not give up');
      // Waiting for a retry, the row holds the code and link only sealed (before: in the clear, for up to 18 min).
      assert.match(failed!.body, /^sealed:/);
      assert.ok(!failed!.body.includes('/reset?token='), 'no link in the clear');
      assert.ok(failed!.nextAttemptAt > failed!.createdAt, 'the retry is scheduled later');
    } finally {
      await mail.up();
    }
    const message = await mail.waitForMessage((m) => m.to === email, 15_000);
    assert.match(readResetMessage(message.body, PUBLIC_URL).code, /^\d{6}$/);
    const [row] = await waitFor(async () => {
      const rows = await outboxRows(t, email);
      return rows[0]?.sentAt ? rows : null;
    });
    assert.ok(row!.attempts >= 2, `attempts counted: ${row!.attempts}`);
    assert.equal(mail.messages.filter((m) => m.to === email).length, 1, 'delivered once');
    // Delivered, the row keeps the text with the secrets removed: no working code or token.
    const { code, token } = readResetMessage(message.body, PUBLIC_URL);
    assert.ok(!row!.body.includes(code) && !row!.body.includes(token), row!.body);
    assert.equal(row!.body, message.body.replace(code, REMOVED_SECRET).replace(`${PUBLIC_URL}/reset?token=${token}`, REMOVED_SECRET).trimEnd());
  });

  test('retries an SMS when the webhook answers 500 and delivers it when it answers 200', async () => {
    const phone = uniquePhone();
    await register(t, { phone });
    sms.failNext(2, 500);
    expectData(await t.gql(RequestResetDocument, { login: phone }));
    await sms.waitForMessage((m) => m.to === phone, 15_000);
    assert.deepEqual(
      sms.requests.filter((r) => r.to === phone).map((r) => r.status),
      [500, 500, 200],
    );
    const [row] = await waitFor(async () => {
      const rows = await outboxRows(t, phone);
      return rows[0]?.sentAt ? rows : null;
    });
    assert.equal(row!.attempts, 3);
  });
});

test('delivers messages a crashed node left pending when an app starts on the same database', async () => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'vigil-crash-'));
  const mail = await startSmtpCatcher();
  // The "crashed" node: one message committed but never kicked, one claimed mid-send (lease run out).
  const db = await openTestDb(dataDir);
  let t: TestApp | undefined;
  try {
    await enqueueMessage(db.handle.db, { channel: 'email', recipient: 'pending@example.com', kind: 'password-changed', subject: 'pending', body: 'never sent' });
    await db.handle.db.insert(tables.outbox).values({
      channel: 'email',
      recipient: 'claimed@example.com',
      kind: 'password-changed',
      subject: 'claimed',
      body: 'claimed by a node that died',
      attempts: 1,
      nextAttemptAt: new Date(Date.now() - 1000),
    });
    await db.close();

    t = await startApp({ databaseUrl: db.databaseUrl, env: { DATA_DIR: dataDir, SMTP_URL: mail.url } });
    await mail.waitForMessage((m) => m.to === 'pending@example.com');
    await mail.waitForMessage((m) => m.to === 'claimed@example.com');
    const rows = await waitFor(async () => {
      const all = await t!.app.db.db.select().from(tables.outbox);
      return all.every((r) => r.sentAt) ? all : null;
    });
    assert.deepEqual(rows.map((r) => r.attempts).sort(), [1, 2]);
  } finally {
    await t?.stop();
    await db.drop();
    await mail.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
});

test('writes messages to DATA_DIR/outbox with mode 0600 when no SMTP or SMS transport is configured', async (ctx) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'vigil-outbox-'));
  ctx.after(() => rm(dataDir, { recursive: true, force: true }));
  const t = await startApp({ env: { DATA_DIR: dataDir, PUBLIC_URL } });
  ctx.after(() => t.stop());
  const email = uniqueEmail('file');
  const phone = uniquePhone();
  await register(t, { email });
  await register(t, { phone });
  expectData(await t.gql(RequestResetDocument, { login: email }));
  expectData(await t.gql(RequestResetDocument, { login: phone }));
  const dir = path.join(dataDir, 'outbox');
  const files = await waitFor(async () => {
    const names = await readdir(dir).catch(() => [] as string[]);
    return names.filter((n) => /^\d+-password-reset\.txt$/.test(n)).length === 2 ? names : null;
  }, 10_000, 'two outbox files');
  const texts = await Promise.all(files.map((f) => readFile(path.join(dir, f), 'utf8')));
  for (const f of files) assert.equal((await stat(path.join(dir, f))).mode & 0o777, 0o600, `${f} is private`);
  const mailText = texts.find((x) => x.includes(`To: ${email}`));
  const smsText = texts.find((x) => x.includes(`To: ${phone}`));
  assert.ok(mailText && smsText, texts.join('\n---\n'));
  assert.match(readResetMessage(mailText, PUBLIC_URL).code, /^\d{6}$/);
  assert.match(readResetMessage(smsText, PUBLIC_URL).token, /^[A-Za-z0-9_-]{43}$/);
  const [row] = await waitFor(async () => {
    const rows = await outboxRows(t, email);
    return rows[0]?.sentAt ? rows : null;
  });
  assert.ok(files.includes(`${row!.id}-password-reset.txt`), 'named <id>-<kind>.txt');
});

describe('delivery worker', () => {
  let db: Awaited<ReturnType<typeof openTestDb>>;
  before(async () => {
    db = await openTestDb();
  });
  after(() => db?.drop());

  test('marks a message failed after the last attempt when its transport keeps failing', async (ctx) => {
    let calls = 0;
    const failing: Transport = {
      name: 'failing',
      async send() {
        calls++;
        throw new Error('relay says no');
      },
    };
    const worker = createDeliveryWorker({ db: db.handle.db, clock: () => new Date(), log: silent, transports: { email: failing, sms: failing }, maxAttempts: 3, baseDelayMs: 5 });
    ctx.after(() => worker.stop());
    await enqueueMessage(db.handle.db, { channel: 'email', recipient: 'doomed@example.com', kind: 'test', subject: 's', body: 'b' });
    worker.start();
    const [row] = await waitFor(async () => {
      const rows = await db.handle.db.select().from(tables.outbox).where(eq(tables.outbox.recipient, 'doomed@example.com'));
      return rows[0]?.failedAt ? rows : null;
    });
    assert.equal(row!.attempts, 3);
    assert.equal(calls, 3);
    assert.equal(row!.sentAt, null);
    assert.equal(row!.lastError, 'relay says no');
  });

  test('retries when the retry is due even if its timer fires before the clock reaches it', async (ctx) => {
    // The clock reads 40 ms ahead once, as the retry is scheduled: the timer (set for the short
    // delay) then fires before the retry is due. Before, the worker then slept a whole poll interval.
    let aheadOnce = 0;
    const clock = () => {
      const d = new Date(Date.now() + aheadOnce);
      aheadOnce = 0;
      return d;
    };
    let calls = 0;
    const flaky: Transport = {
      name: 'flaky',
      async send() {
        if (++calls === 1) {
          aheadOnce = 40;
          throw new Error('try later');
        }
      },
    };
    const worker = createDeliveryWorker({ db: db.handle.db, clock, log: silent, transports: { email: flaky, sms: flaky }, baseDelayMs: 5, pollIntervalMs: 60_000 });
    ctx.after(() => worker.stop());
    await enqueueMessage(db.handle.db, { channel: 'email', recipient: 'early-timer@example.com', kind: 'early-timer', subject: 's', body: 'b' });
    worker.start();
    const [row] = await waitFor(async () => {
      const rows = await db.handle.db.select().from(tables.outbox).where(eq(tables.outbox.recipient, 'early-timer@example.com'));
      return rows[0]?.sentAt ? rows : null;
    }, 5000, 'the retry sent well before the poll interval');
    assert.equal(row!.attempts, 2);
    assert.equal(calls, 2);
  });

  test('delivers each message exactly once when two workers claim from one database', async (ctx) => {
    // On Postgres each worker has its own connection pool, as two gateway nodes would.
    const second = db.databaseUrl ? await openDb({ databaseUrl: db.databaseUrl, dataDir: ':memory:' }) : db.handle;
    ctx.after(async () => {
      if (second !== db.handle) await second.close();
    });
    const sent = new Map<number, string[]>();
    const recipients = Array.from({ length: 40 }, (_, i) => `many-${i}@example.com`);
    const transportFor = (node: string): Transport => ({
      name: node,
      async send(m: ClaimedMessage) {
        // Only this test's messages: one an earlier test left unsent must not count here.
        if (recipients.includes(m.recipient)) sent.set(m.id, [...(sent.get(m.id) ?? []), node]);
        await new Promise((r) => setImmediate(r));
      },
    });
    for (const recipient of recipients) await enqueueMessage(db.handle.db, { channel: 'email', recipient, kind: 'test', subject: 's', body: 'b' });
    const workers = [
      createDeliveryWorker({ db: db.handle.db, clock: () => new Date(), log: silent, transports: { email: transportFor('a'), sms: transportFor('a') }, batchSize: 5 }),
      createDeliveryWorker({ db: second.db, clock: () => new Date(), log: silent, transports: { email: transportFor('b'), sms: transportFor('b') }, batchSize: 5 }),
    ];
    ctx.after(() => Promise.all(workers.map((w) => w.stop())));
    for (const w of workers) w.start();
    await waitFor(async () => {
      const rows = await db.handle.db.select().from(tables.outbox).where(eq(tables.outbox.kind, 'test'));
      return rows.filter((r) => recipients.includes(r.recipient)).every((r) => r.sentAt);
    }, 10_000, 'all sent');
    assert.equal(sent.size, 40);
    for (const [id, nodes] of sent) assert.equal(nodes.length, 1, `message ${id} sent by ${nodes.join(', ')}`);
  });
});

describe('sealed bodies', () => {
  test('open to the full text for sending and to a redacted text for keeping, with the right key only', () => {
    const box = aesGcmSecretBox(randomBytes(32));
    const body = sealedBody(box, 'a@example.com', 'code {{code}} link {{link}}', { code: '012345', link: 'https://x/reset?token=t' });
    assert.ok(!body.includes('012345') && !body.includes('token=t'));
    assert.deepEqual(openBody(box, 'a@example.com', body), { text: 'code 012345 link https://x/reset?token=t', redacted: `code ${REMOVED_SECRET} link ${REMOVED_SECRET}` });
    assert.deepEqual(openBody(undefined, 'a@example.com', 'plain notice'), { text: 'plain notice', redacted: null });
    assert.throws(() => openBody(aesGcmSecretBox(randomBytes(32)), 'a@example.com', body));
    assert.throws(() => openBody(box, 'b@example.com', body), 'bound to its recipient');
    assert.throws(() => openBody(undefined, 'a@example.com', body));
  });
});

describe('transports and backoff', () => {
  test('fails an SMS when the webhook does not answer within the timeout', async (ctx) => {
    const hanging = createServer(() => {});
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    ctx.after(() => {
      hanging.closeAllConnections();
      hanging.close();
    });
    const transport = smsWebhookTransport(`http://127.0.0.1:${(hanging.address() as AddressInfo).port}/`, 200);
    const message = { id: 1, channel: 'sms' as const, recipient: '+12025550100', subject: '', body: 'hi', kind: 'test', attempts: 1 };
    await assert.rejects(transport.send(message), /abort|timeout/i);
  });

  test('grows the retry delay exponentially with jitter and caps it when attempts pile up', () => {
    assert.equal(retryDelayMs(1, 1000, 300_000, () => 0), 500);
    assert.equal(retryDelayMs(1, 1000, 300_000, () => 1), 1000);
    assert.equal(retryDelayMs(4, 1000, 300_000, () => 0), 4000);
    assert.equal(retryDelayMs(4, 1000, 300_000, () => 1), 8000);
    assert.equal(retryDelayMs(30, 1000, 300_000, () => 1), 300_000);
    const spread = new Set(Array.from({ length: 20 }, () => retryDelayMs(3, 1000, 300_000)));
    assert.ok(spread.size > 1, 'jittered');
    for (const d of spread) assert.ok(d >= 2000 && d <= 4000);
  });
});
