// ISAPI alarm-host load: keeps `concurrency` posts in flight (one keep-alive socket each, a minimal
// HTTP/1.1 client so the load costs little CPU) for a fixed time, each post a new alarm (its own
// channel), as Hikvision firmware sends it. Runs as its own process:
//
//   node --import tsx bench/lib/isapi-load.ts --base http://127.0.0.1:4000 --tokens-file F \
//     --concurrency 32 --duration-ms 8000 --channel-base 1000000
//
// prints `READY load`, then runs once per SIGUSR2 (its n-th run on channels channel-base + n * 1,000,000),
// printing `RESULT {"ok":..,"statuses":{..},"elapsedMs":..,"p50":..,"p99":..}` after each; SIGTERM ends it.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { parseArgs } from 'node:util';

export interface IsapiLoadResult {
  /** Posts answered 200. */
  ok: number;
  statuses: Record<string, number>;
  elapsedMs: number;
  /** Post round-trip percentiles, ms. */
  p50: number;
  p99: number;
  errors: number;
}

export function alertXml(channel: number, n: number): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\r\n<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">\r\n<ipAddress>192.168.1.64</ipAddress>\r\n<portNo>80</portNo>\r\n<protocol>HTTP</protocol>\r\n<macAddress>44:19:b6:7a:10:2c</macAddress>\r\n<channelID>${channel}</channelID>\r\n<dateTime>${new Date().toISOString()}</dateTime>\r\n<activePostCount>${n}</activePostCount>\r\n<eventType>VMD</eventType>\r\n<eventState>active</eventState>\r\n<eventDescription>Motion alarm</eventDescription>\r\n</EventNotificationAlert>\r\n`;
}

/** One keep-alive connection sending one request at a time and reading `Content-Length` responses. */
class Connection {
  private socket: net.Socket;
  private buffered: Buffer = Buffer.alloc(0);
  private waiting: { resolve: (status: number) => void; reject: (err: Error) => void } | null = null;

  constructor(host: string, port: number) {
    this.socket = net.connect({ host, port, noDelay: true });
    this.socket.on('data', (chunk: Buffer) => {
      this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
      this.drain();
    });
    const fail = (err: Error) => {
      const w = this.waiting;
      this.waiting = null;
      w?.reject(err);
    };
    this.socket.on('error', fail);
    this.socket.on('close', () => fail(new Error('connection closed')));
  }

  private drain() {
    const end = this.buffered.indexOf('\r\n\r\n');
    if (end < 0 || !this.waiting) return;
    const head = this.buffered.subarray(0, end).toString('latin1');
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
    if (this.buffered.length < end + 4 + length) return;
    this.buffered = this.buffered.subarray(end + 4 + length);
    const status = Number(head.slice(9, 12));
    const w = this.waiting;
    this.waiting = null;
    w.resolve(status);
  }

  request(raw: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(raw);
    });
  }

  close() {
    this.socket.destroy();
  }
}

/** Posts as fast as `concurrency` allows for `durationMs`; the n-th post goes to device n % tokens, channel base + n / tokens. */
export async function runIsapiLoad(base: string, tokens: string[], concurrency: number, durationMs: number, channelBase: number): Promise<IsapiLoadResult> {
  const url = new URL(base);
  const conns = Array.from({ length: concurrency }, () => new Connection(url.hostname, Number(url.port)));
  const statuses: Record<string, number> = {};
  const latencies: number[] = [];
  let errors = 0;
  let seq = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(
    conns.map(async (conn) => {
      while (performance.now() < deadline) {
        const n = seq++;
        const token = tokens[n % tokens.length]!;
        const body = alertXml(channelBase + Math.floor(n / tokens.length), n);
        const raw = `POST /isapi/events/${token} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/xml\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
        const t0 = performance.now();
        try {
          const status = await conn.request(raw);
          latencies.push(performance.now() - t0);
          statuses[status] = (statuses[status] ?? 0) + 1;
        } catch {
          errors++;
          return;
        }
      }
    }),
  );
  const elapsedMs = performance.now() - started;
  for (const c of conns) c.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil((p / 100) * latencies.length) - 1))] ?? NaN;
  return { ok: statuses[200] ?? 0, statuses, elapsedMs, p50: pct(50), p99: pct(99), errors };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      base: { type: 'string' },
      'tokens-file': { type: 'string' },
      concurrency: { type: 'string', default: '32' },
      'duration-ms': { type: 'string', default: '5000' },
      'channel-base': { type: 'string', default: '1' },
    },
  });
  const tokens = readFileSync(values['tokens-file']!, 'utf8').split('\n').filter(Boolean);
  const concurrency = Math.min(Math.max(Number(values.concurrency), 1), 1024);
  const durationMs = Math.min(Number(values['duration-ms']), 120_000);
  const channelBase = Number(values['channel-base']);
  // One run per SIGUSR2 (the n-th on channels channelBase + n * 1,000,000), so one process serves every round.
  let runs = 0;
  let running = false;
  process.on('SIGUSR2', () => {
    if (running) return;
    running = true;
    void runIsapiLoad(values.base!, tokens, concurrency, durationMs, channelBase + runs++ * 1_000_000).then((result) => {
      running = false;
      console.log(`RESULT ${JSON.stringify(result)}`);
    });
  });
  process.on('SIGTERM', () => process.exit(0));
  setInterval(() => {}, 60_000);
  console.log('READY load');
}
