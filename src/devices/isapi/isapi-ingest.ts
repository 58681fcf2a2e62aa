import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Db } from '../../db/index';
import { sha256 } from '../../lib/secrets';
import type { AlarmStore, RecordOutcome } from '../../streams/alarms/alarm-store';
import type { DeviceRegistry } from '../registry/device-registry';
import { classifyAlert, IsapiParseError, parseIsapiPost, previewBody, type IsapiAlert } from './isapi-parser';
import { deviceByIngestTokenHash } from '../registry/registry.store';

export interface IsapiIngestOptions {
  db: Db;
  clock: () => Date;
  log: Logger;
  registry: Pick<DeviceRegistry, 'recordIsapiSeen'>;
  alarms: Pick<AlarmStore, 'record'>;
  /** ISAPI_BODY_LIMIT_BYTES: larger bodies get 413. */
  bodyLimit: number;
  /** Where to register the post counter (vigil_isapi_posts_total). */
  metricsRegistry?: Registry;
  /**
   * Every request ends within this many ms of its arrival (default 30,000): past it, a body still
   * being read gets 408, a post still being stored 503 (or 200 when its alarm committed
   * meanwhile), and the connection is closed.
   */
  deadlineMs?: number;
  /** Posts of one device in flight on this node at once (default 8); more get 429 before their body is read. */
  maxInFlightPerDevice?: number;
  /** Body bytes all ISAPI requests in flight on this node may hold (default 64 MiB); beyond it, 503 and the connection is closed. */
  inFlightBodyBytes?: number;
}

/** Ingest tokens are 32 random bytes in base64url; anything far from that shape cannot be one. */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{16,128}$/;
const TOKEN_CACHE_TTL_MS = 60_000;
const TOKEN_CACHE_MAX = 10_000;

const OK_BODY =
  '<?xml version="1.0" encoding="UTF-8"?>\n<ResponseStatus version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema"><requestURL></requestURL><statusCode>1</statusCode><statusString>OK</statusString><subStatusCode>ok</subStatusCode></ResponseStatus>\n';

class BodyTooLarge extends Error {}
/** The node's in-flight body budget is spent: 503, the device retries. */
class Overloaded extends Error {}
/** The body could not be read (the client went away or sent a broken chunked body). */
class Unreadable extends Error {
  readonly statusCode = 400;
}

/** One ISAPI request's bookkeeping, from its onRequest hook until its response closes. */
interface IsapiRequestState {
  deviceId: string;
  phase: 'reading' | 'handling';
  /** Body bytes this request holds, counted against the node's budget. */
  bytes: number;
  /** What the alarm store answered, as soon as it did: the deadline answers from it. */
  stored: { outcome: RecordOutcome } | null;
  /** The answer once it is known while a side update (liveness) still runs: the deadline gives it. */
  decided: 'ok' | 'bad-request' | null;
  /** Set once the deadline (or the response's end) settled the request: nothing else may answer. */
  over: boolean;
  /** The body being read, until it is whole or refused: `stop()` stops reading and drops what was read. */
  reader?: BodyReader;
}

/** Body bytes all ISAPI requests in flight on this node hold, against their budget. */
interface BodyBudget {
  held: number;
  readonly max: number;
}

/**
 * Reads one request's body whole, counting every chunk against the body limit and the node's
 * budget (`st.bytes` is what the request holds; its close hook gives it back). A class rather
 * than closures: the hot path then names no functions per request.
 */
class BodyReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private readonly onData = this.data.bind(this);
  private readonly onEnd = this.end.bind(this);
  private readonly onError = this.error.bind(this);

  constructor(
    private readonly st: IsapiRequestState,
    private readonly payload: NodeJS.ReadableStream,
    /** Content-Length, when the request declared one. */
    private readonly declared: number | null,
    private readonly limit: number,
    private readonly budget: BodyBudget,
    private readonly done: (err: Error | null, body?: Buffer) => void,
  ) {}

  start(): void {
    this.st.reader = this;
    this.payload.on('data', this.onData);
    this.payload.on('end', this.onEnd);
    this.payload.on('error', this.onError);
    this.payload.resume();
  }

  /** Stops reading and drops what was read; nothing is answered. */
  stop(): void {
    this.payload.removeListener('data', this.onData);
    this.payload.removeListener('end', this.onEnd);
    this.payload.removeListener('error', this.onError);
    if (this.st.reader === this) this.st.reader = undefined;
    this.chunks = [];
  }

  private settle(err: Error | null, body?: Buffer): void {
    this.stop();
    if (!this.st.over) this.done(err, body);
  }

  private data(chunk: Buffer): void {
    this.size += chunk.length;
    this.st.bytes += chunk.length;
    this.budget.held += chunk.length;
    if (this.size > this.limit) return this.settle(new BodyTooLarge());
    if (this.budget.held > this.budget.max) return this.settle(new Overloaded());
    this.chunks.push(chunk);
  }

  private end(): void {
    if (this.declared !== null && this.size !== this.declared) return this.settle(new Unreadable('body length differs from Content-Length'));
    const body = Buffer.concat(this.chunks, this.size);
    this.settle(null, body);
  }

  private error(err: Error): void {
    this.settle(new Unreadable('body could not be read', { cause: err }));
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    isapi?: IsapiRequestState;
  }
}

/** Converts a parsed alert into the store's post. Identity is the ingest token's device; body hints are details only. */
function toPost(a: IsapiAlert, imageCount: number) {
  return {
    source: 'isapi' as const,
    eventType: a.eventType,
    rawType: a.rawEventType,
    alarmType: a.alarmType,
    state: a.state,
    channel: a.channel,
    regionId: a.regionId,
    deviceTime: a.deviceTime,
    activePostCount: a.activePostCount,
    description: a.description,
    channelName: a.channelName,
    identity: a.uuid ? `u:${a.uuid}` : null,
    retransmission: a.retransmission,
    details: {
      macAddress: a.macAddress,
      serialHint: a.serialHint,
      ipAddress: a.ipAddress,
      protocol: a.protocol,
      portNo: a.portNo,
      uuid: a.uuid,
      ...(imageCount ? { imageCount } : {}),
    },
  };
}

/**
 * The ISAPI HTTP alarm host: `POST /isapi/events/:token` as Hikvision firmware sends it
 * (DEVICES.md section 2), registered as an encapsulated Fastify plugin with its own body reader.
 *
 * Every body, multipart included, is read whole into memory (under the body limit) and parsed
 * from there by the bounded, never-throwing parser of isapi-parser.ts: no streaming multipart
 * reader sits between the socket and the answer, so no body shape can leave a request waiting
 * (busboy, under @fastify/multipart, never finished a part without Content-Disposition above its
 * 16 KiB high-water mark, holding the connection and the body until the client left).
 *
 * Answers: 404 (the same bytes for an unknown token, a malformed one and any other path under
 * /isapi/) before the body is read; 429 when the device already has `maxInFlightPerDevice` posts
 * in flight; 413 over the body limit; 503 when the node's in-flight body budget is spent; 400 for
 * a body no tolerant parser can decode, a cut document, or one without eventType (logged
 * truncated, nothing stored, the device still marked seen); 200 for alarms once they are
 * committed, and for heartbeats, the test notification and ignored types; 503 when the database
 * cannot store the alarm (the device retries; a retry of a post that did commit is recognised by
 * the store). The answer for an alarm comes from the alarm's own commit: the liveness write beside
 * it never turns a stored alarm into an error. No request outlives `deadlineMs`.
 */
