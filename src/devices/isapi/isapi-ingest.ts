import { once } from 'node:events';
import fastifyMultipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Db } from '../../db/index';
import { sha256 } from '../../lib/secrets';
import type { AlarmStore, RecordOutcome } from '../../streams/alarms/alarm-store';
import type { DeviceRegistry } from '../registry/device-registry';
import {
  classifyAlert,
  IsapiParseError,
  parseAlertBody,
  parseAlertParts,
  previewBody,
  splitMultipartTolerant,
  type IsapiAlert,
  type MultipartPart,
} from './isapi-parser';
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
}

/** Ingest tokens are 32 random bytes in base64url; anything far from that shape cannot be one. */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{16,128}$/;
const MAX_PARTS = 64;
const TOKEN_CACHE_TTL_MS = 60_000;
const TOKEN_CACHE_MAX = 10_000;

const OK_BODY =
  '<?xml version="1.0" encoding="UTF-8"?>\n<ResponseStatus version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema"><requestURL></requestURL><statusCode>1</statusCode><statusString>OK</statusString><subStatusCode>ok</subStatusCode></ResponseStatus>\n';

class BodyTooLarge extends Error {}

declare module 'fastify' {
  interface FastifyRequest {
    isapiDeviceId?: string;
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
 * (DEVICES.md section 2), registered as an encapsulated Fastify plugin with its own body limit
 * and content-type parsers (raw bytes for everything, @fastify/multipart for form-data).
 *
 * Answers: 404 (the same bytes for an unknown token, a malformed one and any other path under
 * /isapi/) before the body is read; 413 over the body limit; 400 for a body no tolerant parser
 * can decode or without eventType (logged truncated, nothing stored); 200 for alarms once they
 * are committed, and for heartbeats, the test notification and ignored types; 503 when the
 * database cannot store the alarm (the device retries).
 */
export function isapiIngest(opts: IsapiIngestOptions) {
  const log = opts.log.child({ component: 'isapi' });
  const posts = opts.metricsRegistry
    ? new Counter({ name: 'vigil_isapi_posts_total', help: 'ISAPI alarm-host posts by outcome', labelNames: ['outcome'] as const, registers: [opts.metricsRegistry] })
    : undefined;
  const count = (outcome: RecordOutcome | 'heartbeat' | 'ignored' | 'bad-request' | 'too-large' | 'unavailable') => posts?.inc({ outcome });

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

  const notFound = (reply: FastifyReply) => reply.code(404).type('text/plain; charset=utf-8').send('Not Found\n');

  /**
   * Reads a multipart body with @fastify/multipart while keeping a copy of the raw bytes for the
   * tolerant fallback. The copy enforces the body limit (chunked bodies declare no length): over
   * it, reading stops at once and the caller answers 413 and closes the connection.
   */
  async function readMultipart(request: FastifyRequest): Promise<{ parts: MultipartPart[] | null; raw: Buffer }> {
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > opts.bodyLimit) throw new BodyTooLarge();
    const stream = request.raw;
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    let signalTooLarge: (value: 'too-large') => void = () => {};
    const overLimit = new Promise<'too-large'>((resolve) => {
      signalTooLarge = resolve;
    });
    const onData = (chunk: Buffer) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size > opts.bodyLimit) {
        tooLarge = true;
        chunks.length = 0;
        stream.pause();
        signalTooLarge('too-large');
        return;
      }
      chunks.push(chunk);
    };
    stream.on('data', onData);
    try {
      const strict = (async () => {
        const parts: MultipartPart[] = [];
        for await (const part of request.parts({ limits: { parts: MAX_PARTS, files: MAX_PARTS, fields: MAX_PARTS, fileSize: opts.bodyLimit, fieldSize: opts.bodyLimit, headerPairs: 32 } })) {
          if (part.type === 'file') {
            parts.push({ name: part.fieldname, filename: part.filename || null, contentType: part.mimetype || null, data: await part.toBuffer() });
          } else {
            const value = typeof part.value === 'string' ? part.value : JSON.stringify(part.value ?? '');
            parts.push({ name: part.fieldname, filename: null, contentType: part.mimetype || null, data: Buffer.from(value, 'utf8') });
          }
        }
        return parts;
      })().catch(() => null); // the strict parser gave up: the tolerant splitter gets the raw bytes
      const parts = await Promise.race([strict, overLimit]);
      if (parts === 'too-large') throw new BodyTooLarge();
      // The strict parser may stop early; the fallback needs the whole body.
      if (!stream.readableEnded && !stream.destroyed) {
        stream.resume();
        const end = await Promise.race([once(stream, 'end').then(() => 'end' as const), once(stream, 'close').then(() => 'end' as const), overLimit]).catch(() => 'end' as const);
        if (end === 'too-large') throw new BodyTooLarge();
      }
      return { parts, raw: Buffer.concat(chunks) };
    } finally {
      stream.off('data', onData);
    }
  }

  return async function plugin(app: FastifyInstance) {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: opts.bodyLimit }, (_req, body, done) => done(null, body));
    await app.register(fastifyMultipart, { throwFileSizeLimit: true });

    app.setErrorHandler((error: { code?: string; statusCode?: number }, request, reply) => {
      if (error instanceof BodyTooLarge || error.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || error.code === 'FST_REQ_FILE_TOO_LARGE') {
        count('too-large');
        // The rest of the body is not read: the connection cannot carry another request.
        return reply.code(413).header('connection', 'close').type('text/plain; charset=utf-8').send('Payload Too Large\n');
      }
      if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
        count('bad-request');
        return reply.code(error.statusCode).type('text/plain; charset=utf-8').send('Bad Request\n');
      }
      request.log.error({ err: error }, 'ISAPI ingest failed');
      return reply.code(500).type('text/plain; charset=utf-8').send('Internal Server Error\n');
    });

    // The token is checked before the body is read: unknown tokens cost no parsing.
    app.addHook('onRequest', async (request, reply) => {
      const token = (request.params as { token?: string } | undefined)?.token;
      const deviceId = typeof token === 'string' && request.method === 'POST' ? await deviceForToken(token) : null;
      if (!deviceId) return notFound(reply);
      request.isapiDeviceId = deviceId;
    });

    app.post('/isapi/events/:token', { bodyLimit: opts.bodyLimit }, async (request, reply) => {
      const deviceId = request.isapiDeviceId!;
      const contentType = request.headers['content-type'];
      let alert: IsapiAlert;
      let imageCount = 0;
      let raw: Buffer = Buffer.alloc(0);
      try {
        if (request.isMultipart()) {
          const read = await readMultipart(request);
          raw = read.raw;
          let strict: { alert: IsapiAlert; imageCount: number } | null = null;
          if (read.parts && read.parts.length > 0) {
            try {
              strict = parseAlertParts(read.parts);
            } catch (e) {
              if (!(e instanceof IsapiParseError)) throw e;
            }
          }
          ({ alert, imageCount } = strict ?? parseAlertParts(splitMultipartTolerant(raw, contentType ?? '')));
        } else {
          raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
          alert = parseAlertBody(raw, contentType);
        }
      } catch (e) {
        if (e instanceof IsapiParseError) {
          count('bad-request');
          warnUndecodable(deviceId, e, contentType, raw);
          return reply.code(400).type('text/plain; charset=utf-8').send('Bad Request\n');
        }
        throw e;
      }

      const kind = classifyAlert(alert);
      try {
        // Independent writes: the alarm's group commit and the liveness touch run side by side.
        const seen = opts.registry.recordIsapiSeen(deviceId, kind === 'heartbeat');
        if (kind === 'alarm') {
          const [{ outcome }] = await Promise.all([opts.alarms.record(deviceId, toPost(alert, imageCount)), seen]);
          count(outcome);
        } else {
          await seen;
          count(kind);
        }
      } catch (err) {
        count('unavailable');
        log.error({ err, deviceId }, 'could not store an ISAPI post');
        return reply.code(503).header('retry-after', '5').type('text/plain; charset=utf-8').send('Service Unavailable\n');
      }
      return reply.code(200).type('application/xml; charset=utf-8').send(OK_BODY);
    });

    // Every other path or method under /isapi/ looks exactly like an unknown token.
    app.all('/isapi/*', async (_request, reply) => notFound(reply));
  };
}
