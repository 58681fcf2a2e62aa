import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { and, eq, inArray, sql } from 'drizzle-orm';
import { tables } from '../src/db/index';
import { compareAlarmCursors, decodeAlarmCursor, encodeAlarmCursor } from '../src/streams/alarms/alarm-cursor';
import type { AlarmPost, AlarmRow } from '../src/streams/alarms/alarm-store';
import {
  AcknowledgeAlarmDocument,
  AlarmIdsDocument,
  AlarmsDocument,
  BindDeviceDocument,
  CreateApiKeyDocument,
  GrantShareDocument,
  RevokeShareDocument,
  TransferDeviceDocument,
  UnbindDeviceDocument,
  type AlarmFilter,
  type AlarmIdsQuery,
  type AlarmsQuery,
} from './generated/graphql';
import { alarmPost, alertXml, insertBinding, insertDevice, insertUser, isapiPost } from './helpers/alarms-fixtures';
import { createRetentionJob } from '../src/streams/alarms/retention';
import { provisionAndBind, registerUser, type TestUser } from './helpers/devices';
import { expectCode, expectData, hasPostgres, startApp, testClock, waitFor, type TestApp } from './helpers/harness';

const XML = 'application/xml';

let t: TestApp;
const clock = testClock();

before(async () => {
  t = await startApp({ clock: clock.now });
});
after(() => t.stop());

/** The ids the user sees through GraphQL, newest first, paging with `first`. */
async function visibleIds(user: TestUser, filter?: AlarmFilter): Promise<string[]> {
  const ids: string[] = [];
  let after: string | null = null;
  for (;;) {
    const page: AlarmIdsQuery['alarms'] = expectData(await t.gql(AlarmIdsDocument, { first: 100, after, filter }, { token: user.token })).alarms;
    ids.push(...page.edges.map((e) => e.node.id));
    if (!page.pageInfo.hasNextPage) return ids;
    after = page.pageInfo.endCursor;
  }
}

const post = (path: string, o: Parameters<typeof alertXml>[0]) => isapiPost(t.url, path, alertXml(o), XML);

/** Posts one alarm and returns its id (newest stored for the device). */
async function raise(path: string, deviceId: string, eventType = 'VMD', channel = 1): Promise<string> {
  const res = await post(path, { eventType, channel });
  assert.equal(res.status, 200);
  const [row] = await t.app.db.db
    .select({ id: tables.alarms.id })
    .from(tables.alarms)
    .where(eq(tables.alarms.deviceId, deviceId))
    .orderBy(sql`${tables.alarms.seq} desc`)
    .limit(1);
  return row!.id;
}

describe('cursors', () => {
  test('round-trip and refuse anything we did not issue', () => {
    const c = { xid: 123456789, seq: 42 };
    assert.deepEqual(decodeAlarmCursor(encodeAlarmCursor(c)), c);
    for (const bad of ['', 'x', 'YTE6MTox!', Buffer.from('a1:1').toString('base64url'), Buffer.from('a1:-1:2').toString('base64url'), 'A'.repeat(100)]) {
      assert.equal(decodeAlarmCursor(bad), null, bad);
    }
    assert.ok(compareAlarmCursors({ xid: 1, seq: 9 }, { xid: 2, seq: 1 }) < 0);
  });
});

