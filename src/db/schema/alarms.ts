import { sql } from 'drizzle-orm';
import { bigint, bigserial, boolean, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { users } from './accounts';
import { bindings, devices } from './devices';

const at = () => timestamp({ withTimezone: true, mode: 'date' });

/** Device-reported details kept for information only (never identity, never trusted). */
export interface AlarmDetails {
  macAddress?: string | null;
  serialHint?: string | null;
  ipAddress?: string | null;
  protocol?: string | null;
  portNo?: number | null;
  uuid?: string | null;
  imageCount?: number;
  eventId?: string;
}

/**
 * One alarm: the first active post and every post coalesced into it. Rows are ordered (and
 * cursors built) by `(xid, seq)`: `xid` is the inserting transaction's id, and readers only expose
 * rows whose `xid` is below their snapshot's xmin, so no row can later appear before a cursor
 * already handed out (see src/streams/alarm-store.ts).
 */
export const alarms = pgTable(
  'alarms',
  {
    id: uuid().primaryKey().defaultRandom(),
    seq: bigserial({ mode: 'number' }).notNull(),
    xid: bigint({ mode: 'number' })
      .notNull()
      .default(sql`(pg_current_xact_id()::text)::bigint`),
    deviceId: uuid()
      .notNull()
      .references(() => devices.id),
    bindingId: uuid()
      .notNull()
      .references(() => bindings.id),
    source: text().notNull(), // 'isapi' | 'ws'
    channel: integer().notNull(),
    /** Normalised (lower-case, `-N` stripped); part of the coalescing key. */
    eventType: text().notNull(),
    rawType: text().notNull(),
    alarmType: text().notNull(),
    regionId: text(),
    description: text(),
    channelName: text(),
    /** Device time of the first active post, or the receive time when the device sent none. */
    startedAt: at().notNull(),
    /** Gateway time of the first post; `since` filters and retention use it. */
    receivedAt: at().notNull(),
    /** Gateway time of the latest post; coalescing and the quiet end compare against it. */
    lastPostAt: at().notNull(),
    /** Device time of the latest post (null when unparseable); a quiet end sets endedAt to it. */
    lastPostDeviceAt: at(),
    endedAt: at(),
    /** `activePostCount` as the device last reported it (0 when it reports none). */
    activePostCount: integer().notNull().default(0),
    /** Active posts we coalesced into this alarm. */
    postCount: integer().notNull().default(1),
    acknowledgedAt: at(),
    acknowledgedBy: uuid().references(() => users.id),
    details: jsonb().$type<AlarmDetails>(),
  },
  (t) => [
    uniqueIndex('alarms_seq_key').on(t.seq),
    index('alarms_order_idx').on(t.xid, t.seq),
    index('alarms_binding_order_idx').on(t.bindingId, t.xid, t.seq),
    // At most one open alarm per coalescing key; the write path serialises per device too (binding lock).
    uniqueIndex('alarms_open_key')
      .on(t.deviceId, t.channel, t.eventType, sql`coalesce(${t.regionId}, '')`)
      .where(sql`ended_at is null`),
    index('alarms_open_last_post_idx').on(t.lastPostAt).where(sql`ended_at is null`),
    index('alarms_received_idx').on(t.receivedAt),
  ],
);

/**
 * Every post that carried an identity (ISAPI `uuid`, WebSocket event id), so the same post is
 * stored once however often it is resent.
 */
export const alarmReceipts = pgTable(
  'alarm_receipts',
  {
    deviceId: uuid()
      .notNull()
      .references(() => devices.id),
    /** `u:<uuid>` or `w:<event id>`. */
    key: text().notNull(),
    alarmId: uuid(),
    receivedAt: at().notNull(),
  },
  (t) => [primaryKey({ columns: [t.deviceId, t.key] }), index('alarm_receipts_received_idx').on(t.receivedAt)],
);

/** Named leases: one node at a time runs a job (registry sweeper, retention). */
export const leases = pgTable('leases', {
  name: text().primaryKey(),
  holder: text().notNull(),
  expiresAt: at().notNull(),
});

/** Commands for devices on the WebSocket channel, delivered at least once wherever the device connects. */
export const deviceCommands = pgTable(
  'device_commands',
  {
    id: uuid().primaryKey().defaultRandom(),
    deviceId: uuid()
      .notNull()
      .references(() => devices.id),
    name: text().notNull(), // 'unbind'
    createdAt: at().notNull(),
    expiresAt: at().notNull(),
    deliveredAt: at(),
    attempts: integer().notNull().default(0),
    completedAt: at(),
    ok: boolean(),
    /** Why it completed without the device's result: 'superseded', 'expired'. */
    outcome: text(),
  },
  (t) => [index('device_commands_pending_idx').on(t.deviceId, t.createdAt).where(sql`completed_at is null`)],
);
