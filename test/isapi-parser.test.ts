import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { ALARM_TYPES, alarmTypeFor, type AlarmType } from '../src/streams/alarms/alarm-type';
import {
  IGNORED_EVENT_TYPES,
  IsapiParseError,
  classifyAlert,
  normaliseEventType,
  parseAlertBody,
  parseAlertJson,
  parseAlertParts,
  parseAlertXml,
  previewBody,
  splitMultipartTolerant,
  type IsapiAlert,
  type IsapiParseReason,
  type MultipartPart,
} from '../src/devices/isapi/isapi-parser';

const FIXTURES = new URL('./fixtures/isapi/', import.meta.url);
const fixture = (name: string): Buffer => readFileSync(new URL(name, FIXTURES));
const fixtureText = (name: string): string => fixture(name).toString('utf8');

const JPEG = fixture('snapshot.jpg');
const XML = 'application/xml; charset="UTF-8"';

/** Asserts `fn` throws an IsapiParseError (optionally with `reason`) and nothing else. */
function assertParseError(fn: () => unknown, reason?: IsapiParseReason): IsapiParseError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, 'expected a throw');
  assert.ok(caught instanceof IsapiParseError, `expected IsapiParseError, got ${String(caught)}`);
  if (reason !== undefined) assert.equal(caught.reason, reason, caught.message);
  return caught;
}

const NULLABLE_STRINGS = ['description', 'channelName', 'regionId', 'macAddress', 'serialHint', 'ipAddress', 'protocol', 'uuid'] as const;

/** Structural invariants every returned alert satisfies. */
function assertWellFormed(a: IsapiAlert): void {
  assert.equal(typeof a.rawEventType, 'string');
  assert.ok(a.rawEventType.length > 0 && a.rawEventType.length <= 64 && a.rawEventType === a.rawEventType.trim());
  assert.ok(a.eventType.length > 0 && a.eventType.length <= 64);
  assert.equal(a.eventType, normaliseEventType(a.rawEventType));
  assert.equal(a.eventType, a.eventType.trim());
  assert.ok((ALARM_TYPES as readonly string[]).includes(a.alarmType));
  assert.equal(a.alarmType, alarmTypeFor(a.eventType));
  assert.ok(a.state === 'active' || a.state === 'inactive');
  assert.ok(Number.isSafeInteger(a.channel) && a.channel >= 0);
  assert.ok(Number.isSafeInteger(a.activePostCount) && a.activePostCount >= 0);
  assert.ok(a.deviceTime === null || (a.deviceTime instanceof Date && Number.isFinite(a.deviceTime.getTime())));
  assert.ok(a.portNo === null || (Number.isInteger(a.portNo) && a.portNo >= 1 && a.portNo <= 65535));
  assert.equal(typeof a.retransmission, 'boolean');
  for (const key of NULLABLE_STRINGS) {
    const v = a[key];
    assert.ok(v === null || (typeof v === 'string' && v.length > 0 && !v.includes('\u0000') && v === v.trim()), key);
  }
  assert.ok(a.description === null || a.description.length <= 500);
  assert.equal(classifyAlert(a) === 'alarm' || classifyAlert(a) === 'heartbeat' || classifyAlert(a) === 'ignored', true);
}

/** Re-renders a corpus document's root start tag with another namespace declaration (prefixes removed first). */
function withNamespace(xml: string, ns: string): string {
  const unprefixed = xml.replace(/<(\/?)[A-Za-z]+:/g, '<$1').replace(/\sxmlns:[A-Za-z]+="[^"]*"/g, '');
  return unprefixed.replace(/<EventNotificationAlert\b[^>]*>/, `<EventNotificationAlert${ns}>`);
}

const NAMESPACES: Record<string, string> = {
  'hikvision.com ver20': ' version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema"',
  'isapi.org ver20': ' version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema"',
  'no namespace': '',
  'PSIA-era ver10': ' version="1.0" xmlns="http://www.hikvision.com/ver10/XMLSchema"',
  'PSIA urn': ' version="1.0" xmlns="urn:psialliance-org"',
  'typo namespace': ' version="2.0" xmlns="http://www.hikvison.com/ver20/XMLSchma"',
  'prefixed namespace': ' version="2.0" xmlns:hik="http://www.hikvision.com/ver20/XMLSchema"',
};

// [fixture, raw eventType, normalised, alarm type, channel]
const EVENT_CORPUS: Array<[string, string, string, AlarmType, number]> = [
  ['vmd.xml', 'VMD', 'vmd', 'MOTION', 1],
  ['linedetection.xml', 'linedetection', 'linedetection', 'LINE_CROSSING', 1],
  ['fielddetection.xml', 'fielddetection', 'fielddetection', 'INTRUSION', 1],
  ['regionentrance.xml', 'regionEntrance', 'regionentrance', 'REGION_ENTRANCE', 1],
  ['regionexiting.xml', 'regionExiting', 'regionexiting', 'REGION_EXIT', 1],
  ['tamperdetection.xml', 'tamperdetection', 'tamperdetection', 'TAMPER', 2],
  ['shelteralarm.xml', 'shelteralarm', 'shelteralarm', 'TAMPER', 3],
  ['videoloss-active.xml', 'videoloss', 'videoloss', 'VIDEO_LOSS', 33],
  ['io.xml', 'IO', 'io', 'ALARM_INPUT', 2],
  ['facedetection.xml', 'facedetection', 'facedetection', 'FACE', 1],
  ['diskfull.xml', 'diskfull', 'diskfull', 'DISK_FULL', 1],
  ['diskerror.xml', 'diskerror', 'diskerror', 'DISK_ERROR', 0],
  ['illaccess.xml', 'illaccess', 'illaccess', 'ILLEGAL_ACCESS', 1],
  ['pir.xml', 'PIR', 'pir', 'OTHER', 1],
];

