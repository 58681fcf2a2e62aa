// S3 cross-check by heap snapshots: what one idle subscribed connection keeps in the V8 heap, for
// Vigil's gateway and for P4, by constructor.
//   NODE_OPTIONS=--max-old-space-size=4096 npx tsx bench/s3-heap.ts [connections, default 500]
// For each server (started as S3 starts them, with --expose-gc and the bench-only memory hook):
// 200 warm-up connections opened and closed, a heap snapshot after a forced GC, N connections with
// S3's two subscriptions opened, a 2 s settle, a second snapshot after a forced GC. The objects in
// the second snapshot that were not in the first (by node id) are what the N connections keep:
// their self sizes summed / N is the per-connection retained size, listed by constructor.
// Needs Postgres and Redis as `npm run bench` does.
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sleep, startChild, type BenchContext } from './lib/harness';
import { heapSnapshot, memoryAfterGc, memoryHookEnv, memoryHookNodeArgs } from './lib/memory-probe';
import { startWsLoad, type ConnSpec } from './lib/ws-load';
import { startVigil } from './scenarios/s2';
import { ALL_ALARMS_QUERY, STATUS_QUERY } from './scenarios/s3';

const N = Number(process.argv[2] ?? 500);
const USERS = 10;

interface Snapshot {
  ids: Set<number>;
  nodes: Array<{ id: number; key: string; size: number }>;
}

function readSnapshot(file: string): Snapshot {
  const s = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const f = s.snapshot.meta.node_fields;
  const width = f.length;
  const [type, name, id, size] = ['type', 'name', 'id', 'self_size'].map((k) => f.indexOf(k)) as [number, number, number, number];
  const types = s.snapshot.meta.node_types[0];
  const out: Snapshot = { ids: new Set(), nodes: [] };
  for (let i = 0; i < s.nodes.length; i += width) {
    const t = types[s.nodes[i + type]!]!;
    const n = s.strings[s.nodes[i + name]!]!;
    const key = t === 'object' || t === 'closure' ? `${t} ${n}` : t;
    out.ids.add(s.nodes[i + id]!);
    out.nodes.push({ id: s.nodes[i + id]!, key, size: s.nodes[i + size]! });
  }
  return out;
}

function newObjects(a: Snapshot, b: Snapshot) {
  const by = new Map<string, { count: number; size: number }>();
  let total = 0;
  for (const o of b.nodes) {
    if (a.ids.has(o.id)) continue;
    const e = by.get(o.key) ?? { count: 0, size: 0 };
    e.count++;
    e.size += o.size;
    by.set(o.key, e);
    total += o.size;
  }
  return { total, by: [...by.entries()].sort((x, y) => y[1].size - x[1].size) };
}

const ctx: BenchContext = {
  rounds: 1,
  databaseUrl: process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  redisUrl: process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  quick: false,
  progress: (m) => console.error(m),
};

const [vigil, p4, load] = await Promise.all([
  startVigil(ctx, USERS, { ...memoryHookEnv, BIND_MAX_PER_SOURCE: '1000000' }, memoryHookNodeArgs),
  startChild('bench/peers/p4-graphql-ws.ts', [], memoryHookEnv, { nodeArgs: memoryHookNodeArgs }),
  startWsLoad(4),
]);
try {
  const servers = [
    { name: 'Vigil', pid: vigil.pid, url: vigil.wsUrl, token: (i: number) => vigil.users[i % USERS]!.token },
    { name: 'P4 graphql-ws', pid: p4.pid, url: `${p4.url.replace(/^http/, 'ws')}/graphql`, token: (i: number) => `user-${i % USERS}` },
  ];
  for (const s of servers) {
    const specs = (count: number): ConnSpec[] =>
      Array.from({ length: count }, (_, i) => ({ url: s.url, mode: 'graphql-ws', token: s.token(i), subs: [{ tag: -1, query: STATUS_QUERY }, { tag: -1, query: ALL_ALARMS_QUERY }] }));
    await load.open(specs(200), { concurrency: 20 });
    await sleep(1000);
    await load.closeAll();
    await sleep(1500);
    const fileA = path.join(tmpdir(), `s3-heap-${s.pid}-a.heapsnapshot`);
    const fileB = path.join(tmpdir(), `s3-heap-${s.pid}-b.heapsnapshot`);
    const m0 = await memoryAfterGc(s.pid);
    await heapSnapshot(s.pid, fileA);
    const o = await load.open(specs(N), { concurrency: 50, timeoutMs: 60_000 });
    await sleep(2000);
    const m1 = await memoryAfterGc(s.pid);
    await heapSnapshot(s.pid, fileB);
    const closes = (await load.take([])).closeCodes;
    await load.closeAll();
    const diff = newObjects(readSnapshot(fileA), readSnapshot(fileB));
    rmSync(fileA, { force: true });
    rmSync(fileB, { force: true });
    const kb = (b: number) => `${(b / 1024).toFixed(2)} KB`;
    console.log(`\n${s.name}: ${o.opened} connections opened (${o.failed} failed; closed by the server meanwhile: ${JSON.stringify(closes)})`);
    console.log(`  new objects in the heap snapshot: ${kb(diff.total / N)} per connection`);
    // No RSS here: writing the first snapshot grows the process by itself.
    console.log(`  memoryUsage after gc: heapUsed ${kb((m1.heapUsed - m0.heapUsed) / N)}, external ${kb((m1.external - m0.external) / N)} per connection`);
    for (const [key, e] of diff.by.slice(0, 20)) console.log(`  ${(e.size / N).toFixed(0).padStart(6)} B  ${(e.count / N).toFixed(1).padStart(6)}x  ${key}`);
  }
} finally {
  await Promise.allSettled([load.stop(), p4.stop(), vigil.stop()]);
}
