import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config';

test('defaults match the design table when nothing is set', () => {
  const c = loadConfig({});
  assert.equal(c.port, 4000);
  assert.equal(c.host, '127.0.0.1');
  assert.match(c.dataDir, /data$/);
  assert.equal(c.databaseUrl, undefined);
  assert.equal(c.redisUrl, undefined);
  assert.equal(c.publicUrl, 'http://localhost:4000');
  assert.equal(c.deviceOfflineAfterS, 90);
  assert.equal(c.logLevel, 'info');
  assert.ok(c.nodeId.length > 0);
});

test('empty values count as unset when a unit file has FOO= lines', () => {
  assert.equal(loadConfig({ DATABASE_URL: '', PORT: '' }).databaseUrl, undefined);
});

for (const [name, value] of [
  ['PORT', 'eighty'],
  ['PORT', '70000'],
  ['DATABASE_URL', 'mysql://x'],
  ['REDIS_URL', 'not a url'],
  ['PUBLIC_URL', 'ftp://example.com'],
  ['SMTP_URL', 'http://mail'],
  ['SMS_WEBHOOK_URL', 'sms://x'],
  ['DEVICE_OFFLINE_AFTER_S', '-5'],
  ['LOG_LEVEL', 'loud'],
  ['ADMIN_TOKEN', 'short'],
  ['METRICS_TOKEN', 'short'],
  ['ACCESS_TOKEN_TTL_S', '3600'],
] as const) {
  test(`a bad ${name} stops start-up with a message naming it when it is ${JSON.stringify(value)}`, () => {
    assert.throws(
      () => loadConfig({ [name]: value }),
      (e: unknown) => e instanceof ConfigError && e.message.startsWith(`${name}:`),
    );
  });
}

test('the process exits non-zero and names the variable when started with a bad value', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, PORT: 'eighty', DATABASE_URL: '', REDIS_URL: '' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 78);
  assert.match(r.stderr, /PORT/);
});
