import type { RequestMeta } from '../../accounts/auth.service';
import type { Logger } from 'pino';
import { z } from 'zod';
import { requireCaller, type Caller } from '../../accounts/caller';
import type { Db } from '../../db/index';
import { CommonError } from '../../lib/domain-error';
import type { LimiterFactory } from '../../lib/rate-limit';
import { isUuid, parseInput } from '../../lib/validate';
import {
  claimCompletedNotice,
  claimInheritedNotice,
  claimMadeNotice,
  claimReclaimedNotice,
  claimRefusedNotice,
  claimShareEndedNotice,
  claimWithdrawnNotice,
  type NoticeText,
} from '../../notify/claim-notices';
import { contactOf, contactsOf, enqueueMessage, type Channel } from '../../notify/outbox';
import type { EventBus } from '../../streams/bus/event-bus';
import type { ClaimView } from './claim.model';
import * as claims from './claim.store';
import type { ClaimDevice, ClaimRow, OpenBinding } from './claim.store';
import { DeviceError } from './device.errors';
import type { BindingHooks, DeviceCommands, DeviceService, EndedBinding } from './device.service';
import * as store from './device.store';
import type { UserContact } from './device.store';

/** A refused claimant cannot claim the same device again for this long (issue 12: 30 days). */
export const REFUSAL_BLOCK_S = 30 * 86_400;
/** New claims one account may make on one device a day: each tells the owner, so a withdraw-and-claim loop cannot flood them. */
export const CLAIMS_PER_DEVICE_PER_DAY = 3;
/** Claims listed by deviceClaims, newest first. */
export const MAX_CLAIMS_LISTED = 100;
/** Due claims one completion round takes on (it loops while a round is full). */
const COMPLETION_BATCH = 100;

export interface ClaimServiceDeps {
  db: Db;
  clock: () => Date;
  limiters: LimiterFactory;
  bus: EventBus;
  commands: DeviceCommands;
  /** The label-code check of bindDevice, with its limits (one home for them). */
  devices: Pick<DeviceService, 'checkLabelCode'>;
  /** The owner's objection window (RECLAIM_WINDOW_S). */
  windowS: number;
  /** Base of the sign-in link in the owner's notice (PUBLIC_URL). */
  publicUrl: string;
  /** Nudges the outbox worker after a commit that queued messages. */
  onOutbox(): void;
  log: Logger;
}

const idSchema = z.object({ id: z.string().max(100, 'too long') });

const defaultName = (d: ClaimDevice) => (d.model ?? d.serial).slice(0, 64);

/** Every address of the user for security notices (both sides of a device changing hands are told everywhere). */
function addressed(user: UserContact | undefined, text: NoticeText): Array<{ channel: Channel; recipient: string } & NoticeText> {
  return (user ? contactsOf(user) : []).map((contact) => ({ ...contact, ...text }));
}

/** What happens after a claim's transaction commits. */
interface AfterCommit {
  /** device.access audiences: who gained or lost the device. */
  access: Array<{ deviceId: string; userIds: string[] }>;
  /** Devices that get the unbind command on their channel. */
  unbind: string[];
  outbox: boolean;
}

const nothing = (): AfterCommit => ({ access: [], unbind: [], outbox: false });

/**
 * Reclaiming a second-hand device that is still bound to someone else (issue 12). The label code
 * proves possession; the owner is told at once and may refuse during the window; with no refusal
 * the device moves to the claimant exactly once. Neither side ever learns who the other is.
 */
