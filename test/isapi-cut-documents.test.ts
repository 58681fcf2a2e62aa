/**
 * Cut documents at the ISAPI door (issue 13): a document whose root element is not closed, or
 * whose eventState was not read whole, is refused with 400, nothing is stored, and the device is
 * still marked seen. Every fixture is cut at every byte, first through the parser, then through
 * the door itself with a store that records what it is asked to store.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { tables } from '../src/db/index';
import { isapiIngest } from '../src/devices/isapi/isapi-ingest';
import { classifyAlert, IsapiParseError, parseIsapiPost, type IsapiAlert } from '../src/devices/isapi/isapi-parser';
import type { AlarmPost } from '../src/streams/alarms/alarm-store';
import { alertEnd } from './helpers/isapi-cuts';
import { fixture, insertBinding, insertDevice, isapiPost, MULTIPART_TYPE, type DirectDevice } from './helpers/alarms-fixtures';
import { registerUser, type TestUser } from './helpers/devices';
import { startApp, testClock, type TestApp } from './helpers/harness';

const XML = 'application/xml; charset="UTF-8"';
const FILES = readdirSync(new URL('./fixtures/isapi/', import.meta.url)).filter((f) => !f.endsWith('.jpg')).sort();
const typeOf = (file: string) => (file.endsWith('.json') ? 'application/json' : file.endsWith('.multipart') ? MULTIPART_TYPE : XML);

const summary = (a: IsapiAlert) => ({ eventType: a.eventType, state: a.state, channel: a.channel, activePostCount: a.activePostCount, kind: classifyAlert(a) });

function parsed(body: Buffer, type: string): ReturnType<typeof summary> | IsapiParseError {
  try {
    return summary(parseIsapiPost(body, type).alert);
  } catch (e) {
    if (e instanceof IsapiParseError) return e;
    throw e;
  }
}

describe('cut documents: the parser', () => {
  test('refuses every fixture cut anywhere before its alert document ends, and reads nothing else from a later cut', () => {
    let refusedCuts = 0;
    for (const file of FILES) {
      const full = fixture(file);
      const type = typeOf(file);
      const whole = parsed(full, type);
      const end = alertEnd(full) ?? full.length + 1;
      for (let n = 0; n < full.length; n++) {
        const result = parsed(full.subarray(0, n), type);
        if (n < end) {
          assert.ok(result instanceof IsapiParseError, `${file} cut at ${n} of ${full.length} was read as ${JSON.stringify(result)}`);
          refusedCuts++;
        } else if (!(result instanceof IsapiParseError)) {
          assert.deepEqual(result, whole, `${file} cut at ${n} (after its alert ended) changed the alert`);
        }
      }
    }
    assert.ok(refusedCuts > 15_000, `only ${refusedCuts} cuts checked`);
  });
});

describe('cut documents: the door', () => {
  let t: TestApp;
  let owner: TestUser;
  const clock = testClock();
  before(async () => {
    t = await startApp({ clock: clock.now });
    owner = await registerUser(t, 'cut-owner');
  });
  after(() => t.stop());

  test('answers 400, stores nothing and still marks the device seen for every fixture cut at every byte', async () => {
    const d = await insertDevice(t.app.db.db);
    const recorded: AlarmPost[] = [];
    const seen: boolean[] = [];
    const door: FastifyInstance = Fastify();
    await door.register(
      isapiIngest({
        db: t.app.db.db,
        clock: clock.now,
        log: pino({ level: 'silent' }),
        registry: { recordIsapiSeen: async (_id, heartbeat) => void seen.push(heartbeat) },
        alarms: { record: async (_id, post) => (recorded.push(post), { outcome: 'created', alarm: null }) },
        bodyLimit: 1024 * 1024,
        deadlineMs: 5000,
      }),
    );
    try {
      let posts = 0;
      for (const file of FILES) {
        const full = fixture(file);
        const type = typeOf(file);
        const end = alertEnd(full) ?? full.length + 1;
        for (let n = 1; n < Math.min(end, full.length); n++) {
          recorded.length = 0;
          seen.length = 0;
          const res = await door.inject({ method: 'POST', url: d.ingestPath, headers: { 'content-type': type }, payload: full.subarray(0, n) });
          posts++;
          assert.equal(res.statusCode, 400, `${file} cut at ${n}: ${res.statusCode}`);
          assert.equal(recorded.length, 0, `${file} cut at ${n} stored ${JSON.stringify(recorded[0])}`);
          assert.deepEqual(seen, [false], `${file} cut at ${n}: the device was not marked seen`);
        }
      }
      assert.ok(posts > 15_000);
    } finally {
      await door.close();
    }
  });

  test('keeps a cut videoloss heartbeat from becoming an alarm over HTTP, at every byte, and refreshes lastSeenAt', async () => {
    const d: DirectDevice = await insertDevice(t.app.db.db);
    await insertBinding(t.app.db.db, d.id, owner.id, clock.now());
    const full = fixture('heartbeat-videoloss.xml');
    const end = alertEnd(full)!;
    for (let n = 1; n < end; n += 7) {
      const res = await isapiPost(t.url, d.ingestPath, full.subarray(0, n), XML);
      assert.equal(res.status, 400, `cut at ${n}`);
    }
    const rows = await t.app.db.db.select().from(tables.alarms).where(eq(tables.alarms.deviceId, d.id));
    assert.equal(rows.length, 0, 'no alarm from a cut heartbeat');
    const [device] = await t.app.db.db.select().from(tables.devices).where(eq(tables.devices.id, d.id));
    assert.equal(device!.online, true, 'still marked seen');
    assert.ok(device!.lastSeenAt);
    // The whole heartbeat is a heartbeat.
    assert.equal((await isapiPost(t.url, d.ingestPath, full, XML)).status, 200);
    assert.equal((await t.app.db.db.select().from(tables.alarms).where(eq(tables.alarms.deviceId, d.id))).length, 0);
  });
});
