import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { and, asc, eq, inArray, isNull } from 'drizzle-orm';
import { tables } from '../../src/db/index';
import type { DeviceCommands } from '../../src/devices/catalog/index';
import type { AccessChangedPayload } from '../../src/streams/bus/event-bus';
import { BindDeviceDocument, RegisterDocument, type DeviceFieldsFragment } from '../generated/graphql';
import { expectData, STRONG_PASSWORD, uniqueEmail, waitFor, type TestApp } from './harness';

export interface TestUser {
  id: string;
  email: string;
  token: string;
  password: string;
}

export interface Provisioned {
  serial: string;
  verificationCode: string;
  deviceKey: string;
  ingestPath: string;
}

let counter = 0;
/** A serial unique to this test run, in the label alphabet. */
export const uniqueSerial = (tag = 'DS-TEST') => `${tag}-${process.pid}-${Date.now().toString(36)}-${counter++}`.toUpperCase();

/** Registers an account (argon2: ~50-100 ms each, and 20 per hour per IP; use sparingly). */
export async function registerUser(t: TestApp, tag = 'user', displayName: string | null = null): Promise<TestUser> {
  const email = uniqueEmail(tag);
  const reg = expectData(await t.gql(RegisterDocument, { input: { email, password: STRONG_PASSWORD, displayName } }));
  return { id: reg.register.user.id, email, token: reg.register.accessToken, password: STRONG_PASSWORD };
}