export function createClaimService(deps: ClaimServiceDeps) {
  const { db, clock, log } = deps;
  const claimsPerDevice = deps.limiters.create('claim-device', CLAIMS_PER_DEVICE_PER_DAY, 86_400);

  async function afterCommit(done: AfterCommit) {
    if (done.outbox) deps.onOutbox();
    for (const a of done.access) {
      try {
        deps.bus.publish('device.access', { deviceId: a.deviceId, userIds: [...new Set(a.userIds)] });
      } catch (err) {
        log.warn({ err, deviceId: a.deviceId }, 'could not publish device.access');
      }
    }
    for (const deviceId of done.unbind) {
      try {
        await deps.commands.sendUnbind(deviceId);
      } catch (err) {
        log.warn({ err, deviceId }, 'could not send the unbind command');
      }
    }
  }

  const viewOf = (claim: ClaimRow, serial: string, mine: boolean): ClaimView => ({
    id: claim.id,
    serial,
    status: claim.status as ClaimView['status'],
    createdAt: claim.createdAt,
    completesAt: claim.completesAt,
    mine,
    // The owner sees their device (while they still see it); the claimant only once it is theirs.
    deviceId: !mine || claim.status === 'COMPLETED' ? claim.deviceId : null,
  });

  /**
   * Gives the device to the claimant in `tx`: ends `binding` (the owner's open binding, locked by
   * the caller) with every share and tells the owner, or, with null (the owner's unbind already
   * ended it), only binds; audits "reclaimed" and queues the notices. The claim must already be
   * marked COMPLETED by this transaction.
   */
  async function moveToClaimant(tx: Db, claim: ClaimRow, device: ClaimDevice, binding: OpenBinding | null, now: Date): Promise<AfterCommit> {
    let endedShares: store.ShareRow[] = [];
    if (binding) {
      const [ended] = await store.endBindings(tx, [binding.id], claim.claimantId, 'reclaim', now);
      // We hold the binding's lock: it cannot have ended meanwhile. Roll back rather than leave two owners.
      if (!ended) throw new Error(`binding ${binding.id} ended under our lock`);
      endedShares = (await store.revokeSharesOfBindings(tx, [binding.id], now)).filter((s) => !s.expiresAt || s.expiresAt > now);
    }
    const next = await store.insertBinding(tx, { deviceId: device.id, ownerId: claim.claimantId, name: defaultName(device), boundAt: now });
    if (!next) throw new Error(`device ${device.id} still has an open binding`);
    await claims.setClaimantBinding(tx, claim.id, next.id);
    await store.insertAudit(tx, [
      {
        actorId: claim.claimantId,
        action: 'device.reclaimed',
        deviceId: device.id,
        at: now,
        details: { claimId: claim.id, via: binding ? 'window' : 'unbind', fromBindingId: binding?.id ?? claim.bindingId, fromUserId: binding?.ownerId ?? null, toBindingId: next.id, revokedShares: endedShares.length },
      },
    ]);
    const users = new Map((await store.usersByIds(tx, [claim.claimantId, ...(binding ? [binding.ownerId] : []), ...endedShares.map((s) => s.granteeId)])).map((u) => [u.id, u]));
    const messages = addressed(users.get(claim.claimantId), claimCompletedNotice({ device, at: now }));
    if (binding) messages.push(...addressed(users.get(binding.ownerId), claimReclaimedNotice({ device: { name: binding.name, serial: device.serial }, at: now })));
    // A claimant who held a share of the device is not told it ended: the device is now theirs.
    for (const share of endedShares.filter((s) => s.granteeId !== claim.claimantId)) {
      const grantee = users.get(share.granteeId);
      const contact = grantee && contactOf(grantee);
      if (contact && binding) messages.push({ ...contact, ...claimShareEndedNotice({ devices: [{ name: binding.name, serial: device.serial }] }) });
    }
    for (const m of messages) await enqueueMessage(tx, m);
    return {
      access: [{ deviceId: device.id, userIds: [claim.claimantId, ...(binding ? [binding.ownerId] : []), ...endedShares.map((s) => s.granteeId)] }],
      unbind: binding ? [device.id] : [],
      outbox: true,
    };
  }

  /** Completes one due claim if it is still PENDING; false when another node (or a refusal) got there first. */
  async function completeClaim(claimId: string, deviceId: string): Promise<boolean> {
    const now = clock();
    const done = await db.transaction(async (tx) => {
      const locked = await claims.lockDevice(tx, deviceId);
      if (!locked) return null;
      const claim = await claims.endClaim(tx, claimId, { status: 'COMPLETED', outcome: 'window', at: now, dueBy: now });
      if (!claim) return null;
      if (locked.binding?.ownerId === claim.claimantId) {
        // Already theirs (cannot happen: a transfer to the claimant completes the claim). Nothing moves.
        await claims.setClaimantBinding(tx, claim.id, locked.binding.id);
        return nothing();
      }
      return moveToClaimant(tx, claim, locked.device, locked.binding, now);
    });
    if (!done) return false;
    await afterCommit(done);
    log.info({ claimId, deviceId }, 'device claim completed');
    return true;
  }

  /** The device service's hooks: an unbind completes a pending claim at once; a transfer carries it over. */
  const bindingHooks: BindingHooks = {
    async bindingsEnded(tx, ended, now) {
      const pending = await claims.lockPendingClaimsOf(
        tx,
        ended.map((e) => e.deviceId),
      );
      const handedToClaimant = new Set<string>();
      if (pending.length === 0) return { afterCommit: () => {}, handedToClaimant };
      const byDevice = new Map<string, EndedBinding>(ended.map((e) => [e.deviceId, e]));
      const after: AfterCommit[] = [];
      for (const claim of pending) {
        const e = byDevice.get(claim.deviceId)!;
        const locked = await claims.lockDevice(tx, claim.deviceId);
        if (!locked) continue;
        if (e.reason === 'unbind') {
          await claims.endClaim(tx, claim.id, { status: 'COMPLETED', outcome: 'unbind', at: now });
          after.push(await moveToClaimant(tx, claim, locked.device, null, now));
          handedToClaimant.add(claim.deviceId);
        } else if (e.next?.ownerId === claim.claimantId) {
          // Transferred to the claimant: the claim has what it asked for.
          await claims.endClaim(tx, claim.id, { status: 'COMPLETED', outcome: 'transfer', at: now, claimantBindingId: e.next.bindingId });
        } else if (e.next) {
          // The window runs on unchanged; the new owner may refuse, and is told how long is left.
          await claims.moveClaimsToBinding(tx, [claim.id], e.next.bindingId);
          const [owner] = await store.usersByIds(tx, [e.next.ownerId]);
          const device = { name: locked.binding?.name ?? defaultName(locked.device), serial: locked.device.serial };
          for (const m of addressed(owner, claimInheritedNotice({ device, claimId: claim.id, now, completesAt: claim.completesAt, publicUrl: deps.publicUrl }))) {
            await enqueueMessage(tx, m);
          }
          after.push({ ...nothing(), outbox: true });
        }
      }
      return {
        afterCommit: () => {
          for (const a of after) void afterCommit(a);
        },
        handedToClaimant,
      };
    },
  };

  return {
    bindingHooks,

    /**
     * Claims a device with the code on its label. Wrong code or unknown serial: the same
     * INVALID_VERIFICATION_CODE and limits as bindDevice. Not bound: binds it (COMPLETED). Bound to
     * someone else: a PENDING claim that completes after the window unless the owner refuses (the
     * owner is told at once). Another claimant's pending claim, or this claimant's refusal in the
     * last 30 days: DEVICE_ALREADY_BOUND. The caller's own device: BAD_USER_INPUT. Claiming again
     * while pending returns the same claim.
     */
    async claimDevice(caller: Caller | null, serial: unknown, verificationCode: unknown, meta: RequestMeta): Promise<ClaimView> {
      const { caller: c, device } = await deps.devices.checkLabelCode(caller, serial, verificationCode, meta);
      for (let attempt = 0; attempt < 3; attempt++) {
        const now = clock();
        const outcome = await db.transaction(async (tx) => {
          const locked = await claims.lockDevice(tx, device.id);
          const binding = locked?.binding;
          if (!binding) {
            const bound = await store.insertBinding(tx, { deviceId: device.id, ownerId: c.userId, name: defaultName(device), boundAt: now });
            if (!bound) return null; // bound meanwhile: look again
            const claim = (await claims.insertClaim(tx, {
              deviceId: device.id,
              claimantId: c.userId,
              bindingId: null,
              status: 'COMPLETED',
              createdAt: now,
              completesAt: now,
              endedAt: now,
              outcome: 'unbound',
              claimantBindingId: bound.id,
            }))!;
            await store.insertAudit(tx, [{ actorId: c.userId, action: 'device.bind', deviceId: device.id, at: now, details: { bindingId: bound.id, claimId: claim.id } }]);
            return { claim, after: { ...nothing(), access: [{ deviceId: device.id, userIds: [c.userId] }] } };
          }
          if (binding.ownerId === c.userId) throw CommonError.badInput('serial: this device is already yours');
          const refusedAt = await claims.lastRefusal(tx, device.id, c.userId, new Date(now.getTime() - REFUSAL_BLOCK_S * 1000));
          if (refusedAt) {
            const until = new Date(refusedAt.getTime() + REFUSAL_BLOCK_S * 1000);
            throw new DeviceError('ALREADY_BOUND', `Your claim on this device was refused; you can claim it again after ${until.toISOString()}`);
          }
          const pending = await claims.pendingClaimOf(tx, device.id);
          if (pending?.claimantId === c.userId) return { claim: pending, after: nothing() };
          if (pending) throw new DeviceError('ALREADY_BOUND', 'This device is bound to another account and cannot be claimed now');
          const wait = await claimsPerDevice.consume(`${c.userId}:${device.id}`);
          if (wait) throw CommonError.rateLimited(wait);
          const claim = await claims.insertClaim(tx, {
            deviceId: device.id,
            claimantId: c.userId,
            bindingId: binding.id,
            status: 'PENDING',
            createdAt: now,
            completesAt: new Date(now.getTime() + deps.windowS * 1000),
          });
          // We hold the binding's lock, and every claim takes it first: no other claim can slip in.
          if (!claim) throw new DeviceError('ALREADY_BOUND', 'This device is bound to another account and cannot be claimed now');
          await store.insertAudit(tx, [{ actorId: c.userId, action: 'device.claim', deviceId: device.id, at: now, details: { claimId: claim.id, bindingId: binding.id } }]);
          const [owner] = await store.usersByIds(tx, [binding.ownerId]);
          const notice = claimMadeNotice({ device: { name: binding.name, serial: device.serial }, claimId: claim.id, at: now, completesAt: claim.completesAt, publicUrl: deps.publicUrl });
          for (const m of addressed(owner, notice)) await enqueueMessage(tx, m);
          return { claim, after: { ...nothing(), outbox: true } };
        });
        if (!outcome) continue;
        await afterCommit(outcome.after);
        return viewOf(outcome.claim, device.serial, true);
      }
      throw new DeviceError('ALREADY_BOUND', 'This device is bound to another account and cannot be claimed now');
    },

    /**
     * Ends a PENDING claim: the claimant withdraws, or the device's owner refuses (the claimant is
     * then blocked from claiming that device for 30 days). True when this call ended it, false when
     * it had already ended; NOT_FOUND for a claim the caller may not see.
     */
    async cancelClaim(caller: Caller | null, id: unknown): Promise<boolean> {
      const c = requireCaller(caller, 'DEVICES_WRITE');
      const claimId = parseInput(idSchema, { id }).id;
      if (!isUuid(claimId)) throw CommonError.notFound('Claim not found');
      const now = clock();
      const done = await db.transaction(async (tx) => {
        const row = await claims.lockClaim(tx, claimId);
        const by = row?.claim.claimantId === c.userId ? 'claimant' : row?.ownerId === c.userId ? 'owner' : null;
        if (!row || !by) throw CommonError.notFound('Claim not found');
        if (row.claim.status !== 'PENDING') return false;
        const outcome = by === 'owner' ? 'refused' : 'withdrawn';
        await claims.endClaim(tx, claimId, { status: 'CANCELLED', outcome, at: now });
        await store.insertAudit(tx, [{ actorId: c.userId, action: `device.claim.${outcome}`, deviceId: row.claim.deviceId, at: now, details: { claimId } }]);
        const device = { serial: row.serial, model: row.model };
        if (by === 'owner') {
          const [claimant] = await store.usersByIds(tx, [row.claim.claimantId]);
          const text = claimRefusedNotice({ device, at: now, blockedUntil: new Date(now.getTime() + REFUSAL_BLOCK_S * 1000) });
          for (const m of addressed(claimant, text)) await enqueueMessage(tx, m);
        } else if (row.ownerId) {
          const [owner] = await store.usersByIds(tx, [row.ownerId]);
          for (const m of addressed(owner, claimWithdrawnNotice({ device: { name: row.name ?? row.serial, serial: row.serial }, at: now }))) await enqueueMessage(tx, m);
        }
        return true;
      });
      if (done) deps.onOutbox();
      return done;
    },

    /** Claims the caller made (mine) and claims against devices the caller owns or owned (not mine), newest first, at most 100. */
    async deviceClaims(caller: Caller | null): Promise<ClaimView[]> {
      const c = requireCaller(caller, 'DEVICES_READ');
      const rows = await claims.claimsOf(db, c.userId, MAX_CLAIMS_LISTED);
      return rows.map((r) => viewOf(r.claim, r.serial, r.mine));
    },

    /**
     * Completes every PENDING claim whose window has passed, each in its own transaction; returns how
     * many this call completed. Safe to run on every node at once: a claim completes exactly once.
     */
    async completeDue(): Promise<number> {
      let completed = 0;
      for (;;) {
        const due = await claims.dueClaims(db, clock(), COMPLETION_BATCH);
        let round = 0;
        for (const d of due) {
          try {
            if (await completeClaim(d.id, d.deviceId)) round++;
          } catch (err) {
            log.error({ err, claimId: d.id }, 'could not complete a device claim');
          }
        }
        completed += round;
        // A full batch may have more behind it; a round that moved nothing (failures, another node) waits for the next tick.
        if (due.length < COMPLETION_BATCH || round === 0) return completed;
      }
    },
  };
}

export type ClaimService = ReturnType<typeof createClaimService>;
