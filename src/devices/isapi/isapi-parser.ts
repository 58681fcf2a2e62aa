/**
 * Transport-free parser and normaliser for Hikvision ISAPI alarm notifications
 * (`EventNotificationAlert`) as devices POST them to an HTTP "alarm host".
 *
 * Error contract: every parse function in this module either returns a fully
 * populated {@link IsapiAlert} or throws an {@link IsapiParseError}; the
 * `reason` field says why (see {@link IsapiParseReason}). Callers answer 400 to
 * any IsapiParseError. Nothing here throws other error types for any input
 * (this is property-tested); nothing here does I/O, logging or storage.
 *
 * Identity: nothing in the body identifies the device. `macAddress`,
 * `serialHint` and `ipAddress` are recorded as hints only; the ingest token in
 * the URL is the identity.
 */
import { XMLParser } from 'fast-xml-parser';
import { alarmTypeFor, type AlarmType } from '../../streams/alarms/alarm-type';

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/** A normalised alarm notification. All strings are trimmed and free of C0 control characters (except tab/newline), so they are safe for Postgres `text`. */
export interface IsapiAlert {
  /** Normalised: trimmed, lower-cased, one trailing `-<digits>` removed (`"VMD-1"` -> `"vmd"`). Never empty, at most 64 characters. */
  eventType: string;
  /** The device's own word, trimmed. */
  rawEventType: string;
  /** From {@link alarmTypeFor}; unknown types are `'OTHER'`. */
  alarmType: AlarmType;
  /** `eventState`; anything other than `inactive` (including missing, in a complete document) is `'active'`. */
  state: 'active' | 'inactive';
  /** channelID, else dynChannelID, else inputIOPortID/dynInputIOPortID for `io`, else 1. Raw value kept: NVR IP channel 33 stays 33; 0 stays 0. */
  channel: number;
  /** Parsed `dateTime`, honouring its UTC offset; a timestamp without offset is read as UTC. `null` when missing, unparseable or outside years 1000..9999 once in UTC. The device clock may be years off: store the receive time too. */
  deviceTime: Date | null;
  /** `activePostCount`; 0 when missing or not a non-negative integer. */
  activePostCount: number;
  /** `eventDescription`, trimmed, at most 500 characters; `null` when missing/empty. */
  description: string | null;
  /** `channelName`, at most 200 characters. */
  channelName: string | null;
  /** First `regionID` inside a `DetectionRegionList` (searched a few levels deep, e.g. under a `"LineDetection"` object in JSON). */
  regionId: string | null;
  /** `macAddress` as sent. Hint only, never identity. */
  macAddress: string | null;
  /** `serialNumber`, `serialNo`, `deviceSerialNo` or `deviceID`, first present. Hint only. */
  serialHint: string | null;
  /** `ipAddress` (else `ipv6Address`) as sent. Recorded, not trusted. */
  ipAddress: string | null;
  /** `protocol`, else `protocolType` (e.g. `HTTP`, `HTTPS`, `EHome`). Informational. */
  protocol: string | null;
  /** `portNo` when 1..65535. Informational. */
  portNo: number | null;
  /** `uuid` / `UUID` / `eventUUID` (JSON firmware; also read from XML if present). Use for de-duplication on (device, uuid). */
  uuid: string | null;
  /** `isDataRetransmission` is `true` or `"true"`. */
  retransmission: boolean;
}

/** `ignored`: the device's test notification and the noise types in {@link IGNORED_EVENT_TYPES}. */
export type AlertKind = 'alarm' | 'heartbeat' | 'ignored';

/**
 * Why a body was rejected. All of them mean "answer 400, store nothing".
 * - `empty`: zero bytes or only whitespace.
 * - `binary`: does not look like text (control bytes / invalid UTF-8).
 * - `image-only`: a bare JPEG without an alert.
 * - `malformed-xml` / `malformed-json`: no tolerant parser could decode it.
 * - `not-an-object`: JSON whose top level is an array, number, string, boolean or null.
 * - `missing-event-type`: decoded, but no alert with a non-empty `eventType`.
 * - `invalid-event-type`: `eventType` longer than 64 characters.
 * - `no-alert-part`: multipart with no part that decodes to an alert.
 * - `truncated`: an XML document whose root element is never closed (cut in transport). A cut
 *   document is never read as an alert: a heartbeat cut before its `inactive` would otherwise
 *   become an alarm.
 */
export type IsapiParseReason =
  | 'empty'
  | 'binary'
  | 'image-only'
  | 'malformed-xml'
  | 'malformed-json'
  | 'not-an-object'
  | 'missing-event-type'
  | 'invalid-event-type'
  | 'no-alert-part'
  | 'truncated';

/**
 * Thrown by every parse function of this module for input that cannot become
 * an {@link IsapiAlert}. The message is `reason` plus a one-line detail of at
 * most 120 characters, which may quote a few characters of the input (parser
 * messages do); for logging the body itself use {@link previewBody}.
 */
export class IsapiParseError extends Error {
  readonly reason: IsapiParseReason;

  constructor(reason: IsapiParseReason, detail?: string, options?: { cause?: unknown }) {
    super(detail ? `${reason}: ${detail}` : reason, options);
    this.name = 'IsapiParseError';
    this.reason = reason;
  }
}

