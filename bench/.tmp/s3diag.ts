import { readdirSync } from 'node:fs';
import { rssBytes, sleep } from '../lib/harness';
import { startWsLoad } from '../lib/ws-load';
import { ALARMS_QUERY, startVigil } from '../scenarios/s2';
const N = Number(process.argv[2] ?? 2000);
const ctx = { rounds: 1, databaseUrl: 'postgres://postgres@127.0.0.1:5432/postgres', redisUrl: 'redis://127.0.0.1:6379', quick: true, progress: console.log };
const v = await startVigil(ctx, 5, {}, ['--import', '/work/main/bench/.tmp/heap-hook.mjs']);
const load = await startWsLoad(2);
const spec = (i: number) => ({ url: v.wsUrl, mode: 'graphql-ws' as const, token: v.users[i % 5]!.token, subs: [{ tag: -1, query: 'subscription { deviceStatus { device { id name status } status at } }' }, { tag: -1, query: ALARMS_QUERY.replace('($d: [ID!])', '').replace('(deviceIds: $d)', '') }] });
try {
  await load.open(Array.from({ length: 50 }, (_, i) => spec(i)), { concurrency: 20 });
  await sleep(1500);
  process.kill(v.pid, 'SIGUSR2'); await sleep(4000);
  const r0 = rssBytes(v.pid);
  await load.open(Array.from({ length: N }, (_, i) => spec(i)), { concurrency: 20 });
  await sleep(2500);
  const r1 = rssBytes(v.pid);
  console.log('rss per conn', (r1 - r0) / N);
  process.kill(v.pid, 'SIGUSR2'); await sleep(6000);
  console.log(readdirSync('/tmp/prof'));
} finally { await load.stop(); await v.stop(); }
