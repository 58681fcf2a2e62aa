import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { Counter } from 'prom-client';
import { WebSocketServer, type WebSocket } from 'ws';
import { accessTokenSigner, deriveSecretKey, loadSigningKey } from './accounts/access-tokens';
import { createApiKeyService } from './accounts/api-key.service';
import { createAuthService } from './accounts/auth.service';
import { configureHashing } from './accounts/password';
import { createPasswordResetService } from './accounts/password-reset.service';
import { aesGcmSecretBox, createSecondFactorVerifier, createTotpService } from './accounts/totp.service';
import type { Config } from './config';
import { openDb, type DbHandle } from './db/index';
import {
  createClaimService,
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
import { registerGraphiqlRoutes } from './http/graphiql.routes';
import { registerNotFound, registerPageRoutes } from './http/pages.routes';
import { startupNotes } from './http/startup-notes';
import { serveGraphqlWs } from './graphql/live/graphql-ws';
import { createOperationPipeline } from './graphql/pipeline';
import { limitMessageRate } from './graphql/ws-message-limit';
import { closeConnectionsWhenDraining } from './http/drain';
import { registerErrorHandler } from './http/error-handler';
import { registerGraphqlRoute } from './http/graphql.route';
import { registerHealthRoutes } from './http/health.routes';
import { routeUpgrades, type UpgradeHandler } from './http/upgrade-router';
import { createMetrics, type Metrics } from './http/metrics';
import { clientAddressOf } from './lib/client-address';
import { limiterFactory } from './lib/rate-limit';
import { createDeliveryWorker, transportsFor } from './notify/index';
import { buildGraphqlSchema } from './resolvers/index';
import { createContextBuilder } from './schema/context';
import type { Services } from './services';
import { createAlarmStore, type AlarmStore } from './streams/alarms/alarm-store';
import { createAlarmService } from './streams/alarms/alarm.service';
import { createAccessCache } from './streams/live/access-cache';
import { createAlarmTailer } from './streams/live/alarm-tail';
import { createLiveService } from './streams/live/live.service';
import { createEventBus, type EventBus } from './streams/bus/event-bus';
import { createLeasedJob } from './streams/bus/lease';
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
  const redisPrefix = overrides.redisPrefix ?? config.redisPrefix;
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

  configureHashing({ concurrency: config.argon2Concurrency, maxWaiting: config.argon2MaxWaiting });
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
    prepared: dbHandle.prepared,
    clock,
    limiters,
    limits: config.limits,
    bus,
    // Seam for the connection registry (issue 4): replace with its implementation.
    commands: overrides.deviceCommands ?? registryCommands,
    // Reclaim: an unbind completes a pending claim, a transfer carries it (runs only after `claims` exists).
    bindingHooks: { bindingsEnded: (tx, ended, now) => claims.bindingHooks.bindingsEnded(tx, ended, now) },
    confirmPassword: auth.confirmPassword,
    onOutbox: delivery.kick,
    log: log.child({ component: 'devices' }),
  });
  const claims = createClaimService({
    db,
    clock,
    limiters,
    bus,
    commands: overrides.deviceCommands ?? registryCommands,
    devices,
    windowS: config.reclaimWindowS,
    publicUrl: config.publicUrl,
    onOutbox: delivery.kick,
    log: log.child({ component: 'claims' }),
  });
  // Due claims complete on whichever node holds the lease (each claim exactly once regardless).
  const claimIntervalMs = Math.min(60_000, Math.max(1000, config.reclaimWindowS * 100));
  workers.push(createLeasedJob(db, { name: 'reclaim', holder: config.nodeId, intervalMs: claimIntervalMs, clock, log, run: async () => void (await claims.completeDue()) }));
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
  const builtServices: Services = { auth, totp, apiKeys, passwordReset, devices, claims, alarms, live };
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
  registerErrorHandler(fastify);
  closeConnectionsWhenDraining(fastify, () => stopping);

  // One pipeline and one context builder for HTTP and graphql-ws.
  const pipeline = createOperationPipeline({
    schema,
    production: config.production,
    executor: config.graphqlExecutor,
    onJitFallback: (operationName, reason) => log.warn({ operationName, reason }, 'graphql-jit could not compile; using graphql-js'),
  });
  const contexts = createContextBuilder(services, log);
  registerGraphqlRoute(fastify, { schema, pipeline, contexts, limiters, metrics, log, production: config.production, limits: config.limits });
  registerGraphiqlRoutes(fastify);
  if (config.console) registerPageRoutes(fastify);
  registerNotFound(fastify);
  registerAdminRoutes(fastify, { token: adminToken, provisioning, limiters, log });
  await fastify.register(isapiIngest({ db, clock, log, registry, alarms: alarmStore, bodyLimit: config.limits.isapiBodyBytes, metricsRegistry: metrics.registry }));
  registerHealthRoutes(fastify, {
    async ready() {
      if (!migrated) throw new Error('migrations not applied');
      await dbHandle.ping();
      return { database: dbHandle.kind };
    },
    metrics,
    metricsToken: config.metricsToken,
    log,
  });

  // WebSockets: one `ws` server per path, all on the HTTP server's upgrade event.
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
    pipeline,
    contexts,
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
    limitMessageRate(socket, config.limits.wsMessagesPerS);
    metrics.openWebSockets.inc({ endpoint: 'graphql' });
    socket.once('close', () => {
      sockets.delete(socket);
      metrics.openWebSockets.dec({ endpoint: 'graphql' });
    });
  });
  const deviceWs = createDeviceWsServer({ registry, log, metrics, clientAddress: clientAddressOf(config.trustProxy) });
  const upgrades = new Map<string, UpgradeHandler>([
    ['/graphql', (req, socket, head) => graphqlWss.handleUpgrade(req, socket, head, (ws) => graphqlWss.emit('connection', ws, req))],
    ['/devices/ws', deviceWs.handleUpgrade],
  ]);
  routeUpgrades(fastify.server, upgrades, () => stopping);

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
      registry.start();
      for (const w of workers) w.start();
      log.info(
        { url, explorer: `${url}/graphiql`, database: dbHandle.kind, bus: redis ? 'redis' : 'in-process', node: config.nodeId },
        'vigil gateway listening',
      );
      for (const line of startupNotes(config, url)) log.info(line);
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
      await fastify.close(); // waits for in-flight requests
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
