// A fleet of simulated devices on the device WebSocket, spread over several load processes
// (bench/lib/device-load-worker.ts), and the direct-SQL provisioning that gives them credentials.
import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { ROOT } from './harness';

export interface WorkerSpec {
  /** Keys derive from it, so no credentials travel between processes. */
  seed: string;
  prefix: string;
  from: number;
  to: number;
  /** Hellos in flight at once in this process. */
  concurrency: number;
}

export type WorkerRequest = { type: 'connect'; id: number; url: string } | { type: 'stats'; id: number } | { type: 'stop'; id: number };

export interface FleetStats {
  devices: number;
  /** Devices welcomed at least once. */
  welcomed: number;
  /** Sockets open after welcome right now. */
  open: number;
  /** Devices that never got a welcome after all retries. */
  failed: number;
  /** Sockets the server closed after welcome (dropped devices). */
  closesAfterWelcome: number;
  closeCodes: Record<string, number>;
  /** Heartbeat frames sent so far. */
  heartbeats: number;
  retries: number;
}

export const serialFor = (prefix: string, i: number) => `${prefix}-${String(i).padStart(6, '0')}`;
/** A device's key, derived from the fleet's seed: 256 bits like the real ones. */
export const deviceKeyFor = (seed: string, i: number) => createHash('sha256').update(`${seed}:${i}`).digest('base64url');

/**
 * Inserts `count` provisioned devices (and, with `ownerId`, open bindings) straight into the
 * database, in batches, with the hashes provisioning would store. The label code's argon2 hash is
 * a placeholder: these devices are never bound through the API.
 */
export async function insertDevices(databaseUrl: string, o: { prefix: string; seed: string; count: number; ownerEmail: string }): Promise<void> {
  // Loaded here, not at the top: the load workers import this module and need none of it.
  const { deviceKeyHash, ingestTokenHash } = await import('../../src/devices/catalog/provisioning');
  const { default: postgres } = await import('postgres');
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const [owner] = await sql<{ id: string }[]>`insert into users (email, password_hash) values (${o.ownerEmail}, 'unused') returning id`;
    for (let start = 0; start < o.count; start += 2000) {
      const rows = [];
      for (let i = start; i < Math.min(o.count, start + 2000); i++) {
        rows.push({
          serial: serialFor(o.prefix, i),
          model: 'DS-2CD2143G2-I',
          channels: 1,
          verification_code_hash: 'unused',
          device_key_hash: deviceKeyHash(deviceKeyFor(o.seed, i)),
          ingest_token_hash: ingestTokenHash(`ingest:${o.seed}:${i}`),
        });
      }
      const ids = await sql<{ id: string; serial: string }[]>`insert into devices ${sql(rows)} returning id, serial`;
      await sql`insert into bindings ${sql(ids.map((d) => ({ device_id: d.id, owner_id: owner!.id, name: d.serial })))}`;
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export interface Fleet {
  /** Starts the ramp against `url` (the processes start before the server, to save set-up time). */
  connect(url: string): Promise<void>;
  /** Resolves when every worker finished its ramp (each device welcomed or given up). */
  ramped: Promise<void>;
  stats(): Promise<FleetStats>;
  pids: number[];
  stop(): Promise<void>;
}

/** Starts `workers` load processes that will hold `count` devices between them once told where to connect. */
export async function startFleet(o: { seed: string; prefix: string; count: number; workers: number; concurrency: number; onProgress?: (s: FleetStats) => void }): Promise<Fleet> {
  const procs: ChildProcess[] = [];
  const latest = new Map<ChildProcess, FleetStats>();
  const pending = new Map<number, (m: { stats?: FleetStats }) => void>();
  let nextId = 1;
  const ramps: Promise<void>[] = [];
  const per = Math.ceil(o.count / o.workers);
  const readies: Promise<void>[] = [];
  let lastProgress = 0;
  for (let w = 0; w < o.workers; w++) {
    const spec: WorkerSpec = {
      seed: o.seed,
      prefix: o.prefix,
      from: w * per,
      to: Math.min(o.count, (w + 1) * per),
      concurrency: o.concurrency,
    };
    const proc = fork(path.join(ROOT, 'bench/lib/device-load-worker.ts'), [], {
      cwd: ROOT,
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, DEVICE_LOAD_SPEC: JSON.stringify(spec) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    procs.push(proc);
    let rampDone!: () => void;
    ramps.push(new Promise((r) => (rampDone = r)));
    readies.push(
      new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('device load worker did not start within 30 s')), 30_000);
        proc.once('exit', (code) => {
          clearTimeout(t);
          rampDone();
          reject(new Error(`device load worker exited (${code})`));
        });
        proc.on('message', (m: { type: string; id?: number; stats?: FleetStats }) => {
          if (m.stats) latest.set(proc, m.stats);
          if (m.type === 'ready') {
            clearTimeout(t);
            resolve();
          }
          if (m.type === 'ramped') rampDone();
          if ((m.type === 'progress' || m.type === 'ramped') && o.onProgress && Date.now() - lastProgress > 2000) {
            lastProgress = Date.now();
            o.onProgress(sum([...latest.values()]));
          }
          if (m.id !== undefined) pending.get(m.id)?.(m);
        });
      }),
    );
  }
  const ask = (proc: ChildProcess, type: 'stats' | 'stop' | 'connect', url = '') =>
    new Promise<{ stats?: FleetStats }>((resolve, reject) => {
      if (!proc.connected) return resolve({});
      const id = nextId++;
      const t = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`device load worker did not answer ${type}`));
      }, 10_000);
      pending.set(id, (m) => {
        clearTimeout(t);
        pending.delete(id);
        resolve(m);
      });
      proc.send((type === 'connect' ? { type, id, url } : { type, id }) satisfies WorkerRequest);
    });
  const stopAll = async () => {
    await Promise.allSettled(procs.map((p) => ask(p, 'stop')));
    await Promise.allSettled(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            const t = setTimeout(() => p.kill('SIGKILL'), 3000);
            p.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
  };
  try {
    await Promise.all(readies);
  } catch (err) {
    await stopAll();
    throw err;
  }
  return {
    async connect(url) {
      await Promise.all(procs.map((p) => ask(p, 'connect', url)));
    },
    ramped: Promise.all(ramps).then(() => {}),
    pids: procs.map((p) => p.pid!),
    async stats() {
      const all = await Promise.all(procs.map((p) => ask(p, 'stats')));
      return sum(all.map((m) => m.stats!).filter(Boolean));
    },
    stop: stopAll,
  };
}

/** Counters of a fleet of `devices` that has done nothing yet. */
export function emptyFleetStats(devices: number): FleetStats {
  return { devices, welcomed: 0, open: 0, failed: 0, closesAfterWelcome: 0, closeCodes: {}, heartbeats: 0, retries: 0 };
}

function sum(all: FleetStats[]): FleetStats {
  const out = emptyFleetStats(0);
  for (const s of all) {
    out.devices += s.devices;
    out.welcomed += s.welcomed;
    out.open += s.open;
    out.failed += s.failed;
    out.closesAfterWelcome += s.closesAfterWelcome;
    out.heartbeats += s.heartbeats;
    out.retries += s.retries;
    for (const [c, n] of Object.entries(s.closeCodes)) out.closeCodes[c] = (out.closeCodes[c] ?? 0) + n;
  }
  return out;
}
