import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { eq, inArray, sql } from 'drizzle-orm';
import { WebSocket } from 'ws';
import { tables } from '../src/db/index';
import { progressLine, provisionFleet, startSimulator } from '../src/tools/simulator';
import { AlarmIdsDocument, DeviceDocument, UnbindDeviceDocument } from './generated/graphql';
import { connectDevice, insertBinding, insertDevice, openDeviceSocket, statusEvents } from './helpers/alarms-fixtures';
import { provisionAndBind, registerUser, type TestUser } from './helpers/devices';
import { expectData, startApp, testClock, waitFor, type TestApp } from './helpers/harness';

let t: TestApp;
let owner: TestUser;
const clock = testClock();

before(async () => {
  t = await startApp({ clock: clock.now });
  owner = await registerUser(t, 'ws-owner');
});
after(() => t.stop());

const statusOf = async (deviceId: string, token = owner.token) => expectData(await t.gql(DeviceDocument, { id: deviceId }, { token })).device;

describe('device WebSocket channel', () => {
  test('welcomes a provisioned device and shows it ONLINE with its firmware when it says hello', async () => {
    const { device, provisioned } = await provisionAndBind(t, owner);
    assert.equal(device.status, 'OFFLINE');
    const events = await statusEvents(t.app.bus, device.id);
    const dev = await connectDevice(t.url, provisioned, { firmware: 'V5.7.11 build 230301' });
    assert.equal(dev.ws.protocol, 'vigil-device.v1');
    assert.deepEqual(dev.frames[0], { type: 'welcome', heartbeatSeconds: 30, bound: true });
    const seen = await statusOf(device.id);
    assert.equal(seen?.status, 'ONLINE');
    assert.equal(seen?.firmware, 'V5.7.11 build 230301');
    assert.ok(seen?.lastSeenAt);
    dev.send({ type: 'heartbeat' });
    dev.send({ type: 'heartbeat' });
    dev.close();
    await dev.closed;
    await waitFor(async () => (await statusOf(device.id))?.status === 'OFFLINE', 5000, 'OFFLINE after close');
    await waitFor(() => events.of(device.id).length === 2);
    assert.deepEqual(events.of(device.id), ['ONLINE', 'OFFLINE'], 'each transition once');
    events.stop();
  });

  test('refuses the upgrade with 400 when the subprotocol is not offered', async () => {
    await assert.rejects(openDeviceSocket(t.url, []), /upgrade refused: 400/);
    await assert.rejects(openDeviceSocket(t.url, ['graphql-transport-ws']), /upgrade refused: 400/);
  });

  test('closes 4401 when the key is wrong or the serial unknown', async () => {
    const d = await insertDevice(t.app.db.db);
    for (const hello of [
      { type: 'hello', serial: d.serial, key: 'wrong-key' },
      { type: 'hello', serial: 'DS-NOBODY', key: d.deviceKey },
    ]) {
      const dev = await openDeviceSocket(t.url);
      dev.send(hello);
      assert.equal((await dev.closed).code, 4401);
      assert.equal(dev.frames.length, 0);
    }
  });

  test('closes 4400 on a frame that is not JSON and on a binary frame', async () => {
    const a = await openDeviceSocket(t.url);
    a.send('hello?');
    assert.equal((await a.closed).code, 4400);
    const b = await openDeviceSocket(t.url);
    b.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    assert.equal((await b.closed).code, 4400);
  });

  test('closes the connection when a frame exceeds the transport limit', async () => {
    const d = await openDeviceSocket(t.url);
    d.send({ type: 'hello', serial: 'X', key: 'k'.repeat(100 * 1024) });
    const { code } = await d.closed;
    assert.ok(code === 1009 || code === 4400, `closed with ${code}`);
  });

  test('acks an event after storing it and stores a resent event once when the device reconnects', async () => {
    const { device, provisioned } = await provisionAndBind(t, owner);
    const dev = await connectDevice(t.url, provisioned);
    const at = new Date(Date.now() - 5000).toISOString();
    const event = { type: 'event', id: 'evt-1', channel: 2, eventType: 'linedetection', state: 'active', at, description: 'Line crossed' };
    dev.send(event);
    await dev.waitFrame((f) => f.type === 'ack' && f.id === 'evt-1');
    // Acked means stored: the row is there the moment the ack is.
    const stored = await t.app.db.db.select().from(tables.alarms).where(eq(tables.alarms.deviceId, device.id));
    assert.equal(stored.length, 1);
    dev.send(event); // resent on the same connection
    await waitFor(() => dev.frames.filter((f) => f.type === 'ack').length === 2);
    dev.ws.terminate();
    await dev.closed;
    const again = await connectDevice(t.url, provisioned);
    again.send(event); // resent after reconnecting
    again.send({ ...event, id: 42, channel: 3 }); // numeric ids are fine too
    // Acks follow commits, not arrival: when both frames share a batch, the new event is stored by the
    // fast insert and acked first, the resent one is found a duplicate after it.
    await again.waitFrame((f) => f.type === 'ack' && f.id === 42);
    await again.waitFrame((f) => f.type === 'ack' && f.id === 'evt-1', 'the resent event acked');
    const list = expectData(await t.gql(AlarmIdsDocument, { filter: { deviceIds: [device.id] } }, { token: owner.token })).alarms.edges;
    assert.deepEqual(
      list.map((e) => [e.node.type, e.node.channel]),
      [
        ['LINE_CROSSING', 3],
        ['LINE_CROSSING', 2],
      ],
    );
    again.close();
    await again.closed;
  });

  test('closes the older connection with 4409 when the same serial connects again', async () => {
    const { device, provisioned } = await provisionAndBind(t, owner);
    const events = await statusEvents(t.app.bus, device.id);
    const first = await connectDevice(t.url, provisioned);
    const second = await connectDevice(t.url, provisioned);
    const closed = await first.closed;
    assert.equal(closed.code, 4409);
    assert.equal(second.ws.readyState, WebSocket.OPEN);
    second.send({ type: 'heartbeat' });
    assert.equal((await statusOf(device.id))?.status, 'ONLINE');
    second.close();
    await second.closed;
    await waitFor(() => events.of(device.id).includes('OFFLINE'));
    assert.deepEqual(events.of(device.id), ['ONLINE', 'OFFLINE'], 'a replacement is not an OFFLINE/ONLINE flap');
    events.stop();
  });

  test('sends the unbind command to the connected device when its owner unbinds it', async () => {
    const { device, provisioned } = await provisionAndBind(t, owner);
    const dev = await connectDevice(t.url, provisioned);
    const res = expectData(await t.gql(UnbindDeviceDocument, { id: device.id, password: owner.password }, { token: owner.token }));
    assert.equal(res.unbindDevice.ok, true);
    const cmd = await dev.waitFrame((f) => f.type === 'command');
    assert.equal(cmd.name, 'unbind');
    dev.send({ type: 'result', id: cmd.id, ok: true });
    await waitFor(async () => {
      const [row] = await t.app.db.db.select().from(tables.deviceCommands).where(eq(tables.deviceCommands.id, String(cmd.id)));
      return row?.completedAt;
    });
    // After the unbind the device keeps reporting, but its events belong to nobody.
    dev.send({ type: 'event', id: 'after-unbind', eventType: 'VMD' });
    await dev.waitFrame((f) => f.type === 'ack' && f.id === 'after-unbind');
    const rows = await t.app.db.db.select().from(tables.alarms).where(eq(tables.alarms.deviceId, device.id));
    assert.equal(rows.length, 0);
    const reconnect = await (async () => {
      dev.close();
      await dev.closed;
      return connectDevice(t.url, provisioned);
    })();
    assert.equal(reconnect.frames[0]?.bound, false);
    reconnect.close();
    await reconnect.closed;
  });

  test('marks a silent WebSocket device OFFLINE when the sweeper runs after two and a half heartbeats', async () => {
    const { device, provisioned } = await provisionAndBind(t, owner);
    const dev = await connectDevice(t.url, provisioned);
    clock.advance(60_000);
    await t.app.registry.sweep();
    assert.equal((await statusOf(device.id))?.status, 'ONLINE', 'two heartbeats missed is not yet OFFLINE');
    clock.advance(16_000);
    await t.app.registry.sweep();
    assert.equal((await statusOf(device.id))?.status, 'OFFLINE');
    dev.send({ type: 'heartbeat' });
    await waitFor(async () => (await statusOf(device.id))?.status === 'ONLINE', 5000, 'revived by a heartbeat');
    dev.close();
    await dev.closed;
  });
});

