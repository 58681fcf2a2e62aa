// P3: a raw `ws` broadcast server, the floor for S2. Sockets join a tag (`/?tag=3`); POST
// /frame sets the bytes (a captured Vigil `next` message), POST /broadcast?tag=3 sends them to
// every socket of that tag (no tag: every socket). The frame is encoded once and the same
// Buffer goes to every socket, as a hand-written broadcast would.
import { createServer } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';

const byTag = new Map<number, Set<WebSocket>>();
let frame = Buffer.from('{"type":"next"}');

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.method === 'POST' && url.pathname === '/frame') {
      frame = Buffer.concat(chunks);
      res.end('ok');
      return;
    }
    if (req.method === 'POST' && url.pathname === '/broadcast') {
      const tag = url.searchParams.get('tag');
      const sets = tag === null ? [...byTag.values()] : [byTag.get(Number(tag)) ?? new Set<WebSocket>()];
      let sent = 0;
      for (const set of sets) {
        for (const ws of set) {
          ws.send(frame, { binary: false });
          sent++;
        }
      }
      res.end(String(sent));
      return;
    }
    res.statusCode = 404;
    res.end();
  });
});

const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  const tag = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('tag') ?? 0);
  let set = byTag.get(tag);
  if (!set) byTag.set(tag, (set = new Set()));
  set.add(ws);
  ws.on('error', () => {});
  ws.on('close', () => set.delete(ws));
});

server.listen(0, '127.0.0.1', () => {
  const a = server.address() as { port: number };
  console.log(`READY http://127.0.0.1:${a.port}`);
});
process.on('SIGTERM', () => process.exit(0));
