import { sql } from 'drizzle-orm';
import { bigserial, boolean, index, integer, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { users } from './accounts';

const createdAt = () => timestamp({ withTimezone: true, mode: 'date' }).notNull().defaultNow();
const at = () => timestamp({ withTimezone: true, mode: 'date' });

/** A provisioned unit, known before anyone binds it. Secrets are stored only as hashes. */
export const devices = pgTable(
  'devices',
  {
    id: uuid().primaryKey().defaultRandom(),
    serial: text().notNull(),
    model: text(),
    firmware: text(),
    channels: integer().notNull().default(1),
    verificationCodeHash: text().notNull(),
    deviceKeyHash: text().notNull(),
    ingestTokenHash: text().notNull(),
    provisionedAt: createdAt(),
    // Connection registry state, shared by every gateway node.
    online: boolean().notNull().default(false),
    lastSeenAt: at(),
    /** True once the device has sent any heartbeat: from then on silence means OFFLINE. */
    heartbeats: boolean().notNull().default(false),
    nodeId: text(),
    connectionId: text(),
  },
  (t) => [uniqueIndex('devices_serial_key').on(t.serial), uniqueIndex('devices_ingest_token_key').on(t.ingestTokenHash)],
);

/**
 * One row per period of ownership. At most one open binding per device (the partial unique index
 * settles races between binds, unbinds and transfers). Alarms belong to the binding they arrived in.
 */
export const bindings = pgTable(
  'bindings',
  {
    id: uuid().primaryKey().defaultRandom(),
    deviceId: uuid()
      .notNull()
      .references(() => devices.id),
    ownerId: uuid()
      .notNull()
      .references(() => users.id),
    name: text().notNull(),
    boundAt: createdAt(),
    endedAt: at(),
    endedBy: uuid().references(() => users.id),
    endReason: text(), // 'unbind' | 'transfer' | 'reclaim'
  },
  (t) => [
    uniqueIndex('bindings_open_device_key').on(t.deviceId).where(sql`ended_at is null`),
    index('bindings_open_owner_idx').on(t.ownerId, t.boundAt).where(sql`ended_at is null`),
  ],
);

export const shares = pgTable(
  'shares',
  {
    id: uuid().primaryKey().defaultRandom(),
    bindingId: uuid()
      .notNull()
      .references(() => bindings.id),
    deviceId: uuid()
      .notNull()
      .references(() => devices.id),
    granteeId: uuid()
      .notNull()
      .references(() => users.id),
    /** The email or phone the owner typed, the only part of the grantee's identity they see. */
    inviteLogin: text().notNull(),
    permissions: text().array().notNull(),
    expiresAt: at(),
    createdAt: createdAt(),
    revokedAt: at(),
  },
  (t) => [
    uniqueIndex('shares_open_key').on(t.bindingId, t.granteeId).where(sql`revoked_at is null`),
    index('shares_open_grantee_idx').on(t.granteeId).where(sql`revoked_at is null`),
    index('shares_open_binding_idx').on(t.bindingId).where(sql`revoked_at is null`),
  ],
);

export const auditLog = pgTable(
  'audit_log',
  {
    id: bigserial({ mode: 'number' }).primaryKey(),
    at: createdAt(),
    actorId: uuid(),
    action: text().notNull(), // 'device.bind' | 'device.unbind' | 'device.transfer' | 'share.grant' | ...
    deviceId: uuid(),
    details: jsonb().$type<Record<string, unknown>>(),
  },
  (t) => [index('audit_log_device_idx').on(t.deviceId, t.at)],
);
