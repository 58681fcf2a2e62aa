/**
 * Retries and poison posts (issue 13): a post whose alarm committed is answered 200 even when the
 * liveness write beside it fails on a killed connection; a camera's retry of a post that already
 * made an alarm changes nothing; device times Postgres cannot hold, and text it refuses, are
 * stored (time as unknown) instead of earning a 503 or a WebSocket "resend" the device would
 * repeat forever. The killed-connection tests need Postgres: PGlite runs in-process on one
 * connection that nothing can terminate.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import { isDriverWriteAfterClose } from '../src/db/driver-faults';
import { alertXml, connectDevice, isapiPost, insertBoundDevice, storedAlarms } from './helpers/alarms-fixtures';
import { registerUser, type TestUser } from './helpers/devices';
import { freshDatabase, hasPostgres, startApp, testClock, waitFor, type TestApp } from './helpers/harness';

const XML = 'application/xml';
const NEEDS_POSTGRES = hasPostgres ? false : 'skipped: no Postgres (set TEST_DATABASE_URL; PGlite has one in-process connection that cannot be killed)';

let t: TestApp;
let owner: TestUser;
let database: { url: string; drop(): Promise<void> } | undefined;
const clock = testClock();

before(async () => {
  database = await freshDatabase();
  t = await startApp({ clock: clock.now, ...(database ? { databaseUrl: database.url } : {}) });
  owner = await registerUser(t, 'retry-owner');
});
after(async () => {
  await t.stop();
  await database?.drop();
});

const boundDevice = () => insertBoundDevice(t.app.db.db, owner.id, clock.now());
const storedRows = (deviceId: string) => storedAlarms(t.app.db.db, deviceId);

describe('retried posts', () => {
  test('stores a post once when the camera resends it after the quiet window', async () => {
    const d = await boundDevice();
    const body = alertXml({ eventType: 'VMD', channel: 2, count: 1, dateTime: '2026-11-21T10:00:00+08:00' });
    assert.equal((await isapiPost(t.url, d.ingestPath, body, XML)).status, 200);
    clock.advance(11_000);
    assert.equal((await isapiPost(t.url, d.ingestPath, body, XML)).status, 200);
    const rows = await storedRows(d.id);
    assert.equal(rows.length, 1, 'the retry made no second alarm');
    assert.equal(rows[0]!.postCount, 1, 'nor counted as a new post');
  });

  test('stores a post once when the camera resends it within the quiet window, and after the alarm ended', async () => {
    const d = await boundDevice();
    const body = alertXml({ eventType: 'linedetection', channel: 1, count: 1, dateTime: '2026-11-21T11:00:00Z' });
    assert.equal((await isapiPost(t.url, d.ingestPath, body, XML)).status, 200);
    clock.advance(3000);
    assert.equal((await isapiPost(t.url, d.ingestPath, body, XML)).status, 200);
    assert.equal((await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'linedetection', state: 'inactive', dateTime: '2026-11-21T11:00:04Z' }), XML)).status, 200);
    clock.advance(5000);
    assert.equal((await isapiPost(t.url, d.ingestPath, body, XML)).status, 200);
    const rows = await storedRows(d.id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.postCount, 1);
    assert.equal(rows[0]!.endedAt?.toISOString(), '2026-11-21T11:00:04.000Z', 'the retry did not reopen it');
  });

  test("treats a resend of an alarm's last post after the quiet window as that post, not a new alarm", async () => {
    const d = await boundDevice();
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'fielddetection', count: 1, dateTime: '2026-11-21T12:00:00Z' }), XML);
    clock.advance(2000);
    const last = alertXml({ eventType: 'fielddetection', count: 2, dateTime: '2026-11-21T12:00:02Z' });
    await isapiPost(t.url, d.ingestPath, last, XML);
    clock.advance(12_000);
    assert.equal((await isapiPost(t.url, d.ingestPath, last, XML)).status, 200);
    const rows = await storedRows(d.id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.postCount, 2);
  });

  test('opens a new alarm for the same device time once the retry window has passed (a stuck device clock)', async () => {
    const d = await boundDevice();
    const body = alertXml({ eventType: 'PIR', count: 1, dateTime: '1970-01-01T00:00:00Z' });
    await isapiPost(t.url, d.ingestPath, body, XML);
    clock.advance(61_000);
    await isapiPost(t.url, d.ingestPath, body, XML);
    clock.advance(61_000);
    await isapiPost(t.url, d.ingestPath, body, XML);
    assert.equal((await storedRows(d.id)).length, 3);
  });
});

describe('poison posts', () => {
  const times = ['0000-01-01', '+275760-09-13', '9999-12-31T23:59:59-23:59', '0000-01-01T00:00:00Z', '-000001-01-01T00:00:00Z', '9999-12-31T23:59:59.999-14:00'];

  test('stores ISAPI alarms whose device time Postgres cannot hold with the time as unknown, answering 200', async () => {
    const d = await boundDevice();
    for (const [i, dateTime] of times.entries()) {
      const res = await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'VMD', channel: 10 + i, dateTime }), XML);
      assert.equal(res.status, 200, dateTime);
    }
    const rows = await storedRows(d.id);
    assert.equal(rows.length, times.length);
    for (const r of rows) {
      assert.equal(r.lastPostDeviceAt, null);
      assert.equal(r.startedAt.getTime(), r.receivedAt.getTime(), 'the receive time stands in');
    }
  });

  test('stores ISAPI alarms carrying text Postgres refuses (NUL, unpaired surrogates) instead of answering 503', async () => {
    const d = await boundDevice();
    const json = '{"eventType":"VMD","channelID":5,"macAddress":"\\ud800x","serialNumber":"\\udc00","eventDescription":"a\\u0000b","dateTime":"2026-11-21T10:00:00Z"}';
    assert.equal((await isapiPost(t.url, d.ingestPath, json, 'application/json')).status, 200);
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(alertXml({ eventType: 'VMD', channel: 6, description: 'x\ud800y' }), 'utf16le')]);
    assert.equal((await isapiPost(t.url, d.ingestPath, utf16, XML)).status, 200);
    const xmlRef = alertXml({ eventType: 'VMD', channel: 7 }).replace('<macAddress>44:19:b6:7a:10:2c</macAddress>', '<macAddress>&#xD800;</macAddress>');
    assert.equal((await isapiPost(t.url, d.ingestPath, xmlRef, XML)).status, 200);
    assert.equal((await storedRows(d.id)).length, 3);
  });

  test('acks WebSocket events whose device time or id Postgres cannot hold, storing them once, never closing 1011', async () => {
    const d = await boundDevice();
    const dev = await connectDevice(t.url, d);
    try {
      const ids = times.map((_, i) => `poison-${i}`).concat(['nul\u0000id', 'lone\ud800id']);
      ids.forEach((id, i) => dev.send({ type: 'event', id, channel: 20 + i, eventType: 'VMD', state: 'active', at: times[i] ?? '2026-11-21T10:00:00Z', description: i === ids.length - 1 ? 'bad\ud800text' : 'x' }));
      for (const id of ids) await dev.waitFrame((f) => f.type === 'ack' && f.id === id, `ack of ${JSON.stringify(id)}`);
      assert.equal(dev.ws.readyState, dev.ws.OPEN);
      // Resent after a reconnect: acked again, stored once.
      dev.send({ type: 'event', id: 'poison-0', channel: 20, eventType: 'VMD', state: 'active', at: times[0] });
      await waitFor(() => dev.frames.filter((f) => f.type === 'ack' && f.id === 'poison-0').length === 2);
      const rows = await storedRows(d.id);
      assert.equal(rows.length, ids.length);
      for (const r of rows.filter((r) => r.channel < 20 + times.length)) assert.equal(r.lastPostDeviceAt, null);
    } finally {
      dev.close();
    }
  });
});

/**
 * The driver's write-after-close fault (src/db/driver-faults.ts) is not the door's: here it is
 * taken aside once connections start being killed, as the gateway process does, so this file
 * judges the door. Any other uncaught error still fails the file.
 */
