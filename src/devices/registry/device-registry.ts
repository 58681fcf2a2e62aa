import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Db } from '../../db/index';
import { sourceKey } from '../../lib/client-address';
import type { LimiterFactory } from '../../lib/rate-limit';
import { safeEqual, sha256 } from '../../lib/secrets';
import { isUuid } from '../../lib/validate';
import type { AlarmStore } from '../../streams/alarms/alarm-store';
import type { DeviceStatusPayload, EventBus } from '../../streams/bus/event-bus';
import { createLeasedJob, type LeasedJob } from '../../streams/bus/lease';
import { alarmTypeFor } from '../../streams/alarms/alarm-type';
import { normaliseEventType } from '../isapi/isapi-parser';
import * as store from './registry.store';

/** The WebSocket subprotocol of the device channel. */
export const DEVICE_SUBPROTOCOL = 'vigil-device.v1';

/** Close codes of the device channel (DEVICES.md section 3). */
export const CloseCode = {
  /** Bad frame: not JSON, unknown type, invalid fields, too big, too many. */
  BadFrame: 4400,
  /** Unknown serial or wrong key. */
  BadCredentials: 4401,
  /** No hello within the hello timeout, or silence beyond two and a half heartbeats. */
  Timeout: 4408,
  /** A newer connection of the same serial took over (on any node). */
  Replaced: 4409,
  /** The gateway is shutting down. */
  GoingAway: 1001,
  /** The event could not be stored; reconnect and resend. */
  InternalError: 1011,
} as const;

/**
 * The transport seen by the registry: the `ws` adapter (src/devices/device-ws.ts) and tests
 * implement it. `send` takes one JSON text frame; `close` ends the connection with a close code.
 */
export interface DeviceTransport {
  send(frame: string): void;
  close(code: number, reason: string): void;
  /** Registers the one handler for incoming frames (`isBinary` for binary frames, which are refused). */
  onMessage(handler: (data: string, isBinary: boolean) => void): void;
}

export interface ConnectionInfo {
  /** Client address (TRUST_PROXY honoured, see lib/client-address), for the failed-hello limits and logs. */
  ip: string;
}

export interface RegistryOptions {
  db: Db;
  clock: () => Date;
  bus: EventBus;
  log: Logger;
  /** This gateway node's id (NODE_ID), recorded next to each connection it holds. */
  nodeId: string;
  alarms: AlarmStore;
  /** Failed-hello limits (HELLO_LIMITS); without it, failures are not limited. */
  limiters?: LimiterFactory;
  /** Overrides of HELLO_LIMITS (tests). */
  helloLimits?: Partial<Record<keyof typeof HELLO_LIMITS, number>>;
  /** Told to devices in `welcome`; silence beyond 2.5 of these is OFFLINE. Default 30. */
  heartbeatSeconds?: number;
  /** Time to the first frame (hello); default 5000 ms, then close 4408. */
  helloTimeoutMs?: number;
  /** DEVICE_OFFLINE_AFTER_S: silence after which an ISAPI device is OFFLINE (or UNKNOWN). Default 90. */
  isapiOfflineAfterS?: number;
  /** Largest accepted frame in bytes; default 16 KiB, larger ones close 4400. */
  maxFrameBytes?: number;
  /** Frames per second per connection (token bucket); default 20/s with a burst of 40, beyond that 4400. */
  framesPerSecond?: number;
  frameBurst?: number;
  /** How often the sweeper runs (on the node holding its lease). Default 5000 ms. */
  sweepIntervalMs?: number;
  /**
   * Heartbeats are recorded in batches: one statement per this many ms for every connection that
   * beat. Default a quarter of the heartbeat period, at most 1000 ms (far inside the 2.5 periods
   * of silence the sweeper waits for).
   */
  heartbeatFlushMs?: number;
  /** A command without a result is delivered again after this long. Default 30 s. */
  commandRedeliverMs?: number;
  /** Undelivered commands expire after this long. Default 24 h. */
  commandTtlMs?: number;
}

