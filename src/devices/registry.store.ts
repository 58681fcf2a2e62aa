import { and, asc, eq, gt, inArray, isNotNull, isNull, lt, or, sql } from 'drizzle-orm';
import { tables, type Db } from '../db/index';

/**
 * Data access for the connection registry: the registry columns of `devices` (online,
 * last_seen_at, heartbeats, node_id, connection_id, firmware) and `device_commands`. Every write
 * that changes `online` is conditional, so each ONLINE/OFFLINE transition is won by exactly one
 * statement, whichever node runs it.
 */

const { devices, bindings, deviceCommands } = tables;

const iso = (d: Date) => sql`${d.toISOString()}::timestamptz`;

export async function deviceBySerial(db: Db, serial: string): Promise<{ id: string; deviceKeyHash: string } | undefined> {
  const [row] = await db.select({ id: devices.id, deviceKeyHash: devices.deviceKeyHash }).from(devices).where(eq(devices.serial, serial)).limit(1);
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
}

/** Makes `connectionId` on `nodeId` the device's one connection (newest wins), in one locked transaction. */
export async function claimConnection(db: Db, deviceId: string, c: { connectionId: string; nodeId: string; now: Date; firmware: string | null }): Promise<Claim> {
  return db.transaction(async (tx) => {
    const [before] = await tx
      .select({ online: devices.online, connectionId: devices.connectionId, nodeId: devices.nodeId })
      .from(devices)
      .where(eq(devices.id, deviceId))
      .for('update');
    if (!before) throw new Error(`device ${deviceId} vanished`);
    await tx
      .update(devices)
      .set({
        online: true,
        lastSeenAt: c.now,
        heartbeats: true,
        nodeId: c.nodeId,
        connectionId: c.connectionId,
        ...(c.firmware ? { firmware: c.firmware } : {}),
      })
      .where(eq(devices.id, deviceId));
    const [binding] = await tx
      .select({ id: bindings.id })
      .from(bindings)
      .where(and(eq(bindings.deviceId, deviceId), isNull(bindings.endedAt)))
      .limit(1);
    return {
      cameOnline: !before.online,
      replaced: before.connectionId && before.connectionId !== c.connectionId ? { connectionId: before.connectionId, nodeId: before.nodeId } : null,
      bound: !!binding,
    };
  });
}

/** A pending-command probe for RETURNING clauses: commands to (re)deliver now. Qualified by hand: drizzle leaves columns bare in RETURNING. */
const pendingCommands = (now: Date, redeliverBefore: Date) =>
  sql<boolean>`exists (select 1 from device_commands dc where dc.device_id = devices.id and dc.completed_at is null and dc.expires_at > ${iso(now)} and (dc.delivered_at is null or dc.delivered_at < ${iso(redeliverBefore)}))`;

/**
 * A heartbeat on `connectionId`: `ok` (still its connection), `revived` (the sweeper had marked it
 * OFFLINE; it is ONLINE again) or `replaced` (a newer connection took over: close this one).
 * `commands` tells whether commands wait for delivery.
 */
export async function touchConnection(
  db: Db,
  deviceId: string,
  connectionId: string,
  nodeId: string,
  now: Date,
  redeliverBefore: Date,
): Promise<{ state: 'ok' | 'revived' | 'replaced'; commands: boolean }> {
  const mine = and(eq(devices.id, deviceId), eq(devices.connectionId, connectionId));
  const [ok] = await db
    .update(devices)
    .set({ lastSeenAt: now })
    .where(and(mine, eq(devices.online, true)))
    .returning({ commands: pendingCommands(now, redeliverBefore) });
  if (ok) return { state: 'ok', commands: ok.commands };
  const [revived] = await db
    .update(devices)
    .set({ lastSeenAt: now, online: true, nodeId })
    .where(and(mine, eq(devices.online, false)))
    .returning({ commands: pendingCommands(now, redeliverBefore) });
  if (revived) return { state: 'revived', commands: revived.commands };
  return { state: 'replaced', commands: false };
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