describe('alarmTypeFor', () => {
  test('maps every documented event type when given its normalised name', () => {
    const expected: Record<string, AlarmType> = {
      vmd: 'MOTION',
      linedetection: 'LINE_CROSSING',
      fielddetection: 'INTRUSION',
      regionentrance: 'REGION_ENTRANCE',
      regionexiting: 'REGION_EXIT',
      tamperdetection: 'TAMPER',
      shelteralarm: 'TAMPER',
      videoloss: 'VIDEO_LOSS',
      io: 'ALARM_INPUT',
      facedetection: 'FACE',
      diskfull: 'DISK_FULL',
      diskerror: 'DISK_ERROR',
      illaccess: 'ILLEGAL_ACCESS',
    };
    for (const [type, alarm] of Object.entries(expected)) assert.equal(alarmTypeFor(type), alarm, type);
  });

  test('returns OTHER when the event type is unknown or empty', () => {
    for (const type of ['pir', '', 'heartbeat', 'test', 'vmdx', 'constructor', '__proto__']) assert.equal(alarmTypeFor(type), 'OTHER', type);
  });
});

describe('parseAlertXml event-type corpus', () => {
  for (const [file, raw, normalised, alarmType, channel] of EVENT_CORPUS) {
    test(`maps ${raw} to ${alarmType} when parsing ${file}`, () => {
      const a = parseAlertXml(fixtureText(file));
      assertWellFormed(a);
      assert.equal(a.rawEventType, raw);
      assert.equal(a.eventType, normalised);
      assert.equal(a.alarmType, alarmType);
      assert.equal(a.channel, channel);
      assert.equal(a.state, 'active');
      assert.ok(a.deviceTime instanceof Date);
      assert.ok(a.activePostCount >= 1);
      assert.equal(classifyAlert(a), 'alarm');
    });
  }

  for (const [label, ns] of Object.entries(NAMESPACES)) {
    test(`parses every corpus event type when the root uses ${label}`, () => {
      for (const [file, raw, normalised, alarmType, channel] of EVENT_CORPUS) {
        let xml = withNamespace(fixtureText(file), ns);
        if (label === 'prefixed namespace') xml = xml.replace(/<(\/?)(?=[A-Za-z])/g, '<$1hik:');
        const a = parseAlertXml(xml);
        assert.equal(a.rawEventType, raw, `${file} ${label}`);
        assert.equal(a.eventType, normalised, `${file} ${label}`);
        assert.equal(a.alarmType, alarmType, `${file} ${label}`);
        assert.equal(a.channel, channel, `${file} ${label}`);
      }
    });
  }

  test('parses the document when the root is a PSIA urn namespace without XML declaration', () => {
    const a = parseAlertXml(fixtureText('psia-urn.xml'));
    assert.equal(a.eventType, 'vmd');
    assert.equal(a.activePostCount, 5);
    assert.equal(a.deviceTime?.toISOString(), '2014-06-01T08:00:00.000Z');
  });
});

describe('parseAlertXml flat fast path', () => {
  /** The same document with a comment after the root's start tag: the shortcut declines it, so the XML parser reads it. */
  const viaParser = (xml: string) => xml.replace(/(<(?:[\w.-]+:)?EventNotificationAlert\b[^>]*>)/i, '$1<!-- full parser -->');
  const XML_FILES = readdirSync(FIXTURES).filter((f) => f.endsWith('.xml'));

  test('gives the same result as the XML parser for every XML corpus document, plain, prefixed and with odd spacing', () => {
    const variants = (xml: string) => [xml, xml.replace(/<(\/?)(?=[A-Za-z])/g, '<$1hik:').replace('<hik:?xml', '<?xml'), xml.replace(/>\s*</g, '>\n\t <')];
    let compared = 0;
    for (const file of XML_FILES) {
      for (const xml of variants(fixtureText(file))) {
        const forced = viaParser(xml);
        if (forced === xml) continue; // no EventNotificationAlert root to mark
        let fast: unknown;
        let full: unknown;
        try {
          fast = parseAlertXml(xml);
        } catch (e) {
          fast = e instanceof IsapiParseError ? e.reason : e;
        }
        try {
          full = parseAlertXml(forced);
        } catch (e) {
          full = e instanceof IsapiParseError ? e.reason : e;
        }
        assert.deepEqual(fast, full, file);
        compared++;
      }
    }
    assert.ok(compared > 20, `compared ${compared}`);
  });

  test('leaves nesting, entities, repeated and empty elements and trailing content to the XML parser', () => {
    const doc = (inner: string, tail = '') => `<EventNotificationAlert version="2.0"><eventType>VMD</eventType><channelID>2</channelID>${inner}</EventNotificationAlert>${tail}`;
    assert.equal(parseAlertXml(doc('<eventDescription>a &amp; b</eventDescription>')).description, 'a & b');
    assert.equal(parseAlertXml(doc('<eventDescription><![CDATA[x<y]]></eventDescription>')).description, 'x<y');
    assert.equal(parseAlertXml(doc('<channelName></channelName><eventDescription>d</eventDescription>')).description, 'd');
    assert.equal(parseAlertXml(doc('<DetectionRegionList><DetectionRegionEntry><regionID>3</regionID></DetectionRegionEntry></DetectionRegionList>')).channel, 2);
    assert.equal(parseAlertXml(doc('<channelID>5</channelID>')).channel, parseAlertXml(viaParser(doc('<channelID>5</channelID>'))).channel);
    assert.equal(parseAlertXml(doc('', '<!-- trailing -->')).eventType, 'vmd');
    assert.equal(parseAlertXml('<a:EventNotificationAlert><a:eventType>PIR</a:eventType></b:EventNotificationAlert>').eventType, 'pir');
  });
});