describe('visibility follows the alarm binding', () => {
  test('shows alarms to the owner and ALARMS grantees of that binding only, across shares, unbind, rebind and transfer', async () => {
    const [a, b, c, d, e] = await Promise.all(['owner-a', 'grantee-b', 'viewer-c', 'next-d', 'config-e'].map((tag) => registerUser(t, tag, tag)));
    const { device, provisioned } = await provisionAndBind(t, a!, { name: 'Porch' });
    const share = async (to: TestUser, permissions: Array<'ALARMS' | 'LIVE_VIEW' | 'CONFIGURE'>, expiresAt: string | null = null) =>
      expectData(await t.gql(GrantShareDocument, { deviceId: device.id, grantee: to.email, permissions, expiresAt }, { token: a!.token })).grantShare;
    const bShare = await share(b!, ['ALARMS']);
    await share(c!, ['LIVE_VIEW']);
    await share(e!, ['ALARMS', 'CONFIGURE']);
    await share(d!, ['ALARMS'], new Date(clock.now().getTime() + 5 * 60_000).toISOString());

    const a1 = await raise(provisioned.ingestPath, device.id, 'VMD');
    await waitFor(async () => (await visibleIds(a!)).length === 1, 5000, 'a1 readable');
    assert.deepEqual(await visibleIds(a!), [a1], 'owner');
    assert.deepEqual(await visibleIds(b!), [a1], 'grantee with ALARMS');
    assert.deepEqual(await visibleIds(e!), [a1], 'grantee with ALARMS and CONFIGURE');
    assert.deepEqual(await visibleIds(d!), [a1], 'grantee with an unexpired share');
    assert.deepEqual(await visibleIds(c!), [], 'grantee without ALARMS');

    // Acknowledging: CONFIGURE or owner; the first acknowledgement stands.
    expectCode(await t.gql(AcknowledgeAlarmDocument, { id: a1 }, { token: b!.token }), 'FORBIDDEN');
    expectCode(await t.gql(AcknowledgeAlarmDocument, { id: a1 }, { token: c!.token }), 'NOT_FOUND');
    const acked = expectData(await t.gql(AcknowledgeAlarmDocument, { id: a1 }, { token: e!.token })).acknowledgeAlarm;
    assert.equal(acked.acknowledgedBy?.id, e!.id);
    assert.equal(acked.acknowledgedBy?.email, e!.email, 'one sees one own email');
    assert.ok(acked.acknowledgedAt);
    const again = expectData(await t.gql(AcknowledgeAlarmDocument, { id: a1 }, { token: a!.token })).acknowledgeAlarm;
    assert.equal(again.acknowledgedBy?.id, e!.id);
    assert.equal(again.acknowledgedBy?.email, null, "others do not see the acknowledger's email");
    assert.equal(again.acknowledgedBy?.displayName, 'config-e');
    assert.equal(again.acknowledgedAt, acked.acknowledgedAt);

    // An expired share grants nothing; a revoked one neither.
    clock.advance(6 * 60_000); // within the access tokens' 15 minutes
    assert.deepEqual(await visibleIds(d!), [], 'expired share');
    expectData(await t.gql(RevokeShareDocument, { id: bShare.id }, { token: a!.token }));
    assert.deepEqual(await visibleIds(b!), [], 'revoked share');

    // Unbind: the former owner and former grantees see nothing.
    expectData(await t.gql(UnbindDeviceDocument, { id: device.id, password: a!.password }, { token: a!.token }));
    assert.deepEqual(await visibleIds(a!), [], 'former owner');
    assert.deepEqual(await visibleIds(e!), [], 'former grantee');
    expectCode(await t.gql(AcknowledgeAlarmDocument, { id: a1 }, { token: a!.token }), 'NOT_FOUND');

    // Rebind by someone else: they see only what arrives in their binding.
    expectData(await t.gql(BindDeviceDocument, { serial: provisioned.serial, verificationCode: provisioned.verificationCode, name: null }, { token: d!.token }));
    const a2 = await raise(provisioned.ingestPath, device.id, 'linedetection');
    await waitFor(async () => (await visibleIds(d!)).length === 1, 5000, 'a2 readable');
    assert.deepEqual(await visibleIds(d!), [a2], 'later owner');
    assert.deepEqual(await visibleIds(a!), [], 'former owner still sees nothing');

    // Transfer back to the first owner: a new binding, so only its own alarms.
    expectData(await t.gql(TransferDeviceDocument, { id: device.id, to: a!.email, password: d!.password }, { token: d!.token }));
    const a3 = await raise(provisioned.ingestPath, device.id, 'fielddetection');
    await waitFor(async () => (await visibleIds(a!)).length === 1, 5000, 'a3 readable');
    assert.deepEqual(await visibleIds(a!), [a3], 'an owner again, of a new binding');
    assert.deepEqual(await visibleIds(d!), [], 'the transferrer');
  });
});

