import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';

export interface Limiter {
  /** Spends one point for `key`; returns the seconds to wait when the budget is spent, else 0. */
  consume(key: string, points?: number): Promise<number>;
  /** Seconds to wait if the budget for `key` is already spent, without spending. */
  blockedFor(key: string): Promise<number>;
  /** Forgets `key` (e.g. after a successful login). */
  reset(key: string): Promise<void>;
  /** Gives back points spent by `consume` (an attempt charged up front that turned out fine). */
  refund(key: string, points?: number): Promise<void>;
}

/**
 * Progressive delay for consecutive failures of one key (rate-limiter-flexible's free/block/counter
 * scheme of ExpressBruteFlexible, without the Express middleware): `free` attempts pass at once;
 * after them, each attempt must wait `minWaitS`, then twice that, and so on up to `maxWaitS`
 * since the previous one. Nothing ever locks: the key only slows down. The counters live
 * `lifetimeS` from the first attempt, or until `reset` (a success).
 */
export interface Backoff {
  /**
   * Charges one attempt up front (so parallel attempts cannot slip past): returns 0 when it may
   * proceed, else the seconds until the next attempt is allowed (the attempt was not made).
   */
  attempt(key: string): Promise<number>;
  /** Seconds until `key` may try again, without charging. */
  waitFor(key: string): Promise<number>;
  /** Forgets `key`'s failures (a success). */
  reset(key: string): Promise<void>;
}

export interface BackoffOptions {
  free: number;
  minWaitS: number;
  maxWaitS: number;
  lifetimeS: number;
}

export interface LimiterFactory {
  /** A fixed-window budget of `points` per `durationS`. */
  create(name: string, points: number, durationS: number): Limiter;
  backoff(name: string, options: BackoffOptions): Backoff;
}

const secondsOf = (ms: number) => Math.max(1, Math.ceil(ms / 1000));
/** rate-limiter-flexible's memory store expires keys with setTimeout, whose 32-bit delay ends at 24.8 days. */
export const MAX_WINDOW_S = 20 * 86_400;

/** The delay before attempt number `free + n` (n ≥ 1): doubling from `minWaitS`, capped at `maxWaitS`. */
export function backoffDelayS(n: number, options: Pick<BackoffOptions, 'minWaitS' | 'maxWaitS'>): number {
  return Math.min(options.maxWaitS, options.minWaitS * 2 ** Math.max(0, Math.min(n - 1, 30)));
}

/**
 * Fixed-window limiters, in Redis when one is configured (shared by every gateway node), else in
 * this process. `prefix` keeps deployments (and test runs) sharing one Redis apart. While Redis is
 * unreachable, each node falls back to its own memory (rate-limiter-flexible's insurance limiter).
 */
export function limiterFactory(redis: Redis | undefined, prefix: string): LimiterFactory {
  function store(keyPrefix: string, points: number, duration: number): RateLimiterAbstract {
    if (duration > MAX_WINDOW_S) throw new Error(`${keyPrefix}: a limiter window over ${MAX_WINDOW_S} s would expire at once in memory`);
    const opts = { keyPrefix, points, duration };
    return redis ? new RateLimiterRedis({ ...opts, storeClient: redis, insuranceLimiter: new RateLimiterMemory(opts) }) : new RateLimiterMemory(opts);
  }

  return {
    create(name, points, durationS) {
      const impl = store(`${prefix}rl:${name}`, points, durationS);
      return {
        async consume(key, n = 1) {
          try {
            await impl.consume(key, n);
            return 0;
          } catch (e) {
            if (e instanceof RateLimiterRes) return secondsOf(e.msBeforeNext);
            throw e;
          }
        },
        async blockedFor(key) {
          const res = await impl.get(key);
          if (res && res.consumedPoints >= points) return secondsOf(res.msBeforeNext);
          return 0;
        },
        async reset(key) {
          await impl.delete(key);
        },
        async refund(key, n = 1) {
          await impl.reward(key, n);
        },
      };
    },

    backoff(name, options) {
      const { free, lifetimeS } = options;
      // `free` attempts per lifetime; then one attempt per block, whose length grows with the count.
      const freeLimiter = store(`${prefix}rl:${name}:free`, free, lifetimeS);
      const blockLimiter = store(`${prefix}rl:${name}:block`, 1, Math.min(lifetimeS, options.maxWaitS));
      const counter = store(`${prefix}rl:${name}:count`, 1, lifetimeS);
      return {
        async attempt(key) {
          try {
            await freeLimiter.consume(key);
            return 0;
          } catch (e) {
            if (!(e instanceof RateLimiterRes)) throw e;
          }
          const [blocked, count] = await Promise.all([blockLimiter.get(key), counter.get(key)]);
          if (blocked && blocked.consumedPoints >= 1) return secondsOf(blocked.msBeforeNext);
          const delayS = backoffDelayS((count?.consumedPoints ?? 0) + 1, options);
          // The first caller to take the block wins the attempt; a parallel one sees the block.
          const taken = await blockLimiter.penalty(key, 1, { customDuration: delayS });
          if (taken.consumedPoints !== 1) return secondsOf(taken.msBeforeNext);
          await counter.penalty(key, 1);
          return 0;
        },
        async waitFor(key) {
          const [freeRes, blocked] = await Promise.all([freeLimiter.get(key), blockLimiter.get(key)]);
          if (!freeRes || freeRes.consumedPoints < free) return 0;
          return blocked && blocked.consumedPoints >= 1 ? secondsOf(blocked.msBeforeNext) : 0;
        },
        async reset(key) {
          await Promise.all([freeLimiter.delete(key), blockLimiter.delete(key), counter.delete(key)]);
        },
      };
    },
  };
}
