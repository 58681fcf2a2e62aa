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

export interface LimiterFactory {
  create(name: string, points: number, durationS: number): Limiter;
}

/**
 * Fixed-window limiters, in Redis when one is configured (shared by every gateway node), else in
 * this process. `prefix` keeps deployments (and test runs) sharing one Redis apart.
 */
export function limiterFactory(redis: Redis | undefined, prefix: string): LimiterFactory {
  return {
    create(name, points, durationS) {
      const opts = { keyPrefix: `${prefix}rl:${name}`, points, duration: durationS };
      const impl: RateLimiterAbstract = redis
        ? new RateLimiterRedis({ ...opts, storeClient: redis, insuranceLimiter: new RateLimiterMemory(opts) })
        : new RateLimiterMemory(opts);
      return {
        async consume(key, n = 1) {
          try {
            await impl.consume(key, n);
            return 0;
          } catch (e) {
            if (e instanceof RateLimiterRes) return Math.max(1, Math.ceil(e.msBeforeNext / 1000));
            throw e;
          }
        },
        async blockedFor(key) {
          const res = await impl.get(key);
          if (res && res.consumedPoints >= points) return Math.max(1, Math.ceil(res.msBeforeNext / 1000));
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
  };
}
