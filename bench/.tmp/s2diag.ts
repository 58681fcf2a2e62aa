import { percentile, sleep, wallMs } from '../lib/harness';
import { postAlarm } from '../lib/live';
import { startWsLoad, type Post } from '../lib/ws-load';
import { ALARMS_QUERY, collect, startVigil } from '../scenarios/s2';

const N = Number(process.argv[2] ?? 1000);
const prof = process.argv[3] === 'prof';
const ctx = { rounds: 1, databaseUrl: 'postgres://postgres@127.0.0.1:5432/postgres', redisUrl: 'redis://127.0.0.1:6379', quick: true, progress: console.log };
const v = await startVigil(ctx, 5, {}, prof ? ['--import', '/work/main/bench/.tmp/cpu-prof-hook.mjs'] : []);
const load = await startWsLoad(2);
try {
  const o = await load.open(Array.from({ length: N }, (_, i) => ({ url: v.wsUrl, mode: 'graphql-ws' as const, token: v.users[i % 5]!.token, subs: [{ tag: 0, query: ALARMS_QUERY, variables: { d: [v.devices[0]!.deviceId] } }] })), { concurrency: 20 });
  console.log('opened', o);
  await sleep(500);
  for (let round = 0; round < 3; round++) {
    const posts: Post[] = [];
    const postMs: number[] = [];
    for (let k = 0; k < 5; k++) {
      const t0 = wallMs();
      await postAlarm(v.url, v.devices[0]!.ingestPath, (channel) => posts.push({ key: channel, tag: 0, at: wallMs() }));
      postMs.push(wallMs() - t0);
      await sleep(400);
    }
    const r = await collect(load, posts, 10000);
    const s = r.latencies.sort((a, b) => a - b);
    postMs.sort((a, b) => a - b);
    console.log(`p0 ${s[0]?.toFixed(1)} p50 ${percentile(s, 50).toFixed(1)} p99 ${percentile(s, 99).toFixed(1)} missing ${r.missing} dup ${r.duplicates} post p50 ${percentile(postMs, 50).toFixed(1)} max ${postMs.at(-1)!.toFixed(1)}`);
  }
} finally {
  await load.stop();
  await v.stop();
}
