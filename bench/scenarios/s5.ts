// S5: two gateway nodes on one Postgres and Redis. A fleet of devices on node A's device
// WebSocket channel (how a fleet pushes this volume: one persistent connection per device, an
// ack per stored event, no HTTP request per alarm) raises alarms at 1k / 5k / 20k per second;
// graphql-ws subscribers on node B receive them cross-node (alarm.created via Redis wakes B's
// tailer). Per rate step: alarms/s stored (acked), alarms/s delivered, post -> delivery latency.
//
// The fleet runs as its own process: this file, started with `fleet` as its first argument.
import { randomBytes, createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { openDb, tables } from '../../src/db/index';
import { deviceKeyHash, ingestTokenHash } from '../../src/devices/catalog/provisioning';
import { cpuSecondsOf, databaseBackendCpuSeconds, median, percentile, sleep, startChild, statementsOf, wallMs, type ResultRow, type Scenario } from '../lib/harness';
import { connect, freshDatabase, register, startNodes } from '../lib/live';

const RATES = [1000, 5000, 20_000];
const SUBSCRIBERS = 3;
/** Unacked events a device keeps in flight at most (the gateway closes a device with 40 queued frames). */
const MAX_UNACKED = 4;
/** The throughput goal: alarms/s stored and delivered at the best step. */
const GOAL_PER_S = 10_000;

const keyFor = (seed: string, i: number) => createHash('sha256').update(`${seed}:${i}`).digest('base64url');
const serialFor = (prefix: string, i: number) => `${prefix}-${String(i).padStart(5, '0')}`;

interface StepReport {
  round: number;
  rate: number;
  /** Wall-clock ms when the step started and when its sending stopped. */
  start: number;
  end: number;
  sent: number;
  /** Events due but not sent because the device had MAX_UNACKED in flight. */
  deferred: number;
  acked: number;
  /** Wall-clock ms of the step's last ack. */
  lastAck: number;
}

// ---------------------------------------------------------------------------------------------
// The fleet process
// ---------------------------------------------------------------------------------------------

async function runFleet() {
  const { values } = parseArgs({
    args: process.argv.slice(3),
    options: {
      url: { type: 'string' },
      seed: { type: 'string' },
      prefix: { type: 'string' },
      devices: { type: 'string' },
      rounds: { type: 'string' },
      'step-ms': { type: 'string' },
      'drain-ms': { type: 'string' },
      'max-drain-ms': { type: 'string' },
    },
  });
  const count = Number(values.devices);
  const rounds = Number(values.rounds);
  const stepMs = Number(values['step-ms']);
  const drainMs = Number(values['drain-ms']);
  const maxDrainMs = Number(values['max-drain-ms']);
  interface Device {
    ws: WebSocket;
    unacked: Map<number, number>;
    seq: number;
  }
  const devices: Device[] = [];
  let currentStep: StepReport | null = null;
  const stepOf = new Map<number, StepReport>();
  let nextId = 1;

  const open = (i: number) =>
    new Promise<Device>((resolve, reject) => {
      const ws = new WebSocket(values.url!, 'vigil-device.v1');
      const device: Device = { ws, unacked: new Map(), seq: 0 };
      const timer = setTimeout(() => reject(new Error(`device ${i}: no welcome`)), 30_000);
      ws.once('open', () => ws.send(JSON.stringify({ type: 'hello', serial: serialFor(values.prefix!, i), key: keyFor(values.seed!, i), model: 'bench', firmware: '1.0', channels: 1 })));
      ws.on('message', (data) => {
        const frame = JSON.parse(String(data)) as { type: string; id?: number };
        if (frame.type === 'welcome') {
          clearTimeout(timer);
          resolve(device);
        } else if (frame.type === 'ack' && typeof frame.id === 'number') {
          if (!device.unacked.delete(frame.id)) return;
          const step = stepOf.get(frame.id);
          stepOf.delete(frame.id);
          if (step) {
            step.acked++;
            step.lastAck = wallMs();
          }
        }
      });
      ws.once('close', (code) => {
        clearTimeout(timer);
        if (!devices.includes(device)) reject(new Error(`device ${i} closed ${code} before welcome`));
        else console.error(`device ${i} closed ${code}`);
      });
      ws.once('error', () => {});
    });
  for (let i = 0; i < count; i += 50) devices.push(...(await Promise.all(Array.from({ length: Math.min(50, count - i) }, (_, k) => open(i + k)))));
  const heartbeat = setInterval(() => devices.forEach((d) => d.ws.readyState === WebSocket.OPEN && d.ws.send('{"type":"heartbeat"}')), 15_000);
  console.log('READY fleet');

  let cursor = 0;
  const send = (step: StepReport) => {
    const d = devices[cursor++ % devices.length]!;
    if (d.unacked.size >= MAX_UNACKED || d.ws.readyState !== WebSocket.OPEN) {
      step.deferred++;
      return;
    }
    const id = nextId++;
    const sentAt = wallMs();
    d.unacked.set(id, sentAt);
    stepOf.set(id, step);
    step.sent++;
    d.ws.send(`{"type":"event","id":${id},"channel":${++d.seq},"eventType":"VMD","state":"active","at":"${new Date().toISOString()}","description":"${step.round}:${step.rate}:${sentAt.toFixed(3)}"}`);
  };
  for (let round = 1; round <= rounds; round++) {
    for (const rate of RATES) {
      const step: StepReport = { round, rate, start: wallMs(), end: 0, sent: 0, deferred: 0, acked: 0, lastAck: 0 };
      currentStep = step;
      // Paced in 5 ms ticks: each tick sends what is due since the step began.
      while (wallMs() - step.start < stepMs) {
        const due = Math.floor(((wallMs() - step.start) / 1000) * rate);
        while (step.sent + step.deferred < due) send(step);
        await sleep(5);
      }
      step.end = wallMs();
      // Drain: until every event sent is acked (bounded), so the next step starts without backlog.
      const drainUntil = wallMs() + maxDrainMs;
      await sleep(drainMs);
      while (devices.some((d) => d.unacked.size > 0) && wallMs() < drainUntil) await sleep(20);
      console.log(`STEP ${JSON.stringify(step)}`);
    }
  }
  void currentStep;
  clearInterval(heartbeat);
  for (const d of devices) d.ws.close(1000);
  await sleep(200);
  console.log('DONE');
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------------

async function seedFleet(databaseUrl: string, ownerId: string, count: number, seed: string, prefix: string) {
  const handle = await openDb({ databaseUrl, dataDir: ':memory:', poolSize: 2 });
  try {
    for (let from = 0; from < count; from += 500) {
      const n = Math.min(500, count - from);
      const devices = await handle.db
        .insert(tables.devices)
        .values(
          Array.from({ length: n }, (_, k) => ({
            serial: serialFor(prefix, from + k),
            channels: 1,
            verificationCodeHash: 'unused',
            deviceKeyHash: deviceKeyHash(keyFor(seed, from + k)),
            ingestTokenHash: ingestTokenHash(randomBytes(32).toString('base64url')),
          })),
        )
        .returning({ id: tables.devices.id });
      await handle.db.insert(tables.bindings).values(devices.map((d, k) => ({ deviceId: d.id, ownerId, name: `fleet ${from + k}` })));
    }
    return async () => {
      const h = await openDb({ databaseUrl, dataDir: ':memory:', poolSize: 1 });
      try {
        return Number(await h.db.$count(tables.alarms));
      } finally {
        await h.close();
      }
    };
  } finally {
    await handle.close();
  }
}

interface Delivery {
  round: number;
  rate: number;
  sentAt: number;
  at: number;
}

const scenario: Scenario = {
  id: 'S5',
  title: 'alarms at 1k / 5k / 20k per s into node A, delivered cross-node via Redis to subscribers on node B',
  async run(ctx) {
    const stepMs = ctx.quick ? 2000 : 3000;
    const drainMs = 500;
    const maxDrainMs = 6000;
    const deviceCount = ctx.quick ? 400 : 1500;
    const db = await freshDatabase(ctx.databaseUrl);
    let stopNodes: () => Promise<void> = async () => {};
    let fleet: Awaited<ReturnType<typeof startChild>> | undefined;
    const clients: Array<{ dispose(): void | Promise<void> }> = [];
    try {
      // BENCH_GATEWAY_NODE_OPTIONS: e.g. a preload that starts the inspector's profiler in the gateways.
      const nodeOptions: Record<string, string> = process.env.BENCH_GATEWAY_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_GATEWAY_NODE_OPTIONS } : {};
      const { nodes } = await startNodes(['s5-a', 's5-b'], { DATABASE_URL: db.url, REDIS_URL: ctx.redisUrl, NODE_ENV: 'production', ...nodeOptions });
      stopNodes = async () => void (await Promise.all(nodes.map((n) => n.kill())));
      const [a, b] = nodes as [(typeof nodes)[number], (typeof nodes)[number]];
      const owner = await register(b.url, 's5');
      const seed = randomBytes(8).toString('hex');
      const prefix = `S5-${seed.slice(0, 6).toUpperCase()}`;
      const countAlarms = await seedFleet(db.url, owner.id, deviceCount, seed, prefix);

      // Subscribers on node B; each delivery's latency from the send time the fleet wrote into the description.
      const deliveries: Delivery[][] = [];
      for (let s = 0; s < SUBSCRIBERS; s++) {
        const client = await connect(b.url, owner.token);
        clients.push(client);
        const got: Delivery[] = [];
        deliveries.push(got);
        client.subscribe<{ alarms: { id: string; description: string | null } }>(
          { query: 'subscription { alarms { id description } }' },
          {
            next: (msg) => {
              const at = wallMs();
              const [round, rate, sentAt] = (msg.data?.alarms.description ?? '').split(':').map(Number);
              if (round && rate && sentAt) got.push({ round, rate, sentAt, at });
            },
            error: (err) => ctx.progress(`subscriber error: ${JSON.stringify(err).slice(0, 200)}`),
            complete: () => {},
          },
        );
      }
      await sleep(500);

      fleet = await startChild(
        fileURLToPath(import.meta.url),
        ['fleet', '--url', `${a.url.replace(/^http/, 'ws')}/devices/ws`, '--seed', seed, '--prefix', prefix, '--devices', String(deviceCount), '--rounds', String(ctx.rounds), '--step-ms', String(stepMs), '--drain-ms', String(drainMs), '--max-drain-ms', String(maxDrainMs)],
        {},
        { readyTimeoutMs: 120_000 },
      );
      ctx.progress(`set up: 2 nodes, ${deviceCount} devices on node A's device channel, ${SUBSCRIBERS} subscribers on node B`);
      // Where the CPU goes over every step (drains included): which process limits the rate on 2 cores.
      const dbName = new URL(db.url).pathname.slice(1);
      const cpuOf = () => ({
        a: cpuSecondsOf(a.proc.pid!),
        b: cpuSecondsOf(b.proc.pid!),
        db: databaseBackendCpuSeconds(dbName),
        fleet: cpuSecondsOf(fleet!.pid),
        subscribers: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6,
      });
      const cpu0 = cpuOf();
      const statements0 = await Promise.all([statementsOf(a.url), statementsOf(b.url)]);

      const steps: StepReport[] = [];
      const total = ctx.rounds * RATES.length;
      const deadline = Date.now() + total * (stepMs + maxDrainMs + 5000) + 30_000;
      while (steps.length < total) {
        for (const line of fleet.lines.splice(0)) {
          if (!line.startsWith('STEP ')) continue;
          const step = JSON.parse(line.slice(5)) as StepReport;
          steps.push(step);
          if (step.rate === RATES.at(-1)) {
            const summary = steps.filter((s) => s.round === step.round).map((s) => `${s.rate}/s offered: ${Math.round(s.acked / ((Math.max(s.end, s.lastAck) - s.start) / 1000))}/s stored`);
            ctx.progress(`round ${step.round}/${ctx.rounds}: ${summary.join(' · ')}`);
          }
        }
        if (fleet.proc.exitCode !== null && steps.length < total) throw new Error(`fleet exited (${fleet.proc.exitCode}) after ${steps.length} steps`);
        if (Date.now() > deadline) throw new Error('fleet did not finish in time');
        await sleep(100);
      }
      const cpu1 = cpuOf();
      const statements1 = await Promise.all([statementsOf(a.url), statementsOf(b.url)]);
      await sleep(500);
      const stored = await countAlarms();

      const rows: ResultRow[] = [];
      const perRate = RATES.map((rate) => {
        const storedRates: number[] = [];
        const deliveredRates: number[] = [];
        const p50s: number[] = [];
        const p99s: number[] = [];
        let sent = 0;
        let deferred = 0;
        let delivered = 0;
        let expected = 0;
        for (const step of steps.filter((s) => s.rate === rate)) {
          sent += step.sent;
          deferred += step.deferred;
          storedRates.push(step.acked / ((Math.max(step.end, step.lastAck) - step.start) / 1000));
          // Every subscriber gets every alarm: per step, the slowest subscriber's figures count.
          const perSub = deliveries.map((got) => got.filter((d) => d.round === step.round && d.rate === rate));
          const worst = perSub.reduce((w, g) => (g.length < w.length ? g : w), perSub[0]!);
          const lastAt = Math.max(step.end, ...worst.map((d) => d.at));
          deliveredRates.push(worst.length / ((lastAt - step.start) / 1000));
          delivered += worst.length;
          expected += step.acked;
          const lat = perSub
            .flat()
            .map((d) => d.at - d.sentAt)
            .sort((x, y) => x - y);
          if (lat.length) {
            p50s.push(percentile(lat, 50));
            p99s.push(percentile(lat, 99));
          }
        }
        return { rate, stored: median(storedRates), delivered: median(deliveredRates), p50: median(p50s), p99: median(p99s), sent, deferred, deliveredTotal: delivered, expected };
      });
      const ackedTotal = steps.reduce((n, st) => n + st.acked, 0);
      const usPerAlarm = (k: keyof typeof cpu0) => Math.round(((cpu1[k] - cpu0[k]) * 1e6) / Math.max(1, ackedTotal));
      const cpuNote = `CPU µs per stored alarm over all steps: node A ${usPerAlarm('a')}, node B ${usPerAlarm('b')}, Postgres backends ${usPerAlarm('db')}, fleet ${usPerAlarm('fleet')}, bench process with the subscribers ${usPerAlarm('subscribers')}; SQL statements per stored alarm (vigil_db_statements_total): node A ${((statements1[0]! - statements0[0]!) / Math.max(1, ackedTotal)).toFixed(3)}, node B ${((statements1[1]! - statements0[1]!) / Math.max(1, ackedTotal)).toFixed(3)}`;
      ctx.progress(cpuNote);
      const lostNote = perRate.map((r) => `${r.rate}/s: ${r.sent} sent, ${r.deferred} held back at ${MAX_UNACKED} unacked, ${r.expected} stored, ${r.deliveredTotal} delivered to the slowest subscriber`).join('; ');
      const best = perRate.reduce((x, y) => (Math.min(y.stored, y.delivered) > Math.min(x.stored, x.delivered) ? y : x));
      for (const r of perRate) {
        const isLow = r.rate === RATES[0];
        const isBest = r === best;
        rows.push({
          scenario: 'S5',
          metric: `${r.rate / 1000}k/s offered: stored / delivered alarms/s, p50 / p99 post->delivery`,
          unit: 'alarms/s stored',
          ours: r.stored,
          peers: [],
          goal: isLow ? 'p99 < 50 ms at 1k/s' : isBest ? `>= ${GOAL_PER_S.toLocaleString('en-US')} alarms/s stored and delivered` : 'reported',
          pass: isLow ? r.p99 < 50 && r.delivered >= 0.95 * r.rate : isBest ? Math.min(r.stored, r.delivered) >= GOAL_PER_S : true,
          ratio: `${Math.round(r.delivered).toLocaleString('en-US')}/s delivered, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms`,
          note: isLow
            ? `${ctx.rounds} rounds; steps of ${stepMs / 1000} s at 1k, 5k, 20k/s, each followed by a drain until every event is acked (at least ${drainMs / 1000} s, at most ${maxDrainMs / 1000} s); ${deviceCount} devices on node A's device WebSocket channel (one connection each, events acked once stored), ${SUBSCRIBERS} graphql-ws subscribers on node B (one user owning every device); stored = acks/s, delivered = alarms/s reaching the slowest subscriber; alarms in the database at the end: ${stored}. ${lostNote}. ${cpuNote}.`
            : undefined,
        });
      }
      return rows;
    } finally {
      await fleet?.stop();
      await Promise.allSettled(clients.map((c) => c.dispose()));
      await stopNodes();
      await db.drop();
    }
  },
};

export default scenario;

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'fleet') await runFleet();