export function isapiIngest(opts: IsapiIngestOptions) {
  const log = opts.log.child({ component: 'isapi' });
  const deadlineMs = opts.deadlineMs ?? 30_000;
  const maxPerDevice = opts.maxInFlightPerDevice ?? 8;
  const budgetBytes = opts.inFlightBodyBytes ?? 64 * 1024 * 1024;
  const posts = opts.metricsRegistry
    ? new Counter({ name: 'vigil_isapi_posts_total', help: 'ISAPI alarm-host posts by outcome', labelNames: ['outcome'] as const, registers: [opts.metricsRegistry] })
    : undefined;
  type Outcome = RecordOutcome | 'heartbeat' | 'ignored' | 'bad-request' | 'too-large' | 'unavailable' | 'timeout' | 'too-many' | 'overloaded';
  // One labelled child per outcome, looked up once: every post counts.
  const counters = new Map<Outcome, { inc(): void }>();
  const count = (outcome: Outcome) => {
    if (!posts) return;
    let c = counters.get(outcome);
    if (!c) counters.set(outcome, (c = posts.labels({ outcome })));
    c.inc();
  };

  const tokenCache = new Map<string, { deviceId: string; at: number }>();
  async function deviceForToken(token: string): Promise<string | null> {
    if (!TOKEN_SHAPE.test(token)) return null;
    const hash = sha256(token);
    const hit = tokenCache.get(hash);
    if (hit && Date.now() - hit.at < TOKEN_CACHE_TTL_MS) return hit.deviceId;
    const row = await deviceByIngestTokenHash(opts.db, hash);
    if (!row) return null;
    if (tokenCache.size >= TOKEN_CACHE_MAX) tokenCache.clear();
    tokenCache.set(hash, { deviceId: row.id, at: Date.now() });
    return row.id;
  }

  // One warning per device per 10 s: a broken camera posting twice a second must not flood the log.
  const lastWarned = new Map<string, number>();
  function warnUndecodable(deviceId: string, err: IsapiParseError, contentType: string | undefined, body: Buffer) {
    const now = Date.now();
    if (now - (lastWarned.get(deviceId) ?? 0) < 10_000) return;
    if (lastWarned.size > 10_000) lastWarned.clear();
    lastWarned.set(deviceId, now);
    log.warn({ deviceId, reason: err.reason, detail: err.message.slice(0, 200), contentType: contentType?.slice(0, 100), bytes: body.length, preview: previewBody(body, 256) }, 'undecodable ISAPI post');
  }

  /** Liveness as a side update: its failure is logged, never the post's answer. */
  async function markSeen(deviceId: string, heartbeat: boolean): Promise<void> {
    try {
      await opts.registry.recordIsapiSeen(deviceId, heartbeat);
    } catch (err) {
      log.warn({ err, deviceId }, 'could not record that an ISAPI device was seen');
    }
  }

  const inFlight = new Map<string, number>();
  const budget: BodyBudget = { held: 0, max: budgetBytes };

  const text = (reply: FastifyReply, code: number, body: string) => reply.code(code).type('text/plain; charset=utf-8').send(body);
  const notFound = (reply: FastifyReply) => text(reply, 404, 'Not Found\n');
  const ok = (reply: FastifyReply) => reply.code(200).type('application/xml; charset=utf-8').send(OK_BODY);
  /** Answers and hangs up: used when the rest of the body will not be read. */
  const refuse = (reply: FastifyReply, code: number, body: string) => {
    reply.header('connection', 'close');
    if (code === 503 || code === 429) reply.header('retry-after', '5');
    return text(reply, code, body);
  };

  /** The backstop: whatever the request is waiting for, it ends now. */
  function onDeadline(request: FastifyRequest, reply: FastifyReply) {
    const st = request.isapi;
    if (!st || st.over || reply.sent) return;
    st.over = true;
    st.reader?.stop();
    count('timeout');
    log.warn({ deviceId: st.deviceId, phase: st.phase, stored: st.stored?.outcome ?? null, deadlineMs }, 'ISAPI request deadline reached');
    if (st.stored || st.decided === 'ok') ok(reply);
    else if (st.decided === 'bad-request') text(reply, 400, 'Bad Request\n');
    else if (st.phase === 'reading') refuse(reply, 408, 'Request Timeout\n');
    else refuse(reply, 503, 'Service Unavailable\n');
    // The client may still be sending: once the answer is out, drop the connection.
    reply.raw.once('finish', () => request.raw.destroy());
  }

  /** Reads the whole body into memory, counting it against the body limit and the node's budget. */
  function readBody(request: FastifyRequest, payload: NodeJS.ReadableStream, done: (err: Error | null, body?: Buffer) => void) {
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > opts.bodyLimit) return done(new BodyTooLarge());
    if (Number.isFinite(declared) && budget.held + declared > budget.max) return done(new Overloaded());
    new BodyReader(request.isapi!, payload, Number.isFinite(declared) ? declared : null, opts.bodyLimit, budget, done).start();
  }

  return async function plugin(app: FastifyInstance) {
    // No per-request child logger (a pino child per post costs more than the door's own bookkeeping):
    // the door logs through `log`, each line naming its device and, for failures, the request id.
    app.setChildLoggerFactory((logger) => logger);
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (request, payload, done) => readBody(request, payload, done as (err: Error | null, body?: Buffer) => void));

    app.setErrorHandler((error: { code?: string; statusCode?: number }, request, reply) => {
      if (error instanceof BodyTooLarge || error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        count('too-large');
        // The rest of the body is not read: the connection cannot carry another request.
        return refuse(reply, 413, 'Payload Too Large\n');
      }
      if (error instanceof Overloaded) {
        count('overloaded');
        log.warn({ deviceId: request.isapi?.deviceId, heldBytes: budget.held, budgetBytes }, 'ISAPI in-flight body budget spent');
        return refuse(reply, 503, 'Service Unavailable\n');
      }
      if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
        count('bad-request');
        return text(reply, error.statusCode, 'Bad Request\n');
      }
      log.error({ err: error, reqId: request.id, deviceId: request.isapi?.deviceId }, 'ISAPI ingest failed');
      return text(reply, 500, 'Internal Server Error\n');
    });

    // The token is checked before the body is read: unknown tokens cost no parsing.
    app.addHook('onRequest', async (request, reply) => {
      const token = (request.params as { token?: string } | undefined)?.token;
      let deviceId: string | null = null;
      if (typeof token === 'string' && request.method === 'POST') {
        try {
          deviceId = await deviceForToken(token);
        } catch (err) {
          log.error({ err }, 'could not look up an ISAPI ingest token');
          count('unavailable');
          return refuse(reply, 503, 'Service Unavailable\n');
        }
      }
      if (!deviceId) return notFound(reply);
      const n = inFlight.get(deviceId) ?? 0;
      if (n >= maxPerDevice) {
        count('too-many');
        return refuse(reply, 429, 'Too Many Requests\n');
      }
      inFlight.set(deviceId, n + 1);
      const st: IsapiRequestState = { deviceId, phase: 'reading', bytes: 0, stored: null, decided: null, over: false };
      request.isapi = st;
      const timer = setTimeout(() => onDeadline(request, reply), deadlineMs);
      timer.unref();
      // 'close' comes once per response, answered or not (the client may have gone away).
      reply.raw.once('close', () => {
        clearTimeout(timer);
        st.over = true;
        st.reader?.stop();
        budget.held -= st.bytes;
        st.bytes = 0;
        const left = (inFlight.get(deviceId!) ?? 1) - 1;
        if (left > 0) inFlight.set(deviceId!, left);
        else inFlight.delete(deviceId!);
      });
    });

    app.post('/isapi/events/:token', async (request, reply) => {
      const st = request.isapi!;
      st.phase = 'handling';
      const { deviceId } = st;
      const contentType = request.headers['content-type'];
      const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      let alert: IsapiAlert;
      let imageCount: number;
      try {
        ({ alert, imageCount } = parseIsapiPost(raw, contentType));
      } catch (e) {
        if (!(e instanceof IsapiParseError)) throw e;
        count('bad-request');
        warnUndecodable(deviceId, e, contentType, raw);
        // The device is alive, whatever it sent.
        st.decided = 'bad-request';
        await markSeen(deviceId, false);
        if (!st.over) text(reply, 400, 'Bad Request\n');
        return reply;
      }

      const kind = classifyAlert(alert);
      if (kind === 'alarm') {
        // The alarm's group commit and the liveness write run side by side; only the first decides the answer.
        const seen = markSeen(deviceId, false);
        try {
          st.stored = await opts.alarms.record(deviceId, toPost(alert, imageCount));
        } catch (err) {
          count('unavailable');
          log.error({ err, deviceId }, 'could not store an ISAPI alarm');
          if (!st.over) refuse(reply, 503, 'Service Unavailable\n');
          return reply;
        }
        count(st.stored.outcome);
        await seen;
      } else if (kind === 'heartbeat') {
        // A heartbeat's one write is its liveness: if that fails, the device should send it again.
        try {
          await opts.registry.recordIsapiSeen(deviceId, true);
        } catch (err) {
          count('unavailable');
          log.error({ err, deviceId }, 'could not record an ISAPI heartbeat');
          if (!st.over) refuse(reply, 503, 'Service Unavailable\n');
          return reply;
        }
        count(kind);
      } else {
        st.decided = 'ok';
        await markSeen(deviceId, false);
        count(kind);
      }
      if (!st.over) ok(reply);
      return reply;
    });

    // Every other path or method under /isapi/ looks exactly like an unknown token.
    app.all('/isapi/*', async (_request, reply) => notFound(reply));
  };
}
