// S8 peer: what a hand-written ingest would do to store an alarm: one postgres.js insert (a
// prepared statement, autocommit) of the same alarm row per post, `concurrency` in flight on a
// pool of as many connections, for a fixed time. No HTTP, no parsing: the database write alone.
//
//   node --import tsx bench/peers/raw-insert.ts --url postgres://... --devices-file F \
//     --concurrency 32 --duration-ms 8000 --channel-base 1000000
//
// F has one `deviceId bindingId` per line. Prints `READY raw`, then runs once per SIGUSR2, printing
// `RESULT {"ok":..,"elapsedMs":..}` after each; SIGTERM ends it.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import postgres from 'postgres';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    'devices-file': { type: 'string' },
    concurrency: { type: 'string', default: '32' },
    'duration-ms': { type: 'string', default: '5000' },
    'channel-base': { type: 'string', default: '1' },
  },
});
const devices = readFileSync(values['devices-file']!, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((line) => line.split(' ') as [string, string]);
const concurrency = Math.min(Math.max(Number(values.concurrency), 1), 256);
const durationMs = Math.min(Number(values['duration-ms']), 120_000);
const channelBase = Number(values['channel-base']);

const sql = postgres(values.url!, { max: concurrency, onnotice: () => {} });
// Open every connection (and prepare nothing yet) before the clock starts.
await Promise.all(Array.from({ length: concurrency }, () => sql`select 1`));

const details = { macAddress: '44:19:b6:7a:10:2c', serialHint: null, ipAddress: '192.168.1.64', protocol: 'HTTP', portNo: 80, uuid: null };

/** One timed run; its channels start at `base`, so rounds never collide on an open alarm's key. */
async function run(base: number) {
  let seq = 0;
  let ok = 0;
  let errors = 0;
  const latencies: number[] = [];
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const n = seq++;
        const [deviceId, bindingId] = devices[n % devices.length]!;
        const channel = base + Math.floor(n / devices.length);
        const now = new Date();
        const t0 = performance.now();
        try {
          await sql`insert into alarms (device_id, binding_id, source, channel, event_type, raw_type, alarm_type, region_id, description, channel_name,
              started_at, received_at, last_post_at, last_post_device_at, active_post_count, post_count, details)
            values (${deviceId}, ${bindingId}, 'isapi', ${channel}, 'vmd', 'VMD', 'MOTION', ${null}, 'Motion alarm', ${null},
              ${now}, ${now}, ${now}, ${now}, ${n}, 1, ${sql.json(details)})`;
          ok++;
          latencies.push(performance.now() - t0);
        } catch (err) {
          if (errors++ === 0) console.error(err);
        }
      }
    }),
  );
  const elapsedMs = performance.now() - started;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil((p / 100) * latencies.length) - 1))] ?? NaN;
  return { ok, statuses: { 200: ok }, elapsedMs, p50: pct(50), p99: pct(99), errors };
}

// One run per SIGUSR2 (the n-th on channels channel-base + n * 1,000,000); SIGTERM ends the process.
let runs = 0;
let running = false;
process.on('SIGUSR2', () => {
  if (running) return;
  running = true;
  void run(channelBase + runs++ * 1_000_000).then((result) => {
    running = false;
    console.log(`RESULT ${JSON.stringify(result)}`);
  });
});
process.on('SIGTERM', () => void sql.end({ timeout: 5 }).finally(() => process.exit(0)));
console.log('READY raw');
