import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import fc from 'fast-check';
import { tables } from '../src/db/index';
import { AlarmsDocument, DeviceDocument, type AlarmFieldsFragment } from './generated/graphql';
import { alertXml, fixture, insertDevice, isapiPost, MULTIPART_TYPE, statusEvents, insertBoundDevice, storedAlarms } from './helpers/alarms-fixtures';
import { registerUser, type TestUser } from './helpers/devices';
import { expectData, startApp, testClock, waitFor, type TestApp } from './helpers/harness';

const XML = 'application/xml; charset="UTF-8"';
const JSON_TYPE = 'application/json';

let t: TestApp;
let owner: TestUser;
const clock = testClock();

before(async () => {
  t = await startApp({ clock: clock.now });
  owner = await registerUser(t, 'isapi-owner');
});
after(() => t.stop());

const boundDevice = () => insertBoundDevice(t.app.db.db, owner.id, clock.now());

/** The device's alarms as its owner sees them, newest first. */
async function alarmsOf(deviceId: string): Promise<AlarmFieldsFragment[]> {
  const data = expectData(await t.gql(AlarmsDocument, { first: 100, filter: { deviceIds: [deviceId] } }, { token: owner.token }));
  return data.alarms.edges.map((e) => e.node);
}

/** Rows in the table, bypassing the read horizon: "stored" means committed. */
const storedRows = (deviceId: string) => storedAlarms(t.app.db.db, deviceId);

const statusOf = async (deviceId: string) => expectData(await t.gql(DeviceDocument, { id: deviceId }, { token: owner.token })).device!;

