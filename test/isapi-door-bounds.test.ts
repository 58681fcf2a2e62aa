/**
 * The ISAPI door ends every request in bounded time and holds bounded memory (issue 13): a
 * multipart part without Content-Disposition no longer hangs the request, a slow body meets the
 * deadline, one device cannot hold more than a few requests open, the node's in-flight bodies
 * have a budget, and the answer for an alarm comes from the alarm's own commit.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { isapiIngest, type IsapiIngestOptions } from '../src/devices/isapi/isapi-ingest';
import { alertXml, insertBoundDevice, storedAlarms } from './helpers/alarms-fixtures';
import { registerUser, type TestUser } from './helpers/devices';
import { startApp, testClock, type TestApp } from './helpers/harness';

const XML = 'application/xml';
let t: TestApp;
let owner: TestUser;
const clock = testClock();

before(async () => {
  t = await startApp({ clock: clock.now });
  owner = await registerUser(t, 'bounds-owner');
});
after(() => t.stop());

const boundDevice = () => insertBoundDevice(t.app.db.db, owner.id, clock.now());
const storedRows = (deviceId: string) => storedAlarms(t.app.db.db, deviceId);

/** A part with no Content-Disposition header (the shape that hung busboy), `size` bytes of filler after the alert. */
function headerlessPartBody(size: number, withAlert = true): Buffer {
  const xml = withAlert ? alertXml({ eventType: 'VMD', channel: 3 }) : '<note>no alert here</note>';
  return Buffer.from(`--b\r\nContent-Type: application/xml\r\n\r\n${xml}<!-- ${'x'.repeat(size)} -->\r\n--b\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff${'y'.repeat(size)}\r\n--b--\r\n`, 'latin1');
}

/** POSTs and gives up after `ms`: a hung request fails the test instead of the suite. */
async function postWithin(url: string, body: Buffer, contentType: string, ms = 5000): Promise<number> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body: new Uint8Array(body), signal: AbortSignal.timeout(ms) });
  await res.text();
  return res.status;
}

describe('ISAPI door: multipart parts without Content-Disposition', () => {
  for (const size of [1024, 17 * 1024, 256 * 1024, 900 * 1024]) {
    test(`answers at once and stores the alarm when a ${size}-byte part has no Content-Disposition`, async () => {
      const d = await boundDevice();
      assert.equal(await postWithin(`${t.url}${d.ingestPath}`, headerlessPartBody(size), 'multipart/form-data; boundary=b'), 200);
      const rows = await storedRows(d.id);
      assert.equal(rows.length, 1);
      assert.equal(rows[0]!.channel, 3);
      assert.equal(rows[0]!.details?.imageCount, 1);
    });
  }

  test('answers 400 at once when no part of a large headerless multipart holds an alert', async () => {
    const d = await boundDevice();
    assert.equal(await postWithin(`${t.url}${d.ingestPath}`, headerlessPartBody(64 * 1024, false), 'multipart/form-data; boundary=b'), 400);
    assert.equal((await storedRows(d.id)).length, 0);
  });
});

/** A door of its own on port 0, backed by the test app's database, with the given options. */
async function door(overrides: Partial<IsapiIngestOptions>, onAdmitted?: () => void): Promise<{ url: string; app: FastifyInstance }> {
  const app = Fastify();
  // Runs after the door's own onRequest hook has admitted a post (counted it in flight), before its body is read.
  if (onAdmitted) app.addHook('preParsing', async () => onAdmitted());
  await app.register(
    isapiIngest({
      db: t.app.db.db,
      clock: clock.now,
      log: pino({ level: 'silent' }),
      registry: t.app.registry,
      alarms: t.app.alarmStore,
      bodyLimit: 1024 * 1024,
      ...overrides,
    }),
  );
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, app };
}

/**
 * Opens a raw connection and sends the request head plus `sent` bytes of a body that claims
 * `declared` bytes, then nothing more. Resolves with the status line the server answers and
 * whether it closed the connection, and how long that took.
 */
