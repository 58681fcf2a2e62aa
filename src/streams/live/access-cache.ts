import type { Logger } from 'pino';
import type { EventBus } from '../bus/event-bus';

/** One binding a user may receive alarms and status of: owned, or shared with ALARMS (until `expiresAt`). */
export interface AudienceEntry {
  bindingId: string;
  deviceId: string;
  owner: boolean;
  expiresAt: Date | null;
}

/** What one user may see, as loaded at `loadedAt`. */
export interface UserAccess {
  /** Visible open bindings by id. */
  bindings: ReadonlyMap<string, AudienceEntry>;
  /** The open binding of each visible device (a device has at most one open binding). */
  devices: ReadonlyMap<string, AudienceEntry>;
  loadedAt: number;
  /** When it must be loaded again: `ttlMs` after loading, less up to a quarter (spreads the reloads). */
  expiresAt: number;
}

export interface AccessCacheOptions {
  /** One statement: the user's owned open bindings and unrevoked ALARMS shares, with expiries. */
  load(userId: string): Promise<AudienceEntry[]>;
  bus: EventBus;
  log: Logger;
  clock: () => Date;
  /** An entry is loaded again at the latest this long after it was loaded (default 30 s; 75-100 % of it, at random): bounds the damage of a lost invalidation. */
  ttlMs?: number;
  /** Users kept at most (default 50 000); the oldest are dropped first. */
  maxUsers?: number;
}

const active = (e: AudienceEntry, now: Date) => !e.expiresAt || e.expiresAt.getTime() > now.getTime();

/**
 * The node's per-user access cache for live streams: which devices and bindings a user may
 * receive alarms and status of (owner, or an unrevoked share with ALARMS). Checked for every event
 * at delivery, without a query per event and subscriber:
 * - built by one query per user, shared by all of that user's subscriptions on this node;
 * - dropped for the users a `device.access` event lists (bind, unbind, transfer, share granted or
 *   ended), on every node through the bus, so the next event reloads it;
 * - loaded again after `ttlMs`, so a lost invalidation (Redis down) is bounded in time;
 * - share expiry is checked against the clock at each delivery, so it needs no event.
 * An invalidation that lands while a load is running makes the load run again.
 */
export function createAccessCache(opts: AccessCacheOptions) {
  const ttlMs = opts.ttlMs ?? 30_000;
  const maxUsers = opts.maxUsers ?? 50_000;
  const log = opts.log.child({ component: 'access-cache' });
  const entries = new Map<string, UserAccess>();
  const loading = new Map<string, Promise<UserAccess>>();
  const generation = new Map<string, number>();
  let unlisten: (() => Promise<void>) | undefined;

  const genOf = (userId: string) => generation.get(userId) ?? 0;

  function invalidate(userIds: readonly string[]) {
    for (const id of userIds) {
      entries.delete(id);
      loading.delete(id);
      generation.set(id, genOf(id) + 1);
    }
    // Generations only matter while a load is running; keep the map from growing without end.
    if (generation.size > maxUsers) generation.clear();
  }

  async function loadFresh(userId: string): Promise<UserAccess> {
    for (let attempt = 0; ; attempt++) {
      const gen = genOf(userId);
      const rows = await opts.load(userId);
      // Invalidated while loading: the rows may predate the change. Read again (a few times at most).
      if (genOf(userId) !== gen && attempt < 3) continue;
      const loadedAt = opts.clock().getTime();
      const access: UserAccess = {
        bindings: new Map(rows.map((r) => [r.bindingId, r])),
        devices: new Map(rows.map((r) => [r.deviceId, r])),
        loadedAt,
        expiresAt: loadedAt + ttlMs * (0.75 + 0.25 * Math.random()),
      };
      if (genOf(userId) === gen) {
        entries.delete(userId);
        entries.set(userId, access);
        if (entries.size > maxUsers) entries.delete(entries.keys().next().value!);
      }
      return access;
    }
  }

  /** The user's access, from the cache when fresh; concurrent callers share one load. */
  function get(userId: string): Promise<UserAccess> | UserAccess {
    const cached = entries.get(userId);
    if (cached && opts.clock().getTime() < cached.expiresAt) return cached;
    let pending = loading.get(userId);
    if (!pending) {
      pending = loadFresh(userId).finally(() => {
        if (loading.get(userId) === pending) loading.delete(userId);
      });
      loading.set(userId, pending);
    }
    return pending;
  }

  return {
    get,
    invalidate,

    /** True when the user may receive this binding's alarms now (its own binding, not a former or later one). */
    async canSeeBinding(userId: string, bindingId: string): Promise<boolean> {
      const e = (await get(userId)).bindings.get(bindingId);
      return !!e && active(e, opts.clock());
    },

    /** True when the user owns the device or holds an unexpired share with ALARMS on it now. */
    async canSeeDevice(userId: string, deviceId: string): Promise<boolean> {
      const e = (await get(userId)).devices.get(deviceId);
      return !!e && active(e, opts.clock());
    },

    /** Listens for `device.access` on the bus. */
    start(): void {
      unlisten ??= opts.bus.listen('device.access', (p) => invalidate(p.userIds), (fields, message) => log.warn(fields, message));
    },

    async stop(): Promise<void> {
      await unlisten?.();
      unlisten = undefined;
    },

    size: () => entries.size,
  };
}

export type AccessCache = ReturnType<typeof createAccessCache>;
