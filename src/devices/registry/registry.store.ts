import { and, asc, eq, gt, inArray, isNotNull, isNull, lt, or, sql } from 'drizzle-orm';
import { tables, type Db } from '../../db/index';

/**
 * Data access for the connection registry: the registry columns of `devices` (online,
 * last_seen_at, heartbeats, node_id, connection_id, firmware) and `device_commands`. Every write
 * that changes `online` is conditional, so each ONLINE/OFFLINE transition is won by exactly one
 * statement, whichever node runs it.
 */

const { devices, bindings, deviceCommands } = tables;

const iso = (d: Date) => sql`${d.toISOString()}::timestamptz`;

/**
 * The hello path's statements, built once per database handle (drizzle's query building costs
 * more CPU than the round trip at thousands of hellos a minute).
 */
const helloStatements = new WeakMap<Db, ReturnType<typeof prepareHello>>();
function prepareHello(db: Db) {
  const before = db
    .select({ id: devices.id, online: devices.online, connectionId: devices.connectionId, nodeId: devices.nodeId })
    .from(devices)
    .where(eq(devices.id, sql.placeholder('deviceId')))
    .for('update')
    .as('before');
  return {
    bySerial: db
      .select({ id: devices.id, deviceKeyHash: devices.deviceKeyHash })
      .from(devices)
      .where(eq(devices.serial, sql.placeholder('serial')))
      .limit(1)
      .prepare('registry_device_by_serial'),
    claim: db
      .update(devices)
      .set({
        online: true,
        lastSeenAt: sql`${sql.placeholder('now')}::timestamptz`,
        heartbeats: true,
        nodeId: sql`${sql.placeholder('nodeId')}`,
        connectionId: sql`${sql.placeholder('connectionId')}`,
        // A hello without firmware keeps the recorded one.
        firmware: sql`coalesce(${sql.placeholder('firmware')}::text, ${devices.firmware})`,
      })
      .from(before)
      .where(eq(devices.id, before.id))
      .returning({
        wasOnline: before.online,
        previousConnectionId: before.connectionId,
        previousNodeId: before.nodeId,
        bound: sql<boolean>`exists (select 1 from bindings b where b.device_id = devices.id and b.ended_at is null)`,
        commands: sql<boolean>`exists (select 1 from device_commands dc where dc.device_id = devices.id and dc.completed_at is null and dc.expires_at > ${sql.placeholder('now')}::timestamptz)`,
      })
      .prepare('registry_claim_connection'),
  };
}
const hello = (db: Db) => {
  let p = helloStatements.get(db);
  if (!p) helloStatements.set(db, (p = prepareHello(db)));
  return p;
};

export async function deviceBySerial(db: Db, serial: string): Promise<{ id: string; deviceKeyHash: string } | undefined> {
  const [row] = await hello(db).bySerial.execute({ serial });
  return row;
}

export async function deviceByIngestTokenHash(db: Db, tokenHash: string): Promise<{ id: string } | undefined> {
  const [row] = await db.select({ id: devices.id }).from(devices).where(eq(devices.ingestTokenHash, tokenHash)).limit(1);
  return row;
}

export interface Claim {
  /** The device was not online before this connection: an ONLINE transition. */
  cameOnline: boolean;
  /** The connection this one replaced, if any (maybe on another node, maybe on a dead one). */
  replaced: { connectionId: string; nodeId: string | null } | null;
  bound: boolean;
  /** Unfinished, unexpired commands wait for the device (delivered or not): supersede stale ones, then deliver. */
  commands: boolean;
}

/**
 * Makes `connectionId` on `nodeId` the device's one connection (newest wins), in one statement:
 * the row is locked by the FOR UPDATE subquery, which also yields the values from before the
 * update (a concurrent claim waits for the lock and then sees this one's connection as replaced).
 */
export async function claimConnection(db: Db, deviceId: string, c: { connectionId: string; nodeId: string; now: Date; firmware: string | null }): Promise<Claim> {
  const [row] = await hello(db).claim.execute({ deviceId, now: c.now.toISOString(), nodeId: c.nodeId, connectionId: c.connectionId, firmware: c.firmware });
  if (!row) throw new Error(`device ${deviceId} vanished`);
  return {
    cameOnline: !row.wasOnline,
    replaced: row.previousConnectionId && row.previousConnectionId !== c.connectionId ? { connectionId: row.previousConnectionId, nodeId: row.previousNodeId } : null,
    bound: row.bound,
    commands: row.commands,
  };
}

