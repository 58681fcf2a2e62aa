import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { LoginDocument, RegisterDocument } from './generated/graphql';
import { expectCode, expectData, startApp, STRONG_PASSWORD, uniqueEmail } from './helpers/harness';
import { configureHashing, hashingNow, hashPassword, verifyPassword } from '../src/accounts/password';
import { ConfigError, defaultArgon2Concurrency, loadConfig } from '../src/config';
import { hashLabelCode, verifyLabelCode } from '../src/devices/catalog/provisioning';
import { withHashSlot } from '../src/lib/argon2-hasher';
import { CommonError } from '../src/lib/domain-error';

const unbounded = { concurrency: 0, maxWaiting: 64 };
after(() => configureHashing(unbounded));

/** Holds one hash slot until `release()` is called. */
function holdSlot() {
  let release!: () => void;
  const held = withHashSlot(() => new Promise<void>((resolve) => (release = resolve)));
  return { release: () => (release(), held) };
}

const isRefusal = (e: unknown) => e instanceof CommonError && e.code === 'RATE_LIMITED' && (e.retryAfterSeconds ?? 0) >= 1;

test('ARGON2_CONCURRENCY bounds the hashes computed at once; the others wait their turn and all finish', async () => {
  const hash = await hashPassword('Violet-Harbor-Quartz-71');
  configureHashing({ concurrency: 1, maxWaiting: 64 });
  const checks = [verifyPassword(hash, 'Violet-Harbor-Quartz-71'), verifyPassword(hash, 'wrong'), verifyPassword(null, 'Violet-Harbor-Quartz-71')];
  // The first takes the slot at once; the others queue (the dummy-hash one queues after awaiting its hash).
  assert.equal(hashingNow().running, 1);
  assert.deepEqual(await Promise.all(checks), [true, false, false]);
  assert.deepEqual(hashingNow(), { running: 0, waiting: 0 });
});

test('never runs more than N hashes at once, however many are asked for', async () => {
  const hash = await hashPassword('Violet-Harbor-Quartz-71');
  configureHashing({ concurrency: 2, maxWaiting: 64 });
  let most = 0;
  const checks = Array.from({ length: 7 }, (_, i) =>
    verifyPassword(hash, i % 2 ? 'wrong' : 'Violet-Harbor-Quartz-71').then((ok) => {
      most = Math.max(most, hashingNow().running);
      return ok;
    }),
  );
  most = Math.max(most, hashingNow().running);
  assert.deepEqual(hashingNow(), { running: 2, waiting: 5 });
  assert.deepEqual(await Promise.all(checks), [true, false, true, false, true, false, true]);
  assert.equal(most, 2);
  assert.deepEqual(hashingNow(), { running: 0, waiting: 0 });
});

test('refuses a hash with RATE_LIMITED at once when the queue is full, and serves the queued ones', async () => {
  const hash = await hashPassword('Violet-Harbor-Quartz-71');
  configureHashing({ concurrency: 1, maxWaiting: 2 });
  const slot = holdSlot();
  const queued = [verifyPassword(hash, 'Violet-Harbor-Quartz-71'), hashPassword('Copper-Lantern-Meadow-38')];
  assert.deepEqual(hashingNow(), { running: 1, waiting: 2 });
  await assert.rejects(verifyPassword(hash, 'Violet-Harbor-Quartz-71'), isRefusal);
  await assert.rejects(hashPassword('Copper-Lantern-Meadow-38'), isRefusal);
  await assert.rejects(verifyPassword(null, 'Violet-Harbor-Quartz-71'), isRefusal);
  assert.deepEqual(hashingNow(), { running: 1, waiting: 2 });
  await slot.release();
  const [ok, made] = await Promise.all(queued);
  assert.equal(ok, true);
  assert.equal(await verifyPassword(made as string, 'Copper-Lantern-Meadow-38'), true);
  assert.deepEqual(hashingNow(), { running: 0, waiting: 0 });
});