describe('parseAlertXml normalisation', () => {
  test('reads all header fields when given a full hikvision.com document', () => {
    const a = parseAlertXml(fixtureText('vmd.xml'));
    assert.deepEqual(a, {
      eventType: 'vmd',
      rawEventType: 'VMD',
      alarmType: 'MOTION',
      state: 'active',
      channel: 1,
      deviceTime: new Date('2026-11-21T02:00:00.000Z'),
      activePostCount: 1,
      description: 'Motion alarm',
      channelName: 'Front Door',
      regionId: null,
      macAddress: '44:19:b6:7a:10:2c',
      serialHint: null,
      ipAddress: '192.168.1.64',
      protocol: 'HTTP',
      portNo: 80,
      uuid: null,
      retransmission: false,
    } satisfies IsapiAlert);
  });

  test('uses protocolType when protocol is absent', () => {
    const a = parseAlertXml(fixtureText('protocoltype.xml'));
    assert.equal(a.protocol, 'HTTP');
    assert.equal(a.channel, 13);
    assert.equal(a.activePostCount, 38);
    assert.equal(a.deviceTime?.toISOString(), '2021-01-29T08:58:05.000Z');
  });

  test('uses dynChannelID when channelID is missing', () => {
    assert.equal(parseAlertXml(fixtureText('dynchannelid.xml')).channel, 5);
  });

  test('keeps the raw NVR channel number when an IP channel arrives as 32+N', () => {
    const a = parseAlertXml(fixtureText('nvr-channel-33.xml'));
    assert.equal(a.channel, 33);
    assert.equal(a.regionId, '1');
    assert.equal(a.channelName, 'D1 Gate');
  });

  test('uses inputIOPortID when an IO alarm has no channelID', () => {
    const a = parseAlertXml(fixtureText('io.xml'));
    assert.equal(a.channel, 2);
    assert.equal(a.alarmType, 'ALARM_INPUT');
  });

  test('defaults the channel to 1 when no channel element is present', () => {
    assert.equal(parseAlertXml(fixtureText('diskfull.xml')).channel, 1);
  });

  test('keeps channel 0 when the device sends channelID 0', () => {
    assert.equal(parseAlertXml(fixtureText('diskerror.xml')).channel, 0);
  });

  test('strips a trailing -N from eventType when normalising but keeps the raw word', () => {
    const a = parseAlertXml(fixtureText('eventtype-suffix.xml'));
    assert.equal(a.rawEventType, 'VMD-1');
    assert.equal(a.eventType, 'vmd');
    assert.equal(a.alarmType, 'MOTION');
  });

  test('strips only trailing digits after a hyphen when normalising event types', () => {
    assert.equal(normaliseEventType('  LineDetection-12 '), 'linedetection');
    assert.equal(normaliseEventType('line-detection'), 'line-detection');
    assert.equal(normaliseEventType('VMD-1a'), 'vmd-1a');
    assert.equal(normaliseEventType('vmd1'), 'vmd1');
    assert.equal(normaliseEventType('-1'), '-1');
    assert.equal(normaliseEventType('heartBeat'), 'heartbeat');
  });

  test('keeps unescaped ampersands when free text contains a bare &', () => {
    const a = parseAlertXml(fixtureText('unescaped-amp.xml'));
    assert.equal(a.description, 'Motion & tamper at R&D gate & yard');
    assert.equal(a.channelName, 'Gate & Yard');
  });

  test('decodes character references when the text escapes characters', () => {
    const a = parseAlertXml('<EventNotificationAlert><eventType>VMD</eventType><eventDescription>Caf&#233; &lt;1&gt; &#x4E2D;&quot;</eventDescription></EventNotificationAlert>');
    assert.equal(a.description, 'Café <1> 中"');
  });

  test('parses the document when it starts with a UTF-8 BOM', () => {
    const bytes = fixture('bom.xml');
    assert.deepEqual([...bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf]);
    assert.equal(parseAlertBody(bytes, 'application/xml').eventType, 'vmd');
    assert.equal(parseAlertXml(bytes.toString('utf8')).eventType, 'vmd');
    assert.equal(parseAlertBody(bytes, undefined).eventType, 'vmd');
  });

  test('matches element names case-insensitively when firmware capitalises them', () => {
    const a = parseAlertXml(fixtureText('mixed-case-names.xml'));
    assert.equal(a.rawEventType, 'LineDetection');
    assert.equal(a.eventType, 'linedetection');
    assert.equal(a.channel, 6);
    assert.equal(a.state, 'inactive');
    assert.equal(a.activePostCount, 2);
    assert.equal(a.ipAddress, '192.168.1.64');
    assert.equal(a.deviceTime?.toISOString(), '2026-11-21T02:24:00.000Z');
  });

  test('accepts another root element when it holds eventType directly', () => {
    const a = parseAlertXml(fixtureText('other-root.xml'));
    assert.equal(a.eventType, 'fielddetection');
    assert.equal(a.channel, 4);
    assert.equal(a.deviceTime?.toISOString(), '2026-11-21T10:23:00.000Z');
  });

  test('repairs the root tag when the namespace attribute quote is never closed', () => {
    const a = parseAlertXml(fixtureText('namespace-unterminated.xml'));
    assert.equal(a.eventType, 'vmd');
    assert.equal(a.description, 'Motion alarm');
  });

  test('records deviceID as the serial hint and MAC/IP as untrusted hints', () => {
    const a = parseAlertXml(fixtureText('linedetection.xml'));
    assert.equal(a.serialHint, 'DS-2CD2T47G2-L20231121AAWRJ12345678');
    assert.equal(a.macAddress, 'bc:ad:28:e1:44:03');
    assert.equal(a.ipAddress, '192.168.1.65');
    assert.equal(a.regionId, '1');
  });

  test('takes the first regionID when DetectionRegionList has several entries', () => {
    assert.equal(parseAlertXml(fixtureText('fielddetection.xml')).regionId, '2');
  });

  test('applies defaults when optional elements are missing', () => {
    const a = parseAlertXml('<EventNotificationAlert><eventType>VMD</eventType></EventNotificationAlert>');
    assert.equal(a.state, 'active');
    assert.equal(a.channel, 1);
    assert.equal(a.activePostCount, 0);
    assert.equal(a.deviceTime, null);
    assert.equal(a.description, null);
    assert.equal(a.channelName, null);
    assert.equal(a.regionId, null);
    assert.equal(a.macAddress, null);
    assert.equal(a.portNo, null);
    assert.equal(a.uuid, null);
    assert.equal(a.retransmission, false);
  });

  test('converts device times to UTC when dateTime carries an offset, Z, a compact offset or none', () => {
    const at = (dt: string): string | null => {
      const a = parseAlertXml(`<EventNotificationAlert><eventType>VMD</eventType><dateTime>${dt}</dateTime></EventNotificationAlert>`);
      return a.deviceTime === null ? null : a.deviceTime.toISOString();
    };
    assert.equal(at('2026-11-21T10:00:00+08:00'), '2026-11-21T02:00:00.000Z');
    assert.equal(at('2026-11-21T10:00:00-05:30'), '2026-11-21T15:30:00.000Z');
    assert.equal(at('2026-11-21T10:00:00Z'), '2026-11-21T10:00:00.000Z');
    assert.equal(at('2026-11-21T10:00:00+0800'), '2026-11-21T02:00:00.000Z');
    assert.equal(at('2026-11-21T10:00:00.250+08'), '2026-11-21T02:00:00.250Z');
    assert.equal(at('2026-11-21T10:00:00'), '2026-11-21T10:00:00.000Z');
    assert.equal(at('2000-01-01T00:00:00+08:00'), '1999-12-31T16:00:00.000Z');
  });

  test('returns a null device time when dateTime is unparseable', () => {
    const at = (dt: string): Date | null =>
      parseAlertXml(`<EventNotificationAlert><eventType>VMD</eventType><dateTime>${dt}</dateTime></EventNotificationAlert>`).deviceTime;
    for (const bad of ['2026-02-30T10:00:00Z', 'yesterday', '2026-13-01T00:00:00Z', '2026-11-21T25:00:00Z', '0099-01-01T00:00:00Z', '2026-11-21T10:00:00+99:00', '']) {
      assert.equal(at(bad), null, bad);
    }
  });

  test('caps the description at 500 characters and strips NUL characters when free text is huge', () => {
    const long = `a\u0000b${'x'.repeat(5000)}`;
    const a = parseAlertXml(`<EventNotificationAlert><eventType>VMD</eventType><eventDescription>${long}</eventDescription></EventNotificationAlert>`);
    assert.equal(a.description?.length, 500);
    assert.ok(a.description?.startsWith('abxxx'));
  });

  test('reads activePostCount 0 and inactive state when the device reports them', () => {
    const a = parseAlertXml(fixtureText('heartbeat-videoloss.xml'));
    assert.equal(a.state, 'inactive');
    assert.equal(a.activePostCount, 0);
  });

  test('refuses a cut document as truncated even when eventType survived the cut', () => {
    const full = fixtureText('vmd.xml');
    const cut = full.slice(0, full.indexOf('<eventDescription>') + '<eventDescr'.length);
    assertParseError(() => parseAlertXml(cut), 'truncated');
  });

  test('refuses a videoloss heartbeat cut before or inside eventState instead of reading it as active', () => {
    const full = fixtureText('heartbeat-videoloss.xml');
    const at = full.indexOf('<eventState>');
    for (const n of [at, at + '<eventState>ina'.length, full.indexOf('</eventState>') + 4, full.lastIndexOf('</EventNotificationAlert') + 10, full.trimEnd().length - 1]) {
      assertParseError(() => parseAlertXml(full.slice(0, n)), 'truncated');
    }
    assert.equal(parseAlertXml(full.trimEnd()).state, 'inactive');
  });

  test('keeps the active default when a complete document has no eventState', () => {
    const full = fixtureText('vmd.xml').replace(/<eventState>[^<]*<\/eventState>/, '');
    assert.equal(parseAlertXml(full).state, 'active');
  });

  test('reads a document as complete when its root end tag is followed by junk or quoted in a comment before the end', () => {
    const full = fixtureText('vmd.xml').trimEnd();
    assert.equal(parseAlertXml(`${full}\r\n--MIME_bou`).eventType, 'vmd');
    const commented = full.replace('<eventType>', '<!-- </EventNotificationAlert> --><eventType>');
    assertParseError(() => parseAlertXml(commented.slice(0, commented.indexOf('<eventState>'))), 'truncated');
  });

  test('treats a device time pushed past year 9999 by its offset as unknown', () => {
    const full = fixtureText('vmd.xml').replace(/<dateTime>[^<]*<\/dateTime>/, '<dateTime>9999-12-31T23:59:59-23:59</dateTime>');
    assert.equal(parseAlertXml(full).deviceTime, null);
  });
});

