/**
 * A fuzz run of ISAPI bodies through a real door and the real alarm store (issue 13): bodies made
 * of multipart parts with and without headers, documents cut anywhere, fragments and noise. Every
 * request must end within the door's deadline, none may earn a 5xx, and a cut document must
 * never store an alarm.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { eq } from 'drizzle-orm';
import fc from 'fast-check';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { tables } from '../src/db/index';
import { isapiIngest } from '../src/devices/isapi/isapi-ingest';
import { alertXml, fixture, insertBinding, insertDevice, MULTIPART_TYPE } from './helpers/alarms-fixtures';
import { registerUser } from './helpers/devices';
import { startApp, testClock, type TestApp } from './helpers/harness';
import { alertEnd } from './helpers/isapi-cuts';

const DEADLINE_MS = 1500;
const FILES = readdirSync(new URL('./fixtures/isapi/', import.meta.url)).filter((f) => !f.endsWith('.jpg'));

let t: TestApp;
let door: FastifyInstance;
let doorUrl: string;
const clock = testClock();

before(async () => {
  t = await startApp({ clock: clock.now });
  door = Fastify();
  await door.register(
    isapiIngest({ db: t.app.db.db, clock: clock.now, log: pino({ level: 'silent' }), registry: t.app.registry, alarms: t.app.alarmStore, bodyLimit: 256 * 1024, deadlineMs: DEADLINE_MS }),
  );
  doorUrl = await door.listen({ port: 0, host: '127.0.0.1' });
});
after(async () => {
  await door.close();
  await t.stop();
});

/** A part: headers chosen from none, Content-Type only, Content-Disposition only, both, or garbage; data from alerts, pictures and noise. */
const part = fc
  .record({
    headers: fc.constantFrom('', 'Content-Type: application/xml\r\n', 'Content-Disposition: form-data; name="VMD"\r\n', 'Content-Disposition: form-data; name="x"\r\nContent-Type: text/xml\r\n', 'Content-Type: image/jpeg\r\n', 'X: y\r\nbroken header line\r\n'),
    blank: fc.boolean(),
    data: fc.oneof(
      fc.constant(alertXml({ eventType: 'VMD', channel: 9 })),
      fc.constantFrom(...FILES).map((f) => fixture(f).toString('latin1')),
      fc.integer({ min: 0, max: 40_000 }).map((n) => 'z'.repeat(n)),
      fc.constant('\xff\xd8\xff\xe0 picture bytes'),
      fc.string({ maxLength: 200 }),
    ),
  })
  .map(({ headers, blank, data }) => `${headers}${blank || headers ? '\r\n' : ''}${data}`);

const multipart = fc
  .record({ parts: fc.array(part, { minLength: 1, maxLength: 4 }), closed: fc.boolean(), lf: fc.boolean() })
  .map(({ parts, closed, lf }) => {
    const nl = lf ? '\n' : '\r\n';
    return Buffer.from(`${parts.map((p) => `--b${nl}${p}${nl}`).join('')}${closed ? `--b--${nl}` : ''}`, 'latin1');
  });

/** A fixture cut before its alert document ends: must never store. */
const cutFixture = fc.constantFrom(...FILES.filter((f) => alertEnd(fixture(f)) !== null)).chain((f) =>
  fc.integer({ min: 1, max: alertEnd(fixture(f))! - 1 }).map((n) => ({ file: f, body: fixture(f).subarray(0, n) })),
);

const contentType = fc.constantFrom('multipart/form-data; boundary=b', 'multipart/form-data', MULTIPART_TYPE, 'application/xml', 'application/json', undefined);

async function post(path: string, body: Buffer, type: string | undefined): Promise<{ status: number; ms: number }> {
  const started = Date.now();
  const res = await fetch(`${doorUrl}${path}`, { method: 'POST', headers: type ? { 'content-type': type } : {}, body: new Uint8Array(body), signal: AbortSignal.timeout(DEADLINE_MS * 4) });
  await res.text();
  return { status: res.status, ms: Date.now() - started };
}

test('ends every fuzzed request within the deadline, never with a 5xx, and stores nothing from a cut document', async () => {
  const owner = await registerUser(t, 'fuzz-owner');
  const d = await insertDevice(t.app.db.db);
  await insertBinding(t.app.db.db, d.id, owner.id, clock.now());
  const rows = async () => (await t.app.db.db.select({ id: tables.alarms.id }).from(tables.alarms).where(eq(tables.alarms.deviceId, d.id))).length;
  let slowest = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.oneof({ arbitrary: multipart.map((body) => ({ body, cut: null as string | null })), weight: 3 }, { arbitrary: cutFixture.map(({ file, body }) => ({ body, cut: file as string | null })), weight: 2 }),
      contentType,
      async ({ body, cut }, type) => {
        const before = cut ? await rows() : 0;
        const { status, ms } = await post(d.ingestPath, body, cut ? (cut.endsWith('.json') ? 'application/json' : cut.endsWith('.multipart') ? MULTIPART_TYPE : 'application/xml') : type);
        slowest = Math.max(slowest, ms);
        assert.ok(status < 500, `answered ${status}`);
        assert.ok(ms <= DEADLINE_MS + 500, `took ${ms} ms`);
        if (cut) {
          assert.equal(status, 400, `${cut} cut at ${body.length} answered ${status}`);
          assert.equal(await rows(), before, `${cut} cut at ${body.length} stored an alarm`);
        }
        // Each post may open alarms: move past the retry window so identical bodies stay distinct posts.
        clock.advance(61_000);
      },
    ),
    { numRuns: 150 },
  );
  assert.ok(slowest <= DEADLINE_MS + 500);
});
