/**
 * Memory held by hostile in-flight ISAPI posts (issue 13): how much a node's RSS grows while
 * `posts` requests with a multipart part that has no Content-Disposition header are in flight,
 * and whether the gateway ends them.
 *
 *   npx tsx bench/isapi-hostile.ts [--posts 200] [--bytes 1700000] [--tokens 1] [--mode complete|slow]
 *     [--hold 5] [--gateway-dir DIR]
 *
 * Starts the gateway from `--gateway-dir` (default: this checkout) as its own process on a fresh
 * database: a scratch Postgres database next to TEST_DATABASE_URL when it is set (dropped
 * afterwards; the figures are then the gateway's alone), else embedded PGlite in a temporary
 * DATA_DIR (whose own wasm heap makes RSS noisy). No Redis. It provisions
 * `tokens` devices through the admin endpoint, then opens `posts` raw connections spread over
 * those devices' ingest paths at once. `--mode complete` sends each whole body (the part without
 * Content-Disposition, `bytes` long); `--mode slow` sends all of it but the last byte and never
 * finishes. It samples the gateway's RSS (/proc/<pid>/status) every 50 ms for `hold` seconds
 * while the connections stay open, then prints the baseline, the peak, the RSS at the end of the
 * hold, and how many posts were answered (by status) or still waiting. To measure the code
 * before a change, unpack that commit elsewhere (`git archive <rev> | tar -x -C DIR`, with
 * `node_modules` linked in) and pass `--gateway-dir DIR`.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startGateway } from '../test/helpers/gateway-process';
import { scratchDatabase } from '../test/helpers/scratch-database';

const { values } = parseArgs({
  options: {
    posts: { type: 'string', default: '200' },
    bytes: { type: 'string', default: '1700000' },
    tokens: { type: 'string', default: '1' },
    mode: { type: 'string', default: 'complete' },
    hold: { type: 'string', default: '5' },
    'gateway-dir': { type: 'string' },
  },
});
const posts = Math.min(Math.max(Number(values.posts), 1), 2000);
const bytes = Math.min(Math.max(Number(values.bytes), 1024), 8 * 1024 * 1024);
const tokenCount = Math.min(Math.max(Number(values.tokens), 1), posts);
const mode = values.mode === 'slow' ? 'slow' : 'complete';
const holdMs = Math.min(Math.max(Number(values.hold), 1), 120) * 1000;
const gatewayDir = path.resolve(values['gateway-dir'] ?? fileURLToPath(new URL('..', import.meta.url)));

const database = process.env.TEST_DATABASE_URL ? await scratchDatabase(process.env.TEST_DATABASE_URL, 'vigil_bench_') : undefined;
const adminToken = randomBytes(24).toString('base64url');
// The gateway process starts in the working directory: the checkout being measured.
process.chdir(gatewayDir);
const gateway = await startGateway('hostile', { ADMIN_TOKEN: adminToken, NODE_ENV: 'production', DATABASE_URL: database?.url ?? '', REDIS_URL: '' });
const baseUrl = gateway.url;

const rssMiB = () => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${gateway.proc.pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};

try {
  const ingestPaths: string[] = [];
  for (let i = 0; i < tokenCount; i++) {
    const res = await fetch(`${baseUrl}/admin/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ serial: `DS-HOSTILE-${i}-${randomBytes(4).toString('hex').toUpperCase()}`, model: 'DS-2CD2143G2-I', channels: 1 }),
    });
    if (res.status !== 201) throw new Error(`provisioning answered ${res.status}: ${await res.text()}`);
    ingestPaths.push(((await res.json()) as { ingestPath: string }).ingestPath);
  }

  // The hostile body: one part without Content-Disposition, an alert padded to `bytes` (the shape that hung busboy).
  const alert = `<?xml version="1.0" encoding="UTF-8"?>\r\n<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">\r\n<channelID>1</channelID>\r\n<dateTime>2026-11-21T10:00:00Z</dateTime>\r\n<activePostCount>1</activePostCount>\r\n<eventType>VMD</eventType>\r\n<eventState>active</eventState>\r\n</EventNotificationAlert>\r\n`;
  const head = Buffer.from(`--b\r\nContent-Type: application/xml\r\n\r\n${alert}<!-- `, 'latin1');
  const tail = Buffer.from(' -->\r\n--b--\r\n', 'latin1');
  const body = Buffer.concat([head, Buffer.alloc(Math.max(0, bytes - head.length - tail.length), 0x61), tail]);
  const sentBody = mode === 'slow' ? body.subarray(0, body.length - 1) : body;

  // Warm the process (parser, database, JIT) so the baseline is a running gateway's.
  for (let i = 0; i < 20; i++) await fetch(`${baseUrl}${ingestPaths[0]}`, { method: 'POST', headers: { 'content-type': 'application/xml' }, body: alert }).then((r) => r.text());
  global.gc?.();
  await new Promise((r) => setTimeout(r, 1000));
  const baseline = rssMiB();

  const { hostname, port } = new URL(baseUrl);
  const statuses = new Map<string, number>();
  let waiting = posts;
  const answeredAt: number[] = [];
  const sockets: Socket[] = [];
  const started = Date.now();
  for (let i = 0; i < posts; i++) {
    const socket = connect(Number(port), hostname);
    sockets.push(socket);
    let data = '';
    let settled = false;
    const settle = (status: string) => {
      if (settled) return;
      settled = true;
      waiting--;
      answeredAt.push(Date.now() - started);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    };
    socket.on('error', () => settle('reset'));
    socket.on('data', (c) => {
      data += c.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      if (m) settle(m[1]!);
    });
    socket.on('close', () => settle('closed without answer'));
    socket.write(`POST ${ingestPaths[i % ingestPaths.length]} HTTP/1.1\r\nHost: bench\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: ${body.length}\r\n\r\n`);
    socket.write(sentBody);
  }

  let peak = baseline;
  while (Date.now() - started < holdMs) {
    peak = Math.max(peak, rssMiB());
    await new Promise((r) => setTimeout(r, 50));
  }
  const held = rssMiB();
  const heldWaiting = waiting;
  for (const s of sockets) s.destroy();
  answeredAt.sort((a, b) => a - b);

  console.log(
    JSON.stringify(
      {
        gatewayDir,
        database: database ? 'postgres' : 'pglite',
        mode,
        posts,
        bodyBytes: body.length,
        tokens: tokenCount,
        holdS: holdMs / 1000,
        rssMiB: { baseline: Math.round(baseline), peak: Math.round(peak), atEndOfHold: Math.round(held), heldDelta: Math.round(held - baseline), peakDelta: Math.round(peak - baseline) },
        answered: Object.fromEntries(statuses),
        stillWaitingAtEndOfHold: heldWaiting,
        lastAnswerAfterMs: answeredAt.at(-1) ?? null,
      },
      null,
      2,
    ),
  );
} finally {
  await gateway.kill('SIGTERM');
  await database?.drop();
}
