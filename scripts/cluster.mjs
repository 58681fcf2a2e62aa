#!/usr/bin/env node
// `npm run cluster [-- --nodes 3 --port 4000]`: several gateway processes on one machine, on
// consecutive ports, sharing DATABASE_URL and REDIS_URL (both required), each with its own NODE_ID.
// Their log lines are prefixed with the node's name; SIGINT/SIGTERM go to every node, and the
// launcher exits once they all have (non-zero when any failed). Put a load balancer in front
// (README, "Many nodes"); sticky sessions are not needed.
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    nodes: { type: 'string', short: 'n', default: '2' },
    port: { type: 'string', short: 'p', default: process.env.PORT ?? '4000' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log('usage: DATABASE_URL=postgres://... REDIS_URL=redis://... npm run cluster -- [--nodes N] [--port FIRST_PORT]');
  process.exit(0);
}
const count = Number(values.nodes);
const firstPort = Number(values.port);
if (!Number.isInteger(count) || count < 1 || count > 32 || !Number.isInteger(firstPort) || firstPort < 1 || firstPort + count > 65536) {
  console.error('cluster: --nodes must be 1..32 and --port a free port with room for the others after it');
  process.exit(64);
}
for (const name of ['DATABASE_URL', 'REDIS_URL']) {
  if (!process.env[name]) {
    // PGlite lives inside one process and the in-process bus reaches only that process.
    console.error(`cluster: ${name} is required: every node must share one Postgres and one Redis`);
    process.exit(78);
  }
}

const children = new Map();
let stopping = false;
let failed = false;

function start(i) {
  const name = `node-${i + 1}`;
  const port = firstPort + i;
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: { ...process.env, PORT: String(port), NODE_ID: process.env.NODE_ID ? `${process.env.NODE_ID}-${i + 1}` : name },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.set(name, child);
  const prefix = `[${name}:${port}] `;
  let listening;
  const ready = new Promise((resolve) => (listening = resolve));
  for (const [stream, out] of [
    [child.stdout, process.stdout],
    [child.stderr, process.stderr],
  ]) {
    readline.createInterface({ input: stream }).on('line', (line) => {
      out.write(prefix + line + '\n');
      if (line.includes('vigil gateway listening')) listening();
    });
  }
  child.once('exit', (code, signal) => {
    children.delete(name);
    listening();
    if (!stopping || (code !== 0 && signal === null)) {
      failed ||= code !== 0;
      console.error(`${prefix}exited (${signal ?? code})${stopping ? '' : ' unexpectedly'}`);
    }
    if (children.size === 0) process.exit(failed ? 1 : 0);
  });
  return ready;
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopping = true;
    for (const child of children.values()) child.kill('SIGTERM');
  });
}

// The first node alone: it applies the migrations and, when JWT_PRIVATE_KEY and ADMIN_TOKEN are
// unset, writes the signing key and operator token into DATA_DIR, which the others then read.
await start(0);
await Promise.all(Array.from({ length: count - 1 }, (_, i) => start(i + 1)));
if (!stopping) console.log(`cluster: ${count} node(s) on ports ${firstPort}..${firstPort + count - 1}`);
