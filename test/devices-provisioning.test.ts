import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { tables } from '../src/db/index';
import { sha256 } from '../src/lib/secrets';
import { BindDeviceDocument } from './generated/graphql';
import { adminPost, provisionDevice, registerUser, uniqueSerial, type TestUser } from './helpers/devices';
import { expectData, startApp, type TestApp } from './helpers/harness';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

/** Runs the real `vigil` command (bin/vigil.mjs) with a clean environment plus `env`. */
function vigil(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !['ADMIN_TOKEN', 'DATA_DIR', 'DATABASE_URL', 'REDIS_URL', 'VIGIL_URL', 'PORT', 'HOST'].includes(k)),
  );
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(root, 'bin/vigil.mjs'), ...args], { cwd: root, env: { ...base, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let t: TestApp;
let user: TestUser;
before(async () => {
  t = await startApp();
  user = await registerUser(t, 'prov');
});
after(() => t.stop());

describe('POST /admin/devices', () => {
  test('returns the label code, device key and ingest path when the operator token is valid', async () => {
    const serial = uniqueSerial();
    const res = await adminPost(t, { serial, model: 'DS-2CD2143G2-I', channels: 4 });
    assert.equal(res.status, 201);
    const body = res.body as { serial: string; verificationCode: string; deviceKey: string; ingestPath: string };
    assert.deepEqual(Object.keys(body).sort(), ['deviceKey', 'ingestPath', 'serial', 'verificationCode']);
    assert.equal(body.serial, serial);
    assert.match(body.verificationCode, /^[A-Z]{6}$/);
    assert.match(body.deviceKey, /^[A-Za-z0-9_-]{43}$/);
    assert.match(body.ingestPath, /^\/isapi\/events\/[A-Za-z0-9_-]{43}$/);

    const [row] = await t.app.db.db.select().from(tables.devices).where(eq(tables.devices.serial, serial));
    assert.ok(row);
    assert.equal(row.channels, 4);
    assert.equal(row.model, 'DS-2CD2143G2-I');
    // Only hashes are stored: argon2id for the low-entropy label code, sha256 for the random secrets.
    assert.match(row.verificationCodeHash, /^\$argon2id\$/);
    assert.equal(row.deviceKeyHash, sha256(body.deviceKey));
    assert.equal(row.ingestTokenHash, sha256(body.ingestPath.split('/').pop()!));
    const stored = JSON.stringify(row);
    for (const secret of [body.verificationCode, body.deviceKey, body.ingestPath.split('/').pop()!]) assert.ok(!stored.includes(secret));
  });

  test('answers 409 and keeps the original secrets when the serial is provisioned again', async () => {
    const first = await provisionDevice(t);
    const [before] = await t.app.db.db.select().from(tables.devices).where(eq(tables.devices.serial, first.serial));
    const again = await adminPost(t, { serial: first.serial, channels: 2 });
    assert.equal(again.status, 409);
    assert.equal(again.body.error, 'serial_taken');
    const [afterRow] = await t.app.db.db.select().from(tables.devices).where(eq(tables.devices.serial, first.serial));
    assert.deepEqual(afterRow, before);
    // The first label code still binds.
    expectData(await t.gql(BindDeviceDocument, { serial: first.serial, verificationCode: first.verificationCode }, { token: user.token }));
  });

  test('answers 400 when the body is malformed', async () => {
    const bad: unknown[] = [
      {},
      { serial: '' },
      { serial: 'has space' },
      { serial: 'x'.repeat(65) },
      { serial: 'slash/serial' },
      { serial: uniqueSerial(), channels: 0 },
      { serial: uniqueSerial(), channels: 257 },
      { serial: uniqueSerial(), channels: 1.5 },
      { serial: uniqueSerial(), channels: '2' },
      { serial: uniqueSerial(), model: 'm'.repeat(65) },
      { serial: uniqueSerial(), extra: true },
      [uniqueSerial()],
      '{"serial":',
    ];
    for (const body of bad) {
      const res = await adminPost(t, body);
      assert.equal(res.status, 400, `expected 400 for ${JSON.stringify(body)}, got ${res.status} ${JSON.stringify(res.body)}`);
    }
    // Serials at the limits are fine.
    assert.equal((await adminPost(t, { serial: `A${uniqueSerial()}`.slice(0, 64).padEnd(64, '9'), channels: 256 })).status, 201);
  });

  test('answers 401 before reading the body when the token is missing or wrong', async () => {
    for (const token of [null, 'wrong-token-wrong-token-wrong-token', `${t.app.adminToken}x`]) {
      const res = await adminPost(t, { serial: uniqueSerial() }, token);
      assert.equal(res.status, 401);
      assert.equal(res.body.error, 'unauthorized');
    }
    const basic = await fetch(`${t.url}/admin/devices`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Basic ${t.app.adminToken}` },
      body: '{}',
    });
    assert.equal(basic.status, 401);
    // Unparseable body without a token: still 401, not 400.
    assert.equal((await adminPost(t, '{"serial":', null)).status, 401);
  });
});

describe('vigil devices provision', () => {
  test('provisions through the running gateway and prints JSON when --json is given', async () => {
    const serial = uniqueSerial('CLI');
    const run = await vigil(['devices', 'provision', '--serial', serial, '--model', 'DS-7608NI', '--channels', '8', '--url', t.url, '--json'], {
      ADMIN_TOKEN: t.app.adminToken,
    });
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout) as { serial: string; verificationCode: string };
    assert.equal(out.serial, serial);
    const bound = expectData(await t.gql(BindDeviceDocument, { serial, verificationCode: out.verificationCode }, { token: user.token }));
    assert.equal(bound.bindDevice.channels, 8);
    assert.equal(bound.bindDevice.name, 'DS-7608NI');
  });

  test('exits 1 with the reason when the gateway refuses', async () => {
    const taken = await provisionDevice(t);
    const repeat = await vigil(['devices', 'provision', '--serial', taken.serial, '--url', t.url], { ADMIN_TOKEN: t.app.adminToken });
    assert.equal(repeat.code, 1);
    assert.match(repeat.stderr, /409.*already provisioned/s);
    const wrong = await vigil(['devices', 'provision', '--serial', uniqueSerial(), '--url', t.url], { ADMIN_TOKEN: 'not-the-admin-token-not-the-admin-token' });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /401/);
  });

  test('exits 2 on bad usage and 78 without an admin token', async () => {
    const usage = await vigil(['devices', 'provision', '--channels', '3'], {});
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--serial/);
    const unknown = await vigil(['devices', 'provision', '--serial', 'X', '--bogus'], {});
    assert.equal(unknown.code, 2);
    const empty = mkdtempSync(path.join(tmpdir(), 'vigil-cli-'));
    try {
      const noToken = await vigil(['devices', 'provision', '--serial', 'X', '--url', t.url], { DATA_DIR: empty });
      assert.equal(noToken.code, 78);
      assert.match(noToken.stderr, /no admin token/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('admin token in the data dir', () => {
  test('is generated with mode 0600 on first start and read by the CLI when ADMIN_TOKEN is unset', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vigil-data-'));
    const file = path.join(dir, 'admin-token');
    try {
      const a = await startApp({ env: { DATA_DIR: dir } });
      try {
        assert.equal(readFileSync(file, 'utf8').trim(), a.app.adminToken);
        assert.equal(statSync(file).mode & 0o777, 0o600);
        const run = await vigil(['devices', 'provision', '--serial', uniqueSerial('FILE'), '--url', a.url], { DATA_DIR: dir });
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, /verification code\s+[A-Z]{6}/);
        assert.match(run.stdout, /ingest URL\s+http:\/\/127\.0\.0\.1:\d+\/isapi\/events\//);
      } finally {
        await a.stop();
      }
      // A restart on the same data dir keeps the token; ADMIN_TOKEN wins over the file.
      const b = await startApp({ env: { DATA_DIR: dir, ADMIN_TOKEN: 'operator-token-from-the-environment' } });
      try {
        assert.equal(b.app.adminToken, 'operator-token-from-the-environment');
        assert.equal((await adminPost(b, { serial: uniqueSerial() }, readFileSync(file, 'utf8').trim())).status, 401);
      } finally {
        await b.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// Last: it locks this app's operator endpoint for the test client's address.
test('answers 429 even to the right token when one address sent too many wrong ones', async () => {
  let status = 0;
  for (let i = 0; i < 12 && status !== 429; i++) status = (await adminPost(t, { serial: uniqueSerial() }, 'guess-guess-guess-guess-guess')).status;
  assert.equal(status, 429);
  const res = await fetch(`${t.url}/admin/devices`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${t.app.adminToken}` },
    body: JSON.stringify({ serial: uniqueSerial() }),
  });
  assert.equal(res.status, 429);
  assert.ok(Number(res.headers.get('retry-after')) > 0);
});
