import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { eq, sql } from 'drizzle-orm';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { tables } from '../src/db/index';
import {
  AlarmCursorsDocument,
  AlarmDeviceViewsDocument,
  AlarmEventsDocument,
  AlarmIdsDocument,
  ChangePasswordDocument,
  CreateApiKeyDocument,
  DeviceStatusEventsDocument,
  GrantShareDocument,
  LoginDocument,
  LogoutDocument,
  RevokeApiKeyDocument,
  RevokeSessionDocument,
  RevokeShareDocument,
  SessionsDocument,
  TransferDeviceDocument,
  UnbindDeviceDocument,
  type AlarmCursorsSubscription,
  type AlarmEventsSubscription,
  type DeviceStatusEventsSubscription,
} from './generated/graphql';
import { alarmPost, alertXml, connectDevice, isapiPost, type TestDevice } from './helpers/alarms-fixtures';
import { provisionAndBind, registerUser, type Provisioned, type TestUser } from './helpers/devices';
import { requireServices } from './helpers/gateway-process';
import { expectData, OTHER_STRONG_PASSWORD, startApp, STRONG_PASSWORD, testClock, waitFor, type TestApp } from './helpers/harness';
import { gauge, subscribe, subscriptionsRunning, wsClient, type TestWsClient } from './helpers/subscriptions';

type StatusEvent = DeviceStatusEventsSubscription['deviceStatus'];
type AlarmEvent = AlarmEventsSubscription['alarms'];

let t: TestApp;
const clock = testClock();
const clients: TestWsClient[] = [];
const devices: TestDevice[] = [];

before(async () => {
  t = await startApp({
    clock: clock.now,
    env: {
      REGISTER_MAX_PER_IP: '100',
      WS_MAX_CONNECTIONS_PER_USER: '4',
      WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: '3',
      WS_INIT_TIMEOUT_MS: '300',
      WS_MAX_PENDING_EVENTS: '20',
      WS_SLOW_CONSUMER_MS: '500',
      WS_MAX_BUFFERED_BYTES: String(64 * 1024),
    },
  });
});
// Each test starts with no subscription running, also after one that failed half-way.
afterEach(() => settle());
after(async () => {
  for (const d of devices) d.close();
  await Promise.all(clients.map((c) => c.dispose()));
  await t.stop();
});

/** A graphql-ws client for `token`, disposed after the file. */
function client(token: string | null): TestWsClient {
  const c = wsClient(t.url, token);
  clients.push(c);
  return c;
}

async function connect(p: Provisioned): Promise<TestDevice> {
  const d = await connectDevice(t.url, { serial: p.serial, deviceKey: p.deviceKey });
  devices.push(d);
  return d;
}

let channel = 100;
/** Posts an active alert on a fresh channel (so it opens a new alarm) and checks it was stored. */
async function raise(p: Provisioned, eventType = 'VMD'): Promise<void> {
  const res = await isapiPost(t.url, p.ingestPath, alertXml({ eventType, channel: channel++ }), 'application/xml');
  assert.equal(res.status, 200, res.text);
}

/** Inserts `n` ended alarms of the device's open binding in one transaction (no bus event: the tailer's tick finds them). */
async function insertAlarms(deviceId: string, n: number, description: string | null = null): Promise<string[]> {
  const db = t.app.db.db;
  const [binding] = await db.select({ id: tables.bindings.id }).from(tables.bindings).where(eq(tables.bindings.deviceId, deviceId));
  const now = clock.now();
  const rows = await db
    .insert(tables.alarms)
    .values(
      Array.from({ length: n }, () => ({
        deviceId,
        bindingId: binding!.id,
        source: 'ws',
        channel: channel++,
        eventType: 'vmd',
        rawType: 'VMD',
        alarmType: 'MOTION',
        description,
        startedAt: now,
        receivedAt: now,
        lastPostAt: now,
        endedAt: now,
      })),
    )
    .returning({ id: tables.alarms.id, seq: tables.alarms.seq });
  return rows.sort((a, b) => a.seq - b.seq).map((r) => r.id);
}

/** Ends every subscription and client of the test and waits until the server let go of them. */
async function settle(...subs: Array<{ stop(): void }>) {
  for (const s of subs) s.stop();
  await Promise.all(clients.splice(0).map((c) => c.dispose()));
  await subscriptionsRunning(t.app, 0);
}

const deviceIdsOf = (events: AlarmEvent[]) => events.map((e) => e.device.id);

