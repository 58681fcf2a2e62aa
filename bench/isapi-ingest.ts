/**
 * ISAPI ingest load generator: how many alarm-host posts per second one gateway stores.
 *
 *   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx bench/isapi-ingest.ts \
 *     [--duration 10] [--concurrency 32] [--devices 200] [--mode new|repeat] [--profile DIR]
 *
 * Creates a fresh Postgres database next to TEST_DATABASE_URL (dropped afterwards), starts the real
 * gateway on it as its own process (`src/main.ts`, port 0, no Redis), inserts `devices` bound
 * devices, then keeps `concurrency` posts in flight for `duration` seconds from this process.
 * `--mode new` (default) makes every post a new alarm (a distinct channel per post: an insert
 * each); `--mode repeat` repeats one event per device and channel, so posts coalesce into open
 * alarms (an update each), as a busy NVR's do. Prints posts/s answered 200 (each is committed
 * before its answer), latency percentiles, and the rows found in the database afterwards.
 */
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { count, sql } from 'drizzle-orm';
import postgres from 'postgres';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { openDb, tables } from '../src/db/index';
import { deviceKeyHash, ingestTokenHash } from '../src/devices/catalog/provisioning';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '32' },
    devices: { type: 'string', default: '200' },
    mode: { type: 'string', default: 'new' },
    /** Writes a V8 CPU profile of the gateway process into this directory. */
    profile: { type: 'string' },
  },
});
const durationS = Math.min(Math.max(Number(values.duration), 1), 300);
const concurrency = Math.min(Math.max(Number(values.concurrency), 1), 512);
const deviceCount = Math.min(Math.max(Number(values.devices), 1), 10_000);
const mode = values.mode === 'repeat' ? 'repeat' : 'new';

const base = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL;
if (!base) {
  console.error('set TEST_DATABASE_URL (a Postgres server where a scratch database may be created)');
  process.exit(2);
}
const dbName = `vigil_bench_${randomBytes(4).toString('hex')}`;
const admin = postgres(base, { max: 1, onnotice: () => {} });
await admin.unsafe(`create database ${dbName}`);
const url = new URL(base);
url.pathname = `/${dbName}`;

// The gateway runs in its own process, so the load generator does not take its CPU.
const gateway = spawn(process.execPath, [...(values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] : []), '--import', 'tsx', 'src/main.ts'], {
  cwd: fileURLToPath(new URL('..', import.meta.url)),
  env: { ...process.env, DATABASE_URL: url.toString(), PORT: '0', HOST: '127.0.0.1', DATA_DIR: `/tmp/${dbName}`, LOG_LEVEL: 'info', NODE_ENV: 'production', REDIS_URL: '' },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const baseUrl = await new Promise<string>((resolve, reject) => {
  createInterface({ input: gateway.stdout! }).on('line', (line) => {
    try {
      const entry = JSON.parse(line) as { msg?: string; url?: string };
      if (entry.msg === 'vigil gateway listening' && entry.url) resolve(entry.url);
    } catch {
      // not a log line
    }
  });
  gateway.once('exit', (code) => reject(new Error(`gateway exited with ${code}`)));
});
const handle = await openDb({ databaseUrl: url.toString(), dataDir: ':memory:', poolSize: 2 });
const db = handle.db;

try {
  const [user] = await db.insert(tables.users).values({ email: `bench-${dbName}@example.com`, passwordHash: 'unused' }).returning({ id: tables.users.id });
  const paths: string[] = [];
  for (let i = 0; i < deviceCount; i++) {
    const token = randomBytes(32).toString('base64url');
    const [d] = await db
      .insert(tables.devices)
      .values({ serial: `BENCH-${i}`, channels: 1, verificationCodeHash: 'unused', deviceKeyHash: deviceKeyHash(randomBytes(32).toString('base64url')), ingestTokenHash: ingestTokenHash(token) })
      .returning({ id: tables.devices.id });
    await db.insert(tables.bindings).values({ deviceId: d!.id, ownerId: user!.id, name: `bench ${i}` });
    paths.push(`${baseUrl}/isapi/events/${token}`);
  }

  const xml = (eventType: string, channel: number, n: number) =>
    `<?xml version="1.0" encoding="UTF-8"?>\r\n<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">\r\n<ipAddress>192.168.1.64</ipAddress>\r\n<portNo>80</portNo>\r\n<protocol>HTTP</protocol>\r\n<macAddress>44:19:b6:7a:10:2c</macAddress>\r\n<channelID>${channel}</channelID>\r\n<dateTime>${new Date().toISOString()}</dateTime>\r\n<activePostCount>${n}</activePostCount>\r\n<eventType>${eventType}</eventType>\r\n<eventState>active</eventState>\r\n<eventDescription>${eventType} alarm</eventDescription>\r\n</EventNotificationAlert>\r\n`;

  /** CPU seconds the gateway process has used (Linux /proc), to tell its cost per post from the machine's load. */
  const gatewayCpuS = () => {
    try {
      const fields = readFileSync(`/proc/${gateway.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 1/100 s
    } catch {
      return NaN;
    }
  };
  const cpuBefore = gatewayCpuS();
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let seq = 0;
  const deadline = Date.now() + durationS * 1000;
  const started = Date.now();
  const worker = async () => {
    while (Date.now() < deadline) {
      const n = seq++;
      const path = paths[n % paths.length]!;
      // new: a distinct channel per post and device, so each post opens an alarm; repeat: 4 keys per device.
      const channel = mode === 'new' ? Math.floor(n / paths.length) + 1 : (n % 4) + 1;
      const t0 = performance.now();
      const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/xml' }, body: xml('VMD', channel, n) });
      await res.arrayBuffer();
      latencies.push(performance.now() - t0);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (Date.now() - started) / 1000;
  const gatewayCpu = gatewayCpuS() - cpuBefore;

  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))]!.toFixed(1);
  const ok = statuses.get(200) ?? 0;
  const [rows] = await db.select({ n: count() }).from(tables.alarms);
  const [posts] = await db.select({ n: sql<number>`coalesce(sum(${tables.alarms.postCount}), 0)::int` }).from(tables.alarms);
  console.log(
    JSON.stringify(
      {
        mode,
        durationS: Number(elapsed.toFixed(2)),
        concurrency,
        devices: deviceCount,
        posts: latencies.length,
        statuses: Object.fromEntries(statuses),
        storedPostsPerSecond: Math.round(ok / elapsed),
        latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: latencies.at(-1)!.toFixed(1) },
        gatewayCpuMsPerPost: Number(((gatewayCpu * 1000) / Math.max(1, ok)).toFixed(2)),
        loadAverage1m: loadavg()[0],
        cpus: cpus().length,
        alarmsInDatabase: rows!.n,
        postsCoalescedIntoThem: posts!.n,
      },
      null,
      2,
    ),
  );
} finally {
  gateway.kill('SIGTERM');
  await new Promise((r) => gateway.once('exit', r));
  await handle.close();
  await admin.unsafe(`drop database if exists ${dbName} with (force)`);
  await admin.end();
}
