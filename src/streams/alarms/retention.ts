import type { Logger } from 'pino';
import type { Db } from '../../db/index';
import type { AlarmStore } from './alarm-store';
import { createLeasedJob, type LeasedJob } from '../bus/lease';

export interface RetentionOptions {
  db: Db;
  clock: () => Date;
  log: Logger;
  store: Pick<AlarmStore, 'pruneBefore'>;
  nodeId: string;
  /** ALARM_RETENTION_DAYS: alarms received longer ago than this are deleted. Default 90. */
  retentionDays: number;
  /** How often the job runs (on the node holding its lease). Default one hour. */
  intervalMs?: number;
  /** Other time-bounded records pruned in the same run (device commands); each returns rows deleted. */
  alsoPrune?: ReadonlyArray<{ name: string; before: (now: Date) => Date; prune: (before: Date) => Promise<number> }>;
  /** Rows deleted per statement, so a large backlog never holds long locks. Default 5000. */
  batch?: number;
}

/**
 * Alarm retention: deletes alarms (and their de-duplication receipts) received more than
 * `retentionDays` ago, and whatever `alsoPrune` names (the app passes device commands). Runs on one
 * node at a time under the `alarm-retention` lease, in batches; a run stops after 200 batches
 * and the next run continues.
 */
export function createRetentionJob(opts: RetentionOptions): LeasedJob & { pruneNow(): Promise<number> } {
  const batch = opts.batch ?? 5000;
  const log = opts.log.child({ component: 'retention' });
  async function pruneNow(): Promise<number> {
    const now = opts.clock();
    const cutoff = new Date(now.getTime() - opts.retentionDays * 86_400_000);
    let total = 0;
    for (let i = 0; i < 200; i++) {
      const n = await opts.store.pruneBefore(cutoff, batch);
      total += n;
      if (n < batch) break;
    }
    const others: Record<string, number> = {};
    for (const o of opts.alsoPrune ?? []) others[o.name] = await o.prune(o.before(now));
    if (total || Object.values(others).some(Boolean)) log.info({ alarms: total, ...others, cutoff: cutoff.toISOString() }, 'pruned old records');
    return total;
  }
  const job = createLeasedJob(opts.db, {
    name: 'alarm-retention',
    holder: opts.nodeId,
    intervalMs: opts.intervalMs ?? 3600_000,
    clock: opts.clock,
    log,
    run: async () => {
      await pruneNow();
    },
  });
  return { ...job, pruneNow };
}
