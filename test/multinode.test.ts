import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import {
  AlarmCursorsDocument,
  AlarmIdsDocument,
  BindDeviceDocument,
  DeviceStatusEventsDocument,
  MeDocument,
  RegisterDocument,
  type AlarmCursorsSubscription,
} from './generated/graphql';
import { connectDevice, type DeviceFrame, type TestDevice } from './helpers/alarms-fixtures';
import { clusterSecrets, redisProxy, requireServices, startGateway, type GatewayProcess } from './helpers/gateway-process';
import { freshDatabase, STRONG_PASSWORD, uniqueEmail, waitFor } from './helpers/harness';
import { subscribe, subscriptionsRunningAt, wsClient, type LiveSubscription, type TestWsClient } from './helpers/subscriptions';

const skip = requireServices({ postgres: true, redis: true });

type Alarm = AlarmCursorsSubscription['alarms'];

/** GraphQL over HTTP to one node; fails on any INTERNAL error. */
async function gqlAt<T, V>(base: string, doc: TypedDocumentNode<T, V>, variables: V, token?: string): Promise<T> {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query: print(doc), variables }),
  });
  const body = (await res.json()) as { data?: T; errors?: unknown[] };
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data!;
}

/**
 * A device on the WebSocket channel as DEVICES.md describes it: heartbeats, events with ids, and
 * the events not acked yet sent again after it reconnects (to whichever node).
 */
class SimDevice {
  private socket: TestDevice | null = null;
  private heartbeat: NodeJS.Timeout | undefined;
  private next = 1;
  readonly unacked = new Map<string, Record<string, unknown>>();
  readonly acked: string[] = [];

  constructor(private readonly creds: { serial: string; deviceKey: string }) {}

  async connect(base: string): Promise<void> {
    const d = await connectDevice(base, this.creds);
    this.socket = d;
    d.ws.on('message', (m) => {
      const f = JSON.parse(m.toString()) as DeviceFrame;
      if (f.type === 'ack' && this.unacked.delete(String(f.id))) this.acked.push(String(f.id));
    });
    void d.closed.then(() => {
      if (this.socket === d) this.socket = null;
    });
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => d.ws.readyState === d.ws.OPEN && d.send({ type: 'heartbeat' }), 700).unref();
    for (const frame of this.unacked.values()) d.send(frame);
  }

  /** Sends one alarm on a channel of its own (so it opens a new alarm); returns its id. */
  raise(): string {
    const id = `e${this.next}`;
    const frame = { type: 'event', id, channel: this.next, eventType: 'VMD', state: 'active', at: new Date().toISOString() };
    this.next++;
    this.unacked.set(id, frame);
    this.socket?.send(frame);
    return id;
  }

  get connected() {
    return this.socket !== null;
  }

  /** Resolves once the node closed the socket or died. */
  async lost(): Promise<void> {
    await this.socket?.closed;
  }

  disconnect() {
    clearInterval(this.heartbeat);
    this.socket?.close();
    this.socket = null;
  }
}

const ids = (events: Array<{ alarms: Alarm }>) => events.map((e) => e.alarms.id);