describe('parseAlertJson', () => {
  test('parses the flat JSON form when newer firmware posts JSON with a uuid', () => {
    const a = parseAlertJson(fixtureText('vmd-flat.json'));
    assertWellFormed(a);
    assert.equal(a.eventType, 'vmd');
    assert.equal(a.alarmType, 'MOTION');
    assert.equal(a.uuid, '2d6e0c5a-8b7f-4f3e-9a61-0f4b1c9e7d21');
    assert.equal(a.retransmission, false);
    assert.equal(a.channel, 1);
    assert.equal(a.portNo, 80);
    assert.equal(a.deviceTime?.toISOString(), '2026-11-21T02:00:00.000Z');
  });

  test('finds the alert when it is nested under EventNotificationAlert', () => {
    const a = parseAlertJson(fixtureText('vmd-nested.json'));
    assert.equal(a.eventType, 'vmd');
    assert.equal(a.channel, 2);
    assert.equal(a.uuid, null);
    assert.equal(a.channelName, 'Front Door');
  });

  test('reads UUID, the retransmission flag and a nested smart-event region when a LineDetection JSON arrives', () => {
    const a = parseAlertJson(fixtureText('linedetection-retransmission.json'));
    assert.equal(a.alarmType, 'LINE_CROSSING');
    assert.equal(a.uuid, '7f1c0a52-3f3a-4c1e-b5a6-1c8d2e9f0a11');
    assert.equal(a.retransmission, true);
    assert.equal(a.regionId, '1');
    assert.equal(a.protocol, 'HTTPS');
    assert.equal(a.portNo, 443);
    assert.equal(a.deviceTime?.toISOString(), '2026-11-21T02:01:12.345Z');
  });

  test('accepts string-typed numbers, eventUUID and "true" when firmware quotes everything', () => {
    const a = parseAlertJson(fixtureText('fielddetection-retransmission-string.json'));
    assert.equal(a.alarmType, 'INTRUSION');
    assert.equal(a.channel, 33);
    assert.equal(a.activePostCount, 4);
    assert.equal(a.state, 'inactive');
    assert.equal(a.uuid, 'c1d2e3f4-0000-4000-8000-000000000001');
    assert.equal(a.retransmission, true);
    assert.equal(a.regionId, '7');
    assert.equal(a.serialHint, 'DS-7608NXI-K1/8P0820231121CCRRJ99887766WCVU');
  });

  test('tolerates trailing junk when a JSON part is followed by stray bytes', () => {
    const a = parseAlertJson(`${fixtureText('vmd-flat.json')}\r\n--MIME_bou`);
    assert.equal(a.eventType, 'vmd');
  });

  test('throws not-an-object when the JSON top level is an array, number, string, boolean or null', () => {
    for (const body of ['[{"eventType":"VMD"}]', '42', '"VMD"', 'true', 'null', '[]']) {
      assertParseError(() => parseAlertJson(body), 'not-an-object');
      assertParseError(() => parseAlertBody(Buffer.from(body), 'application/json'));
    }
  });

  test('throws malformed-json when the JSON does not parse', () => {
    assertParseError(() => parseAlertJson('{"eventType": "VMD",'), 'malformed-json');
  });
});

