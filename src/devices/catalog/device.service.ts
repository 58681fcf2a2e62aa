import type { Logger } from 'pino';
import { z } from 'zod';
import type { RequestMeta } from '../../accounts/auth.service';
import { requireCaller, type Caller } from '../../accounts/caller';
import type { Db } from '../../db/index';
import { sourceKey } from '../../lib/client-address';
import { CommonError } from '../../lib/domain-error';
import type { LimiterFactory } from '../../lib/rate-limit';
import { isUuid, loginSchema, parseInput, type Login } from '../../lib/validate';
import { contactOf, contactsOf, enqueueMessage, type OutboxMessage } from '../../notify/outbox';
import type { AccessChangedPayload, EventBus } from '../../streams/bus/event-bus';
import { DeviceError } from './device.errors';
import {
  DEVICE_ROLES,
  DEVICE_STATUSES,
  PERMISSIONS,
  normalizePermissions,
  statusOf,
  type DeviceView,
  type GranteeView,
  type Permission,
  type ShareView,
  type UnbindOutcome,
} from './device.model';
import * as store from './device.store';
import type { AccessRow, ListCursor, ListedRow, ShareRow, UserContact } from './device.store';
import { serialSchema, verifyLabelCode } from './provisioning';

/**
 * Commands to a device's live connection. The connection registry (a later issue) implements it;
 * until then app.ts wires `noDeviceCommands`. Called after the change has committed; an
 * implementation must not throw (a failure is logged and the change stands: the device learns
 * on its next hello that it is no longer bound).
 */
export interface DeviceCommands {
  /** Sends `{"type":"command","name":"unbind"}` to the device if it is connected, on whichever node. */
  sendUnbind(deviceId: string): void | Promise<void>;
}

/** The seam's default: no registry yet, so there is no one to tell. */
export const noDeviceCommands: DeviceCommands = { sendUnbind: () => {} };

/** A binding that an unbind or a transfer ended; `next` is the transfer's new binding. */
export interface EndedBinding {
  deviceId: string;
  bindingId: string;
  reason: 'unbind' | 'transfer';
  next: { bindingId: string; ownerId: string } | null;
}

/**
 * What else happens when bindings end, inside the same transaction (reclaim: an unbind completes a
 * pending claim at once, a transfer carries it to the new owner). Returns what to run once the
 * transaction has committed (publishing, nudging the outbox; it must not throw) and the devices
 * that went straight to someone who had claimed them (their owner's notice must not say the
 * device is free to bind).
 */
export interface BindingHooks {
  bindingsEnded(tx: Db, ended: readonly EndedBinding[], now: Date): Promise<BindingsEndedResult>;
}

export interface BindingsEndedResult {
  afterCommit(): void;
  handedToClaimant: ReadonlySet<string>;
}

export interface DeviceServiceDeps {
  db: Db;
  /** The database handle's prepared-statement runner, for the list's hot reads (device.store). */
  prepared: store.Prepared;
  clock: () => Date;
  limiters: LimiterFactory;
  /** Wrong label codes per day per device, per calling account and per source (defaults: BIND_LIMITS). */
  limits?: { bindPerDevice: number; bindPerAccount: number; bindPerSource: number };
  bus: EventBus;
  commands: DeviceCommands;
  /** Default: none. */
  bindingHooks?: BindingHooks;
  /** Step-up check with the account password (auth.confirmPassword): throws INVALID_CREDENTIALS or RATE_LIMITED. */
  confirmPassword(userId: string, password: unknown, meta: RequestMeta): Promise<unknown>;
  /** Nudges the outbox worker after a commit that queued messages. */
  onOutbox(): void;
  log: Logger;
}

export interface DeviceEdge {
  cursor: string;
  node: DeviceView;
}