/** A pending-command probe for RETURNING clauses: commands to (re)deliver now. Qualified by hand: drizzle leaves columns bare in RETURNING. */
const pendingCommands = (now: Date, redeliverBefore: Date) =>
  sql<boolean>`exists (select 1 from device_commands dc where dc.device_id = devices.id and dc.completed_at is null and dc.expires_at > ${iso(now)} and (dc.delivered_at is null or dc.delivered_at < ${iso(redeliverBefore)}))`;

/** One heartbeat received on `connectionId` at `at`. */
export interface Heartbeat {
  deviceId: string;
  connectionId: string;
  at: Date;
}

/**
 * What a heartbeat found: `ok` (still its connection), `revived` (the sweeper had marked it
 * OFFLINE; it is ONLINE again) or `replaced` (a newer connection took over: close this one).
 * `commands` tells whether commands wait for delivery.
 */
export interface HeartbeatOutcome {
  state: 'ok' | 'revived' | 'replaced';
  commands: boolean;
}

/**
 * Records many heartbeats (at most one per connection) in one statement, two when some device
 * was swept OFFLINE meanwhile: lastSeenAt moves to each heartbeat's time. Outcomes by connection id.
 */
export async function touchConnections(db: Db, beats: readonly Heartbeat[], nodeId: string, now: Date, redeliverBefore: Date): Promise<Map<string, HeartbeatOutcome>> {
  const out = new Map<string, HeartbeatOutcome>();
  if (beats.length === 0) return out;
  // One parameter however many rows: the batch travels as JSON and becomes a relation in the database.
  const rows = JSON.stringify(beats.map((b) => ({ device_id: b.deviceId, connection_id: b.connectionId, at: b.at.toISOString() })));
  const seen = sql`jsonb_to_recordset(${rows}::jsonb) as seen(device_id uuid, connection_id text, at timestamptz)`;
  const mine = (online: boolean) => sql`${devices.id} = seen.device_id and ${devices.connectionId} = seen.connection_id and ${devices.online} = ${online}`;
  const refreshed = await db
    .update(devices)
    .set({ lastSeenAt: sql`greatest(${devices.lastSeenAt}, seen.at)` })
    .from(seen)
    .where(mine(true))
    .returning({ connectionId: sql<string>`seen.connection_id`, commands: pendingCommands(now, redeliverBefore) });
  for (const r of refreshed) out.set(r.connectionId, { state: 'ok', commands: r.commands });
  if (out.size === beats.length) return out;
  const revived = await db
    .update(devices)
    .set({ lastSeenAt: sql`seen.at`, online: true, nodeId })
    .from(seen)
    .where(mine(false))
    .returning({ connectionId: sql<string>`seen.connection_id`, commands: pendingCommands(now, redeliverBefore) });
  for (const r of revived) out.set(r.connectionId, { state: 'revived', commands: r.commands });
  for (const b of beats) if (!out.has(b.connectionId)) out.set(b.connectionId, { state: 'replaced', commands: false });
  return out;
}

/** The connection ended: true when that made the device OFFLINE (it was still its connection, and online). */
export async function releaseConnection(db: Db, deviceId: string, connectionId: string, now: Date): Promise<boolean> {
  const mine = and(eq(devices.id, deviceId), eq(devices.connectionId, connectionId));
  const cleared = { lastSeenAt: now, connectionId: null, nodeId: null };
  const [wentOffline] = await db
    .update(devices)
    .set({ ...cleared, online: false })
    .where(and(mine, eq(devices.online, true)))
    .returning({ id: devices.id });
  if (wentOffline) return true;
  // Already swept OFFLINE while the socket lingered: just forget the connection.
  await db.update(devices).set(cleared).where(mine);
  return false;
}

/**
 * An ISAPI post or heartbeat from the device: refreshes lastSeenAt (and `heartbeats` once it sent
 * one). Returns true when this made the device ONLINE (it was OFFLINE or UNKNOWN).
 */
export async function touchIsapi(db: Db, deviceId: string, now: Date, heartbeat: boolean): Promise<boolean> {
  const set = { lastSeenAt: now, ...(heartbeat ? { heartbeats: true } : {}) };
  const [already] = await db
    .update(devices)
    .set(set)
    .where(and(eq(devices.id, deviceId), eq(devices.online, true)))
    .returning({ id: devices.id });
  if (already) return false;
  const [cameOnline] = await db
    .update(devices)
    .set({ ...set, online: true })
    .where(and(eq(devices.id, deviceId), eq(devices.online, false)))
    .returning({ id: devices.id });
  return !!cameOnline;
}

