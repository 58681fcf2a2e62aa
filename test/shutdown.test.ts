import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import WebSocket from 'ws';
import { STRONG_PASSWORD, uniqueEmail } from './helpers/harness';

const dataDir = mkdtempSync(path.join(tmpdir(), 'vigil-shutdown-'));
let child: ChildProcess | undefined;
after(() => {
  child?.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

/** Starts `src/main.ts` as `npm start` would, on the embedded database in a temp DATA_DIR. */
function startGateway(): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, PORT: '0', DATA_DIR: dataDir, LOG_LEVEL: 'info', DATABASE_URL: '', REDIS_URL: '', NODE_ENV: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /"url":"(http:\/\/[^"]+)".*vigil gateway listening/.exec(out);
      if (m) resolve({ proc, url: m[1]! });
    });
    proc.once('exit', (code) => reject(new Error(`gateway exited early (${code}): ${out}`)));
  });
}

test('SIGTERM finishes the in-flight request, closes sockets with 1001 and exits 0 when running on the embedded default', async () => {
  const { proc, url } = await startGateway();
  child = proc;
  // Data dir holds the embedded database and a private signing key.
  assert.equal(statSync(path.join(dataDir, 'jwt-key.json')).mode & 0o777, 0o600);

  const gql = (query: string, variables: unknown) =>
    fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) });
  const email = uniqueEmail();
  const reg = (await (
    await gql('mutation($i: RegisterInput!) { register(input: $i) { accessToken } }', { i: { email, password: STRONG_PASSWORD } })
  ).json()) as { data: { register: { accessToken: string } } };

  const ws = new WebSocket(`${url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${reg.data.register.accessToken}` } })));
    ws.on('message', (m) => JSON.parse(m.toString()).type === 'connection_ack' && resolve());
    ws.once('error', reject);
  });
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));

  // A login (an argon2 verify) is in flight when the signal arrives; it must still be answered.
  const inFlight = gql('mutation($i: LoginInput!) { login(input: $i) { accessToken } }', { i: { login: email, password: STRONG_PASSWORD } });
  await new Promise((r) => setTimeout(r, 20));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  proc.kill('SIGTERM');

  const res = await inFlight;
  assert.equal(res.status, 200);
  const body = (await res.json()) as { data?: { login?: { accessToken?: string } } };
  assert.ok(body.data?.login?.accessToken, 'in-flight login answered');
  assert.equal(await closed, 1001);
  assert.equal(await exited, 0);
  await assert.rejects(fetch(`${url}/healthz`));
});
