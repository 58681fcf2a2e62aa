import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { pino } from 'pino';
import { tables } from '../src/db/index';
import { createDeviceRegistry, type DeviceRegistry, type DeviceTransport } from '../src/devices/registry/device-registry';
import { limiterFactory } from '../src/lib/rate-limit';
import { createEventBus, type EventBus } from '../src/streams/bus/event-bus';
import { createLeasedJob } from '../src/streams/bus/lease';
import { connectDevice, insertBinding, insertDevice, insertUser, statusEvents, type DirectDevice } from './helpers/alarms-fixtures';
import { freshDatabase, hasPostgres, startApp, testClock, waitFor, type TestApp } from './helpers/harness';

/** An in-memory transport: what the registry sent, how it closed, and a way to deliver frames. */
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
    deliverBinary: () => handler!('', true),
    waitSent: (type: string) => waitFor(() => sent.find((f) => f.type === type), 5000, `${type} frame`),
    waitClosed: () => waitFor(() => state.closed, 5000, 'close'),
  };
}

let t: TestApp;
const clock = testClock();
const silent = pino({ level: 'silent' });
const extra: DeviceRegistry[] = [];

/** Another gateway node on the same database, in this process (no network): `bus` shared unless given. */
async function node(nodeId: string, opts: { bus?: EventBus; heartbeatSeconds?: number; helloTimeoutMs?: number } = {}) {
  const r = createDeviceRegistry({
    db: t.app.db.db,
    clock: clock.now,
    bus: opts.bus ?? t.app.bus,
    log: silent,
    nodeId,
    alarms: t.app.alarmStore,
    heartbeatSeconds: opts.heartbeatSeconds ?? 30,
    helloTimeoutMs: opts.helloTimeoutMs ?? 5000,
    framesPerSecond: 20,
    frameBurst: 10,
  });
  r.start();
  extra.push(r);
  await r.ready();
  return r;
}

async function hello(r: DeviceRegistry, d: DirectDevice) {
  const f = fakeTransport();
  const teardown = r.open(f.transport, { ip: '127.0.0.1' });
  f.deliver({ type: 'hello', serial: d.serial, key: d.deviceKey, firmware: 'V5.7.3' });
  await Promise.race([f.waitSent('welcome'), f.waitClosed()]);
  return { ...f, teardown };
}

async function registryRow(id: string) {
  const [row] = await t.app.db.db.select().from(tables.devices).where(eq(tables.devices.id, id));
  return row!;
}

before(async () => {
  t = await startApp({ clock: clock.now });
});
after(async () => {
  for (const r of extra) await r.stop().catch(() => {});
  await t.stop();
});

