import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { fastifyApolloDrainPlugin, fastifyApolloHandler } from '@as-integrations/fastify';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { accessTokenSigner, loadSigningKey } from './accounts/access-tokens';
import { createAuthService } from './accounts/auth.service';
import type { Config } from './config';
import { openDb, type DbHandle } from './db/index';
import { formatGraphqlError } from './http/graphql-errors';
import { serveGraphqlWs } from './http/graphql-ws';
import { createMetrics, type Metrics } from './http/metrics';
import { limiterFactory } from './lib/rate-limit';
import { buildGraphqlSchema } from './resolvers/index';
import type { GraphqlContext } from './schema/context';
import type { Services } from './services';
import { createEventBus, type EventBus } from './streams/event-bus';

export interface AppOverrides {
  /** Time source for every service; tests move it to expire codes and tokens. */
  clock?: () => Date;
  logger?: Logger;
  /** Prefix for Redis keys and channels; tests give each app its own. Default `vigil:`. */
  redisPrefix?: string;
}

export interface App {
  /** Listens on `port` (0 = any free port) and returns the base URL. */
  start(port?: number): Promise<string>;
  /** Graceful stop: refuse new work, finish in-flight requests, close sockets with 1001, close the db. */
  stop(): Promise<void>;
  readonly url: string;
  readonly db: DbHandle;
  readonly services: Services;
  readonly bus: EventBus;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly fastify: FastifyInstance;
}

/** A long-lived background loop (outbox delivery, sweepers) started and stopped with the app. */
export interface Worker {
  start(): void;
  stop(): Promise<void>;
}

/** Handles WebSocket upgrades for one path (graphql-ws, the device channel). */
type UpgradeHandler = (request: IncomingMessage, socket: Duplex, head: Buffer) => void;

function createLogger(config: Config): Logger {
  const pretty = process.stdout.isTTY && !config.production;
  return pino({
    level: config.logLevel,
    base: { node: config.nodeId },
    redact: { paths: ['req.headers.authorization', '*.password', '*.newPassword', '*.token', '*.secret'], censor: '[redacted]' },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,node' } } } : {}),
  });
}

