import assert from 'node:assert/strict';
import { eq } from 'drizzle-orm';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { WebSocket } from 'ws';
import { tables, type Db } from '../../src/db/index';
import { deviceKeyHash, ingestTokenHash } from '../../src/devices/catalog/provisioning';
import type { DeviceStatusPayload, EventBus } from '../../src/streams/bus/event-bus';
import type { AlarmPost } from '../../src/streams/alarms/alarm-store';
import { waitFor } from './harness';

/** A file of the ISAPI corpus (test/fixtures/isapi). */
export const fixture = (name: string): Buffer => readFileSync(new URL(`../fixtures/isapi/${name}`, import.meta.url));

/** The multipart corpus files use this boundary. */
export const MULTIPART_TYPE = 'multipart/form-data; boundary=MIME_boundary';

/** POSTs one body to the alarm host path and returns status and text. */
export async function isapiPost(base: string, ingestPath: string, body: Buffer | string, contentType?: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${base}${ingestPath}`, {
    method: 'POST',
    headers: contentType ? { 'content-type': contentType } : {},
    body: typeof body === 'string' ? body : new Uint8Array(body),
  });
  return { status: res.status, text: await res.text() };
}

/** An `EventNotificationAlert` document in the hikvision.com namespace. */
export function alertXml(o: {
  eventType: string;
  state?: 'active' | 'inactive';
  channel?: number;
  count?: number;
  region?: string;
  dateTime?: string;
  description?: string;
}): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<ipAddress>192.168.1.64</ipAddress><portNo>80</portNo><protocol>HTTP</protocol><macAddress>44:19:b6:7a:10:2c</macAddress>
<channelID>${o.channel ?? 1}</channelID><dateTime>${o.dateTime ?? new Date().toISOString()}</dateTime>
<activePostCount>${o.count ?? 1}</activePostCount><eventType>${o.eventType}</eventType><eventState>${o.state ?? 'active'}</eventState>
<eventDescription>${o.description ?? `${o.eventType} alarm`}</eventDescription>
${o.region ? `<DetectionRegionList><DetectionRegionEntry><regionID>${o.region}</regionID></DetectionRegionEntry></DetectionRegionList>` : ''}
</EventNotificationAlert>`;
}

export interface DirectDevice {
  id: string;
  serial: string;
  deviceKey: string;
  ingestPath: string;
}

/**
 * Inserts a device row straight into the database with the same hashes provisioning stores
 * (sha256 of the device key and of the ingest token). For bulk set-ups where the admin endpoint
 * and argon2 of the label code would only cost time.
 */
export async function insertDevice(db: Db, opts: { serial?: string } = {}): Promise<DirectDevice> {
  const serial = opts.serial ?? `DS-DIRECT-${randomBytes(6).toString('hex').toUpperCase()}`;
  const deviceKey = randomBytes(32).toString('base64url');
  const ingestToken = randomBytes(32).toString('base64url');
  const [row] = await db
    .insert(tables.devices)
    .values({ serial, model: 'DS-2CD2143G2-I', channels: 1, verificationCodeHash: 'unused', deviceKeyHash: deviceKeyHash(deviceKey), ingestTokenHash: ingestTokenHash(ingestToken) })
    .returning({ id: tables.devices.id });
  return { id: row!.id, serial, deviceKey, ingestPath: `/isapi/events/${ingestToken}` };
}

/** Inserts a user row without a usable password (fixtures that never log in). */
export async function insertUser(db: Db): Promise<string> {
  const [row] = await db
    .insert(tables.users)
    .values({ email: `direct-${randomUUID()}@example.com`, passwordHash: 'unused' })
    .returning({ id: tables.users.id });
  return row!.id;
}

/** Opens a binding of `deviceId` for `ownerId` directly; returns the binding id. */
export async function insertBinding(db: Db, deviceId: string, ownerId: string, boundAt = new Date()): Promise<string> {
  const [row] = await db.insert(tables.bindings).values({ deviceId, ownerId, name: 'direct', boundAt }).returning({ id: tables.bindings.id });
  return row!.id;
}

