import { Repeater } from '@graphql-yoga/subscription';
import type { Logger } from 'pino';
import { z } from 'zod';
import { requireCaller, type Caller } from '../../accounts/caller';
import { ALARM_TYPES } from '../alarms/alarm-type';
import type { DeviceStatus } from '../../devices/catalog/device.model';
import { CommonError } from '../../lib/domain-error';
import { isUuid, parseInput } from '../../lib/validate';
import type { AccessCache } from './access-cache';
import { compareAlarmCursors, decodeAlarmCursor, type AlarmCursor } from '../alarms/alarm-cursor';
import type { AlarmFilterSpec, AlarmRow, AlarmStore } from '../alarms/alarm-store';
import type { AlarmTailer } from './alarm-tail';
import type { AlarmService, AlarmView } from '../alarms/alarm.service';
import type { DeviceStatusPayload, EventBus } from '../bus/event-bus';

/** One status change as the deviceStatus subscription delivers it; `device` is resolved per subscriber. */
export interface DeviceStatusEventView {
  deviceId: string;
  status: DeviceStatus;
  at: Date;
}

/**
 * A live stream's consumer fell too far behind (its pending events passed the bound). The
 * transport closes the connection (graphql-ws: 1013) instead of buffering without end; an alarms
 * subscriber resumes with its last cursor and loses nothing.
 */
export class SlowConsumerError extends Error {
  override name = 'SlowConsumerError';
  constructor() {
    super('The subscriber fell too far behind; reconnect and resume');
  }
}

export interface LiveServiceDeps {
  clock: () => Date;
  bus: EventBus;
  log: Logger;
  /** `recentBetween`, when given, serves resumes from the tailer's memory window. */
  tailer: Pick<AlarmTailer, 'register'> & Partial<Pick<AlarmTailer, 'recentBetween'>>;
  access: Pick<AccessCache, 'canSeeBinding' | 'canSeeDevice'>;
  store: Pick<AlarmStore, 'replayForUser'>;
  alarms: Pick<AlarmService, 'toView'>;
  /**
   * Undelivered live events one subscription may hold (default 1000). Beyond it, deviceStatus
   * fails with SlowConsumerError; alarms stops buffering and catches up from the database instead.
   */
  maxPending?: number;
  /** Rows per replay statement (default 100). */
  replayPage?: number;
}

const MAX_IDS = 100;
const deviceIdsSchema = z
  .array(z.string().max(100, 'too long'))
  .max(MAX_IDS, `at most ${MAX_IDS} device ids`)
  .nullish()
  // Ids that cannot exist match nothing, like ids of devices the caller does not see (no existence leaks).
  .transform((ids) => (ids ? new Set(ids.filter(isUuid)) : null));
const statusInput = z.object({ deviceIds: deviceIdsSchema });
const alarmsInput = z.object({
  deviceIds: deviceIdsSchema,
  types: z
    .array(z.enum(ALARM_TYPES))
    .max(ALARM_TYPES.length * 2, 'too many types')
    .nullish()
    .transform((t) => (t ? new Set(t) : null)),
  after: z.string().max(200, 'not a valid cursor').nullish(),
});

/**
 * The stream with a cleanup that runs exactly once: when it ends, fails or is returned, also if
 * it is returned before its first pull (when a Repeater's own executor never runs).
 */
function closing<T>(stream: Repeater<T>, cleanup: () => void): AsyncGenerator<T> {
  let done = false;
  const clean = () => {
    if (done) return;
    done = true;
    cleanup();
  };
  const generator: AsyncGenerator<T> = {
    next: (...args: [] | [unknown]) =>
      stream.next(...args).then(
        (r) => {
          if (r.done) clean();
          return r;
        },
        (err: unknown) => {
          clean();
          throw err;
        },
      ),
    return: (value?: unknown) => {
      clean();
      return stream.return(value as T);
    },
    throw: (err?: unknown) => {
      clean();
      return stream.throw(err);
    },
    [Symbol.asyncIterator]: () => generator,
  };
  return generator;
}

/**
 * A live stream that can hand its subscriber over to a shared stream of the same rows without a
 * gap or a duplicate: the GraphQL fan-out lets a resumed `alarms(after:)` replay alone, then
 * join the group of subscribers without `after` (src/graphql/live/subscription-fanout.ts).
 * Positions are alarm cursors: every row up to a position has been consumed (delivered, or not
 * the caller's to see).
 */
export interface HandoverFeed {
  /** Resolves once the replay is done and the stream only waits for live rows (or has ended). */
  readonly caughtUp: Promise<void>;
  /** Every row up to here has been consumed; before the first pull, the start. */
  position(): AlarmCursor;
  /** The position of an event this stream yielded. */
  positionOf(event: unknown): AlarmCursor | null;
  /**
   * Ends the stream once every row up to `at` has been consumed, delivering those first; resolves
   * with where it ended (at or after `at`). Rows after `at` are left to the shared stream.
   */
  endAt(at: AlarmCursor): Promise<AlarmCursor>;
}

