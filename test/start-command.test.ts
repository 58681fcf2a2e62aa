import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { waitFor } from './helpers/harness';

// A supervisor (systemd, a container runtime, a process manager) sends SIGTERM to the process it
// started. Started as `npm start`, that is npm: the gateway must receive it, drain and exit.
const dataDir = mkdtempSync(path.join(tmpdir(), 'vigil-start-'));
const started: number[] = [];
after(() => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(dataDir, { recursive: true, force: true });
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('SIGTERM to `npm start` drains the gateway and ends it, leaving nothing listening', async () => {
  const npm = spawn('npm', ['start', '--silent'], {
    env: { ...process.env, PORT: '0', DATA_DIR: dataDir, LOG_LEVEL: 'info', DATABASE_URL: '', REDIS_URL: '', NODE_ENV: '', NODE_ID: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(npm.pid!);
  let out = '';
  npm.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  npm.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | string | null>((resolve) => npm.once('exit', (code, signal) => resolve(code ?? signal)));
  // The default NODE_ID is <hostname>-<pid> of the gateway process itself.
  const listening = await waitFor(() => /"node":"[^"]*-(\d+)".*"url":"(http:\/\/[^"]+)".*vigil gateway listening/.exec(out), 60_000, 'gateway listening');
  const gatewayPid = Number(listening[1]);
  const url = listening[2]!;
  started.push(gatewayPid);
  assert.equal((await fetch(`${url}/healthz`)).status, 200);

  npm.kill('SIGTERM');
  await exited;
  await waitFor(() => !alive(gatewayPid), 20_000, 'the gateway process to end');
  assert.match(out, /shutting down/, 'the gateway drained (it logged its shutdown)');
  await assert.rejects(fetch(`${url}/healthz`), 'nothing listens any more');
});