describe('parseAlertBody dispatch', () => {
  const xml = fixture('vmd.xml');
  const json = fixture('vmd-flat.json');

  test('parses XML when the content type is application/xml or text/xml', () => {
    assert.equal(parseAlertBody(xml, 'application/xml').eventType, 'vmd');
    assert.equal(parseAlertBody(xml, 'text/xml; charset=UTF-8').eventType, 'vmd');
  });

  test('parses JSON when the content type is application/json', () => {
    assert.equal(parseAlertBody(json, 'application/json; charset=utf-8').uuid, '2d6e0c5a-8b7f-4f3e-9a61-0f4b1c9e7d21');
  });

  test('sniffs the format when the content type is missing or wrong', () => {
    assert.equal(parseAlertBody(xml, undefined).eventType, 'vmd');
    assert.equal(parseAlertBody(xml, 'text/plain').eventType, 'vmd');
    assert.equal(parseAlertBody(xml, 'application/json').eventType, 'vmd');
    assert.equal(parseAlertBody(json, undefined).eventType, 'vmd');
    assert.equal(parseAlertBody(json, 'application/xml').eventType, 'vmd');
    assert.equal(parseAlertBody(json, 'application/x-www-form-urlencoded').eventType, 'vmd');
  });

  test('splits the body tolerantly when the content type is multipart', () => {
    const body = fixture('linedetection-with-jpeg.multipart');
    assert.equal(parseAlertBody(body, 'multipart/form-data; boundary=MIME_boundary').eventType, 'linedetection');
    assert.equal(parseAlertBody(body, undefined).eventType, 'linedetection');
  });

  test('accepts a Uint8Array that is not a Buffer when the caller passes raw bytes', () => {
    const bytes = new Uint8Array(xml);
    assert.equal(parseAlertBody(bytes as Buffer, 'application/xml').eventType, 'vmd');
  });

  test('throws image-only when the body is a bare JPEG', () => {
    assertParseError(() => parseAlertBody(JPEG, 'image/jpeg'), 'image-only');
  });
});