/** The composition root: the only module that knows every piece. */
export async function buildApp(config: Config, overrides: AppOverrides = {}): Promise<App> {
  const clock = overrides.clock ?? (() => new Date());
  const log = overrides.logger ?? createLogger(config);
  const redisPrefix = overrides.redisPrefix ?? 'vigil:';
  const metrics = createMetrics();

  const dbHandle = await openDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  let migrated = false;
  const closers: Array<() => Promise<void>> = [() => dbHandle.close()];
  try {
    await dbHandle.migrate();
    migrated = true;
  } catch (e) {
    await dbHandle.close();
    throw e;
  }

  let redis: Redis | undefined;
  let bus: EventBus;
  if (config.redisUrl) {
    const redisOptions = { keyPrefix: undefined, maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: false } as const;
    redis = new Redis(config.redisUrl, redisOptions);
    const publish = new Redis(config.redisUrl, redisOptions);
    const subscribe = new Redis(config.redisUrl, redisOptions);
    for (const client of [redis, publish, subscribe]) client.on('error', (err) => log.warn({ err: err.message }, 'redis error'));
    bus = createEventBus({ publish, subscribe });
    closers.push(async () => {
      await Promise.allSettled([redis!.quit(), publish.quit(), subscribe.quit()]);
    });
  } else {
    bus = createEventBus();
  }

  const signingKey = await loadSigningKey(config.jwtPrivateKey, config.dataDir);
  const signer = accessTokenSigner(signingKey, config.accessTokenTtlS, clock);
  const limiters = limiterFactory(redis, redisPrefix);
  const db = dbHandle.db;
  const workers: Worker[] = [];

  const auth = createAuthService({
    db,
    clock,
    signer,
    limiters,
    limits: config.limits,
    refreshTokenTtlS: config.refreshTokenTtlS,
    secondFactor: { verify: async () => false },
    apiKeys: { looksLikeApiKey: () => false, authenticate: async () => null },
    onOutbox: () => {},
  });
  const services: Services = { auth };

  const schema = await buildGraphqlSchema();
  const fastify = Fastify({
    loggerInstance: log.child({ component: 'http' }) as FastifyBaseLogger,
    // Per-request lines are off: GraphQL errors and slow paths are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.limits.bodyBytes,
    genReqId: () => randomUUID(),
    trustProxy: false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });

  const operationLabel = (ctx: { operation?: { operation: string; selectionSet: { selections: readonly { kind: string; name?: { value: string } }[] } } | null }) => {
    const op = ctx.operation;
    const first = op?.selectionSet.selections.find((s) => s.kind === 'Field');
    // Root field names are from the validated schema, so the label set stays bounded.
    return op && first?.name ? `${op.operation}.${first.name.value}` : 'unknown';
  };
  const observabilityPlugin: ApolloServerPlugin<GraphqlContext> = {
    async requestDidStart() {
      const started = process.hrtime.bigint();
      let label = 'unknown';
      return {
        async didResolveOperation(rc) {
          label = operationLabel(rc);
        },
        async didEncounterErrors(rc) {
          for (const err of rc.errors) {
            if (!err.extensions?.code && !err.path) continue;
          }
        },
        async willSendResponse(rc) {
          const seconds = Number(process.hrtime.bigint() - started) / 1e9;
          const body = rc.response.body;
          const errors = body.kind === 'single' ? body.singleResult.errors : undefined;
          metrics.graphqlRequests.inc({ operation: label, outcome: errors?.length ? 'error' : 'ok' });
          metrics.graphqlDuration.observe({ operation: label }, seconds);
          // The request id goes into every error, so a partner's report can be traced in the log.
          if (errors) {
            const requestId = rc.contextValue.requestId;
            body.kind === 'single' &&
              (body.singleResult.errors = errors.map((e) => ({ ...e, extensions: { ...e.extensions, requestId } })));
          }
        },
      };
    },
  };

  const apollo = new ApolloServer<GraphqlContext>({
    schema,
    introspection: !config.production,
    includeStacktraceInErrorResponses: false,
    hideSchemaDetailsFromClientErrors: config.production,
    csrfPrevention: true,
    allowBatchedHttpRequests: false,
    formatError: (formatted, error) => formatGraphqlError(formatted, error, { production: config.production, log }),
    plugins: [fastifyApolloDrainPlugin(fastify), ApolloServerPluginCacheControlDisabled(), ApolloServerPluginLandingPageDisabled(), observabilityPlugin],
  });
  await apollo.start();
  closers.unshift(() => apollo.stop());

  fastify.setErrorHandler((error: { code?: string; statusCode?: number }, request, reply) => {
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send({ errors: [{ message: 'Request body too large', extensions: { code: 'BAD_USER_INPUT', requestId: request.id } }] });
    }
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error({ err: error }, 'unhandled error');
    return reply
      .code(status)
      .send({ errors: [{ message: status === 500 ? 'Internal error' : 'Bad request', extensions: { code: status === 500 ? 'INTERNAL' : 'BAD_USER_INPUT', requestId: request.id } }] });
  });

  const contextFor = async (request: { headers: Record<string, string | string[] | undefined>; ip: string; id: string }): Promise<GraphqlContext> => {
    const authorization = request.headers.authorization;
    return {
      caller: await auth.authenticate(typeof authorization === 'string' ? authorization : undefined),
      meta: { ip: request.ip, userAgent: typeof request.headers['user-agent'] === 'string' ? request.headers['user-agent'] : null },
      requestId: request.id,
      services,
      log,
    };
  };
  fastify.route({ url: '/graphql', method: ['GET', 'POST', 'OPTIONS'], handler: fastifyApolloHandler(apollo, { context: contextFor }) });

  fastify.get('/healthz', async () => ({ status: 'ok' }));
  fastify.get('/readyz', async (_req, reply) => {
    try {
      if (!migrated) throw new Error('migrations not applied');
      await dbHandle.ping();
      return { status: 'ready', database: dbHandle.kind };
    } catch (err) {
      log.warn({ err }, 'readiness check failed');
      return reply.code(503).send({ status: 'unavailable' });
    }
  });
  fastify.get('/metrics', async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  // WebSockets: one `ws` server per path, all on the HTTP server's upgrade event.
  const upgrades = new Map<string, UpgradeHandler>();
  const sockets = new Set<WebSocket>();
  const graphqlWss = new WebSocketServer({ noServer: true, maxPayload: 256 * 1024 });
  const graphqlWs = serveGraphqlWs({
    schema,
    wss: graphqlWss,
    services,
    log,
    metrics,
    production: config.production,
    validationRules: [],
    maxSubscriptionsPerConnection: 50,
    clientIp: (req) => req.socket.remoteAddress ?? 'unknown',
  });
  graphqlWss.on('connection', (socket) => {
    sockets.add(socket);
    metrics.openWebSockets.inc({ endpoint: 'graphql' });
    socket.once('close', () => {
      sockets.delete(socket);
      metrics.openWebSockets.dec({ endpoint: 'graphql' });
    });
  });
  upgrades.set('/graphql', (req, socket, head) => graphqlWss.handleUpgrade(req, socket, head, (ws) => graphqlWss.emit('connection', ws, req)));
  fastify.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const pathname = new URL(req.url ?? '/', 'http://x').pathname;
    const handler = upgrades.get(pathname);
    if (!handler || stopping) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    handler(req, socket, head);
  });

  let stopping = false;
  let url = '';
  const app: App = {
    get url() {
      return url;
    },
    db: dbHandle,
    services,
    bus,
    metrics,
    log,
    fastify,
    async start(port = config.port) {
      const address = await fastify.listen({ port, host: config.host });
      url = address.replace('[::1]', '127.0.0.1');
      for (const w of workers) w.start();
      log.info({ url, database: dbHandle.kind, bus: redis ? 'redis' : 'in-process', node: config.nodeId }, 'vigil gateway listening');
      return url;
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      for (const s of sockets) s.close(1001, 'server shutting down');
      await graphqlWs.dispose();
      await fastify.close(); // Apollo's drain plugin waits for in-flight requests
      await Promise.allSettled(workers.map((w) => w.stop()));
      for (const close of closers) {
        try {
          await close();
        } catch (err) {
          log.warn({ err }, 'error while closing');
        }
      }
    },
  };
  return app;
}
