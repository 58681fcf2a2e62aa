import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { backoffDelayS, limiterFactory, type LimiterFactory } from '../src/lib/rate-limit';
import { hasRedis } from './helpers/harness';

const options = { free: 3, minWaitS: 30, maxWaitS: 900, lifetimeS: 3600 };

test('backoffDelayS doubles from the first wait up to the cap', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 40].map((n) => backoffDelayS(n, options)), [30, 60, 120, 240, 480, 900, 900, 900]);
});

function backoffCases(name: string, factories: () => [LimiterFactory, LimiterFactory], shared: boolean) {
  describe(name, () => {
    test('lets the free attempts through, then one per wait, and forgets them on reset', async () => {
      const [a] = factories();
      const b = a.backoff('t', options);
      for (let i = 0; i < 3; i++) assert.equal(await b.attempt('k'), 0);
      assert.equal(await b.waitFor('k'), 0);
      assert.equal(await b.attempt('k'), 0, 'the first attempt past the free ones is made');
      const wait = await b.attempt('k');
      assert.ok(wait > 25 && wait <= 30, `wait ${wait}`);
      assert.equal(await b.waitFor('k'), wait);
      assert.equal(await b.attempt('other'), 0, 'keys are apart');
      await b.reset('k');
      assert.equal(await b.attempt('k'), 0);
    });

    // Memory is per node: only a shared store (Redis) is tested for sharing.
    if (shared) test('shares the count between instances on one store (gateway nodes)', async () => {
      const [a, c] = factories();
      const one = a.backoff('shared', options);
      const two = c.backoff('shared', options);
      for (let i = 0; i < 4; i++) assert.equal(await (i % 2 ? one : two).attempt('k'), 0);
      assert.ok((await two.attempt('k')) > 0);
      assert.ok((await one.attempt('k')) > 0);
    });

    test('gives exactly one of many parallel attempts past the free ones', async () => {
      const [a] = factories();
      const b = a.backoff('parallel', options);
      const waits = await Promise.all(Array.from({ length: 20 }, () => b.attempt('k')));
      assert.equal(waits.filter((w) => w === 0).length, 4, JSON.stringify(waits));
    });
  });
}

backoffCases('progressive delay in memory', () => {
  const f = limiterFactory(undefined, `mem-${randomBytes(4).toString('hex')}:`);
  return [f, f];
}, false);

describe('progressive delay in Redis', { skip: hasRedis ? false : 'skipped: no Redis' }, () => {
  const clients: Redis[] = [];
  after(async () => {
    await Promise.all(clients.map((c) => c.quit()));
  });
  backoffCases('on one Redis', () => {
    const prefix = `vigil-test:${randomBytes(4).toString('hex')}:`;
    const make = () => {
      const r = new Redis(process.env.TEST_REDIS_URL!, { enableOfflineQueue: true });
      clients.push(r);
      return limiterFactory(r, prefix);
    };
    return [make(), make()];
  }, true);
});

test('refuses limiter windows the in-memory store would expire at once, in the factory and in the configuration', async () => {
  const { loadConfig, ConfigError } = await import('../src/config');
  const f = limiterFactory(undefined, 'long:');
  // setTimeout's 32-bit delay: a 30-day key would expire after 1 ms, so the limit would never hold.
  assert.throws(() => f.create('long', 10, 30 * 86_400), /would expire at once/);
  assert.doesNotThrow(() => f.create('ok', 10, 20 * 86_400));
  assert.throws(() => loadConfig({ LOGIN_ACCOUNT_WINDOW_S: String(30 * 86_400) }), (e: unknown) => e instanceof ConfigError && /LOGIN_ACCOUNT_WINDOW_S/.test(e.message));
});
