// S6 baseline: raw argon2id verification in a plain process (no HTTP, no database), at the
// parameters passwords use (src/lib/argon2-hasher.ts), on libuv's thread pool as Vigil's hasher.
// GET /run?ms=3000&concurrency=1 keeps that many verifications in flight for that long (S6 asks
// for Vigil's bound, ARGON2_CONCURRENCY) and answers {"verified": n, "elapsedMs": t}.
import { createServer } from 'node:http';
import argon2 from 'argon2';
import { ARGON2_OPTIONS } from '../../src/accounts/password';
import { listenAndAnnounce } from './lib/http-server';

const PASSWORD = 'Violet-Harbor-Quartz-71';
const hash = await argon2.hash(PASSWORD, ARGON2_OPTIONS);

async function run(ms: number, concurrency: number) {
  const started = performance.now();
  const deadline = started + ms;
  let verified = 0;
  const worker = async () => {
    while (performance.now() < deadline) {
      if (!(await argon2.verify(hash, PASSWORD))) throw new Error('verify failed');
      verified++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { verified, elapsedMs: performance.now() - started };
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname !== '/run') return void res.writeHead(404).end();
  const ms = Math.min(Number(url.searchParams.get('ms') ?? 3000), 60_000);
  const concurrency = Math.min(Number(url.searchParams.get('concurrency') ?? 4), 64);
  run(ms, concurrency).then(
    (r) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(r)),
    (err: unknown) => res.writeHead(500).end(String(err)),
  );
});
listenAndAnnounce(server);
