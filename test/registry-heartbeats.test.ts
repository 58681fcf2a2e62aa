import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { pino } from 'pino';
import { tables, type Db } from '../src/db/index';
import { createDeviceRegistry, type DeviceRegistry, type DeviceTransport } from '../src/devices/registry/device-registry';
import { createEventBus, type EventBus } from '../src/streams/bus/event-bus';
import { insertDevice, statusEvents, type DirectDevice } from './helpers/alarms-fixtures';
import { startApp, testClock, waitFor, type TestApp } from './helpers/harness';

// Heartbeats are recorded in batches (one statement per flush for every connection that beat).
// Each node here flushes only when told, so a test decides what the database has seen.

function fakeTransport() {
  const sent: Array<Record<string, unknown>> = [];
  let handler: ((data: string, isBinary: boolean) => void) | undefined;
  const state: { closed: { code: number; reason: string } | null } = { closed: null };
  const transport: DeviceTransport = {
    send: (frame) => sent.push(JSON.parse(frame) as Record<string, unknown>),
    close: (code, reason) => {
      state.closed ??= { code, reason };
    },
    onMessage: (h) => {
      handler = h;
    },
  };
  return {
    transport,
    sent,
    state,
    deliver: (frame: unknown) => handler!(typeof frame === 'string' ? frame : JSON.stringify(frame), false),
    waitClosed: () => waitFor(() => state.closed, 5000, 'close'),
  };
}

let t: TestApp;
const clock = testClock();
const silent = pino({ level: 'silent' });
const nodes: DeviceRegistry[] = [];
const NEVER = 3_600_000;

function node(nodeId: string, opts: { bus?: EventBus; db?: Db } = {}) {
  const r = createDeviceRegistry({
    db: opts.db ?? t.app.db.db,
    clock: clock.now,
    bus: opts.bus ?? createEventBus(),
    log: silent,
    nodeId,
    alarms: t.app.alarmStore,
    heartbeatSeconds: 30,
    heartbeatFlushMs: NEVER,
  });
  nodes.push(r);
  return r;
}

async function hello(r: DeviceRegistry, d: DirectDevice) {
  const f = fakeTransport();
  r.open(f.transport, { ip: '127.0.0.1' });
  f.deliver({ type: 'hello', serial: d.serial, key: d.deviceKey });
  await waitFor(() => f.sent.find((s) => s.type === 'welcome') ?? f.state.closed, 5000, 'welcome');
  return f;
}

/** Heartbeat frames are handled synchronously once welcomed; wait for the queue anyway in case one was not. */
async function beat(c: ReturnType<typeof fakeTransport>) {
  c.deliver('{"type":"heartbeat"}');
  await new Promise((r) => setImmediate(r));
}

async function row(id: string) {
  const [r] = await t.app.db.db.select().from(tables.devices).where(eq(tables.devices.id, id));
  return r!;
}

/** SQL statements that touch the devices table while `fn` runs. */
async function devicesStatements(fn: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const stop = t.app.db.observeStatements((q) => {
    if (/update "devices"/i.test(q)) seen.push(q);
  });
  try {
    await fn();
  } finally {
    stop();
  }
  return seen;
}

before(async () => {
  t = await startApp({ clock: clock.now });
});
after(async () => {
  for (const r of nodes) await r.stop().catch(() => {});
  await t.stop();
});

