// One process of the WebSocket load client (bench/lib/ws-load.ts drives several): holds many
// sockets, speaks graphql-ws (graphql-transport-ws) or plain frames (P3), and records when each
// message arrives. Controlled over IPC: one request in, one reply out, matched by `seq`.
import WebSocket from 'ws';
import { wallMs } from './harness';

export interface SubSpec {
  /** Driver-side tag (a device index): which posts this subscription should receive. */
  tag: number;
  query: string;
  variables?: Record<string, unknown>;
  /** graphql-ws: resubscribe with `variables[resumeVar] = last cursor` after a bounce. */
  resumeVar?: string;
}

export interface ConnSpec {
  url: string;
  /** 'graphql-ws' sends connection_init + subscribe; 'raw' only listens (P3). */
  mode: 'graphql-ws' | 'raw';
  token?: string;
  subs: SubSpec[];
}

/** A post the driver made: the alarm's key (channel) or, for raw sockets, the broadcast's ordinal. */
export interface Post {
  key: number;
  tag: number;
  at: number;
}

export type Request =
  | { op: 'open'; conns: ConnSpec[]; concurrency: number; timeoutMs: number }
  | { op: 'take'; posts: Post[] }
  | { op: 'sample' }
  | { op: 'drop'; urlPrefix: string }
  | { op: 'reconnect'; urlPrefix: string; spreadMs: number; timeoutMs: number }
  | { op: 'close' };

interface SubState {
  spec: SubSpec;
  /** Received keys (alarm channel, or ordinal for raw) with receipt times, since the last take. */
  keys: number[];
  times: number[];
  /** Every key ever received (duplicate check across reconnects). */
  seen: Set<number>;
  duplicates: number;
  outOfOrder: number;
  lastCursor: string | null;
  lastKey: number;
  /** Receipt time of the first message after the last bounce. */
  firstAfterBounce: number;
}

interface Conn {
  spec: ConnSpec;
  ws: WebSocket | null;
  subs: SubState[];
  rawCount: number;
  acked: boolean;
}

const conns: Conn[] = [];
let lastRaw = '';
let bouncing = false;
let errors = 0;
const closeCodes = new Map<number, number>();

function onMessage(conn: Conn, data: WebSocket.RawData) {
  const t = wallMs();
  const text = data.toString();
  if (conn.spec.mode === 'raw') {
    const s = conn.subs[0]!;
    // Raw frames carry no id: the k-th frame on a socket is its tag's k-th broadcast.
    const key = s.spec.tag * 1_000_000 + conn.rawCount++;
    s.keys.push(key);
    s.times.push(t);
    if (bouncing && s.firstAfterBounce === 0) s.firstAfterBounce = t;
    lastRaw = text;
    return;
  }
  const msg = JSON.parse(text) as { type: string; id?: string; payload?: { data?: Record<string, { channel?: number; cursor?: string }> } };
  if (msg.type === 'connection_ack') {
    conn.acked = true;
    return;
  }
  if (msg.type === 'ping') {
    conn.ws?.send('{"type":"pong"}');
    return;
  }
  if (msg.type === 'next') {
    lastRaw = text;
    const s = conn.subs[Number(msg.id)];
    if (!s) return;
    const data = msg.payload?.data;
    const value = data ? Object.values(data)[0] : undefined;
    if (!value || typeof value.channel !== 'number') return; // deviceStatus and the like: not counted
    const key = value.channel;
    if (s.seen.has(key)) s.duplicates++;
    else s.seen.add(key);
    if (key <= s.lastKey) s.outOfOrder++;
    s.lastKey = Math.max(s.lastKey, key);
    if (value.cursor) s.lastCursor = value.cursor;
    s.keys.push(key);
    s.times.push(t);
    if (bouncing && s.firstAfterBounce === 0) s.firstAfterBounce = t;
    return;
  }
  if (msg.type === 'error') errors++;
}

/** Opens one socket and resolves when it is subscribed (graphql-ws: after the ack and the subscribes are sent). */
function openConn(conn: Conn, resume: boolean, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const spec = conn.spec;
    const ws = new WebSocket(spec.url, spec.mode === 'graphql-ws' ? 'graphql-transport-ws' : undefined, { perMessageDeflate: false });
    conn.ws = ws;
    conn.acked = false;
    const timer = setTimeout(() => {
      const stage = ws.readyState !== WebSocket.OPEN ? 'no WebSocket open' : conn.acked ? 'acked, not subscribed' : 'no connection_ack';
      ws.terminate();
      reject(new Error(`open timed out (${stage})`));
    }, timeoutMs);
    ws.on('error', () => {});
    ws.on('close', (code) => {
      closeCodes.set(code, (closeCodes.get(code) ?? 0) + 1);
      clearTimeout(timer);
      reject(new Error(`closed ${code}`));
    });
    ws.on('open', () => {
      if (spec.mode === 'raw') {
        clearTimeout(timer);
        resolve();
        return;
      }
      ws.send(JSON.stringify({ type: 'connection_init', payload: spec.token ? { authorization: `Bearer ${spec.token}` } : {} }));
    });
    ws.on('message', (data) => {
      const wasAcked = conn.acked;
      onMessage(conn, data);
      if (!wasAcked && conn.acked) {
        conn.subs.forEach((s, i) => {
          const variables = { ...s.spec.variables };
          if (resume && s.spec.resumeVar && s.lastCursor) variables[s.spec.resumeVar] = s.lastCursor;
          ws.send(JSON.stringify({ id: String(i), type: 'subscribe', payload: { query: s.spec.query, variables } }));
        });
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

async function inBatches<T>(items: T[], concurrency: number, fn: (item: T, index: number) => Promise<void>): Promise<number> {
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, concurrency) }, async () => {
      while (next < items.length) {
        const i = next++;
        try {
          await fn(items[i]!, i);
        } catch {
          failed++;
        }
      }
    }),
  );
  return failed;
}

