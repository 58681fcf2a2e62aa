import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

const root = path.resolve(import.meta.dirname, '..');

/** Runs a gateway-like process that installs the guard and then throws `error` outside any callback chain. */
function runWithUncaught(errorSource: string) {
  const script = `
    import { pino } from 'pino';
    import { surviveDriverWriteAfterClose } from './src/db/driver-faults.ts';
    surviveDriverWriteAfterClose(pino({ level: 'warn' }));
    setImmediate(() => { throw ${errorSource}; });
    setTimeout(() => { console.log('still running'); process.exit(0); }, 200);
  `;
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 30_000 });
}

test('the gateway survives the driver writing to a killed connection, and logs it', () => {
  const r = runWithUncaught(
    `Object.assign(new TypeError("Cannot read properties of null (reading 'write')"), { stack: "TypeError: Cannot read properties of null (reading 'write')\\n    at nextWrite (/app/node_modules/postgres/src/connection.js:236:14)" })`,
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /known driver fault/);
  assert.match(r.stdout, /still running/);
});

test('the gateway exits 1 on any other uncaught exception', () => {
  const r = runWithUncaught(`new TypeError("Cannot read properties of null (reading 'write')")`);
  assert.equal(r.status, 1);
  assert.doesNotMatch(r.stdout, /still running/);
  assert.match(r.stdout, /uncaught exception/);
});