/** One part of a multipart body, as produced by a strict multipart parser or by {@link splitMultipartTolerant}. */
export interface MultipartPart {
  /** `name` from Content-Disposition. */
  name: string | null;
  /** `filename` from Content-Disposition. */
  filename: string | null;
  /** The Content-Type header value as sent (parameters included), or null when the part had none. */
  contentType: string | null;
  data: Buffer;
}

/**
 * Normalised event types that are answered 200 and otherwise dropped:
 * - `test`: the device's "test" notification from the alarm-host settings page.
 * - `duration`: smart-event continuation reports (`DurationList/relationEvent`),
 *   sent every `targetAlarmInterval` seconds while a target stays in a zone. The
 *   smart event itself already raised the alarm; storing these would create an
 *   `OTHER` alarm every few seconds.
 * - `heatmap`, `peoplecounting`: periodic statistics uploads, not alarm conditions.
 */
export const IGNORED_EVENT_TYPES: ReadonlySet<string> = new Set(['test', 'duration', 'heatmap', 'peoplecounting']);

// ---------------------------------------------------------------------------
// Limits (keep every loop bounded and every regex linear)
// ---------------------------------------------------------------------------

const MAX_EVENT_TYPE = 64;
const MAX_DESCRIPTION = 500;
const MAX_CHANNEL_NAME = 200;
const MAX_HINT = 128;
const MAX_INT = 2_147_483_647;
const SEARCH_MAX_DEPTH = 4;
const REGION_MAX_DEPTH = 3;
const SEARCH_MAX_NODES = 2_000;
const SEARCH_MAX_ARRAY_ITEMS = 16;
const MAX_PARTS = 64;
const MAX_BOUNDARY = 200;
const MAX_PART_HEADERS = 32;
const MAX_HEADER_BLOCK = 8 * 1024;
const BINARY_SAMPLE = 4096;
const EAGER_REPAIR_LIMIT = 256 * 1024;

const xmlParser = new XMLParser({
  removeNSPrefix: true,
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  // Numeric character references (&#233;) are only decoded with htmlEntities.
  htmlEntities: true,
  // DOCTYPE-defined entities never occur in real alerts; keep them tightly bounded.
  processEntities: { enabled: true, maxEntityCount: 16, maxEntitySize: 1024, maxExpandedLength: 16 * 1024 },
  maxNestedTags: 64,
});

// ---------------------------------------------------------------------------
// Public functions
// ---------------------------------------------------------------------------

/**
 * Normalises a device event type: trims, lower-cases and removes one trailing
 * `-<digits>` suffix (`"VMD-1"` -> `"vmd"`, `"heartBeat"` -> `"heartbeat"`).
 * A suffix is only removed if something remains (`"-1"` stays `"-1"`).
 */
export function normaliseEventType(raw: string): string {
  const lower = raw.trim().toLowerCase();
  const stripped = lower.replace(/-\d+$/, '').trim();
  return stripped.length > 0 ? stripped : lower;
}

/**
 * Decides what the ingest route does with a parsed alert:
 * - `'heartbeat'`: `heartbeat` (any case; subscription style), or `videoloss`
 *   with state `inactive` and `activePostCount` 0 (alertStream style). Refresh
 *   lastSeenAt, create no alarm. `videoloss` active is never a heartbeat.
 * - `'ignored'`: event types in {@link IGNORED_EVENT_TYPES} (`test`, ...). Answer 200.
 * - `'alarm'`: everything else, unknown types included (alarmType `OTHER`).
 */
export function classifyAlert(a: IsapiAlert): AlertKind {
  if (a.eventType === 'heartbeat') return 'heartbeat';
  if (a.eventType === 'videoloss' && a.state === 'inactive' && a.activePostCount === 0) return 'heartbeat';
  if (IGNORED_EVENT_TYPES.has(a.eventType)) return 'ignored';
  return 'alarm';
}

/**
 * Parses an `EventNotificationAlert` XML document.
 *
 * Tolerates: a UTF-8 BOM and leading junk before the first `<`; any namespace,
 * prefix or none (names are matched case-insensitively after dropping
 * prefixes); unescaped `&` in text (escaped to `&amp;` before parsing; for
 * documents over 256 KiB only on the retry, the parser keeping such an `&`
 * literally anyway); a root other than `EventNotificationAlert`
 * when an element a few levels down holds `eventType` directly; unquoted or
 * unterminated attribute values and a truncated trailing tag (retried once with
 * attributes stripped and the partial tag cut).
 *
 * A document whose root element is never closed was cut in transport and is
 * refused whatever it holds (see {@link rootClosed}); content after the root's
 * end tag is ignored.
 *
 * @throws IsapiParseError `empty`, `binary`, `malformed-xml` (no markup, or the
 *   parser failed even after repair), `truncated` (the root element is not
 *   closed), `missing-event-type`, `invalid-event-type`.
 */
export function parseAlertXml(text: string): IsapiAlert {
  const s = prepareText(text);
  const lt = s.indexOf('<');
  if (lt < 0) throw new IsapiParseError('malformed-xml', 'no markup');
  const markup = lt > 0 ? s.slice(lt) : s;
  // A flat alert ends with its root's end tag (flatAlert checks it), so only the rest needs the scan.
  const flat = flatAlert(markup);
  if (flat) return buildAlert(flat);
  if (!rootClosed(markup)) throw new IsapiParseError('truncated', 'the root element is not closed');
  // Real alerts are a few KiB: repair them up front. For huge bodies the repair
  // would multiply the parser's work (every bare & becomes &amp;), and the
  // parser already keeps an & that starts no known entity, so repair only if
  // the first attempt fails.
  const eager = markup.length <= EAGER_REPAIR_LIMIT;
  const firstAttempt = eager ? repairAmpersands(markup) : markup;
  let doc: unknown;
  try {
    doc = xmlParser.parse(firstAttempt);
  } catch (first) {
    try {
      doc = xmlParser.parse(stripAttributes(cutPartialTag(eager ? firstAttempt : repairAmpersands(markup))));
    } catch {
      throw new IsapiParseError('malformed-xml', errorMessage(first), { cause: first });
    }
  }
  const alert = findAlertObject(doc);
  if (alert === null) throw new IsapiParseError('missing-event-type', 'no EventNotificationAlert or eventType element');
  return buildAlert(alert);
}

