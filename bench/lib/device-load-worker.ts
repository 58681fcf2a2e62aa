// One process of the device-fleet load client (bench/lib/device-load.ts starts several with IPC):
// once told the URL, holds thousands of device sockets on the device WebSocket (DEVICES.md section 3), says hello
// with bounded concurrency, then heartbeats each device at the period its welcome asks for, spread
// evenly over the period. Answers `stats` requests; `stop` closes every socket and exits.
import { WebSocket } from 'ws';
import { deviceKeyFor, emptyFleetStats, serialFor, type FleetStats, type WorkerRequest, type WorkerSpec } from './device-load';

const spec = JSON.parse(process.env.DEVICE_LOAD_SPEC ?? '{}') as WorkerSpec;
const send = (m: unknown) => process.send?.(m);

interface Device {
  index: number;
  ws?: WebSocket;
  welcomed: boolean;
  attempts: number;
}

const stats: FleetStats = emptyFleetStats(spec.to - spec.from);
const devices: Device[] = [];
for (let i = spec.from; i < spec.to; i++) devices.push({ index: i, welcomed: false, attempts: 0 });

// Heartbeat schedule: a 100 ms tick walks buckets; device i beats in bucket i mod buckets, so the
// fleet's heartbeats spread evenly over the period instead of arriving in one burst.
const TICK_MS = 100;
let heartbeatSeconds = 0;
let buckets: Device[][] = [];
let tick = 0;
let ticker: NodeJS.Timeout | undefined;
const HEARTBEAT = JSON.stringify({ type: 'heartbeat' });

function schedule(d: Device, period: number) {
  if (!heartbeatSeconds) {
    heartbeatSeconds = period;
    buckets = Array.from({ length: Math.max(1, Math.round((period * 1000) / TICK_MS)) }, () => []);
    ticker = setInterval(() => {
      const bucket = buckets[tick++ % buckets.length]!;
      for (const b of bucket) {
        if (b.ws?.readyState === WebSocket.OPEN) {
          b.ws.send(HEARTBEAT);
          stats.heartbeats++;
        }
      }
    }, TICK_MS);
  }
  buckets[d.index % buckets.length]!.push(d);
}

let stopping = false;

let url = '';

function connect(d: Device): Promise<void> {
  return new Promise((resolve) => {
    d.attempts++;
    const ws = new WebSocket(url, 'vigil-device.v1', {
      perMessageDeflate: false,
      handshakeTimeout: 20_000,
    });
    d.ws = ws;
    let settled = false;
    const settle = () => {
      if (!settled) {
        settled = true;
        resolve();
      }
    };
    ws.on('open', () => {
      ws.send(
        JSON.stringify({
          type: 'hello',
          serial: serialFor(spec.prefix, d.index),
          key: deviceKeyFor(spec.seed, d.index),
          model: 'DS-2CD2143G2-I',
          firmware: 'V5.7.3',
          channels: 1,
        }),
      );
    });
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as {
        type: string;
        heartbeatSeconds?: number;
      };
      if (frame.type === 'welcome' && !d.welcomed) {
        d.welcomed = true;
        stats.welcomed++;
        stats.open++;
        schedule(d, frame.heartbeatSeconds ?? 30);
        settle();
      }
    });
    ws.on('error', () => {});
    ws.on('close', (code) => {
      if (d.welcomed) {
        stats.open--;
        if (!stopping) {
          stats.closesAfterWelcome++;
          stats.closeCodes[code] = (stats.closeCodes[code] ?? 0) + 1;
        }
        return;
      }
      // Refused before welcome (overload, reset): retry a few times with a short pause.
      if (!stopping && d.attempts < 5) {
        stats.retries++;
        setTimeout(() => void connect(d).then(settle), 200 * d.attempts);
      } else {
        stats.failed++;
        stats.closeCodes[code] = (stats.closeCodes[code] ?? 0) + 1;
        settle();
      }
    });
  });
}

async function ramp() {
  let next = 0;
  let lastProgress = Date.now();
  const runner = async () => {
    while (next < devices.length && !stopping) {
      await connect(devices[next++]!);
      if (Date.now() - lastProgress > 1000) {
        lastProgress = Date.now();
        send({ type: 'progress', stats });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(spec.concurrency, devices.length) }, runner));
  send({ type: 'ramped', stats });
}

process.on('message', (m: WorkerRequest) => {
  if (m.type === 'connect' && !url) {
    url = m.url;
    send({ type: 'connecting', id: m.id });
    void ramp();
  }
  if (m.type === 'stats') send({ type: 'stats', id: m.id, stats });
  if (m.type === 'stop') {
    stopping = true;
    if (ticker) clearInterval(ticker);
    for (const d of devices) d.ws?.terminate();
    send({ type: 'stopped', id: m.id });
    setTimeout(() => process.exit(0), 50);
  }
});
process.on('disconnect', () => process.exit(0));

send({ type: 'ready' });