function setAsideDriverWriteAfterClose() {
  process.setUncaughtExceptionCaptureCallback((err) => {
    const known = isDriverWriteAfterClose(err);
    process.stderr.write(`${known ? 'postgres.js write after close (known driver bug), set aside' : 'uncaught'}: ${err.stack ?? String(err)}\n`);
    if (!known) process.exitCode = 1;
  });
}

describe('killed database connections', () => {
  before(() => {
    if (hasPostgres) setAsideDriverWriteAfterClose();
  });

  test('answers 200 and stores once when the liveness update dies on a killed connection after the alarm committed', { skip: NEEDS_POSTGRES }, async () => {
    const d = await boundDevice();
    const sql = postgres(database!.url, { max: 1, onnotice: () => {} });
    try {
      const body = alertXml({ eventType: 'VMD', channel: 4, count: 1, dateTime: '2026-11-21T13:00:00Z' });
      const res = await sql.begin(async (tx) => {
        // Holds the device row so the gateway's last_seen_at update waits (the alarm insert only needs KEY SHARE on it).
        await tx`select 1 from devices where id = ${d.id} for no key update`;
        const post = isapiPost(t.url, d.ingestPath, body, XML);
        await waitFor(async () => Number((await tx`select count(*)::int as n from alarms where device_id = ${d.id}`)[0]!.n) === 1, 10_000, 'the alarm commit');
        const [blocked] = await waitFor(
          () => tx`select pid from pg_stat_activity where datname = current_database() and application_name = 'vigil' and wait_event_type = 'Lock' and query ilike '%update "devices"%'`,
          10_000,
          'the blocked liveness update',
        );
        await tx`select pg_terminate_backend(${blocked!.pid}::int)`;
        return post;
      });
      assert.equal(res.status, 200, 'the alarm committed: its answer is 200');
      clock.advance(11_000);
      assert.equal((await isapiPost(t.url, d.ingestPath, body, XML)).status, 200, "the camera's resend");
      const rows = await storedRows(d.id);
      assert.equal(rows.length, 1);
      assert.equal(rows[0]!.postCount, 1);
    } finally {
      await sql.end();
    }
  });

  test('stores every alarm exactly once while the gateway connections are killed mid-statement again and again', { skip: NEEDS_POSTGRES }, async () => {
    const d = await boundDevice();
    const killer = postgres(database!.url, { max: 1, onnotice: () => {} });
    let killing = true;
    let kills = 0;
    const loop = (async () => {
      while (killing) {
        // Connections in the middle of a statement or a transaction: the writes whose fate is in doubt.
        // Young ones are spared: a connection killed while it starts costs the driver its 30 s connect timeout.
        const rows = await killer`select pg_terminate_backend(pid) as killed from pg_stat_activity
          where datname = current_database() and application_name = 'vigil' and state in ('active', 'idle in transaction')
            and backend_start < clock_timestamp() - interval '300 milliseconds' and pid <> pg_backend_pid()`;
        kills += rows.filter((r) => r.killed).length;
        await new Promise((r) => setTimeout(r, 1 + Math.random() * 4));
      }
    })();
    const statuses = new Map<number, number>();
    try {
      for (let channel = 1; channel <= 40; channel++) {
        const body = alertXml({ eventType: 'VMD', channel, count: 1, dateTime: new Date(Date.UTC(2026, 10, 21, 14, 0, channel)).toISOString() });
        // The camera: resends until it gets its 200, as real firmware does.
        for (let attempt = 0; ; attempt++) {
          const res = await isapiPost(t.url, d.ingestPath, body, XML).catch(() => ({ status: 0, text: '' }));
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          assert.ok(res.status === 200 || res.status === 503 || res.status === 0, `answered ${res.status}`);
          if (res.status === 200) break;
          assert.ok(attempt < 50, `channel ${channel} never stored`);
        }
      }
    } finally {
      killing = false;
      await loop;
      await killer.end();
      // Every pooled connection reconnected before the app stops: postgres.js 3.4.9 can throw from a
      // write it deferred on a connection that was killed (porsager/postgres#1154, #1208).
      for (let i = 0; i < 3; i++) await Promise.allSettled(Array.from({ length: 12 }, () => t.app.db.ping()));
    }
    assert.ok(kills > 0, 'connections were killed');
    const rows = await storedRows(d.id);
    assert.equal(rows.length, 40, `one alarm per post (answers: ${JSON.stringify([...statuses])}, kills: ${kills})`);
    for (const r of rows) assert.equal(r.postCount, 1, `channel ${r.channel} counted a resend as a new post`);
  });
});
