import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { WebSocket } from 'ws';

/** One simulated device's credentials (what provisioning returned). */
export interface SimulatedDevice {
  serial: string;
  deviceKey: string;
}

export interface SimulatorStats {
  devices: number;
  connected: number;
  /** Devices welcomed at least once since the start. */
  everConnected: number;
  alarmsSent: number;
  acked: number;
  /** Events raised but not acked yet (kept and sent again after a reconnect). */
  pending: number;
  reconnects: number;
  commands: number;
  /** Devices that gave up: refused credentials (4401). */
  refused: number;
}

export interface SimulatorOptions {
  /** The device channel, e.g. ws://127.0.0.1:4000/devices/ws. */
  url: string;
  devices: readonly SimulatedDevice[];
  /** Alarms per device per second (a Poisson process); 0 for none. */
  alarmRate: number;
  /** Event types to raise, picked at random. Default: the common ISAPI ones. */
  eventTypes?: readonly string[];
  /** Reconnect backoff: doubles from `initialMs` up to `maxMs`, with jitter. Defaults 500 ms and 30 s. */
  backoff?: { initialMs: number; maxMs: number };
  /** Unacked events kept per device at most; no new alarms are raised beyond. Default 1000. */
  maxPending?: number;
  /** Firmware string sent in hello. */
  firmware?: string;
  onLog?: (line: string) => void;
}

export interface Simulator {
  stats(): SimulatorStats;
  /** Resolves once every device (that was not refused) has been welcomed at least once. */
  allConnected(): Promise<void>;
  /** Cuts every socket without a close handshake, as a network failure would (tests, demos). */
  dropConnections(): void;
  stop(): Promise<void>;
}

/** DEVICES.md section 3 (the same as device-registry's DEVICE_SUBPROTOCOL; not imported, to keep the CLI light). */
const DEVICE_SUBPROTOCOL = 'vigil-device.v1';

const DEFAULT_TYPES = ['VMD', 'linedetection', 'fielddetection', 'regionEntrance', 'tamperdetection', 'IO'];

/**
 * A fleet of simulated devices on the WebSocket channel (DEVICES.md section 3): hello,
 * heartbeats at the interval the gateway asks for, alarms at `alarmRate` per device per second,
 * results for commands, reconnection with exponential backoff and jitter, and every unacked event
 * sent again after reconnecting (at-least-once delivery; the gateway stores each id once).
 */