describe('deviceStatus', () => {
  test('delivers ONLINE then OFFLINE with the device as the owner sees it when the device connects and disconnects', async () => {
    const owner = await registerUser(t, 'status-owner');
    const { device, provisioned } = await provisionAndBind(t, owner, { name: 'Porch' });
    const c = client(owner.token);
    const all = subscribe(c, DeviceStatusEventsDocument, {});
    await subscriptionsRunning(t.app, 1);

    const dev = await connect(provisioned);
    const [online] = await all.received(1);
    assert.equal(online!.deviceStatus.status, 'ONLINE');
    assert.equal(online!.deviceStatus.device.id, device.id);
    assert.equal(online!.deviceStatus.device.role, 'OWNER');
    assert.ok(!Number.isNaN(Date.parse(online!.deviceStatus.at)));
    dev.close();
    const events = await all.received(2);
    assert.equal(events[1]!.deviceStatus.status, 'OFFLINE');
    assert.deepEqual(all.errors, []);
    await settle(all);
  });

  test('delivers only the listed devices when deviceIds is given', async () => {
    const owner = await registerUser(t, 'status-filter');
    const one = await provisionAndBind(t, owner);
    const two = await provisionAndBind(t, owner);
    const c = client(owner.token);
    const onlyTwo = subscribe(c, DeviceStatusEventsDocument, { deviceIds: [two.device.id, 'not-an-id'] });
    await subscriptionsRunning(t.app, 1);
    await connect(one.provisioned);
    await connect(two.provisioned);
    const [first] = await onlyTwo.received(1);
    assert.equal(first!.deviceStatus.device.id, two.device.id);
    assert.equal(onlyTwo.events.length, 1);
    await settle(onlyTwo);
  });
});