describe('ISAPI alarm host: the corpus', () => {
  // [file, content type, AlarmType, channel, rawType]
  const mapped: Array<[string, string | undefined, string, number, string]> = [
    ['vmd.xml', XML, 'MOTION', 1, 'VMD'],
    ['linedetection.xml', 'text/xml', 'LINE_CROSSING', 1, 'linedetection'],
    ['fielddetection.xml', XML, 'INTRUSION', 1, 'fielddetection'],
    ['regionentrance.xml', XML, 'REGION_ENTRANCE', 1, 'regionEntrance'],
    ['regionexiting.xml', XML, 'REGION_EXIT', 1, 'regionExiting'],
    ['tamperdetection.xml', XML, 'TAMPER', 2, 'tamperdetection'],
    ['shelteralarm.xml', XML, 'TAMPER', 3, 'shelteralarm'],
    ['videoloss-active.xml', XML, 'VIDEO_LOSS', 33, 'videoloss'],
    ['io.xml', XML, 'ALARM_INPUT', 2, 'IO'],
    ['facedetection.xml', XML, 'FACE', 1, 'facedetection'],
    ['diskfull.xml', XML, 'DISK_FULL', 1, 'diskfull'],
    ['diskerror.xml', XML, 'DISK_ERROR', 0, 'diskerror'],
    ['illaccess.xml', XML, 'ILLEGAL_ACCESS', 1, 'illaccess'],
    ['pir.xml', XML, 'OTHER', 1, 'PIR'],
  ];
  for (const [file, type, alarmType, channel, rawType] of mapped) {
    test(`stores ${file} as one ${alarmType} alarm when the device posts it`, async () => {
      const d = await boundDevice();
      const res = await isapiPost(t.url, d.ingestPath, fixture(file), type);
      assert.equal(res.status, 200, res.text);
      assert.match(res.text, /<statusString>OK<\/statusString>/);
      assert.equal((await storedRows(d.id)).length, 1, 'committed before the 200');
      const [alarm, ...rest] = await waitFor(async () => {
        const list = await alarmsOf(d.id);
        return list.length ? list : null;
      });
      assert.equal(rest.length, 0);
      assert.equal(alarm!.type, alarmType);
      assert.equal(alarm!.channel, channel);
      assert.equal(alarm!.rawType, rawType);
      assert.equal(alarm!.device.id, d.id);
      assert.equal(alarm!.endedAt, null);
    });
  }

  // Untidy firmware: every variant DEVICES.md lists.
  const variants: Array<[string, string | undefined, string, number]> = [
    ['bom.xml', XML, 'MOTION', 1],
    ['psia-urn.xml', XML, 'MOTION', 1],
    ['namespace-unterminated.xml', XML, 'MOTION', 1],
    ['other-root.xml', XML, 'INTRUSION', 4],
    ['unescaped-amp.xml', XML, 'MOTION', 1],
    ['dynchannelid.xml', XML, 'MOTION', 5],
    ['nvr-channel-33.xml', XML, 'LINE_CROSSING', 33],
    ['protocoltype.xml', XML, 'MOTION', 13],
    ['eventtype-suffix.xml', XML, 'MOTION', 2],
    ['vmd.xml', 'text/plain', 'MOTION', 1],
    ['vmd.xml', undefined, 'MOTION', 1],
    ['vmd-flat.json', JSON_TYPE, 'MOTION', 1],
    ['vmd-nested.json', JSON_TYPE, 'MOTION', 2],
    ['linedetection-retransmission.json', JSON_TYPE, 'LINE_CROSSING', 1],
    ['linedetection-with-jpeg.multipart', MULTIPART_TYPE, 'LINE_CROSSING', 1],
    ['vmd-part-without-content-type.multipart', MULTIPART_TYPE, 'MOTION', 3],
    ['json-alert-part.multipart', MULTIPART_TYPE, 'INTRUSION', 2],
    ['stray-boundary.multipart', MULTIPART_TYPE, 'REGION_ENTRANCE', 2],
    ['stray-boundary.multipart', 'multipart/form-data', 'REGION_ENTRANCE', 2],
  ];
  for (const [file, type, alarmType, channel] of variants) {
    test(`stores ${file} sent as ${type ?? 'no content type'} as a ${alarmType} alarm on channel ${channel}`, async () => {
      const d = await boundDevice();
      const res = await isapiPost(t.url, d.ingestPath, fixture(file), type);
      assert.equal(res.status, 200, res.text);
      const rows = await storedRows(d.id);
      assert.equal(rows.length, 1);
      assert.equal(rows[0]!.alarmType, alarmType);
      assert.equal(rows[0]!.channel, channel);
    });
  }

  test('ends the open alarm when a mixed-case inactive post arrives for it', async () => {
    const d = await boundDevice();
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'linedetection', channel: 6 }), XML);
    assert.equal((await isapiPost(t.url, d.ingestPath, fixture('mixed-case-names.xml'), XML)).status, 200);
    const [row, ...rest] = await storedRows(d.id);
    assert.equal(rest.length, 0);
    assert.equal(row!.endedAt?.toISOString(), '2026-11-21T02:24:00.000Z');
  });

  test('ends the open NVR alarm when a retransmitted inactive JSON post with string fields arrives', async () => {
    const d = await boundDevice();
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'fielddetection', channel: 33, region: '7' }), XML);
    assert.equal((await isapiPost(t.url, d.ingestPath, fixture('fielddetection-retransmission-string.json'), 'application/json; charset=utf-8')).status, 200);
    const [row, ...rest] = await storedRows(d.id);
    assert.equal(rest.length, 0);
    assert.equal(row!.endedAt?.toISOString(), '2026-11-21T10:30:00.000Z');
  });

  test('counts the JPEG parts and records body hints without trusting them when a multipart alert arrives', async () => {
    const d = await boundDevice();
    assert.equal((await isapiPost(t.url, d.ingestPath, fixture('linedetection-with-jpeg.multipart'), MULTIPART_TYPE)).status, 200);
    const [row] = await storedRows(d.id);
    assert.equal(row!.details?.imageCount, 1);
    assert.equal(row!.details?.macAddress, '44:19:b6:7a:10:2c');
    assert.equal(row!.details?.ipAddress, '192.168.1.64');
    assert.equal(row!.regionId, '1');
    assert.equal(row!.channelName, 'Driveway');
  });

  test('accepts a multipart alert with large pictures when the body is under the 2 MiB limit', async () => {
    const d = await boundDevice();
    const jpeg = Buffer.concat([fixture('snapshot.jpg'), Buffer.alloc(700 * 1024, 0x55)]);
    const part = (name: string, type: string, data: Buffer) =>
      Buffer.concat([Buffer.from(`--b\r\nContent-Disposition: form-data; name="${name}"; filename="${name}.jpg"\r\nContent-Type: ${type}\r\n\r\n`), data, Buffer.from('\r\n')]);
    const body = Buffer.concat([
      Buffer.from(`--b\r\nContent-Disposition: form-data; name="VMD"\r\nContent-Type: application/xml\r\n\r\n${alertXml({ eventType: 'VMD' })}\r\n`),
      part('picture1', 'image/jpeg', jpeg),
      part('picture2', 'image/jpeg', jpeg),
      Buffer.from('--b--\r\n'),
    ]);
    assert.ok(body.length > 1024 * 1024 && body.length < 2 * 1024 * 1024);
    assert.equal((await isapiPost(t.url, d.ingestPath, body, 'multipart/form-data; boundary=b')).status, 200);
    const [row] = await storedRows(d.id);
    assert.equal(row!.details?.imageCount, 2);
  });

  test('keeps the device time as startedAt and orders by receive time when the device clock is years off', async () => {
    const d = await boundDevice();
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'VMD', dateTime: '2031-01-01T00:00:00+08:00' }), XML);
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'linedetection', dateTime: '2019-06-01T12:00:00Z' }), XML);
    const list = await waitFor(async () => {
      const l = await alarmsOf(d.id);
      return l.length === 2 ? l : null;
    });
    assert.deepEqual(
      list.map((a) => [a.type, a.startedAt]),
      [
        ['LINE_CROSSING', '2019-06-01T12:00:00.000Z'],
        ['MOTION', '2030-12-31T16:00:00.000Z'],
      ],
    );
  });
});