describe('several gateway nodes on one Postgres and one Redis', { skip }, () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let proxy: Awaited<ReturnType<typeof redisProxy>>;
  const nodes: GatewayProcess[] = [];
  const clients: TestWsClient[] = [];
  let a: GatewayProcess;
  let b: GatewayProcess;
  let c: GatewayProcess;
  let env: Record<string, string>;
  let token: string;
  let deviceId: string;
  let device: SimDevice;
  let status: LiveSubscription<{ deviceStatus: { status: string; device: { id: string } } }>;
  let live: LiveSubscription<{ alarms: Alarm }>;

  const node = async (name: string) => {
    const n = await startGateway(name, env);
    nodes.push(n);
    return n;
  };
  const client = (base: string) => {
    const cl = wsClient(base, token);
    clients.push(cl);
    return cl;
  };
  /** Every alarm of the device as stored, oldest first (the query pages newest first). */
  const storedIds = async (base: string) => {
    const page = await gqlAt(base, AlarmIdsDocument, { first: 100, filter: { deviceIds: [deviceId] } }, token);
    return page.alarms.edges.map((e) => e.node.id).reverse();
  };

  before(async () => {
    db = (await freshDatabase())!;
    proxy = await redisProxy(process.env.TEST_REDIS_URL!);
    env = {
      ...clusterSecrets(),
      DATABASE_URL: db.url,
      REDIS_URL: proxy.url,
      DEVICE_HEARTBEAT_S: '1',
      DEVICE_SWEEP_INTERVAL_MS: '300',
      REGISTER_MAX_PER_IP: '1000',
      // This cluster's own counters: other runs on the same Redis (benchmarks, earlier test runs)
      // bind many devices from this address within the limits' day.
      REDIS_PREFIX: `vigil-multinode:${randomBytes(4).toString('hex')}:`,
    };
    // B first, so it migrates the database; then A beside it.
    b = await node('node-b');
    a = await node('node-a');

    const email = uniqueEmail('multinode');
    token = (await gqlAt(a.url, RegisterDocument, { input: { email, password: STRONG_PASSWORD } })).register.accessToken;
    const res = await fetch(`${a.url}/admin/devices`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${env.ADMIN_TOKEN}` },
      body: JSON.stringify({ serial: `DS-MULTI-${Date.now()}`, model: 'DS-2CD2143G2-I', channels: 16 }),
    });
    assert.equal(res.status, 201);
    const p = (await res.json()) as { serial: string; verificationCode: string; deviceKey: string };
    deviceId = (await gqlAt(a.url, BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode, name: 'Gate' }, token)).bindDevice.id;
    device = new SimDevice(p);
  });

  after(async () => {
    device?.disconnect();
    await Promise.all(clients.map((cl) => cl.dispose()));
    await Promise.all(nodes.map((n) => n.kill('SIGKILL')));
    await proxy?.close();
    await db?.drop();
  });

  test('delivers an alarm raised through node A to a subscriber on node B', async () => {
    const cb = client(b.url);
    status = subscribe(cb, DeviceStatusEventsDocument, {});
    live = subscribe(cb, AlarmCursorsDocument, {});
    await subscriptionsRunningAt(b.url, 2);

    await device.connect(a.url);
    const [online] = await status.received(1);
    assert.equal(online!.deviceStatus.status, 'ONLINE');
    const sent = [device.raise(), device.raise(), device.raise()];
    await waitFor(() => device.acked.length === 3, 5000, 'acks from node A');
    const got = await live.received(3);
    assert.deepEqual(ids(got), await storedIds(b.url));
    assert.equal(sent.length, 3);
  });

  test('shows OFFLINE then ONLINE and loses no acked alarm when node A is killed and the device moves to node B', async () => {
    device.raise();
    device.raise();
    await waitFor(() => device.acked.length === 5, 5000, 'acks from node A');
    const unackedAtKill = device.raise(); // may or may not be stored before the kill
    await a.kill('SIGKILL');
    await device.lost();

    // Node B's sweeper notices the silence (2.5 heartbeats) and marks the device OFFLINE.
    await status.received(2, 15_000);
    assert.equal(status.events[1]!.deviceStatus.status, 'OFFLINE');
    await device.connect(b.url);
    await status.received(3);
    assert.equal(status.events[2]!.deviceStatus.status, 'ONLINE');

    await waitFor(() => device.unacked.size === 0, 5000, 'the resent event to be acked by node B');
    assert.ok(device.acked.includes(unackedAtKill));
    const stored = await storedIds(b.url);
    assert.equal(stored.length, 6, 'six events, each stored once');
    const got = await live.received(6);
    assert.deepEqual(ids(got), stored, 'every alarm once, in order');
  });

  test('resumes on another node with the last cursor and loses nothing while alarms keep flowing', async () => {
    c = await node('node-c');
    const first = client(c.url);
    const startId = live.events.at(-1)!.alarms.id;
    const start = live.events.at(-1)!.alarms.cursor;
    const before = subscribe(first, AlarmCursorsDocument, { after: start });
    let writing = true;
    const writer = (async () => {
      while (writing) {
        device.raise();
        await new Promise((r) => setTimeout(r, 30));
      }
    })();
    await before.received(5, 10_000);
    // The client drops off mid-stream: what it processed so far, and its last cursor, are what count.
    const kept = before.events.slice();
    const resumeFrom = kept.at(-1)!.alarms.cursor;
    await first.dispose();
    await new Promise((r) => setTimeout(r, 200)); // ...while alarms keep arriving...
    const resumed = subscribe(client(b.url), AlarmCursorsDocument, { after: resumeFrom }); // ...and resumes on node B.
    await resumed.received(5, 10_000);
    writing = false;
    await writer;
    await waitFor(() => device.unacked.size === 0, 5000, 'every event acked');
    const stored = await storedIds(b.url);
    const expected = stored.slice(stored.indexOf(startId) + 1);
    await resumed.received(expected.length - kept.length, 10_000);
    assert.deepEqual([...ids(kept), ...ids(resumed.events)], expected, 'exactly once, in order, across the reconnect');
    resumed.stop();
  });

  test('keeps serving queries and alarms through a Redis outage and resumes events when Redis is back', async () => {
    const onC = subscribe(client(c.url), AlarmCursorsDocument, { after: (await storedIdsWithCursor()).cursor });
    const statusOnC = subscribe(client(c.url), DeviceStatusEventsDocument, {});
    await subscriptionsRunningAt(c.url, 2);

    await proxy.cut();
    // Queries: answered by both nodes (rate limits fall back to each node's memory).
    const t0 = Date.now();
    const me = await gqlAt(b.url, MeDocument, {}, token);
    assert.ok(me.me.id);
    await gqlAt(c.url, MeDocument, {}, token);
    assert.ok(Date.now() - t0 < 5000, `queries answered in ${Date.now() - t0} ms`);

    // Alarms: stored on B, read from Postgres by C's tailer (its periodic tick: no bus needed).
    const during = [device.raise(), device.raise(), device.raise()];
    await waitFor(() => during.every((id) => device.acked.includes(id)), 5000, 'acks during the outage');
    await onC.received(3, 10_000);

    // A subscriber that drops off during the outage resumes with its cursor and loses nothing.
    const resumeFrom = onC.events.at(-1)!.alarms.cursor;
    onC.stop();
    const more = [device.raise(), device.raise()];
    await waitFor(() => more.every((id) => device.acked.includes(id)), 5000, 'acks during the outage');
    const resumed = subscribe(client(c.url), AlarmCursorsDocument, { after: resumeFrom });
    await resumed.received(2, 10_000);

    await proxy.restore();
    // Status changes cross nodes again once the nodes have reconnected (ioredis backs off up to 2 s).
    await waitFor(
      async () => {
        device.disconnect();
        await new Promise((r) => setTimeout(r, 150));
        await device.connect(b.url);
        await new Promise((r) => setTimeout(r, 150));
        return statusOnC.events.length > 0;
      },
      20_000,
      'a status event from B on C after Redis came back',
    );
    for (const n of [b, c]) assert.equal(n.proc.exitCode, null, `${n.name} still running`);
    resumed.stop();
    statusOnC.stop();
  });

  /** The newest stored alarm's cursor. */
  async function storedIdsWithCursor() {
    const page = await gqlAt(b.url, AlarmIdsDocument, { first: 1, filter: { deviceIds: [deviceId] } }, token);
    return { cursor: page.alarms.edges[0]!.cursor };
  }
});