const text = (max: number) => z.string().trim().min(1).max(max);
const helloFrame = z.object({
  type: z.literal('hello'),
  serial: text(64),
  key: z.string().min(1).max(256),
  model: text(64).nullish(),
  firmware: text(64).nullish(),
  channels: z.number().int().min(0).max(1024).nullish(),
});
const eventFrame = z.object({
  type: z.literal('event'),
  // Echoed verbatim in the ack, so not trimmed.
  id: z.union([z.string().min(1).max(128), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)]),
  channel: z.number().int().min(0).max(2_147_483_647).default(1),
  eventType: text(64),
  state: z.enum(['active', 'inactive']).default('active'),
  at: z
    .string()
    .max(64)
    .refine((v) => !Number.isNaN(Date.parse(v)), 'not a date')
    .nullish(),
  description: z.string().max(500).nullish(),
  region: text(64).nullish(),
});
const frameSchema = z.discriminatedUnion('type', [
  helloFrame,
  z.object({ type: z.literal('heartbeat') }),
  eventFrame,
  z.object({ type: z.literal('result'), id: z.string().max(64), ok: z.boolean(), error: z.string().max(500).nullish() }),
]);
type Frame = z.infer<typeof frameSchema>;

/** Control characters that Postgres text refuses (NUL) or that make logs lie. */
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/g;
const clean = (s: string | null | undefined) => {
  const v = s?.replace(CONTROL, '').trim();
  return v ? v : null;
};

interface LiveConnection {
  conn: DeviceTransport;
  connectionId: string;
  deviceId: string;
  delivering: boolean;
  deliverAgain: boolean;
  teardown: () => Promise<void>;
}

/**
 * Failed hellos. A device key is 256 random bits, so these limits guard the database, not the key:
 * a right key is never refused by them. One (source, serial) gets 5 failures, then is refused
 * without a lookup for 5 s, 10 s, ... up to 5 min (one misconfigured camera cannot speak for its
 * neighbours behind the same NAT). A source past `perSourcePerMin` failures is slowed, never
 * refused: its hellos are looked up one at a time on this node.
 */
export const HELLO_LIMITS = { freePerSerial: 5, minWaitS: 5, maxWaitS: 300, lifetimeS: 3600, perSourcePerMin: 300 } as const;

/** The one heartbeat frame devices send, byte for byte: recognised without JSON.parse and zod. */
const HEARTBEAT_FRAME = '{"type":"heartbeat"}';
/** Rows per heartbeat statement at most. */
const HEARTBEAT_BATCH_ROWS = 5000;

/**
 * The device-connection registry: who is online, since when, on which node, and the door through
 * which commands reach devices. Transport-free: `open(connection)` runs the device protocol of
 * DEVICES.md section 3 over any {@link DeviceTransport} and returns its teardown.
 *
 * State lives in the `devices` registry columns so every node (and a restarted one) agrees:
 * - ONLINE/OFFLINE (and UNKNOWN for quiet listening-mode ISAPI devices) change by conditional
 *   updates, so each transition happens once and is published once on `device.status`, after
 *   the commit, whichever node causes it.
 * - The newest connection of a serial wins on any node: its hello records its connection id; the
 *   node holding the old one closes it with 4409 when told over the bus (`device.replaced`), and
 *   at the latest on the old connection's next heartbeat, which no longer matches.
 * - Heartbeats are recorded in batches (one statement per node per flush, default every second),
 *   never later than a second after they arrive, so the sweeper's 2.5 periods stay correct.
 * - A node that dies without closing stops refreshing its devices' lastSeenAt (its unflushed
 *   heartbeats die with it); the sweeper (one node at a time, under a lease) marks them OFFLINE
 *   after 2.5 heartbeats.
 * - Commands are stored, then delivered at least once by the node holding the device's
 *   connection: on the bus nudge, on hello and on heartbeats; the device answers with `result`.
 */
