// S8: ISAPI alarm posts stored per second by one gateway (NODE_ENV=production, fresh Postgres
// database, no Redis) at a fixed concurrency, against a raw postgres.js loop inserting the same
// alarm row, one insert per statement, at the same concurrency (bench/peers/raw-insert.ts).
// Every Vigil post is a new alarm (its own channel); a 200 means committed. Afterwards the rows in
// the database are counted against the posts answered 200.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { inArray, count } from 'drizzle-orm';
import { openDb, tables } from '../../src/db/index';
import { deviceKeyHash, ingestTokenHash } from '../../src/devices/catalog/provisioning';
import { alternate, cpuSecondsOf, databaseBackendCpuSeconds, median, ratio, sleep, startChild, statementsOf, type ChildServer, type ResultRow, type Scenario } from '../lib/harness';
import type { IsapiLoadResult } from '../lib/isapi-load';
import { freshDatabase, startNodes } from '../lib/live';

const CONCURRENCY = 32;
const DEVICES = 100;

function gatewayNodeOptions(): Record<string, string> {
  const options = [process.env.BENCH_CPU_PROF ? '--import ./bench/lib/cpu-prof-hook.mjs' : '', process.env.BENCH_GATEWAY_NODE_OPTIONS ?? ''].join(' ').trim();
  return options ? { NODE_OPTIONS: options } : {};
}


/** Starts one run of a load child (SIGUSR2) and waits for its next `RESULT {...}` line. */
export async function runOnce(child: ChildServer, timeoutMs: number): Promise<IsapiLoadResult> {
  const before = child.lines.filter((l) => l.startsWith('RESULT ')).length;
  child.proc.kill('SIGUSR2');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const results = child.lines.filter((l) => l.startsWith('RESULT '));
    if (results.length > before) return JSON.parse(results.at(-1)!.slice(7)) as IsapiLoadResult;
    if (child.proc.exitCode !== null) throw new Error(`load process exited (${child.proc.exitCode}) without a result`);
    if (Date.now() > deadline) throw new Error('load process gave no result in time');
    await sleep(50);
  }
}

/** Users, devices and open bindings straight into the database; returns each device's ingest token and ids. */
export async function seedDevices(databaseUrl: string, n: number, tag: string) {
  const handle = await openDb({ databaseUrl, dataDir: ':memory:', poolSize: 2 });
  try {
    const db = handle.db;
    const [user] = await db
      .insert(tables.users)
      .values({ email: `${tag}-${randomBytes(4).toString('hex')}@bench.example.com`, passwordHash: 'unused' })
      .returning({ id: tables.users.id });
    const tokens = Array.from({ length: n }, () => randomBytes(32).toString('base64url'));
    const devices = await db
      .insert(tables.devices)
      .values(
        tokens.map((token, i) => ({
          serial: `${tag.toUpperCase()}-${randomBytes(3).toString('hex').toUpperCase()}-${i}`,
          channels: 1,
          verificationCodeHash: 'unused',
          deviceKeyHash: deviceKeyHash(randomBytes(32).toString('base64url')),
          ingestTokenHash: ingestTokenHash(token),
        })),
      )
      .returning({ id: tables.devices.id });
    const bindings = await db
      .insert(tables.bindings)
      .values(devices.map((d, i) => ({ deviceId: d.id, ownerId: user!.id, name: `${tag} ${i}` })))
      .returning({ id: tables.bindings.id, deviceId: tables.bindings.deviceId });
    const bindingOf = new Map(bindings.map((b) => [b.deviceId, b.id]));
    return { tokens, devices: devices.map((d) => ({ deviceId: d.id, bindingId: bindingOf.get(d.id)! })) };
  } finally {
    await handle.close();
  }
}

/** CPU per post (µs) of each process involved in one side's round, e.g. `gateway 130, load 40, db 90`. */
function cpuShare(parts: Array<[string, number[]]>): string {
  return parts.map(([name, us]) => `${name} ${Math.round(median(us))}`).join(', ');
}

async function countAlarms(databaseUrl: string, deviceIds: string[]): Promise<number> {
  const handle = await openDb({ databaseUrl, dataDir: ':memory:', poolSize: 1 });
  try {
    const [row] = await handle.db.select({ n: count() }).from(tables.alarms).where(inArray(tables.alarms.deviceId, deviceIds));
    return Number(row!.n);
  } finally {
    await handle.close();
  }
}