describe('alarms query', () => {
  let owner: TestUser;
  let ids: string[] = []; // oldest first
  let devA: string;
  let devB: string;

  before(async () => {
    owner = await registerUser(t, 'pager', 'Pager');
    const one = await provisionAndBind(t, owner);
    const two = await provisionAndBind(t, owner);
    devA = one.device.id;
    devB = two.device.id;
    const plan: Array<[string, string, string, number]> = [
      [one.provisioned.ingestPath, devA, 'VMD', 1],
      [two.provisioned.ingestPath, devB, 'linedetection', 1],
      [one.provisioned.ingestPath, devA, 'fielddetection', 1],
      [two.provisioned.ingestPath, devB, 'VMD', 2],
      [one.provisioned.ingestPath, devA, 'tamperdetection', 1],
      [two.provisioned.ingestPath, devB, 'diskfull', 1],
      [one.provisioned.ingestPath, devA, 'VMD', 3],
    ];
    ids = [];
    for (const [path, dev, type, ch] of plan) ids.push(await raise(path, dev, type, ch));
    await waitFor(async () => (await visibleIds(owner)).length === plan.length, 5000, 'all readable');
  });

  test('pages newest first with first and after without gaps or repeats', async () => {
    const seen: string[] = [];
    let after: string | null = null;
    const sizes: number[] = [];
    for (;;) {
      const page: AlarmsQuery['alarms'] = expectData(await t.gql(AlarmsDocument, { first: 3, after }, { token: owner.token })).alarms;
      sizes.push(page.edges.length);
      for (const e of page.edges) assert.equal(e.cursor, e.node.cursor);
      seen.push(...page.edges.map((e) => e.node.id));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    assert.deepEqual(sizes, [3, 3, 1]);
    assert.deepEqual(seen, [...ids].reverse());
  });

  test('filters by device, type, acknowledgement and receive time', async () => {
    assert.deepEqual(await visibleIds(owner, { deviceIds: [devB] }), [ids[5], ids[3], ids[1]]);
    assert.deepEqual(await visibleIds(owner, { types: ['MOTION'] }), [ids[6], ids[3], ids[0]]);
    assert.deepEqual(await visibleIds(owner, { types: ['MOTION'], deviceIds: [devA] }), [ids[6], ids[0]]);
    assert.deepEqual(await visibleIds(owner, { deviceIds: ['not-an-id', '6f1c3a52-0000-4000-8000-000000000000'] }), []);
    assert.deepEqual(await visibleIds(owner, { types: [] }), []);
    expectData(await t.gql(AcknowledgeAlarmDocument, { id: ids[2]! }, { token: owner.token }));
    assert.deepEqual(await visibleIds(owner, { acknowledged: true }), [ids[2]]);
    assert.equal((await visibleIds(owner, { acknowledged: false })).length, 6);
    const future = new Date(clock.now().getTime() + 60_000).toISOString();
    assert.deepEqual(await visibleIds(owner, { since: future }), []);
    assert.equal((await visibleIds(owner, { since: new Date(clock.now().getTime() - 3600_000).toISOString() })).length, 7);
  });

  test('refuses bad arguments, unknown ids and missing credentials with the contract codes', async () => {
    expectCode(await t.gql(AlarmsDocument, { after: 'garbage' }, { token: owner.token }), 'BAD_USER_INPUT');
    expectCode(await t.gql(AlarmsDocument, { first: 0 }, { token: owner.token }), 'BAD_USER_INPUT');
    expectCode(await t.gql(AlarmsDocument, { first: 101 }, { token: owner.token }), 'BAD_USER_INPUT');
    expectCode(await t.gql(AlarmsDocument, {}), 'UNAUTHENTICATED');
    expectCode(await t.gql(AcknowledgeAlarmDocument, { id: 'nope' }, { token: owner.token }), 'NOT_FOUND');
    expectCode(await t.gql(AcknowledgeAlarmDocument, { id: '6f1c3a52-0000-4000-8000-000000000000' }, { token: owner.token }), 'NOT_FOUND');
  });

  test('needs ALARMS_READ for an API key to list alarms', async () => {
    const make = async (scopes: Array<'DEVICES_READ' | 'ALARMS_READ'>) =>
      expectData(await t.gql(CreateApiKeyDocument, { name: scopes.join('+'), scopes }, { token: owner.token })).createApiKey.secret;
    expectCode(await t.gql(AlarmIdsDocument, {}, { token: await make(['DEVICES_READ']) }), 'FORBIDDEN');
    const page = expectData(await t.gql(AlarmsDocument, { first: 2 }, { token: await make(['ALARMS_READ', 'DEVICES_READ']) })).alarms;
    assert.equal(page.edges.length, 2);
  });
});

describe('exactly-once store and total order under concurrency', () => {
  test(`never lets a reader that resumes with after skip or repeat a row while writers commit out of order${hasPostgres ? '' : ' (sequential on PGlite)'}`, async (ctx) => {
    const db = t.app.db.db;
    const store = t.app.alarmStore;
    const userId = await insertUser(db);
    const WRITERS = 8;
    const PER_WRITER = 25;
    const devices = await Promise.all(
      Array.from({ length: WRITERS }, async () => {
        const d = await insertDevice(db);
        return { ...d, bindingId: await insertBinding(db, d.id, userId, clock.now()) };
      }),
    );

    const postOf = (i: number) => alarmPost(`type${i}`, { identity: `w:${i}` });

    // Half the writers use the real write path; the other half hold their transaction open for a
    // random while after taking a sequence value, so commits arrive out of sequence order.
    const writer = async (w: number) => {
      const d = devices[w]!;
      for (let i = 0; i < PER_WRITER; i++) {
        if (w % 2 === 0) {
          await store.record(d.id, postOf(i));
        } else {
          await db.transaction(async (tx) => {
            await tx.insert(tables.alarms).values({
              deviceId: d.id,
              bindingId: d.bindingId,
              source: 'ws',
              channel: i,
              eventType: 'slow',
              rawType: 'slow',
              alarmType: 'OTHER',
              startedAt: clock.now(),
              receivedAt: clock.now(),
              lastPostAt: clock.now(),
            });
            if (hasPostgres) await tx.execute(sql`select pg_sleep(${Math.random() * 0.03})`);
          });
        }
      }
    };

    const seen: AlarmRow[] = [];
    let naiveSeen = new Set<string>();
    let done = false;
    const reader = async () => {
      let cursor: ReturnType<typeof decodeAlarmCursor> = null;
      let naiveLast = 0;
      // After the writers finish, rows turn readable as the cluster-wide horizon passes them (other
      // sessions on the server can hold it back a while): read until all are seen, or give up
      // after a few seconds without progress, which the gap check below then reports.
      let idleSince = 0;
      for (;;) {
        const rows = await store.replayForUser(userId, clock.now(), cursor, null, 7);
        for (const r of rows) {
          const c = decodeAlarmCursor(store.cursorOf(r))!;
          if (cursor) assert.ok(compareAlarmCursors(c, cursor) > 0, 'cursors only grow');
          cursor = c;
          seen.push(r);
        }
        // What a plain `seq > last` reader would have seen, for contrast.
        const naive = await db
          .select({ id: tables.alarms.id, seq: tables.alarms.seq })
          .from(tables.alarms)
          .where(sql`${tables.alarms.seq} > ${naiveLast} and ${inArray(tables.alarms.bindingId, devices.map((d) => d.bindingId))}`)
          .orderBy(tables.alarms.seq)
          .limit(7);
        for (const r of naive) naiveSeen.add(r.id);
        if (naive.length) naiveLast = naive.at(-1)!.seq;
        if (done && rows.length === 0) {
          if (seen.length >= WRITERS * PER_WRITER || (idleSince > 0 && Date.now() - idleSince >= 5000)) break;
          idleSince ||= Date.now();
        } else {
          idleSince = 0;
        }
        await new Promise((r) => (done && rows.length === 0 ? setTimeout(r, 10) : setImmediate(r)));
      }
    };

    const readerDone = reader();
    await Promise.all(devices.map((_, w) => writer(w)));
    done = true;
    await readerDone;

    const all = await db
      .select({ id: tables.alarms.id })
      .from(tables.alarms)
      .where(inArray(tables.alarms.bindingId, devices.map((d) => d.bindingId)));
    assert.equal(all.length, WRITERS * PER_WRITER);
    const seenIds = seen.map((r) => r.id);
    assert.equal(new Set(seenIds).size, seenIds.length, 'no repeats');
    assert.deepEqual(new Set(seenIds), new Set(all.map((r) => r.id)), 'no gaps');
    const naiveMissed = all.filter((r) => !naiveSeen.has(r.id)).length;
    ctx.diagnostic(`a plain seq > cursor reader would have skipped ${naiveMissed} of ${all.length} rows`);
    naiveSeen = new Set();

    // Newest first over the same rows: strictly decreasing, complete.
    const back: string[] = [];
    let before: ReturnType<typeof decodeAlarmCursor> = null;
    for (;;) {
      const rows = await store.pageForUser(userId, clock.now(), before, null, 9);
      if (rows.length === 0) break;
      for (const r of rows) back.push(r.id);
      before = decodeAlarmCursor(store.cursorOf(rows.at(-1)!));
    }
    assert.deepEqual(back, [...seenIds].reverse());

    // Resending every real-path post stores nothing new.
    for (let w = 0; w < WRITERS; w += 2) {
      for (let i = 0; i < PER_WRITER; i++) assert.equal((await store.record(devices[w]!.id, postOf(i))).outcome, 'duplicate');
    }
  });
});

describe('group commit', () => {
  const activePost = (o: Partial<AlarmPost> = {}) => alarmPost('vmd', { source: 'isapi', rawType: 'VMD', alarmType: 'MOTION', ...o });
  async function boundDevice() {
    const db = t.app.db.db;
    const d = await insertDevice(db);
    await insertBinding(db, d.id, await insertUser(db), clock.now());
    return d.id;
  }
  const rowsOf = (deviceId: string) => t.app.db.db.select().from(tables.alarms).where(eq(tables.alarms.deviceId, deviceId)).orderBy(tables.alarms.seq);

  test('stores one device\'s posts in arrival order when an earlier batch waits on a lock and a later one could run beside it', { skip: !hasPostgres && 'needs Postgres (two connections)' }, async () => {
    const db = t.app.db.db;
    const user = await insertUser(db);
    const a = await insertDevice(db);
    const b = await insertDevice(db);
    const bindingA = await insertBinding(db, a.id, user);
    const bindingB = await insertBinding(db, b.id, user);
    // `first` is the device whose binding a batch locks first (binding-id order); another transaction holds it.
    const [first, second] = bindingA < bindingB ? [a, b] : [b, a];
    const firstBinding = bindingA < bindingB ? bindingA : bindingB;
    const active = (state: 'active' | 'inactive') => alarmPost('ordered', { state, channel: 7 });
    let locked!: () => void;
    let release!: () => void;
    const lockHeld = new Promise<void>((r) => (locked = r));
    const released = new Promise<void>((r) => (release = r));
    const holder = db.transaction(async (tx) => {
      await tx.execute(sql`select id from bindings where id = ${firstBinding} for update`);
      locked();
      await released;
    });
    await lockHeld;
    const store = t.app.alarmStore;
    // Batch 1: the second device's active post, waiting behind the lock on the first device's binding.
    const opened = store.record(second.id, active('active'));
    const blocker = store.record(first.id, { ...active('active'), eventType: 'blocker' });
    await new Promise((r) => setTimeout(r, 50));
    // Batch 2: the second device's inactive post, which nothing else holds up.
    const ended = store.record(second.id, active('inactive'));
    await new Promise((r) => setTimeout(r, 50));
    release();
    await holder;
    assert.equal((await opened).outcome, 'created');
    assert.equal((await ended).outcome, 'ended', 'the inactive post ends the alarm its earlier post opened');
    await blocker;
    const [row] = await db.select({ endedAt: tables.alarms.endedAt }).from(tables.alarms).where(and(eq(tables.alarms.deviceId, second.id), eq(tables.alarms.eventType, 'ordered')));
    assert.ok(row?.endedAt, 'ended');
  });

  test('coalesces concurrent posts of one alarm into one row, in arrival order', async () => {
    const deviceId = await boundDevice();
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => t.app.alarmStore.record(deviceId, activePost({ activePostCount: i + 1 }))));
    assert.deepEqual(
      results.map((r) => r.outcome),
      ['created', ...Array(11).fill('coalesced')],
    );
    const rows = await rowsOf(deviceId);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.postCount, 12);
    assert.equal(rows[0]!.activePostCount, 12, 'the last post counts');
    assert.ok(results.every((r) => r.alarm?.id === rows[0]!.id));
  });

  test('stores a resent identity once, and applies active, inactive, active of one key in order', async () => {
    const deviceId = await boundDevice();
    const same = await Promise.all(Array.from({ length: 5 }, () => t.app.alarmStore.record(deviceId, activePost({ identity: 'u:same', channel: 7 }))));
    assert.deepEqual(
      same.map((r) => r.outcome),
      ['created', 'duplicate', 'duplicate', 'duplicate', 'duplicate'],
    );
    const seq = await Promise.all([
      t.app.alarmStore.record(deviceId, activePost({ channel: 3, identity: 'w:1' })),
      t.app.alarmStore.record(deviceId, activePost({ channel: 3, state: 'inactive', identity: 'w:2' })),
      t.app.alarmStore.record(deviceId, activePost({ channel: 3, identity: 'w:3' })),
      t.app.alarmStore.record(deviceId, activePost({ channel: 3, state: 'inactive' })),
      t.app.alarmStore.record(deviceId, activePost({ channel: 3, state: 'inactive' })),
    ]);
    assert.deepEqual(
      seq.map((r) => r.outcome),
      ['created', 'ended', 'created', 'ended', 'stray-inactive'],
    );
    const rows = (await rowsOf(deviceId)).filter((r) => r.channel === 3);
    assert.equal(rows.length, 2);
    assert.ok(rows.every((r) => r.endedAt !== null));
    // Resending the whole sequence stores nothing new.
    const again = await Promise.all(['w:1', 'w:2', 'w:3'].map((identity) => t.app.alarmStore.record(deviceId, activePost({ channel: 3, identity }))));
    assert.deepEqual(
      again.map((r) => r.outcome),
      ['duplicate', 'duplicate', 'duplicate'],
    );
  });

  test('stores each post of a batch over many devices once when some resend identities of ended alarms', async () => {
    const devices = await Promise.all(Array.from({ length: 24 }, () => boundDevice()));
    // Every device's first event, then its end: the resent first event no longer meets an open alarm, so only its receipt can stop it.
    for (const [i, d] of devices.entries()) {
      assert.equal((await t.app.alarmStore.record(d, activePost({ source: 'ws', channel: 5, identity: `w:first-${i}` }))).outcome, 'created');
      assert.equal((await t.app.alarmStore.record(d, activePost({ source: 'ws', channel: 5, state: 'inactive', identity: `w:end-${i}` }))).outcome, 'ended');
    }
    const batch = await Promise.all(
      devices.flatMap((d, i) => [
        t.app.alarmStore.record(d, activePost({ source: 'ws', channel: 5, identity: `w:first-${i}` })),
        t.app.alarmStore.record(d, activePost({ source: 'ws', channel: 6, identity: `w:new-${i}` })),
        // Another device's identity is not this device's: identities are per device.
        t.app.alarmStore.record(d, activePost({ source: 'ws', channel: 7, identity: `w:first-${(i + 1) % devices.length}` })),
      ]),
    );
    assert.deepEqual(
      batch.map((r) => r.outcome),
      devices.flatMap(() => ['duplicate', 'created', 'created']),
    );
    for (const d of devices) {
      assert.deepEqual(
        (await rowsOf(d)).map((r) => r.channel),
        [5, 6, 7],
      );
    }
  });

  test('answers each post of a mixed batch: unbound devices store nothing, bound ones store theirs', async () => {
    const bound = await boundDevice();
    const unbound = (await insertDevice(t.app.db.db)).id;
    const results = await Promise.all([
      t.app.alarmStore.record(unbound, activePost({ channel: 1 })),
      t.app.alarmStore.record(bound, activePost({ channel: 1 })),
      t.app.alarmStore.record(unbound, activePost({ channel: 2 })),
      t.app.alarmStore.record(bound, activePost({ channel: 2 })),
    ]);
    assert.deepEqual(
      results.map((r) => r.outcome),
      ['unbound', 'created', 'unbound', 'created'],
    );
    assert.equal((await rowsOf(unbound)).length, 0);
    assert.equal((await rowsOf(bound)).length, 2);
  });

  test('fails only the post the database refuses when its batch fails; the others are stored and answered', async () => {
    const deviceId = await boundDevice();
    // A channel beyond Postgres integer range makes the batch's statement fail as a whole.
    const outcomes = await Promise.allSettled([
      t.app.alarmStore.record(deviceId, activePost({ channel: 11 })),
      t.app.alarmStore.record(deviceId, activePost({ channel: 2 ** 31 })),
      t.app.alarmStore.record(deviceId, activePost({ channel: 12, identity: 'u:after-the-bad-one' })),
      t.app.alarmStore.record(deviceId, activePost({ channel: 11 })),
    ]);
    assert.deepEqual(
      outcomes.map((o) => (o.status === 'fulfilled' ? o.value.outcome : 'rejected')),
      ['created', 'rejected', 'created', 'coalesced'],
    );
    const rows = await rowsOf(deviceId);
    assert.deepEqual(
      rows.map((r) => [r.channel, r.postCount]),
      [
        [11, 2],
        [12, 1],
      ],
    );
    // Nothing of the failed post was kept: not even the receipt of the post after it is missing.
    assert.equal((await t.app.alarmStore.record(deviceId, activePost({ channel: 12, identity: 'u:after-the-bad-one' }))).outcome, 'duplicate');
  });
});