function slowPost(url: string, path: string, declared: number, sent: number): { answered: Promise<{ status: number; closed: boolean; ms: number }>; destroy(): void } {
  const { hostname, port } = new URL(url);
  const started = Date.now();
  const socket = connect(Number(port), hostname);
  socket.on('error', () => {});
  socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\nContent-Length: ${declared}\r\n\r\n`);
  if (sent) socket.write(Buffer.alloc(sent, 0x20));
  let data = '';
  const answered = new Promise<{ status: number; closed: boolean; ms: number }>((resolve) => {
    let status = 0;
    socket.on('data', (c) => {
      data += c.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      if (m && !status) status = Number(m[1]);
    });
    socket.on('close', () => resolve({ status, closed: true, ms: Date.now() - started }));
  });
  return { answered, destroy: () => socket.destroy() };
}

describe('ISAPI door: deadlines and in-flight bounds', () => {
  test('answers 408 and closes the connection when the body does not arrive before the deadline', async () => {
    const d = await boundDevice();
    const { url, app } = await door({ deadlineMs: 300 });
    try {
      const slow = slowPost(url, d.ingestPath, 10_000, 100);
      const r = await slow.answered;
      assert.equal(r.status, 408);
      assert.ok(r.ms < 3000, `took ${r.ms} ms`);
    } finally {
      await app.close();
    }
  });

  test('answers 503 at the deadline when the alarm store does not answer, and the decided answer when only the liveness write hangs', async () => {
    const d = await boundDevice();
    const never = new Promise<never>(() => {});
    const stuck = await door({ deadlineMs: 300, alarms: { record: () => never } });
    const seenStuck = await door({ deadlineMs: 300, registry: { recordIsapiSeen: () => never } });
    try {
      assert.equal(await postWithin(`${stuck.url}${d.ingestPath}`, Buffer.from(alertXml({ eventType: 'VMD' })), XML), 503);
      assert.equal(await postWithin(`${seenStuck.url}${d.ingestPath}`, Buffer.from(alertXml({ eventType: 'VMD', channel: 8 })), XML), 200);
      assert.equal((await storedRows(d.id)).length, 1, 'stored by the second door');
      // Input keeps its 4xx (and a test notification its 200) however long the liveness write takes.
      const cut = alertXml({ eventType: 'VMD', channel: 9 });
      assert.equal(await postWithin(`${seenStuck.url}${d.ingestPath}`, Buffer.from(cut.slice(0, cut.indexOf('<eventState>'))), XML), 400);
      assert.equal(await postWithin(`${seenStuck.url}${d.ingestPath}`, Buffer.from(alertXml({ eventType: 'test' })), XML), 200);
    } finally {
      await stuck.app.close();
      await seenStuck.app.close();
    }
  });

  test('answers 200 from the alarm commit when the liveness write fails', async () => {
    const d = await boundDevice();
    const failing = await door({ registry: { recordIsapiSeen: () => Promise.reject(new Error('connection terminated')) } });
    try {
      assert.equal(await postWithin(`${failing.url}${d.ingestPath}`, Buffer.from(alertXml({ eventType: 'VMD', channel: 4 })), XML), 200);
      assert.equal((await storedRows(d.id)).length, 1);
      // A heartbeat has no other write: its failure is the answer.
      assert.equal(await postWithin(`${failing.url}${d.ingestPath}`, Buffer.from(alertXml({ eventType: 'heartBeat' })), XML), 503);
    } finally {
      await failing.app.close();
    }
  });

  test('answers 429 to a device that already has its in-flight posts open, and serves it again once they end', async () => {
    const d = await boundDevice();
    // The probe is sent only once the door has admitted both held posts: sent sooner, it could
    // take a slot itself (its keep-alive connection is served before the held sockets' lookups).
    let admitted = 0;
    let bothAdmitted!: () => void;
    const heldOpen = new Promise<void>((resolve) => (bothAdmitted = resolve));
    const { url, app } = await door({ maxInFlightPerDevice: 2, deadlineMs: 15_000 }, () => {
      if (++admitted === 2) bothAdmitted();
    });
    try {
      const held = [slowPost(url, d.ingestPath, 10_000, 10), slowPost(url, d.ingestPath, 10_000, 10)];
      await heldOpen;
      assert.equal(await postWithin(`${url}${d.ingestPath}`, Buffer.from(alertXml({ eventType: 'VMD', channel: 3 })), XML), 429);
      const other = await boundDevice();
      assert.equal(await postWithin(`${url}${other.ingestPath}`, Buffer.from(alertXml({ eventType: 'VMD' })), XML), 200, 'other devices are not affected');
      for (const h of held) h.destroy();
      await Promise.all(held.map((h) => h.answered));
      assert.equal(await waitStatus(() => postWithin(`${url}${d.ingestPath}`, Buffer.from(alertXml({ eventType: 'VMD' })), XML), 200), 200);
    } finally {
      await app.close();
    }
  });

  test('answers 503 and closes the connection when the node in-flight body budget is spent', async () => {
    const d = await boundDevice();
    const { url, app } = await door({ inFlightBodyBytes: 64 * 1024, deadlineMs: 2000 });
    try {
      const big = slowPost(url, d.ingestPath, 100 * 1024, 0);
      const r = await big.answered;
      assert.equal(r.status, 503);
      assert.equal(await postWithin(`${url}${d.ingestPath}`, Buffer.from(alertXml({ eventType: 'VMD' })), XML), 200, 'small posts still fit');
    } finally {
      await app.close();
    }
  });
});

/**
 * Repeats `attempt` until it yields `status`, for up to `withinMs` (the server's view of "in flight"
 * trails the client's: a held post counts only once its connection is accepted and its token
 * looked up, which on a loaded machine can take longer than a burst of quick probes).
 */
async function waitStatus(attempt: () => Promise<number | { status: number }>, status: number, withinMs = 8000): Promise<number> {
  const until = Date.now() + withinMs;
  let last = 0;
  do {
    const r = await attempt();
    last = typeof r === 'number' ? r : r.status;
    if (last === status) return last;
    await new Promise((resolve) => setTimeout(resolve, 20));
  } while (Date.now() < until);
  return last;
}
