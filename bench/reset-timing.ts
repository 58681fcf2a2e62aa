// Does `requestReset` for an existing account slow the caller's NEXT request (the work queued for
// it runs in the gateway's process, and on the embedded database that is the same thread)?
// Run: npx tsx bench/reset-timing.ts [trials=300]
// The gateway is the real buildApp on embedded PGlite in a temporary data dir, no SMTP (the
// newcomer's `npm start`); the client is a separate process that sends requestReset(login),
// then at once a probe (requestReset of another unknown login), and times the probe. Known and
// unknown logins are drawn at random per trial, with a pause between trials for queued work.
import 'reflect-metadata';
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { buildApp } from '../src/app';
import { loadConfig } from '../src/config';

if (process.argv[2] === 'client') {
  // The client process: one trial per message.
  const QUERY = 'mutation ($login: String!) { requestReset(login: $login) { accepted } }';
  process.on('message', async (m: { url: string; login: string; probe: string }) => {
    const post = (login: string) =>
      fetch(`${m.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: QUERY, variables: { login } }) }).then((r) => r.text());
    await post(m.login);
    const t0 = process.hrtime.bigint();
    await post(m.probe);
    process.send!({ probeMs: Number(process.hrtime.bigint() - t0) / 1e6 });
  });
  process.on('disconnect', () => process.exit(0));
} else {
  const trials = Number(process.argv[2] ?? 300);
  const dataDir = mkdtempSync(path.join(tmpdir(), 'vigil-reset-timing-'));
  const config = loadConfig({
    DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
    RESET_MAX_PER_LOGIN: '100000',
    RESET_MAX_PER_IP: '100000',
    REGISTER_MAX_PER_IP: '100000',
    HTTP_RATE_PER_IP: '100000',
  });
  const app = await buildApp(config, { logger: pino({ level: 'silent' }) });
  const url = await app.start(0);
  const known: string[] = [];
  for (let i = 0; i < 20; i++) {
    const email = `timing-${i}@example.com`;
    await app.services.auth.register({ email, password: 'Violet-Harbor-Quartz-71' }, { ip: '127.0.0.1', userAgent: null });
    known.push(email);
  }
  const child = fork(new URL(import.meta.url).pathname, ['client'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const trial = (login: string) =>
    new Promise<number>((resolve) => {
      child.once('message', (m) => resolve((m as { probeMs: number }).probeMs));
      child.send({ url, login, probe: `probe-${Math.random().toString(36).slice(2)}@example.com` });
    });
  const pause = () => new Promise((r) => setTimeout(r, 60));
  const times = { known: [] as number[], unknown: [] as number[] };
  for (let i = 0; i < 20; i++) await trial(`warm-${i}@example.com`);
  for (let i = 0; i < trials; i++) {
    const isKnown = Math.random() < 0.5;
    const login = isKnown ? known[i % known.length]! : `nobody-${i}@example.com`;
    (isKnown ? times.known : times.unknown).push(await trial(login));
    await pause();
  }
  child.disconnect();
  await app.stop();
  rmSync(dataDir, { recursive: true, force: true });

  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const quantile = (xs: number[], q: number) => sorted(xs)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  // The best single-try guess "exists when the probe took longer than tau", over every tau.
  let best = 0.5;
  for (const tau of [...times.known, ...times.unknown]) {
    const hit = (times.known.filter((x) => x > tau).length / times.known.length + times.unknown.filter((x) => x <= tau).length / times.unknown.length) / 2;
    best = Math.max(best, hit);
  }
  const line = (name: string, xs: number[]) =>
    `${name.padEnd(8)} n=${xs.length}  median ${quantile(xs, 0.5).toFixed(2)} ms  p90 ${quantile(xs, 0.9).toFixed(2)} ms  mean ${mean(xs).toFixed(2)} ms`;
  console.log(`probe after requestReset, embedded PGlite, ${trials} trials`);
  console.log(line('known', times.known));
  console.log(line('unknown', times.unknown));
  console.log(`median difference ${(quantile(times.known, 0.5) - quantile(times.unknown, 0.5)).toFixed(2)} ms; best one-try guess right ${(best * 100).toFixed(1)}% (50% = no signal)`);
}