describe('retention', () => {
  test('deletes alarms and receipts older than ALARM_RETENTION_DAYS when the job runs', async () => {
    const db = t.app.db.db;
    const userId = await insertUser(db);
    const d = await insertDevice(db);
    await insertBinding(db, d.id, userId, clock.now());
    await isapiPost(t.url, d.ingestPath, JSON.stringify({ eventType: 'VMD', uuid: 'old-one', channelID: 1 }), 'application/json');
    clock.advance(91 * 86_400_000);
    await isapiPost(t.url, d.ingestPath, JSON.stringify({ eventType: 'VMD', uuid: 'new-one', channelID: 2 }), 'application/json');
    const job = createRetentionJob({
      db,
      clock: clock.now,
      log: t.app.log,
      store: t.app.alarmStore,
      nodeId: 'retention-test',
      retentionDays: 90,
    });
    assert.ok((await job.pruneNow()) >= 1);
    const left = await db.select().from(tables.alarms).where(eq(tables.alarms.deviceId, d.id));
    assert.deepEqual(left.map((r) => r.channel), [2]);
    const receipts = await db.select().from(tables.alarmReceipts).where(eq(tables.alarmReceipts.deviceId, d.id));
    assert.deepEqual(receipts.map((r) => r.key), ['u:new-one']);
  });
});