describe('multipart', () => {
  test('chooses the part named after the event type and counts the JPEG when a camera posts linedetection with a picture', () => {
    const parts = splitMultipartTolerant(fixture('linedetection-with-jpeg.multipart'), 'multipart/form-data; boundary=MIME_boundary');
    assert.equal(parts.length, 2);
    assert.equal(parts[0]?.name, 'linedetection');
    assert.equal(parts[0]?.contentType, 'application/xml; charset="UTF-8"');
    assert.equal(parts[1]?.filename, 'linedetectionImage.jpg');
    assert.ok(parts[1]?.data.equals(JPEG), 'image bytes survive byte-exact');
    const { alert, imageCount } = parseAlertParts(parts);
    assert.equal(alert.eventType, 'linedetection');
    assert.equal(alert.regionId, '1');
    assert.equal(imageCount, 1);
  });

  test('sniffs the XML when the alert part has no Content-Type', () => {
    const parts = splitMultipartTolerant(fixture('vmd-part-without-content-type.multipart'), 'multipart/form-data; boundary="boundary"');
    assert.equal(parts[0]?.contentType, null);
    assert.equal(parts[0]?.name, 'VMD');
    const { alert, imageCount } = parseAlertParts(parts);
    assert.equal(alert.eventType, 'vmd');
    assert.equal(alert.channel, 3);
    assert.equal(imageCount, 1);
  });

  test('parses the JSON alert part and counts JPEGs by magic bytes when a picture part lacks a Content-Type', () => {
    const parts = splitMultipartTolerant(fixture('json-alert-part.multipart'), 'multipart/form-data; boundary=e5c1f0a9d2b34a7f');
    assert.equal(parts.length, 3);
    assert.equal(parts[1]?.contentType, null);
    const { alert, imageCount } = parseAlertParts(parts);
    assert.equal(alert.eventType, 'fielddetection');
    assert.equal(alert.uuid, '0b8e9f6a-5d4c-4b3a-9e2f-1a0b9c8d7e6f');
    assert.equal(alert.regionId, '3');
    assert.equal(imageCount, 2);
  });

  test('recovers the parts when the body has stray boundary lines, a headerless part and no final boundary', () => {
    const body = fixture('stray-boundary.multipart');
    for (const ct of ['multipart/form-data; boundary=MIME_boundary', 'multipart/form-data; boundary=wrong', 'multipart/form-data', '']) {
      const parts = splitMultipartTolerant(body, ct);
      assert.equal(parts.length, 2, ct);
      assert.equal(parts[0]?.name, null);
      assert.equal(parts[0]?.contentType, null);
      assert.ok(parts[1]?.data.equals(JPEG), 'image bytes survive byte-exact');
      const { alert, imageCount } = parseAlertParts(parts);
      assert.equal(alert.eventType, 'regionentrance', ct);
      assert.equal(alert.regionId, '2');
      assert.equal(imageCount, 1);
    }
  });

  test('prefers a declared .xml part over an earlier undeclared part when both are present', () => {
    const parts: MultipartPart[] = [
      { name: 'note', filename: null, contentType: 'text/plain', data: Buffer.from('hello') },
      { name: 'picture', filename: 'a.jpg', contentType: 'application/octet-stream', data: JPEG },
      { name: null, filename: 'MoveDetection.xml', contentType: 'application/octet-stream', data: fixture('pir.xml') },
    ];
    const { alert, imageCount } = parseAlertParts(parts);
    assert.equal(alert.alarmType, 'OTHER');
    assert.equal(imageCount, 1);
  });

  test('throws no-alert-part when no part decodes', () => {
    assertParseError(() => parseAlertParts([]), 'no-alert-part');
    assertParseError(() => parseAlertParts([{ name: 'x', filename: null, contentType: 'image/jpeg', data: JPEG }]), 'no-alert-part');
    const err = assertParseError(
      () => parseAlertParts([{ name: 'VMD', filename: null, contentType: 'application/xml', data: fixture('missing-eventtype.xml') }]),
      'no-alert-part',
    );
    assert.match(err.message, /missing-event-type/);
  });

  test('returns the whole body as one headerless part when no boundary can be found', () => {
    const parts = splitMultipartTolerant(fixture('vmd.xml'), 'multipart/form-data');
    assert.equal(parts.length, 1);
    assert.equal(parseAlertParts(parts).alert.eventType, 'vmd');
  });

  test('reads headers without a blank line when a part runs straight into its data', () => {
    const body = Buffer.from(`--b\nContent-Disposition: form-data; name="VMD"\nContent-Type: text/xml\n<EventNotificationAlert><eventType>VMD</eventType></EventNotificationAlert>\n--b--\n`);
    const parts = splitMultipartTolerant(body, 'multipart/form-data; boundary=b');
    assert.equal(parts.length, 1);
    assert.equal(parts[0]?.name, 'VMD');
    assert.equal(parts[0]?.contentType, 'text/xml');
    assert.equal(parseAlertParts(parts).alert.eventType, 'vmd');
  });

  test('stops at 64 parts when a body holds thousands of parts', () => {
    const body = Buffer.from(`${'--b\r\nContent-Type: text/plain\r\n\r\nx\r\n'.repeat(5000)}--b--\r\n`);
    const parts = splitMultipartTolerant(body, 'multipart/form-data; boundary=b');
    assert.equal(parts.length, 64);
  });

  test('returns no parts when the body is empty', () => {
    assert.deepEqual(splitMultipartTolerant(Buffer.alloc(0), 'multipart/form-data; boundary=b'), []);
  });
});

describe('classifyAlert', () => {
  test('returns heartbeat when videoloss is inactive with activePostCount 0 (alertStream style)', () => {
    assert.equal(classifyAlert(parseAlertXml(fixtureText('heartbeat-videoloss.xml'))), 'heartbeat');
  });

  test('returns heartbeat when the event type is heartBeat (subscription style)', () => {
    const a = parseAlertXml(fixtureText('heartbeat-subscription.xml'));
    assert.equal(a.eventType, 'heartbeat');
    assert.equal(classifyAlert(a), 'heartbeat');
    assert.equal(classifyAlert({ ...a, eventType: normaliseEventType('HEARTBEAT') }), 'heartbeat');
  });

  test('returns alarm when videoloss is active even though NVRs repeat it', () => {
    const a = parseAlertXml(fixtureText('videoloss-active.xml'));
    assert.equal(classifyAlert(a), 'alarm');
    assert.equal(classifyAlert({ ...a, activePostCount: 0 }), 'alarm');
  });

  test('returns alarm when videoloss is inactive with a non-zero activePostCount', () => {
    const a = parseAlertXml(fixtureText('heartbeat-videoloss.xml'));
    assert.equal(classifyAlert({ ...a, activePostCount: 3 }), 'alarm');
  });

  test('returns ignored when the device sends its test notification', () => {
    assert.equal(classifyAlert(parseAlertXml(fixtureText('test-notification.xml'))), 'ignored');
  });

  test('returns ignored when the event type is a documented noise type', () => {
    assert.equal(classifyAlert(parseAlertXml(fixtureText('duration.xml'))), 'ignored');
    for (const t of IGNORED_EVENT_TYPES) {
      const a = parseAlertXml(`<EventNotificationAlert><eventType>${t}</eventType></EventNotificationAlert>`);
      assert.equal(classifyAlert(a), 'ignored', t);
    }
  });

  test('returns alarm with OTHER when the event type is unknown', () => {
    const a = parseAlertXml(fixtureText('pir.xml'));
    assert.equal(classifyAlert(a), 'alarm');
    assert.equal(a.alarmType, 'OTHER');
  });
});