test('label codes go through the same bound as passwords', async () => {
  const codeHash = await hashLabelCode('QWERTY');
  configureHashing({ concurrency: 1, maxWaiting: 0 });
  const slot = holdSlot();
  await assert.rejects(hashLabelCode('ASDFGH'), isRefusal);
  await assert.rejects(verifyLabelCode(codeHash, 'QWERTY'), isRefusal);
  await assert.rejects(verifyLabelCode(null, 'QWERTY'), isRefusal);
  await slot.release();
  configureHashing({ concurrency: 1, maxWaiting: 1 });
  const again = holdSlot();
  const check = verifyLabelCode(codeHash, 'QWERTY');
  assert.deepEqual(hashingNow(), { running: 1, waiting: 1 });
  await again.release();
  assert.equal(await check, true);
});

test('nothing in the server calls argon2 except the one bounded hasher', async () => {
  const src = path.resolve(import.meta.dirname, '../src');
  const files = (await readdir(src, { recursive: true })).filter((f) => /\.[cm]?[jt]sx?$/.test(f));
  const importers = [];
  for (const f of files) if (/from ['"]argon2['"]|require\(['"]argon2['"]\)|import\(['"]argon2['"]\)/.test(await readFile(path.join(src, f), 'utf8'))) importers.push(f);
  assert.deepEqual(importers.sort(), [path.join('lib', 'argon2-hasher.ts'), path.join('lib', 'argon2-worker.mjs')]);
});

test('a failing hash frees its slot', async () => {
  configureHashing({ concurrency: 1, maxWaiting: 64 });
  assert.equal(await verifyPassword('$argon2id$v=19$m=19456,t=2,p=1$not-base64$!!', 'x'), false);
  assert.deepEqual(hashingNow(), { running: 0, waiting: 0 });
  assert.equal(await verifyPassword(await hashPassword('Copper-Lantern-Meadow-38'), 'Copper-Lantern-Meadow-38'), true);
});

test('with ARGON2_CONCURRENCY=0 every hash starts at once (libuv pool decides)', async () => {
  const hash = await hashPassword('Violet-Harbor-Quartz-71');
  configureHashing({ concurrency: 0, maxWaiting: 0 });
  const checks = [1, 2, 3].map(() => verifyPassword(hash, 'Violet-Harbor-Quartz-71'));
  assert.deepEqual(hashingNow(), { running: 3, waiting: 0 });
  assert.deepEqual(await Promise.all(checks), [true, true, true]);
  assert.deepEqual(hashingNow(), { running: 0, waiting: 0 });
});

test('a hash computed in the worker verifies on the main thread and back', async () => {
  configureHashing({ concurrency: 1, maxWaiting: 64 });
  const inWorker = await hashPassword('Copper-Lantern-Meadow-38');
  configureHashing(unbounded);
  assert.equal(await verifyPassword(inWorker, 'Copper-Lantern-Meadow-38'), true);
  const onMain = await hashPassword('Copper-Lantern-Meadow-38');
  configureHashing({ concurrency: 1, maxWaiting: 64 });
  assert.equal(await verifyPassword(onMain, 'Copper-Lantern-Meadow-38'), true);
  assert.equal(await verifyPassword(onMain, 'Violet-Harbor-Quartz-71'), false);
});

test('a process waits for its hashes in the workers, and exits by itself once they are done', async () => {
  const hasher = new URL('../src/lib/argon2-hasher.ts', import.meta.url).href;
  const script = `
    const { configureHashing, argon2Hash, argon2Verify } = await import(${JSON.stringify(hasher)});
    configureHashing({ concurrency: 1, maxWaiting: 8 });
    console.log(await argon2Verify(await argon2Hash('Copper-Lantern-Meadow-38'), 'Copper-Lantern-Meadow-38'));`;
  // The timeout only bounds a hung child; it fails the test rather than measuring anything.
  const dir = await mkdtemp(path.join(tmpdir(), 'vigil-hasher-'));
  await writeFile(path.join(dir, 'hash-once.mts'), script);
  const child = spawnSync(process.execPath, ['--import', 'tsx', path.join(dir, 'hash-once.mts')], { encoding: 'utf8', timeout: 60_000 });
  await rm(dir, { recursive: true, force: true });
  assert.equal(child.signal, null, 'the child was still running: an idle worker kept it alive');
  assert.equal(child.stdout.trim(), 'true', `the child exited before its hashes were answered: ${child.stderr}`);
  assert.equal(child.status, 0);
});

