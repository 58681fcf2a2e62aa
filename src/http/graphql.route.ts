// POST/GET /graphql: graphql-http's GraphQL-over-HTTP handler (accept negotiation, response media
// types) around the one operation pipeline (src/graphql/pipeline.ts). This module adds what is
// HTTP's own: rate limits, the CSRF preflight rule and request-shape checks (Apollo's rules and
// wording, kept from before), the bounded wait, metrics, and the request id in every error.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { GraphQLError, type ExecutionResult, type GraphQLFormattedError, type GraphQLSchema } from 'graphql';
import { createHandler, type Request as HttpRequest, type RequestParams, type Response as HttpResponse } from 'graphql-http';
import type { Logger } from 'pino';
import { formatGraphqlError, httpStatusOf } from '../graphql/errors';
import type { OperationPipeline } from '../graphql/pipeline';
import type { LimiterFactory } from '../lib/rate-limit';
import { sha256 } from '../lib/secrets';
import { authorizationFromHeaders, type ContextBuilder, type GraphqlContext } from '../schema/context';
import { ErrorCode } from '../schema/error-code';
import type { Metrics } from './metrics';

export interface GraphqlRouteOptions {
  schema: GraphQLSchema;
  pipeline: OperationPipeline;
  contexts: ContextBuilder;
  limiters: LimiterFactory;
  metrics: Metrics;
  log: Logger;
  production: boolean;
  limits: { httpPerIpPerMin: number; httpPerTokenPerMin: number; operationTimeoutMs: number };
}

/** What one request carries through graphql-http's hooks. */
interface RouteState {
  request: FastifyRequest;
  label: string;
  failed: boolean;
}

/** Content types a browser may send without a preflight (Apollo's CSRF rule). */
const SIMPLE_CONTENT_TYPES = new Set(['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain']);
const PREFLIGHT_HEADERS = ['x-apollo-operation-name', 'apollo-require-preflight'];
const CSRF_MESSAGE =
  `This operation has been blocked as a potential Cross-Site Request Forgery (CSRF). Please either specify a 'content-type' header ` +
  `(with a type that is not one of ${[...SIMPLE_CONTENT_TYPES].join(', ')}) or provide a non-empty value for one of the following headers: ${PREFLIGHT_HEADERS.join(', ')}\n`;

const header = (request: FastifyRequest, name: string) => {
  const v = request.headers[name];
  return typeof v === 'string' ? v : undefined;
};

/** A simple request (one a page on another site can send) must carry a header that forces a preflight. */
function csrfSafe(request: FastifyRequest): boolean {
  const contentType = header(request, 'content-type');
  if (contentType !== undefined && !SIMPLE_CONTENT_TYPES.has(contentType.split(';')[0]!.trim().toLowerCase())) return true;
  return PREFLIGHT_HEADERS.some((h) => (header(request, h) ?? '').length > 0);
}

/** The response media type graphql-http would pick for this request's accept header. */
function mediaTypeOf(request: FastifyRequest): string {
  for (const accept of (header(request, 'accept') ?? '*/*').replace(/\s/g, '').toLowerCase().split(',')) {
    const type = accept.split(';')[0];
    if (type === 'application/graphql-response+json') return type;
    if (type === 'application/json' || type === 'application/*' || type === '*/*') return 'application/json';
  }
  return 'application/json';
}

function errorBody(request: FastifyRequest, errors: readonly GraphQLFormattedError[], status: number, headers: Record<string, string> = {}): HttpResponse {
  return [JSON.stringify({ errors }), { status, statusText: '', headers: { 'content-type': `${mediaTypeOf(request)}; charset=utf-8`, ...headers } }];
}

const isAsyncIterable = (value: unknown): value is AsyncIterable<unknown> => typeof value === 'object' && value !== null && Symbol.asyncIterator in value;

/** One refusal made here (not by the pipeline), with the contract code and the request id. */
export function refusalBody(requestId: string, code: ErrorCode, message: string, extra: Record<string, unknown> = {}) {
  return { errors: [{ message, extensions: { code, requestId, ...extra } }] };
}

/** Request parameters from the query string (GET) or the JSON body (POST), Apollo's checks and wording. */
function paramsOf(request: FastifyRequest): RequestParams | string {
  if (request.method === 'GET') {
    const q = request.query as Record<string, string | string[] | undefined>;
    const params: Record<string, unknown> = {};
    for (const name of ['query', 'operationName', 'variables', 'extensions'] as const) {
      const value = q[name];
      if (Array.isArray(value)) return `The '${name}' search parameter may only be specified once.`;
      if (value === undefined) continue;
      if (name === 'variables' || name === 'extensions') {
        try {
          params[name] = JSON.parse(value);
        } catch {
          return `The ${name} search parameter contains invalid JSON.`;
        }
        if (typeof params[name] !== 'object' || params[name] === null || Array.isArray(params[name])) return `The ${name} search parameter should contain a JSON-encoded object.`;
      } else params[name] = value;
    }
    return params as unknown as RequestParams;
  }
  const body = request.body;
  if (Array.isArray(body)) return 'Operation batching disabled.';
  if (typeof body !== 'object' || body === null || Object.keys(body).length === 0) return 'POST body missing, invalid Content-Type, or JSON object has no keys.';
  const b = body as Record<string, unknown>;
  if (typeof b.variables === 'string') return '`variables` in a POST body should be provided as an object, not a recursively JSON-encoded string.';
  if (typeof b.extensions === 'string') return '`extensions` in a POST body should be provided as an object, not a recursively JSON-encoded string.';
  return { query: b.query as string, operationName: b.operationName as string | undefined, variables: b.variables as Record<string, unknown>, extensions: b.extensions as Record<string, unknown> };
}

