// S7: 10,000 simulated devices on the device WebSocket of one gateway node, heartbeating.
// Memory per device (RSS delta), gateway CPU and SQL statements per heartbeat over steady windows,
// and that every device stays ONLINE with no socket closed. P3 (a raw `ws` server with the
// protocol's least state, bench/peers/p3-device-ws.ts) holds its own fleet of the same size at
// the same time: the floor for memory per socket and CPU per heartbeat.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import postgres from 'postgres';
import { memoryAfterGc, memoryHookEnv, memoryHookNodeArgs } from '../lib/memory-probe';
import { ROOT, cpuSecondsOf, median, ratio, rssBytes, sleep, startChild, statementsOf, type ChildServer, type ResultRow, type Scenario } from '../lib/harness';
import { insertDevices, startFleet, type Fleet, type FleetStats } from '../lib/device-load';
import { freshDatabase } from '../lib/live';
import { clusterSecrets } from '../../test/helpers/gateway-process';

/** Shortened from the default 30 s so heartbeat cost shows within the time budget (2,000 beats/s at 10,000 devices). */
const HEARTBEAT_S = 5;
/** S7_PROFILE=<dir>: the gateway writes a V8 CPU profile there (it is then stopped with SIGTERM, not killed). */
const PROFILE_DIR = process.env.S7_PROFILE;
/** The scenario's time budget in a full run (S7_BUDGET_S overrides it, to see a ramp through on a busy machine). */
const BUDGET_MS = Number(process.env.S7_BUDGET_S ?? 90) * 1000;
/** Hellos in flight per load process during the ramp. */
const HELLOS_IN_FLIGHT = Number(process.env.S7_HELLOS_IN_FLIGHT ?? 50);

