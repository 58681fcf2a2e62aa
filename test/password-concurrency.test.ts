import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { after, test } from 'node:test';
import { hashingNow, hashPassword, setHashConcurrency, verifyPassword } from '../src/accounts/password';
import { ConfigError, loadConfig } from '../src/config';

after(() => setHashConcurrency(0));

test('ARGON2_CONCURRENCY bounds the hashes computed at once; the others wait their turn and all finish', async () => {
  const hash = await hashPassword('Violet-Harbor-Quartz-71');
  setHashConcurrency(1);
  const checks = [verifyPassword(hash, 'Violet-Harbor-Quartz-71'), verifyPassword(hash, 'wrong'), verifyPassword(null, 'Violet-Harbor-Quartz-71')];
  // The first takes the slot at once; the others queue (the dummy-hash one queues after awaiting its hash).
  assert.equal(hashingNow().running, 1);
  assert.deepEqual(await Promise.all(checks), [true, false, false]);
  assert.deepEqual(hashingNow(), { running: 0, waiting: 0 });
});

test('raising the bound lets waiting hashes start; 0 means no bound', async () => {
  const hash = await hashPassword('Violet-Harbor-Quartz-71');
  setHashConcurrency(1);
  const checks = [1, 2, 3].map(() => verifyPassword(hash, 'Violet-Harbor-Quartz-71'));
  assert.deepEqual(hashingNow(), { running: 1, waiting: 2 });
  setHashConcurrency(0);
  assert.deepEqual(hashingNow(), { running: 3, waiting: 0 });
  assert.deepEqual(await Promise.all(checks), [true, true, true]);
  assert.deepEqual(hashingNow(), { running: 0, waiting: 0 });
});

test('a failing hash frees its slot', async () => {
  setHashConcurrency(1);
  assert.equal(await verifyPassword('$argon2id$v=19$m=19456,t=2,p=1$not-base64$!!', 'x'), false);
  assert.deepEqual(hashingNow(), { running: 0, waiting: 0 });
  assert.equal(await verifyPassword(await hashPassword('Copper-Lantern-Meadow-38'), 'Copper-Lantern-Meadow-38'), true);
});

test('ARGON2_CONCURRENCY and GRAPHQL_EXECUTOR are checked at start-up', () => {
  assert.equal(loadConfig({}).argon2Concurrency, availableParallelism());
  assert.equal(loadConfig({ ARGON2_CONCURRENCY: '0' }).argon2Concurrency, 0);
  assert.equal(loadConfig({}).graphqlExecutor, 'jit');
  assert.equal(loadConfig({ ARGON2_CONCURRENCY: '2', GRAPHQL_EXECUTOR: 'graphql-js' }).argon2Concurrency, 2);
  assert.throws(() => loadConfig({ ARGON2_CONCURRENCY: '-1' }), (e: unknown) => e instanceof ConfigError && /ARGON2_CONCURRENCY/.test(e.message));
  assert.throws(() => loadConfig({ GRAPHQL_EXECUTOR: 'fast' }), (e: unknown) => e instanceof ConfigError && /GRAPHQL_EXECUTOR/.test(e.message));
});
