import { and, asc, count, eq, getTableColumns, inArray, isNull, or, sql, type SQL } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import { tables, type Db, type DbHandle } from '../../db/index';
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

/**
 * The device list's hot reads (`listDevices` and the Device.shares loader) are written as SQL of
 * fixed text per filter shape and run through the handle's `prepared` runner: no query building
 * per request, parsed and planned once per connection, and the page and the total in one round
 * trip. Texts vary only by which filters are present (a few dozen at most); every value is a
 * placeholder. Timestamps go in as ISO text and may come back as text (postgres.js under Drizzle)
 * or Date (PGlite): `toDate` reads both.
 */
export type Prepared = DbHandle['prepared'];
type PgRow = Record<string, unknown>;

const toDate = (v: unknown): Date => (v instanceof Date ? v : new Date(v as string));
const toDateOrNull = (v: unknown): Date | null => (v == null ? null : toDate(v));

/** SQL twin of `statusOf` in device.model.ts (over `devices d`). */
const STATUS_SQL: Record<DeviceStatus, string> = {
  ONLINE: 'd.online',
  OFFLINE: 'not d.online and (d.heartbeats or d.last_seen_at is null)',
  UNKNOWN: 'not d.online and not d.heartbeats and d.last_seen_at is not null',
};

/** `%`, `_` and `\` match themselves, so a search for "cam_1" does not match "cam11". */
export const likeEscape = (value: string) => value.replace(/[\\%_]/g, (c) => `\\${c}`);

/** An unexpired open share of grantee $1 at time $2, over the alias `s`. */
const activeShare = (s: string) => `${s}.revoked_at is null and (${s}.expires_at is null or ${s}.expires_at > $2::timestamptz)`;

/**
 * The conditions over `bindings b join devices d` for the user's visible open bindings with the
 * filter; $1 is the user, $2 now, further values are appended to `params`. Open bindings the user
 * may see: owned ones and ones shared with them unexpired, as a union of two index scans (owner
 * index, grantee index) rather than an OR, so it stays cheap with many bindings.
 */
function listWhere(filter: ListFilter, params: unknown[]): string {
  const owned = 'select id from bindings where owner_id = $1 and ended_at is null';
  const shared = `select binding_id from shares s where s.grantee_id = $1 and ${activeShare('s')}`;
  const visible = filter.role === 'OWNER' ? owned : filter.role === 'SHARED' ? shared : `${owned} union all ${shared}`;
  const where = ['b.ended_at is null', `b.id in (${visible})`];
  if (filter.role === 'SHARED') where.push('b.owner_id <> $1');
  if (filter.status) where.push(`(${STATUS_SQL[filter.status]})`);
  if (filter.search) {
    params.push(`%${likeEscape(filter.search)}%`);
    where.push(`(b.name ilike $${params.length} or d.serial ilike $${params.length})`);
  }
  return where.join(' and ');
}

/** The count joins devices only when a condition reads them (status, search). */
const COUNT_SQL = (filter: ListFilter, where: string) =>
  `select count(*)::int as total from bindings b${filter.status || filter.search ? ' join devices d on d.id = b.device_id' : ''} where ${where}`;

/** Epoch milliseconds as float8 (a number from both drivers): cheaper to read than timestamp text, exact to the millisecond. */
const epochMs = (column: string) => `floor(extract(epoch from ${column}) * 1000)::float8`;

/**
 * Only what a listed device's view reads: the rest of a binding or share row is known or unused
 * there. Its two timestamps come as epoch milliseconds (a page is 100 of them).
 */
const LISTED_COLUMNS = `d.id as d_id, d.serial as d_serial, d.model as d_model, d.firmware as d_firmware, d.channels as d_channels,
  d.online as d_online, d.heartbeats as d_heartbeats, ${epochMs('d.last_seen_at')} as d_last_seen_ms,
  b.id as b_id, b.owner_id as b_owner_id, b.name as b_name, ${epochMs('b.bound_at')} as b_bound_ms, my.permissions as s_permissions`;

function shareOf(r: PgRow, p: string): ShareRow {
  return {
    id: r[`${p}id`] as string,
    bindingId: r[`${p}binding_id`] as string,
    deviceId: r[`${p}device_id`] as string,
    granteeId: r[`${p}grantee_id`] as string,
    inviteLogin: r[`${p}invite_login`] as string,
    permissions: r[`${p}permissions`] as string[],
    expiresAt: toDateOrNull(r[`${p}expires_at`]),
    createdAt: toDate(r[`${p}created_at`]),
    revokedAt: toDateOrNull(r[`${p}revoked_at`]),
  };
}

/** A device of the list with the parts of its open binding and of the caller's share that a view reads. */
export interface ListedRow {
  device: DeviceRow;
  binding: Pick<BindingRow, 'id' | 'ownerId' | 'name' | 'boundAt'>;
  /** The caller's unexpired share of it; null for the owner. */
  share: Pick<ShareRow, 'permissions'> | null;
}