describe('ISAPI alarm host: what is not an alarm', () => {
  test('answers 200 and stores nothing when the device sends its test notification or an ignored type', async () => {
    const d = await boundDevice();
    for (const file of ['test-notification.xml', 'duration.xml']) {
      assert.equal((await isapiPost(t.url, d.ingestPath, fixture(file), XML)).status, 200, file);
    }
    assert.equal((await storedRows(d.id)).length, 0);
  });

  test('refreshes lastSeenAt and stores no alarm when heartbeats of either style arrive', async () => {
    for (const file of ['heartbeat-videoloss.xml', 'heartbeat-subscription.xml']) {
      const d = await boundDevice();
      assert.equal((await isapiPost(t.url, d.ingestPath, fixture(file), XML)).status, 200, file);
      assert.equal((await storedRows(d.id)).length, 0, file);
      const [row] = await t.app.db.db.select().from(tables.devices).where(eq(tables.devices.id, d.id));
      assert.equal(row!.heartbeats, true, file);
      assert.equal(row!.online, true, file);
      assert.ok(row!.lastSeenAt, file);
    }
  });

  test('answers 200 and stores nothing when the device is not bound to anyone', async () => {
    const d = await insertDevice(t.app.db.db);
    assert.equal((await isapiPost(t.url, d.ingestPath, fixture('vmd.xml'), XML)).status, 200);
    assert.equal((await storedRows(d.id)).length, 0);
  });
});