describe('device registry core (no network)', () => {
  test('hello is welcomed and the device goes ONLINE once when heartbeats repeat', async () => {
    const d = await insertDevice(t.app.db.db);
    const events = await statusEvents(t.app.bus, d.id);
    const b = await node('node-b');
    const c = await hello(b, d);
    assert.deepEqual(c.sent[0], { type: 'welcome', heartbeatSeconds: 30, bound: false });
    for (let i = 0; i < 5; i++) c.deliver({ type: 'heartbeat' });
    const row = await waitFor(async () => {
      const r = await registryRow(d.id);
      return r.online ? r : null;
    });
    assert.equal(row.nodeId, 'node-b');
    assert.equal(row.firmware, 'V5.7.3');
    assert.equal(row.heartbeats, true);
    await c.teardown();
    await c.teardown(); // idempotent
    await waitFor(() => events.of(d.id).length === 2, 5000, 'OFFLINE');
    assert.deepEqual(events.of(d.id), ['ONLINE', 'OFFLINE']);
    assert.equal((await registryRow(d.id)).online, false);
    events.stop();
  });

  test('welcome says bound when the device has an open binding', async () => {
    const d = await insertDevice(t.app.db.db);
    await insertBinding(t.app.db.db, d.id, await insertUser(t.app.db.db));
    const c = await hello(await node('node-bound'), d);
    assert.equal(c.sent[0]?.bound, true);
    await c.teardown();
  });

  test('closes 4401 when the key is wrong or the serial unknown', async () => {
    const d = await insertDevice(t.app.db.db);
    const r = await node('node-auth');
    const wrong = await hello(r, { ...d, deviceKey: 'not-the-key' });
    assert.equal(wrong.state.closed?.code, 4401);
    const unknown = await hello(r, { ...d, serial: 'NO-SUCH-SERIAL' });
    assert.equal(unknown.state.closed?.code, 4401);
    assert.equal((await registryRow(d.id)).online, false);
  });

  const limitedNode = (nodeId: string, helloLimits: Parameters<typeof createDeviceRegistry>[0]['helloLimits'] = {}) =>
    createDeviceRegistry({
      db: t.app.db.db,
      clock: clock.now,
      bus: createEventBus(),
      log: silent,
      nodeId,
      alarms: t.app.alarmStore,
      limiters: limiterFactory(undefined, `test-${nodeId}-${Date.now()}:`),
      helloLimits,
    });
  const attemptOn = async (r: ReturnType<typeof createDeviceRegistry>, serial: string, key: string, ip: string) => {
    const f = fakeTransport();
    r.open(f.transport, { ip });
    f.deliver({ type: 'hello', serial, key });
    await Promise.race([f.waitSent('welcome'), f.waitClosed()]);
    return f;
  };

  test('lets every other device behind an address in after one device there failed 30 hellos', async () => {
    const broken = await insertDevice(t.app.db.db);
    const neighbour = await insertDevice(t.app.db.db);
    const r = limitedNode('node-nat');
    for (let i = 0; i < 30; i++) assert.equal((await attemptOn(r, broken.serial, 'stale-key', '10.0.0.9')).state.closed?.code, 4401);
    // Before: 30 failures from an address refused every device behind it, right keys included.
    assert.equal((await attemptOn(r, neighbour.serial, neighbour.deviceKey, '10.0.0.9')).sent[0]?.type, 'welcome');
    await r.stop();
  });

  test('holds one (source, serial) after 5 failures, and only there', async () => {
    const d = await insertDevice(t.app.db.db);
    const r = limitedNode('node-held');
    for (let i = 0; i < 6; i++) assert.equal((await attemptOn(r, d.serial, 'guess', '10.0.1.9')).state.closed?.code, 4401);
    assert.equal((await attemptOn(r, d.serial, d.deviceKey, '10.0.1.9')).state.closed?.code, 4401, 'held without a lookup');
    assert.equal((await attemptOn(r, d.serial, d.deviceKey, '10.0.1.10')).sent[0]?.type, 'welcome', 'another source is not held');
    await r.stop();
  });

  test('keeps letting right keys in, one lookup at a time, from a source past its failure budget', async () => {
    const d = await insertDevice(t.app.db.db);
    const r = limitedNode('node-spray', { perSourcePerMin: 5 });
    for (let i = 0; i < 12; i++) assert.equal((await attemptOn(r, `NO-SUCH-${i}`, 'guess', '10.0.2.9')).state.closed?.code, 4401);
    const [good, bad] = await Promise.all([attemptOn(r, d.serial, d.deviceKey, '10.0.2.9'), attemptOn(r, 'NO-SUCH-X', 'guess', '10.0.2.9')]);
    assert.equal(good.sent[0]?.type, 'welcome');
    assert.equal(bad.state.closed?.code, 4401);
    await r.stop();
  });

  test('closes 4408 when no hello arrives in time', async () => {
    const f = fakeTransport();
    (await node('node-timeout', { helloTimeoutMs: 50 })).open(f.transport, { ip: '127.0.0.1' });
    assert.equal((await f.waitClosed()).code, 4408);
  });

  test('closes 4408 and goes OFFLINE when heartbeats stop for two and a half periods', async () => {
    const d = await insertDevice(t.app.db.db);
    const events = await statusEvents(t.app.bus, d.id);
    const c = await hello(await node('node-silence', { heartbeatSeconds: 0.1 }), d);
    assert.equal((await c.waitClosed()).code, 4408);
    await waitFor(() => events.of(d.id).includes('OFFLINE'), 5000, 'OFFLINE');
    assert.deepEqual(events.of(d.id), ['ONLINE', 'OFFLINE']);
    events.stop();
  });

  test('closes 4400 on frames that break the protocol', async () => {
    const d = await insertDevice(t.app.db.db);
    const r = await node('node-frames');
    const cases: Array<[string, (f: ReturnType<typeof fakeTransport>) => void]> = [
      ['not JSON', (f) => f.deliver('{nope')],
      ['binary', (f) => f.deliverBinary()],
      ['unknown type', (f) => f.deliver({ type: 'selfdestruct' })],
      ['event before hello', (f) => f.deliver({ type: 'event', id: 1, eventType: 'VMD' })],
      ['oversized', (f) => f.deliver({ type: 'hello', serial: d.serial, key: 'x'.repeat(20_000) })],
      ['hello without key', (f) => f.deliver({ type: 'hello', serial: d.serial })],
    ];
    for (const [what, act] of cases) {
      const f = fakeTransport();
      r.open(f.transport, { ip: '127.0.0.1' });
      act(f);
      assert.equal((await f.waitClosed()).code, 4400, what);
    }
    const again = await hello(r, d);
    again.deliver({ type: 'hello', serial: d.serial, key: d.deviceKey });
    assert.equal((await again.waitClosed()).code, 4400, 'second hello');
    const bad = await hello(r, d);
    bad.deliver({ type: 'event', id: 'e', eventType: 'VMD', at: 'yesterday' });
    assert.equal((await bad.waitClosed()).code, 4400, 'bad event time');
  });

  test('closes 4400 when a device floods frames faster than the rate limit', async () => {
    const d = await insertDevice(t.app.db.db);
    const c = await hello(await node('node-flood'), d);
    for (let i = 0; i < 50 && !c.state.closed; i++) c.deliver({ type: 'heartbeat' });
    const closed = await c.waitClosed();
    assert.equal(closed.code, 4400);
    assert.match(closed.reason, /too many/);
  });

  test('replaces the older connection with 4409 across nodes when the bus carries the news', async () => {
    const d = await insertDevice(t.app.db.db);
    const events = await statusEvents(t.app.bus, d.id);
    const first = await hello(await node('node-old'), d);
    const second = await hello(await node('node-new'), d);
    assert.equal((await first.waitClosed()).code, 4409);
    assert.equal(second.state.closed, null);
    await first.teardown();
    const row = await registryRow(d.id);
    assert.equal(row.online, true);
    assert.equal(row.nodeId, 'node-new');
    await second.teardown();
    await waitFor(() => events.of(d.id).includes('OFFLINE'));
    assert.deepEqual(events.of(d.id), ['ONLINE', 'OFFLINE'], 'no OFFLINE/ONLINE flap from the replacement');
    events.stop();
  });

  test('replaces the older connection at its next heartbeat when the nodes share no bus', async () => {
    const d = await insertDevice(t.app.db.db);
    const first = await hello(await node('island-1', { bus: createEventBus() }), d);
    const second = await hello(await node('island-2', { bus: createEventBus() }), d);
    assert.equal(first.state.closed, null, 'not told yet');
    first.deliver({ type: 'heartbeat' });
    assert.equal((await first.waitClosed()).code, 4409);
    await first.teardown();
    assert.equal((await registryRow(d.id)).online, true);
    await second.teardown();
  });

  test('marks the devices of a node that died OFFLINE when the sweeper finds them silent', async () => {
    const d = await insertDevice(t.app.db.db);
    const events = await statusEvents(t.app.bus, d.id);
    // This node "dies": its connection is never torn down and its registry never stops.
    const doomed = createDeviceRegistry({ db: t.app.db.db, clock: clock.now, bus: t.app.bus, log: silent, nodeId: 'node-doomed', alarms: t.app.alarmStore });
    await hello(doomed, d);
    assert.equal((await registryRow(d.id)).online, true);
    assert.equal((await t.app.registry.sweep()).offline, 0, 'not silent yet');
    clock.advance(76_000); // 2.5 heartbeats of 30 s, and a bit
    await t.app.registry.sweep();
    await waitFor(() => events.of(d.id).includes('OFFLINE'), 5000, 'OFFLINE');
    assert.deepEqual(events.of(d.id), ['ONLINE', 'OFFLINE']);
    assert.equal((await registryRow(d.id)).online, false);
    // Reconnecting elsewhere brings it back.
    const back = await hello(await node('node-survivor'), d);
    await waitFor(() => events.of(d.id).length === 3);
    assert.deepEqual(events.of(d.id), ['ONLINE', 'OFFLINE', 'ONLINE']);
    await back.teardown();
    events.stop();
  });

  test('revives a swept connection to ONLINE when its heartbeat arrives after all', async () => {
    const d = await insertDevice(t.app.db.db);
    const events = await statusEvents(t.app.bus, d.id);
    const c = await hello(await node('node-slow'), d);
    clock.advance(76_000);
    await t.app.registry.sweep();
    await waitFor(() => events.of(d.id).includes('OFFLINE'));
    c.deliver({ type: 'heartbeat' });
    await waitFor(() => events.of(d.id).length === 3, 5000, 'ONLINE again');
    assert.deepEqual(events.of(d.id), ['ONLINE', 'OFFLINE', 'ONLINE']);
    assert.equal(c.state.closed, null);
    await c.teardown();
    events.stop();
  });

  test('delivers a command on the node holding the device and records its result', async () => {
    const d = await insertDevice(t.app.db.db);
    const c = await hello(await node('node-cmd'), d);
    const id = await t.app.registry.sendCommand(d.id, 'unbind');
    const cmd = await c.waitSent('command');
    assert.deepEqual(cmd, { type: 'command', id, name: 'unbind' });
    c.deliver({ type: 'result', id, ok: true });
    await waitFor(async () => {
      const [row] = await t.app.db.db.select().from(tables.deviceCommands).where(eq(tables.deviceCommands.id, id));
      return row?.completedAt && row.ok === true;
    }, 5000, 'command completed');
    await c.teardown();
  });

  test('delivers a command at the next heartbeat when the holding node shares no bus', async () => {
    const d = await insertDevice(t.app.db.db);
    const c = await hello(await node('node-cmd-island', { bus: createEventBus() }), d);
    const id = await t.app.registry.sendCommand(d.id, 'unbind');
    assert.equal(c.sent.some((f) => f.type === 'command'), false);
    c.deliver({ type: 'heartbeat' });
    assert.equal((await c.waitSent('command')).id, id);
    await c.teardown();
  });

  test('delivers a queued command on the next connection, unless the device was bound again since', async () => {
    const d = await insertDevice(t.app.db.db);
    const queued = await t.app.registry.sendCommand(d.id, 'unbind');
    const c = await hello(await node('node-later'), d);
    assert.equal((await c.waitSent('command')).id, queued);
    c.deliver({ type: 'result', id: queued, ok: true });
    await c.teardown();

    await t.app.registry.sendCommand(d.id, 'unbind');
    clock.advance(1000);
    await insertBinding(t.app.db.db, d.id, await insertUser(t.app.db.db), clock.now());
    const rebound = await hello(await node('node-rebound'), d);
    assert.equal(rebound.sent[0]?.bound, true);
    rebound.deliver({ type: 'heartbeat' });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(rebound.sent.some((f) => f.type === 'command'), false, 'the stale unbind is superseded');
    await rebound.teardown();
  });
});

