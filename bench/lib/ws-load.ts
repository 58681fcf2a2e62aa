// The WebSocket load client: many sockets spread over several processes (bench/lib/ws-load-worker.ts),
// so the client side is not one event loop's bottleneck. Each request goes to every worker; the
// replies are merged.
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './harness';
import type { ConnSpec, Post, Request } from './ws-load-worker';

export type { ConnSpec, Post, SubSpec } from './ws-load-worker';

export interface TakeResult {
  latencies: number[];
  received: number;
  missing: number;
  duplicates: number;
  outOfOrder: number;
  errors: number;
  closeCodes: Record<string, number>;
}

interface Worker {
  proc: ChildProcess;
  pending: Map<number, { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }>;
}

export interface WsLoad {
  /** Opens `conns`, dealt round-robin over the workers; resolves with how many opened. */
  open(conns: ConnSpec[], opts?: { concurrency?: number; timeoutMs?: number }): Promise<{ opened: number; failed: number; ms: number }>;
  /** Latencies of receipts against `posts` since the last take, and what is missing or duplicated. */
  take(posts: Post[]): Promise<TakeResult>;
  /** The last raw message a socket received (to capture a real `next` frame). */
  sample(): Promise<string>;
  /** Every socket whose URL starts with `urlPrefix` drops at once (no close handshake). */
  drop(urlPrefix: string): Promise<void>;
  /** Every dropped socket reconnects, resuming with its cursor, spread over `spreadMs`; wall time when the last got its first message after resubscribing. */
  reconnect(urlPrefix: string, spreadMs: number, timeoutMs: number): Promise<{ last: number; pending: number; reopenFailed: number }>;
  /** Closes every socket (the workers stay). */
  closeAll(): Promise<void>;
  /** Ends the workers. */
  stop(): Promise<void>;
}

export async function startWsLoad(workers: number): Promise<WsLoad> {
  const script = path.join(ROOT, 'bench', 'lib', 'ws-load-worker.ts');
  let seq = 0;
  const ws: Worker[] = [];
  const started = await Promise.allSettled(
    Array.from({ length: workers }, () =>
      new Promise<Worker>((resolve, reject) => {
        const proc = fork(script, [], { cwd: ROOT, execArgv: ['--import', 'tsx', '--max-old-space-size=1024'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        const w: Worker = { proc, pending: new Map() };
        const timer = setTimeout(() => reject(new Error('load worker did not start')), 20_000);
        proc.on('message', (m: { ready?: boolean; seq?: number; result?: unknown; error?: string }) => {
          if (m.ready) {
            clearTimeout(timer);
            resolve(w);
            return;
          }
          const p = w.pending.get(m.seq!);
          if (!p) return;
          w.pending.delete(m.seq!);
          clearTimeout(p.timer);
          if (m.error) p.reject(new Error(m.error));
          else p.resolve(m.result);
        });
        proc.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`load worker exited (${code})`));
          for (const p of w.pending.values()) p.reject(new Error(`load worker exited (${code})`));
        });
      }),
    ),
  );
  for (const s of started) if (s.status === 'fulfilled') ws.push(s.value);
  if (ws.length < workers) {
    for (const w of ws) w.proc.kill('SIGKILL');
    throw new Error('load workers did not start');
  }

  const call = <T>(w: Worker, req: Request, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const id = ++seq;
      const timer = setTimeout(() => {
        w.pending.delete(id);
        reject(new Error(`load worker: ${req.op} timed out`));
      }, timeoutMs);
      w.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      w.proc.send({ seq: id, req });
    });
  const all = <T>(req: Request, timeoutMs: number) => Promise.all(ws.map((w) => call<T>(w, req, timeoutMs)));

  return {
    async open(conns, opts = {}) {
      const timeoutMs = opts.timeoutMs ?? 20_000;
      const parts = ws.map((): ConnSpec[] => []);
      conns.forEach((c, i) => parts[i % ws.length]!.push(c));
      const rs = await Promise.all(
        ws.map((w, i) => call<{ opened: number; failed: number; ms: number }>(w, { op: 'open', conns: parts[i]!, concurrency: opts.concurrency ?? 50, timeoutMs }, timeoutMs * 4 + 60_000)),
      );
      return { opened: rs.reduce((a, r) => a + r.opened, 0), failed: rs.reduce((a, r) => a + r.failed, 0), ms: Math.max(...rs.map((r) => r.ms)) };
    },
    async take(posts) {
      const rs = await all<TakeResult>({ op: 'take', posts }, 30_000);
      const closeCodes: Record<string, number> = {};
      for (const r of rs) for (const [k, v] of Object.entries(r.closeCodes)) closeCodes[k] = (closeCodes[k] ?? 0) + v;
      return {
        latencies: rs.flatMap((r) => r.latencies),
        received: rs.reduce((a, r) => a + r.received, 0),
        missing: rs.reduce((a, r) => a + r.missing, 0),
        duplicates: rs.reduce((a, r) => a + r.duplicates, 0),
        outOfOrder: rs.reduce((a, r) => a + r.outOfOrder, 0),
        errors: Math.max(...rs.map((r) => r.errors)),
        closeCodes,
      };
    },
    async sample() {
      const rs = await all<{ raw: string }>({ op: 'sample' }, 10_000);
      return rs.find((r) => r.raw)?.raw ?? '';
    },
    async drop(urlPrefix) {
      await all({ op: 'drop', urlPrefix }, 30_000);
    },
    async reconnect(urlPrefix, spreadMs, timeoutMs) {
      const rs = await all<{ last: number; pending: number; reopenFailed: number }>({ op: 'reconnect', urlPrefix, spreadMs, timeoutMs }, timeoutMs + 30_000);
      return { last: Math.max(...rs.map((r) => r.last)), pending: rs.reduce((a, r) => a + r.pending, 0), reopenFailed: rs.reduce((a, r) => a + r.reopenFailed, 0) };
    },
    async closeAll() {
      await all({ op: 'close' }, 30_000);
    },
    async stop() {
      await Promise.allSettled(
        ws.map(
          (w) =>
            new Promise<void>((resolve) => {
              if (w.proc.exitCode !== null || w.proc.signalCode !== null) return resolve();
              const t = setTimeout(() => w.proc.kill('SIGKILL'), 3000);
              w.proc.once('exit', () => {
                clearTimeout(t);
                resolve();
              });
              w.proc.kill('SIGTERM');
            }),
        ),
      );
    },
  };
}
