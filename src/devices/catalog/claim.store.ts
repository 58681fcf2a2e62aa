import { and, desc, eq, gt, inArray, isNull, lte, sql } from 'drizzle-orm';
import { unionAll } from 'drizzle-orm/pg-core';
import { tables, type Db } from '../../db/index';
import type { ClaimStatus } from './claim.model';

/**
 * Data access for device claims (reclaim). Bindings, shares and the audit log are written through
 * device.store.ts; this module owns the `device_claims` table. Every function takes the executor.
 */

const { deviceClaims, bindings, devices } = tables;

export type ClaimRow = typeof deviceClaims.$inferSelect;
export type ClaimOutcome = 'window' | 'unbind' | 'transfer' | 'unbound' | 'withdrawn' | 'refused';

/** A claim as listed: the row, the device's serial and model, and whether the listing user made it. */
export interface ListedClaim {
  claim: ClaimRow;
  serial: string;
  model: string | null;
  mine: boolean;
}

/** Inserts a claim; null when the device already has a PENDING one (the partial unique index decides races). */
export async function insertClaim(
  db: Db,
  values: { deviceId: string; claimantId: string; bindingId: string | null; status: ClaimStatus; createdAt: Date; completesAt: Date; endedAt?: Date | null; outcome?: ClaimOutcome | null; claimantBindingId?: string | null },
): Promise<ClaimRow | null> {
  const [row] = await db
    .insert(deviceClaims)
    .values(values)
    .onConflictDoNothing({ target: deviceClaims.deviceId, where: sql`status = 'PENDING'` })
    .returning();
  return row ?? null;
}

export async function pendingClaimOf(db: Db, deviceId: string): Promise<ClaimRow | undefined> {
  const [row] = await db
    .select()
    .from(deviceClaims)
    .where(and(eq(deviceClaims.deviceId, deviceId), eq(deviceClaims.status, 'PENDING')))
    .limit(1);
  return row;
}

/** PENDING claims of the devices, locked (id order) so a transfer and a completion take turns. */
export async function lockPendingClaimsOf(db: Db, deviceIds: readonly string[]): Promise<ClaimRow[]> {
  if (deviceIds.length === 0) return [];
  return db
    .select()
    .from(deviceClaims)
    .where(and(inArray(deviceClaims.deviceId, [...deviceIds]), eq(deviceClaims.status, 'PENDING')))
    .orderBy(deviceClaims.id)
    .for('update');
}

/** The latest refusal of this claimant's claims on the device after `since`, if any. */
export async function lastRefusal(db: Db, deviceId: string, claimantId: string, since: Date): Promise<Date | null> {
  const [row] = await db
    .select({ endedAt: deviceClaims.endedAt })
    .from(deviceClaims)
    .where(
      and(
        eq(deviceClaims.deviceId, deviceId),
        eq(deviceClaims.claimantId, claimantId),
        eq(deviceClaims.outcome, 'refused'),
        gt(deviceClaims.endedAt, since),
      ),
    )
    .orderBy(desc(deviceClaims.endedAt))
    .limit(1);
  return row?.endedAt ?? null;
}

/** A claim with its device and the binding it stands against (owner and name), the claim row locked for update. */
export async function lockClaim(
  db: Db,
  id: string,
): Promise<{ claim: ClaimRow; serial: string; model: string | null; ownerId: string | null; name: string | null } | undefined> {
  const [row] = await db
    .select({ claim: deviceClaims, serial: devices.serial, model: devices.model, ownerId: bindings.ownerId, name: bindings.name })
    .from(deviceClaims)
    .innerJoin(devices, eq(devices.id, deviceClaims.deviceId))
    .leftJoin(bindings, eq(bindings.id, deviceClaims.bindingId))
    .where(eq(deviceClaims.id, id))
    .for('update', { of: deviceClaims })
    .limit(1);
  return row;
}

export type OpenBinding = typeof bindings.$inferSelect;
export interface ClaimDevice {
  id: string;
  serial: string;
  model: string | null;
}

/**
 * The device (serial, model) and its open binding, which is locked FOR UPDATE: every path that
 * touches a claim and a binding (claim, unbind, transfer, completion) locks the binding first.
 */