describe('device WebSocket: events sent without waiting for acks', () => {
  const event = (id: string, channel: number, description = 'in flight') => ({ type: 'event', id, channel, eventType: 'VMD', state: 'active', description });

  test('stores the events a device sends back to back in one group commit and acks each, the acks of one commit in one write', async () => {
    const { device, provisioned } = await provisionAndBind(t, owner);
    const dev = await connectDevice(t.url, provisioned);
    // Writes the gateway's end of this socket makes (a corked socket writes its buffered frames in one go).
    const clientPort = (dev.ws as unknown as { _socket: Socket })._socket.localPort;
    const proto = Socket.prototype as unknown as Record<'_write' | '_writev', (this: Socket, ...args: unknown[]) => void>;
    const original = { _write: proto._write, _writev: proto._writev };
    let writes = 0;
    for (const name of ['_write', '_writev'] as const) {
      proto[name] = function (this: Socket, ...args: unknown[]) {
        if (this.remotePort === clientPort) writes++;
        return original[name].apply(this, args);
      };
    }
    const acked = new Set<unknown>();
    dev.ws.on('message', (data) => {
      const f = JSON.parse(data.toString()) as { type: string; id?: unknown };
      if (f.type === 'ack') acked.add(f.id);
    });
    let inserts = 0;
    const stop = t.app.db.observeStatements((q) => void (/insert into "?alarms"? /.test(q) && inserts++));
    const ids = ['b-1', 'b-2', 'b-3', 'b-4'];
    ids.forEach((id, i) => dev.send(event(id, 10 + i)));
    try {
      await waitFor(() => acked.size === ids.length, 5000, 'every event acked');
    } finally {
      Object.assign(proto, original);
      stop();
    }
    assert.equal(inserts, 1, 'one insert for the four events');
    assert.equal(writes, 1, 'the four acks left in one write');
    const stored = await t.app.db.db.select({ key: tables.alarmReceipts.key }).from(tables.alarmReceipts).where(eq(tables.alarmReceipts.deviceId, device.id));
    assert.deepEqual(stored.map((r) => r.key).sort(), ids.map((id) => `w:${id}`));
    dev.close();
    await dev.closed;
  });

  test('never acks an event whose commit failed, and closes so that the device resends it', async () => {
    const { device, provisioned } = await provisionAndBind(t, owner);
    const db = t.app.db.db;
    // Fails the commit of one event's row (a deferred constraint trigger runs at commit).
    await db.execute(sql`create function refuse_commit() returns trigger language plpgsql as $$
      begin if new.description = 'refuse-commit' then raise exception 'commit refused'; end if; return null; end $$`);
    await db.execute(sql`create constraint trigger refuse_commit after insert on alarms deferrable initially deferred for each row execute function refuse_commit()`);
    const burst = [event('f-1', 20), event('f-2', 21, 'refuse-commit'), event('f-3', 22)];
    try {
      const dev = await connectDevice(t.url, provisioned);
      for (const e of burst) dev.send(e);
      const closed = await dev.closed;
      assert.equal(closed.code, 1011);
      const acked = dev.frames.filter((f) => f.type === 'ack').map((f) => f.id);
      assert.ok(!acked.includes('f-2'), 'the refused event is not acked');
      const stored = await db.select({ key: tables.alarmReceipts.key }).from(tables.alarmReceipts).where(eq(tables.alarmReceipts.deviceId, device.id));
      for (const id of acked) assert.ok(stored.some((r) => r.key === `w:${String(id)}`), `acked ${String(id)} is stored`);
    } finally {
      await db.execute(sql`drop trigger refuse_commit on alarms`);
      await db.execute(sql`drop function refuse_commit()`);
    }
    // The device resends what was not acked: everything is stored once.
    const again = await connectDevice(t.url, provisioned);
    for (const e of burst) again.send({ ...e, description: 'resent' });
    await waitFor(() => again.frames.filter((f) => f.type === 'ack').length === 3, 5000, 'all three acked');
    const rows = await db.select({ channel: tables.alarms.channel }).from(tables.alarms).where(eq(tables.alarms.deviceId, device.id));
    assert.deepEqual(rows.map((r) => r.channel).sort(), [20, 21, 22]);
    again.close();
    await again.closed;
  });
});