export function registerGraphqlRoute(fastify: FastifyInstance, opts: GraphqlRouteOptions): void {
  const { pipeline, contexts, metrics, log, production } = opts;
  const format = (e: GraphQLError, requestId: string) => formatGraphqlError(e.toJSON(), e, { production, log, requestId });

  const handle = createHandler<FastifyRequest, RouteState, GraphqlContext>({
    schema: opts.schema,
    execute: pipeline.execute,
    parseRequestParams(req) {
      const request = req.context.request;
      if (!csrfSafe(request)) return errorBody(request, refusalBody(request.id, ErrorCode.BAD_USER_INPUT, CSRF_MESSAGE).errors, 400);
      if (request.method !== 'GET' && request.method !== 'POST') {
        return errorBody(request, refusalBody(request.id, ErrorCode.BAD_USER_INPUT, 'Only GET and POST requests are served here.').errors, 405, { allow: 'GET, POST' });
      }
      const params = paramsOf(request);
      if (typeof params === 'string') return errorBody(request, refusalBody(request.id, ErrorCode.BAD_USER_INPUT, params).errors, 400);
      return params;
    },
    async onSubscribe(req, params) {
      const state = req.context;
      const request = state.request;
      const caller = await contexts.callerOf(authorizationFromHeaders(request.headers));
      const prepared = pipeline.prepare(params, { transport: 'http', method: request.method, authenticated: !!caller });
      if (!prepared.ok) {
        state.failed = true;
        return errorBody(
          request,
          prepared.errors.map((e) => format(e, request.id)),
          prepared.status,
          prepared.headers,
        );
      }
      state.label = prepared.label;
      const userAgent = header(request, 'user-agent') ?? null;
      return {
        schema: opts.schema,
        document: prepared.document,
        operationName: prepared.operationName,
        variableValues: prepared.variables,
        contextValue: contexts.context({ caller, meta: { ip: request.ip, userAgent }, requestId: request.id }),
      };
    },
    onOperation(req, _args, result) {
      if (!result.errors?.length) {
        // Serialised here, once and without graphql-http's replacer (a replacer takes JSON.stringify off its
        // fast path, for every value): a result without errors holds no Error to rewrite.
        if (isAsyncIterable(result)) return undefined;
        return [JSON.stringify(result), { status: 200, statusText: 'OK', headers: { 'content-type': `${mediaTypeOf(req.context.request)}; charset=utf-8` } }];
      }
      req.context.failed = true;
      // Formatted here, where the request id is known; graphql-http's formatError then passes them on.
      // errors before data, whichever executor ran (graphql-js's order; jit puts data first).
      const errors = result.errors.map((e) => format(e, req.context.request.id));
      return { errors, data: result.data, ...(result.extensions ? { extensions: result.extensions } : {}) } as unknown as ExecutionResult;
    },
    // Everything reaching this was formatted above (a GraphQLError here would be graphql-http's own).
    formatError: (e) => (e instanceof GraphQLError ? (formatGraphqlError(e.toJSON(), e, { production, log }) as unknown as GraphQLError) : e),
  });

  const httpByIp = opts.limiters.create('http-ip', opts.limits.httpPerIpPerMin, 60);
  const httpByToken = opts.limiters.create('http-token', opts.limits.httpPerTokenPerMin, 60);

  fastify.route({
    url: '/graphql',
    method: ['GET', 'POST', 'OPTIONS'],
    async preHandler(request, reply) {
      const authorization = authorizationFromHeaders(request.headers);
      const waits = await Promise.all([httpByIp.consume(request.ip), authorization ? httpByToken.consume(sha256(authorization)) : Promise.resolve(0)]);
      const wait = Math.max(...waits);
      if (wait > 0) {
        return reply
          .code(httpStatusOf(ErrorCode.RATE_LIMITED))
          .header('retry-after', String(wait))
          .send(refusalBody(request.id, ErrorCode.RATE_LIMITED, 'Too many requests', { retryAfterSeconds: wait }));
      }
      return undefined;
    },
    async handler(request, reply) {
      const state: RouteState = { request, label: 'unknown', failed: false };
      const started = process.hrtime.bigint();
      // graphql-js cannot abort a running execution, but the client gets a bounded wait and the
      // database bounds each statement (statement_timeout on Postgres).
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), opts.limits.operationTimeoutMs);
      });
      const req: HttpRequest<FastifyRequest, RouteState> = { method: request.method, url: request.url, headers: request.headers, body: null, raw: request, context: state };
      try {
        const result = await Promise.race([handle(req), timeout]);
        if (result === 'timeout') {
          state.failed = true;
          request.log.warn({ requestId: request.id }, 'graphql operation timed out');
          return reply.code(503).send(refusalBody(request.id, ErrorCode.QUERY_TOO_COMPLEX, 'The operation took too long'));
        }
        const [body, init] = result;
        if (init.status >= 400) state.failed = true;
        return reply
          .code(init.status)
          .headers(init.headers ?? {})
          .send(body ?? undefined);
      } finally {
        clearTimeout(timer);
        metrics.graphqlRequests.inc({ operation: state.label, outcome: state.failed ? 'error' : 'ok' });
        metrics.graphqlDuration.observe({ operation: state.label }, Number(process.hrtime.bigint() - started) / 1e9);
      }
    },
  });
}