/** Where a stream keeps its HandoverFeed (a symbol: graphql-js passes the stream object through untouched). */
export const HANDOVER = Symbol('vigil.live.handover');

/** The stream's HandoverFeed, when it has one. */
export function handoverOf(stream: unknown): HandoverFeed | null {
  return (stream as { [HANDOVER]?: HandoverFeed } | null)?.[HANDOVER] ?? null;
}

/** Orders positions of HandoverFeeds. */
export const comparePositions = (a: AlarmCursor, b: AlarmCursor): number => compareAlarmCursors(a, b);

const isBefore = (a: AlarmCursor, b: AlarmCursor) => compareAlarmCursors(a, b) < 0;
const cursorOfRow = (r: AlarmRow): AlarmCursor => ({ xid: r.xid, seq: r.seq });

/**
 * The two live streams of the API, `deviceStatus` and `alarms`, as async iterables of views
 * (resolvers stay thin; graphql-ws executes the selection per event). Every event is authorised
 * at delivery against the node's access cache: owner, or an unrevoked, unexpired share with
 * ALARMS; for alarms, on the alarm's own binding (a former or later owner never sees it).
 *
 * Alarms come from the node's tailer (one database reader per node); `alarms(after:)` registers
 * with the tailer first (position T0), replays (after, T0] from the tailer's window of recent rows
 * when it holds them (a reconnect), else from the database page by page, then
 * delivers the tailer's rows after T0: every alarm once, in cursor order, with no gap, however
 * many arrive during the replay. A consumer that falls behind during the replay or live costs
 * bounded memory: past `maxPending` buffered rows the stream drops its buffer and catches up from
 * the database instead.
 */
