import type { Logger } from 'pino';
import type { Db } from '../db/index';
import { claimDueMessages, DISCARDED_KIND, dropDiscardedMessage, markMessageFailed, markMessageSent, openBody, REMOVED_SECRET, scheduleMessageRetry, type ClaimedMessage, type SecretBox } from './outbox';
import type { Transports } from './transports';

export interface DeliveryWorkerOptions {
  db: Db;
  clock: () => Date;
  log: Logger;
  transports: Transports;
  /** Opens sealed bodies (messages with secrets); without it, such messages fail. */
  box?: SecretBox;
  /** Safety-net poll for rows nobody kicked for (other nodes, crashes). Default 5 s. */
  pollIntervalMs?: number;
  /** Messages claimed per round. Default 10. */
  batchSize?: number;
  /** Attempts before a message is marked failed. Default 12 (about 18 minutes of backoff, past a reset code's life). */
  maxAttempts?: number;
  /** First retry delay; doubles per attempt, with jitter. Default 1 s. */
  baseDelayMs?: number;
  /** Ceiling of the retry delay. Default 5 min. */
  maxDelayMs?: number;
  /** How long a claimed message stays hidden from other workers while it is sent. Default 2 min. */
  leaseMs?: number;
  random?: () => number;
}

export interface DeliveryWorker {
  start(): void;
  /** Waits for the round in progress, then closes the transports. */
  stop(): Promise<void>;
  /** Runs a delivery round soon: call after committing a transaction that queued messages. */
  kick(): void;
}

/** Exponential backoff with "equal jitter": half the delay fixed, half random. */
export function retryDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const full = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(full / 2 + random() * (full / 2));
}

/**
 * Delivers the outbox: claims due rows (SKIP LOCKED, so any number of gateway nodes can run it),
 * sends each through its channel's transport, marks it sent, or schedules a retry with
 * exponential backoff and jitter until `maxAttempts`, then marks it failed and logs an error.
 */
export function createDeliveryWorker(opts: DeliveryWorkerOptions): DeliveryWorker {
  const pollMs = opts.pollIntervalMs ?? 5_000;
  const batchSize = opts.batchSize ?? 10;
  const maxAttempts = opts.maxAttempts ?? 12;
  const baseDelayMs = opts.baseDelayMs ?? 1_000;
  const maxDelayMs = opts.maxDelayMs ?? 5 * 60_000;
  const leaseMs = opts.leaseMs ?? 2 * 60_000;
  const random = opts.random ?? Math.random;
  const { db, clock, transports } = opts;
  const log = opts.log.child({ component: 'outbox' });

  let started = false;
  let stopped = false;
  let again = false;
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  /**
   * The earliest retry this worker scheduled that is not due yet (clock ms). A timer can fire a
   * little before the clock reaches it; the next wake-up is then set from it, not the poll interval.
   */
  let nextRetryAt: number | undefined;

  /** Sends one message; returns when (clock ms) it will be tried again. */
  async function deliver(m: ClaimedMessage): Promise<number | undefined> {
    const transport = transports[m.channel];
    let opened: ReturnType<typeof openBody>;
    try {
      opened = openBody(opts.box, m.recipient, m.body);
    } catch (err) {
      // A key that changed cannot come back by retrying: give up, keeping nothing of the sealed body.
      await markMessageFailed(db, m.id, clock(), 'sealed body could not be opened', `[sealed message not delivered: ${REMOVED_SECRET}]`);
      log.error({ outboxId: m.id, kind: m.kind, err: err instanceof Error ? err.message : String(err) }, 'outbox message given up');
      return undefined;
    }
    // Secrets leave the database only to be sent; what stays after is the redacted text.
    const kept = opened.redacted ?? undefined;
    if (m.kind === DISCARDED_KIND) {
      await dropDiscardedMessage(db, m.id);
      return undefined;
    }
    try {
      if (!transport) throw new Error(`no transport for channel ${m.channel}`);
      await transport.send({ ...m, body: opened.text });
    } catch (err) {
      const error = (err instanceof Error ? err.message : String(err)).slice(0, 500);
      if (m.attempts >= maxAttempts || !transport) {
        await markMessageFailed(db, m.id, clock(), error, kept);
        log.error({ outboxId: m.id, kind: m.kind, channel: m.channel, attempts: m.attempts, error }, 'outbox message given up');
        return undefined;
      }
      const delay = retryDelayMs(m.attempts, baseDelayMs, maxDelayMs, random);
      const retryAt = clock().getTime() + delay;
      await scheduleMessageRetry(db, m.id, new Date(retryAt), error);
      log.warn({ outboxId: m.id, kind: m.kind, channel: m.channel, attempts: m.attempts, retryInMs: delay, error }, 'outbox delivery failed; will retry');
      return retryAt;
    }
    await markMessageSent(db, m.id, clock(), kept);
    log.info({ outboxId: m.id, kind: m.kind, channel: m.channel, transport: transport.name, attempts: m.attempts }, 'outbox message sent');
    return undefined;
  }

  /** Delivers until nothing is due; returns when to look again. */
  async function round(): Promise<number> {
    while (!stopped) {
      const now = clock();
      // What was due by now is claimed below; a later retry of ours stays the next wake-up.
      if (nextRetryAt !== undefined && nextRetryAt <= now.getTime()) nextRetryAt = undefined;
      const batch = await claimDueMessages(db, now, batchSize, new Date(now.getTime() + leaseMs));
      const retries = await Promise.all(batch.map(deliver));
      for (const at of retries) if (at !== undefined) nextRetryAt = Math.min(nextRetryAt ?? at, at);
      if (batch.length < batchSize) break;
    }
    return nextRetryAt === undefined ? pollMs : Math.min(pollMs, Math.max(1, nextRetryAt - clock().getTime()));
  }

  function schedule(ms: number) {
    clearTimeout(timer);
    if (stopped) return;
    timer = setTimeout(kick, ms);
    timer.unref();
  }

  function kick() {
    if (!started || stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      let wakeMs = pollMs;
      do {
        again = false;
        try {
          wakeMs = await round();
        } catch (err) {
          log.warn({ err }, 'outbox round failed; will poll again');
          wakeMs = pollMs;
        }
      } while (again && !stopped);
      schedule(wakeMs);
    })().finally(() => {
      running = undefined;
      if (again && !stopped) kick(); // a kick that landed after the last round's check
    });
  }

  return {
    start() {
      if (started) return;
      started = true;
      kick(); // leftovers from before a restart or crash
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
      for (const t of new Set(Object.values(transports))) t.close?.();
    },
    kick,
  };
}
