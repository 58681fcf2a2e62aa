import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GraphQLError, GraphQLInt, GraphQLObjectType, GraphQLSchema, GraphQLString, parse, type ExecutionArgs, type ExecutionResult } from 'graphql';
import { pino } from 'pino';
import { createSubscriptionFanout, type FanoutMember } from '../src/graphql/live/subscription-fanout';
import { encodeAlarmCursor, type AlarmCursor } from '../src/streams/alarms/alarm-cursor';
import { createAlarmTailer } from '../src/streams/live/alarm-tail';
import type { AlarmView } from '../src/streams/alarms/alarm.service';
import { createLiveService } from '../src/streams/live/live.service';
import type { AlarmRow } from '../src/streams/alarms/alarm-store';
import { createEventBus } from '../src/streams/bus/event-bus';
import type { Caller } from '../src/accounts/caller';
import { PERMISSIONS } from '../src/devices/catalog/device.model';
import { createDeviceLoaders, createSharedDeviceReads } from '../src/devices/catalog/device-loaders';
import { createDeviceService, type DeviceService } from '../src/devices/catalog/device.service';

/** A source the test pushes into: `tick` values, or an error for a field error. */
function pushable() {
  const items: (number | Error)[] = [];
  let wake: (() => void) | null = null;
  return {
    push(v: number | Error) {
      items.push(v);
      wake?.();
    },
    async *stream() {
      for (;;) {
        while (items.length) yield { tick: items.shift()! };
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
    },
  };
}

function setup() {
  const source = pushable();
  const schema = new GraphQLSchema({
    query: new GraphQLObjectType({ name: 'Query', fields: { ok: { type: GraphQLInt } } }),
    subscription: new GraphQLObjectType({
      name: 'Subscription',
      fields: {
        tick: {
          type: GraphQLInt,
          subscribe: () => source.stream(),
          resolve: (e: { tick: number | Error }) => {
            if (e.tick instanceof Error) throw e.tick;
            return e.tick;
          },
        },
      },
    }),
  });
  const args: ExecutionArgs = { schema, document: parse('subscription { tick }') };
  return { source, args, fanout: createSubscriptionFanout({ maxPending: 10, slowAfterMs: 1000 }) };
}

/** Results carry null-prototype objects: compare their JSON. */
const plain = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;
const nextTick = () => new Promise((r) => setImmediate(r));
type Results = AsyncGenerator<ExecutionResult, unknown, unknown>;

describe('subscription fan-out: one serialisation for the group', () => {
  test('writes the same serialised bytes to every idle member and queues nothing', async () => {
    const { source, args, fanout } = setup();
    const got: Buffer[][] = [[], [], []];
    const members: FanoutMember[] = got.map((list) => ({ onSlow() {}, deliver: (b) => (list.push(b), true) }));
    const subs = (await Promise.all(members.map((m) => fanout.subscribe(args, 'k', m)))) as Results[];
    // graphql-ws waits on each member's next(): the members are idle.
    const pulls = subs.map((s) => s.next());
    source.push(1);
    source.push(2);
    await nextTick();
    await nextTick();
    assert.deepEqual(
      got.map((l) => l.map((b) => b.toString())),
      got.map(() => ['{"data":{"tick":1}}', '{"data":{"tick":2}}']),
    );
    // Serialised once: every member got the very same buffer.
    assert.ok(got.every((l) => l[0] === got[0]![0]));
    for (const s of subs) await s.return(undefined);
    assert.deepEqual(
      (await Promise.all(pulls)).map((r) => r.done),
      [true, true, true],
    );
    assert.equal(fanout.groupCount(), 0);
  });

  test('queues the result for graphql-ws, in order, when a member cannot deliver it at once', async () => {
    const { source, args, fanout } = setup();
    const direct: string[] = [];
    let accept = false;
    const sub = (await fanout.subscribe(args, 'k', { onSlow() {}, deliver: (b) => accept && (direct.push(b.toString()), true) })) as Results;
    const first = sub.next();
    source.push(1);
    await nextTick();
    assert.deepEqual(plain((await first).value), { data: { tick: 1 } });
    // Not waiting in next() now (graphql-ws is sending): the next result is queued, not written past it.
    accept = true;
    source.push(2);
    await nextTick();
    assert.deepEqual(direct, []);
    assert.deepEqual(plain((await sub.next()).value), { data: { tick: 2 } });
    // Idle again: written directly.
    const pending = sub.next();
    source.push(3);
    await nextTick();
    await nextTick();
    assert.deepEqual(direct, ['{"data":{"tick":3}}']);
    await sub.return(undefined);
    assert.equal((await pending).done, true);
  });

  test('sends results with errors through graphql-ws (masked there), and serves members without deliver as before', async () => {
    const { source, args, fanout } = setup();
    const direct: string[] = [];
    const withDeliver = (await fanout.subscribe(args, 'k', { onSlow() {}, deliver: (b) => (direct.push(b.toString()), true) })) as Results;
    const plainSub = (await fanout.subscribe(args, 'k', { onSlow() {} })) as Results;
    const a = withDeliver.next();
    const b = plainSub.next();
    source.push(new GraphQLError('boom'));
    await nextTick();
    const ra = (await a).value as ExecutionResult;
    const rb = (await b).value as ExecutionResult;
    assert.equal(ra.errors?.[0]?.message, 'boom');
    assert.equal(ra, rb);
    assert.deepEqual(direct, []);
    const c = plainSub.next();
    const d = withDeliver.next();
    source.push(4);
    await nextTick();
    await nextTick();
    assert.deepEqual(plain((await c).value), { data: { tick: 4 } });
    assert.deepEqual(direct, ['{"data":{"tick":4}}']);
    await plainSub.return(undefined);
    await withDeliver.return(undefined);
    assert.equal((await d).done, true);
  });
});

describe('alarm tailer: window of recent rows', () => {
  const row = (xid: number, seq: number) => ({ xid, seq, id: `a${xid}-${seq}` }) as unknown as AlarmRow;

  async function tailerWith(rows: AlarmRow[], recentRows: number) {
    let served = false;
    const store = {
      tailEnd: async () => ({ xid: 10, seq: 0 }),
      tailAfter: async () => {
        if (served) return { rows: [], horizon: Number.MAX_SAFE_INTEGER };
        served = true;
        return { rows, horizon: Number.MAX_SAFE_INTEGER };
      },
    };
    const tailer = createAlarmTailer({ store, bus: createEventBus(), log: pino({ level: 'silent' }), recentRows, tickMs: 60_000 });
    tailer.start();
    const got: AlarmRow[] = [];
    await tailer.register((r) => got.push(r));
    for (let i = 0; i < 100 && got.length < rows.length; i++) await new Promise((r) => setTimeout(r, 5));
    return tailer;
  }

  test('returns the rows in (after, until] from memory, in order, when the window holds them', async () => {
    const tailer = await tailerWith([row(11, 1), row(11, 2), row(12, 1), row(13, 1)], 10);
    try {
      assert.deepEqual(tailer.recentBetween({ xid: 11, seq: 1 }, { xid: 12, seq: 1 })?.map((r) => r.id), ['a11-2', 'a12-1']);
      assert.deepEqual(tailer.recentBetween({ xid: 10, seq: 0 }, { xid: 13, seq: 1 })?.length, 4);
      assert.deepEqual(tailer.recentBetween({ xid: 13, seq: 1 }, { xid: 13, seq: 1 }), []);
    } finally {
      await tailer.stop();
    }
  });

  test('answers null (read the database) for a cursor older than the window or an end past the position', async () => {
    const tailer = await tailerWith([row(11, 1), row(11, 2), row(12, 1), row(13, 1)], 2);
    try {
      // Only (11:2, 13:1] is kept: 11:2 and older fell out.
      assert.equal(tailer.recentBetween({ xid: 11, seq: 1 }, { xid: 13, seq: 1 }), null);
      assert.deepEqual(tailer.recentBetween({ xid: 11, seq: 2 }, { xid: 13, seq: 1 })?.map((r) => r.id), ['a12-1', 'a13-1']);
      assert.equal(tailer.recentBetween({ xid: 12, seq: 1 }, { xid: 14, seq: 0 }), null);
    } finally {
      await tailer.stop();
    }
  });

  test('delivers at once an alarm stored on its own node, without waiting for the bus or the tick', async () => {
    let announce: ((rows: AlarmRow[]) => void) | undefined;
    const store = {
      tailEnd: async () => ({ xid: 10, seq: 0 }),
      tailAfter: async () => ({ rows: [], horizon: Number.MAX_SAFE_INTEGER }),
      onCreatedHere: (listener: (rows: AlarmRow[]) => void) => {
        announce = listener;
        return () => (announce = undefined);
      },
    };
    // A bus nobody publishes on and a tick of a minute: only the local announcement can wake it.
    const tailer = createAlarmTailer({ store, bus: createEventBus(), log: pino({ level: 'silent' }), tickMs: 60_000 });
    tailer.start();
    try {
      const got: AlarmRow[] = [];
      await tailer.register((r) => got.push(r));
      await new Promise((r) => setTimeout(r, 20));
      announce!([row(11, 1)]);
      for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(got.map((r) => r.id), ['a11-1']);
    } finally {
      await tailer.stop();
    }
    assert.equal(announce, undefined, 'stop() unsubscribes from the store');
  });

  test('keeps no window when it is turned off', async () => {
    const tailer = await tailerWith([row(11, 1)], 0);
    try {
      assert.equal(tailer.recentBetween({ xid: 10, seq: 0 }, { xid: 11, seq: 1 }), null);
      assert.equal(tailer.recentBetween({ xid: 9, seq: 0 }, { xid: 11, seq: 1 }), null);
    } finally {
      await tailer.stop();
    }
  });
});

describe('alarms(after:) resume', () => {
  const row = (seq: number, bindingId: string) => ({ xid: 20, seq, id: `alarm-${seq}`, bindingId, deviceId: `device-${bindingId}`, alarmType: 'MOTION' }) as unknown as AlarmRow;
  const rows = [row(1, 'mine'), row(2, 'theirs'), row(3, 'mine')];
  const between = (from: AlarmCursor, until: AlarmCursor) => rows.filter((r) => (r.xid > from.xid || (r.xid === from.xid && r.seq > from.seq)) && r.seq <= until.seq);

  function liveWith(window: boolean) {
    let databaseReads = 0;
    const live = createLiveService({
      clock: () => new Date(),
      bus: createEventBus(),
      log: pino({ level: 'silent' }),
      tailer: {
        register: async () => ({ position: { xid: 20, seq: 3 }, unregister() {} }),
        recentBetween: (from, until) => (window ? between(from, until) : null),
      },
      access: { canSeeBinding: async (_u, b) => b === 'mine', canSeeDevice: async () => true },
      store: {
        replayForUser: async (_u, _now, after, _f, _limit, until) => {
          databaseReads++;
          return between(after!, until!).filter((r) => r.bindingId === 'mine');
        },
      },
      alarms: { toView: (r) => ({ id: r.id }) as unknown as AlarmView },
    });
    return { live, reads: () => databaseReads };
  }

  for (const window of [true, false]) {
    test(`replays what the caller may see after the cursor ${window ? "from the tailer's window, with no database read" : 'from the database when the window does not hold it'}`, async () => {
      const { live, reads } = liveWith(window);
      const stream = await live.alarms({ kind: 'session', userId: 'u', sessionId: 's' }, { after: encodeAlarmCursor({ xid: 19, seq: 9 }) });
      const ids = [(await stream.next()).value?.id, (await stream.next()).value?.id];
      assert.deepEqual(ids, ['alarm-1', 'alarm-3']);
      assert.equal(reads() > 0, !window);
      await stream.return(undefined);
      assert.equal(live.alarmStreams(), 0);
    });
  }
});

describe('subscription fan-out: a resumed alarms subscription joins its group', () => {
  const caller = { kind: 'session', userId: 'u', sessionId: 's' } as const;

  function world() {
    const table: AlarmRow[] = [];
    const store = {
      tailEnd: async () => ({ xid: 1, seq: 0 }),
      tailAfter: async (after: AlarmCursor, limit: number) => ({
        rows: table.filter((r) => r.xid > after.xid || (r.xid === after.xid && r.seq > after.seq)).slice(0, limit),
        horizon: Number.MAX_SAFE_INTEGER,
      }),
    };
    const tailer = createAlarmTailer({ store, bus: createEventBus(), log: pino({ level: 'silent' }), recentRows: 1000, tickMs: 60_000 });
    tailer.start();
    // Someone on the node listens from the start (a tailer nobody listens to does not read).
    void tailer.register(() => {});
    const live = createLiveService({
      clock: () => new Date(),
      bus: createEventBus(),
      log: pino({ level: 'silent' }),
      tailer,
      access: { canSeeBinding: async () => true, canSeeDevice: async () => true },
      store: { replayForUser: async () => assert.fail('replayed from the window') },
      alarms: { toView: (r) => ({ id: r.id, cursor: encodeAlarmCursor(r) }) as unknown as AlarmView },
    });
    let executions = 0;
    const Alarm = new GraphQLObjectType({
      name: 'Alarm',
      fields: {
        id: { type: GraphQLString, resolve: (a: AlarmView) => (executions++, a.id) },
      },
    });
    const schema = new GraphQLSchema({
      query: new GraphQLObjectType({ name: 'Query', fields: { ok: { type: GraphQLInt } } }),
      subscription: new GraphQLObjectType({
        name: 'Subscription',
        fields: {
          alarms: {
            type: Alarm,
            args: { after: { type: GraphQLString } },
            subscribe: (_: unknown, args: { after?: string | null }) => live.alarms(caller, args),
            resolve: (a: unknown) => a,
          },
        },
      }),
    });
    const document = parse('subscription($after: String) { alarms(after: $after) { id } }');
    const liveArgs: ExecutionArgs = { schema, document, variableValues: {} };
    let seq = 0;
    async function add(n: number) {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) {
        seq++;
        table.push({ xid: 2, seq, id: `a${seq}`, bindingId: 'b', deviceId: 'd', alarmType: 'MOTION' } as unknown as AlarmRow);
        ids.push(`a${seq}`);
      }
      tailer.wake();
      await waitUntil(() => tailer.position()?.seq === seq);
      return ids;
    }
    return { tailer, live, liveArgs, add, executions: () => executions, cursorOf: (s: number) => encodeAlarmCursor({ xid: 2, seq: s }) };
  }

  async function waitUntil(ok: () => boolean) {
    for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 2));
    assert.ok(ok(), 'condition not met in time');
  }

  /** A member whose socket takes every write at once (graphql-ws's, in practice); the ids it got, in order. */
  function member(got: string[]): { member: FanoutMember; attach(sub: Results): void } {
    let target: Results | null = null;
    return {
      member: { onSlow() {}, deliver: (b) => (got.push((JSON.parse(b.toString()) as { data: { alarms: { id: string } } }).data.alarms.id), true) },
      attach(sub) {
        target = sub;
        void (async () => {
          for await (const r of target!) got.push((r.data as { alarms: { id: string } }).alarms.id);
        })();
      },
    };
  }

  test('replays alone, then shares the group execution, with every alarm once and in order, when alarms keep arriving', async () => {
    const w = world();
    const fanout = createSubscriptionFanout({ maxPending: 50, slowAfterMs: 1000 });
    try {
      await w.add(3);
      const plainGot: string[] = [];
      const p = member(plainGot);
      p.attach((await fanout.subscribe(w.liveArgs, 'k', p.member)) as Results);
      const early = await w.add(2);
      await waitUntil(() => plainGot.length === 2);
      assert.deepEqual(plainGot, early);

      // Resumes after a2, while alarms keep coming.
      const resumedGot: string[] = [];
      const r = member(resumedGot);
      const writing = w.add(5);
      r.attach((await fanout.subscribe({ ...w.liveArgs, variableValues: { after: w.cursorOf(2) } }, 'k', r.member, { liveArgs: w.liveArgs })) as Results);
      await writing;
      await waitUntil(() => resumedGot.length === 8 && plainGot.length === 7);
      assert.deepEqual(resumedGot, ['a3', 'a4', 'a5', 'a6', 'a7', 'a8', 'a9', 'a10']);
      assert.equal(w.live.alarmStreams(), 1, 'the replay stream ended once caught up');
      assert.equal(fanout.groupCount(), 1);

      // From now on one execution per alarm for both.
      const before = w.executions();
      const later = await w.add(4);
      await waitUntil(() => resumedGot.length === 12 && plainGot.length === 11);
      assert.deepEqual(resumedGot.slice(8), later);
      assert.deepEqual(plainGot.slice(7), later);
      assert.equal(w.executions() - before, 4);
    } finally {
      await w.tailer.stop();
    }
  });

  test('executes a replayed alarm once for all members resuming from the same cursor, each getting every alarm once and in order', async () => {
    const w = world();
    // A reuse window no slow machine outlasts: the count below does not depend on timing.
    const fanout = createSubscriptionFanout({ maxPending: 50, slowAfterMs: 1000, reuseMs: 600_000 });
    try {
      await w.add(3);
      const members = 20;
      const got = Array.from({ length: members }, () => [] as string[]);
      const subs: Results[] = [];
      for (let i = 0; i < members; i++) {
        const m = member(got[i]!);
        const sub = (await fanout.subscribe({ ...w.liveArgs, variableValues: { after: w.cursorOf(1) } }, 'k', m.member, { liveArgs: w.liveArgs })) as Results;
        m.attach(sub);
        subs.push(sub);
      }
      await waitUntil(() => got.every((g) => g.length === 2) && w.live.alarmStreams() === 1);
      for (const g of got) assert.deepEqual(g, ['a2', 'a3']);
      assert.equal(w.executions(), 2, 'one execution per replayed alarm, not one per member');
      assert.equal(fanout.groupCount(), 1);
      const later = await w.add(2);
      await waitUntil(() => got.every((g) => g.length === 4));
      for (const g of got) assert.deepEqual(g.slice(2), later);
      assert.equal(w.executions(), 4);
      await Promise.all(subs.map((s) => s.return(undefined)));
      await waitUntil(() => fanout.groupCount() === 0);
    } finally {
      await w.tailer.stop();
    }
  });

  test('executes a replayed alarm again for another group key (another caller visibility), and per member when reuse is off', async () => {
    for (const { reuseMs, keys, executions } of [
      { reuseMs: undefined, keys: ['k1', 'k2'], executions: 4 },
      { reuseMs: 0, keys: ['k', 'k'], executions: 4 },
    ]) {
      const w = world();
      const fanout = createSubscriptionFanout({ maxPending: 50, slowAfterMs: 1000, ...(reuseMs === undefined ? {} : { reuseMs }) });
      try {
        await w.add(3);
        const got = keys.map(() => [] as string[]);
        const subs: Results[] = [];
        for (const [i, key] of keys.entries()) {
          const m = member(got[i]!);
          const sub = (await fanout.subscribe({ ...w.liveArgs, variableValues: { after: w.cursorOf(1) } }, key, m.member, { liveArgs: w.liveArgs })) as Results;
          m.attach(sub);
          subs.push(sub);
        }
        await waitUntil(() => got.every((g) => g.length === 2) && w.live.alarmStreams() === fanout.groupCount());
        for (const g of got) assert.deepEqual(g, ['a2', 'a3']);
        assert.equal(w.executions(), executions);
        await Promise.all(subs.map((s) => s.return(undefined)));
      } finally {
        await w.tailer.stop();
      }
    }
  });

  test('opens the group itself when none is open, and the group closes when it leaves', async () => {
    const w = world();
    const fanout = createSubscriptionFanout({ maxPending: 50, slowAfterMs: 1000 });
    try {
      await w.add(3);
      const got: string[] = [];
      const r = member(got);
      const sub = (await fanout.subscribe({ ...w.liveArgs, variableValues: { after: w.cursorOf(1) } }, 'k', r.member, { liveArgs: w.liveArgs })) as Results;
      r.attach(sub);
      await waitUntil(() => got.length === 2 && fanout.groupCount() === 1 && w.live.alarmStreams() === 1);
      const later = await w.add(2);
      await waitUntil(() => got.length === 4);
      assert.deepEqual(got, ['a2', 'a3', ...later]);
      await sub.return(undefined);
      await waitUntil(() => fanout.groupCount() === 0 && w.live.alarmStreams() === 0);
    } finally {
      await w.tailer.stop();
    }
  });
});