describe('broken input', () => {
  test('throws truncated when XML is cut before eventType closes', () => {
    assertParseError(() => parseAlertBody(fixture('truncated.xml'), XML), 'truncated');
    const full = fixtureText('vmd.xml');
    assertParseError(() => parseAlertXml(full.slice(0, full.indexOf('<eventType>') - 3)), 'truncated');
  });

  test('throws missing-event-type when the document has no eventType', () => {
    assertParseError(() => parseAlertBody(fixture('missing-eventtype.xml'), XML), 'missing-event-type');
    assertParseError(() => parseAlertXml('<EventNotificationAlert><eventType>   </eventType></EventNotificationAlert>'), 'missing-event-type');
    assertParseError(() => parseAlertJson('{"eventType": {"nested": true}}'), 'missing-event-type');
    assertParseError(() => parseAlertJson('{"ipAddress": "1.2.3.4"}'), 'missing-event-type');
  });

  test('throws invalid-event-type when eventType is absurdly long', () => {
    assertParseError(() => parseAlertXml(`<a><eventType>${'x'.repeat(65)}</eventType></a>`), 'invalid-event-type');
  });

  test('throws empty when the body is empty or blank', () => {
    assertParseError(() => parseAlertBody(Buffer.alloc(0), XML), 'empty');
    assertParseError(() => parseAlertBody(Buffer.from(' \r\n\t '), XML), 'empty');
    assertParseError(() => parseAlertXml(''), 'empty');
    assertParseError(() => parseAlertJson('\uFEFF'), 'empty');
  });

  test('throws binary when the body is binary garbage', () => {
    const garbage = Buffer.from(Array.from({ length: 1024 }, (_, i) => (i * 37 + 11) % 256));
    assertParseError(() => parseAlertBody(garbage, XML), 'binary');
    assertParseError(() => parseAlertBody(garbage, undefined), 'binary');
    assertParseError(() => parseAlertBody(Buffer.concat([Buffer.from('<EventNotificationAlert>'), garbage]), XML), 'binary');
  });

  test('throws IsapiParseError quickly when given 2 MiB of random bytes', () => {
    const started = performance.now();
    for (const ct of [XML, 'application/json', undefined, 'multipart/form-data; boundary=x']) {
      assertParseError(() => parseAlertBody(randomBytes(2 * 1024 * 1024), ct));
    }
    assert.ok(performance.now() - started < 10_000, 'linear time');
  });

  test('throws IsapiParseError within a few seconds when given 2 MiB of adversarial markup', () => {
    const n = 2 * 1024 * 1024;
    const bodies = [
      '<a>'.repeat(n / 3),
      `<a>${'&'.repeat(n)}</a>`,
      `<EventNotificationAlert ${'b="1" '.repeat(n / 6)}>`,
      `<EventNotificationAlert><eventDescription>${'x '.repeat(n / 2)}`,
      `<${'a'.repeat(n)}`,
      `<a b="${'x'.repeat(n)}`,
      `<!--${'-'.repeat(n)}`,
      '{"a":'.repeat(n / 5),
      '['.repeat(n),
      `--b\r\n${'Content-Type: text/plain\r\n'.repeat(n / 26)}`,
      `--${'b'.repeat(n)}`,
    ];
    const started = performance.now();
    for (const body of bodies) assertParseError(() => parseAlertBody(Buffer.from(body), undefined));
    assert.ok(performance.now() - started < 15_000, `took ${performance.now() - started} ms`);
  });

  test('throws IsapiParseError when a DOCTYPE defines too many entities or expands too far', () => {
    const doc = (count: number, refs: number): string =>
      '<!DOCTYPE a [' + Array.from({ length: count }, (_, i) => `<!ENTITY e${i} "${'z'.repeat(1000)}">`).join('') +
      ']><EventNotificationAlert><eventType>VMD</eventType><eventDescription>' +
      Array.from({ length: refs }, (_, i) => `&e${i % count};`).join('') +
      '</eventDescription></EventNotificationAlert>';
    assertParseError(() => parseAlertXml(doc(40, 40)), 'malformed-xml');
    assertParseError(() => parseAlertXml(doc(4, 400)), 'malformed-xml');
  });

  test('does not expand nested entities when a DOCTYPE attempts a billion-laughs expansion', () => {
    const lol = '<!DOCTYPE a [<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">' +
      Array.from({ length: 10 }, (_, i) => `<!ENTITY e${i} "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">`).join('') +
      ']><EventNotificationAlert><eventType>VMD</eventType><eventDescription>' +
      Array.from({ length: 10 }, (_, i) => `&e${i};`).join('').repeat(50) +
      '</eventDescription></EventNotificationAlert>';
    try {
      const a = parseAlertXml(lol);
      assert.ok(a.description === null || !a.description.includes('a'.repeat(60)));
    } catch (e) {
      assert.ok(e instanceof IsapiParseError);
    }
  });

  test('throws IsapiParseError when XML uses prototype-polluting element names', () => {
    assertParseError(() => parseAlertXml('<EventNotificationAlert><eventType>VMD</eventType><__proto__><x>1</x></__proto__></EventNotificationAlert>'));
  });

  test('reads only own fields when JSON carries a __proto__ key', () => {
    const a = parseAlertJson('{"__proto__": {"eventDescription": "polluted"}, "eventType": "VMD"}');
    assert.equal(a.description, null);
    assert.equal(({} as Record<string, unknown>).eventDescription, undefined);
  });

  test('throws malformed-xml when text has no markup at all', () => {
    assertParseError(() => parseAlertXml('eventType=VMD'), 'malformed-xml');
    assertParseError(() => parseAlertBody(Buffer.from('hello world'), 'text/plain'));
  });

  test('renders a printable truncated preview when logging a rejected body', () => {
    const preview = previewBody(Buffer.concat([Buffer.from('<a>\r\n'), Buffer.from([0, 1, 2]), Buffer.alloc(1000, 0x41)]), 16);
    assert.equal(preview, '<a>\\r\\n...AAAAAAAA… (1008 bytes)');
  });
});