export interface DeviceConnection {
  edges: DeviceEdge[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  /** The total of every match: read with the page when the caller said it wants it, else counted on demand (a second statement). */
  countTotal(): Promise<number>;
}

/**
 * Label-code limits (README "Limits"). A code is 6 of 26 letters: 26^6 = 308,915,776. Up to
 * `bindPerDevice` (200) wrong codes a day reach one device from everyone together: 73,000 a year,
 * a 0.024% chance a year of guessing it. One account gets 5 free guesses per device, then waits
 * 1 min, 2, 4, ... up to 1 h between guesses; an account and a source have daily budgets across
 * devices. A right code is never counted. Past the device's ceiling, each account and each source
 * keeps BIND_GRACE_PAST_CEILING guesses a day, so strangers' failures never lock the buyer out;
 * guessing on past the ceiling then needs a new account and a new source for every 3 guesses.
 */
export const BIND_LIMITS = { bindPerDevice: 200, bindPerAccount: 20, bindPerSource: 50 } as const;
export const BIND_GRACE_PAST_CEILING = 3;
export const BIND_FREE_PER_DEVICE = 5;
export const BIND_DELAY = { minWaitS: 60, maxWaitS: 3600, lifetimeS: 24 * 3600 } as const;
const DAY_S = 24 * 3600;
/** Unknown grantee logins an account may try in an hour (grantShare would otherwise enumerate accounts). */
export const UNKNOWN_GRANTEE_ATTEMPTS = 20;
export const MAX_SHARES_PER_DEVICE = 50;
export const MAX_BULK_UNBIND = 100;
export const MAX_PAGE = 100;
const DEFAULT_PAGE = 50;

const nameSchema = z.string().trim().min(1, 'must not be empty').max(64, 'at most 64 characters');
const idSchema = z.string().max(100, 'too long');

const bindInput = z.object({
  serial: serialSchema,
  verificationCode: z.string().trim().max(32, 'too long').toUpperCase(),
  name: nameSchema.nullish(),
});

const listInput = z.object({
  first: z
    .number()
    .int()
    .min(1, 'must be between 1 and 100')
    .max(MAX_PAGE, 'must be between 1 and 100')
    .nullish()
    .transform((v) => v ?? DEFAULT_PAGE),
  after: z.string().max(200, 'not a valid cursor').nullish(),
  filter: z
    .object({
      status: z.enum(DEVICE_STATUSES).nullish(),
      role: z.enum(DEVICE_ROLES).nullish(),
      search: z.string().trim().max(64, 'at most 64 characters').nullish(),
    })
    .nullish(),
});

const shareInput = z.object({
  grantee: loginSchema,
  permissions: z
    .array(z.enum(PERMISSIONS))
    .min(1, 'give at least one permission')
    .max(PERMISSIONS.length * 2, 'too many permissions'),
  expiresAt: z.date().nullish(),
});

const unbindManyInput = z
  .array(idSchema, { message: 'must be a list of ids' })
  .min(1, 'give at least one id')
  .max(MAX_BULK_UNBIND, `at most ${MAX_BULK_UNBIND} ids`);

/** Parses one named argument, so a BAD_USER_INPUT message says which. */
const arg = <S extends z.ZodType>(name: string, schema: S, value: unknown): z.output<S> =>
  parseInput(z.object({ [name]: schema }), { [name]: value })[name] as z.output<S>;

/** Cursors are opaque to clients: base64url of "<boundAt ms>.<binding id>". */
export function encodeCursor(c: ListCursor): string {
  return Buffer.from(`${c.boundAt.getTime()}.${c.bindingId}`).toString('base64url');
}

const MAX_CURSOR_TIME = Date.parse('9999-12-31T23:59:59.999Z');

export function decodeCursor(value: string): ListCursor {
  const text = /^[A-Za-z0-9_-]{1,200}$/.test(value) ? Buffer.from(value, 'base64url').toString('utf8') : '';
  const m = /^(\d{1,15})\.([0-9a-f-]{36})$/.exec(text);
  // The time must be one Postgres can hold (years 1..9999): a forged cursor is bad input, not a database error.
  if (!m || !isUuid(m[2]!) || Number(m[1]) > MAX_CURSOR_TIME) throw CommonError.badInput('after: not a valid cursor');
  return { boundAt: new Date(Number(m[1])), bindingId: m[2]! };
}

/** The caller's view of a device row (a listed row or a full access row), or null when the row is not theirs to see. */
function viewOf(row: ListedRow, userId: string): DeviceView | null {
  const owner = row.binding.ownerId === userId;
  if (!owner && !row.share) return null;
  return {
    id: row.device.id,
    serial: row.device.serial,
    model: row.device.model,
    firmware: row.device.firmware,
    channels: row.device.channels,
    name: row.binding.name,
    status: statusOf(row.device),
    lastSeenAt: row.device.lastSeenAt,
    boundAt: row.binding.boundAt,
    role: owner ? 'OWNER' : 'SHARED',
    permissions: owner ? [...PERMISSIONS] : normalizePermissions(row.share!.permissions),
    bindingId: row.binding.id,
  };
}

/**
 * NOT_FOUND unless the caller sees the device; FORBIDDEN when they see it but lack `need`
 * ('OWNER' or a permission; an owner has every permission).
 */
function requireRight(row: AccessRow | undefined, userId: string, need: 'OWNER' | Permission): DeviceView {
  const view = row ? viewOf(row, userId) : null;
  if (!view) throw CommonError.notFound('Device not found');
  if (need === 'OWNER' ? view.role !== 'OWNER' : !view.permissions.includes(need)) {
    throw CommonError.forbidden(need === 'OWNER' ? 'Only the owner can do this' : `This share lacks the ${need} permission`);
  }
  return view;
}

function granteeView(share: ShareRow, displayName: string | null): GranteeView {
  const isEmail = share.inviteLogin.includes('@');
  return {
    id: share.granteeId,
    email: isEmail ? share.inviteLogin : null,
    phone: isEmail ? null : share.inviteLogin,
    displayName,
    totpEnabled: false,
    createdAt: share.createdAt,
  };
}

function shareView(share: ShareRow, displayName: string | null, device: DeviceView): ShareView {
  return {
    id: share.id,
    device,
    grantee: granteeView(share, displayName),
    permissions: normalizePermissions(share.permissions),
    expiresAt: share.expiresAt,
    createdAt: share.createdAt,
  };
}

const defaultName = (d: { model: string | null; serial: string }) => (d.model ?? d.serial).slice(0, 64);
/** Said only after the right label code, so it tells a guesser nothing; it names the way forward for a second-hand device. */
const alreadyBoundElsewhere = () =>
  new DeviceError('ALREADY_BOUND', 'This device is bound to another account. If you bought it second-hand, claim it with claimDevice: its owner is told and the device moves to you unless they refuse.');

const label = (d: { name: string; serial: string }) => (d.name === d.serial ? d.serial : `${d.name} (${d.serial})`);
const isActive = (s: ShareRow, now: Date) => !s.expiresAt || s.expiresAt > now;

/** Devices, bindings and shares: everything a person does with a device through the API. */
/** A device's open binding and every unexpired share of it, as read once for all callers. */
export interface DeviceAccess {
  device: AccessRow['device'];
  binding: AccessRow['binding'];
  shareByGrantee: Map<string, ShareRow>;
}

export function createDeviceService(deps: DeviceServiceDeps) {
  const { db, clock, log } = deps;
  const bindLimits = deps.limits ?? BIND_LIMITS;
  const bindByDevice = deps.limiters.create('bind-device', bindLimits.bindPerDevice, DAY_S);
  const bindByAccount = deps.limiters.create('bind-account', bindLimits.bindPerAccount, DAY_S);
  const bindBySource = deps.limiters.create('bind-source', bindLimits.bindPerSource, DAY_S);
  const bindByPair = deps.limiters.backoff('bind-pair', { free: BIND_FREE_PER_DEVICE, ...BIND_DELAY });
  const graceByAccount = deps.limiters.create('bind-grace-account', BIND_GRACE_PAST_CEILING, DAY_S);
  const graceBySource = deps.limiters.create('bind-grace-source', BIND_GRACE_PAST_CEILING, DAY_S);
  const unknownGrantee = deps.limiters.create('share-unknown-grantee', UNKNOWN_GRANTEE_ATTEMPTS, 3600);
  const hooks: BindingHooks = deps.bindingHooks ?? { bindingsEnded: async () => ({ afterCommit: () => {}, handedToClaimant: new Set() }) };

  /** Publishes after a commit; the bus being down must not undo a committed change. */
  function publishAccess(payload: AccessChangedPayload) {
    try {
      deps.bus.publish('device.access', { deviceId: payload.deviceId, userIds: [...new Set(payload.userIds)] });
    } catch (err) {
      log.warn({ err, deviceId: payload.deviceId }, 'could not publish device.access');
    }
  }

  async function sendUnbind(deviceId: string) {
    try {
      await deps.commands.sendUnbind(deviceId);
    } catch (err) {
      log.warn({ err, deviceId }, 'could not send the unbind command');
    }
  }

  /**
   * Spends one guess up front (so parallel guesses cannot slip past) against the caller's account,
   * its source, the (account, device) delay and the device's ceiling; a refused guess spends
   * nothing. Returns the refund for a right code, which is no guess.
   */
  async function chargeBindAttempt(serial: string, userId: string, ip: string): Promise<() => Promise<void>> {
    const keys = { device: `serial:${serial}`, account: `user:${userId}`, source: sourceKey(ip), pair: `user:${userId}|serial:${serial}` };
    const spent: Array<() => Promise<void>> = [];
    const refundAll = async () => {
      await Promise.all(spent.map((r) => r()));
    };
    for (const [limiter, key] of [
      [bindByAccount, keys.account],
      [bindBySource, keys.source],
    ] as const) {
      const wait = await limiter.consume(key);
      if (wait) {
        await limiter.refund(key);
        await refundAll();
        throw CommonError.rateLimited(wait);
      }
      spent.push(() => limiter.refund(key));
    }
    const pairWait = await bindByPair.attempt(keys.pair);
    if (pairWait) {
      await refundAll();
      throw CommonError.rateLimited(pairWait);
    }
    spent.push(() => bindByPair.reset(keys.pair));
    const deviceWait = await bindByDevice.consume(keys.device);
    if (!deviceWait) {
      spent.push(() => bindByDevice.refund(keys.device));
      return refundAll;
    }
    await bindByDevice.refund(keys.device);
    // Past the device's ceiling, strangers' failures must not lock the buyer out: an account and a
    // source each keep a few guesses a day for devices at their ceiling, so the buyer's right code
    // still gets checked, while each extra guess costs a guesser a fresh account and source.
    for (const [limiter, key] of [
      [graceByAccount, keys.account],
      [graceBySource, keys.source],
    ] as const) {
      if (await limiter.consume(key)) {
        await limiter.refund(key);
        await refundAll();
        throw CommonError.rateLimited(deviceWait);
      }
      spent.push(() => limiter.refund(key));
    }
    return refundAll;
  }

  /**
   * The label code proves possession: bindDevice and claimDevice (reclaim) share this check and its
   * limits. Throws INVALID_VERIFICATION_CODE for a wrong code or an unknown serial, RATE_LIMITED.
   */
  async function provePossession(c: Caller, serial: string, verificationCode: string, meta: RequestMeta) {
    const refund = await chargeBindAttempt(serial, c.userId, meta.ip);
    const device = await store.findDeviceForBinding(db, serial);
    // A malformed code cannot match anything; it needs no hashing to say so and reveals nothing about the serial.
    let ok: boolean;
    try {
      ok = /^[A-Z]{6}$/.test(verificationCode) && (await verifyLabelCode(device?.verificationCodeHash ?? null, verificationCode));
    } catch (err) {
      await refund(); // refused by a full hash queue: not a guess
      throw err;
    }
    if (!ok || !device) throw new DeviceError('INVALID_VERIFICATION_CODE', 'The serial or the verification code is wrong');
    // A right code is not a guess: it does not count against the limits.
    await refund();
    return { id: device.id, serial: device.serial, model: device.model };
  }

  async function viewById(userId: string, deviceId: string): Promise<DeviceView | null> {
    const [row] = await store.accessRows(db, userId, clock(), [deviceId]);
    return row ? viewOf(row, userId) : null;
  }

  /** Outbox rows for ended shares: one notice per former grantee, listing their devices. */
  function shareEndedNotices(
    ended: Array<{ share: ShareRow; device: DeviceView }>,
    users: Map<string, UserContact>,
    verb: 'unbound' | 'transferred',
  ): OutboxMessage[] {
    const byGrantee = new Map<string, DeviceView[]>();
    for (const e of ended) byGrantee.set(e.share.granteeId, [...(byGrantee.get(e.share.granteeId) ?? []), e.device]);
    const out: OutboxMessage[] = [];
    for (const [granteeId, list] of byGrantee) {
      const user = users.get(granteeId);
      const contact = user && contactOf(user);
      if (!contact) continue;
      const one = list.length === 1;
      out.push({
        ...contact,
        kind: 'share-ended',
        subject: one ? 'A device is no longer shared with you' : `${list.length} devices are no longer shared with you`,
        body: `Your access to ${one ? 'this device' : 'these devices'} ended because the owner ${verb} ${one ? 'it' : 'them'}:\n${list.map((d) => `- ${label(d)}`).join('\n')}\n`,
      });
    }
    return out;
  }

  async function enqueueAll(tx: Db, messages: OutboxMessage[]) {
    for (const m of messages) await enqueueMessage(tx, m);
  }

  /**
   * Unbinds up to 100 devices with one password check, in one transaction, and reports per id in
   * order: NOT_FOUND for a device the caller cannot see, FORBIDDEN for a shared one. An id given
   * twice is unbound once; its later entries repeat the outcome with revokedShares 0 (so sums
   * stay right). Every share ends; the devices stay provisioned for the next binding.
   */
  async function unbindDevices(caller: Caller | null, ids: unknown, password: unknown, meta: RequestMeta): Promise<UnbindOutcome[]> {
    const c = requireCaller(caller, 'DEVICES_WRITE');
    const list = arg('ids', unbindManyInput, ids);
    await deps.confirmPassword(c.userId, password, meta);
    const unique = [...new Set(list)];
    const now = clock();

    const done = await db.transaction(async (tx) => {
      const rows = await store.accessRows(tx, c.userId, now, unique.filter(isUuid), true);
      const rowOf = new Map(rows.map((r) => [r.device.id, r]));
      const outcomes = new Map<string, UnbindOutcome>();
      const mine: DeviceView[] = [];
      for (const id of unique) {
        try {
          mine.push(requireRight(rowOf.get(id), c.userId, 'OWNER'));
        } catch (error) {
          outcomes.set(id, { deviceId: id, ok: false, error: error as Error, revokedShares: 0 });
        }
      }
      const mineBindings = mine.map((d) => d.bindingId);
      const endedRows = await store.endBindings(tx, mineBindings, c.userId, 'unbind', now);
      const ended = new Set(endedRows.map((b) => b.id));
      const unbound = mine.filter((d) => ended.has(d.bindingId));
      const byBinding = new Map(unbound.map((d) => [d.bindingId, d]));
      const revoked = await store.revokeSharesOfBindings(tx, [...byBinding.keys()], now);
      // Shares that had already lapsed are closed too, but they ended before: not counted, not told.
      const endedShares = revoked.filter((s) => isActive(s, now)).map((share) => ({ share, device: byBinding.get(share.bindingId)! }));
      for (const d of mine) {
        const outcome: UnbindOutcome = ended.has(d.bindingId)
          ? { deviceId: d.id, ok: true, error: null, revokedShares: endedShares.filter((e) => e.device.id === d.id).length }
          : { deviceId: d.id, ok: false, error: CommonError.notFound('Device not found'), revokedShares: 0 };
        outcomes.set(d.id, outcome);
      }
      await store.insertAudit(
        tx,
        unbound.map((d) => ({
          actorId: c.userId,
          action: 'device.unbind',
          deviceId: d.id,
          at: now,
          details: { bindingId: d.bindingId, revokedShares: outcomes.get(d.id)!.revokedShares },
        })),
      );
      const afterHooks = await hooks.bindingsEnded(tx, unbound.map((d) => ({ deviceId: d.id, bindingId: d.bindingId, reason: 'unbind', next: null })), now);
      if (unbound.length) {
        const users = new Map((await store.usersByIds(tx, [c.userId, ...endedShares.map((e) => e.share.granteeId)])).map((u) => [u.id, u]));
        const owner = users.get(c.userId);
        const one = unbound.length === 1;
        // A device that a pending claim was waiting for went straight to its claimant: not free to bind.
        const claimed = unbound.filter((d) => afterHooks.handedToClaimant.has(d.id));
        const whatNext =
          claimed.length === 0
            ? 'A device can be bound again with the code on its label.\n'
            : claimed.length === unbound.length
              ? `${one ? 'It has' : 'They have'} gone to the person who claimed ${one ? 'it' : 'them'} with the code on the label, as the claim you were told of asked.\n`
              : `These went to the person who claimed them with the code on the label, as the claim you were told of asked:\n${claimed.map((d) => `- ${label(d)}`).join('\n')}\n` +
                'The others can be bound again with the code on their labels.\n';
        const ownerNotices: OutboxMessage[] = (owner ? contactsOf(owner) : []).map((contact) => ({
          ...contact,
          kind: 'device-unbound',
          subject: one ? `Your device ${unbound[0]!.name} was unbound` : `${unbound.length} devices were unbound from your account`,
          body:
            `${one ? 'This device was' : 'These devices were'} unbound from your Vigil account at ${now.toISOString()}:\n` +
            `${unbound.map((d) => `- ${label(d)}`).join('\n')}\n\n` +
            `Their shares have ended. ${whatNext}` +
            'If this was not you, change your password at once.\n',
        }));
        await enqueueAll(tx, [...ownerNotices, ...shareEndedNotices(endedShares, users, 'unbound')]);
      }
      return { outcomes, unbound, endedShares, afterHooks };
    });

    done.afterHooks.afterCommit();
    if (done.unbound.length) deps.onOutbox();
    for (const d of done.unbound) {
      publishAccess({ deviceId: d.id, userIds: [c.userId, ...done.endedShares.filter((e) => e.device.id === d.id).map((e) => e.share.granteeId)] });
    }
    await Promise.all(done.unbound.map((d) => sendUnbind(d.id)));
    const seen = new Set<string>();
    return list.map((id) => {
      const o = done.outcomes.get(id)!;
      if (seen.has(id)) return { ...o, revokedShares: 0 };
      seen.add(id);
      return o;
    });
  }

  return {
    /**
     * Binds a provisioned device to the caller with the code on its label. An unknown serial and a
     * wrong code give the same INVALID_VERIFICATION_CODE after the same argon2 work; past the limits
     * of BIND_LIMITS (per device, account, source; a delay per account and device), RATE_LIMITED. A device bound to someone else
     * gives DEVICE_ALREADY_BOUND (checked only after the code matched, so it reveals nothing to a
     * guesser); the caller's own device comes back unchanged (idempotent).
     */
    async bindDevice(caller: Caller | null, serial: unknown, verificationCode: unknown, name: unknown, meta: RequestMeta): Promise<DeviceView> {
      const c = requireCaller(caller, 'DEVICES_WRITE');
      const v = parseInput(bindInput, { serial, verificationCode, name });
      const device = await provePossession(c, v.serial, v.verificationCode, meta);

      const bindingName = v.name ?? defaultName(device);
      let created = false;
      let bound = false;
      for (let attempt = 0; attempt < 3 && !bound; attempt++) {
        const now = clock();
        const outcome = await db.transaction(async (tx) => {
          const inserted = await store.insertBinding(tx, { deviceId: device.id, ownerId: c.userId, name: bindingName, boundAt: now });
          if (inserted) {
            await store.insertAudit(tx, [{ actorId: c.userId, action: 'device.bind', deviceId: device.id, at: now, details: { bindingId: inserted.id } }]);
            return 'created' as const;
          }
          const open = await store.openBindingOf(tx, device.id);
          if (!open) return 'retry' as const; // the conflicting binding ended meanwhile
          return open.ownerId === c.userId ? ('mine' as const) : ('taken' as const);
        });
        if (outcome === 'taken') throw alreadyBoundElsewhere();
        created = outcome === 'created';
        bound = outcome !== 'retry';
      }
      if (!bound) throw alreadyBoundElsewhere();
      if (created) publishAccess({ deviceId: device.id, userIds: [c.userId] });
      const view = await viewById(c.userId, device.id);
      // Unbound again between our commit and this read: as if someone else had it.
      if (!view) throw alreadyBoundElsewhere();
      return view;
    },

    /** The label-code check of bindDevice with its limits, for claimDevice: the device proven to be in the caller's hands. */
    async checkLabelCode(caller: Caller | null, serial: unknown, verificationCode: unknown, meta: RequestMeta) {
      const c = requireCaller(caller, 'DEVICES_WRITE');
      const v = parseInput(bindInput.omit({ name: true }), { serial, verificationCode });
      return { caller: c, device: await provePossession(c, v.serial, v.verificationCode, meta) };
    },

    /** A page of the caller's devices, owned and shared (unexpired), oldest binding first. */
    async listDevices(caller: Caller | null, args: { first?: unknown; after?: unknown; filter?: unknown }, opts: { withTotal?: boolean } = {}): Promise<DeviceConnection> {
      const c = requireCaller(caller, 'DEVICES_READ');
      const v = parseInput(listInput, { first: args.first, after: args.after, filter: args.filter });
      const cursor = v.after ? decodeCursor(v.after) : null;
      const filter: store.ListFilter = { status: v.filter?.status, role: v.filter?.role, search: v.filter?.search || null };
      const now = clock();
      const { rows, total } = await store.listVisible(deps.prepared, c.userId, now, filter, cursor, v.first + 1, opts.withTotal ?? true);
      const edges = rows
        .slice(0, v.first)
        .map((r) => ({ cursor: encodeCursor({ boundAt: r.binding.boundAt, bindingId: r.binding.id }), node: viewOf(r, c.userId) }))
        .filter((e): e is DeviceEdge => e.node !== null);
      return {
        edges,
        pageInfo: { hasNextPage: rows.length > v.first, endCursor: edges.at(-1)?.cursor ?? null },
        countTotal: () => (total !== null ? Promise.resolve(total) : store.countVisible(deps.prepared, c.userId, now, filter)),
      };
    },

    /** The device, or null when it does not exist or the caller may not see it. */
    async device(caller: Caller | null, id: unknown): Promise<DeviceView | null> {
      const c = requireCaller(caller, 'DEVICES_READ');
      const deviceId = arg('id', idSchema, id);
      return isUuid(deviceId) ? viewById(c.userId, deviceId) : null;
    },

    /** Batch form of `device` for DataLoader: one statement, results in the order of `ids`. */
    async devicesByIds(caller: Caller | null, ids: readonly string[]): Promise<Array<DeviceView | null>> {
      const c = requireCaller(caller, 'DEVICES_READ');
      const rows = await store.accessRows(db, c.userId, clock(), ids.filter(isUuid));
      const byId = new Map(rows.map((r) => [r.device.id, viewOf(r, c.userId)]));
      return ids.map((id) => byId.get(id) ?? null);
    },

    /**
     * The access of devices for every caller at once, in the order of `ids` (null: no open binding):
     * one statement that any number of callers' live executions can share. Not a view: hand each
     * caller only its own view of it (`devicesFromSharedReads`).
     */
    async deviceAccessByIds(ids: readonly string[]): Promise<Array<DeviceAccess | null>> {
      const rows = await store.accessRowsForAll(db, clock(), ids.filter(isUuid));
      const byId = new Map<string, DeviceAccess>();
      for (const r of rows) {
        let access = byId.get(r.device.id);
        if (!access) byId.set(r.device.id, (access = { device: r.device, binding: r.binding, shareByGrantee: new Map() }));
        if (r.share) access.shareByGrantee.set(r.share.granteeId, r.share);
      }
      return ids.map((id) => byId.get(id) ?? null);
    },

    /** `devicesByIds` over shared access reads (`deviceAccessByIds`): the same rules, the caller's own role and share. */
    async devicesFromSharedReads(
      caller: Caller | null,
      ids: readonly string[],
      read: (ids: readonly string[]) => Promise<ReadonlyArray<DeviceAccess | null | Error>>,
    ): Promise<Array<DeviceView | null>> {
      const c = requireCaller(caller, 'DEVICES_READ');
      const accesses = await read(ids);
      return accesses.map((a) => {
        if (a instanceof Error) throw a;
        return a ? viewOf({ device: a.device, binding: a.binding, share: a.shareByGrantee.get(c.userId) ?? null }, c.userId) : null;
      });
    },

    /** Device.shares for many devices in one statement: an owner sees every open share, a grantee only its own. */
    async sharesOfDevices(caller: Caller | null, devices: readonly DeviceView[]): Promise<ShareView[][]> {
      const c = requireCaller(caller, 'DEVICES_READ');
      const owned = devices.filter((d) => d.role === 'OWNER').map((d) => d.bindingId);
      const shared = devices.filter((d) => d.role === 'SHARED').map((d) => d.bindingId);
      const rows = await store.sharesOf(deps.prepared, c.userId, clock(), owned, shared);
      return devices.map((d) =>
        rows
          .filter((r) => r.share.bindingId === d.bindingId && (d.role === 'OWNER' || r.share.granteeId === c.userId))
          .map((r) => shareView(r.share, r.displayName, d)),
      );
    },

    /** Renames the device for everyone who sees it: the owner, or a grantee with CONFIGURE. */
    async renameDevice(caller: Caller | null, id: unknown, name: unknown): Promise<DeviceView> {
      const c = requireCaller(caller, 'DEVICES_WRITE');
      const deviceId = arg('id', idSchema, id);
      const newName = arg('name', nameSchema, name);
      if (!isUuid(deviceId)) throw CommonError.notFound('Device not found');
      const now = clock();
      const view = await db.transaction(async (tx) => {
        const [row] = await store.accessRows(tx, c.userId, now, [deviceId], true);
        const view = requireRight(row, c.userId, 'CONFIGURE');
        await store.renameBinding(tx, view.bindingId, newName);
        await store.insertAudit(tx, [{ actorId: c.userId, action: 'device.rename', deviceId, at: now, details: { bindingId: view.bindingId, name: newName } }]);
        return view;
      });
      return { ...view, name: newName };
    },

    /**
     * Shares the caller's device with another account, found by email or phone. Owner only.
     * Granting again to the same person updates permissions and expiry instead of duplicating.
     */
    async grantShare(caller: Caller | null, deviceId: unknown, grantee: unknown, permissions: unknown, expiresAt: unknown): Promise<ShareView> {
      const c = requireCaller(caller, 'SHARES_WRITE');
      const id = arg('deviceId', idSchema, deviceId);
      const v = parseInput(shareInput, { grantee, permissions, expiresAt: expiresAt ?? null });
      const now = clock();
      if (v.expiresAt && v.expiresAt <= now) throw CommonError.badInput('expiresAt: must be in the future');
      if (!isUuid(id)) throw CommonError.notFound('Device not found');
      const login: Login = v.grantee;

      const result = await db.transaction(async (tx) => {
        const [row] = await store.accessRows(tx, c.userId, now, [id], true);
        const view = requireRight(row, c.userId, 'OWNER');
        const wait = await unknownGrantee.blockedFor(c.userId);
        if (wait) throw CommonError.rateLimited(wait);
        const target = await store.findUserByLogin(tx, login);
        if (!target) {
          await unknownGrantee.consume(c.userId);
          throw CommonError.notFound('No such account');
        }
        if (target.id === c.userId) throw CommonError.badInput('grantee: you cannot share a device with yourself');
        const { share, created } = await store.upsertShare(tx, {
          bindingId: view.bindingId,
          deviceId: id,
          granteeId: target.id,
          inviteLogin: login.value,
          permissions: normalizePermissions(v.permissions),
          expiresAt: v.expiresAt ?? null,
          createdAt: now,
        });
        if (created && (await store.countOpenShares(tx, view.bindingId)) > MAX_SHARES_PER_DEVICE) {
          throw CommonError.badInput(`A device can be shared with at most ${MAX_SHARES_PER_DEVICE} accounts`);
        }
        await store.insertAudit(tx, [
          {
            actorId: c.userId,
            action: created ? 'share.grant' : 'share.update',
            deviceId: id,
            at: now,
            details: { shareId: share.id, granteeId: target.id, permissions: share.permissions, expiresAt: share.expiresAt?.toISOString() ?? null },
          },
        ]);
        return shareView(share, target.displayName, view);
      });
      publishAccess({ deviceId: id, userIds: [result.grantee.id] });
      return result;
    },

    /** Ends a share: by the device's owner, or by the grantee to leave. Anyone else gets NOT_FOUND. */
    async revokeShare(caller: Caller | null, shareId: unknown): Promise<boolean> {
      const c = requireCaller(caller, 'SHARES_WRITE');
      const id = arg('id', idSchema, shareId);
      if (!isUuid(id)) throw CommonError.notFound('Share not found');
      const now = clock();
      const ended = await db.transaction(async (tx) => {
        const row = await store.lockOpenShare(tx, id);
        if (!row || (row.binding.ownerId !== c.userId && row.share.granteeId !== c.userId)) throw CommonError.notFound('Share not found');
        await store.revokeShareById(tx, id, now);
        const by = row.binding.ownerId === c.userId ? 'owner' : 'grantee';
        await store.insertAudit(tx, [
          { actorId: c.userId, action: 'share.revoke', deviceId: row.share.deviceId, at: now, details: { shareId: id, granteeId: row.share.granteeId, by } },
        ]);
        return row.share;
      });
      publishAccess({ deviceId: ended.deviceId, userIds: [ended.granteeId] });
      return true;
    },

    /** Unbinds one device (owner only, password step-up). Failures are thrown, not reported. */
    async unbindDevice(caller: Caller | null, id: unknown, password: unknown, meta: RequestMeta): Promise<UnbindOutcome> {
      const [result] = await unbindDevices(caller, [arg('id', idSchema, id)], password, meta);
      if (result!.error) throw result!.error;
      return result!;
    },

    unbindDevices,

    /**
     * Hands the caller's device to another account (email or phone) in one transaction, without the
     * label code: the binding ends, every share ends, the new owner's binding starts now (so they
     * never see older alarms). Owner only, password step-up. Both accounts are told.
     */
    async transferDevice(caller: Caller | null, id: unknown, to: unknown, password: unknown, meta: RequestMeta): Promise<boolean> {
      const c = requireCaller(caller, 'DEVICES_WRITE');
      const deviceId = arg('id', idSchema, id);
      const login = arg('to', loginSchema, to);
      await deps.confirmPassword(c.userId, password, meta);
      if (!isUuid(deviceId)) throw CommonError.notFound('Device not found');
      const now = clock();

      const done = await db.transaction(async (tx) => {
        const [row] = await store.accessRows(tx, c.userId, now, [deviceId], true);
        const view = requireRight(row, c.userId, 'OWNER');
        // Looked up only once the caller is known to own the device: no account probing for others.
        const target = await store.findUserByLogin(tx, login);
        if (!target) throw CommonError.notFound('No such account');
        if (target.id === c.userId) throw CommonError.badInput('to: the device is already yours');
        const [ended] = await store.endBindings(tx, [view.bindingId], c.userId, 'transfer', now);
        if (!ended) throw CommonError.notFound('Device not found');
        const revoked = await store.revokeSharesOfBindings(tx, [view.bindingId], now);
        const endedShares = revoked.filter((s) => isActive(s, now)).map((share) => ({ share, device: view }));
        const next = await store.insertBinding(tx, { deviceId, ownerId: target.id, name: defaultName(view), boundAt: now });
        // Cannot happen while we hold the binding's lock; kept so a bug cannot leave two owners.
        if (!next) throw new DeviceError('ALREADY_BOUND', 'The device was bound meanwhile');
        await store.insertAudit(tx, [
          {
            actorId: c.userId,
            action: 'device.transfer',
            deviceId,
            at: now,
            details: { fromBindingId: view.bindingId, toBindingId: next.id, toUserId: target.id, revokedShares: endedShares.length },
          },
        ]);
        const users = new Map((await store.usersByIds(tx, [c.userId, ...endedShares.map((e) => e.share.granteeId)])).map((u) => [u.id, u]));
        users.set(target.id, target);
        const from = users.get(c.userId);
        await enqueueAll(tx, [
          ...(from ? contactsOf(from) : []).map((contact) => ({
            ...contact,
            kind: 'device-transferred-out',
            subject: `Your device ${view.name} was transferred`,
            body:
              `The device ${label(view)} was transferred from your Vigil account to ${login.value} at ${now.toISOString()}.\n` +
              'Its shares have ended.\nIf this was not you, change your password at once.\n',
          })),
          ...contactsOf(target).map((contact) => ({
            ...contact,
            kind: 'device-transferred-in',
            subject: 'A device was transferred to your Vigil account',
            body: `The device ${view.serial}${view.model ? ` (${view.model})` : ''} was transferred to your Vigil account at ${now.toISOString()}. It is now in your device list.\n`,
          })),
          ...shareEndedNotices(endedShares, users, 'transferred'),
        ]);
        const afterHooks = await hooks.bindingsEnded(tx, [{ deviceId, bindingId: view.bindingId, reason: 'transfer', next: { bindingId: next.id, ownerId: target.id } }], now);
        return { targetId: target.id, endedShares, afterHooks };
      });

      done.afterHooks.afterCommit();
      deps.onOutbox();
      publishAccess({ deviceId, userIds: [c.userId, done.targetId, ...done.endedShares.map((e) => e.share.granteeId)] });
      await sendUnbind(deviceId);
      return true;
    },
  };
}

export type DeviceService = ReturnType<typeof createDeviceService>;
