import type { Logger } from 'pino';
import { compareAlarmCursors, decodeAlarmCursor, type AlarmCursor } from '../alarms/alarm-cursor';
import type { AlarmRow, AlarmStore } from '../alarms/alarm-store';
import type { EventBus } from '../bus/event-bus';

/** Receives every alarm row after its registration position, in cursor order, exactly once. */
export type TailListener = (row: AlarmRow) => void;

export interface TailRegistration {
  /** The tailer's position when the listener was added: every row it will receive is after it. */
  position: AlarmCursor;
  unregister(): void;
}

export interface AlarmTailerOptions {
  store: Pick<AlarmStore, 'tailAfter' | 'tailEnd'> & Partial<Pick<AlarmStore, 'onCreatedHere'>>;
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
  /**
   * The most recent rows read, kept in memory (default 5000): an `alarms(after:)` resume whose
   * cursor falls inside this window replays from memory instead of the database (a reconnect
   * storm then costs no query per subscriber). 0 turns it off.
   */
  recentRows?: number;
  /**
   * With no listener for this long (default 60 s; from the start when none ever came), the tailer
   * stops reading until the next registration. Until then it keeps reading, so subscribers that
   * all reconnect at once still find their rows in the window of recent rows.
   */
  idleAfterMs?: number;
}

const after = (a: AlarmCursor, b: AlarmCursor) => compareAlarmCursors(a, b) > 0;
const CLOSE_POLL_MS = 100;
const CLOSE_POLL_EVERY_MS = 2;

/**
 * The node's alarm tailer: ONE reader of the alarms table per gateway node, whatever the number of
 * subscribers. It keeps a position P and reads the rows after P that are below the horizon (see
 * the cursor design in alarm-store.ts), handing each row, in cursor order, to every registered
 * listener. Rows at or before P are final, so listeners see every alarm exactly once and in order
 * even when transactions commit out of order. Database load is O(alarms), not O(subscribers x
 * alarms).
 *
 * Rows committed on this node are handed over by the store (`onCreatedHere`) instead of being read
 * back: the tailer holds them until a read's horizon has passed them, and that read skips them
 * (only their ids travel), so each row reaches listeners once, in order, whichever way it came. A
 * row handed after a read already delivered it is at or before P and is dropped; a failed commit
 * hands nothing.
 *
 * Wake-ups: every `alarm.created` on the bus (any node) and every local hand-over triggers a read
 * at once (coalesced: one read in flight, one more if woken meanwhile); while the event's cursor is
 * not reached yet (an older transaction still holds the horizon back) it re-reads with a short
 * backoff; and a periodic tick reads while anyone listens. With no listener it does not read at
 * all: the next registration first moves P to the current end of the table (nobody was owed the
 * rows in between). Starts at the current end of the table. A failed read is logged and retried
 * at the next tick; listeners just see the rows later.
 */