describe('alarms', () => {
  let owner: TestUser;
  let one: { device: { id: string }; provisioned: Provisioned };
  let two: { device: { id: string }; provisioned: Provisioned };
  before(async () => {
    owner = await registerUser(t, 'alarm-owner');
    one = await provisionAndBind(t, owner);
    two = await provisionAndBind(t, owner);
  });

  test('delivers new alarms live in order, filtered by deviceIds and types, when the caller subscribes without a cursor', async () => {
    const c = client(owner.token);
    const all = subscribe(c, AlarmEventsDocument, {});
    const onlyTwo = subscribe(c, AlarmEventsDocument, { deviceIds: [two.device.id] });
    const lines = subscribe(c, AlarmEventsDocument, { types: ['LINE_CROSSING'] });
    await subscriptionsRunning(t.app, 3);

    await raise(one.provisioned, 'VMD');
    await raise(two.provisioned, 'VMD');
    await raise(one.provisioned, 'linedetection');
    const events = (await all.received(3)).map((e) => e.alarms);
    assert.deepEqual(deviceIdsOf(events), [one.device.id, two.device.id, one.device.id]);
    assert.deepEqual(events.map((e) => e.type), ['MOTION', 'MOTION', 'LINE_CROSSING']);
    const cursors = events.map((e) => e.cursor);
    assert.deepEqual(cursors, [...new Set(cursors)]);

    const [fromTwo] = await onlyTwo.received(1);
    assert.equal(fromTwo!.alarms.device.id, two.device.id);
    const [line] = await lines.received(1);
    assert.equal(line!.alarms.type, 'LINE_CROSSING');
    // The filtered streams are ordered too: nothing else arrived before or after the match.
    await raise(two.provisioned, 'linedetection');
    await onlyTwo.received(2);
    await lines.received(2);
    await all.received(4);
    assert.deepEqual(all.errors, []);
    await settle(all, onlyTwo, lines);
  });

  test('lets a resumed subscription share its group\'s execution once its replay has caught up, with every alarm once and in order', async () => {
    const a = client(owner.token);
    const b = client(owner.token);
    const live = subscribe(a, AlarmCursorsDocument, { deviceIds: [one.device.id] });
    await subscriptionsRunning(t.app, 1);
    await raise(one.provisioned);
    await raise(one.provisioned);
    const [first, second] = await live.received(2);
    // Resumes after the first: replays the second alone, then joins the live subscriber's group.
    const resumed = subscribe(b, AlarmCursorsDocument, { deviceIds: [one.device.id], after: first!.alarms.cursor });
    const [replayed] = await resumed.received(1);
    assert.equal(replayed!.alarms.id, second!.alarms.id);
    // One stream (the group's) serves both: the resumed one's own replay stream has ended.
    await waitFor(
      async () => t.app.services.live.alarmStreams() === 1 && (await gauge(t.app, 'vigil_graphql_subscription_groups')) === 1 && (await gauge(t.app, 'vigil_graphql_subscriptions')) === 2,
      5000,
      'one group and one stream for both',
    );
    await raise(one.provisioned);
    await raise(one.provisioned);
    const both = [await live.received(4), await resumed.received(3)];
    assert.deepEqual(
      both[1]!.map((e) => e.alarms.id),
      both[0]!.slice(1).map((e) => e.alarms.id),
    );
    assert.deepEqual(live.errors, []);
    assert.deepEqual(resumed.errors, []);
    await settle(live, resumed);
  });

  test("executes a replayed alarm once for all of a user's subscriptions resuming from the same cursor (a reconnect storm), each getting every alarm once and in order", async () => {
    const live = subscribe(client(owner.token), AlarmEventsDocument, { deviceIds: [one.device.id] });
    await subscriptionsRunning(t.app, 1);
    await raise(one.provisioned);
    await raise(one.provisioned);
    const [first, second] = await live.received(2);
    // Alarm.device is read per execution: count those reads while everyone replays.
    let deviceReads = 0;
    const stop = t.app.db.observeStatements((sql) => void (sql.startsWith('select "devices"."id", "devices"."serial"') && deviceReads++));
    const started = Date.now();
    const resumed: Array<ReturnType<typeof subscribe<AlarmEventsSubscription, Record<string, unknown>>>> = [];
    try {
      // The user's other three connections (the cap of this file), three subscriptions each (the
      // cap), one after the other: no two replays share a read that happens to run at once.
      for (let i = 0; i < 3; i++) {
        const c = client(owner.token);
        for (let j = 0; j < 3; j++) {
          const r = subscribe(c, AlarmEventsDocument, { deviceIds: [one.device.id], after: first!.alarms.cursor });
          resumed.push(r);
          assert.deepEqual((await r.received(1)).map((e) => [e.alarms.id, e.alarms.device.id]), [[second!.alarms.id, one.device.id]]);
        }
      }
    } finally {
      stop();
    }
    // At most one read per reuse window (1 s) however many subscribers replay (a slow machine gets more windows, not a failure).
    const windows = Math.floor((Date.now() - started) / 1000) + 1;
    assert.ok(deviceReads <= windows, `${deviceReads} device reads for 9 subscribers replaying one alarm in ${windows} s`);
    await waitFor(async () => t.app.services.live.alarmStreams() === 1, 5000, 'all joined the group');
    await raise(one.provisioned);
    const [third] = (await live.received(3)).slice(2);
    for (const r of resumed) assert.deepEqual((await r.received(2)).map((e) => e.alarms.id), [second!.alarms.id, third!.alarms.id]);
    for (const r of [live, ...resumed]) assert.deepEqual(r.errors, []);
    await settle(live, ...resumed);
  });

  test('delivers a burst larger than its buffer exactly once and in order by catching up from the database', async () => {
    const c = client(owner.token);
    const live = subscribe(c, AlarmCursorsDocument, {});
    const last = expectData(await t.gql(AlarmIdsDocument, { first: 1 }, { token: owner.token })).alarms.edges[0]?.cursor ?? null;
    const resumed = subscribe(c, AlarmCursorsDocument, { after: last });
    await subscriptionsRunning(t.app, 2);
    // 100 rows reach the tailer in one read; the streams buffer 20 (WS_MAX_PENDING_EVENTS) and read the rest from the database.
    const ids = await insertAlarms(one.device.id, 100);
    assert.deepEqual((await live.received(100)).map((e) => e.alarms.id), ids);
    assert.deepEqual((await resumed.received(100)).map((e) => e.alarms.id), ids);
    await settle(live, resumed);
  });

  test(
    'delivers live alarms in cursor order with no gap when transactions commit out of order',
    { skip: requireServices({ postgres: true }) },
    async () => {
      const db = t.app.db.db;
      const [binding] = await db.select({ id: tables.bindings.id }).from(tables.bindings).where(eq(tables.bindings.deviceId, one.device.id));
      const row = () => {
        const now = clock.now();
        return { deviceId: one.device.id, bindingId: binding!.id, source: 'ws', channel: channel++, eventType: 'vmd', rawType: 'VMD', alarmType: 'MOTION', startedAt: now, receivedAt: now, lastPostAt: now, endedAt: now };
      };
      const c = client(owner.token);
      const live = subscribe(c, AlarmCursorsDocument, {});
      await subscriptionsRunning(t.app, 1);

      // T1 inserts first (the smaller xid) and stays open; T2 inserts later and commits first.
      let inserted!: () => void;
      let release!: () => void;
      const firstInserted = new Promise<void>((r) => (inserted = r));
      const t1Release = new Promise<void>((r) => (release = r));
      let early = '';
      const t1 = db.transaction(async (tx) => {
        [{ id: early }] = (await tx.insert(tables.alarms).values(row()).returning({ id: tables.alarms.id })) as [{ id: string }];
        inserted();
        await t1Release;
      });
      await firstInserted;
      const [{ id: late }] = (await db.insert(tables.alarms).values(row()).returning({ id: tables.alarms.id })) as [{ id: string }];
      t.app.bus.publish('alarm.created', { alarmId: late, deviceId: one.device.id, bindingId: binding!.id, cursor: 'announced' });
      // Let the tailer read a few times while T1 holds the horizon back: the later row must wait.
      let reads = 0;
      const stop = t.app.db.observeStatements((sql) => void (sql.includes('pg_snapshot_xmin') && sql.includes('limit') && reads++));
      await waitFor(() => reads >= 3, 5000, 'tailer reads while T1 is open');
      stop();
      assert.equal(live.events.length, 0, 'nothing delivered past the horizon');
      release();
      await t1;
      const got = await live.received(2);
      assert.deepEqual(got.map((e) => e.alarms.id), [early, late], 'the earlier transaction first, then the later one');
      await settle(live);
    },
  );

  /** An active post on a fresh channel, stored straight through the store (the path both doors take). */
  const storePost = (description: string, identity: string) => alarmPost('VMD', { alarmType: 'MOTION', channel: channel++, description, identity });

  test(
    'holds an alarm committed on this node behind an older transaction that commits later, then delivers both in cursor order',
    { skip: requireServices({ postgres: true }) },
    async () => {
      const db = t.app.db.db;
      const [binding] = await db.select({ id: tables.bindings.id }).from(tables.bindings).where(eq(tables.bindings.deviceId, one.device.id));
      const c = client(owner.token);
      const live = subscribe(c, AlarmCursorsDocument, {});
      await subscriptionsRunning(t.app, 1);

      // T1 (another node, say) inserts first and stays open; then this node's store commits an alarm,
      // whose row it hands to the tailer at once.
      let inserted!: () => void;
      let release!: () => void;
      const firstInserted = new Promise<void>((r) => (inserted = r));
      const t1Release = new Promise<void>((r) => (release = r));
      let early = '';
      const t1 = db.transaction(async (tx) => {
        const now = clock.now();
        [{ id: early }] = (await tx
          .insert(tables.alarms)
          .values({ deviceId: one.device.id, bindingId: binding!.id, source: 'ws', channel: channel++, eventType: 'vmd', rawType: 'VMD', alarmType: 'MOTION', startedAt: now, receivedAt: now, lastPostAt: now, endedAt: now })
          .returning({ id: tables.alarms.id })) as [{ id: string }];
        inserted();
        await t1Release;
      });
      await firstInserted;
      let reads = 0;
      const stop = t.app.db.observeStatements((sql) => void (sql.includes('pg_snapshot_xmin') && sql.includes('limit') && reads++));
      const { alarm: late } = await t.app.alarmStore.record(one.device.id, storePost('handed', `w:handed-${channel}`));
      await waitFor(() => reads >= 3, 5000, 'tailer reads while T1 is open');
      stop();
      assert.equal(live.events.length, 0, 'the handed row waits for the horizon');
      release();
      await t1;
      const got = await live.received(2);
      assert.deepEqual(got.map((e) => e.alarms.id), [early, late!.id], 'the earlier transaction first, then the handed row, each once');
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(live.events.length, 2, 'nothing repeated');
      await settle(live);
    },
  );

  test('never delivers an alarm whose commit failed, and delivers the next one', async () => {
    const db = t.app.db.db;
    // Fails the commit itself (a deferred constraint trigger runs at commit), after the insert succeeded.
    await db.execute(sql`create function refuse_commit() returns trigger language plpgsql as $$
      begin if new.description = 'refuse-commit' then raise exception 'commit refused'; end if; return null; end $$`);
    await db.execute(sql`create constraint trigger refuse_commit after insert on alarms deferrable initially deferred for each row execute function refuse_commit()`);
    try {
      const c = client(owner.token);
      const live = subscribe(c, AlarmCursorsDocument, { deviceIds: [one.device.id] });
      await subscriptionsRunning(t.app, 1);
      await assert.rejects(t.app.alarmStore.record(one.device.id, storePost('refuse-commit', `w:refused-${channel}`)));
      const { alarm } = await t.app.alarmStore.record(one.device.id, storePost('fine', `w:fine-${channel}`));
      const [got] = await live.received(1);
      assert.equal(got!.alarms.id, alarm!.id);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(live.events.length, 1, 'the refused alarm never arrives');
      const refused = await db.select({ id: tables.alarms.id }).from(tables.alarms).where(eq(tables.alarms.description, 'refuse-commit'));
      assert.deepEqual(refused, []);
      await settle(live);
    } finally {
      await db.execute(sql`drop trigger refuse_commit on alarms`);
      await db.execute(sql`drop function refuse_commit()`);
    }
  });

  test('answers BAD_USER_INPUT when the cursor is not one we issued', async () => {
    const c = client(owner.token);
    const bad = subscribe(c, AlarmEventsDocument, { after: 'bm90LWEtY3Vyc29y' });
    await bad.ended();
    assert.equal(bad.errors[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.equal(bad.events.length, 0);
    await settle(bad);
  });

  test('replays every alarm after the cursor in order, then goes live without gap or repeat, when alarms keep arriving during the replay', async () => {
    // History: 120 alarms straight through the store (fast); the cursor sits after the 10th.
    const store = t.app.alarmStore;
    const post = (i: number) => alarmPost(`replay${i}`, { identity: `w:replay-${i}` });
    const historyIds: string[] = [];
    let tenth = '';
    for (let i = 0; i < 120; i++) {
      const { alarm } = await store.record(one.device.id, post(i));
      historyIds.push(alarm!.id);
      if (i === 9) tenth = store.cursorOf(alarm!);
    }

    // Writers keep adding alarms on both devices while the subscriber replays and goes live.
    let writing = true;
    let n = 120;
    const written: string[] = [];
    const writer = (async () => {
      while (writing) {
        const r = await store.record(n % 2 ? two.device.id : one.device.id, post(n++));
        written.push(r.alarm!.id);
        // PGlite answers in microtasks: let sockets and timers run between writes.
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const c = client(owner.token);
    const sub = subscribe(c, AlarmCursorsDocument, { after: tenth });
    await waitFor(() => sub.events.length >= 150 || sub.failure, 15_000, 'the replay and some live alarms');
    writing = false;
    await writer;
    await raise(two.provisioned, 'VMD'); // one more, live
    const expected = [...historyIds.slice(10), ...written];
    const got = await sub.received(expected.length + 1);
    const ids = got.map((e) => e.alarms.id);
    assert.deepEqual(ids.slice(0, expected.length), expected, 'every alarm after the cursor, once, in order');
    assert.equal(new Set(ids).size, ids.length, 'no repeats');
    const cursors = got.map((e) => e.alarms.cursor);
    assert.deepEqual([...cursors].sort(compareCursorStrings), cursors, 'cursor order');
    // The query API agrees on what the owner may see after the cursor.
    const page = expectData(await t.gql(AlarmIdsDocument, { first: 5 }, { token: owner.token })).alarms.edges.map((e) => e.node.id);
    assert.deepEqual(page, ids.slice(-5).reverse());
    await settle(sub);
  });
});

/** Cursors compare by their decoded (xid, seq); the test only needs the order the server gave. */
function compareCursorStrings(a: string, b: string): number {
  const parse = (c: string) => Buffer.from(c, 'base64url').toString('utf8').split(':').slice(1).map(Number) as [number, number];
  const [ax, as] = parse(a);
  const [bx, bs] = parse(b);
  return ax - bx || as - bs;
}

describe('authorisation per event', () => {
  let owner: TestUser;
  let grantee: TestUser;
  let shared: { device: { id: string }; provisioned: Provisioned };
  let own: { device: { id: string }; provisioned: Provisioned };
  before(async () => {
    owner = await registerUser(t, 'share-owner');
    grantee = await registerUser(t, 'share-grantee');
    shared = await provisionAndBind(t, owner);
    own = await provisionAndBind(t, grantee);
  });

  const grant = async (expiresAt: string | null = null) =>
    expectData(await t.gql(GrantShareDocument, { deviceId: shared.device.id, grantee: grantee.email, permissions: ['ALARMS'], expiresAt }, { token: owner.token })).grantShare;

  test('includes a device shared after subscribing and stops it at once when the share is revoked mid-stream', async () => {
    const c = client(grantee.token);
    const alarms = subscribe(c, AlarmEventsDocument, {});
    const status = subscribe(c, DeviceStatusEventsDocument, {});
    await subscriptionsRunning(t.app, 2);

    const share = await grant();
    await raise(shared.provisioned);
    const [first] = await alarms.received(1);
    assert.equal(first!.alarms.device.id, shared.device.id);
    // ISAPI posts bring the device ONLINE: the grantee sees that too.
    const [online] = await status.received(1);
    assert.equal(online!.deviceStatus.device.id, shared.device.id);
    assert.equal(online!.deviceStatus.device.role, 'SHARED');

    expectData(await t.gql(RevokeShareDocument, { id: share.id }, { token: owner.token }));
    await raise(shared.provisioned);
    await raise(own.provisioned); // a marker on a device still theirs
    const events = (await alarms.received(2)).map((e) => e.alarms);
    assert.deepEqual(deviceIdsOf(events), [shared.device.id, own.device.id]);
    const statuses = await status.received(2);
    assert.equal(statuses[1]!.deviceStatus.device.id, own.device.id);
    await settle(alarms, status);
  });

  test("gives the owner and a grantee of one device each their own view of it in the same alarm, and the grantee none once revoked", async () => {
    const ownerSub = subscribe(client(owner.token), AlarmDeviceViewsDocument, { deviceIds: [shared.device.id] });
    const granteeSub = subscribe(client(grantee.token), AlarmDeviceViewsDocument, {});
    await subscriptionsRunning(t.app, 2);
    const share = await grant();

    await raise(shared.provisioned);
    const [mine] = (await ownerSub.received(1)).map((e) => e.alarms);
    const [theirs] = (await granteeSub.received(1)).map((e) => e.alarms);
    assert.equal(mine!.id, theirs!.id);
    assert.deepEqual([mine!.device.role, theirs!.device.role], ['OWNER', 'SHARED']);
    assert.deepEqual(theirs!.device.permissions, ['ALARMS']);
    assert.ok(mine!.device.permissions.length > 1);

    expectData(await t.gql(RevokeShareDocument, { id: share.id }, { token: owner.token }));
    await raise(shared.provisioned);
    await raise(own.provisioned); // a marker on a device still the grantee's
    const ownerEvents = (await ownerSub.received(2)).map((e) => e.alarms);
    assert.deepEqual(ownerEvents.map((e) => e.device.role), ['OWNER', 'OWNER']);
    const granteeEvents = (await granteeSub.received(2)).map((e) => e.alarms);
    assert.deepEqual(granteeEvents.map((e) => [e.device.id, e.device.role]), [[shared.device.id, 'SHARED'], [own.device.id, 'OWNER']]);
    assert.deepEqual([ownerSub.errors, granteeSub.errors], [[], []]);
    await settle(ownerSub, granteeSub);
  });

  test('stops a grantee receiving when the share expires, with no event needed', async () => {
    const share = await grant(new Date(clock.now().getTime() + 60_000).toISOString());
    const c = client(grantee.token);
    const alarms = subscribe(c, AlarmEventsDocument, {});
    await subscriptionsRunning(t.app, 1);
    await raise(shared.provisioned);
    await alarms.received(1);
    clock.advance(61_000);
    await raise(shared.provisioned);
    await raise(own.provisioned);
    const events = (await alarms.received(2)).map((e) => e.alarms);
    assert.deepEqual(deviceIdsOf(events), [shared.device.id, own.device.id]);
    expectData(await t.gql(RevokeShareDocument, { id: share.id }, { token: owner.token }));
    await settle(alarms);
  });

  test('stops a share revoked without an announcement once the access cache entry is older than its TTL', async () => {
    const share = await grant();
    const c = client(grantee.token);
    const alarms = subscribe(c, AlarmEventsDocument, {});
    await subscriptionsRunning(t.app, 1);
    await raise(shared.provisioned);
    await alarms.received(1);
    // As if the device.access event were lost (Redis down): only the database knows.
    await t.app.db.db.update(tables.shares).set({ revokedAt: clock.now() }).where(eq(tables.shares.id, share.id));
    clock.advance(31_000);
    await raise(shared.provisioned);
    await raise(own.provisioned);
    const events = (await alarms.received(2)).map((e) => e.alarms);
    assert.deepEqual(deviceIdsOf(events), [shared.device.id, own.device.id]);
    await settle(alarms);
  });

  test('follows a device to its new owner and away from the old one when it is transferred or unbound mid-stream', async () => {
    const from = await registerUser(t, 'transfer-from');
    const to = await registerUser(t, 'transfer-to');
    const moving = await provisionAndBind(t, from);
    const leaving = await provisionAndBind(t, from);
    const staying = await provisionAndBind(t, from);
    const fromClient = client(from.token);
    const toClient = client(to.token);
    const fromAlarms = subscribe(fromClient, AlarmEventsDocument, {});
    const fromStatus = subscribe(fromClient, DeviceStatusEventsDocument, {});
    // `to` owns nothing yet: a device bound to them after subscribing is included.
    const toAlarms = subscribe(toClient, AlarmEventsDocument, {});
    await subscriptionsRunning(t.app, 3);

    expectData(await t.gql(TransferDeviceDocument, { id: moving.device.id, to: to.email, password: STRONG_PASSWORD }, { token: from.token }));
    expectData(await t.gql(UnbindDeviceDocument, { id: leaving.device.id, password: STRONG_PASSWORD }, { token: from.token }));
    await raise(moving.provisioned);
    await raise(staying.provisioned);
    const [toFirst] = await toAlarms.received(1);
    assert.equal(toFirst!.alarms.device.id, moving.device.id);
    const [fromFirst] = await fromAlarms.received(1);
    assert.equal(fromFirst!.alarms.device.id, staying.device.id, 'the old owner never sees the new binding');

    // Status of the unbound device does not reach its former owner; their remaining device does.
    await connect(leaving.provisioned);
    await connect(staying.provisioned).catch(() => undefined);
    const statuses = await fromStatus.received(1);
    assert.ok(statuses.every((s) => s.deviceStatus.device.id === staying.device.id), JSON.stringify(statuses));
    await settle(fromAlarms, fromStatus, toAlarms);
  });
});

describe('credentials', () => {
  test('closes the socket with 4403 at once when its session is revoked, logged out, ended by a password change or its API key revoked mid-stream', async () => {
    const user = await registerUser(t, 'sessions');
    const login = async () => expectData(await t.gql(LoginDocument, { input: { login: user.email, password: user.password } })).login;
    const [second, third] = [await login(), await login()];
    const key = expectData(await t.gql(CreateApiKeyDocument, { name: 'ws', scopes: ['DEVICES_READ'] }, { token: user.token })).createApiKey;
    const sessions = expectData(await t.gql(SessionsDocument, {}, { token: second!.accessToken })).sessions;
    const secondId = sessions.find((s) => s.current)!.id;

    const [keep, revoked, loggedOut, keyed] = [client(user.token), client(second!.accessToken), client(third!.accessToken), client(key.secret)];
    const subs = [keep, revoked, loggedOut, keyed].map((c) => subscribe(c, DeviceStatusEventsDocument, {}));
    await subscriptionsRunning(t.app, 4);

    expectData(await t.gql(RevokeSessionDocument, { id: secondId }, { token: user.token }));
    assert.equal((await revoked.closed).code, 4403);
    expectData(await t.gql(LogoutDocument, { refreshToken: third!.refreshToken }));
    assert.equal((await loggedOut.closed).code, 4403);
    expectData(await t.gql(RevokeApiKeyDocument, { id: key.apiKey.id }, { token: user.token }));
    assert.equal((await keyed.closed).code, 4403);
    // The untouched session keeps its socket, and a revoked token cannot open a new one.
    await subscriptionsRunning(t.app, 1);
    const again = client(second!.accessToken);
    assert.equal((await again.closed).code, 4403);

    // A password change ends every other session of the account.
    const fourth = client((await login()).accessToken);
    const fourthSub = subscribe(fourth, DeviceStatusEventsDocument, {});
    await subscriptionsRunning(t.app, 2);
    expectData(await t.gql(ChangePasswordDocument, { currentPassword: user.password, newPassword: OTHER_STRONG_PASSWORD }, { token: user.token }));
    assert.equal((await fourth.closed).code, 4403);
    await subscriptionsRunning(t.app, 1);
    await settle(...subs, fourthSub);
  });

  test('closes a socket whose session ended without an announcement at its first event after the re-check window', async () => {
    const user = await registerUser(t, 'silent-revoke');
    const { provisioned } = await provisionAndBind(t, user);
    const second = expectData(await t.gql(LoginDocument, { input: { login: user.email, password: user.password } })).login;
    const sessionId = expectData(await t.gql(SessionsDocument, {}, { token: second.accessToken })).sessions.find((s) => s.current)!.id;
    const c = client(second.accessToken);
    const alarms = subscribe(c, AlarmEventsDocument, {});
    await subscriptionsRunning(t.app, 1);
    // As if session.ended were lost: only the database knows.
    await t.app.db.db.update(tables.sessions).set({ revokedAt: clock.now() }).where(eq(tables.sessions.id, sessionId));
    clock.advance(31_000);
    await raise(provisioned);
    assert.equal((await c.closed).code, 4403);
    assert.equal(alarms.events.length, 0);
    await settle(alarms);
  });

  test('refuses a reconnect whose session ended without an announcement once the remembered check is older than the re-check window', async () => {
    const user = await registerUser(t, 'silent-reconnect');
    const second = expectData(await t.gql(LoginDocument, { input: { login: user.email, password: user.password } })).login;
    const sessionId = expectData(await t.gql(SessionsDocument, {}, { token: second.accessToken })).sessions.find((s) => s.current)!.id;
    // Authenticated once: the gateway remembers the check for a reconnect storm.
    const first = client(second.accessToken);
    await first.connected;
    await first.dispose();
    await t.app.db.db.update(tables.sessions).set({ revokedAt: clock.now() }).where(eq(tables.sessions.id, sessionId));
    clock.advance(31_000);
    assert.equal((await client(second.accessToken).closed).code, 4403);
  });

  test('needs ALARMS_READ for alarms and DEVICES_READ for deviceStatus when the caller is an API key', async () => {
    const user = await registerUser(t, 'scopes');
    const key = async (scopes: Array<'DEVICES_READ' | 'ALARMS_READ'>) =>
      expectData(await t.gql(CreateApiKeyDocument, { name: scopes.join('+'), scopes }, { token: user.token })).createApiKey.secret;
    const devicesOnly = client(await key(['DEVICES_READ']));
    const alarmsOnly = client(await key(['ALARMS_READ']));
    const a = subscribe(devicesOnly, AlarmCursorsDocument, {});
    const s = subscribe(alarmsOnly, DeviceStatusEventsDocument, {});
    await a.ended();
    await s.ended();
    assert.equal(a.errors[0]?.extensions?.code, 'FORBIDDEN');
    assert.equal(s.errors[0]?.extensions?.code, 'FORBIDDEN');
    const ok = subscribe(alarmsOnly, AlarmCursorsDocument, {});
    await subscriptionsRunning(t.app, 1);
    await settle(a, s, ok);
  });

  test('closes the socket with 4403 when connection_init carries a bad token', async () => {
    const c = client('not-a-token');
    assert.equal((await c.closed).code, 4403);
  });
});

describe('limits', () => {
  test('refuses a subscription over the per-connection cap with QUERY_TOO_COMPLEX', async () => {
    const user = await registerUser(t, 'cap-subs');
    const c = client(user.token);
    const ok = [0, 1, 2].map(() => subscribe(c, AlarmCursorsDocument, {}));
    await subscriptionsRunning(t.app, 3);
    const over = subscribe(c, AlarmCursorsDocument, {});
    await over.ended();
    assert.equal(over.errors[0]?.extensions?.code, 'QUERY_TOO_COMPLEX');
    // Ending one makes room again.
    ok[0]!.stop();
    await subscriptionsRunning(t.app, 2);
    const next = subscribe(c, AlarmCursorsDocument, {});
    await subscriptionsRunning(t.app, 3);
    await settle(...ok, next);
  });

  test('closes a connection over the per-user cap with its own code 4430, which the graphql-ws client retries until there is room', async () => {
    const user = await registerUser(t, 'cap-conns');
    const open = [0, 1, 2, 3].map(() => client(user.token));
    await Promise.all(open.map((c) => c.connected));
    const over = client(user.token);
    const closed = await over.closed;
    assert.equal(closed.code, 4430, 'not 4429: graphql-ws reserves it for a second connection_init');
    assert.match(closed.reason, /retry later/);

    // A client that retries (graphql-ws's default) gets in once one of the user's connections closes.
    const closes: number[] = [];
    let connected!: () => void;
    const connectedOnce = new Promise<void>((r) => (connected = r));
    const retrying = createClient({
      url: `${t.url.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      lazy: false,
      retryAttempts: 20,
      retryWait: async () => new Promise((r) => setTimeout(r, 20)),
      connectionParams: { authorization: `Bearer ${user.token}` },
      on: { closed: (e) => closes.push((e as { code: number }).code), connected: () => connected() },
      onNonLazyError: () => {},
    });
    try {
      await waitFor(() => closes.includes(4430), 5000, 'a refused attempt');
      await open[0]!.dispose();
      await connectedOnce;
    } finally {
      await retrying.dispose();
    }
    await settle();
  });

  test('closes with 4408 a socket that sends no connection_init in time', async () => {
    const ws = new WebSocket(`${t.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
    const code = await new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
    assert.equal(code, 4408);
  });

  test('closes a slow consumer with 1013 instead of buffering without end', async () => {
    const user = await registerUser(t, 'slow');
    const { device } = await provisionAndBind(t, user);
    // A raw client that subscribes, then stops reading its socket.
    const ws = new WebSocket(`${t.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${user.token}` } })));
      ws.on('message', (m) => JSON.parse(m.toString()).type === 'connection_ack' && resolve());
      ws.once('error', reject);
    });
    let closeCode: number | undefined;
    ws.once('close', (c) => (closeCode = c));
    // Large events (the description, many times over by aliases), so socket buffers fill quickly.
    const fields = Array.from({ length: 29 }, (_, i) => `d${i}: description`).join(' ');
    ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: `subscription { alarms { id ${fields} } }` } }));
    await subscriptionsRunning(t.app, 1);
    ws.pause();
    // 600 alarms in one transaction (about 9 MB of events): more than the socket buffers hold.
    await insertAlarms(device.id, 600, 'x'.repeat(500));
    await waitFor(async () => (await gauge(t.app, 'vigil_graphql_ws_server_closes_total', { reason: 'slow-consumer' })) >= 1, 20_000, 'the server to drop the slow consumer');
    ws.resume();
    // The close frame sits behind the unread events; a peer this far behind is cut off (1006) if it cannot read it in time.
    assert.ok([1013, 1006].includes(await waitFor(() => closeCode, 10_000, 'the socket to close')));
    await subscriptionsRunning(t.app, 0);
  });
});
