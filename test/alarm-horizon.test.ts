import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import { sql } from 'drizzle-orm';
import pino from 'pino';
import type { AlarmRow } from '../src/streams/alarms/alarm-store';
import { createEventBus } from '../src/streams/bus/event-bus';
import { createAlarmTailer } from '../src/streams/live/alarm-tail';
import { alarmPost, insertBinding, insertDevice, insertUser } from './helpers/alarms-fixtures';
import { hasPostgres, startApp, testClock, waitFor, type TestApp } from './helpers/harness';
import { scratchDatabase } from './helpers/scratch-database';

const needs = { skip: !hasPostgres && 'needs Postgres (a second database on the same server)' };

let t: TestApp;
const clock = testClock();

before(async () => {
  if (hasPostgres) t = await startApp({ clock: clock.now });
});
after(() => t?.stop());

const postOf = (n: number) => alarmPost(`horizon${n}`);

/** Runs a transaction that has taken an xid and stays open until `release()`. */
async function openTransaction(begin: (body: (xid: bigint) => Promise<void>) => Promise<unknown>) {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let gotXid!: (x: bigint) => void;
  const xid = new Promise<bigint>((r) => (gotXid = r));
  const done = begin(async (x) => {
    gotXid(x);
    await held;
  });
  return { xid: await xid, release: async () => (release(), await done) };
}

describe('alarm horizon on a server shared with other databases', () => {
  test('delivers and replays an alarm while a transaction of another database older than it is still open', needs, async () => {
    const db = t.app.db.db;
    const store = t.app.alarmStore;
    const userId = await insertUser(db);
    const device = await insertDevice(db);
    await insertBinding(db, device.id, userId, clock.now());
    const tailer = createAlarmTailer({ store, bus: createEventBus(), log: pino({ level: 'silent' }) });
    const other = await scratchDatabase(process.env.TEST_DATABASE_URL!, 'vigil_t_');
    const otherSql = postgres(other.url, { max: 1, onnotice: () => {} });
    const got: AlarmRow[] = [];
    try {
      tailer.start();
      await tailer.register((row) => got.push(row));
      const foreign = await openTransaction((body) =>
        otherSql.begin(async (tx) => {
          const [r] = await tx`select (pg_current_xact_id()::text)::bigint as xid`;
          await body(BigInt(r!.xid as string));
        }),
      );
      try {
        const stored = await store.record(device.id, postOf(1));
        const alarm = stored.alarm!;
        assert.ok(BigInt(alarm.xid) > foreign.xid, 'the other database\'s transaction is older than the alarm');
        // The cluster-wide xmin stays at the other database's transaction: only a horizon of this database lets the alarm through.
        await waitFor(() => got.some((r) => r.id === alarm.id), 5000, 'the alarm delivered while the other transaction is open');
        // A resume replays up to the tailer's position from the database: the alarm is there too.
        const replayed = await store.replayForUser(userId, clock.now(), null, null, 100, tailer.position()!);
        assert.deepEqual(
          replayed.map((r) => r.id),
          [alarm.id],
        );
      } finally {
        await foreign.release();
      }
    } finally {
      await tailer.stop();
      await otherSql.end();
      await other.drop();
    }
  });

  test('holds an alarm back behind an older open transaction of its own database, then delivers it once, in order', needs, async () => {
    const db = t.app.db.db;
    const store = t.app.alarmStore;
    const userId = await insertUser(db);
    const device = await insertDevice(db);
    await insertBinding(db, device.id, userId, clock.now());
    const tailer = createAlarmTailer({ store, bus: createEventBus(), log: pino({ level: 'silent' }) });
    const got: AlarmRow[] = [];
    try {
      tailer.start();
      await tailer.register((row) => got.push(row));
      const own = await openTransaction((body) =>
        db.transaction(async (tx) => {
          const [r] = (await tx.execute(sql`select (pg_current_xact_id()::text)::bigint as xid`)) as unknown as Array<{ xid: string }>;
          await body(BigInt(r!.xid));
        }),
      );
      let alarm: AlarmRow;
      try {
        alarm = (await store.record(device.id, postOf(2))).alarm!;
        assert.ok(BigInt(alarm.xid) > own.xid);
        const read = await store.tailAfter({ xid: 0, seq: 0 }, 1000);
        assert.ok(BigInt(read.horizon) <= own.xid, 'the open transaction of this database holds the horizon');
        assert.ok(!read.rows.some((r) => r.id === alarm.id), 'the alarm is not final yet');
        assert.ok(!got.some((r) => r.id === alarm.id));
      } finally {
        await own.release();
      }
      tailer.wake();
      await waitFor(() => got.some((r) => r.id === alarm.id), 5000, 'the alarm once the older transaction ended');
      assert.equal(got.filter((r) => r.id === alarm.id).length, 1);
    } finally {
      await tailer.stop();
    }
  });
});