const newSub = (spec: SubSpec): SubState => ({ spec, keys: [], times: [], seen: new Set(), duplicates: 0, outOfOrder: 0, lastCursor: null, lastKey: -1, firstAfterBounce: 0 });

async function handle(req: Request): Promise<unknown> {
  switch (req.op) {
    case 'open': {
      const fresh = req.conns.map((spec): Conn => ({ spec, ws: null, subs: spec.subs.map(newSub), rawCount: 0, acked: false }));
      conns.push(...fresh);
      const t0 = wallMs();
      const failed = await inBatches(fresh, req.concurrency, (c) => openConn(c, false, req.timeoutMs));
      return { opened: fresh.length - failed, failed, ms: wallMs() - t0 };
    }
    case 'take': {
      // Latency of each receipt against its post, and per subscription what is missing.
      const byKey = new Map(req.posts.map((p) => [p.key, p]));
      const latencies: number[] = [];
      let missing = 0;
      let received = 0;
      let duplicates = 0;
      let outOfOrder = 0;
      for (const c of conns) {
        for (const s of c.subs) {
          const got = new Set<number>();
          for (let i = 0; i < s.keys.length; i++) {
            const p = byKey.get(s.keys[i]!);
            if (!p) continue;
            got.add(p.key);
            received++;
            latencies.push(s.times[i]! - p.at);
          }
          for (const p of req.posts) if ((p.tag === s.spec.tag || p.tag < 0) && !got.has(p.key) && !s.seen.has(p.key)) missing++;
          s.keys = [];
          s.times = [];
          duplicates += s.duplicates;
          outOfOrder += s.outOfOrder;
          s.duplicates = 0;
          s.outOfOrder = 0;
        }
      }
      return { latencies, received, missing, duplicates, outOfOrder, errors, closeCodes: Object.fromEntries(closeCodes) };
    }
    case 'sample':
      return { raw: lastRaw };
    case 'drop': {
      // Every socket to that server drops at once, as in a network loss (terminate: no close handshake).
      const targets = conns.filter((c) => c.spec.url.startsWith(req.urlPrefix));
      for (const c of targets) {
        for (const s of c.subs) s.firstAfterBounce = 0;
        c.ws?.removeAllListeners('close');
        c.ws?.on('close', () => {});
        c.ws?.terminate();
        c.ws = null;
      }
      bouncing = true;
      return { dropped: targets.length };
    }
    case 'reconnect': {
      // Reconnects spread evenly over `spreadMs`, each resuming with its last cursor;
      // re-established = its first message after resubscribing.
      const targets = conns.filter((c) => c.spec.url.startsWith(req.urlPrefix));
      const t0 = wallMs();
      let reopenFailed = 0;
      await Promise.all(
        targets.map(async (c, i) => {
          const at = t0 + (i / targets.length) * req.spreadMs;
          await new Promise((r) => setTimeout(r, Math.max(0, at - wallMs())));
          try {
            await openConn(c, true, req.timeoutMs);
          } catch (err) {
            reopenFailed++;
            if (process.env.BENCH_VERBOSE) console.error(`reconnect failed: ${(err as Error).message}`);
          }
        }),
      );
      const deadline = t0 + req.timeoutMs;
      const all = () => targets.every((c) => c.subs.every((s) => s.firstAfterBounce > 0 || !s.spec.resumeVar));
      while (!all() && wallMs() < deadline) await new Promise((r) => setTimeout(r, 10));
      bouncing = false;
      let last = 0;
      let pending = 0;
      for (const c of targets) {
        for (const s of c.subs) {
          if (!s.spec.resumeVar) continue;
          if (s.firstAfterBounce > 0) last = Math.max(last, s.firstAfterBounce);
          else pending++;
        }
      }
      return { last, pending, reopenFailed };
    }
    case 'close': {
      for (const c of conns) {
        c.ws?.removeAllListeners('close');
        c.ws?.on('close', () => {});
        c.ws?.terminate();
      }
      conns.length = 0;
      return { closed: true };
    }
  }
}

process.on('message', (m: { seq: number; req: Request }) => {
  handle(m.req).then(
    (result) => process.send!({ seq: m.seq, result }),
    (err: unknown) => process.send!({ seq: m.seq, error: err instanceof Error ? err.message : String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send!({ ready: true });
