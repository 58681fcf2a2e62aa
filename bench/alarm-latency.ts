// Alarm latency from the ISAPI post (client clock before the request) to each subscriber's receipt,
// with 1,000 subscribers of one device: its owner and 49 grantees (shares with ALARMS), 20
// subscriptions each (tabs, dashboards). Two set-ups on Postgres + Redis, all on loopback:
//   one node:  posts and subscribers on node A;
//   two nodes: posts to node A, every subscriber on node B (the cross-node path through Redis).
// Alarms are posted one at a time, `interval` ms apart, each on a channel of its own.
//
// Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379 npx tsx bench/alarm-latency.ts [alarms=50] [interval=100]
import type { Client } from 'graphql-ws';
import { connect, cpuSeconds, freshDatabase, gql, percentile, postAlarm, provisionAndBind, register, requireEnv, running, startNodes, until } from './lib/live';

const ALARMS = Number(process.argv[2] ?? 50);
const INTERVAL_MS = Number(process.argv[3] ?? 100);
const USERS = Number(process.env.BENCH_USERS ?? 50);
const PER_USER = Number(process.env.BENCH_PER_USER ?? 20);
const { databaseUrl, redisUrl } = requireEnv();
const QUERY = 'subscription { alarms { id cursor channel type startedAt device { id name status } } }';

async function run(twoNodes: boolean) {
  const db = await freshDatabase(databaseUrl);
  const { nodes, adminToken } = await startNodes(twoNodes ? ['latency-a', 'latency-b'] : ['latency-a'], {
    DATABASE_URL: db.url,
    REDIS_URL: redisUrl,
    REGISTER_MAX_PER_IP: '10000',
    HTTP_RATE_PER_IP: '100000',
  });
  const postTo = nodes[0]!.url;
  const subscribeTo = nodes.at(-1)!.url;
  const clients: Client[] = [];
  try {
    const users = [];
    for (let i = 0; i < USERS; i++) users.push(await register(postTo, `latency${i}`));
    const owner = users[0]!;
    const { deviceId, ingestPath } = await provisionAndBind(postTo, adminToken, owner.token);
    for (const g of users.slice(1)) {
      await gql(postTo, 'mutation($d: ID!, $g: String!) { grantShare(deviceId: $d, grantee: $g, permissions: [ALARMS]) { id } }', { d: deviceId, g: g.email }, owner.token);
    }

    const postedAt = new Map<number, number>();
    const samples: number[] = [];
    let received = 0;
    for (const u of users) {
      const client = await connect(subscribeTo, u.token);
      clients.push(client);
      for (let s = 0; s < PER_USER; s++) {
        client.subscribe<{ alarms: { channel: number } }>(
          { query: QUERY },
          {
            next: (r) => {
              const at = postedAt.get(r.data!.alarms.channel);
              if (at !== undefined) samples.push(performance.now() - at);
              received++;
            },
            error: (e) => console.error('subscription error', e),
            complete: () => {},
          },
        );
      }
    }
    const subscribers = USERS * PER_USER;
    await until(async () => (await running(subscribeTo)) === subscribers, 30_000, 'subscriptions');
    await postAlarm(postTo, ingestPath); // warm-up, not measured
    await until(() => received >= subscribers, 30_000, 'the warm-up alarm');
    received = 0;

    const postMs: number[] = [];
    const cpu0 = await Promise.all(nodes.map((n) => cpuSeconds(n.url)));
    const client0 = process.cpuUsage();
    for (let k = 0; k < ALARMS; k++) {
      const t0 = performance.now();
      await postAlarm(postTo, ingestPath, (channel) => postedAt.set(channel, performance.now()));
      postMs.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, INTERVAL_MS));
    }
    await until(() => received >= subscribers * ALARMS, 120_000, 'every delivery');
    const cpu = (await Promise.all(nodes.map((n) => cpuSeconds(n.url)))).map((c, i) => (((c - cpu0[i]!) * 1000) / ALARMS).toFixed(0));
    const clientCpu = process.cpuUsage(client0);
    samples.sort((x, y) => x - y);
    postMs.sort((x, y) => x - y);
    const f = (ms: number) => `${ms.toFixed(1)} ms`;
    console.log(
      `${twoNodes ? 'two nodes (post on A, subscribers on B)' : 'one node'}: ${subscribers} subscribers, ${ALARMS} alarms, ${samples.length} deliveries: ` +
        `p50 ${f(percentile(samples, 50))}, p90 ${f(percentile(samples, 90))}, p99 ${f(percentile(samples, 99))}, max ${f(samples.at(-1)!)} (the ISAPI post itself: p50 ${f(percentile(postMs, 50))}); ` +
        `CPU per alarm: gateway ${cpu.join(' / ')} ms, this client ${((clientCpu.user + clientCpu.system) / 1000 / ALARMS).toFixed(0)} ms`,
    );
  } finally {
    await Promise.all(clients.map((c) => c.dispose()));
    await Promise.all(nodes.map((n) => n.kill('SIGTERM')));
    await db.drop();
  }
}

// BENCH_ONLY=one|two runs one set-up.
if (process.env.BENCH_ONLY !== 'two') await run(false);
if (process.env.BENCH_ONLY !== 'one') await run(true);