/** WebSocket devices silent since `cutoff` (their node died, or the link did): OFFLINE. */
export async function sweepWebSocketDevices(db: Db, cutoff: Date, limit: number): Promise<string[]> {
  const stale = db
    .select({ id: devices.id })
    .from(devices)
    .where(and(eq(devices.online, true), isNotNull(devices.connectionId), lt(devices.lastSeenAt, cutoff)))
    .limit(limit);
  const rows = await db
    .update(devices)
    .set({ online: false })
    .where(and(inArray(devices.id, stale), eq(devices.online, true), isNotNull(devices.connectionId), lt(devices.lastSeenAt, cutoff)))
    .returning({ id: devices.id });
  return rows.map((r) => r.id);
}

/** ISAPI devices silent since `cutoff`: OFFLINE if they ever heartbeat, else UNKNOWN (`heartbeats` tells which). */
export async function sweepIsapiDevices(db: Db, cutoff: Date, limit: number): Promise<Array<{ id: string; heartbeats: boolean }>> {
  const stale = db
    .select({ id: devices.id })
    .from(devices)
    .where(and(eq(devices.online, true), isNull(devices.connectionId), lt(devices.lastSeenAt, cutoff)))
    .limit(limit);
  return db
    .update(devices)
    .set({ online: false })
    .where(and(inArray(devices.id, stale), eq(devices.online, true), isNull(devices.connectionId), lt(devices.lastSeenAt, cutoff)))
    .returning({ id: devices.id, heartbeats: devices.heartbeats });
}

export async function insertCommand(db: Db, c: { deviceId: string; name: string; now: Date; expiresAt: Date }): Promise<string> {
  const [row] = await db
    .insert(deviceCommands)
    .values({ deviceId: c.deviceId, name: c.name, createdAt: c.now, expiresAt: c.expiresAt })
    .returning({ id: deviceCommands.id });
  return row!.id;
}

/**
 * Commands to send now (never delivered, or delivered before `redeliverBefore` without a result),
 * oldest first, marked delivered in the same statement so two deliveries on one node do not overlap.
 */
export async function takeCommands(db: Db, deviceId: string, now: Date, redeliverBefore: Date, limit = 16): Promise<Array<{ id: string; name: string }>> {
  const due = db
    .select({ id: deviceCommands.id })
    .from(deviceCommands)
    .where(
      and(
        eq(deviceCommands.deviceId, deviceId),
        isNull(deviceCommands.completedAt),
        gt(deviceCommands.expiresAt, now),
        or(isNull(deviceCommands.deliveredAt), lt(deviceCommands.deliveredAt, redeliverBefore)),
      ),
    )
    .orderBy(asc(deviceCommands.createdAt))
    .limit(limit);
  const rows = await db
    .update(deviceCommands)
    .set({ deliveredAt: now, attempts: sql`${deviceCommands.attempts} + 1` })
    .where(inArray(deviceCommands.id, due))
    .returning({ id: deviceCommands.id, name: deviceCommands.name, createdAt: deviceCommands.createdAt });
  return rows.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime()).map(({ id, name }) => ({ id, name }));
}

/** The device's `result` frame for one of its own commands. */
export async function completeCommand(db: Db, deviceId: string, commandId: string, ok: boolean, now: Date): Promise<boolean> {
  const rows = await db
    .update(deviceCommands)
    .set({ completedAt: now, ok, outcome: 'result' })
    .where(and(eq(deviceCommands.id, commandId), eq(deviceCommands.deviceId, deviceId), isNull(deviceCommands.completedAt)))
    .returning({ id: deviceCommands.id });
  return rows.length > 0;
}

/**
 * `unbind` commands older than the device's current binding are about an earlier owner: the
 * welcome frame's `bound` already tells the device the truth, so they are not delivered.
 */
export async function supersedeStaleUnbinds(db: Db, deviceId: string, now: Date): Promise<void> {
  await db
    .update(deviceCommands)
    .set({ completedAt: now, outcome: 'superseded' })
    .where(
      and(
        eq(deviceCommands.deviceId, deviceId),
        eq(deviceCommands.name, 'unbind'),
        isNull(deviceCommands.completedAt),
        sql`device_commands.created_at < (select b.bound_at from bindings b where b.device_id = ${deviceId} and b.ended_at is null)`,
      ),
    );
}

/** Deletes commands that completed or expired before `before`. */
export async function pruneCommands(db: Db, before: Date): Promise<number> {
  const rows = await db
    .delete(deviceCommands)
    .where(or(lt(deviceCommands.completedAt, before), lt(deviceCommands.expiresAt, before)))
    .returning({ id: deviceCommands.id });
  return rows.length;
}