describe('ISAPI alarm host: metrics', () => {
  /** vigil_isapi_posts_total by outcome, read from /metrics. */
  async function postsByOutcome(): Promise<Map<string, number>> {
    const text = await (await fetch(`${t.url}/metrics`)).text();
    return new Map([...text.matchAll(/^vigil_isapi_posts_total\{outcome="([^"]+)"\} (\S+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
  }

  test('counts every post under its own outcome when alarms, repeats, heartbeats and undecodable bodies arrive', async () => {
    const d = await boundDevice();
    const before = await postsByOutcome();
    const posts: Array<[string, number]> = [
      ['vmd.xml', 200],
      ['vmd.xml', 200],
      ['heartbeat-subscription.xml', 200],
      ['test-notification.xml', 200],
    ];
    for (const [file, status] of posts) assert.equal((await isapiPost(t.url, d.ingestPath, fixture(file), XML)).status, status, file);
    assert.equal((await isapiPost(t.url, d.ingestPath, '<EventNotificationAlert><channelID>1</channelID></EventNotificationAlert>', XML)).status, 400);
    const after = await postsByOutcome();
    const grew = (outcome: string) => (after.get(outcome) ?? 0) - (before.get(outcome) ?? 0);
    assert.equal(grew('created'), 1);
    assert.equal(grew('coalesced') + grew('duplicate'), 1, 'the repeat updates the open alarm (or is its retry)');
    assert.equal(grew('heartbeat'), 1);
    assert.equal(grew('ignored'), 1);
    assert.equal(grew('bad-request'), 1);
  });
});

describe('ISAPI alarm host: refusals', () => {
  test('answers the same 404 for an unknown token, a malformed one, another method or another path', async () => {
    const d = await boundDevice();
    const unknown = await isapiPost(t.url, `/isapi/events/${randomBytes(32).toString('base64url')}`, fixture('vmd.xml'), XML);
    const answers = [
      unknown,
      await isapiPost(t.url, '/isapi/events/short', fixture('vmd.xml'), XML),
      await isapiPost(t.url, '/isapi/events/', fixture('vmd.xml'), XML),
      await isapiPost(t.url, `${d.ingestPath}/extra`, fixture('vmd.xml'), XML),
      await isapiPost(t.url, '/isapi/anything', 'x', 'text/plain'),
      { status: (await fetch(`${t.url}${d.ingestPath}`)).status, text: 'Not Found\n' },
    ];
    for (const a of answers) assert.deepEqual(a, { status: 404, text: 'Not Found\n' });
    assert.equal((await storedRows(d.id)).length, 0);
  });

  test('answers 400, logs and stores nothing when the body cannot be decoded or has no eventType', async () => {
    const d = await boundDevice();
    const bodies: Array<[string, Buffer | string, string | undefined]> = [
      ['truncated XML', fixture('truncated.xml'), XML],
      ['missing eventType', fixture('missing-eventtype.xml'), XML],
      ['binary garbage', randomBytes(4096), 'application/octet-stream'],
      ['a bare JPEG', fixture('snapshot.jpg'), 'image/jpeg'],
      ['empty', '', XML],
      ['JSON array', '[1,2,3]', JSON_TYPE],
      ['multipart with only a picture', `--b\r\nContent-Type: image/jpeg\r\n\r\n${fixture('snapshot.jpg').toString('latin1')}\r\n--b--\r\n`, 'multipart/form-data; boundary=b'],
      ['multipart with no boundary', 'nothing here', 'multipart/form-data'],
    ];
    for (const [what, body, type] of bodies) {
      const res = await isapiPost(t.url, d.ingestPath, typeof body === 'string' ? Buffer.from(body, 'latin1') : body, type);
      assert.equal(res.status, 400, what);
    }
    assert.equal((await storedRows(d.id)).length, 0);
  });

  test('answers 413 when the body is over the limit, in any encoding', async () => {
    const d = await boundDevice();
    const huge = Buffer.alloc(2 * 1024 * 1024 + 10, 0x20);
    assert.equal((await isapiPost(t.url, d.ingestPath, huge, XML)).status, 413);
    const multipart = Buffer.concat([Buffer.from('--b\r\nContent-Type: image/jpeg\r\n\r\n'), huge, Buffer.from('\r\n--b--\r\n')]);
    assert.equal((await isapiPost(t.url, d.ingestPath, multipart, 'multipart/form-data; boundary=b')).status, 413);
    // Chunked, so no Content-Length gives the size away.
    const chunked = async (type: string) => {
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < multipart.length; i += 64 * 1024) controller.enqueue(new Uint8Array(multipart.subarray(i, i + 64 * 1024)));
          controller.close();
        },
      });
      const res = await fetch(`${t.url}${d.ingestPath}`, { method: 'POST', headers: { 'content-type': type }, body: stream, duplex: 'half' } as RequestInit);
      await res.text();
      return res.status;
    };
    assert.equal(await chunked('multipart/form-data; boundary=b'), 413);
    assert.equal(await chunked('multipart/form-data; boundary=not-the-one'), 413, 'while collecting the rest for the fallback');
    assert.equal(await chunked(XML), 413);
    assert.equal((await storedRows(d.id)).length, 0);
  });

  test('never answers 5xx whatever the body and content type', async () => {
    const d = await boundDevice();
    const fragments = ['<EventNotificationAlert>', '<eventType>', 'VMD', '</eventType>', '{"eventType":', '"', '--b\r\n', 'Content-Type: text/xml\r\n\r\n', '&', '\u0000', '\r\n', '<channelID>', '99999999999', '</EventNotificationAlert>'];
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b)),
      fc.array(fc.constantFrom(...fragments), { maxLength: 40 }).map((p) => Buffer.from(p.join(''))),
      fc.string({ maxLength: 500 }).map((s) => Buffer.from(s)),
      fc.constantFrom(...['vmd.xml', 'linedetection-with-jpeg.multipart', 'vmd-flat.json', 'truncated.xml']).chain((f) =>
        fc.integer({ min: 0, max: fixture(f).length }).map((n) => fixture(f).subarray(0, n)),
      ),
    );
    const contentType = fc.constantFrom(undefined, XML, 'text/xml', JSON_TYPE, 'text/plain', 'multipart/form-data; boundary=b', 'multipart/form-data', MULTIPART_TYPE, 'image/jpeg', 'application/x-www-form-urlencoded', ';;;', 'multipart/mixed; boundary="');
    await fc.assert(
      fc.asyncProperty(body, contentType, async (b, ct) => {
        const res = await isapiPost(t.url, d.ingestPath, b, ct);
        return res.status < 500;
      }),
      { numRuns: 150 },
    );
  });
});