describe('batched heartbeats', () => {
  test('records the heartbeats of many connections in one statement, at each heartbeat’s time', async () => {
    const r = node('node-batch');
    const devices = await Promise.all(Array.from({ length: 6 }, () => insertDevice(t.app.db.db)));
    const conns = [];
    for (const d of devices) conns.push(await hello(r, d));
    clock.advance(10_000);
    const beatAt = clock.now();
    for (const c of conns) {
      await beat(c);
      await beat(c); // a connection's repeats within one flush are one row
    }
    const beatsDone = clock.now();
    assert.ok((await row(devices[0]!.id)).lastSeenAt! < beatAt, 'nothing written before the flush');
    const statements = await devicesStatements(() => r.flushHeartbeats());
    assert.equal(statements.length, 1);
    for (const d of devices) {
      const after = await row(d.id);
      assert.equal(after.online, true);
      // The heartbeat's own time, not the flush's (the test clock also moves with real time).
      assert.ok(after.lastSeenAt! >= beatAt && after.lastSeenAt! <= beatsDone, `${after.lastSeenAt?.toISOString()} within the heartbeats`);
    }
    assert.deepEqual(await devicesStatements(() => r.flushHeartbeats()), [], 'an empty flush costs nothing');
    for (const c of conns) assert.equal(c.state.closed, null);
  });

  test('revives a swept device, closes a replaced connection and refreshes the rest in one flush', async () => {
    const events = await statusEvents(t.app.bus);
    const r = node('node-mixed', { bus: t.app.bus });
    const [fine, swept, moved] = await Promise.all([insertDevice(t.app.db.db), insertDevice(t.app.db.db), insertDevice(t.app.db.db)]);
    const cFine = await hello(r, fine!);
    const cSwept = await hello(r, swept!);
    const cMoved = await hello(r, moved!);
    // `moved` connects to a node that shares no bus with this one: only its next heartbeat tells.
    const elsewhere = await hello(node('node-elsewhere'), moved!);
    await t.app.db.db.update(tables.devices).set({ online: false }).where(eq(tables.devices.id, swept!.id)); // as the sweeper would
    for (const c of [cFine, cSwept, cMoved]) await beat(c);
    const statements = await devicesStatements(() => r.flushHeartbeats());
    assert.equal(statements.length, 2, 'a second statement only for those the first did not find');
    assert.equal(cFine.state.closed, null);
    assert.equal(cSwept.state.closed, null);
    assert.equal(cMoved.state.closed?.code, 4409);
    assert.equal(elsewhere.state.closed, null);
    assert.equal((await row(swept!.id)).online, true);
    assert.equal((await row(moved!.id)).nodeId, 'node-elsewhere');
    await waitFor(() => events.of(swept!.id).includes('ONLINE'), 5000, 'ONLINE published for the revived device');
    events.stop();
  });

  test('marks the devices of a node killed before its flush OFFLINE after 2.5 periods, and keeps a healthy node’s ONLINE', async () => {
    const events = await statusEvents(t.app.bus);
    // The doomed node queues heartbeats and dies before flushing them: they are never written.
    const doomed = node('node-killed-mid-batch', { bus: t.app.bus });
    const healthy = node('node-healthy', { bus: t.app.bus });
    const [a, b] = await Promise.all([insertDevice(t.app.db.db), insertDevice(t.app.db.db)]);
    const onDoomed = await hello(doomed, a!);
    const onHealthy = await hello(healthy, b!);
    clock.advance(40_000);
    await beat(onDoomed);
    await beat(onHealthy);
    await healthy.flushHeartbeats();
    clock.advance(40_000); // 80 s since the doomed node's last write: beyond 2.5 periods of 30 s
    await t.app.registry.sweep();
    assert.equal((await row(a!.id)).online, false);
    assert.equal((await row(b!.id)).online, true, 'its heartbeat 40 s ago was recorded');
    await waitFor(() => events.of(a!.id).includes('OFFLINE'), 5000, 'OFFLINE published');
    // The device reconnects to the healthy node and is ONLINE again; the lost batch never surfaces.
    const back = await hello(healthy, a!);
    assert.equal(back.sent[0]?.type, 'welcome');
    assert.equal((await row(a!.id)).online, true);
    assert.equal((await row(a!.id)).nodeId, 'node-healthy');
    events.stop();
  });

  test('keeps the heartbeats of a flush that failed and records them at the next one', async () => {
    let failNext = false;
    const real = t.app.db.db;
    // A database that loses its connection for one statement.
    const flaky = new Proxy(real, {
      get(target, prop) {
        if (prop === 'update' && failNext) {
          failNext = false;
          return () => {
            throw new Error('connection lost');
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as Db;
    const r = node('node-flaky', { db: flaky });
    const d = await insertDevice(t.app.db.db);
    const c = await hello(r, d);
    clock.advance(5000);
    const beatAt = clock.now();
    await beat(c);
    const beatsDone = clock.now();
    failNext = true;
    await r.flushHeartbeats();
    assert.ok((await row(d.id)).lastSeenAt! < beatAt, 'not written by the failed flush');
    await r.flushHeartbeats();
    const seen = (await row(d.id)).lastSeenAt!;
    assert.ok(seen >= beatAt && seen <= beatsDone, 'written by the next flush, with the heartbeat’s time');
    assert.equal(c.state.closed, null);
  });

  test('still parses heartbeats sent with other spacing, and refuses one before hello', async () => {
    const r = node('node-spacing');
    const d = await insertDevice(t.app.db.db);
    const c = await hello(r, d);
    clock.advance(1000);
    const at = clock.now();
    c.deliver('{ "type": "heartbeat" }');
    await waitFor(
      async () => {
        await r.flushHeartbeats();
        return (await row(d.id)).lastSeenAt! >= at;
      },
      5000,
      'heartbeat recorded',
    );
    const early = fakeTransport();
    r.open(early.transport, { ip: '127.0.0.1' });
    early.deliver('{"type":"heartbeat"}');
    assert.equal((await early.waitClosed()).code, 4400);
  });
});