/**
 * Parses the JSON form of an alert (newer firmware), flat
 * (`{"eventType":"VMD",...}`) or nested under a top-level key such as
 * `{"EventNotificationAlert":{...}}` (searched a few levels deep,
 * case-insensitively). Numbers and strings are both accepted for numeric
 * fields. Tolerates a BOM and trailing junk after the closing `}`.
 *
 * @throws IsapiParseError `empty`, `binary`, `malformed-json`, `not-an-object`
 *   (top level is an array, number, string, boolean or null),
 *   `missing-event-type`, `invalid-event-type`.
 */
export function parseAlertJson(text: string): IsapiAlert {
  const s = prepareText(text).trim();
  let value: unknown;
  let ok = false;
  try {
    value = JSON.parse(s);
    ok = true;
  } catch (first) {
    const end = s.lastIndexOf('}');
    if (s.startsWith('{') && end > 0 && end < s.length - 1) {
      try {
        value = JSON.parse(s.slice(0, end + 1));
        ok = true;
      } catch {
        // fall through
      }
    }
    if (!ok) throw new IsapiParseError('malformed-json', errorMessage(first), { cause: first });
  }
  if (!isObject(value)) throw new IsapiParseError('not-an-object', `top level is ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
  const alert = findAlertObject(value);
  if (alert === null) throw new IsapiParseError('missing-event-type', 'no object with eventType');
  return buildAlert(alert);
}

/**
 * Parses a whole request body. Dispatches on the media type, but sniffs the
 * bytes when the type is missing or wrong (e.g. `text/plain` carrying XML):
 * the declared kind is tried first, then the sniffed one (`<` XML, `{`/`[`
 * JSON). A multipart type, or a body starting with `--`, goes through
 * {@link splitMultipartTolerant} and {@link parseAlertParts} (the image count
 * is dropped; call those directly if you need it).
 *
 * @param contentType the raw Content-Type header, parameters allowed; may be undefined.
 * @throws IsapiParseError for anything that does not yield an alert; when
 *   several decoders were tried, the most specific reason wins (a decoded
 *   document without eventType beats a syntax error).
 */
export function parseAlertBody(body: Buffer, contentType: string | undefined): IsapiAlert {
  return parseIsapiPost(body, contentType).alert;
}

/**
 * {@link parseAlertBody} with the number of picture parts of a multipart body (0 otherwise):
 * what the alarm host stores. Same dispatch, same errors; bounded and linear in the body size.
 */
export function parseIsapiPost(body: Buffer, contentType: string | undefined): { alert: IsapiAlert; imageCount: number } {
  if (!(body instanceof Uint8Array) || body.length === 0) throw new IsapiParseError('empty', 'no body');
  const buf = asBuffer(body);
  const mime = mediaType(contentType);
  if (mime.startsWith('multipart/') || sniffKind(buf) === 'multipart') {
    return parseAlertParts(splitMultipartTolerant(buf, contentType ?? ''));
  }
  return { alert: parseTextual(buf, mime), imageCount: 0 };
}

/**
 * Picks the alert out of multipart parts and counts the pictures.
 *
 * Image parts (Content-Type `image/*`, or data starting with the JPEG magic
 * `FF D8 FF` whatever the headers say) are counted and never parsed. The other
 * parts are tried in order of likelihood: declared XML/JSON (by Content-Type
 * or a `.xml`/`.json` name or filename), then parts whose bytes sniff as
 * XML/JSON (e.g. a part named after the event type with no Content-Type), then
 * the rest. The first part that decodes wins. At most 64 parts are examined.
 *
 * @throws IsapiParseError `no-alert-part` when no part decodes (the message
 *   carries the most specific reason seen).
 */
export function parseAlertParts(parts: MultipartPart[]): { alert: IsapiAlert; imageCount: number } {
  let imageCount = 0;
  const candidates: Array<{ part: MultipartPart; rank: number; index: number }> = [];
  const limit = Math.min(parts.length, MAX_PARTS);
  for (let i = 0; i < limit; i++) {
    const part = parts[i];
    if (part === undefined || !(part.data instanceof Uint8Array)) continue;
    const ct = (part.contentType ?? '').toLowerCase();
    if (ct.startsWith('image/') || isJpeg(part.data)) {
      imageCount++;
      continue;
    }
    candidates.push({ part, rank: partRank(part), index: i });
  }
  candidates.sort((a, b) => a.rank - b.rank || a.index - b.index);
  const errors: IsapiParseError[] = [];
  for (const { part } of candidates) {
    try {
      return { alert: parseTextual(asBuffer(part.data), mediaType(part.contentType ?? undefined)), imageCount };
    } catch (e) {
      if (!(e instanceof IsapiParseError)) throw e;
      errors.push(e);
    }
  }
  const best = mostSpecific(errors);
  throw new IsapiParseError('no-alert-part', best ? best.message : `${parts.length} part(s), ${imageCount} image(s), none decodes`);
}

/**
 * Fallback multipart splitter for bodies a strict multipart parser rejected.
 *
 * The boundary comes from the Content-Type (`boundary=...`, quoted or not); if
 * that is missing or never occurs in the body, it is taken from the body's
 * first line when that starts with `--`. Tolerates: stray or repeated boundary
 * lines (empty parts are dropped), a missing final boundary (the last part
 * runs to the end), LF instead of CRLF, parts without headers (the data starts
 * at the first line that is not a `Name: value` header), header blocks without
 * the blank line. A body with no recognisable boundary is returned as one
 * headerless part. Never throws; bounded to 64 parts and 8 KiB of headers per
 * part; linear in the body size.
 */
export function splitMultipartTolerant(body: Buffer, contentType: string): MultipartPart[] {
  if (!(body instanceof Uint8Array) || body.length === 0) return [];
  const buf = asBuffer(body);
  let boundary = boundaryFromContentType(typeof contentType === 'string' ? contentType : '');
  if (boundary === null || findDelimiter(buf, Buffer.from(`--${boundary}`, 'latin1'), 0) < 0) {
    boundary = sniffBoundary(buf);
  }
  if (boundary === null) {
    const only = parseSegment(buf);
    return only ? [only] : [];
  }
  const delim = Buffer.from(`--${boundary}`, 'latin1');
  const parts: MultipartPart[] = [];
  let pos = findDelimiter(buf, delim, 0);
  if (pos < 0) {
    const only = parseSegment(buf);
    return only ? [only] : [];
  }
  // Stray boundary lines yield empty segments; cap the iterations, not just the parts.
  for (let rounds = 0; pos >= 0 && parts.length < MAX_PARTS && rounds < MAX_PARTS * 4; rounds++) {
    let start = pos + delim.length;
    if (buf[start] === 0x2d && buf[start + 1] === 0x2d) break; // closing delimiter
    start = skipBoundaryLineEnd(buf, start);
    const next = findDelimiter(buf, delim, start);
    let end = next < 0 ? buf.length : next;
    if (end > start && buf[end - 1] === 0x0a) end--;
    if (end > start && buf[end - 1] === 0x0d) end--;
    const part = parseSegment(buf.subarray(start, end));
    if (part) parts.push(part);
    pos = next;
  }
  return parts;
}

/**
 * A printable, truncated rendering of a rejected body for logs: at most `max`
 * bytes (default 256), non-printable bytes shown as `.`, with the total size
 * appended when truncated.
 */
export function previewBody(body: Uint8Array, max = 256): string {
  const n = Math.min(body.length, Math.max(0, max));
  let out = '';
  for (let i = 0; i < n; i++) {
    const b = body[i] ?? 0;
    out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : b === 0x0a ? '\\n' : b === 0x0d ? '\\r' : '.';
  }
  return body.length > n ? `${out}… (${body.length} bytes)` : out;
}

// ---------------------------------------------------------------------------
// Alert extraction
// ---------------------------------------------------------------------------

type Obj = Record<string, unknown>;
type Fields = Map<string, unknown>;

const XML_DECLARATION = /^<\?xml[^<>]*\?>\s*/y;
const ROOT_OPEN = /<([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)(?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:"[^"<>]*"|'[^'<>]*'))*\s*>/y;
const LEAF = /\s*<([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)>([^<&]*)<\/\1\2>/y;
const MAX_FLAT_FIELDS = 64;

/**
 * The shape nearly every camera sends, read without the XML parser (the ingest's hottest cost):
 * an optional declaration, an `EventNotificationAlert` root (any prefix, attributes ignored), and
 * only leaf children with plain non-empty text, each name once. Returns the root's fields as the
 * parser would (prefixes dropped, values trimmed strings), or null for anything else (nesting,
 * entities, CDATA, comments, empty or repeated elements, trailing content): the parser decides.
 */
function flatAlert(markup: string): Obj | null {
  let at = 0;
  XML_DECLARATION.lastIndex = 0;
  if (XML_DECLARATION.test(markup)) at = XML_DECLARATION.lastIndex;
  ROOT_OPEN.lastIndex = at;
  const root = ROOT_OPEN.exec(markup);
  if (!root || root[2]!.toLowerCase() !== 'eventnotificationalert') return null;
  at = ROOT_OPEN.lastIndex;
  const fields: Obj = {};
  let hasEventType = false;
  for (let n = 0; n <= MAX_FLAT_FIELDS; n++) {
    LEAF.lastIndex = at;
    const leaf = LEAF.exec(markup);
    if (!leaf) break;
    const name = leaf[2]!;
    const value = leaf[3]!.trim();
    if (value.length === 0 || Object.prototype.hasOwnProperty.call(fields, name) || name === '__proto__') return null;
    fields[name] = value;
    if (name.toLowerCase() === 'eventtype') hasEventType = true;
    at = LEAF.lastIndex;
  }
  const rest = markup.slice(at).trim();
  if (!hasEventType || rest !== `</${root[1] ?? ''}${root[2]}>`) return null;
  return fields;
}

const NAME_CHAR = /[\w.:-]/;

/**
 * Whether the document's root element is closed: the first element's end tag (any prefix, any
 * case) at nesting depth zero, or a self-closing root. Comments, CDATA sections, processing
 * instructions and the DOCTYPE are skipped, so an end tag quoted inside them does not count.
 * Linear: every step moves forward. A cut anywhere before the root's `>` of its end tag is "not
 * closed"; the prolog before the root may hold anything.
 */
function rootClosed(markup: string): boolean {
  const n = markup.length;
  let i = 0;
  let root: string | null = null;
  let depth = 0;
  while (i < n) {
    const lt = markup.indexOf('<', i);
    if (lt < 0) return false;
    if (markup.startsWith('<!--', lt)) {
      const end = markup.indexOf('-->', lt + 4);
      if (end < 0) return false;
      i = end + 3;
      continue;
    }
    if (markup.startsWith('<![CDATA[', lt)) {
      const end = markup.indexOf(']]>', lt + 9);
      if (end < 0) return false;
      i = end + 3;
      continue;
    }
    const c = markup[lt + 1];
    if (c === '?' || c === '!') {
      const end = markup.indexOf('>', lt + 2);
      if (end < 0) return false;
      i = end + 1;
      continue;
    }
    const closing = c === '/';
    let j = closing ? lt + 2 : lt + 1;
    const nameStart = j;
    while (j < n && NAME_CHAR.test(markup[j]!)) j++;
    if (j === nameStart) {
      i = lt + 1; // a stray '<' in text
      continue;
    }
    const full = markup.slice(nameStart, j);
    const name = full.slice(full.lastIndexOf(':') + 1).toLowerCase();
    const gt = markup.indexOf('>', j);
    if (gt < 0) return false;
    i = gt + 1;
    if (root === null) {
      if (closing) continue; // an end tag before any element: junk
      root = name;
      if (markup[gt - 1] === '/') return true;
      depth = 1;
      continue;
    }
    if (name !== root) continue;
    if (closing) {
      if (--depth === 0) return true;
    } else if (markup[gt - 1] !== '/') {
      depth++;
    }
  }
  return false;
}

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Breadth-first, bounded: the first object that is (the child) `EventNotificationAlert` or holds `eventType` directly. */
function findAlertObject(root: unknown): Obj | null {
  const queue: Array<{ v: unknown; depth: number }> = [{ v: root, depth: 0 }];
  for (let i = 0; i < queue.length; i++) {
    const entry = queue[i];
    if (entry === undefined) break;
    const { v, depth } = entry;
    if (Array.isArray(v)) {
      if (depth < SEARCH_MAX_DEPTH) enqueueChildren(queue, v.slice(0, SEARCH_MAX_ARRAY_ITEMS), depth + 1);
      continue;
    }
    if (!isObject(v)) continue;
    let hasEventType = false;
    for (const key of Object.keys(v)) {
      const lower = key.toLowerCase();
      if (lower === 'eventnotificationalert') {
        const child = firstOf(v[key]);
        if (isObject(child) && hasEventTypeField(child)) return child;
      } else if (lower === 'eventtype') {
        hasEventType = true;
      }
    }
    if (hasEventType) return v;
    if (depth < SEARCH_MAX_DEPTH) enqueueChildren(queue, Object.values(v), depth + 1);
  }
  return null;
}

/** Queues object/array children, never letting the queue exceed SEARCH_MAX_NODES. */
function enqueueChildren(queue: Array<{ v: unknown; depth: number }>, children: unknown[], depth: number): void {
  for (const child of children) {
    if (queue.length >= SEARCH_MAX_NODES) return;
    if (typeof child === 'object' && child !== null) queue.push({ v: child, depth });
  }
}

function hasEventTypeField(o: Obj): boolean {
  for (const key of Object.keys(o)) if (key.toLowerCase() === 'eventtype') return true;
  return false;
}

function firstOf(v: unknown): unknown {
  for (let i = 0; i < 4 && Array.isArray(v); i++) v = v[0];
  return v;
}

function fieldsOf(o: Obj): Fields {
  const m: Fields = new Map();
  for (const key of Object.keys(o)) {
    const lower = key.toLowerCase();
    if (!m.has(lower)) m.set(lower, o[key]);
  }
  return m;
}

/** A scalar as a string: strings, finite numbers, booleans, the first element of an array, or an element's `#text`. */
function scalar(v: unknown): string | null {
  v = firstOf(v);
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : null;
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (isObject(v)) {
    const t = v['#text'];
    if (typeof t === 'string') return t;
    if (typeof t === 'number' && Number.isFinite(t)) return String(t);
  }
  return null;
}

// C0 controls except tab, LF, CR, plus DEL. Postgres text rejects NUL.
const CONTROL_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/g;

function cap(s: string, max: number): string {
  if (s.length <= max) return s;
  let out = s.slice(0, max);
  const last = out.charCodeAt(out.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) out = out.slice(0, -1);
  return out.trimEnd();
}

/** First non-empty cleaned string among the given (lower-case) field names. */
function text(f: Fields, max: number, ...names: string[]): string | null {
  for (const name of names) {
    const raw = scalar(f.get(name));
    if (raw === null) continue;
    // Pre-cap generously so a huge value costs nothing beyond one slice.
    const cleaned = raw.slice(0, max * 4 + 64).replace(CONTROL_CHARS, '').trim();
    if (cleaned.length > 0) return cap(cleaned, max);
  }
  return null;
}

function int(f: Fields, name: string, min: number, max: number): number | null {
  const raw = scalar(f.get(name));
  if (raw === null) return null;
  const t = raw.trim();
  if (!/^\+?\d{1,10}$/.test(t)) return null;
  const n = Number(t);
  return n >= min && n <= max ? n : null;
}

function buildAlert(o: Obj): IsapiAlert {
  const f = fieldsOf(o);
  const rawScalar = scalar(f.get('eventtype'));
  const rawEventType = rawScalar === null ? '' : rawScalar.slice(0, 1024).replace(CONTROL_CHARS, '').trim();
  if (rawEventType.length === 0) throw new IsapiParseError('missing-event-type', 'eventType is empty');
  const eventType = normaliseEventType(rawEventType);
  // Checked after lower-casing too: a few characters grow when lower-cased.
  if (rawEventType.length > MAX_EVENT_TYPE || eventType.length > MAX_EVENT_TYPE) {
    throw new IsapiParseError('invalid-event-type', `eventType longer than ${MAX_EVENT_TYPE} characters`);
  }

  const stateWord = text(f, 32, 'eventstate');
  const state: IsapiAlert['state'] = stateWord !== null && stateWord.toLowerCase() === 'inactive' ? 'inactive' : 'active';

  let channel = int(f, 'channelid', 0, MAX_INT) ?? int(f, 'dynchannelid', 0, MAX_INT);
  if (channel === null && eventType === 'io') {
    channel = int(f, 'inputioportid', 0, MAX_INT) ?? int(f, 'dyninputioportid', 0, MAX_INT);
  }

  const retransmissionRaw = scalar(f.get('isdataretransmission'));

  return {
    eventType,
    rawEventType,
    alarmType: alarmTypeFor(eventType),
    state,
    channel: channel ?? 1,
    deviceTime: parseDeviceTime(text(f, 64, 'datetime')),
    activePostCount: int(f, 'activepostcount', 0, MAX_INT) ?? 0,
    description: text(f, MAX_DESCRIPTION, 'eventdescription'),
    channelName: text(f, MAX_CHANNEL_NAME, 'channelname'),
    regionId: findRegionId(o),
    macAddress: text(f, 64, 'macaddress'),
    serialHint: text(f, MAX_HINT, 'serialnumber', 'serialno', 'deviceserialno', 'deviceid'),
    ipAddress: text(f, 64, 'ipaddress', 'ipv6address'),
    protocol: text(f, 16, 'protocol', 'protocoltype'),
    portNo: int(f, 'portno', 1, 65535),
    uuid: text(f, MAX_HINT, 'uuid', 'eventuuid'),
    retransmission: retransmissionRaw !== null && retransmissionRaw.trim().toLowerCase() === 'true',
  };
}

/** First regionID under the first DetectionRegionList found (bounded breadth-first search). */
function findRegionId(alert: Obj): string | null {
  const queue: Array<{ v: unknown; depth: number }> = [{ v: alert, depth: 0 }];
  let list: unknown;
  for (let i = 0; i < queue.length; i++) {
    const entry = queue[i];
    if (entry === undefined) break;
    const { v, depth } = entry;
    if (Array.isArray(v)) {
      if (depth < REGION_MAX_DEPTH) enqueueChildren(queue, v.slice(0, SEARCH_MAX_ARRAY_ITEMS), depth + 1);
      continue;
    }
    if (!isObject(v)) continue;
    const keys = Object.keys(v);
    const hit = keys.find((k) => k.toLowerCase() === 'detectionregionlist');
    if (hit !== undefined) {
      list = v[hit];
      break;
    }
    if (depth < REGION_MAX_DEPTH) enqueueChildren(queue, Object.values(v), depth + 1);
  }
  if (list === undefined) return null;
  // Entries: list.DetectionRegionEntry (object or array), or an array of entries.
  const entries: unknown[] = [list];
  for (let i = 0; i < entries.length && i < 64; i++) {
    const v = entries[i];
    if (Array.isArray(v)) {
      entries.push(...v.slice(0, SEARCH_MAX_ARRAY_ITEMS));
      continue;
    }
    if (!isObject(v)) continue;
    const f = fieldsOf(v);
    const id = text(f, 64, 'regionid');
    if (id !== null) return id;
    const nested = f.get('detectionregionentry');
    if (nested !== undefined) entries.push(nested);
  }
  return null;
}

const DATE_TIME = /^(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,9}))?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/** ISO-8601-ish device time: `2026-11-21T10:00:00+08:00`, `...Z`, `+0800`, `+08`, fractions, space separator. No offset: read as UTC. */
function parseDeviceTime(s: string | null): Date | null {
  if (s === null) return null;
  const m = DATE_TIME.exec(s);
  if (m === null) return null;
  const [, ys, mos, ds, hs, mis, ss, frac, zone] = m;
  const year = Number(ys);
  const month = Number(mos);
  const day = Number(ds);
  const hour = Number(hs);
  const minute = Number(mis);
  const second = Math.min(Number(ss ?? '0'), 59); // leap second folds into :59
  if (year < 1000 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return null;
  const millis = frac ? Math.floor(Number(`0.${frac}`) * 1000) : 0;
  let ms = Date.UTC(year, month - 1, day, hour, minute, second, millis);
  const check = new Date(ms);
  if (check.getUTCDate() !== day || check.getUTCMonth() !== month - 1) return null; // e.g. Feb 30
  if (zone && zone.toUpperCase() !== 'Z') {
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
    if (oh > 23 || om > 59) return null;
    ms -= sign * (oh * 60 + om) * 60_000;
  }
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return null;
  // An offset can push a year-9999 time into year 10000, which no timestamp column stores as text.
  const y = d.getUTCFullYear();
  return y >= 1000 && y <= 9999 ? d : null;
}

// ---------------------------------------------------------------------------
// Text preparation and sniffing
// ---------------------------------------------------------------------------

// `\S` is exactly what String.prototype.trim() keeps: tested, not copied, on every body.
const NON_WHITESPACE = /\S/;

/** Strips BOM and trailing NUL padding, rejects empty and binary input. */
function prepareText(input: string): string {
  if (typeof input !== 'string') throw new IsapiParseError('empty', 'not a string');
  let s = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0) end--;
  if (end < s.length) s = s.slice(0, end);
  if (!NON_WHITESPACE.test(s)) throw new IsapiParseError('empty', 'only whitespace');
  if (looksBinary(s)) throw new IsapiParseError('binary', 'control bytes or invalid UTF-8');
  return s;
}

/** More than 10% (and at least 8) control characters or U+FFFD replacement characters in the first 4 KiB. */
function looksBinary(s: string): boolean {
  const n = Math.min(s.length, BINARY_SAMPLE);
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) || c === 0x7f || c === 0xfffd) bad++;
  }
  return bad >= 8 && bad * 10 > n;
}

/** `&` that does not start a character or entity reference becomes `&amp;`. Linear: the look-ahead is bounded. */
function repairAmpersands(s: string): string {
  if (s.indexOf('&') < 0) return s;
  return s.replace(/&(?!#\d{1,8};|#[xX][0-9a-fA-F]{1,8};|[A-Za-z_][A-Za-z0-9._-]{0,40};)/g, '&amp;');
}

/** Cuts a trailing `<...` that never closes (a truncated tag). */
function cutPartialTag(s: string): string {
  const lt = s.lastIndexOf('<');
  return lt > 0 && s.indexOf('>', lt) < 0 ? s.slice(0, lt) : s;
}

/** `<Name attr...>` -> `<Name>` (attributes are ignored anyway; this survives unterminated quotes). */
function stripAttributes(s: string): string {
  return s.replace(/<([A-Za-z_][\w:.-]*)\s[^<>]*?(\/?)>/g, '<$1$2>');
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function decodeBody(buf: Buffer): string {
  if (buf.length >= 2 && buf[0] === 0xff && buf[1] === 0xfe) return buf.subarray(2).toString('utf16le');
  return buf.toString('utf8');
}

type Kind = 'xml' | 'json' | 'multipart' | 'jpeg' | 'unknown';

function sniffKind(buf: Uint8Array): Kind {
  if (isJpeg(buf)) return 'jpeg';
  let i = 0;
  if (buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) i = 3;
  else if (buf[0] === 0xff && buf[1] === 0xfe) return 'unknown';
  const limit = Math.min(buf.length, i + 256);
  while (i < limit) {
    const b = buf[i];
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x00) i++;
    else break;
  }
  const b = buf[i];
  if (b === 0x3c) return 'xml';
  if (b === 0x7b || b === 0x5b) return 'json';
  if (b === 0x2d && buf[i + 1] === 0x2d) return 'multipart';
  return 'unknown';
}

function isJpeg(buf: Uint8Array): boolean {
  return buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff;
}

/** `type/subtype` lower-cased, parameters dropped; '' when absent. */
function mediaType(contentType: string | undefined): string {
  if (typeof contentType !== 'string') return '';
  const semi = contentType.indexOf(';');
  return (semi >= 0 ? contentType.slice(0, semi) : contentType).slice(0, 200).trim().toLowerCase();
}

function declaredKind(mime: string): Kind {
  if (mime.includes('json')) return 'json';
  if (mime.includes('xml')) return 'xml';
  return 'unknown';
}

const SPECIFICITY: Record<IsapiParseReason, number> = {
  'truncated': 7,
  'invalid-event-type': 6,
  'missing-event-type': 5,
  'not-an-object': 4,
  'image-only': 3,
  'binary': 3,
  'malformed-xml': 2,
  'malformed-json': 2,
  'no-alert-part': 1,
  'empty': 0,
};

function mostSpecific(errors: IsapiParseError[]): IsapiParseError | undefined {
  let best: IsapiParseError | undefined;
  for (const e of errors) if (best === undefined || SPECIFICITY[e.reason] > SPECIFICITY[best.reason]) best = e;
  return best;
}

/** A non-multipart body: declared kind first, then the sniffed kind, else XML then JSON. */
function parseTextual(buf: Buffer, mime: string): IsapiAlert {
  if (buf.length === 0) throw new IsapiParseError('empty', 'no body');
  const sniffed = sniffKind(buf);
  if (sniffed === 'jpeg') throw new IsapiParseError('image-only', 'JPEG without an alert');
  const order: Kind[] = [];
  const declared = declaredKind(mime);
  if (declared !== 'unknown') order.push(declared);
  if ((sniffed === 'xml' || sniffed === 'json') && !order.includes(sniffed)) order.push(sniffed);
  if (order.length === 0) order.push('xml', 'json');
  const decoded = decodeBody(buf);
  const errors: IsapiParseError[] = [];
  for (const kind of order) {
    try {
      return kind === 'json' ? parseAlertJson(decoded) : parseAlertXml(decoded);
    } catch (e) {
      if (!(e instanceof IsapiParseError)) throw e;
      // empty/binary are properties of the bytes, not of the decoder: stop here.
      if (e.reason === 'empty' || e.reason === 'binary') throw e;
      errors.push(e);
    }
  }
  throw mostSpecific(errors) ?? new IsapiParseError('malformed-xml', 'undecodable');
}

function errorMessage(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  // Parser messages can quote input: keep them short and on one line.
  return msg.slice(0, 120).replace(/[\u0000-\u001F\u007F]/g, ' ');
}

// ---------------------------------------------------------------------------
// Multipart helpers
// ---------------------------------------------------------------------------

function partRank(part: MultipartPart): number {
  const ct = (part.contentType ?? '').toLowerCase();
  const names = `${part.name ?? ''} ${part.filename ?? ''}`.toLowerCase();
  if (ct.includes('xml') || ct.includes('json') || /\.(?:xml|json)\b/.test(names)) return 0;
  const kind = sniffKind(part.data);
  if (kind === 'xml' || kind === 'json') return 1;
  return 2;
}

function boundaryFromContentType(ct: string): string | null {
  const m = /boundary\s*=\s*(?:"([^"]{1,200})"|([^;,\s]{1,200}))/i.exec(ct.slice(0, 1000));
  if (m === null) return null;
  const b = (m[1] ?? m[2] ?? '').trim();
  return b.length > 0 && b.length <= MAX_BOUNDARY ? b : null;
}

/** The boundary from a first line `--<boundary>` (after leading blank lines). */
function sniffBoundary(buf: Buffer): string | null {
  let i = 0;
  while (i < buf.length && i < 64 && (buf[i] === 0x0d || buf[i] === 0x0a || buf[i] === 0x20 || buf[i] === 0x09)) i++;
  if (buf[i] !== 0x2d || buf[i + 1] !== 0x2d) return null;
  let end = i + 2;
  const limit = Math.min(buf.length, i + 2 + MAX_BOUNDARY);
  while (end < limit && buf[end] !== 0x0d && buf[end] !== 0x0a) end++;
  let b = buf.subarray(i + 2, end).toString('latin1').trim();
  if (b.endsWith('--')) b = b.slice(0, -2);
  return /^[\x21-\x7e][\x20-\x7e]*$/.test(b) ? b.trimEnd() : null;
}

/** Next occurrence of `delim` followed by end of input, CR, LF, space, tab or `-`. */
function findDelimiter(buf: Buffer, delim: Buffer, from: number): number {
  let pos = buf.indexOf(delim, from);
  while (pos >= 0) {
    const after = buf[pos + delim.length];
    if (after === undefined || after === 0x0d || after === 0x0a || after === 0x20 || after === 0x09 || after === 0x2d) return pos;
    pos = buf.indexOf(delim, pos + 1);
  }
  return -1;
}

/** Skips transport padding and the line break after a boundary. */
function skipBoundaryLineEnd(buf: Buffer, i: number): number {
  const limit = Math.min(buf.length, i + 256);
  let j = i;
  while (j < limit && (buf[j] === 0x20 || buf[j] === 0x09)) j++;
  if (buf[j] === 0x0d) j++;
  if (buf[j] === 0x0a) j++;
  return j;
}

const HEADER_LINE = /^([A-Za-z][A-Za-z0-9-]{0,63})[ \t]*:(.*)$/;

/** Headers (if any) and data of one segment; null for an empty/blank segment. */
function parseSegment(seg: Buffer): MultipartPart | null {
  let name: string | null = null;
  let filename: string | null = null;
  let contentType: string | null = null;
  let headers = 0;
  let cursor = 0;
  const headerLimit = Math.min(seg.length, MAX_HEADER_BLOCK);
  if (seg[0] === 0x0a) cursor = 1;
  else if (seg[0] === 0x0d && seg[1] === 0x0a) cursor = 2;
  else {
    while (headers < MAX_PART_HEADERS && cursor < headerLimit) {
      let lf = seg.indexOf(0x0a, cursor);
      if (lf < 0 || lf >= headerLimit) lf = -1;
      const lineEnd = lf < 0 ? Math.min(seg.length, headerLimit) : lf;
      let line = seg.subarray(cursor, lineEnd).toString('latin1');
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line.length === 0) {
        cursor = lf < 0 ? lineEnd : lf + 1;
        break;
      }
      const m = HEADER_LINE.exec(line);
      if (m === null || lf < 0) break; // data starts here (headerless part, or header block without a blank line)
      headers++;
      const key = (m[1] ?? '').toLowerCase();
      const value = (m[2] ?? '').trim();
      if (key === 'content-type') contentType = value.length > 0 ? value : null;
      else if (key === 'content-disposition') {
        const params = dispositionParams(value);
        name = params.get('name') ?? name;
        filename = params.get('filename') ?? filename;
      }
      cursor = lf + 1;
    }
  }
  const data = seg.subarray(cursor);
  if (headers === 0 && isBlank(data)) return null;
  return { name, filename, contentType, data };
}

function dispositionParams(value: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const piece of value.split(';').slice(0, 16)) {
    const eq = piece.indexOf('=');
    if (eq < 0) continue;
    const key = piece.slice(0, eq).trim().toLowerCase();
    let v = piece.slice(eq + 1).trim();
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
    if (key.length > 0 && !out.has(key)) out.set(key, v);
  }
  return out;
}

function isBlank(data: Uint8Array): boolean {
  for (let i = 0; i < data.length; i++) {
    const b = data[i];
    if (b !== 0x20 && b !== 0x09 && b !== 0x0d && b !== 0x0a) return false;
  }
  return true;
}
