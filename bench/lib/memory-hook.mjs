// Bench-only memory probe for a server process (S3), loaded with
// `node --expose-gc --import ./bench/lib/memory-hook.mjs` (through NODE_OPTIONS for the gateway).
// Does nothing unless BENCH_MEMORY_HOOK_DIR is set (never in production): then it listens on a
// loopback port of its own, written to <dir>/<pid>, and answers
//   GET /memory            gc() twice, then process.memoryUsage() as JSON;
//   GET /snapshot?file=F   gc(), then a heap snapshot written to F; answers {"file": F}.
// The product's routes and API are untouched.
import { createServer } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { isMainThread } from 'node:worker_threads';

const dir = process.env.BENCH_MEMORY_HOOK_DIR;
// Main thread only: preloads also run in worker threads (the argon2 hasher's), whose heap is not the one to measure.
if (dir && isMainThread) {
  const collect = async () => {
    if (typeof globalThis.gc !== 'function') throw new Error('start the process with --expose-gc');
    // Twice, a turn apart, so that weak callbacks and finalizers of the first pass are collected too.
    globalThis.gc();
    await new Promise((r) => setImmediate(r));
    globalThis.gc();
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const answer = (body) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    const fail = (err) => res.writeHead(500).end(String(err));
    if (url.pathname === '/memory') return void collect().then(() => answer(process.memoryUsage()), fail);
    if (url.pathname === '/snapshot') {
      const file = url.searchParams.get('file');
      if (!file) return void res.writeHead(400).end();
      return void collect().then(() => answer({ file: writeHeapSnapshot(file) }), fail);
    }
    res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1', () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, String(process.pid)), String(server.address().port));
  });
  server.unref();
}
