import { and, asc, count, eq, getTableColumns, gt, ilike, inArray, isNull, ne, or, sql, type SQL } from 'drizzle-orm';
import { alias, unionAll } from 'drizzle-orm/pg-core';
import { tables, type Db } from '../../db/index';
import type { Login } from '../../lib/validate';
import type { DeviceRole, DeviceStatus } from './device.model';
import { shareIsActive, type UserContact } from './access';

export { usersByIds, type UserContact } from './access';

/**
 * Data access for devices, bindings, shares and the audit log: the only module of the area that
 * touches Drizzle tables. Every function takes the executor (the db or a transaction).
 */

const { devices, bindings, shares, users, auditLog } = tables;

export type BindingRow = typeof bindings.$inferSelect;
export type ShareRow = typeof shares.$inferSelect;

/** The device columns a view needs; the secret hashes stay in the store. */
const deviceColumns = {
  id: devices.id,
  serial: devices.serial,
  model: devices.model,
  firmware: devices.firmware,
  channels: devices.channels,
  online: devices.online,
  heartbeats: devices.heartbeats,
  lastSeenAt: devices.lastSeenAt,
};
export type DeviceRow = { [K in keyof typeof deviceColumns]: (typeof devices.$inferSelect)[K] };

/** A device with its open binding and the caller's unexpired share of it (null for the owner or a stranger). */
export interface AccessRow {
  device: DeviceRow;
  binding: BindingRow;
  share: ShareRow | null;
}

export interface ListFilter {
  status?: DeviceStatus | null;
  role?: DeviceRole | null;
  /** Already trimmed; matched case-insensitively as a substring of the name or the serial. */
  search?: string | null;
}

export interface ListCursor {
  boundAt: Date;
  bindingId: string;
}

/** The caller's own share, joined to bindings: open and unexpired only (expired shares grant nothing). */
const myShare = alias(shares, 'my_share');
const myShareOn = (userId: string, now: Date) =>
  and(eq(myShare.bindingId, bindings.id), eq(myShare.granteeId, userId), shareIsActive(myShare, now));

const activeShareOf = (userId: string, now: Date) =>
  and(eq(shares.granteeId, userId), shareIsActive(shares, now));

/** SQL twin of `statusOf` in device.model.ts. */
export function statusCondition(status: DeviceStatus): SQL {
  switch (status) {
    case 'ONLINE':
      return eq(devices.online, true);
    case 'OFFLINE':
      return and(eq(devices.online, false), or(eq(devices.heartbeats, true), isNull(devices.lastSeenAt)))!;
    case 'UNKNOWN':
      return and(eq(devices.online, false), eq(devices.heartbeats, false), sql`${devices.lastSeenAt} is not null`)!;
  }
}

/** `%`, `_` and `\` match themselves, so a search for "cam_1" does not match "cam11". */
export const likeEscape = (value: string) => value.replace(/[\\%_]/g, (c) => `\\${c}`);

/**
 * Open bindings the user may see: owned ones, and ones shared with them unexpired. A union of two
 * index scans (owner index, grantee index) rather than an OR, so it stays cheap with many bindings.
 */
function visibleBindingIds(db: Db, userId: string, now: Date, role: DeviceRole | null | undefined) {
  const owned = db
    .select({ id: bindings.id })
    .from(bindings)
    .where(and(eq(bindings.ownerId, userId), isNull(bindings.endedAt)));
  const shared = db.select({ id: shares.bindingId }).from(shares).where(activeShareOf(userId, now));
  if (role === 'OWNER') return owned;
  if (role === 'SHARED') return shared;
  return unionAll(owned, shared);
}

function listConditions(db: Db, userId: string, now: Date, filter: ListFilter): SQL[] {
  const where: SQL[] = [isNull(bindings.endedAt), inArray(bindings.id, visibleBindingIds(db, userId, now, filter.role))];
  if (filter.role === 'SHARED') where.push(ne(bindings.ownerId, userId));
  if (filter.status) where.push(statusCondition(filter.status));
  if (filter.search) {
    const pattern = `%${likeEscape(filter.search)}%`;
    where.push(or(ilike(bindings.name, pattern), ilike(devices.serial, pattern))!);
  }
  return where;
}

