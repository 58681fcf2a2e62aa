// S1a: HTTP devices(first: 50) at 64 connections over in-memory data. Vigil's real gateway stack
// (its own process, NODE_ENV=production) against P0 graphql-js, P1 Yoga and P2 graphql-jit, all on
// the same type-graphql schema, resolvers, data and bearer lookup (bench/peers/lib/http-data.ts).
import { alternate, median, ratio, startChild, type BenchContext, type ChildServer, type ResultRow, type Scenario } from '../lib/harness';
import { freshDatabase } from '../lib/live';
import { profileArgs } from '../lib/http-load';
import { httpLoad, postJson, type HttpLoadResult } from '../lib/http-load';
import { BENCH_TOKEN, DEVICES_BODY } from '../peers/lib/http-data';

export const CONNECTIONS = 64;
const AUTH = { authorization: `Bearer ${BENCH_TOKEN}` };

/**
 * Environment for a Vigil process serving the in-memory data: production mode, limits out of the
 * way. It still needs a database to start (migrations, workers): a fresh Postgres one, as in production.
 */
export const vigilMemoryEnv = (databaseUrl: string, extra: Record<string, string> = {}): Record<string, string> => ({
  NODE_ENV: 'production',
  DATA_DIR: ':memory:',
  DATABASE_URL: databaseUrl,
  REDIS_URL: '',
  LOG_LEVEL: 'warn',
  HTTP_RATE_PER_IP: '100000000',
  HTTP_RATE_PER_TOKEN: '100000000',
  ...extra,
});

/** Checks a contender answers the document with 50 devices and no errors; returns the data as JSON. */
export async function checkDevicesAnswer(name: string, base: string): Promise<string> {
  const r = await postJson(`${base}/graphql`, DEVICES_BODY, AUTH);
  const edges = r.json?.data?.devices?.edges;
  if (r.status !== 200 || r.json.errors || !Array.isArray(edges) || edges.length !== 50) {
    throw new Error(`${name} answered ${r.status}: ${JSON.stringify(r.json).slice(0, 300)}`);
  }
  return JSON.stringify(r.json.data);
}

export const loadDevices = (base: string, durationS: number): Promise<HttpLoadResult> =>
  httpLoad({ url: `${base}/graphql`, body: DEVICES_BODY, headers: AUTH, connections: CONNECTIONS, durationS });

async function run(ctx: BenchContext): Promise<ResultRow[]> {
  const durationS = ctx.quick ? 2 : 3;
  const servers: Record<string, ChildServer> = {};
  const db = await freshDatabase(ctx.databaseUrl);
  try {
    ctx.progress('starting Vigil (in-memory services) and the peers');
    const names = ['Vigil', 'P0 graphql-js', 'P1 Yoga', 'P2 graphql-jit'];
    const started = await Promise.allSettled([
      startChild('bench/servers/vigil-http.ts', ['--memory-data'], vigilMemoryEnv(db.url), { readyTimeoutMs: 60_000, nodeArgs: profileArgs() }),
      startChild('bench/peers/p0-graphql-js.ts', [], { NODE_ENV: 'production' }, { readyTimeoutMs: 60_000 }),
      startChild('bench/peers/p1-yoga.ts', [], { NODE_ENV: 'production' }, { readyTimeoutMs: 60_000 }),
      startChild('bench/peers/p2-jit.ts', [], { NODE_ENV: 'production' }, { readyTimeoutMs: 60_000 }),
    ]);
    started.forEach((s, i) => s.status === 'fulfilled' && (servers[names[i]!] = s.value));
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    // Same answer from everyone (key order aside: compare parsed, re-serialised data).
    const answers = new Map<string, string>();
    for (const [name, s] of Object.entries(servers)) answers.set(name, JSON.stringify(JSON.parse(await checkDevicesAnswer(name, s.url))));
    const reference = answers.get('Vigil')!;
    for (const [name, a] of answers) if (a !== reference) throw new Error(`${name} answers differently from Vigil`);
    ctx.progress(`warming up (2 s each)`);
    for (const s of Object.values(servers)) await loadDevices(s.url, 2);

    const results = await alternate(
      ctx,
      Object.entries(servers).map(([name, s]) => ({ name, measure: () => loadDevices(s.url, durationS) })),
      (r) => `${Math.round(r.rps)} req/s p99 ${r.p99Ms} ms${r.failed ? ` (${r.failed} failed)` : ''}`,
    );
    const rps = (name: string) => median(results.get(name)!.map((r) => r.rps));
    const p99 = (name: string) => median(results.get(name)!.map((r) => r.p99Ms));
    const failed = [...results.values()].flat().reduce((n, r) => n + r.failed, 0);
    const ours = rps('Vigil');
    const [P0, P1, P2] = [rps('P0 graphql-js'), rps('P1 Yoga'), rps('P2 graphql-jit')];
    const pass = ours >= 1.5 * P1 && ours >= 1.0 * P0 && ours >= 0.5 * P2 && failed === 0;
    const note =
      `devices(first: 50) with totalCount, pageInfo, 10 device fields and shares { grantee } (12 devices with 2 shares each), ${CONNECTIONS} connections, ` +
      `${durationS} s per round after a 2 s warm-up, autocannon in the bench process, every contender its own process. ` +
      `Same type-graphql schema, resolvers, DataLoaders and in-memory data for all; the bearer is checked by the same in-memory map lookup everywhere. ` +
      `Vigil = Fastify + Apollo + edge limits + rate-limit preHandler (in-memory limiter) + graphql-jit executor, NODE_ENV=production. ` +
      `p99 ms: Vigil ${p99('Vigil')}, P0 ${p99('P0 graphql-js')}, P1 ${p99('P1 Yoga')}, P2 ${p99('P2 graphql-jit')}.` +
      (failed ? ` ${failed} requests failed.` : '');
    return [
      {
        scenario: 'S1a',
        metric: `req/s, devices(first: 50), ${CONNECTIONS} connections, in-memory data`,
        unit: 'req/s',
        ours,
        peers: [
          { name: 'P0 graphql-js', value: P0 },
          { name: 'P1 Yoga', value: P1 },
          { name: 'P2 graphql-jit', value: P2 },
        ],
        goal: '>= 1.5x P1, >= 1.0x P0, >= 0.5x P2',
        pass,
        ratio: `${ratio(ours, P1)} P1, ${ratio(ours, P0)} P0, ${ratio(ours, P2)} P2`,
        note,
      },
      {
        scenario: 'S1a',
        metric: `p99 latency, devices(first: 50), ${CONNECTIONS} connections`,
        unit: 'ms',
        ours: p99('Vigil'),
        peers: [
          { name: 'P0 graphql-js', value: p99('P0 graphql-js') },
          { name: 'P1 Yoga', value: p99('P1 Yoga') },
          { name: 'P2 graphql-jit', value: p99('P2 graphql-jit') },
        ],
        goal: 'reported',
        pass: true,
        ratio: `${ratio(p99('Vigil'), p99('P1 Yoga'))} P1, ${ratio(p99('Vigil'), p99('P0 graphql-js'))} P0, ${ratio(p99('Vigil'), p99('P2 graphql-jit'))} P2`,
      },
    ];
  } finally {
    await Promise.all(Object.values(servers).map((s) => s.stop()));
    await db.drop();
  }
}

const scenario: Scenario = { id: 'S1a', title: 'HTTP devices(first: 50), in-memory data, vs graphql-js, Yoga, graphql-jit', run };
export default scenario;