export function startSimulator(opts: SimulatorOptions): Simulator {
  const types = opts.eventTypes?.length ? opts.eventTypes : DEFAULT_TYPES;
  const backoff = opts.backoff ?? { initialMs: 500, maxMs: 30_000 };
  const maxPending = opts.maxPending ?? 1000;
  const runId = randomBytes(4).toString('hex');
  const totals = { alarmsSent: 0, acked: 0, reconnects: 0, commands: 0, refused: 0 };
  let stopping = false;
  const welcomedOnce = new Set<string>();
  let onAllConnected: (() => void) | undefined;
  const allConnected = new Promise<void>((resolve) => {
    onAllConnected = resolve;
  });

  const fleet = opts.devices.map((d) => {
    const state = {
      d,
      ws: null as WebSocket | null,
      connected: false,
      refused: false,
      attempt: 0,
      nextId: 0,
      unacked: new Map<string, string>(),
      heartbeat: undefined as NodeJS.Timeout | undefined,
      alarmTimer: undefined as NodeJS.Timeout | undefined,
      reconnectTimer: undefined as NodeJS.Timeout | undefined,
    };

    const checkAll = () => {
      if (fleet.every(({ state: s }) => s.refused || welcomedOnce.has(s.d.serial))) onAllConnected?.();
    };

    const scheduleAlarm = () => {
      if (stopping || opts.alarmRate <= 0) return;
      const delay = (-Math.log(1 - Math.random()) / opts.alarmRate) * 1000;
      state.alarmTimer = setTimeout(() => {
        if (state.unacked.size < maxPending && !state.refused) {
          const id = `${runId}-${state.nextId++}`;
          const frame = JSON.stringify({
            type: 'event',
            id,
            channel: 1,
            eventType: types[Math.floor(Math.random() * types.length)],
            state: 'active',
            at: new Date().toISOString(),
            description: 'simulated alarm',
          });
          state.unacked.set(id, frame);
          totals.alarmsSent++;
          if (state.connected) state.ws?.send(frame);
        }
        scheduleAlarm();
      }, Math.min(delay, 3_600_000));
    };

    const connect = () => {
      if (stopping || state.refused) return;
      const ws = new WebSocket(opts.url, [DEVICE_SUBPROTOCOL], { handshakeTimeout: 10_000 });
      state.ws = ws;
      ws.on('open', () => {
        ws.send(JSON.stringify({ type: 'hello', serial: d.serial, key: d.deviceKey, model: 'VIGIL-SIM', firmware: opts.firmware ?? 'vigil-simulator 1', channels: 1 }));
      });
      ws.on('message', (raw) => {
        let f: { type?: string; id?: unknown; name?: unknown; heartbeatSeconds?: unknown };
        try {
          f = JSON.parse(raw.toString()) as typeof f;
        } catch {
          return;
        }
        if (f.type === 'welcome') {
          state.connected = true;
          state.attempt = 0;
          welcomedOnce.add(d.serial);
          const seconds = typeof f.heartbeatSeconds === 'number' && f.heartbeatSeconds > 0 ? f.heartbeatSeconds : 30;
          state.heartbeat = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('{"type":"heartbeat"}'), seconds * 1000);
          for (const frame of state.unacked.values()) ws.send(frame); // resend what was never acked
          checkAll();
        } else if (f.type === 'ack' && typeof f.id === 'string') {
          if (state.unacked.delete(f.id)) totals.acked++;
        } else if (f.type === 'command') {
          totals.commands++;
          opts.onLog?.(`${d.serial}: command ${String(f.name)}`);
          ws.send(JSON.stringify({ type: 'result', id: f.id, ok: true }));
        }
      });
      ws.on('error', () => {}); // 'close' follows
      ws.on('close', (code, reason) => {
        state.connected = false;
        if (state.heartbeat) clearInterval(state.heartbeat);
        if (stopping) return;
        if (code === 4401) {
          state.refused = true;
          totals.refused++;
          opts.onLog?.(`${d.serial}: refused (bad serial or key); not retrying`);
          checkAll();
          return;
        }
        if (code === 4409) opts.onLog?.(`${d.serial}: replaced by another connection of the same serial`);
        else if (code !== 1006 && code !== 1001) opts.onLog?.(`${d.serial}: closed ${code} ${reason.toString()}`);
        const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** state.attempt++);
        state.reconnectTimer = setTimeout(() => {
          totals.reconnects++;
          connect();
        }, ceiling / 2 + (Math.random() * ceiling) / 2);
      });
    };

    return { state, connect, scheduleAlarm };
  });

  for (const f of fleet) {
    f.connect();
    f.scheduleAlarm();
  }

  return {
    stats() {
      return {
        devices: fleet.length,
        connected: fleet.filter((f) => f.state.connected).length,
        everConnected: welcomedOnce.size,
        alarmsSent: totals.alarmsSent,
        acked: totals.acked,
        pending: fleet.reduce((n, f) => n + f.state.unacked.size, 0),
        reconnects: totals.reconnects,
        commands: totals.commands,
        refused: totals.refused,
      };
    },
    allConnected: () => allConnected,
    dropConnections() {
      for (const f of fleet) f.state.ws?.terminate();
    },
    async stop() {
      stopping = true;
      const closed: Array<Promise<unknown>> = [];
      for (const { state } of fleet) {
        clearTimeout(state.alarmTimer);
        clearTimeout(state.reconnectTimer);
        if (state.heartbeat) clearInterval(state.heartbeat);
        const ws = state.ws;
        if (ws && ws.readyState !== WebSocket.CLOSED) {
          closed.push(new Promise((r) => ws.once('close', r)));
          ws.close(1000, 'simulator stopping');
          setTimeout(() => ws.terminate(), 2000).unref();
        }
      }
      await Promise.all(closed);
    },
  };
}