describe('ISAPI alarm host: coalescing, quiet end and duplicates', () => {
  test('updates one open alarm when active posts repeat within 10 s and opens a new one per channel or region', async () => {
    const d = await boundDevice();
    for (let count = 1; count <= 3; count++) {
      assert.equal((await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'fielddetection', count, region: '1' }), XML)).status, 200);
      clock.advance(3000);
    }
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'fielddetection', region: '2' }), XML);
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'fielddetection', channel: 2, region: '1' }), XML);
    const rows = await storedRows(d.id);
    assert.equal(rows.length, 3);
    const first = rows.find((r) => r.regionId === '1' && r.channel === 1)!;
    assert.equal(first.activePostCount, 3);
    assert.equal(first.postCount, 3);
  });

  test('opens a new alarm and ends the old one at its last post when the repeat comes 10 s or more later', async () => {
    const d = await boundDevice();
    const t0 = new Date(Date.UTC(2026, 10, 21, 10, 0, 0));
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'VMD', dateTime: t0.toISOString() }), XML);
    clock.advance(4000);
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'VMD', count: 2, dateTime: new Date(t0.getTime() + 4000).toISOString() }), XML);
    clock.advance(10_000);
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'VMD', dateTime: new Date(t0.getTime() + 14_000).toISOString() }), XML);
    const list = await waitFor(async () => {
      const l = await alarmsOf(d.id);
      return l.length === 2 ? l : null;
    });
    const [newer, older] = list;
    assert.equal(older!.activePostCount, 2);
    assert.equal(older!.startedAt, t0.toISOString());
    assert.equal(older!.endedAt, new Date(t0.getTime() + 4000).toISOString(), 'ended at its last post');
    assert.equal(newer!.endedAt, null);
  });

  test('ends the open alarm when an inactive post arrives and ignores an inactive post with nothing open', async () => {
    const d = await boundDevice();
    const start = new Date(Date.UTC(2026, 10, 21, 11, 0, 0));
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'IO', dateTime: start.toISOString() }), XML);
    clock.advance(2000);
    const end = new Date(start.getTime() + 2000).toISOString();
    assert.equal((await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'IO', state: 'inactive', dateTime: end }), XML)).status, 200);
    assert.equal((await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'IO', state: 'inactive', channel: 7 }), XML)).status, 200);
    const rows = await storedRows(d.id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.endedAt?.toISOString(), end);
    // The next active post opens a new alarm at once.
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'IO' }), XML);
    assert.equal((await storedRows(d.id)).length, 2);
  });

  test('shows an alarm as ended after 10 s of quiet and the sweeper writes it down', async () => {
    const d = await boundDevice();
    const at = new Date(Date.UTC(2026, 10, 21, 12, 0, 0)).toISOString();
    await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'tamperdetection', dateTime: at }), XML);
    assert.equal((await waitFor(async () => (await alarmsOf(d.id))[0]))!.endedAt, null);
    clock.advance(10_000);
    assert.equal((await alarmsOf(d.id))[0]!.endedAt, at, 'shown as ended before the sweeper runs');
    await t.app.alarmStore.endQuiet();
    const [row] = await storedRows(d.id);
    assert.equal(row!.endedAt?.toISOString(), at);
  });

  test('coalesces an NVR repeating videoloss twice a second into one alarm', async () => {
    const d = await boundDevice();
    for (let i = 1; i <= 10; i++) {
      await isapiPost(t.url, d.ingestPath, alertXml({ eventType: 'videoloss', channel: 35, count: i }), XML);
      clock.advance(500);
    }
    const rows = await storedRows(d.id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.alarmType, 'VIDEO_LOSS');
    assert.equal(rows[0]!.activePostCount, 10);
  });

  test('stores a JSON post once when the same uuid is posted again', async () => {
    const d = await boundDevice();
    for (let i = 0; i < 3; i++) assert.equal((await isapiPost(t.url, d.ingestPath, fixture('vmd-flat.json'), JSON_TYPE)).status, 200);
    clock.advance(11_000); // even once the first alarm has ended
    assert.equal((await isapiPost(t.url, d.ingestPath, fixture('vmd-flat.json'), JSON_TYPE)).status, 200);
    const rows = await storedRows(d.id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.postCount, 1);
  });

  test('stores a retransmitted JSON post once when its UUID was stored before', async () => {
    const d = await boundDevice();
    const original = JSON.parse(fixture('linedetection-retransmission.json').toString()) as Record<string, unknown>;
    delete original.isDataRetransmission;
    assert.equal((await isapiPost(t.url, d.ingestPath, JSON.stringify(original), JSON_TYPE)).status, 200);
    clock.advance(30_000); // the device resends long after, flagged
    assert.equal((await isapiPost(t.url, d.ingestPath, fixture('linedetection-retransmission.json'), JSON_TYPE)).status, 200);
    const rows = await storedRows(d.id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.details?.uuid, '7f1c0a52-3f3a-4c1e-b5a6-1c8d2e9f0a11');
  });
});

