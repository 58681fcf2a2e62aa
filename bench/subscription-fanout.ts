// Subscription fan-out on one gateway node: N identical `alarms` subscriptions of one user (the
// case grouping serves: many tabs, dashboards, kiosks), K alarms; deliveries per second and the
// gateway's CPU per alarm, with grouping on (one execution per event) and off (one per subscriber).
//
// Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx bench/subscription-fanout.ts [subscribers=1000] [alarms=20]
// (REDIS_URL is used when set.) Bounded: about a minute on a laptop.
import type { Client } from 'graphql-ws';
import { ALARM_SUBSCRIPTION, connect, cpuSeconds, freshDatabase, postAlarm, provisionAndBind, register, running, startNodes, until } from './lib/live';

const subscribers = Number(process.argv[2] ?? 1000);
const alarms = Number(process.argv[3] ?? 20);
const PER_CONNECTION = 50;
const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  console.error('set DATABASE_URL (a Postgres the bench may create a database in)');
  process.exit(78);
}

async function run(grouping: boolean) {
  const db = await freshDatabase(databaseUrl!);
  const { nodes: [node], adminToken } = await startNodes(['fanout'], {
    DATABASE_URL: db.url,
    REDIS_URL: process.env.REDIS_URL ?? '',
    WS_GROUPING: String(grouping),
    WS_MAX_CONNECTIONS_PER_USER: String(Math.ceil(subscribers / PER_CONNECTION) + 1),
    WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: String(PER_CONNECTION),
    WS_MAX_PENDING_EVENTS: '100000',
    WS_MESSAGES_PER_S: '1000',
  });
  const base = node!.url;
  const clients: Client[] = [];
  try {
    const user = await register(base, 'fanout');
    const { ingestPath } = await provisionAndBind(base, adminToken, user.token);
    const counts: number[] = [];
    for (let c = 0; c * PER_CONNECTION < subscribers; c++) {
      const client = await connect(base, user.token);
      clients.push(client);
      for (let s = 0; s < PER_CONNECTION && c * PER_CONNECTION + s < subscribers; s++) {
        const i = counts.push(0) - 1;
        client.subscribe({ query: ALARM_SUBSCRIPTION }, { next: () => void counts[i]!++, error: (e) => console.error('subscription error', e), complete: () => {} });
      }
    }
    await until(async () => (await running(base)) === subscribers, 30_000, 'subscriptions');
    await postAlarm(base, ingestPath); // warm-up (loaders, JIT)
    await until(() => counts.every((n) => n >= 1), 60_000, 'the warm-up alarm');
    const cpu0 = await cpuSeconds(base);
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < alarms; k++) await postAlarm(base, ingestPath);
    await until(() => counts.every((n) => n >= alarms + 1), 300_000, 'every delivery');
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = (await cpuSeconds(base)) - cpu0;
    const deliveries = subscribers * alarms;
    console.log(
      `grouping ${grouping ? 'on ' : 'off'}: ${subscribers} subscribers x ${alarms} alarms in ${seconds.toFixed(2)} s = ` +
        `${Math.round(deliveries / seconds)} deliveries/s; gateway CPU ${(cpu * 1000).toFixed(0)} ms = ${((cpu * 1000) / alarms).toFixed(1)} ms per alarm, ${((cpu * 1e6) / deliveries).toFixed(1)} µs per delivery`,
    );
  } finally {
    await Promise.all(clients.map((c) => c.dispose()));
    await node!.kill('SIGTERM');
    await db.drop();
  }
}

await run(true);
await run(false);
