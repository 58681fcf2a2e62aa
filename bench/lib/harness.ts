// The benchmark harness's shared vocabulary: what a scenario is, how contenders are alternated,
// how child processes (gateways, peers, load clients) are started and measured.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** One line of RESULTS.md: a measured figure of ours against each peer's, and whether the goal holds. */
export interface ResultRow {
  scenario: string;
  /** What was measured, e.g. "req/s, devices(first: 50), 64 connections". */
  metric: string;
  unit: string;
  /** Our median. */
  ours: number;
  /** Each peer's median, by peer name ("P1 Yoga"). Empty when the goal is absolute. */
  peers: { name: string; value: number }[];
  /** The goal in words, e.g. ">= 1.5x P1". */
  goal: string;
  pass: boolean;
  /** Ratios in words, e.g. "1.62x P1, 1.08x P0". */
  ratio: string;
  /** Anything a reader needs: sizes, rounds, what failed. */
  note?: string;
}

export interface BenchContext {
  /** Rounds per alternation (>= 5 unless BENCH_QUICK). */
  rounds: number;
  /** A Postgres URL where scratch databases may be created (see freshDatabase in lib/live.ts). */
  databaseUrl: string;
  redisUrl: string;
  /** Smaller sizes for a smoke run (`npm run bench -- --quick`); RESULTS.md marks such rows. */
  quick: boolean;
  /** One progress line (the runner prefixes the scenario id and elapsed time). */
  progress(message: string): void;
}

export interface Scenario {
  id: string;
  title: string;
  run(ctx: BenchContext): Promise<ResultRow[]>;
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export interface Contender<T = number> {
  name: string;
  /** One measurement; called once per round, contenders in turn (A B A B ...). */
  measure(round: number): Promise<T>;
}

/**
 * Runs `rounds` rounds of every contender in turn (A B C A B C ...), so drift on a shared machine
 * hits all of them alike, and returns every contender's values in round order.
 */
export async function alternate<T>(ctx: Pick<BenchContext, 'rounds' | 'progress'>, contenders: Contender<T>[], show: (v: T) => string = String): Promise<Map<string, T[]>> {
  const out = new Map<string, T[]>(contenders.map((c) => [c.name, []]));
  for (let round = 1; round <= ctx.rounds; round++) {
    const parts: string[] = [];
    for (const c of contenders) {
      const v = await c.measure(round);
      out.get(c.name)!.push(v);
      parts.push(`${c.name} ${show(v)}`);
    }
    ctx.progress(`round ${round}/${ctx.rounds}: ${parts.join(' · ')}`);
  }
  return out;
}

/** "1.62x" with two decimals. */
export const ratio = (ours: number, theirs: number) => `${(ours / theirs).toFixed(2)}x`;

export interface ChildServer {
  url: string;
  proc: ChildProcess;
  pid: number;
  /** Output lines so far. */
  lines: string[];
  stop(): Promise<void>;
}

/**
 * Starts a TypeScript program (a peer, a load client) as its own process with tsx and waits for it
 * to print `READY <url>` on stdout. Its stderr goes to ours when BENCH_VERBOSE is set.
 */
export function startChild(script: string, args: string[] = [], env: Record<string, string> = {}, opts: { nodeArgs?: string[]; readyTimeoutMs?: number } = {}): Promise<ChildServer> {
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', script, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', process.env.BENCH_VERBOSE ? 'inherit' : 'pipe'],
  });
  const lines: string[] = [];
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${script} did not print READY within ${opts.readyTimeoutMs ?? 30_000} ms\n${stderr}`));
    }, opts.readyTimeoutMs ?? 30_000);
    let buffered = '';
    proc.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let i: number;
      while ((i = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 1);
        lines.push(line);
        if (lines.length > 10_000) lines.shift();
        const m = /^READY (\S+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve({
            url: m[1]!,
            proc,
            pid: proc.pid!,
            lines,
            async stop() {
              if (proc.exitCode !== null || proc.signalCode !== null) return;
              proc.kill('SIGTERM');
              const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
              await exited;
              clearTimeout(t);
            },
          });
        }
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${code}) before READY\n${stderr}`));
    });
  });
}

/** Resident set size of a process, in bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
  return kb * 1024;
}

/** User + system CPU seconds a process has used so far (Linux /proc). */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
  return ticks / 100; // USER_HZ is 100 on Linux
}

/**
 * CPU seconds used so far by the Postgres backends serving `database` (their process title names
 * it), 0 when the server's processes are not visible here. Backends that exited are not counted,
 * so keep connections open across the span measured.
 */
export function databaseBackendCpuSeconds(database: string): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const title = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (title.startsWith('postgres: ') && title.includes(` ${database} `)) total += cpuSecondsOf(Number(entry));
    } catch {
      // The process ended meanwhile.
    }
  }
  return total;
}

/** SQL statements a gateway has run so far (`vigil_db_statements_total` on its /metrics; BEGIN/COMMIT not counted). */
export async function statementsOf(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(/^vigil_db_statements_total (\S+)/m.exec(text)?.[1] ?? NaN);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes on one machine. */
export const wallMs = () => performance.timeOrigin + performance.now();