const scenario: Scenario = {
  id: 'S8',
  title: 'ISAPI posts stored per second, one gateway vs a raw postgres.js insert loop',
  async run(ctx) {
    const durationMs = ctx.quick ? 2000 : 4000;
    const db = await freshDatabase(ctx.databaseUrl);
    const dir = mkdtempSync(path.join(tmpdir(), 'vigil-s8-'));
    let gateway: Awaited<ReturnType<typeof startNodes>>['nodes'][number] | undefined;
    let vigilLoad: ChildServer | undefined;
    let rawLoad: ChildServer | undefined;
    try {
      ({
        nodes: [gateway],
      } = await startNodes(['s8'], {
        DATABASE_URL: db.url,
        NODE_ENV: 'production',
        REDIS_URL: '',
        // BENCH_CPU_PROF=<dir>: a CPU profile of the gateway, written when it exits (the hook, since
        // node refuses --cpu-prof in NODE_OPTIONS); BENCH_GATEWAY_NODE_OPTIONS reaches the gateway only.
        ...gatewayNodeOptions(),
      }));
      const ours = await seedDevices(db.url, DEVICES, 's8-vigil');
      const theirs = await seedDevices(db.url, DEVICES, 's8-raw');
      const tokensFile = path.join(dir, 'tokens');
      const devicesFile = path.join(dir, 'devices');
      writeFileSync(tokensFile, ours.tokens.join('\n') + '\n');
      writeFileSync(devicesFile, theirs.devices.map((d) => `${d.deviceId} ${d.bindingId}`).join('\n') + '\n');
      // Both load processes live for the whole run; each round is one SIGUSR2 (channels move on per run).
      vigilLoad = await startChild('bench/lib/isapi-load.ts', ['--base', gateway!.url, '--tokens-file', tokensFile, '--concurrency', String(CONCURRENCY), '--duration-ms', String(durationMs), '--channel-base', '1']);
      rawLoad = await startChild('bench/peers/raw-insert.ts', ['--url', db.url, '--devices-file', devicesFile, '--concurrency', String(CONCURRENCY), '--duration-ms', String(durationMs), '--channel-base', '1']);

      // Warm-up: JIT, the ingest-token cache, the pool's connections.
      let answered = (await runOnce(vigilLoad, durationMs + 30_000)).ok;
      ctx.progress(`set up: ${DEVICES} + ${DEVICES} devices, warm-up done`);

      const cpuMsPerPost: number[] = [];
      const p99s: number[] = [];
      const dbName = new URL(db.url).pathname.slice(1);
      // µs of CPU per post stored, per process, per round: where each side's machine time goes.
      const usPerPost = { gateway: [] as number[], load: [] as number[], vigilDb: [] as number[], raw: [] as number[], rawDb: [] as number[] };
      const perPost = (seconds: number, posts: number) => (seconds * 1e6) / Math.max(1, posts);
      const statementsPerPost: number[] = [];
      const results = await alternate(
        ctx,
        [
          {
            name: 'Vigil',
            async measure() {
              const cpu0 = cpuSecondsOf(gateway!.proc.pid!);
              const load0 = cpuSecondsOf(vigilLoad!.pid);
              const db0 = databaseBackendCpuSeconds(dbName);
              const st0 = await statementsOf(gateway!.url);
              const r = await runOnce(vigilLoad!, durationMs + 30_000);
              const cpu = cpuSecondsOf(gateway!.proc.pid!) - cpu0;
              usPerPost.gateway.push(perPost(cpu, r.ok));
              usPerPost.load.push(perPost(cpuSecondsOf(vigilLoad!.pid) - load0, r.ok));
              usPerPost.vigilDb.push(perPost(databaseBackendCpuSeconds(dbName) - db0, r.ok));
              statementsPerPost.push(((await statementsOf(gateway!.url)) - st0) / Math.max(1, r.ok));
              answered += r.ok;
              cpuMsPerPost.push((cpu * 1000) / Math.max(1, r.ok));
              p99s.push(r.p99);
              if (r.errors || Object.keys(r.statuses).some((s) => s !== '200')) ctx.progress(`Vigil statuses ${JSON.stringify(r.statuses)}, ${r.errors} socket errors`);
              return r.ok / (r.elapsedMs / 1000);
            },
          },
          {
            name: 'raw',
            async measure() {
              const raw0 = cpuSecondsOf(rawLoad!.pid);
              const db0 = databaseBackendCpuSeconds(dbName);
              const r = await runOnce(rawLoad!, durationMs + 30_000);
              usPerPost.raw.push(perPost(cpuSecondsOf(rawLoad!.pid) - raw0, r.ok));
              usPerPost.rawDb.push(perPost(databaseBackendCpuSeconds(dbName) - db0, r.ok));
              return r.ok / (r.elapsedMs / 1000);
            },
          },
        ],
        (v) => `${Math.round(v)}/s`,
      );
      const stored = await countAlarms(db.url, ours.devices.map((d) => d.deviceId));
      const vigil = median(results.get('Vigil')!);
      const raw = median(results.get('raw')!);
      const consistent = stored === answered;
      return [
        {
          scenario: 'S8',
          metric: `ISAPI posts stored/s, ${CONCURRENCY} in flight`,
          unit: 'posts/s',
          ours: vigil,
          peers: [{ name: 'raw postgres.js insert', value: raw }],
          goal: '>= 0.5x raw insert loop',
          pass: vigil >= 0.5 * raw && consistent,
          ratio: `${ratio(vigil, raw)} raw`,
          note:
            `${ctx.rounds} rounds of ${durationMs / 1000} s, ${DEVICES} devices each side, every post a new alarm (insert); ` +
            `rows in the database ${stored} vs posts answered 200 ${answered}${consistent ? ' (equal)' : ' (MISMATCH)'}; ` +
            `gateway CPU ${median(cpuMsPerPost).toFixed(2)} ms/post, post p99 ${median(p99s).toFixed(1)} ms; ` +
            `CPU µs per post: Vigil ${cpuShare([['gateway', usPerPost.gateway], ['load client', usPerPost.load], ['Postgres backends', usPerPost.vigilDb]])}; ` +
            `raw ${cpuShare([['insert loop', usPerPost.raw], ['Postgres backends', usPerPost.rawDb]])}; ` +
            `${median(statementsPerPost).toFixed(2)} SQL statements per post (vigil_db_statements_total; raw: 1); ` +
            `load from a minimal keep-alive HTTP client process (bench/lib/isapi-load.ts).`,
        } satisfies ResultRow,
      ];
    } finally {
      await Promise.allSettled([vigilLoad?.stop(), rawLoad?.stop()]);
      await gateway?.kill();
      rmSync(dir, { recursive: true, force: true });
      await db.drop();
    }
  },
};

export default scenario;