export async function lockDevice(db: Db, deviceId: string): Promise<{ device: ClaimDevice; binding: OpenBinding | null } | undefined> {
  const device = { id: devices.id, serial: devices.serial, model: devices.model };
  for (let attempt = 0; ; attempt++) {
    // FOR UPDATE cannot reach the nullable side of an outer join: the open binding first, the device alone if none.
    const [bound] = await db
      .select({ device, binding: bindings })
      .from(bindings)
      .innerJoin(devices, eq(devices.id, bindings.deviceId))
      .where(and(eq(bindings.deviceId, deviceId), isNull(bindings.endedAt)))
      .for('update', { of: bindings })
      .limit(1);
    if (bound) return bound;
    const open = sql<boolean>`exists (select 1 from ${bindings} where ${bindings.deviceId} = ${devices.id} and ${bindings.endedAt} is null)`;
    const [alone] = await db
      .select({ ...device, open })
      .from(devices)
      .where(eq(devices.id, deviceId))
      .limit(1);
    // A binding that replaced the one we waited for (a transfer) was not in the locking statement's snapshot: look again.
    if (alone?.open && attempt < 3) continue;
    return alone && { device: { id: alone.id, serial: alone.serial, model: alone.model }, binding: null };
  }
}

/**
 * Ends a claim if it is still PENDING (and, with `dueBy`, its window has passed by then); returns
 * the row, or undefined when another transaction ended it first. This conditional update is what
 * makes completion exactly-once however many nodes try at the same time.
 */
export async function endClaim(
  db: Db,
  id: string,
  end: { status: 'COMPLETED' | 'CANCELLED'; outcome: ClaimOutcome; at: Date; claimantBindingId?: string | null; dueBy?: Date },
): Promise<ClaimRow | undefined> {
  const [row] = await db
    .update(deviceClaims)
    .set({ status: end.status, outcome: end.outcome, endedAt: end.at, claimantBindingId: end.claimantBindingId ?? null })
    .where(and(eq(deviceClaims.id, id), eq(deviceClaims.status, 'PENDING'), end.dueBy ? lte(deviceClaims.completesAt, end.dueBy) : undefined))
    .returning();
  return row;
}

export async function setClaimantBinding(db: Db, id: string, claimantBindingId: string): Promise<void> {
  await db.update(deviceClaims).set({ claimantBindingId }).where(eq(deviceClaims.id, id));
}

/** Moves PENDING claims to the binding that follows (a transfer): the window runs on unchanged. */
export async function moveClaimsToBinding(db: Db, ids: readonly string[], bindingId: string): Promise<void> {
  if (ids.length === 0) return;
  await db
    .update(deviceClaims)
    .set({ bindingId })
    .where(and(inArray(deviceClaims.id, [...ids]), eq(deviceClaims.status, 'PENDING')));
}

/** PENDING claims whose window has passed, oldest first. */
export async function dueClaims(db: Db, now: Date, limit: number): Promise<Array<{ id: string; deviceId: string }>> {
  return db
    .select({ id: deviceClaims.id, deviceId: deviceClaims.deviceId })
    .from(deviceClaims)
    .where(and(eq(deviceClaims.status, 'PENDING'), lte(deviceClaims.completesAt, now)))
    .orderBy(deviceClaims.completesAt)
    .limit(limit);
}

/**
 * Claims the user made, and claims that stand against a binding the user holds (or held: a refused
 * or completed claim stays with the binding it ended under), newest first, at most `limit`. A union
 * of two index scans (claimant index, binding index through the owner's bindings).
 */
export async function claimsOf(db: Db, userId: string, limit: number): Promise<ListedClaim[]> {
  const made = db
    .select({ id: deviceClaims.id, mine: sql<boolean>`true`.as('mine') })
    .from(deviceClaims)
    .where(eq(deviceClaims.claimantId, userId));
  const against = db
    .select({ id: deviceClaims.id, mine: sql<boolean>`false`.as('mine') })
    .from(deviceClaims)
    .innerJoin(bindings, eq(bindings.id, deviceClaims.bindingId))
    .where(eq(bindings.ownerId, userId));
  const ids = unionAll(made, against).as('ids');
  return db
    .select({ claim: deviceClaims, serial: devices.serial, model: devices.model, mine: ids.mine })
    .from(ids)
    .innerJoin(deviceClaims, eq(deviceClaims.id, ids.id))
    .innerJoin(devices, eq(devices.id, deviceClaims.deviceId))
    .orderBy(desc(deviceClaims.createdAt), desc(deviceClaims.id))
    .limit(limit);
}
