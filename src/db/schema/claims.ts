import { sql } from 'drizzle-orm';
import { index, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { users } from './accounts';
import { bindings, devices } from './devices';

const at = () => timestamp({ withTimezone: true, mode: 'date' });

/**
 * A claim on a bound device by someone who holds it (its label code). At most one PENDING claim per
 * device (the partial unique index settles races between claimants). `bindingId` is the binding the
 * claim stands against: the owner's, moved to the new owner's on a transfer; the owner side of
 * `deviceClaims` is read through it.
 */
export const deviceClaims = pgTable(
  'device_claims',
  {
    id: uuid().primaryKey().defaultRandom(),
    deviceId: uuid()
      .notNull()
      .references(() => devices.id),
    claimantId: uuid()
      .notNull()
      .references(() => users.id),
    /** The owner's binding; null for a claim on an unbound device (it completed at once). */
    bindingId: uuid().references(() => bindings.id),
    status: text().notNull(), // 'PENDING' | 'COMPLETED' | 'CANCELLED'
    createdAt: at().notNull(),
    completesAt: at().notNull(),
    endedAt: at(),
    /** How it ended: 'window' | 'unbind' | 'transfer' | 'unbound' (completed), 'withdrawn' | 'refused' (cancelled). */
    outcome: text(),
    /** The claimant's binding once COMPLETED. */
    claimantBindingId: uuid().references(() => bindings.id),
  },
  (t) => [
    uniqueIndex('device_claims_pending_device_key').on(t.deviceId).where(sql`status = 'PENDING'`),
    index('device_claims_due_idx').on(t.completesAt).where(sql`status = 'PENDING'`),
    index('device_claims_claimant_idx').on(t.claimantId, t.createdAt),
    index('device_claims_binding_idx').on(t.bindingId),
  ],
);
