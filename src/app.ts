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
import { Counter } from 'prom-client';
import { WebSocketServer, type WebSocket } from 'ws';
import { accessTokenSigner, deriveSecretKey, loadSigningKey } from './accounts/access-tokens';
import { createApiKeyService } from './accounts/api-key.service';
import { createAuthService } from './accounts/auth.service';
import { setHashConcurrency } from './accounts/password';
import { createPasswordResetService } from './accounts/password-reset.service';
import { aesGcmSecretBox, createSecondFactorVerifier, createTotpService } from './accounts/totp.service';
import type { Config } from './config';
import { openDb, type DbHandle } from './db/index';
import {
  createDeviceRegistry,
  createDeviceService,
  createDeviceWsServer,
  createProvisioningService,
  isapiIngest,
  pruneDeviceCommands,
  type DeviceCommands,
  type DeviceRegistry,
} from './devices/index';
import { registerAdminRoutes } from './http/admin.routes';
import { loadAdminToken } from './lib/admin-token';
import { edgePlugin, limitRules, withinTokenLimit } from './graphql/edge-limits';
import { registerGraphiqlRoutes } from './http/graphiql.routes';
import { formatGraphqlError } from './graphql/errors';
import { jitGateway } from './graphql/jit-executor';
import { serveGraphqlWs } from './graphql/live/graphql-ws';
import { createMetrics, type Metrics } from './http/metrics';
import { clientAddressOf } from './lib/client-address';
import { limiterFactory } from './lib/rate-limit';
import { sha256 } from './lib/secrets';
import { createDeliveryWorker, transportsFor } from './notify/index';
import { buildGraphqlSchema } from './resolvers/index';
import { createLoaders, type GraphqlContext } from './schema/context';
import type { Services } from './services';
import { createAlarmStore, type AlarmStore } from './streams/alarms/alarm-store';
import { createAlarmService } from './streams/alarms/alarm.service';
import { createAccessCache } from './streams/live/access-cache';
import { createAlarmTailer } from './streams/live/alarm-tail';
import { createLiveService } from './streams/live/live.service';
import { createEventBus, type EventBus } from './streams/bus/event-bus';
import { createRetentionJob } from './streams/alarms/retention';