describe('device WebSocket hello timeout', () => {
  test('closes 4408 when no hello arrives within 5 s', async () => {
    const dev = await openDeviceSocket(t.url);
    const started = Date.now();
    const { code } = await dev.closed;
    assert.equal(code, 4408);
    assert.ok(Date.now() - started >= 4500, 'not before the timeout');
  });
});

describe('simulator', () => {
  test('provisions, connects, raises alarms and resends unacked events after a network drop when run against the gateway', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vigil-sim-'));
    const stateFile = path.join(dir, 'devices.json');
    const prefix = `SIM${randomBytes(3).toString('hex').toUpperCase()}`;
    try {
      const devices = await provisionFleet({ adminUrl: `${t.url}/admin/devices`, adminToken: t.app.adminToken, count: 3, prefix, stateFile });
      assert.deepEqual(devices.map((d) => d.serial), [`${prefix}-00001`, `${prefix}-00002`, `${prefix}-00003`]);
      const rows = await t.app.db.db.select({ id: tables.devices.id }).from(tables.devices).where(inArray(tables.devices.serial, devices.map((d) => d.serial)));
      for (const r of rows) await insertBinding(t.app.db.db, r.id, owner.id, clock.now());

      const sim = startSimulator({ url: `${t.url.replace(/^http/, 'ws')}/devices/ws`, devices, alarmRate: 5, backoff: { initialMs: 50, maxMs: 200 } });
      await sim.allConnected();
      await waitFor(() => sim.stats().acked >= 10, 10_000, 'first acks');
      sim.dropConnections();
      await waitFor(() => sim.stats().reconnects >= 3 && sim.stats().connected === 3, 10_000, 'reconnected');
      const before = sim.stats().acked;
      await waitFor(() => sim.stats().acked >= before + 10, 10_000, 'acks after reconnecting');
      await sim.stop();
      const s = sim.stats();
      assert.match(progressLine(s), /^connected 0\/3  alarms sent \d+  acked \d+  pending \d+  reconnects \d+/);
      assert.equal(s.acked + s.pending, s.alarmsSent);
      const receipts = await t.app.db.db.select().from(tables.alarmReceipts).where(inArray(tables.alarmReceipts.deviceId, rows.map((r) => r.id)));
      assert.ok(receipts.length >= s.acked && receipts.length <= s.alarmsSent, `${receipts.length} stored for ${s.acked} acked of ${s.alarmsSent} sent`);

      // A second run reuses the recorded devices instead of provisioning new ones.
      const again = await provisionFleet({ adminUrl: `${t.url}/admin/devices`, adminToken: 'wrong-token-never-used', count: 3, prefix, stateFile });
      assert.deepEqual(again, devices);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