export function createAlarmTailer(opts: AlarmTailerOptions) {
  const { store, bus } = opts;
  const log = opts.log.child({ component: 'alarm-tail' });
  const tickMs = opts.tickMs ?? 500;
  const batch = opts.batch ?? 1000;

  const recentMax = opts.recentRows ?? 5000;
  const listeners = new Set<TailListener>();
  let position: AlarmCursor | null = null;
  /** Every row after `recentFrom` up to `position`, oldest first (null: no window yet). */
  let recent: AlarmRow[] = [];
  let recentFrom: AlarmCursor | null = null;
  let initialised: Promise<void> | null = null;
  /** Rows this node committed, after `position`, not delivered yet; by id. Bounded by `maxHanded`. */
  const handed = new Map<string, AlarmRow>();
  const maxHanded = Math.max(batch, 2000);
  const idleAfterMs = opts.idleAfterMs ?? 60_000;
  /** When the last listener left (-Infinity: none ever came). */
  let lastListenerLeft = Number.NEGATIVE_INFINITY;
  /** Reads were skipped for want of listeners: `position` may be behind the table's end. */
  let idle = false;
  const nobodyListens = () => listeners.size === 0 && Date.now() - lastListenerLeft >= idleAfterMs;
  let resyncing: Promise<void> | null = null;
  let reading: Promise<void> | null = null;
  let readAgain = false;
  /** The newest cursor announced on the bus that the position has not reached yet. */
  let target: { cursor: AlarmCursor; since: number } | null = null;
  let retryDelay = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  let tickTimer: NodeJS.Timeout | undefined;
  let unlistenBus: (() => Promise<void>) | undefined;
  let stopped = true;

  function init(): Promise<void> {
    initialised ??= (async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          position = await store.tailEnd();
          recentFrom = position;
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
    const from = position;
    const skip = [...handed.keys()];
    const { rows: read, horizon } = await store.tailAfter(from, batch, skip);
    // Handed rows the read's horizon has passed are final too; a full read only vouches up to its last row.
    const last = read.length === batch ? read[read.length - 1]! : null;
    let rows = read;
    if (handed.size) {
      const ids = new Set(read.map((r) => r.id));
      const due: AlarmRow[] = [];
      for (const h of handed.values()) {
        if (!after(h, from)) handed.delete(h.id);
        else if (h.xid < horizon && (!last || !after(h, last))) {
          handed.delete(h.id);
          // Handed while the read ran, and read too: once is enough.
          if (!ids.has(h.id)) due.push(h);
        }
      }
      if (due.length) rows = [...read, ...due].sort(compareAlarmCursors);
    }
    if (recentMax > 0 && rows.length) {
      recent.push(...rows);
      if (recent.length > recentMax) {
        const dropped = recent.length - recentMax;
        const last = recent[dropped - 1]!;
        recentFrom = { xid: last.xid, seq: last.seq };
        recent = recent.slice(dropped);
      }
    }
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
    return read.length;
  }

  /** After an idle spell: the position moves to the table's end, the window of recent rows starts afresh. */
  function resync(): Promise<void> {
    resyncing ??= (async () => {
      try {
        await reading;
        const end = await store.tailEnd();
        if (position && after(end, position)) {
          position = end;
          recent = [];
          recentFrom = end;
          for (const h of handed.values()) if (!after(h, end)) handed.delete(h.id);
        }
        idle = false;
      } finally {
        resyncing = null;
      }
    })();
    return resyncing;
  }

  /** Reads until caught up; one read at a time, again if woken meanwhile. */
  function wake(): void {
    if (stopped || !position) return;
    if (!reading && nobodyListens()) {
      // Nobody to deliver to: no read, nothing held (see resync).
      idle = true;
      handed.clear();
      target = null;
      return;
    }
    if (resyncing) return; // it wakes once done
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
        } while ((full || readAgain) && !stopped && !nobodyListens());
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
    // Most transactions that hold the horizon back are short: poll closely for the first
    // `CLOSE_POLL_MS` (one cheap indexed read per node, not per subscriber), then back off.
    const waited = Date.now() - target.since;
    retryDelay = waited < CLOSE_POLL_MS ? CLOSE_POLL_EVERY_MS : Math.min(tickMs, retryDelay > CLOSE_POLL_EVERY_MS ? retryDelay * 2 : 10);
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      wake();
    }, retryDelay).unref();
  }

  let unlistenLocal: (() => void) | undefined;
  function announce(c: AlarmCursor | null) {
    if (c && (!target || after(c, target.cursor))) target = { cursor: c, since: Date.now() };
    wake();
  }
  /** Rows committed on this node, in cursor order. */
  function onHanded(rows: AlarmRow[]) {
    if (position && !nobodyListens()) {
      for (const r of rows) if (handed.size < maxHanded && after(r, position)) handed.set(r.id, r);
    }
    // Past `maxHanded`, a row is simply read back like another node's.
    const newest = rows[rows.length - 1];
    announce(newest ? { xid: newest.xid, seq: newest.seq } : null);
  }

  return {
    /** Subscribes to `alarm.created`, finds the end of the table and starts the tick. */
    start(): void {
      if (!stopped) return;
      stopped = false;
      // Alarms stored on this node wake the tailer directly; the bus echo then finds nothing new.
      unlistenLocal = store.onCreatedHere?.(onHanded);
      unlistenBus = bus.listen('alarm.created', (p) => announce(decodeAlarmCursor(p.cursor)), (fields, message) => !stopped && log.warn(fields, message));
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
      if (idle) {
        await resync();
        // Rows committed while it looked are read now (the bus events for them found no listener).
        queueMicrotask(wake);
      }
      listeners.add(listener);
      return {
        position: position!,
        unregister: () => {
          if (listeners.delete(listener) && listeners.size === 0) lastListenerLeft = Date.now();
        },
      };
    },

    /**
     * The rows in (after, until], oldest first, from memory when the window holds all of them;
     * null when it does not (`after` is older than the window, or `until` is past the position).
     */
    recentBetween(from: AlarmCursor, until: AlarmCursor): AlarmRow[] | null {
      if (recentMax === 0 || !recentFrom || !position || after(recentFrom, from) || after(until, position)) return null;
      // Rows are in cursor order: binary search for the first after `from`.
      let lo = 0;
      let hi = recent.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (after(recent[mid]!, from)) hi = mid;
        else lo = mid + 1;
      }
      const out: AlarmRow[] = [];
      for (let i = lo; i < recent.length && !after(recent[i]!, until); i++) out.push(recent[i]!);
      return out;
    },

    /** Reads now (tests, and callers that know an alarm was just committed). */
    wake,

    /** The current position (null before start). */
    position: (): AlarmCursor | null => position,

    listenerCount: () => listeners.size,

    /** Stops reading; listeners stay registered but receive nothing more. */
    async stop(): Promise<void> {
      stopped = true;
      unlistenLocal?.();
      if (tickTimer) clearInterval(tickTimer);
      if (retryTimer) clearTimeout(retryTimer);
      await unlistenBus?.();
      unlistenBus = undefined;
      await reading;
    },
  };
}

export type AlarmTailer = ReturnType<typeof createAlarmTailer>;