/** POST /admin/devices as the operator (the app's admin token unless `token` is given). */
export async function adminPost(
  t: TestApp,
  body: unknown,
  token: string | null = t.app.adminToken,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${t.url}/admin/devices`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** Provisions a device through the real operator endpoint and returns its one-time secrets. */
export async function provisionDevice(t: TestApp, opts: { serial?: string; model?: string; channels?: number } = {}): Promise<Provisioned> {
  const serial = opts.serial ?? uniqueSerial();
  const res = await adminPost(t, { serial, model: opts.model ?? 'DS-2CD2143G2-I', channels: opts.channels ?? 1 });
  assert.equal(res.status, 201, `provisioning failed: ${JSON.stringify(res.body)}`);
  return res.body as unknown as Provisioned;
}

/** Provisions a device and binds it to `user`. */
export async function provisionAndBind(
  t: TestApp,
  user: TestUser,
  opts: { name?: string; serial?: string; model?: string } = {},
): Promise<{ device: DeviceFieldsFragment; provisioned: Provisioned }> {
  const provisioned = await provisionDevice(t, { serial: opts.serial, model: opts.model });
  const bound = expectData(
    await t.gql(
      BindDeviceDocument,
      { serial: provisioned.serial, verificationCode: provisioned.verificationCode, name: opts.name ?? null },
      { token: user.token },
    ),
  );
  return { device: bound.bindDevice, provisioned };
}

/** A code of 6 letters that is not `code`. */
export const wrongCode = (code: string) => (code === 'AAAAAA' ? 'BBBBBB' : 'AAAAAA');

/** Runs `fn` and returns how many SQL statements the app ran meanwhile (through drizzle). */
export async function countStatements<T>(t: TestApp, fn: () => Promise<T>): Promise<{ result: T; statements: string[] }> {
  const statements: string[] = [];
  const stop = t.app.db.observeStatements((sql) => statements.push(sql));
  try {
    return { result: await fn(), statements };
  } finally {
    stop();
  }
}

/**
 * Fast fixture for listing and bulk tests: inserts `n` devices already bound to `ownerId`, straight
 * into the database (no argon2, no HTTP). Binding itself is tested over HTTP elsewhere. The
 * devices cannot be bound again by label code. Bound one millisecond apart from `start`, or all at
 * `start` with `sameInstant`.
 */
export async function seedBoundDevices(
  t: TestApp,
  ownerId: string,
  n: number,
  opts: { start?: Date; sameInstant?: boolean; name?: (i: number) => string; tag?: string } = {},
): Promise<Array<{ id: string; serial: string; bindingId: string; name: string; boundAt: Date }>> {
  const db = t.app.db.db;
  const start = opts.start ?? new Date();
  const rows = Array.from({ length: n }, (_, i) => ({
    id: randomUUID(),
    serial: uniqueSerial(opts.tag ?? 'SEED'),
    name: opts.name?.(i) ?? `Seeded ${i}`,
    boundAt: new Date(start.getTime() + (opts.sameInstant ? 0 : i)),
  }));
  if (n === 0) return [];
  await db
    .insert(tables.devices)
    .values(
      rows.map((r) => ({
        id: r.id,
        serial: r.serial,
        model: 'SEED',
        channels: 1,
        verificationCodeHash: 'seeded',
        deviceKeyHash: `seed-${r.id}`,
        ingestTokenHash: `seed-${r.id}`,
      })),
    );
  const bindings = await db
    .insert(tables.bindings)
    .values(rows.map((r) => ({ deviceId: r.id, ownerId, name: r.name, boundAt: r.boundAt })))
    .returning({ id: tables.bindings.id, deviceId: tables.bindings.deviceId });
  const byDevice = new Map(bindings.map((b) => [b.deviceId, b.id]));
  return rows.map((r) => ({ ...r, bindingId: byDevice.get(r.id)! }));
}

/** Outbox rows addressed to `recipient`, oldest first. */
export async function outboxFor(t: TestApp, recipient: string) {
  return t.app.db.db.select().from(tables.outbox).where(eq(tables.outbox.recipient, recipient)).orderBy(asc(tables.outbox.id));
}

/** Audit log rows of a device, oldest first. */
export async function auditOf(t: TestApp, deviceId: string) {
  return t.app.db.db.select().from(tables.auditLog).where(eq(tables.auditLog.deviceId, deviceId)).orderBy(asc(tables.auditLog.id));
}

/** Open bindings of the given devices (the invariant: at most one per device). */
export async function openBindings(t: TestApp, deviceIds: string[]) {
  return t.app.db.db
    .select()
    .from(tables.bindings)
    .where(and(inArray(tables.bindings.deviceId, deviceIds), isNull(tables.bindings.endedAt)));
}

const accessFeeds = new WeakMap<TestApp, Promise<AccessChangedPayload[]>>();

/** One `device.access` subscription per app, live before it resolves (a Redis SUBSCRIBE takes a round trip). */
async function accessFeed(t: TestApp): Promise<AccessChangedPayload[]> {
  const all: AccessChangedPayload[] = [];
  const iterator = t.app.bus.subscribe('device.access')[Symbol.asyncIterator]();
  const probe = `probe-${randomUUID()}`;
  let live = false;
  void (async () => {
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      if (next.value.deviceId.startsWith('probe-')) live ||= next.value.deviceId === probe;
      else all.push(next.value);
    }
  })();
  await waitFor(
    () => {
      t.app.bus.publish('device.access', { deviceId: probe, userIds: [] });
      return live;
    },
    5000,
    'the device.access subscription',
  );
  return all;
}

/**
 * `device.access` events published on the app's bus from now on. All recorders of one app share
 * one subscription that lives as long as the app (so a test never waits on a fresh SUBSCRIBE).
 */
export async function recordAccessEvents(t: TestApp): Promise<{ readonly events: AccessChangedPayload[]; stop(): Promise<void> }> {
  let feed = accessFeeds.get(t);
  if (!feed) accessFeeds.set(t, (feed = accessFeed(t)));
  const all = await feed;
  const from = all.length;
  return {
    get events() {
      return all.slice(from);
    },
    async stop() {},
  };
}

/** A DeviceCommands that records what it was asked to send. */
export function recordingCommands(): DeviceCommands & { unbinds: string[] } {
  const unbinds: string[] = [];
  return {
    unbinds,
    sendUnbind(deviceId: string) {
      unbinds.push(deviceId);
    },
  };
}