function listedRowOf(r: PgRow): ListedRow {
  return {
    device: {
      id: r.d_id as string,
      serial: r.d_serial as string,
      model: r.d_model as string | null,
      firmware: r.d_firmware as string | null,
      channels: r.d_channels as number,
      online: r.d_online as boolean,
      heartbeats: r.d_heartbeats as boolean,
      lastSeenAt: r.d_last_seen_ms == null ? null : new Date(r.d_last_seen_ms as number),
    },
    binding: { id: r.b_id as string, ownerId: r.b_owner_id as string, name: r.b_name as string, boundAt: new Date(r.b_bound_ms as number) },
    // permissions is NOT NULL in shares, so null here means no share row joined.
    share: r.s_permissions == null ? null : { permissions: r.s_permissions as string[] },
  };
}

export interface VisiblePage {
  rows: ListedRow[];
  /** Every visible device matching the filter (the cursor aside); null unless asked for. */
  total: number | null;
}

/**
 * One page of visible devices in (boundAt, binding id) order, after `cursor`; `limit` rows at
 * most. With `withTotal`, the count of every match comes in the same statement: the count is a
 * one-row subquery the page is left-joined to, so an empty page still carries it.
 */
export async function listVisible(
  prepared: Prepared,
  userId: string,
  now: Date,
  filter: ListFilter,
  cursor: ListCursor | null,
  limit: number,
  withTotal: boolean,
): Promise<VisiblePage> {
  const params: unknown[] = [userId, now.toISOString(), limit];
  const where = listWhere(filter, params);
  let pageWhere = where;
  if (cursor) {
    // boundAt is always written from a JS Date (millisecond precision), so the cursor's ISO string is exact.
    params.push(cursor.boundAt.toISOString(), cursor.bindingId);
    pageWhere += ` and (b.bound_at, b.id) > ($${params.length - 1}::timestamptz, $${params.length}::uuid)`;
  }
  const page = `select ${LISTED_COLUMNS}
    from bindings b join devices d on d.id = b.device_id
    left join shares my on my.binding_id = b.id and my.grantee_id = $1 and ${activeShare('my')}
    where ${pageWhere} order by b.bound_at, b.id limit $3::int`;
  if (!withTotal) return { rows: (await prepared(page, params)).map(listedRowOf), total: null };
  const rows = await prepared(`select t.total, p.* from (${COUNT_SQL(filter, where)}) t left join lateral (${page}) p on true`, params);
  return { rows: rows.filter((r) => r.d_id != null).map(listedRowOf), total: Number(rows[0]?.total ?? 0) };
}

/** The count of `listVisible` alone, for a caller that asked for the total without saying so up front. */
export async function countVisible(prepared: Prepared, userId: string, now: Date, filter: ListFilter): Promise<number> {
  const params: unknown[] = [userId, now.toISOString()];
  const [row] = await prepared(COUNT_SQL(filter, listWhere(filter, params)), params);
  return Number(row?.total ?? 0);
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

const anyShare = alias(shares, 'any_share');

/**
 * The open bindings of `deviceIds` with every unexpired share of each: one row per (binding,
 * share), share null for a binding without any. The same rows serve every caller; which view a
 * caller gets (owner, grantee, none) is decided per caller from them (the live path's shared read).
 */
export async function accessRowsForAll(db: Db, now: Date, deviceIds: readonly string[]): Promise<AccessRow[]> {
  if (deviceIds.length === 0) return [];
  return db
    .select({ device: deviceColumns, binding: bindings, share: anyShare })
    .from(bindings)
    .innerJoin(devices, eq(devices.id, bindings.deviceId))
    .leftJoin(anyShare, and(eq(anyShare.bindingId, bindings.id), shareIsActive(anyShare, now)))
    .where(and(inArray(bindings.deviceId, [...deviceIds]), isNull(bindings.endedAt)))
    .orderBy(asc(bindings.id));
}

export interface ShareWithGrantee {
  share: ShareRow;
  displayName: string | null;
}

const SHARES_OF = `select s.id, s.binding_id, s.device_id, s.grantee_id, s.invite_login, s.permissions, s.expires_at,
    s.created_at, s.revoked_at, u.display_name
  from shares s join users u on u.id = s.grantee_id
  where s.revoked_at is null
    and (s.binding_id = any($3::uuid[]) or (s.binding_id = any($4::uuid[]) and s.grantee_id = $1 and ${activeShare('s')}))
  order by s.created_at, s.id`;

/**
 * Open shares of bindings: every one of `ownedBindingIds`, and only the user's own unexpired one of
 * `sharedBindingIds`. One statement for any number of devices (the Device.shares loader).
 */
export async function sharesOf(
  prepared: Prepared,
  userId: string,
  now: Date,
  ownedBindingIds: readonly string[],
  sharedBindingIds: readonly string[],
): Promise<ShareWithGrantee[]> {
  if (ownedBindingIds.length === 0 && sharedBindingIds.length === 0) return [];
  const rows = await prepared(SHARES_OF, [userId, now.toISOString(), [...ownedBindingIds], [...sharedBindingIds]]);
  return rows.map((r) => ({ share: shareOf(r, ''), displayName: r.display_name as string | null }));
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