export function createLiveService(deps: LiveServiceDeps) {
  const { clock, tailer, access, store } = deps;
  const log = deps.log.child({ component: 'live' });
  const maxPending = deps.maxPending ?? 1000;
  const replayPage = deps.replayPage ?? 100;

  /** One bus subscription per node for status changes, fanned out to local streams. */
  const statusListeners = new Set<(p: DeviceStatusPayload) => void>();
  let unlistenStatus: (() => Promise<void>) | undefined;
  let alarmStreams = 0;

  function deviceStatus(caller: Caller | null, args: { deviceIds?: unknown }): AsyncGenerator<DeviceStatusEventView> {
    const c = requireCaller(caller, 'DEVICES_READ');
    const { deviceIds } = parseInput(statusInput, { deviceIds: args.deviceIds ?? null });
    const pending: DeviceStatusPayload[] = [];
    let overflow = false;
    let signal = () => {};
    // Listening starts now, before the first pull: an event right after subscribing is not missed.
    const listener = (p: DeviceStatusPayload) => {
      if (deviceIds && !deviceIds.has(p.deviceId)) return;
      if (pending.length >= maxPending) overflow = true;
      else pending.push(p);
      signal();
    };
    statusListeners.add(listener);
    const stream = new Repeater<DeviceStatusEventView>(async (push, stop) => {
      let stopped = false;
      void stop.then(() => (stopped = true));
      while (!stopped) {
        if (overflow) throw new SlowConsumerError();
        const p = pending.shift();
        if (p) {
          // Authorised now, at delivery: a revoked or expired share stops the next event.
          if (await access.canSeeDevice(c.userId, p.deviceId)) await push({ deviceId: p.deviceId, status: p.status, at: new Date(p.at) });
          continue;
        }
        await Promise.race([new Promise<void>((r) => (signal = r)), stop]);
      }
    });
    return closing(stream, () => statusListeners.delete(listener));
  }

  async function alarms(caller: Caller | null, args: { deviceIds?: unknown; types?: unknown; after?: unknown }): Promise<AsyncGenerator<AlarmView>> {
    const c = requireCaller(caller, 'ALARMS_READ');
    const v = parseInput(alarmsInput, { deviceIds: args.deviceIds ?? null, types: args.types ?? null, after: args.after ?? null });
    const after = v.after ? decodeAlarmCursor(v.after) : null;
    if (v.after && !after) throw CommonError.badInput('after: not a valid cursor');
    const filter: AlarmFilterSpec = { deviceIds: v.deviceIds ? [...v.deviceIds] : null, types: v.types ? [...v.types] : null };
    const matches = (r: AlarmRow) => (!v.deviceIds || v.deviceIds.has(r.deviceId)) && (!v.types || (v.types as Set<string>).has(r.alarmType));

    // Rows from the tailer after its position at registration; when too many wait, they are
    // dropped and `dropTo` remembers how far the database must be read instead.
    const buffered: AlarmRow[] = [];
    let dropTo: AlarmCursor | null = null;
    let signal = () => {};
    const reg = await tailer.register((row) => {
      if (dropTo || buffered.length >= maxPending) {
        buffered.length = 0;
        dropTo = cursorOfRow(row);
      } else {
        buffered.push(row);
      }
      signal();
    });
    alarmStreams++;
    // Everything up to `pos` has been delivered (or was not the caller's to see).
    let pos: AlarmCursor = after ?? reg.position;
    // Handover (see HandoverFeed): end once everything up to `stopAt` is consumed.
    let stopAt: AlarmCursor | null = null;
    let markCaughtUp!: () => void;
    const caughtUp = new Promise<void>((r) => (markCaughtUp = r));
    let markEnded!: (at: AlarmCursor) => void;
    const endedAt = new Promise<AlarmCursor>((r) => (markEnded = r));
    const stream = new Repeater<AlarmView>(async (push, stop) => {
      let stopped = false;
      void stop.then(() => (stopped = true));
      // The database holds what is due up to `until`: the tailer's position at registration, or what it dropped.
      let until: AlarmCursor | null = after && isBefore(after, reg.position) ? reg.position : null;
      try {
        while (!stopped) {
          if (stopAt && !isBefore(pos, stopAt)) return stop();
          if (until && isBefore(pos, until)) {
            // A recent cursor (a reconnect) replays from the tailer's memory, authorised like live rows.
            const recent = tailer.recentBetween?.(pos, until);
            if (recent) {
              for (const r of recent) {
                if (stopped) return;
                pos = cursorOfRow(r);
                if (matches(r) && (await access.canSeeBinding(c.userId, r.bindingId))) await push(deps.alarms.toView(r, clock()));
              }
              pos = until;
              continue;
            }
            const rows = await store.replayForUser(c.userId, clock(), pos, filter, replayPage, until);
            for (const r of rows) {
              if (stopped) return;
              pos = cursorOfRow(r);
              await push(deps.alarms.toView(r, clock()));
            }
            if (rows.length < replayPage) pos = until;
            continue;
          }
          until = null;
          if (dropTo) {
            // Rows were dropped while the consumer lagged: read them from the database, then buffer again.
            if (isBefore(pos, dropTo)) until = dropTo;
            else dropTo = null;
            continue;
          }
          const r = buffered.shift();
          if (r) {
            const rc = cursorOfRow(r);
            if (!isBefore(pos, rc)) continue; // at or before the resume cursor: delivered before
            if (stopAt && isBefore(stopAt, rc)) {
              // Nothing in (pos, stopAt] is left (rows come in order): the shared stream takes it from here.
              pos = stopAt;
              return stop();
            }
            pos = rc;
            // Authorised now, at delivery, on the alarm's own binding.
            if (matches(r) && (await access.canSeeBinding(c.userId, r.bindingId))) await push(deps.alarms.toView(r, clock()));
            continue;
          }
          // Caught up: every row the tailer handed out so far is consumed.
          markCaughtUp();
          if (stopAt) {
            // The shared stream's position is at most the tailer's: nothing up to it is left here.
            pos = stopAt;
            return stop();
          }
          await Promise.race([new Promise<void>((res) => (signal = res)), stop]);
        }
      } finally {
        markCaughtUp();
        markEnded(pos);
      }
    });
    const feed: HandoverFeed = {
      caughtUp,
      position: () => pos,
      positionOf: (event) => decodeAlarmCursor((event as AlarmView).cursor),
      endAt(at) {
        stopAt = at;
        signal();
        return endedAt;
      },
    };
    return Object.assign(
      closing(stream, () => {
        alarmStreams--;
        reg.unregister();
      }),
      { [HANDOVER]: feed },
    );
  }

  return {
    /**
     * Status changes of the caller's devices (or of `deviceIds` among them), from now on. Needs
     * DEVICES_READ for an API key. Devices the caller does not see are ignored, not refused.
     * Throws BAD_INPUT for more than 100 ids; the stream fails with SlowConsumerError when its
     * consumer falls more than `maxPending` events behind.
     */
    deviceStatus,

    /**
     * Alarms of the caller's devices (filtered by `deviceIds` and `types`), from now on, or with
     * `after` first every stored alarm after that cursor. Needs ALARMS_READ for an API key.
     * Throws BAD_INPUT for a cursor we did not issue.
     */
    alarms,

    /** Starts the node's status feed from the bus. */
    start(): void {
      unlistenStatus ??= deps.bus.listen(
        'device.status',
        (p) => {
          for (const l of statusListeners) l(p);
        },
        (fields, message) => log.warn(fields, message),
      );
    },

    async stop(): Promise<void> {
      await unlistenStatus?.();
      unlistenStatus = undefined;
    },

    /** Open streams on this node (metrics, tests). */
    statusStreams: () => statusListeners.size,
    alarmStreams: () => alarmStreams,
  };
}

export type LiveService = ReturnType<typeof createLiveService>;
