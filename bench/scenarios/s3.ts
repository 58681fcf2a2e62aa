// S3: idle graphql-ws connections, each with `deviceStatus` + `alarms` subscribed: bytes each holds
// in the server, for Vigil (a real gateway, NODE_ENV=production, Postgres + Redis) and P4 (bare
// graphql-ws, same two subscriptions). Both servers run with --expose-gc and the bench-only memory
// hook (bench/lib/memory-hook.mjs). Per round and server: a reading after a forced full GC, N
// connections opened in one step (5,000; 1,000 with --quick), a settle, a second reading after a
// forced GC, then all closed. Bytes per connection = (second - first) / N, for the V8 heap
// (heapUsed + external) and for RSS separately; figures are medians over rounds, the spread is in
// the note. Cross-check by heap snapshots: `npx tsx bench/s3-heap.ts`.
import { alternate, median, ratio, sleep, startChild, type ChildServer, type ResultRow, type Scenario } from '../lib/harness';
import { memoryAfterGc, memoryHookEnv, memoryHookNodeArgs, type MemoryReading } from '../lib/memory-probe';
import { startWsLoad, type ConnSpec, type WsLoad } from '../lib/ws-load';
import { ALARMS_QUERY, startVigil, type VigilFixture } from './s2';

export const STATUS_QUERY = 'subscription { deviceStatus { device { id name status } status at } }';
export const ALL_ALARMS_QUERY = ALARMS_QUERY.replace('($d: [ID!])', '').replace('(deviceIds: $d)', '');
const USERS = 10;

interface Round {
  heap: number;
  rss: number;
}

const heapOf = (m: MemoryReading) => m.heapUsed + m.external;

const scenario: Scenario = {
  id: 'S3',
  title: 'idle connections with deviceStatus + alarms subscribed: bytes per connection',
  async run(ctx) {
    const n = Number(process.env.BENCH_CONNECTIONS ?? (ctx.quick ? 1000 : 5000));
    let vigil: VigilFixture | undefined;
    let p4: ChildServer | undefined;
    let load: WsLoad | undefined;
    try {
      ctx.progress(`set-up: gateway, ${USERS} accounts, P4, load client`);
      [vigil, p4, load] = await Promise.all([
        // Bind limits raised: they live in the shared Redis, where earlier runs' binds from 127.0.0.1 still count.
        startVigil(ctx, USERS, { ...memoryHookEnv, BIND_MAX_PER_SOURCE: '1000000' }, memoryHookNodeArgs),
        startChild('bench/peers/p4-graphql-ws.ts', [], memoryHookEnv, { nodeArgs: memoryHookNodeArgs }),
        startWsLoad(4),
      ]);
      const v = vigil;
      const l = load;
      const p4ws = `${p4.url.replace(/^http/, 'ws')}/graphql`;
      const specs = (kind: 'vigil' | 'p4', count: number): ConnSpec[] =>
        Array.from({ length: count }, (_, i) => ({
          url: kind === 'vigil' ? v.wsUrl : p4ws,
          mode: 'graphql-ws',
          token: kind === 'vigil' ? v.users[i % USERS]!.token : `user-${i % USERS}`,
          subs: [
            { tag: -1, query: STATUS_QUERY },
            { tag: -1, query: ALL_ALARMS_QUERY },
          ],
        }));
      const pids = { Vigil: v.pid, 'P4 graphql-ws': p4.pid };
      // Warm-up: code paths compiled and pools filled before the first reading.
      for (const kind of ['vigil', 'p4'] as const) await l.open(specs(kind, 200), { concurrency: 20 });
      await sleep(1000);
      await l.closeAll();
      await sleep(1000);
      const rounds = await alternate<Round>(
        ctx,
        (['Vigil', 'P4 graphql-ws'] as const).map((name) => ({
          name,
          async measure() {
            const before = await memoryAfterGc(pids[name]);
            const o = await l.open(specs(name === 'Vigil' ? 'vigil' : 'p4', n), { concurrency: 100, timeoutMs: 60_000 });
            if (o.failed || o.opened !== n) throw new Error(`${name}: ${o.failed} of ${n} connections failed`);
            await sleep(2000);
            const after = await memoryAfterGc(pids[name]);
            await l.closeAll();
            await sleep(1500); // the server sees the closes before the other contender's reading
            return { heap: (heapOf(after) - heapOf(before)) / n, rss: (after.rss - before.rss) / n };
          },
        })),
        (r) => `heap ${(r.heap / 1024).toFixed(2)} KB/conn, RSS ${(r.rss / 1024).toFixed(2)} KB/conn`,
      );
      const of = (name: 'Vigil' | 'P4 graphql-ws', k: keyof Round) => median(rounds.get(name)!.map((r) => r[k]));
      const spread = (name: 'Vigil' | 'P4 graphql-ws', k: keyof Round) => {
        const xs = rounds.get(name)!.map((r) => r[k] / 1024);
        return `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
      };
      const heapOurs = of('Vigil', 'heap');
      const heapPeer = of('P4 graphql-ws', 'heap');
      const rssOurs = of('Vigil', 'rss');
      const rssPeer = of('P4 graphql-ws', 'rss');
      const perGiB = 2 ** 30 / Math.max(heapOurs, rssOurs);
      const method =
        `${ctx.rounds} alternated rounds; each round per server: gc() twice through the bench-only memory hook, ${n} connections opened in one step ` +
        `(2 subscriptions each, ${USERS} accounts), 2 s settle, gc() twice, reading, all closed; per connection = delta / ${n}, medians over rounds. ` +
        `Heap = V8 heapUsed + external after the forced GC; RSS from the same reading (after the first round it reuses pages freed by the previous round's closes). ` +
        `Spread over rounds, KB/conn: heap Vigil ${spread('Vigil', 'heap')}, P4 ${spread('P4 graphql-ws', 'heap')}; RSS Vigil ${spread('Vigil', 'rss')}, P4 ${spread('P4 graphql-ws', 'rss')}. ` +
        'Cross-check by heap snapshots (objects new after opening the connections, by constructor): `npx tsx bench/s3-heap.ts`.';
      const rows: ResultRow[] = [
        {
          scenario: 'S3',
          metric: `V8 heap per idle connection (deviceStatus + alarms), ${n} at once, after a forced GC`,
          unit: 'B',
          ours: heapOurs,
          peers: [{ name: 'P4 graphql-ws', value: heapPeer }],
          goal: '<= 1.3x P4',
          pass: heapOurs <= 1.3 * heapPeer,
          ratio: `${ratio(heapOurs, heapPeer)} P4`,
          note: method,
        },
        {
          scenario: 'S3',
          metric: `RSS per idle connection (deviceStatus + alarms), ${n} at once, after a forced GC`,
          unit: 'B',
          ours: rssOurs,
          peers: [{ name: 'P4 graphql-ws', value: rssPeer }],
          goal: '<= 1.3x P4; >= 40,000 connections per GiB',
          pass: rssOurs <= 1.3 * rssPeer && perGiB >= 40_000,
          ratio: `${ratio(rssOurs, rssPeer)} P4; ${Math.round(perGiB).toLocaleString('en-US')} connections per GiB (by the larger of heap and RSS)`,
        },
      ];
      return rows;
    } finally {
      await Promise.allSettled([load?.stop(), p4?.stop(), vigil?.stop()]);
    }
  },
};
export default scenario;