export function createDeviceRegistry(opts: RegistryOptions) {
  const { db, clock, bus, nodeId } = opts;
  const log = opts.log.child({ component: 'device-registry' });
  const heartbeatSeconds = opts.heartbeatSeconds ?? 30;
  const helloTimeoutMs = opts.helloTimeoutMs ?? 5000;
  const silenceMs = heartbeatSeconds * 2500;
  const isapiOfflineMs = (opts.isapiOfflineAfterS ?? 90) * 1000;
  const maxFrameBytes = opts.maxFrameBytes ?? 16 * 1024;
  const framesPerSecond = opts.framesPerSecond ?? 20;
  const frameBurst = opts.frameBurst ?? 40;
  const redeliverMs = opts.commandRedeliverMs ?? 30_000;
  const commandTtlMs = opts.commandTtlMs ?? 24 * 3600_000;
  const helloLimits = { ...HELLO_LIMITS, ...opts.helloLimits };
  const helloFailuresBySerial = opts.limiters?.backoff('device-hello-serial', {
    free: helloLimits.freePerSerial,
    minWaitS: helloLimits.minWaitS,
    maxWaitS: helloLimits.maxWaitS,
    lifetimeS: helloLimits.lifetimeS,
  });
  const helloFailuresBySource = opts.limiters?.create('device-hello-source', helloLimits.perSourcePerMin, 60);
  /** Sources over their failure budget: the tail of their one-at-a-time lookup chain. */
  const slowSources = new Map<string, Promise<unknown>>();
  function oneAtATime<T>(source: string, run: () => Promise<T>): Promise<T> {
    const next = (slowSources.get(source) ?? Promise.resolve()).then(run, run);
    const tail = next.catch(() => {});
    slowSources.set(source, tail);
    void tail.then(() => {
      if (slowSources.get(source) === tail) slowSources.delete(source);
    });
    return next;
  }
  const heartbeatFlushMs = opts.heartbeatFlushMs ?? Math.min(1000, heartbeatSeconds * 250);

  /** Connections this node holds, by connection id and by device. */
  const live = new Map<string, LiveConnection>();
  const byDevice = new Map<string, LiveConnection>();
  /** Every open connection (also those still before hello), for shutdown. */
  const opened = new Set<{ conn: DeviceTransport; teardown: () => Promise<void> }>();
  const unlisten: Array<() => Promise<void>> = [];
  let stopping = false;

  function publishStatus(deviceId: string, status: DeviceStatusPayload['status'], at: Date) {
    try {
      bus.publish('device.status', { deviceId, status, at: at.toISOString() });
    } catch (err) {
      log.warn({ err, deviceId }, 'device.status publish failed');
    }
  }

  async function deliverCommands(lc: LiveConnection) {
    if (lc.delivering) {
      lc.deliverAgain = true;
      return;
    }
    lc.delivering = true;
    try {
      do {
        lc.deliverAgain = false;
        const now = clock();
        const due = await store.takeCommands(db, lc.deviceId, now, new Date(now.getTime() - redeliverMs));
        for (const c of due) lc.conn.send(JSON.stringify({ type: 'command', id: c.id, name: c.name }));
      } while (lc.deliverAgain && live.has(lc.connectionId));
    } catch (err) {
      log.warn({ err, deviceId: lc.deviceId }, 'command delivery failed');
    } finally {
      lc.delivering = false;
    }
  }

  function closeReplaced(connectionId: string) {
    const lc = live.get(connectionId);
    if (!lc) return;
    live.delete(connectionId);
    if (byDevice.get(lc.deviceId) === lc) byDevice.delete(lc.deviceId);
    lc.conn.close(CloseCode.Replaced, 'replaced by a newer connection');
    void lc.teardown();
  }

  /** Heartbeats not recorded yet, by connection id (the latest one of each connection). */
  let beats = new Map<string, { lc: LiveConnection; at: Date }>();
  let flushTimer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> | undefined;

  function recordHeartbeat(lc: LiveConnection) {
    beats.set(lc.connectionId, { lc, at: clock() });
    if (!flushTimer && !stopping) flushTimer = setTimeout(() => void flushHeartbeats(), heartbeatFlushMs).unref();
  }

  /** Records every queued heartbeat now (one statement per 5,000); resolves when done. Flushes never overlap. */
  async function flushHeartbeats(): Promise<void> {
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = undefined;
    while (flushing) await flushing;
    if (beats.size === 0) return;
    const batch = [...beats.values()].filter((b) => live.get(b.lc.connectionId) === b.lc);
    beats = new Map();
    if (batch.length === 0) return;
    const run = (async () => {
      try {
        for (let i = 0; i < batch.length; i += HEARTBEAT_BATCH_ROWS) await recordBatch(batch.slice(i, i + HEARTBEAT_BATCH_ROWS));
      } catch (err) {
        log.error({ err }, 'heartbeat flush failed');
      }
    })();
    flushing = run;
    await run;
    if (flushing === run) flushing = undefined;
  }

  async function recordBatch(batch: Array<{ lc: LiveConnection; at: Date }>) {
    const now = clock();
    let outcomes: Map<string, store.HeartbeatOutcome>;
    try {
      outcomes = await store.touchConnections(
        db,
        batch.map((b) => ({ deviceId: b.lc.deviceId, connectionId: b.lc.connectionId, at: b.at })),
        nodeId,
        now,
        new Date(now.getTime() - redeliverMs),
      );
    } catch (err) {
      // Kept for the next flush (unless a newer heartbeat of the same connection is queued by then).
      log.warn({ err, heartbeats: batch.length }, 'could not record heartbeats; retrying');
      for (const b of batch) if (!beats.has(b.lc.connectionId)) beats.set(b.lc.connectionId, b);
      if (!flushTimer && !stopping) flushTimer = setTimeout(() => void flushHeartbeats(), heartbeatFlushMs).unref();
      return;
    }
    for (const { lc, at } of batch) {
      const o = outcomes.get(lc.connectionId);
      if (!o || o.state === 'replaced') {
        closeReplaced(lc.connectionId);
        continue;
      }
      if (o.state === 'revived') publishStatus(lc.deviceId, 'ONLINE', at);
      if (o.commands) void deliverCommands(lc);
    }
  }

  /** Runs the device protocol on one connection; returns the teardown to call when the transport closes (idempotent). */
  function open(conn: DeviceTransport, info: ConnectionInfo): () => Promise<void> {
    const connectionId = randomUUID();
    let lc: LiveConnection | undefined;
    let closed = false;
    let queue = Promise.resolve();
    /** Frames taken and not done with; an event counts until it is acked. */
    let pending = 0;
    /** Events handed to the store, not acked yet; made on the first event (most connections only heartbeat). */
    let storing: Set<Promise<void>> | undefined;
    let tokens = frameBurst;
    let lastRefill = Date.now();
    let helloSeen = false;
    let idleTimer: NodeJS.Timeout | undefined;
    let teardownPromise: Promise<void> | undefined;

    const closeWith = (code: number, reason: string) => {
      if (closed) return;
      conn.close(code, reason);
      void teardown();
    };
    // Timers never keep the process alive on their own: the transport does.
    const helloTimer = setTimeout(() => closeWith(CloseCode.Timeout, 'no hello in time'), helloTimeoutMs).unref();
    const armIdle = () => {
      // refresh() reschedules the same timer: no allocation per frame.
      if (idleTimer) idleTimer.refresh();
      else idleTimer = setTimeout(() => closeWith(CloseCode.Timeout, 'heartbeat timeout'), silenceMs).unref();
    };

    const teardown = (): Promise<void> => {
      if (teardownPromise) return teardownPromise;
      closed = true;
      clearTimeout(helloTimer);
      if (idleTimer) clearTimeout(idleTimer);
      opened.delete(entry);
      teardownPromise = (async () => {
        // Let a hello or an event already being stored finish, so a claim never lands after the release.
        await queue.catch(() => {});
        if (storing) await Promise.all(storing);
        if (!lc) return;
        const wasLive = live.get(connectionId) === lc;
        live.delete(connectionId);
        if (byDevice.get(lc.deviceId) === lc) byDevice.delete(lc.deviceId);
        if (!wasLive) return; // replaced: the newer connection owns the registry row
        try {
          const now = clock();
          if (await store.releaseConnection(db, lc.deviceId, connectionId, now)) publishStatus(lc.deviceId, 'OFFLINE', now);
        } catch (err) {
          log.warn({ err, deviceId: lc.deviceId }, 'could not record the disconnect; the sweeper will');
        }
      })();
      return teardownPromise;
    };
    const entry = { conn, teardown };
    opened.add(entry);

    async function hello(f: z.infer<typeof helloFrame>) {
      const source = sourceKey(info.ip);
      const pairKey = `${source}|${f.serial}`;
      const [heldS, slow] = await Promise.all([helloFailuresBySerial?.waitFor(pairKey) ?? 0, helloFailuresBySource?.blockedFor(source) ?? 0]);
      // A held (source, serial) is refused without a lookup and without counting against its source.
      if (heldS > 0) return closeWith(CloseCode.BadCredentials, 'bad serial or key');
      const lookup = () => store.deviceBySerial(db, f.serial);
      const device = slow > 0 ? await oneAtATime(source, lookup) : await lookup();
      // Hash either way, so an unknown serial costs what a wrong key does.
      const presented = sha256(f.key);
      if (!device || !safeEqual(presented, device.deviceKeyHash)) {
        await Promise.all([helloFailuresBySerial?.attempt(pairKey), helloFailuresBySource?.consume(source)]);
        return closeWith(CloseCode.BadCredentials, 'bad serial or key');
      }
      // No reset on success: a reconnect storm would write to the limiter store for every device; stale failures expire within the hour.
      if (closed) return;
      const now = clock();
      const claim = await store.claimConnection(db, device.id, { connectionId, nodeId, now, firmware: clean(f.firmware) });
      lc = { conn, connectionId, deviceId: device.id, delivering: false, deliverAgain: false, teardown };
      const previous = byDevice.get(device.id);
      live.set(connectionId, lc);
      byDevice.set(device.id, lc);
      if (claim.cameOnline) publishStatus(device.id, 'ONLINE', now);
      if (claim.replaced) {
        if (previous && previous.connectionId === claim.replaced.connectionId) closeReplaced(previous.connectionId);
        else bus.publish('device.replaced', { deviceId: device.id, connectionId: claim.replaced.connectionId });
      }
      if (closed) return; // the teardown (queued behind this hello) releases the claim
      conn.send(JSON.stringify({ type: 'welcome', heartbeatSeconds, bound: claim.bound }));
      log.debug({ deviceId: device.id, connectionId, ip: info.ip }, 'device connected');
      // Most hellos find no command waiting: then neither statement is needed.
      if (!claim.commands) return;
      await store.supersedeStaleUnbinds(db, device.id, now);
      void deliverCommands(lc);
    }

    /**
     * Hands the event to the store at once, in arrival order, without waiting for the events before
     * it (the store keeps one device's posts in order), so a device's events in flight share a
     * group commit. Each is acked when its own commit is done, never before.
     */
    function event(current: LiveConnection, f: z.infer<typeof eventFrame>): void {
      const rawType = clean(f.eventType) ?? f.eventType;
      const eventType = normaliseEventType(rawType);
      pending++;
      const acked = opts.alarms
        .record(current.deviceId, {
          source: 'ws',
          eventType,
          rawType,
          alarmType: alarmTypeFor(eventType),
          state: f.state,
          channel: f.channel,
          regionId: clean(f.region),
          deviceTime: f.at ? new Date(f.at) : null,
          activePostCount: 0,
          description: clean(f.description),
          channelName: null,
          identity: `w:${String(f.id)}`,
          retransmission: false,
          details: { eventId: String(f.id) },
        })
        .then(
          () => {
            if (!closed) conn.send(JSON.stringify({ type: 'ack', id: f.id }));
          },
          (err: unknown) => {
            // Not acked: the device keeps the event and resends it after reconnecting (nor are later
            // ones, once closed). Only a database fault gets here: the store takes any frame that
            // passed the schema (a time it cannot hold becomes unknown, text it refuses is
            // cleaned), so no input earns a resend loop.
            log.error({ err, deviceId: current.deviceId }, 'could not store a device event');
            closeWith(CloseCode.InternalError, 'event not stored; resend');
          },
        )
        .finally(() => {
          pending--;
          storing!.delete(acked);
        });
      (storing ??= new Set()).add(acked);
    }

    async function handle(frame: Frame) {
      if (closed) return;
      if (frame.type === 'hello') {
        if (helloSeen) return closeWith(CloseCode.BadFrame, 'hello sent twice');
        helloSeen = true;
        clearTimeout(helloTimer);
        armIdle();
        return hello(frame);
      }
      if (!lc) return closeWith(CloseCode.BadFrame, 'hello must be the first frame');
      armIdle();
      switch (frame.type) {
        case 'heartbeat':
          return recordHeartbeat(lc);
        case 'event':
          return event(lc, frame);
        case 'result':
          // A result for a command id that cannot exist is ignored, not an error.
          if (!isUuid(frame.id)) return;
          await store.completeCommand(db, lc.deviceId, frame.id, frame.ok, clock()).catch((err) => log.warn({ err }, 'command result not recorded'));
          return;
      }
    }

    conn.onMessage((data, isBinary) => {
      if (closed) return;
      const now = Date.now();
      tokens = Math.min(frameBurst, tokens + ((now - lastRefill) / 1000) * framesPerSecond);
      lastRefill = now;
      if (tokens < 1) return closeWith(CloseCode.BadFrame, 'too many frames');
      tokens -= 1;
      if (isBinary) return closeWith(CloseCode.BadFrame, 'binary frames are not accepted');
      // The common frame, once welcomed and with nothing queued before it: no parse, no queue.
      if (data === HEARTBEAT_FRAME && lc && pending === 0) {
        armIdle();
        return recordHeartbeat(lc);
      }
      if (Buffer.byteLength(data) > maxFrameBytes) return closeWith(CloseCode.BadFrame, 'frame too large');
      let parsed: Frame;
      try {
        const result = frameSchema.safeParse(JSON.parse(data));
        if (!result.success) return closeWith(CloseCode.BadFrame, `bad frame: ${result.error.issues[0]?.path.join('.') || 'type'}`);
        parsed = result.data;
      } catch {
        return closeWith(CloseCode.BadFrame, 'not JSON');
      }
      if (!helloSeen && parsed.type !== 'hello') return closeWith(CloseCode.BadFrame, 'hello must be the first frame');
      if (pending >= frameBurst) return closeWith(CloseCode.BadFrame, 'too many frames in flight');
      pending++;
      queue = queue
        .then(() => handle(parsed))
        .catch((err) => {
          log.error({ err, connectionId }, 'device frame failed');
          closeWith(CloseCode.InternalError, 'internal error');
        })
        .finally(() => {
          pending--;
        });
    });

    return teardown;
  }

  /** Sweeps once: WebSocket devices silent for 2.5 heartbeats and ISAPI devices silent for DEVICE_OFFLINE_AFTER_S. Publishes each transition. */
  async function sweep(): Promise<{ offline: number; unknown: number }> {
    const now = clock();
    let offline = 0;
    let unknown = 0;
    for (const id of await store.sweepWebSocketDevices(db, new Date(now.getTime() - silenceMs), 5000)) {
      offline++;
      publishStatus(id, 'OFFLINE', now);
    }
    for (const row of await store.sweepIsapiDevices(db, new Date(now.getTime() - isapiOfflineMs), 5000)) {
      if (row.heartbeats) offline++;
      else unknown++;
      publishStatus(row.id, row.heartbeats ? 'OFFLINE' : 'UNKNOWN', now);
    }
    return { offline, unknown };
  }

  const sweeper: LeasedJob = createLeasedJob(db, {
    name: 'device-registry-sweeper',
    holder: nodeId,
    intervalMs: opts.sweepIntervalMs ?? 5000,
    clock,
    log,
    run: async () => {
      await sweep();
      await opts.alarms.endQuiet();
    },
  });

  /**
   * Queues a command for the device and asks whichever node holds its connection to deliver it.
   * Delivered at least once while the device is connected (again after 30 s without a result), or
   * on its next connection; expires after a day. Returns the command id.
   */
  async function sendCommand(deviceId: string, name: 'unbind'): Promise<string> {
    const now = clock();
    const id = await store.insertCommand(db, { deviceId, name, now, expiresAt: new Date(now.getTime() + commandTtlMs) });
    const local = byDevice.get(deviceId);
    if (local) void deliverCommands(local);
    else bus.publish('device.command', { deviceId });
    return id;
  }

  const probeId = `probe:${randomUUID()}`;
  let isReady = false;
  let markReady: () => void = () => {};
  const readyPromise = new Promise<void>((resolve) => {
    markReady = () => {
      isReady = true;
      resolve();
    };
  });

  /** Seen-write throttle for ISAPI devices: posts within a second of the last recorded one do not write. */
  const isapiSeen = new Map<string, { at: number; heartbeats: boolean }>();

  return {
    open,
    sweep,
    sweeper,

    /**
     * An ISAPI post (alarm, ignored or heartbeat) from `deviceId`: ONLINE on each post, lastSeenAt
     * refreshed, and `heartbeats` recorded once the device sends one (from then on silence means
     * OFFLINE, not UNKNOWN). Writes at most about once a second per device and node.
     */
    async recordIsapiSeen(deviceId: string, heartbeat: boolean): Promise<void> {
      const now = clock();
      const last = isapiSeen.get(deviceId);
      if (last && now.getTime() - last.at < 1000 && now.getTime() >= last.at && (last.heartbeats || !heartbeat)) return;
      if (await store.touchIsapi(db, deviceId, now, heartbeat)) publishStatus(deviceId, 'ONLINE', now);
      if (isapiSeen.size > 50_000) isapiSeen.clear();
      isapiSeen.set(deviceId, { at: now.getTime(), heartbeats: heartbeat || (last?.heartbeats ?? false) });
    },

    sendCommand,

    /** Tells the device it was unbound or transferred (the devices service's DeviceCommands seam). */
    async sendUnbind(deviceId: string): Promise<void> {
      await sendCommand(deviceId, 'unbind');
    },

    /** Connections this node holds after hello. */
    connectionCount: () => live.size,

    /** Records the heartbeats queued so far now, rather than at the next flush (tests, shutdown). */
    flushHeartbeats,

    /**
     * Starts the bus listeners and the sweeper. Connections a previous process left behind are not
     * cleared here (two processes may share a NODE_ID by mistake): their devices reconnect and
     * replace them, or the sweeper finds them silent.
     */
    start() {
      stopping = false;
      const warn = (fields: object, message: string) => !stopping && log.warn(fields, message);
      unlisten.push(
        bus.listen('device.replaced', (p) => closeReplaced(p.connectionId), warn),
        bus.listen(
          'device.command',
          (p) => {
            if (p.deviceId === probeId) return markReady();
            const lc = byDevice.get(p.deviceId);
            if (lc) void deliverCommands(lc);
          },
          warn,
        ),
      );
      // With Redis, subscribing takes a round trip: probe until our own message comes back.
      void (async () => {
        for (let i = 0; i < 100 && !isReady; i++) {
          bus.publish('device.command', { deviceId: probeId });
          await new Promise((r) => setTimeout(r, 20).unref());
        }
        markReady();
      })();
      sweeper.start();
    },

    /** Resolves once the bus listeners receive messages (at most ~2 s after start). */
    ready: () => readyPromise,

    /** Closes every device connection (1001), records them OFFLINE, stops the sweeper and the listeners. */
    async stop() {
      stopping = true;
      if (flushTimer) clearTimeout(flushTimer);
      flushTimer = undefined;
      // Every connection is released below; queued heartbeats no longer matter.
      beats.clear();
      await flushing;
      const all = [...opened];
      for (const o of all) o.conn.close(CloseCode.GoingAway, 'gateway shutting down');
      await Promise.allSettled(all.map((o) => o.teardown()));
      await sweeper.stop();
      await Promise.allSettled(unlisten.splice(0).map((stop) => stop()));
    },
  };
}

export type DeviceRegistry = ReturnType<typeof createDeviceRegistry>;