/** One page of visible devices in (boundAt, binding id) order, after `cursor`; `limit` rows at most. */
export async function listVisible(db: Db, userId: string, now: Date, filter: ListFilter, cursor: ListCursor | null, limit: number): Promise<AccessRow[]> {
  const where = listConditions(db, userId, now, filter);
  // boundAt is always written from a JS Date (millisecond precision), so the cursor's ISO string is exact.
  if (cursor) where.push(sql`(${bindings.boundAt}, ${bindings.id}) > (${cursor.boundAt.toISOString()}::timestamptz, ${cursor.bindingId}::uuid)`);
  return db
    .select({ device: deviceColumns, binding: bindings, share: myShare })
    .from(bindings)
    .innerJoin(devices, eq(devices.id, bindings.deviceId))
    .leftJoin(myShare, myShareOn(userId, now))
    .where(and(...where))
    .orderBy(asc(bindings.boundAt), asc(bindings.id))
    .limit(limit);
}

export async function countVisible(db: Db, userId: string, now: Date, filter: ListFilter): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(bindings)
    .innerJoin(devices, eq(devices.id, bindings.deviceId))
    .where(and(...listConditions(db, userId, now, filter)));
  return row?.n ?? 0;
}

/**
 * The open bindings of `deviceIds` with the user's unexpired share of each. Rows of devices the
 * user may not see come back too (share null, another owner): callers decide. With `lock`, the
 * bindings are locked FOR UPDATE in id order, so concurrent bulk operations cannot deadlock.
 */
export async function accessRows(db: Db, userId: string, now: Date, deviceIds: readonly string[], lock = false): Promise<AccessRow[]> {
  if (deviceIds.length === 0) return [];
  const query = db
    .select({ device: deviceColumns, binding: bindings, share: myShare })
    .from(bindings)
    .innerJoin(devices, eq(devices.id, bindings.deviceId))
    .leftJoin(myShare, myShareOn(userId, now))
    .where(and(inArray(bindings.deviceId, [...deviceIds]), isNull(bindings.endedAt)))
    .orderBy(asc(bindings.id));
  return lock ? query.for('update', { of: bindings }) : query;
}

export interface ShareWithGrantee {
  share: ShareRow;
  displayName: string | null;
}

/**
 * Open shares of bindings: every one of `ownedBindingIds`, and only the user's own unexpired one of
 * `sharedBindingIds`. One statement for any number of devices (the Device.shares loader).
 */
export async function sharesOf(
  db: Db,
  userId: string,
  now: Date,
  ownedBindingIds: readonly string[],
  sharedBindingIds: readonly string[],
): Promise<ShareWithGrantee[]> {
  const either: SQL[] = [];
  if (ownedBindingIds.length) either.push(inArray(shares.bindingId, [...ownedBindingIds]));
  if (sharedBindingIds.length) either.push(and(inArray(shares.bindingId, [...sharedBindingIds]), activeShareOf(userId, now))!);
  if (either.length === 0) return [];
  return db
    .select({ share: shares, displayName: users.displayName })
    .from(shares)
    .innerJoin(users, eq(users.id, shares.granteeId))
    .where(and(isNull(shares.revokedAt), or(...either)))
    .orderBy(asc(shares.createdAt), asc(shares.id));
}

export async function insertDevice(
  db: Db,
  values: {
    serial: string;
    model: string | null;
    channels: number;
    verificationCodeHash: string;
    deviceKeyHash: string;
    ingestTokenHash: string;
    provisionedAt: Date;
  },
): Promise<{ id: string } | null> {
  const [row] = await db.insert(devices).values(values).onConflictDoNothing({ target: devices.serial }).returning({ id: devices.id });
  return row ?? null;
}

export async function findDeviceForBinding(db: Db, serial: string) {
  const [row] = await db
    .select({ id: devices.id, serial: devices.serial, model: devices.model, verificationCodeHash: devices.verificationCodeHash })
    .from(devices)
    .where(eq(devices.serial, serial))
    .limit(1);
  return row;
}

/** Inserts a binding unless the device already has an open one (the partial unique index decides races). */
export async function insertBinding(db: Db, values: { deviceId: string; ownerId: string; name: string; boundAt: Date }): Promise<BindingRow | null> {
  const [row] = await db
    .insert(bindings)
    .values(values)
    .onConflictDoNothing({ target: bindings.deviceId, where: sql`ended_at is null` })
    .returning();
  return row ?? null;
}

