import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config';
import { readAdminToken } from '../lib/admin-token';
import { progressLine, provisionFleet, startSimulator, summaryLine, type Simulator } from './simulator';

export interface SimulateIo {
  out(line: string): void;
  err(line: string): void;
  env: NodeJS.ProcessEnv;
  /** Resolves when the run should end (SIGINT/SIGTERM by default); a function is given the running simulator. */
  until?: Promise<unknown> | ((sim: Simulator) => Promise<unknown>);
  /** Writes a progress line in place (a terminal) rather than one per interval. */
  tty?: boolean;
}

/** Thrown for bad options; the CLI prints it with the usage and exits 2. */
export class SimulateUsageError extends Error {}

const num = (name: string, raw: string | undefined, fallback: number, min: number, max: number) => {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) throw new SimulateUsageError(`--${name}: must be a number from ${min} to ${max}, got ${raw}`);
  return n;
};

/**
 * `vigil devices simulate`: provisions (or reuses) the devices through the operator endpoint,
 * connects them, and prints a progress line until stopped. Resolves to the exit code.
 */
export async function runSimulate(args: readonly string[], io: SimulateIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: {
        url: { type: 'string' },
        count: { type: 'string' },
        'alarm-rate': { type: 'string' },
        prefix: { type: 'string' },
        state: { type: 'string' },
        duration: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new SimulateUsageError((e as Error).message);
  }
  const count = Math.floor(num('count', values.count, 10, 1, 10_000));
  const alarmRate = num('alarm-rate', values['alarm-rate'], 0.2, 0, 100);
  const duration = values.duration === undefined ? undefined : num('duration', values.duration, 0, 1, 7 * 86_400);
  const prefix = values.prefix ?? 'SIM';
  if (!/^[A-Za-z0-9._-]{1,50}$/.test(prefix)) throw new SimulateUsageError('--prefix: 1-50 of A-Z a-z 0-9 . _ -');

  const config = loadConfig(io.env);
  const host = ['0.0.0.0', '::', '[::]'].includes(config.host) ? '127.0.0.1' : config.host;
  let wsUrl: URL;
  try {
    wsUrl = new URL(values.url ?? `ws://${host}:${config.port}/devices/ws`);
  } catch {
    throw new SimulateUsageError(`--url: not a URL: ${values.url}`);
  }
  if (wsUrl.protocol !== 'ws:' && wsUrl.protocol !== 'wss:') throw new SimulateUsageError(`--url: must be ws:// or wss://, got ${wsUrl.protocol}`);
  const adminUrl = new URL('/admin/devices', `${wsUrl.protocol === 'wss:' ? 'https:' : 'http:'}//${wsUrl.host}`).href;
  const token = config.adminToken ?? readAdminToken(config.dataDir);
  if (!token) {
    io.err('vigil: no admin token: set ADMIN_TOKEN, or run where DATA_DIR points at the gateway\'s data dir');
    return 78;
  }
  const stateFile = values.state ?? path.join(config.dataDir === ':memory:' ? '.' : config.dataDir, 'simulator-devices.json');

  let devices;
  try {
    devices = await provisionFleet({ adminUrl, adminToken: token, count, prefix, stateFile, onLog: io.err });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause;
    io.err(`vigil: ${cause?.code ? `cannot reach the gateway at ${adminUrl} (${cause.code})` : (e as Error).message}`);
    return cause?.code ? 3 : 1;
  }
  io.err(`simulating ${devices.length} devices at ${alarmRate} alarms/s each against ${wsUrl.href} (keys in ${stateFile})`);
  const started = Date.now();
  const sim = startSimulator({ url: wsUrl.href, devices, alarmRate, onLog: io.err });
  const interval = setInterval(() => (io.tty ? process.stderr.write(`\r${progressLine(sim.stats())}   `) : io.out(progressLine(sim.stats()))), io.tty ? 1000 : 5000);
  const stop = [typeof io.until === 'function' ? io.until(sim) : (io.until ?? signalled())];
  if (duration) stop.push(new Promise((r) => setTimeout(r, duration * 1000).unref()));
  await Promise.race(stop);
  clearInterval(interval);
  await sim.stop();
  if (io.tty) process.stderr.write('\n');
  io.out(progressLine(sim.stats()));
  io.out(summaryLine(sim.stats(), (Date.now() - started) / 1000));
  return 0;
}

function signalled(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}