export interface AppOverrides {
  /** Time source for every service; tests move it to expire codes and tokens. */
  clock?: () => Date;
  logger?: Logger;
  /** Prefix for Redis keys and channels; tests give each app its own. Default `vigil:`. */
  redisPrefix?: string;
  /** Commands to connected devices (unbind); default: the connection registry's, or none yet. */
  deviceCommands?: DeviceCommands;
  /** Device-channel timings (tests shorten them). Defaults: hello 5000 ms, heartbeat 30 s, sweep every 5000 ms. */
  deviceTimings?: { helloTimeoutMs?: number; heartbeatSeconds?: number; sweepIntervalMs?: number };
  /** Replaces services after they are built (benchmarks serve in-memory data through the real stack). */
  services?: (built: Services) => Services;
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
  /** The operator token for /admin/* (ADMIN_TOKEN, the data dir's admin-token, or a random one for ':memory:'). */
  readonly adminToken: string;
  /** The device-connection registry (tests call its sweeper directly). */
  readonly registry: DeviceRegistry;
  readonly alarmStore: AlarmStore;
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
  // Statements per unit of work (benchmarks divide it by heartbeats, posts); BEGIN/COMMIT not counted.
  const dbStatements = new Counter({ name: 'vigil_db_statements_total', help: 'SQL statements sent to the database by this node', registers: [metrics.registry] });
  dbHandle.observeStatements(() => dbStatements.inc());
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
    // Redis down: ioredis reconnects forever (backing off to 2 s); a command waits through at most
    // two reconnect attempts, then fails. Rate limits then fall back to this node's memory, publishes
    // are dropped (logged), subscriptions resume on reconnect; queries keep being served.
    const redisOptions = { keyPrefix: undefined, maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: false } as const;
    // Rate limits fail fast while Redis is away (each node's memory then limits), so requests do not wait on it.
    redis = new Redis(config.redisUrl, { ...redisOptions, enableOfflineQueue: false });
    const publish = new Redis(config.redisUrl, redisOptions);
    // No ready check (INFO) or CLIENT SETINFO on the subscriber: the bus SUBSCRIBEs at start-up, before the
    // connection is ready, and those commands then fail in subscriber mode and leave subscriptions deaf.
    const subscribe = new Redis(config.redisUrl, { ...redisOptions, enableReadyCheck: false, disableClientInfo: true });
    for (const client of [redis, publish, subscribe]) client.on('error', (err) => log.warn({ err: err.message }, 'redis error'));
    bus = createEventBus({ publish, subscribe, onError: (err, what) => log.warn({ err: err instanceof Error ? err.message : err, what }, 'redis bus command failed') });
    closers.push(async () => {
      await Promise.allSettled([redis!.quit(), publish.quit(), subscribe.quit()]);
    });
  } else {
    bus = createEventBus();
  }

  setHashConcurrency(config.argon2Concurrency);
  const signingKey = await loadSigningKey(config.jwtPrivateKey, config.dataDir);
  const signer = accessTokenSigner(signingKey, config.accessTokenTtlS, clock);
  const limiters = limiterFactory(redis, redisPrefix);
  const db = dbHandle.db;
  const workers: Worker[] = [];
  // Outbox delivery; services kick it after committing a transaction that queued messages.
  // Reset codes and links are sealed in the outbox with a key that is not in the database.
  const outboxBox = aesGcmSecretBox(deriveSecretKey(signingKey, 'outbox-secrets v1'));
  const delivery = createDeliveryWorker({ db, clock, log, transports: transportsFor(config, log), box: outboxBox });
  workers.push(delivery);

  // TOTP secrets must stay reversible, so they are encrypted at rest with a key derived from the signing key.
  const totpBox = aesGcmSecretBox(deriveSecretKey(signingKey, 'totp-secrets v1'));
  // A session or API key that ends closes its GraphQL WebSockets on every node (src/http/graphql-ws.ts).
  const onCredentialEnded = (ended: { sessionId?: string; apiKeyId?: string }) => {
    try {
      bus.publish('session.ended', ended);
    } catch (err) {
      log.warn({ err }, 'could not publish session.ended');
    }
  };
  const apiKeys = createApiKeyService({ db, clock, limiters, onCredentialEnded });
  const auth = createAuthService({
    db,
    clock,
    signer,
    limiters,
    limits: config.limits,
    refreshTokenTtlS: config.refreshTokenTtlS,
    secondFactor: createSecondFactorVerifier({ clock, box: totpBox }),
    apiKeys,
    onOutbox: delivery.kick,
    onCredentialEnded,
  });
  const totp = createTotpService({ db, clock, box: totpBox, limiters, confirmPassword: auth.confirmPassword, onOutbox: delivery.kick });
  const passwordReset = createPasswordResetService({
    db,
    clock,
    log,
    limiters,
    limits: config.limits,
    publicUrl: config.publicUrl,
    codeKey: deriveSecretKey(signingKey, 'password-reset-codes v1'),
    auth,
    outboxBox,
    onOutbox: delivery.kick,
  });
  workers.push(passwordReset.worker);
  const alarmStore = createAlarmStore({ db, clock, bus, log, quietEndS: config.alarmQuietEndS, prepared: dbHandle.prepared });
  const registry = createDeviceRegistry({
    db,
    clock,
    bus,
    log,
    nodeId: config.nodeId,
    alarms: alarmStore,
    limiters,
    isapiOfflineAfterS: config.deviceOfflineAfterS,
    heartbeatSeconds: config.deviceHeartbeatS,
    sweepIntervalMs: config.deviceSweepIntervalMs,
    ...overrides.deviceTimings,
  });
  workers.push(registry);
  workers.push(
    createRetentionJob({
      db,
      clock,
      log,
      store: alarmStore,
      nodeId: config.nodeId,
      retentionDays: config.alarmRetentionDays,
      // Device commands finished or expired more than a week ago.
      alsoPrune: [{ name: 'commands', before: (now) => new Date(now.getTime() - 7 * 86_400_000), prune: (before) => pruneDeviceCommands(db, before) }],
    }),
  );
  // The devices service's seam: must not throw (the unbind stands; the device learns at its next hello).
  const registryCommands: DeviceCommands = {
    sendUnbind: (deviceId) => registry.sendUnbind(deviceId).catch((err) => log.warn({ err, deviceId }, 'could not queue the unbind command')),
  };
  const devices = createDeviceService({
    db,
    clock,
    limiters,
    limits: config.limits,
    bus,
    // Seam for the connection registry (issue 4): replace with its implementation.
    commands: overrides.deviceCommands ?? registryCommands,
    confirmPassword: auth.confirmPassword,
    onOutbox: delivery.kick,
    log: log.child({ component: 'devices' }),
  });
  const provisioning = createProvisioningService({ db, clock });
  const adminToken = loadAdminToken(config.adminToken, config.dataDir);
  const alarms = createAlarmService({ clock, store: alarmStore, quietEndS: config.alarmQuietEndS });
  // Live streams: one alarm tailer and one access cache per node, shared by every subscriber.
  const alarmTailer = createAlarmTailer({ store: alarmStore, bus, log });
  const accessCache = createAccessCache({ load: (userId) => alarmStore.alarmAudienceOf(userId), bus, log, clock });
  const live = createLiveService({ clock, bus, log, tailer: alarmTailer, access: accessCache, store: alarmStore, alarms, maxPending: config.limits.wsPendingEvents });
  workers.push(
    { start: () => alarmTailer.start(), stop: () => alarmTailer.stop() },
    { start: () => accessCache.start(), stop: () => accessCache.stop() },
    { start: () => live.start(), stop: () => live.stop() },
  );
  const builtServices: Services = { auth, totp, apiKeys, passwordReset, devices, alarms, live };
  const services = overrides.services ? overrides.services(builtServices) : builtServices;

  const schema = await buildGraphqlSchema();
  const fastify = Fastify({
    loggerInstance: log.child({ component: 'http' }) as FastifyBaseLogger,
    // Per-request lines are off: GraphQL errors and slow paths are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.limits.bodyBytes,
    genReqId: () => randomUUID(),
    trustProxy: config.trustProxy,
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
    // jit: a gateway whose executor runs compiled queries (src/http/jit-executor.ts); same schema either way.
    ...(config.graphqlExecutor === 'jit'
      ? { gateway: jitGateway(schema, 'jit', { onFallback: (operationName, reason) => log.warn({ operationName, reason }, 'graphql-jit could not compile; using graphql-js') }) }
      : { schema }),
    // Always on here; edgePlugin closes it to anonymous callers in production.
    introspection: true,
    validationRules: [...limitRules],
    includeStacktraceInErrorResponses: false,
    hideSchemaDetailsFromClientErrors: config.production,
    csrfPrevention: true,
    allowBatchedHttpRequests: false,
    formatError: (formatted, error) => formatGraphqlError(formatted, error, { production: config.production, log }),
    plugins: [fastifyApolloDrainPlugin(fastify), ApolloServerPluginCacheControlDisabled(), ApolloServerPluginLandingPageDisabled(), edgePlugin(schema, config.production), observabilityPlugin],
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
    const caller = await services.auth.authenticate(typeof authorization === 'string' ? authorization : undefined);
    return {
      caller,
      meta: { ip: request.ip, userAgent: typeof request.headers['user-agent'] === 'string' ? request.headers['user-agent'] : null },
      requestId: request.id,
      services,
      loaders: createLoaders(services, caller),
      log,
    };
  };
  const graphqlError = (code: string, message: string, requestId: string, extra: Record<string, unknown> = {}) => ({
    errors: [{ message, extensions: { code, requestId, ...extra } }],
  });
  const httpByIp = limiters.create('http-ip', config.limits.httpPerIpPerMin, 60);
  const httpByToken = limiters.create('http-token', config.limits.httpPerTokenPerMin, 60);
  const apolloHandler = fastifyApolloHandler(apollo, { context: contextFor });
  fastify.route({
    url: '/graphql',
    method: ['GET', 'POST', 'OPTIONS'],
    async preHandler(request, reply) {
      const authorization = request.headers.authorization;
      const waits = await Promise.all([
        httpByIp.consume(request.ip),
        typeof authorization === 'string' ? httpByToken.consume(sha256(authorization)) : Promise.resolve(0),
      ]);
      const wait = Math.max(...waits);
      if (wait > 0) {
        return reply.code(429).header('retry-after', String(wait)).send(graphqlError('RATE_LIMITED', 'Too many requests', request.id, { retryAfterSeconds: wait }));
      }
      const body = request.body as { query?: unknown } | unknown[] | undefined;
      const query = Array.isArray(body) ? undefined : (body?.query ?? (request.query as { query?: unknown })?.query);
      if (typeof query === 'string' && !withinTokenLimit(query)) {
        return reply.code(400).send(graphqlError('QUERY_TOO_COMPLEX', 'Query has too many tokens', request.id));
      }
      return undefined;
    },
    async handler(request, reply) {
      // graphql-js cannot abort a running execution, but the client gets a bounded wait and the
      // database bounds each statement (statement_timeout on Postgres).
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), config.limits.operationTimeoutMs);
      });
      try {
        const result = await Promise.race([apolloHandler.call(this, request as never, reply as never), timeout]);
        if (result !== 'timeout') return result;
        request.log.warn({ requestId: request.id }, 'graphql operation timed out');
        return reply.code(503).send(graphqlError('QUERY_TOO_COMPLEX', 'The operation took too long', request.id));
      } finally {
        clearTimeout(timer);
      }
    },
  });

  registerGraphiqlRoutes(fastify);
  registerAdminRoutes(fastify, { token: adminToken, provisioning, limiters, log });
  await fastify.register(isapiIngest({ db, clock, log, registry, alarms: alarmStore, bodyLimit: config.limits.isapiBodyBytes, metricsRegistry: metrics.registry }));
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
    bus,
    clock,
    log,
    metrics,
    production: config.production,
    validationRules: limitRules,
    maxSubscriptionsPerConnection: config.limits.wsSubscriptionsPerConnection,
    maxConnectionsPerUser: config.limits.wsConnectionsPerUser,
    maxPendingPerSubscription: config.limits.wsPendingEvents,
    slowConsumerMs: config.limits.wsSlowConsumerMs,
    maxBufferedBytes: config.limits.wsBufferedBytes,
    connectionInitTimeoutMs: config.limits.wsInitTimeoutMs,
    grouping: config.wsGrouping,
    clientIp: clientAddressOf(config.trustProxy),
  });
  graphqlWss.on('connection', (socket) => {
    sockets.add(socket);
    // graphql-ws has no message limit of its own: a flood closes the socket (1008 policy violation).
    let windowStart = Date.now();
    let messages = 0;
    socket.on('message', () => {
      const now = Date.now();
      if (now - windowStart >= 1000) {
        windowStart = now;
        messages = 0;
      }
      if (++messages > config.limits.wsMessagesPerS) socket.close(1008, 'Too many messages');
    });
    metrics.openWebSockets.inc({ endpoint: 'graphql' });
    socket.once('close', () => {
      sockets.delete(socket);
      metrics.openWebSockets.dec({ endpoint: 'graphql' });
    });
  });
  upgrades.set('/graphql', (req, socket, head) => graphqlWss.handleUpgrade(req, socket, head, (ws) => graphqlWss.emit('connection', ws, req)));
  const deviceWs = createDeviceWsServer({ registry, log, metrics, clientAddress: clientAddressOf(config.trustProxy) });
  upgrades.set('/devices/ws', deviceWs.handleUpgrade);
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
    adminToken,
    registry,
    alarmStore,
    async start(port = config.port) {
      // After a network blip every client reconnects at once; Node's default accept queue (511)
      // overflows while the loop is busy and the kernel drops connects, which clients retry only
      // seconds later. The kernel caps this at net.core.somaxconn.
      const address = await fastify.listen({ port, host: config.host, backlog: 4096 });
      url = address.replace('[::1]', '127.0.0.1');
      for (const w of workers) w.start();
      log.info(
        { url, explorer: `${url}/graphiql`, database: dbHandle.kind, bus: redis ? 'redis' : 'in-process', node: config.nodeId },
        'vigil gateway listening',
      );
      if (config.production && (!config.smtpUrl || !config.smsWebhookUrl)) {
        log.warn({ smtp: !!config.smtpUrl, sms: !!config.smsWebhookUrl }, 'no SMTP_URL or SMS_WEBHOOK_URL: such messages go only to the log and DATA_DIR/outbox');
      }
      return url;
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      for (const s of sockets) s.close(1001, 'server shutting down');
      // Device sockets first: their OFFLINE records need the database, and open upgraded sockets would hold fastify.close().
      await registry.stop();
      await deviceWs.close();
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
