// S3: idle graphql-ws connections, each with `deviceStatus` + `alarms` subscribed. Bytes per
// connection = (server RSS after connecting N - RSS before) / N, the same way for Vigil (a real
// gateway, NODE_ENV=production, Postgres + Redis) and P4 (bare graphql-ws, same two subscriptions).
// Connections are opened in batches, Vigil's and P4's in turn (A B A B ...); the figure is over all
// N of each, which keeps the garbage a server happens to hold at a reading small against N.
import { alternate, ratio, rssBytes, sleep, startChild, type ChildServer, type ResultRow, type Scenario } from '../lib/harness';
import { startWsLoad, type ConnSpec, type WsLoad } from '../lib/ws-load';
import { ALARMS_QUERY, startVigil, type VigilFixture } from './s2';

const STATUS_QUERY = 'subscription { deviceStatus { device { id name status } status at } }';
const USERS = 10;

const scenario: Scenario = {
  id: 'S3',
  title: 'idle connections with deviceStatus + alarms subscribed: bytes per connection',
  async run(ctx) {
    const batch = ctx.quick ? 500 : 800;
    let vigil: VigilFixture | undefined;
    let p4: ChildServer | undefined;
    let load: WsLoad | undefined;
    try {
      ctx.progress(`set-up: gateway, ${USERS} accounts, P4, load client`);
      [vigil, p4, load] = await Promise.all([startVigil(ctx, USERS), startChild('bench/peers/p4-graphql-ws.ts'), startWsLoad(4)]);
      const v = vigil;
      const p4ws = `${p4.url.replace(/^http/, 'ws')}/graphql`;
      const specs = (kind: 'vigil' | 'p4', n: number, offset: number): ConnSpec[] =>
        Array.from({ length: n }, (_, i) => {
          const u = (offset + i) % USERS;
          return {
            url: kind === 'vigil' ? v.wsUrl : p4ws,
            mode: 'graphql-ws',
            token: kind === 'vigil' ? v.users[u]!.token : `user-${u}`,
            subs: [
              { tag: -1, query: STATUS_QUERY },
              { tag: -1, query: ALARMS_QUERY.replace('($d: [ID!])', '').replace('(deviceIds: $d)', '') },
            ],
          };
        });
      const pids = { Vigil: v.pid, 'P4 graphql-ws': p4.pid };
      const opened = { Vigil: 0, 'P4 graphql-ws': 0 };
      // Warm-up: code paths compiled and pools filled before the first reading.
      for (const kind of ['vigil', 'p4'] as const) await load.open(specs(kind, 50, 0), { concurrency: 20 });
      await sleep(2000);
      const before = { Vigil: rssBytes(v.pid), 'P4 graphql-ws': rssBytes(p4.pid) };
      const perRound = await alternate(
        ctx,
        (['Vigil', 'P4 graphql-ws'] as const).map((name) => ({
          name,
          async measure() {
            const r0 = rssBytes(pids[name]);
            const o = await load!.open(specs(name === 'Vigil' ? 'vigil' : 'p4', batch, opened[name]), { concurrency: 25 });
            if (o.failed) throw new Error(`${name}: ${o.failed} connections failed`);
            opened[name] += o.opened;
            await sleep(2500);
            return (rssBytes(pids[name]) - r0) / o.opened;
          },
        })),
        (b) => `${(b / 1024).toFixed(1)} KB/conn (this batch)`,
      );
      const after = { Vigil: rssBytes(v.pid), 'P4 graphql-ws': rssBytes(p4.pid) };
      const per = (name: 'Vigil' | 'P4 graphql-ws') => (after[name] - before[name]) / opened[name];
      const ours = per('Vigil');
      const peer = per('P4 graphql-ws');
      const perGiB = 2 ** 30 / ours;
      const batches = (name: 'Vigil' | 'P4 graphql-ws') => perRound.get(name)!.map((b) => (b / 1024).toFixed(1)).join(', ');
      const rows: ResultRow[] = [
        {
          scenario: 'S3',
          metric: `bytes per idle connection (deviceStatus + alarms), ${opened.Vigil} connections`,
          unit: 'B',
          ours,
          peers: [{ name: 'P4 graphql-ws', value: peer }],
          goal: '<= 1.3x P4; >= 40,000 connections per GiB',
          pass: ours <= 1.3 * peer && perGiB >= 40_000,
          ratio: `${ratio(ours, peer)} P4; ${Math.round(perGiB).toLocaleString('en-US')} connections per GiB`,
          note:
            `server RSS after - before over all connections (${ctx.rounds} alternated batches of ${batch}, 2.5 s settle each); ` +
            `per batch KB/conn: Vigil ${batches('Vigil')}; P4 ${batches('P4 graphql-ws')}; RSS Vigil ${(before.Vigil / 2 ** 20).toFixed(0)} -> ${(after.Vigil / 2 ** 20).toFixed(0)} MiB, ` +
            `P4 ${(before['P4 graphql-ws'] / 2 ** 20).toFixed(0)} -> ${(after['P4 graphql-ws'] / 2 ** 20).toFixed(0)} MiB; ${USERS} accounts`,
        },
      ];
      return rows;
    } finally {
      await Promise.allSettled([load?.stop(), p4?.stop(), vigil?.stop()]);
    }
  },
};
export default scenario;