describe('subscription device loaders: reads shared while they run', () => {
  test("reads a device once for the live executions of several callers, each getting its own view", async () => {
    const reads: string[][] = [];
    const service = createDeviceService({ db: {}, clock: () => new Date(), limiters: { create: () => ({}), backoff: () => ({}) } } as never);
    const devices = {
      ...service,
      deviceAccessByIds: async (ids: readonly string[]) => {
        reads.push([...ids]);
        const device = { id: 'd1' };
        const binding = { id: 'b1', ownerId: 'owner', name: 'Porch', boundAt: new Date(0) };
        return ids.map((id) => (id === 'd1' ? { device, binding, shareByGrantee: new Map([['grantee', { granteeId: 'grantee', permissions: ['ALARMS'] }]]) } : null));
      },
    } as unknown as DeviceService;
    const sharedDeviceReads = createSharedDeviceReads(devices);
    const callerOf = (userId: string) => ({ kind: 'session', userId, sessionId: `s-${userId}` }) as unknown as Caller;
    const views = await Promise.all(
      ['owner', 'grantee', 'stranger'].map((u) => createDeviceLoaders(devices, callerOf(u), { cache: false, shareInFlight: true, sharedDeviceReads }).device.load('d1')),
    );
    assert.deepEqual(reads, [['d1']]);
    assert.deepEqual(
      views.map((v) => v && [v.role, v.permissions, v.name]),
      [['OWNER', [...PERMISSIONS], 'Porch'], ['SHARED', ['ALARMS'], 'Porch'], null],
    );
  });

  test('shares a running read with later loads of the same device, and keeps nothing once it is done', async () => {
    const calls: string[][] = [];
    let release: () => void = () => {};
    const devices = {
      devicesByIds: async (_caller: unknown, ids: readonly string[]) => {
        calls.push([...ids]);
        await new Promise<void>((r) => (release = r));
        return ids.map((id) => ({ id }));
      },
      sharesOfDevices: async () => [],
    } as unknown as DeviceService;
    const loaders = createDeviceLoaders(devices, null, { cache: false, shareInFlight: true });
    const first = loaders.device.load('d1');
    await nextTick();
    // Another execution, a turn later, while the read runs: no second statement.
    const second = loaders.device.load('d1');
    await nextTick();
    assert.equal(calls.length, 1);
    release();
    assert.deepEqual([await first, await second], [{ id: 'd1' }, { id: 'd1' }]);
    // Done: the next load reads again (a device may have changed or been unbound since).
    const third = loaders.device.load('d1');
    await nextTick();
    assert.equal(calls.length, 2);
    release();
    await third;
  });
});