const scenario: Scenario = {
  id: 'S7',
  title: '10,000 simulated devices on the device WebSocket, heartbeating',
  async run(ctx) {
    const count = ctx.quick ? 1000 : 10_000;
    const windowMs = ctx.quick ? 3000 : 4000;
    const seed = randomBytes(8).toString('hex');
    const db = await freshDatabase(ctx.databaseUrl);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    let gateway = undefined as Awaited<ReturnType<typeof startGatewayProcess>> | undefined;
    let peer = undefined as ChildServer | undefined;
    const fleets: Fleet[] = [];
    try {
      const started = Date.now();
      // Every process starts at once (each takes seconds to load under tsx); the fleets wait to be told where to connect.
      const show = (who: string) => (s: FleetStats) => ctx.progress(`ramp ${who}: ${s.welcomed}/${s.devices} welcomed, ${s.retries} retries, ${s.failed} failed`);
      const fleetOptions = { seed, prefix: 'S7', count, workers: 2, concurrency: HELLOS_IN_FLIGHT };
      const starting = await Promise.allSettled([
        startGatewayProcess(
          { ...clusterSecrets(), ...memoryHookEnv, DATABASE_URL: db.url, REDIS_URL: ctx.redisUrl, NODE_ENV: 'production', DEVICE_HEARTBEAT_S: String(HEARTBEAT_S), NODE_ID: 's7-a' },
          [...memoryHookNodeArgs, ...(PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : [])],
        ).then((g) => (gateway = g)),
        startChild('bench/peers/p3-device-ws.ts', [seed, 'S7', String(count), String(HEARTBEAT_S)], memoryHookEnv, { nodeArgs: memoryHookNodeArgs }).then((p) => (peer = p)),
        startFleet({ ...fleetOptions, onProgress: show('ours') }).then((f) => (fleets[0] = f)),
        startFleet(fleetOptions).then((f) => (fleets[1] = f)),
      ]);
      const failed = starting.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      const [ours, theirs] = fleets as [Fleet, Fleet];
      if (!gateway || !peer) throw new Error('unreachable');
      const base = gateway.url;
      const gatewayPid = gateway.proc.pid!;
      await insertDevices(db.url, { prefix: 'S7', seed, count, ownerEmail: `s7-${seed}@bench.example.com` });
      ctx.progress(`set-up ${((Date.now() - started) / 1000).toFixed(1)} s: ${count} devices provisioned, gateway, P3 and 4 load processes up`);

      await sleep(500);
      // Heap after a forced GC is the steady figure; RSS drifts with the allocator (see S3).
      const [heapBeforeOurs, heapBeforePeer] = await Promise.all([memoryAfterGc(gatewayPid), memoryAfterGc(peer.pid)]);
      const rssBefore = { ours: rssBytes(gatewayPid), peer: rssBytes(peer.pid) };
      // P3's fleet first (it ramps in seconds), so the two ramps do not share the machine.
      const peerRampStart = Date.now();
      await theirs.connect(peer.url);
      const peerRamped = await Promise.race([theirs.ramped.then(() => true), sleep(20_000).then(() => false)]);
      const peerRampS = (Date.now() - peerRampStart) / 1000;
      ctx.progress(`P3 ramp ${peerRamped ? 'done' : 'cut at 20 s'} in ${peerRampS.toFixed(1)} s: ${(await theirs.stats()).welcomed} welcomed`);
      const rampStart = Date.now();
      const rampCpu0 = cpuSecondsOf(gatewayPid);
      await ours.connect(`${base.replace(/^http/, 'ws')}/devices/ws`);
      // The scenario's budget (90 s), less set-up, windows and tear-down, is the ramp's. A slower ramp
      // is reported (hellos/s, devices held) and keeps going during the windows, not waited for.
      const rampBudgetMs = Math.max(20_000, BUDGET_MS - (Date.now() - started) - ctx.rounds * windowMs - 10_000);
      const rampedInTime = await Promise.race([ours.ramped.then(() => true), sleep(rampBudgetMs).then(() => false)]);
      const rampS = (Date.now() - rampStart) / 1000;
      const afterRamp = await ours.stats();
      const cpuPerHelloMs = ((cpuSecondsOf(gatewayPid) - rampCpu0) * 1000) / Math.max(1, afterRamp.welcomed);
      const onlineCount = async () => Number((await sql<{ n: string }[]>`select count(*) as n from devices where online`)[0]!.n);
      const deadline = Date.now() + 10_000;
      while (rampedInTime && (await onlineCount()) < count && Date.now() < deadline) await sleep(200);
      const onlineAfterRamp = await onlineCount();
      const helloRate = afterRamp.welcomed / rampS;
      ctx.progress(
        `ramp ${rampedInTime ? 'done' : 'cut at its budget'} in ${rampS.toFixed(1)} s: ${afterRamp.welcomed} welcomed (${helloRate.toFixed(0)} hellos/s, gateway ${cpuPerHelloMs.toFixed(2)} ms CPU per hello); ${onlineAfterRamp}/${count} ONLINE in the database`,
      );

      // Steady windows: both fleets heartbeat throughout; each window measures both processes at once.
      const perDevice = { ours: [] as number[], peer: [] as number[] };
      const cpuPerBeat = { ours: [] as number[], peer: [] as number[] };
      const statementsPerBeat: number[] = [];
      /** Windows with no hello in them (the ramp had ended): only these measure heartbeats alone. */
      const steady: boolean[] = [];
      for (let round = 1; round <= ctx.rounds; round++) {
        const [a0, b0] = await Promise.all([ours.stats(), theirs.stats()]);
        const cpu0 = {
          ours: cpuSecondsOf(gatewayPid),
          peer: cpuSecondsOf(peer.pid),
        };
        const st0 = await statementsOf(base);
        await sleep(windowMs);
        const [a1, b1] = await Promise.all([ours.stats(), theirs.stats()]);
        const cpu1 = {
          ours: cpuSecondsOf(gatewayPid),
          peer: cpuSecondsOf(peer.pid),
        };
        const st1 = await statementsOf(base);
        const beats = {
          ours: a1.heartbeats - a0.heartbeats,
          peer: b1.heartbeats - b0.heartbeats,
        };
        cpuPerBeat.ours.push(((cpu1.ours - cpu0.ours) * 1e6) / beats.ours);
        cpuPerBeat.peer.push(((cpu1.peer - cpu0.peer) * 1e6) / beats.peer);
        // The /metrics read between the two samples is itself no statement.
        statementsPerBeat.push((st1 - st0) / beats.ours);
        steady.push(a1.welcomed === a0.welcomed && b1.welcomed === b0.welcomed);
        perDevice.ours.push((rssBytes(gatewayPid) - rssBefore.ours) / 1024 / a1.open);
        perDevice.peer.push((rssBytes(peer.pid) - rssBefore.peer) / 1024 / b1.open);
        ctx.progress(
          `round ${round}/${ctx.rounds}: ours ${cpuPerBeat.ours.at(-1)!.toFixed(1)} µs CPU/beat, ${statementsPerBeat.at(-1)!.toFixed(3)} stmts/beat, ${perDevice.ours.at(-1)!.toFixed(1)} KiB/device · P3 ${cpuPerBeat.peer.at(-1)!.toFixed(1)} µs/beat, ${perDevice.peer.at(-1)!.toFixed(1)} KiB/device · ${beats.ours} beats${steady.at(-1) ? '' : ', hellos too'}`,
        );
      }

      // After the windows (a forced GC inside one would skew its CPU figure): heap per open socket.
      const [heapAfterOurs, heapAfterPeer, openNow] = await Promise.all([memoryAfterGc(gatewayPid), memoryAfterGc(peer.pid), Promise.all([ours.stats(), theirs.stats()])]);
      const heapPer = {
        ours: (heapAfterOurs.heapUsed - heapBeforeOurs.heapUsed) / 1024 / openNow[0].open,
        peer: (heapAfterPeer.heapUsed - heapBeforePeer.heapUsed) / 1024 / openNow[1].open,
      };

      // The sweeper's scan at this size (it runs every 5 s on the lease holder).
      const plan = await sql.unsafe(`explain (analyze, format json) select id from devices where online and connection_id is not null and last_seen_at < now() - interval '12.5 seconds' limit 5000`);
      const sweepMs = Number((plan[0] as unknown as { 'QUERY PLAN': Array<{ 'Execution Time': number }> })['QUERY PLAN'][0]!['Execution Time']);
      const [a, b] = await Promise.all([ours.stats(), theirs.stats()]);
      const onlineAtEnd = await onlineCount();
      const dropped = a.closesAfterWelcome + a.failed;
      const held = Math.min(onlineAtEnd, a.open);
      const codes = Object.entries(a.closeCodes)
        .map(([c, n]) => `${c}x${n}`)
        .join(' ');
      const size = `${count.toLocaleString('en-US')} devices, heartbeat ${HEARTBEAT_S} s (shortened from 30 s), ${ctx.rounds} windows of ${windowMs / 1000} s, both fleets at once, 2 load processes each, budget ${BUDGET_MS / 1000} s${BUDGET_MS === 90_000 ? '' : ' (S7_BUDGET_S)'}`;
      // Per-heartbeat figures from the windows without hellos when there are any; else from all, said so in the note.
      const steadyCount = steady.filter(Boolean).length;
      const pick = (xs: number[]) => (steadyCount ? xs.filter((_, i) => steady[i]) : xs);
      const m = {
        perOurs: median(perDevice.ours),
        perPeer: median(perDevice.peer),
        cpuOurs: median(pick(cpuPerBeat.ours)),
        cpuPeer: median(pick(cpuPerBeat.peer)),
        stmts: median(pick(statementsPerBeat)),
      };
      const windowsNote = steadyCount
        ? `median of the ${steadyCount} of ${ctx.rounds} windows without hellos`
        : `all ${ctx.rounds} windows still had hellos in them (the ramp had not ended): hello cost included`;
      const rows: ResultRow[] = [
        {
          scenario: 'S7',
          metric: 'devices held ONLINE on one node',
          unit: 'devices',
          ours: held,
          peers: [{ name: 'P3 raw ws', value: b.open }],
          goal: `>= 10,000 devices per node, none dropped`,
          pass: held >= 10_000 && dropped === 0 && onlineAtEnd === count,
          ratio: `${onlineAtEnd}/${count} ONLINE at the end`,
          note: `${size}; ramp ${rampS.toFixed(1)} s${rampedInTime ? '' : ' (cut at its budget)'}, ${helloRate.toFixed(0)} hellos/s with ${HELLOS_IN_FLIGHT} in flight per load process, ${cpuPerHelloMs.toFixed(2)} ms gateway CPU per hello (P3: ${peerRampS.toFixed(1)} s); ${a.closesAfterWelcome} closed after welcome, ${a.failed} never welcomed${codes ? ` (${codes})` : ''}, ${a.retries} retried hellos; sweeper scan ${sweepMs.toFixed(1)} ms`,
        },
        {
          scenario: 'S7',
          metric: 'gateway RSS per device socket',
          unit: 'KiB',
          ours: m.perOurs,
          peers: [{ name: 'P3 raw ws', value: m.perPeer }],
          goal: 'reported',
          pass: true,
          ratio: `${ratio(m.perOurs, m.perPeer)} P3`,
          note: `RSS delta from before the ramp over open sockets, median of ${ctx.rounds} samples; ${((1024 * 1024) / m.perOurs).toFixed(0)} devices per GiB`,
        },
        {
          scenario: 'S7',
          metric: 'gateway V8 heap per device socket, after a forced GC',
          unit: 'KiB',
          ours: heapPer.ours,
          peers: [{ name: 'P3 raw ws', value: heapPer.peer }],
          goal: 'reported',
          pass: true,
          ratio: `${ratio(heapPer.ours, heapPer.peer)} P3`,
          note: `heapUsed after two forced full GCs (bench-only memory hook, as S3), before the ramp and after the windows, over the sockets open then (${openNow[0].open} / ${openNow[1].open}); steadier than the RSS row, which drifts with the allocator`,
        },
        {
          scenario: 'S7',
          metric: 'gateway CPU per heartbeat',
          unit: 'µs',
          ours: m.cpuOurs,
          peers: [{ name: 'P3 raw ws', value: m.cpuPeer }],
          goal: 'reported',
          pass: true,
          ratio: `${ratio(m.cpuOurs, m.cpuPeer)} P3`,
          note: `process CPU (user+sys) over the window / heartbeats the clients sent, background jobs included, ${windowsNote}; ${m.stmts.toFixed(3)} SQL statements per heartbeat (vigil_db_statements_total)`,
        },
      ];
      return rows;
    } finally {
      // The gateway first: its shutdown records devices OFFLINE, which needs nothing from the fleets.
      await gateway?.kill(PROFILE_DIR ? 'SIGTERM' : 'SIGKILL');
      await Promise.allSettled(fleets.filter(Boolean).map((f) => f.stop()));
      await peer?.stop();
      await sql.end({ timeout: 5 });
      await db.drop();
    }
  },
};

/** `src/main.ts` as its own process, like test/helpers/gateway-process.ts's, but with node flags (a CPU profile). */
async function startGatewayProcess(env: Record<string, string>, nodeArgs: string[]) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'vigil-s7-'));
  const proc = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) =>
    proc.once('exit', () => {
      rmSync(dataDir, { recursive: true, force: true });
      resolve();
    }),
  );
  const tail: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not listen within 60 s\n${tail.join('\n')}`)), 60_000);
    const onLine = (line: string) => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      const m = /"url":"(http:\/\/[^"]+)".*vigil gateway listening/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    createInterface({ input: proc.stdout! }).on('line', onLine);
    createInterface({ input: proc.stderr! }).on('line', onLine);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`gateway exited early\n${tail.join('\n')}`));
    });
  });
  return {
    url,
    proc,
    async kill(signal: NodeJS.Signals) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
}

export default scenario;
