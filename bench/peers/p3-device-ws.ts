// P3 for S7: a raw `ws` server speaking the device channel's hello/welcome/heartbeat with the
// least state that still does the job: key hashes in a Map, lastSeen per device in memory, no
// database, no bus. It is the floor for memory per device socket and CPU per heartbeat.
//
//   npx tsx bench/peers/p3-device-ws.ts <seed> <prefix> <count> <heartbeatSeconds>
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { deviceKeyFor, serialFor } from '../lib/device-load';

const [seed = 'seed', prefix = 'P3', countArg = '1000', heartbeatArg = '30'] = process.argv.slice(2);
const heartbeatSeconds = Number(heartbeatArg);
const sha256 = (s: string) => createHash('sha256').update(s).digest();
const keyHashes = new Map<string, Buffer>();
for (let i = 0; i < Number(countArg); i++) keyHashes.set(serialFor(prefix, i), sha256(deviceKeyFor(seed, i)));
const lastSeen = new Map<string, number>();
const silenceMs = heartbeatSeconds * 2500;

const server = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({
  server,
  path: '/devices/ws',
  perMessageDeflate: false,
  maxPayload: 64 * 1024,
  handleProtocols: (p) => (p.has('vigil-device.v1') ? 'vigil-device.v1' : false),
});
wss.on('connection', (ws: WebSocket) => {
  let serial: string | undefined;
  const hello = setTimeout(() => ws.close(4408, 'no hello in time'), 5000);
  ws.on('message', (data) => {
    let frame: { type?: string; serial?: string; key?: string };
    try {
      frame = JSON.parse(String(data));
    } catch {
      return ws.close(4400, 'not JSON');
    }
    if (frame.type === 'heartbeat' && serial) {
      lastSeen.set(serial, Date.now());
      return;
    }
    if (frame.type === 'hello' && !serial && typeof frame.serial === 'string' && typeof frame.key === 'string') {
      const expected = keyHashes.get(frame.serial);
      if (!expected || !timingSafeEqual(expected, sha256(frame.key))) return ws.close(4401, 'bad serial or key');
      clearTimeout(hello);
      serial = frame.serial;
      lastSeen.set(serial, Date.now());
      ws.send(JSON.stringify({ type: 'welcome', heartbeatSeconds, bound: true }));
      return;
    }
    ws.close(4400, 'bad frame');
  });
  ws.on('error', () => {});
  ws.on('close', () => {
    clearTimeout(hello);
    if (serial) lastSeen.delete(serial);
  });
});
// The liveness rule, as one sweep a second over the in-memory table rather than a timer per socket.
setInterval(() => {
  const cutoff = Date.now() - silenceMs;
  for (const [s, at] of lastSeen) if (at < cutoff) lastSeen.delete(s);
}, 1000).unref();

server.listen(0, '127.0.0.1', () => {
  console.log(`READY ws://127.0.0.1:${(server.address() as AddressInfo).port}/devices/ws`);
});
process.on('SIGTERM', () => process.exit(0));