test('the default bound is one per spare core, below libuv pool size', () => {
  // cores -> bound with libuv's default pool of 4 threads
  assert.deepEqual([1, 2, 4, 16].map((cores) => defaultArgon2Concurrency(cores, 4)), [1, 1, 3, 3]);
  assert.equal(defaultArgon2Concurrency(16, 16), 15);
  assert.equal(defaultArgon2Concurrency(16, 1), 1);
  assert.equal(loadConfig({}).argon2Concurrency, defaultArgon2Concurrency(availableParallelism(), 4));
  assert.equal(loadConfig({ UV_THREADPOOL_SIZE: '64' }).argon2Concurrency, Math.max(1, availableParallelism() - 1));
  assert.equal(loadConfig({ UV_THREADPOOL_SIZE: 'lots' }).argon2Concurrency, defaultArgon2Concurrency(availableParallelism(), 4));
  assert.equal(loadConfig({}).argon2MaxWaiting, 64);
});

test('ARGON2_CONCURRENCY, ARGON2_MAX_WAITING and GRAPHQL_EXECUTOR are checked at start-up', () => {
  assert.equal(loadConfig({ ARGON2_CONCURRENCY: '0' }).argon2Concurrency, 0);
  assert.equal(loadConfig({}).graphqlExecutor, 'jit');
  assert.equal(loadConfig({ ARGON2_CONCURRENCY: '2', GRAPHQL_EXECUTOR: 'graphql-js' }).argon2Concurrency, 2);
  assert.equal(loadConfig({ ARGON2_MAX_WAITING: '0' }).argon2MaxWaiting, 0);
  assert.throws(() => loadConfig({ ARGON2_CONCURRENCY: '-1' }), (e: unknown) => e instanceof ConfigError && /ARGON2_CONCURRENCY/.test(e.message));
  assert.throws(() => loadConfig({ ARGON2_MAX_WAITING: '-1' }), (e: unknown) => e instanceof ConfigError && /ARGON2_MAX_WAITING/.test(e.message));
  assert.throws(() => loadConfig({ GRAPHQL_EXECUTOR: 'fast' }), (e: unknown) => e instanceof ConfigError && /GRAPHQL_EXECUTOR/.test(e.message));
});

describe('login while the hash queue is full', () => {
  test('refuses known and unknown logins alike with RATE_LIMITED, without counting them as guesses', async () => {
    const t = await startApp({ env: { ARGON2_CONCURRENCY: '1', ARGON2_MAX_WAITING: '0', LOGIN_FREE_PER_SOURCE: '1', LOGIN_MAX_PER_ACCOUNT: '2' } });
    try {
      const email = uniqueEmail();
      expectData(await t.gql(RegisterDocument, { input: { email, password: STRONG_PASSWORD } }));
      const slot = holdSlot();
      for (let i = 0; i < 4; i++) {
        for (const login of [email, uniqueEmail()]) {
          const refused = expectCode(await t.gql(LoginDocument, { input: { login, password: STRONG_PASSWORD } }), 'RATE_LIMITED');
          assert.ok((refused.extensions?.retryAfterSeconds ?? 0) >= 1);
        }
      }
      assert.deepEqual(hashingNow(), { running: 1, waiting: 0 });
      await slot.release();
      // Eight refusals were not charged: the owner's next try is a real one, and succeeds.
      expectData(await t.gql(LoginDocument, { input: { login: email, password: STRONG_PASSWORD } }));
    } finally {
      await t.stop();
      configureHashing(unbounded);
    }
  });
});