describe('ISAPI liveness', () => {
  test('shows a heartbeat-less device ONLINE on each post and UNKNOWN, not OFFLINE, after the window', async () => {
    const d = await boundDevice();
    const events = await statusEvents(t.app.bus, d.id);
    assert.equal((await statusOf(d.id)).status, 'OFFLINE', 'never heard from');
    await isapiPost(t.url, d.ingestPath, fixture('vmd.xml'), XML);
    assert.equal((await statusOf(d.id)).status, 'ONLINE');
    clock.advance(91_000);
    await t.app.registry.sweep();
    const quiet = await statusOf(d.id);
    assert.equal(quiet.status, 'UNKNOWN');
    assert.ok(quiet.lastSeenAt);
    await isapiPost(t.url, d.ingestPath, fixture('pir.xml'), XML);
    assert.equal((await statusOf(d.id)).status, 'ONLINE');
    await waitFor(() => events.of(d.id).length === 3);
    assert.deepEqual(events.of(d.id), ['ONLINE', 'UNKNOWN', 'ONLINE']);
    events.stop();
  });

  test('holds a device that heartbeats to it: OFFLINE after 90 s of silence', async () => {
    const d = await boundDevice();
    const events = await statusEvents(t.app.bus, d.id);
    await isapiPost(t.url, d.ingestPath, fixture('heartbeat-subscription.xml'), XML);
    assert.equal((await statusOf(d.id)).status, 'ONLINE');
    clock.advance(60_000);
    await t.app.registry.sweep();
    assert.equal((await statusOf(d.id)).status, 'ONLINE');
    clock.advance(31_000);
    await t.app.registry.sweep();
    await t.app.registry.sweep();
    assert.equal((await statusOf(d.id)).status, 'OFFLINE');
    await waitFor(() => events.of(d.id).length === 2);
    assert.deepEqual(events.of(d.id), ['ONLINE', 'OFFLINE']);
    events.stop();
  });
});

describe('ISAPI alarm host: storage failures', () => {
  test('answers 503, never 200, when the alarm store rejects the post (its group commit failed)', async () => {
    const { default: Fastify } = await import('fastify');
    const { pino } = await import('pino');
    const { isapiIngest } = await import('../src/devices/isapi/isapi-ingest');
    const d = await boundDevice();
    let seen = 0;
    const app = Fastify();
    await app.register(
      isapiIngest({
        db: t.app.db.db,
        clock: clock.now,
        log: pino({ level: 'silent' }),
        registry: { recordIsapiSeen: async () => void seen++ },
        alarms: { record: () => Promise.reject(new Error('batch failed')) },
        bodyLimit: 1024 * 1024,
      }),
    );
    try {
      const res = await app.inject({ method: 'POST', url: d.ingestPath, headers: { 'content-type': XML }, payload: alertXml({ eventType: 'VMD', channel: 1 }) });
      assert.equal(res.statusCode, 503);
      assert.equal(res.headers['retry-after'], '5');
      assert.equal(seen, 1, 'liveness is still recorded');
    } finally {
      await app.close();
    }
  });
});