describe('leases', () => {
  test('lets one node run a leased job at a time and hands it over when released or expired', async () => {
    const runs: string[] = [];
    const name = `test-lease-${Date.now()}`;
    const mk = (holder: string) =>
      createLeasedJob(t.app.db.db, { name, holder, intervalMs: 1000, clock: clock.now, log: silent, run: async () => void runs.push(holder) });
    const a = mk('a');
    const b = mk('b');
    assert.equal(await a.runOnce(), true);
    assert.equal(await b.runOnce(), false);
    assert.equal(await a.runOnce(), true, 'the holder renews');
    await a.stop(); // releases
    assert.equal(await b.runOnce(), true);
    assert.equal(await a.runOnce(), false);
    clock.advance(3100); // b's lease (3 intervals) runs out without renewal
    assert.equal(await a.runOnce(), true);
    assert.deepEqual(runs, ['a', 'a', 'b', 'a']);
  });
});

describe('a gateway process that dies', { skip: hasPostgres ? false : 'needs Postgres: two processes share one database' }, () => {
  test('marks the devices of a SIGKILLed gateway OFFLINE from a surviving node, and they come back when they reconnect there', async () => {
    const db = (await freshDatabase())!;
    const dataDir = mkdtempSync(path.join(tmpdir(), 'vigil-child-'));
    const survivorClock = testClock();
    const survivor = await startApp({ databaseUrl: db.url, clock: survivorClock.now });
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: {
        ...process.env,
        DATABASE_URL: db.url,
        PORT: '0',
        HOST: '127.0.0.1',
        DATA_DIR: dataDir,
        NODE_ID: 'doomed-child',
        LOG_LEVEL: 'info',
        NODE_ENV: 'test',
        ...(process.env.TEST_REDIS_URL ? { REDIS_URL: process.env.TEST_REDIS_URL } : {}),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    try {
      const childUrl = await new Promise<string>((resolve, reject) => {
        const lines = createInterface({ input: child.stdout! });
        lines.on('line', (line) => {
          try {
            const entry = JSON.parse(line) as { msg?: string; url?: string };
            if (entry.msg === 'vigil gateway listening' && entry.url) resolve(entry.url);
          } catch {
            // not a log line
          }
        });
        child.once('exit', (code) => reject(new Error(`child exited early with ${code}`)));
      });
      const d = await insertDevice(survivor.app.db.db);
      const events = await statusEvents(survivor.app.bus, d.id);
      const dev = await connectDevice(childUrl, d);
      const [held] = await survivor.app.db.db.select().from(tables.devices).where(eq(tables.devices.id, d.id));
      assert.equal(held!.online, true);
      assert.equal(held!.nodeId, 'doomed-child');

      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      assert.equal((await dev.closed).code, 1006, 'no close frame from a killed process');
      const [stale] = await survivor.app.db.db.select().from(tables.devices).where(eq(tables.devices.id, d.id));
      assert.equal(stale!.online, true, 'nobody told the database');

      survivorClock.advance(76_000);
      await survivor.app.registry.sweep();
      await waitFor(() => events.of(d.id).includes('OFFLINE'), 5000, 'OFFLINE');
      const [swept] = await survivor.app.db.db.select().from(tables.devices).where(eq(tables.devices.id, d.id));
      assert.equal(swept!.online, false);

      const offlineAt = events.of(d.id).lastIndexOf('OFFLINE');
      const back = await connectDevice(survivor.url, d);
      await waitFor(() => events.of(d.id).slice(offlineAt + 1).includes('ONLINE'), 5000, 'ONLINE again');
      const [moved] = await survivor.app.db.db.select().from(tables.devices).where(eq(tables.devices.id, d.id));
      assert.equal(moved!.online, true);
      assert.notEqual(moved!.nodeId, 'doomed-child');
      back.close();
      await back.closed;
      events.stop();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      await survivor.stop();
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
