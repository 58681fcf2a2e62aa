import type { Logger } from 'pino';
import { compareAlarmCursors, decodeAlarmCursor, type AlarmCursor } from './alarm-cursor';
import type { AlarmRow, AlarmStore } from './alarm-store';
import type { EventBus } from './event-bus';

/** Receives every alarm row after its registration position, in cursor order, exactly once. */
export type TailListener = (row: AlarmRow) => void;

export interface TailRegistration {
  /** The tailer's position when the listener was added: every row it will receive is after it. */
  position: AlarmCursor;
  unregister(): void;
}

export interface AlarmTailerOptions {
  store: Pick<AlarmStore, 'tailAfter' | 'tailEnd'>;
  bus: EventBus;
  log: Logger;
  /**
   * Read at least this often while anyone listens (default 500 ms), so the horizon moves on when a
   * slow transaction ends and alarms keep flowing when the bus is down (Redis outage: this tick
   * is then the only wake-up for other nodes' alarms).
   */
  tickMs?: number;
  /** Rows per read (default 1000); a full batch is followed by another read at once. */
  batch?: number;
}

const after = (a: AlarmCursor, b: AlarmCursor) => compareAlarmCursors(a, b) > 0;

/**
 * The node's alarm tailer: ONE reader of the alarms table per gateway node, whatever the number of
 * subscribers. It keeps a position P and reads the rows after P that are below the horizon (see
 * the cursor design in alarm-store.ts), handing each row, in cursor order, to every registered
 * listener. Rows at or before P are final, so listeners see every alarm exactly once and in order
 * even when transactions commit out of order. Database load is O(alarms), not O(subscribers x
 * alarms).
 *
 * Wake-ups: every `alarm.created` on the bus (any node) triggers a read at once (coalesced: one read
 * in flight, one more if woken meanwhile); while the event's cursor is not reached yet (an older
 * transaction still holds the horizon back) it re-reads with a short backoff; and a periodic tick
 * reads while anyone listens. Starts at the current end of the table. A failed read is logged and
 * retried at the next tick; listeners just see the rows later.
 */
export function createAlarmTailer(opts: AlarmTailerOptions) {
  const { store, bus } = opts;
  const log = opts.log.child({ component: 'alarm-tail' });
  const tickMs = opts.tickMs ?? 500;
  const batch = opts.batch ?? 1000;

  const listeners = new Set<TailListener>();
  let position: AlarmCursor | null = null;
  let initialised: Promise<void> | null = null;
  let reading: Promise<void> | null = null;
  let readAgain = false;
  /** The newest cursor announced on the bus that the position has not reached yet. */
  let target: { cursor: AlarmCursor; since: number } | null = null;
  let retryDelay = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  let tickTimer: NodeJS.Timeout | undefined;
  let busFeed: (AsyncIterator<unknown> & { return?: () => unknown }) | undefined;
  let stopped = true;

  function init(): Promise<void> {
    initialised ??= (async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          position = await store.tailEnd();
          return;
        } catch (err) {
          if (stopped || attempt >= 20) throw err;
          log.warn({ err }, 'could not read the end of the alarms table; retrying');
          await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)).unref());
        }
      }
    })();
    return initialised;
  }

  async function readOnce(): Promise<number> {
    if (!position) return 0;
    const rows = await store.tailAfter(position, batch);
    for (const row of rows) {
      position = { xid: row.xid, seq: row.seq };
      for (const listener of listeners) {
        try {
          listener(row);
        } catch (err) {
          log.warn({ err }, 'alarm listener failed');
        }
      }
    }
    return rows.length;
  }

  /** Reads until caught up; one read at a time, again if woken meanwhile. */
  function wake(): void {
    if (stopped || !position) return;
    if (reading) {
      readAgain = true;
      return;
    }
    reading = (async () => {
      try {
        let full: boolean;
        do {
          readAgain = false;
          full = (await readOnce()) === batch;
        } while ((full || readAgain) && !stopped);
      } catch (err) {
        log.warn({ err }, 'alarm tail read failed; retrying at the next tick');
      } finally {
        reading = null;
        chaseTarget();
      }
    })();
  }

  /** An announced alarm not read yet is held back by the horizon: look again soon, backing off up to the tick. */
  function chaseTarget() {
    if (!target || !position || stopped) return;
    if (!after(target.cursor, position) || Date.now() - target.since > 10_000) {
      target = null;
      retryDelay = 0;
      return;
    }
    if (retryTimer) return;
    retryDelay = Math.min(tickMs, retryDelay ? retryDelay * 2 : 5);
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      wake();
    }, retryDelay).unref();
  }

  function onAnnounced(cursor: string) {
    const c = decodeAlarmCursor(cursor);
    if (c && (!target || after(c, target.cursor))) target = { cursor: c, since: Date.now() };
    wake();
  }

  return {
    /** Subscribes to `alarm.created`, finds the end of the table and starts the tick. */
    start(): void {
      if (!stopped) return;
      stopped = false;
      const feed = bus.subscribe('alarm.created')[Symbol.asyncIterator]();
      busFeed = feed;
      void (async () => {
        try {
          for (;;) {
            const next = await feed.next();
            if (next.done) return;
            onAnnounced(next.value.cursor);
          }
        } catch (err) {
          if (!stopped) log.warn({ err }, 'alarm.created subscription ended');
        }
      })();
      init().then(
        () => wake(),
        (err) => log.error({ err }, 'alarm tailer could not start'),
      );
      tickTimer = setInterval(() => {
        if (listeners.size > 0 || target) wake();
      }, tickMs).unref();
    },

    /**
     * Adds a listener. Resolves once the tailer knows its position; the listener then receives
     * every row after `position`, in order, until it unregisters. Listeners must not throw and
     * must not block (they are called synchronously, in order, from the read loop).
     */
    async register(listener: TailListener): Promise<TailRegistration> {
      await init();
      listeners.add(listener);
      return {
        position: position!,
        unregister: () => {
          listeners.delete(listener);
        },
      };
    },

    /** Reads now (tests, and callers that know an alarm was just committed). */
    wake,

    /** The current position (null before start). */
    position: (): AlarmCursor | null => position,

    listenerCount: () => listeners.size,

    /** Stops reading; listeners stay registered but receive nothing more. */
    async stop(): Promise<void> {
      stopped = true;
      if (tickTimer) clearInterval(tickTimer);
      if (retryTimer) clearTimeout(retryTimer);
      await busFeed?.return?.();
      await reading;
    },
  };
}

export type AlarmTailer = ReturnType<typeof createAlarmTailer>;