/** One line of progress, e.g. `connected 98/100  alarms sent 1234  acked 1230  pending 4  reconnects 3`. */
export function progressLine(s: SimulatorStats): string {
  const parts = [`connected ${s.connected}/${s.devices}`, `alarms sent ${s.alarmsSent}`, `acked ${s.acked}`, `pending ${s.pending}`, `reconnects ${s.reconnects}`];
  if (s.commands) parts.push(`commands ${s.commands}`);
  if (s.refused) parts.push(`refused ${s.refused}`);
  return parts.join('  ');
}

/**
 * The last line of a run, e.g. `summary: 20/20 devices connected during 60 s; 240 alarms sent,
 * 240 acked, 0 unacked at stop; 1 reconnect`. Printed after the sockets close, when the progress
 * line's "connected" is 0 by design.
 */
export function summaryLine(s: SimulatorStats, seconds: number): string {
  const parts = [
    `summary: ${s.everConnected}/${s.devices} devices connected during ${Math.round(seconds)} s`,
    `${s.alarmsSent} alarms sent, ${s.acked} acked, ${s.pending} unacked at stop`,
    `${s.reconnects} ${s.reconnects === 1 ? 'reconnect' : 'reconnects'}`,
  ];
  if (s.commands) parts.push(`${s.commands} commands answered`);
  if (s.refused) parts.push(`${s.refused} refused (wrong device key: delete the state file to provision again)`);
  return parts.join('; ');
}

interface StateFile {
  devices: Array<SimulatedDevice & { verificationCode?: string; ingestPath?: string }>;
}

/**
 * Provisions `count` devices named `<prefix>-00001`... through the operator endpoint, reusing the
 * ones recorded in `stateFile` (device keys are shown only once, so the file is what makes reuse
 * possible). A serial that exists but is not in the file is skipped for the next one.
 * Throws with a readable message when the gateway refuses the admin token or is unreachable.
 */
export async function provisionFleet(o: {
  adminUrl: string;
  adminToken: string;
  count: number;
  prefix: string;
  stateFile: string;
  concurrency?: number;
  onLog?: (line: string) => void;
}): Promise<SimulatedDevice[]> {
  let state: StateFile = { devices: [] };
  try {
    state = JSON.parse(readFileSync(o.stateFile, 'utf8')) as StateFile;
  } catch {
    // no state yet
  }
  const known = new Map(state.devices.map((d) => [d.serial, d]));
  const chosen: SimulatedDevice[] = [];
  const save = () => {
    mkdirSync(path.dirname(o.stateFile), { recursive: true });
    const tmp = `${o.stateFile}.tmp`;
    writeFileSync(tmp, JSON.stringify({ devices: [...known.values()] }, null, 1), { mode: 0o600 });
    renameSync(tmp, o.stateFile);
  };
  let index = 1;
  let reserved = 0; // devices taken or being provisioned, so parallel workers never overshoot
  const maxIndex = o.count * 2 + 100;
  const next = async (): Promise<void> => {
    while (reserved < o.count && index <= maxIndex) {
      const serial = `${o.prefix}-${String(index++).padStart(5, '0')}`;
      reserved++;
      const existing = known.get(serial);
      if (existing) {
        chosen.push({ serial: existing.serial, deviceKey: existing.deviceKey });
        continue;
      }
      const res = await fetch(o.adminUrl, {
        method: 'POST',
        headers: { authorization: `Bearer ${o.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ serial, model: 'VIGIL-SIM', channels: 1 }),
        signal: AbortSignal.timeout(15_000),
      });
      if (res.status === 409) {
        reserved--;
        o.onLog?.(`${serial} is provisioned but its key is not in ${o.stateFile}; skipping it`);
        continue;
      }
      if (res.status !== 201) throw new Error(`provisioning ${serial}: the gateway answered ${res.status} ${(await res.text()).slice(0, 200)}`);
      const body = (await res.json()) as SimulatedDevice & { verificationCode: string; ingestPath: string };
      known.set(serial, { serial, deviceKey: body.deviceKey, verificationCode: body.verificationCode, ingestPath: body.ingestPath });
      chosen.push({ serial, deviceKey: body.deviceKey });
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency ?? 8 }, next));
  } finally {
    save();
  }
  if (chosen.length < o.count) throw new Error(`could only provision ${chosen.length} of ${o.count} devices; try another --prefix`);
  return chosen.sort((a, b) => a.serial.localeCompare(b.serial));
}
