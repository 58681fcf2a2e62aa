import { randomBytes } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { tables, type Db } from '../../db/index';

/**
 * A named lease in the `leases` table: at most one holder at a time, until it expires or is
 * released. Lets one gateway node run a job (the registry sweeper, retention) while the others
 * stand by, and hands it over when that node dies (the lease simply runs out).
 */
export interface Lease {
  /** Takes or renews the lease for `ttlMs`; true when this holder has it. Never throws for contention. */
  tryAcquire(): Promise<boolean>;
  /** Gives the lease up if this holder has it, so another node can take over at once. */
  release(): Promise<void>;
}

export interface LeaseOptions {
  name: string;
  /** This node's id (config.nodeId). */
  holder: string;
  ttlMs: number;
  clock: () => Date;
}

export function createLease(db: Db, opts: LeaseOptions): Lease {
  const { leases } = tables;
  return {
    async tryAcquire() {
      const now = opts.clock();
      const expiresAt = new Date(now.getTime() + opts.ttlMs);
      const rows = await db
        .insert(leases)
        .values({ name: opts.name, holder: opts.holder, expiresAt })
        .onConflictDoUpdate({
          target: leases.name,
          set: { holder: opts.holder, expiresAt },
          setWhere: sql`leases.holder = ${opts.holder} or leases.expires_at < ${now.toISOString()}::timestamptz`,
        })
        .returning({ holder: leases.holder });
      return rows.length > 0;
    },
    async release() {
      await db
        .update(leases)
        .set({ expiresAt: new Date(0) })
        .where(and(eq(leases.name, opts.name), eq(leases.holder, opts.holder)));
    },
  };
}

/** A background loop started and stopped with the app (same shape as app.ts's Worker). */
export interface LeasedJob {
  start(): void;
  stop(): Promise<void>;
  /** One round now, if the lease can be had; resolves to whether it ran. For tests and start-up. */
  runOnce(): Promise<boolean>;
}

/**
 * Runs `run` every `intervalMs` on whichever node holds the lease `name`. The lease lives three
 * intervals, so a dead holder is replaced within that time; errors are logged and the loop goes on.
 */
export function createLeasedJob(
  db: Db,
  opts: { name: string; holder: string; intervalMs: number; clock: () => Date; log: Logger; run: () => Promise<void> },
): LeasedJob {
  // Unique per instance: two processes (or two apps in one test process) may share a node id.
  const lease = createLease(db, { name: opts.name, holder: `${opts.holder}#${randomBytes(4).toString('hex')}`, ttlMs: opts.intervalMs * 3, clock: opts.clock });
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<boolean> | undefined;
  let stopped = true;

  const runOnce = async (): Promise<boolean> => {
    if (!(await lease.tryAcquire())) return false;
    await opts.run();
    return true;
  };
  const tick = () => {
    running = runOnce()
      .catch((err) => {
        opts.log.warn({ err, job: opts.name }, 'background job failed');
        return false;
      })
      .finally(() => {
        running = undefined;
        if (!stopped) timer = setTimeout(tick, opts.intervalMs).unref();
      });
  };
  return {
    start() {
      if (!stopped) return;
      stopped = false;
      timer = setTimeout(tick, Math.floor(Math.random() * Math.min(1000, opts.intervalMs))).unref();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      if (running) await running.catch(() => false);
      await lease.release().catch(() => {});
    },
    runOnce,
  };
}