/** A device inserted directly (no argon2, no admin round trip) and bound to `ownerId`. */
export async function insertBoundDevice(db: Db, ownerId: string, boundAt = new Date()): Promise<DirectDevice> {
  const d = await insertDevice(db);
  await insertBinding(db, d.id, ownerId, boundAt);
  return d;
}

/** The alarms stored for a device. */
/** A post as the doors hand it to the store: an active, uncoalesced alarm of `eventType` on channel 1, unless `o` says otherwise. */
export const alarmPost = (eventType: string, o: Partial<AlarmPost> = {}): AlarmPost => ({
  source: 'ws',
  eventType,
  rawType: eventType,
  alarmType: 'OTHER',
  state: 'active',
  channel: 1,
  regionId: null,
  deviceTime: null,
  activePostCount: 0,
  description: null,
  channelName: null,
  identity: null,
  retransmission: false,
  details: null,
  ...o,
});

export const storedAlarms = (db: Db, deviceId: string) => db.select().from(tables.alarms).where(eq(tables.alarms.deviceId, deviceId));

/**
 * Collects `device.status` events from the bus. Resolves once the subscription is live (with Redis
 * that takes a round trip: a probe event for a device id that does not exist is awaited).
 */
export async function statusEvents(bus: EventBus, deviceId?: string) {
  const events: DeviceStatusPayload[] = [];
  const probe = `probe-${randomUUID()}`;
  let probed = false;
  const it = bus.subscribe('device.status');
  void (async () => {
    for await (const e of it) {
      if (e.deviceId === probe) probed = true;
      else if (!deviceId || e.deviceId === deviceId) events.push(e);
    }
  })();
  await waitFor(() => {
    if (!probed) bus.publish('device.status', { deviceId: probe, status: 'OFFLINE', at: new Date().toISOString() });
    return probed;
  }, 10_000, 'status subscription');
  return {
    events,
    of: (id: string) => events.filter((e) => e.deviceId === id).map((e) => e.status),
    stop: () => it.return?.(),
  };
}

export interface DeviceFrame {
  type: string;
  [key: string]: unknown;
}

/** A scripted device on the WebSocket channel: frames received, close code, helpers to wait. */
export interface TestDevice {
  ws: WebSocket;
  frames: DeviceFrame[];
  /** Resolves with the close code and reason (also for an abnormal close: 1006). */
  closed: Promise<{ code: number; reason: string }>;
  send(frame: unknown): void;
  /** Waits for a received frame matching `pred`, from the start of the connection. */
  waitFrame(pred: (f: DeviceFrame) => boolean, what?: string, timeoutMs?: number): Promise<DeviceFrame>;
  close(): void;
}

/** Connects to /devices/ws with the device subprotocol (or `protocols`), without sending anything. */
export async function openDeviceSocket(base: string, protocols: string[] = ['vigil-device.v1'], headers: Record<string, string> = {}): Promise<TestDevice> {
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/devices/ws`, protocols, { headers });
  const frames: DeviceFrame[] = [];
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  ws.on('message', (data) => {
    try {
      frames.push(JSON.parse(data.toString()) as DeviceFrame);
    } catch {
      frames.push({ type: '<unparseable>' });
    }
  });
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
  return {
    ws,
    frames,
    closed,
    send: (frame) => ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame)),
    waitFrame: (pred, what = 'frame', timeoutMs = 5000) => waitFor(() => frames.find(pred), timeoutMs, what),
    close: () => ws.close(1000),
  };
}

/** Connects and says hello; resolves once welcomed (fails the test otherwise). */
export async function connectDevice(base: string, d: { serial: string; deviceKey: string }, extra: Record<string, unknown> = {}): Promise<TestDevice> {
  const dev = await openDeviceSocket(base);
  dev.send({ type: 'hello', serial: d.serial, key: d.deviceKey, model: 'DS-2CD2143G2-I', firmware: 'V5.7.3 build 220112', channels: 1, ...extra });
  const welcome = await Promise.race([dev.waitFrame((f) => f.type === 'welcome', 'welcome'), dev.closed.then((c) => ({ type: 'closed', ...c }))]);
  assert.equal(welcome.type, 'welcome', `no welcome: ${JSON.stringify(welcome)}`);
  return dev;
}