export async function openBindingOf(db: Db, deviceId: string): Promise<BindingRow | undefined> {
  const [row] = await db
    .select()
    .from(bindings)
    .where(and(eq(bindings.deviceId, deviceId), isNull(bindings.endedAt)))
    .limit(1);
  return row;
}

/** Ends open bindings; returns those this statement ended (a concurrent end leaves them out). */
export async function endBindings(db: Db, bindingIds: readonly string[], endedBy: string, reason: 'unbind' | 'transfer' | 'reclaim', now: Date): Promise<BindingRow[]> {
  if (bindingIds.length === 0) return [];
  return db
    .update(bindings)
    .set({ endedAt: now, endedBy, endReason: reason })
    .where(and(inArray(bindings.id, [...bindingIds]), isNull(bindings.endedAt)))
    .returning();
}

/** Revokes every open share of the bindings and returns them. */
export async function revokeSharesOfBindings(db: Db, bindingIds: readonly string[], now: Date): Promise<ShareRow[]> {
  if (bindingIds.length === 0) return [];
  return db
    .update(shares)
    .set({ revokedAt: now })
    .where(and(inArray(shares.bindingId, [...bindingIds]), isNull(shares.revokedAt)))
    .returning();
}

export async function renameBinding(db: Db, bindingId: string, name: string): Promise<boolean> {
  const rows = await db
    .update(bindings)
    .set({ name })
    .where(and(eq(bindings.id, bindingId), isNull(bindings.endedAt)))
    .returning({ id: bindings.id });
  return rows.length > 0;
}

export async function countOpenShares(db: Db, bindingId: string): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(shares)
    .where(and(eq(shares.bindingId, bindingId), isNull(shares.revokedAt)));
  return row?.n ?? 0;
}

/** Creates the share, or updates the open one of the same grantee; `created` tells which. */
export async function upsertShare(
  db: Db,
  values: { bindingId: string; deviceId: string; granteeId: string; inviteLogin: string; permissions: string[]; expiresAt: Date | null; createdAt: Date },
): Promise<{ share: ShareRow; created: boolean }> {
  const [row] = await db
    .insert(shares)
    .values(values)
    .onConflictDoUpdate({
      target: [shares.bindingId, shares.granteeId],
      targetWhere: sql`revoked_at is null`,
      set: { permissions: values.permissions, expiresAt: values.expiresAt, inviteLogin: values.inviteLogin },
    })
    .returning({ ...getTableColumns(shares), created: sql<boolean>`(xmax = 0)` });
  const { created, ...share } = row!;
  return { share, created };
}

/** An open share with its binding, locked for update. */
export async function lockOpenShare(db: Db, shareId: string): Promise<{ share: ShareRow; binding: BindingRow } | undefined> {
  const [row] = await db
    .select({ share: shares, binding: bindings })
    .from(shares)
    .innerJoin(bindings, eq(bindings.id, shares.bindingId))
    .where(and(eq(shares.id, shareId), isNull(shares.revokedAt), isNull(bindings.endedAt)))
    .for('update', { of: shares })
    .limit(1);
  return row;
}

export async function revokeShareById(db: Db, shareId: string, now: Date): Promise<boolean> {
  const rows = await db
    .update(shares)
    .set({ revokedAt: now })
    .where(and(eq(shares.id, shareId), isNull(shares.revokedAt)))
    .returning({ id: shares.id });
  return rows.length > 0;
}

export interface AuditEntry {
  actorId: string | null;
  action: string;
  deviceId: string | null;
  details?: Record<string, unknown>;
  at: Date;
}

export async function insertAudit(db: Db, entries: readonly AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await db.insert(auditLog).values(entries.map((e) => ({ ...e, details: e.details ?? null })));
}

export async function findUserByLogin(db: Db, login: Login): Promise<UserContact | undefined> {
  const column = login.kind === 'email' ? users.email : users.phone;
  const [row] = await db
    .select({ id: users.id, email: users.email, phone: users.phone, displayName: users.displayName })
    .from(users)
    .where(eq(column, login.value))
    .limit(1);
  return row;
}

export async function passwordHashOf(db: Db, userId: string): Promise<string | null> {
  const [row] = await db.select({ hash: users.passwordHash }).from(users).where(eq(users.id, userId)).limit(1);
  return row?.hash ?? null;
}