describe('property: parseAlertBody never throws anything but IsapiParseError', () => {
  const CONTENT_TYPES = [
    undefined,
    'application/xml',
    'text/xml; charset=UTF-8',
    'application/json',
    'text/plain',
    'multipart/form-data; boundary=MIME_boundary',
    'multipart/form-data; boundary=boundary',
    'multipart/form-data',
    'image/jpeg',
  ];
  const contentType = fc.constantFrom(...CONTENT_TYPES);
  // Any code points (lone surrogates included), or mostly-ASCII text; built from
  // code points because fc.string's 'binary' unit is slow to generate.
  const codePoints = (max: number) => fc.array(fc.nat({ max }), { maxLength: 400 }).map((cps) => String.fromCodePoint(...cps));
  const anyString = fc.oneof(codePoints(0x10ffff), codePoints(0x7f));

  const CORPUS_FILES = [
    ...EVENT_CORPUS.map(([file]) => file),
    'protocoltype.xml',
    'dynchannelid.xml',
    'unescaped-amp.xml',
    'bom.xml',
    'heartbeat-videoloss.xml',
    'heartbeat-subscription.xml',
    'mixed-case-names.xml',
    'namespace-unterminated.xml',
    'vmd-flat.json',
    'vmd-nested.json',
    'linedetection-retransmission.json',
    'fielddetection-retransmission-string.json',
    'linedetection-with-jpeg.multipart',
    'vmd-part-without-content-type.multipart',
    'json-alert-part.multipart',
    'stray-boundary.multipart',
  ];
  const corpus = CORPUS_FILES.map((f) => fixture(f));

  /** The property: a well-formed alert, or an IsapiParseError. */
  function holds(run: () => IsapiAlert): void {
    let alert: IsapiAlert;
    try {
      alert = run();
    } catch (e) {
      if (e instanceof IsapiParseError) return;
      throw e;
    }
    assertWellFormed(alert);
  }

  test('returns a well-formed alert or throws IsapiParseError when given arbitrary strings', () => {
    fc.assert(
      fc.property(anyString, contentType, (s, ct) => {
        holds(() => parseAlertBody(Buffer.from(s, 'utf8'), ct));
        holds(() => parseAlertXml(s));
        holds(() => parseAlertJson(s));
      }),
      { numRuns: 300 },
    );
  });

  test('returns a well-formed alert or throws IsapiParseError when given arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), contentType, (bytes, ct) => {
        holds(() => parseAlertBody(Buffer.from(bytes), ct));
        const parts = splitMultipartTolerant(Buffer.from(bytes), ct ?? '');
        assert.ok(Array.isArray(parts) && parts.length <= 64);
      }),
      { numRuns: 300 },
    );
  });

  test('returns a well-formed alert or throws IsapiParseError when given XML-ish token soup', () => {
    const token = fc.constantFrom(
      '<EventNotificationAlert>', '</EventNotificationAlert>', '<eventType>', '</eventType>', 'VMD', 'videoloss', '-1',
      '<channelID>', '</channelID>', '33', '<dateTime>', '</dateTime>', '2026-11-21T10:00:00+08:00', '<eventState>', 'inactive',
      '<DetectionRegionList>', '<DetectionRegionEntry>', '<regionID>', '</regionID>', '&', '&amp;', '&#', ';', '<![CDATA[', ']]>',
      '<!--', '-->', '<?xml version="1.0"?>', '<!DOCTYPE a [<!ENTITY x "y">]>', '&x;', '"', '=', ' ', '\r\n', '<', '>', '/',
      'xmlns="http://www.isapi.org/ver20/XMLSchema"', 'hik:', '{', '}', '"eventType":', '"uuid":', ',', '[', ']', 'null', '\u0000', '\uFEFF',
    );
    fc.assert(
      fc.property(fc.array(token, { maxLength: 60 }), contentType, (tokens, ct) => {
        const s = tokens.join('');
        holds(() => parseAlertBody(Buffer.from(s, 'utf8'), ct));
        holds(() => parseAlertXml(s));
      }),
      { numRuns: 300 },
    );
  });

  test('returns a well-formed alert or throws IsapiParseError when corpus documents are truncated and bit-flipped', () => {
    // Per document: keep it whole or cut it anywhere, then overwrite up to 8 random bytes.
    const mutation = fc.nat({ max: corpus.length - 1 }).chain((doc) => {
      const length = (corpus[doc] ?? Buffer.alloc(0)).length;
      return fc.record({
        doc: fc.constant(doc),
        cut: fc.oneof(fc.constant(length), fc.integer({ min: 0, max: length })),
        flips: fc.array(fc.tuple(fc.nat({ max: Math.max(0, length - 1) }), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
        ct: contentType,
      });
    });
    fc.assert(
      fc.property(mutation, ({ doc, cut, flips, ct }) => {
        const original = corpus[doc] ?? Buffer.alloc(0);
        const bytes = Buffer.from(original.subarray(0, cut));
        for (const [where, value] of flips) {
          if (where < bytes.length) bytes[where] = value;
        }
        holds(() => parseAlertBody(bytes, ct));
        holds(() => parseAlertParts(splitMultipartTolerant(bytes, ct ?? '')).alert);
      }),
      { numRuns: 300 },
    );
  });

  test('parses every unmutated corpus document when given its natural content type', () => {
    for (const [i, bytes] of corpus.entries()) {
      const name = CORPUS_FILES[i] ?? '';
      const ct = name.endsWith('.json') ? 'application/json' : name.endsWith('.xml') ? XML : 'multipart/form-data';
      assertWellFormed(parseAlertBody(bytes, ct));
    }
  });
});
