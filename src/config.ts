import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

/** Thrown when the environment holds a value we cannot run with; the message names the variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const url = (protocols: string[]) =>
  z.string().refine((v) => {
    try {
      return protocols.includes(new URL(v).protocol);
    } catch {
      return false;
    }
  }, `must be a URL with one of ${protocols.join(', ')}`);

const envSchema = z.object({
  PORT: port.default(4000),
  HOST: z.string().min(1).default('127.0.0.1'),
  DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: url(['postgres:', 'postgresql:']).optional(),
  REDIS_URL: url(['redis:', 'rediss:']).optional(),
  REDIS_PREFIX: z.string().regex(/^[\w.:-]{1,64}$/, 'letters, digits and . _ : - (at most 64)').default('vigil:'),
  PUBLIC_URL: url(['http:', 'https:']).optional(),
  SMTP_URL: url(['smtp:', 'smtps:']).optional(),
  MAIL_FROM: z.string().min(3).default('Vigil <no-reply@vigil.local>'),
  SMS_WEBHOOK_URL: url(['http:', 'https:']).optional(),
  JWT_PRIVATE_KEY: z.string().min(1).optional(),
  ADMIN_TOKEN: z.string().min(24, 'must be at least 24 characters').optional(),
  METRICS_TOKEN: z.string().min(24, 'must be at least 24 characters').optional(),
  DEVICE_OFFLINE_AFTER_S: positiveInt.default(90),
  DEVICE_HEARTBEAT_S: positiveInt.max(3600).default(30),
  DEVICE_SWEEP_INTERVAL_MS: z.coerce.number().int().min(100).max(600_000).default(5000),
  NODE_ID: z.string().min(1).max(200).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  NODE_ENV: z.string().optional(),
  // Limits beyond DESIGN's table; all optional, with defaults that suit a public deployment.
  BODY_LIMIT_BYTES: positiveInt.default(1024 * 1024),
  ISAPI_BODY_LIMIT_BYTES: positiveInt.default(2 * 1024 * 1024),
  // Login and reset limits: README "Limits" says why these numbers.
  LOGIN_FREE_PER_SOURCE: positiveInt.default(5),
  LOGIN_MAX_PER_ACCOUNT: positiveInt.default(100),
  // Limiter windows stay under 20 days: the in-memory store times keys out with a 32-bit setTimeout.
  LOGIN_ACCOUNT_WINDOW_S: positiveInt.max(20 * 86_400).default(7 * 86_400),
  LOGIN_MAX_PER_IP: positiveInt.default(100),
  LOGIN_WINDOW_S: positiveInt.max(20 * 86_400).default(60 * 60),
  RESET_MAX_PER_LOGIN: positiveInt.default(3),
  RESET_MAX_PER_IP: positiveInt.default(20),
  RESET_WINDOW_S: positiveInt.max(20 * 86_400).default(60 * 60),
  BIND_MAX_PER_DEVICE: positiveInt.default(200),
  BIND_MAX_PER_ACCOUNT: positiveInt.default(20),
  BIND_MAX_PER_SOURCE: positiveInt.default(50),
  RESET_CODE_MAX_PER_DAY: positiveInt.default(5),
  RESET_CODE_MAX_PER_30_DAYS: positiveInt.default(30),
  ACCESS_TOKEN_TTL_S: z.coerce.number().int().min(30).max(15 * 60).default(15 * 60),
  REFRESH_TOKEN_TTL_S: positiveInt.default(30 * 24 * 3600),
  ALARM_QUIET_END_S: positiveInt.default(10),
  ALARM_RETENTION_DAYS: positiveInt.default(90),
  REGISTER_MAX_PER_IP: positiveInt.default(20),
  HTTP_RATE_PER_IP: positiveInt.default(1200),
  HTTP_RATE_PER_TOKEN: positiveInt.default(600),
  OPERATION_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).default(15_000),
  WS_MESSAGES_PER_S: positiveInt.default(120),
  WS_MAX_CONNECTIONS_PER_USER: positiveInt.default(20),
  WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: positiveInt.default(50),
  WS_MAX_PENDING_EVENTS: positiveInt.default(1000),
  WS_SLOW_CONSUMER_MS: z.coerce.number().int().min(100).max(600_000).default(5000),
  WS_MAX_BUFFERED_BYTES: positiveInt.default(1024 * 1024),
  WS_INIT_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(5000),
  WS_GROUPING: z.enum(['true', 'false', '1', '0']).default('true').transform((v) => v === 'true' || v === '1'),
  GRAPHQL_EXECUTOR: z.enum(['jit', 'graphql-js']).default('jit'),
  ARGON2_CONCURRENCY: z.coerce.number().int().min(0).max(64).optional(),
  ARGON2_MAX_WAITING: z.coerce.number().int().min(0).max(10_000).default(64),
  // Read by libuv itself at start-up; here only to size the default argon2 bound.
  UV_THREADPOOL_SIZE: z.coerce.number().int().min(1).max(1024).optional().catch(undefined),
  CONSOLE: z.enum(['on', 'off']).default('on'),
  RECLAIM_WINDOW_S: positiveInt.default(7 * 86_400),
  TRUST_PROXY: z.enum(['true', 'false', '1', '0']).default('false').transform((v) => v === 'true' || v === '1'),
});

export type Env = z.infer<typeof envSchema>;

/**
 * The default bound on argon2 hashes computed at once: one per spare core (a core is left to the
 * event loop that serves queries), and one thread fewer than libuv's pool (default 4), where the
 * hashes run beside file, DNS and crypto work, so that work always finds a free thread. With the
 * default pool: 1 core -> 1, 2 -> 1, 4 -> 3, 16 -> 3 (15 with UV_THREADPOOL_SIZE=16 or more).
 */
export const defaultArgon2Concurrency = (cores: number, uvThreadpoolSize: number) => Math.max(1, Math.min(cores - 1, uvThreadpoolSize - 1));

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  /** `undefined` means embedded PGlite in `dataDir` (or in memory when `dataDir` is `:memory:`). */
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  /** Key prefix of the shared counters in Redis (rate limits), so deployments can share one Redis. */
  redisPrefix: string;
  publicUrl: string;
  smtpUrl: string | undefined;
  mailFrom: string;
  smsWebhookUrl: string | undefined;
  jwtPrivateKey: string | undefined;
  adminToken: string | undefined;
  /** Bearer token `/metrics` requires when set; unset, `/metrics` is open (keep it off the public network then). */
  metricsToken: string | undefined;
  deviceOfflineAfterS: number;
  /** Heartbeat period told to WebSocket devices; 2.5 of them without a frame is OFFLINE. */
  deviceHeartbeatS: number;
  /** How often the registry's sweeper runs (on the node holding its lease). */
  deviceSweepIntervalMs: number;
  nodeId: string;
  logLevel: Env['LOG_LEVEL'];
  production: boolean;
  limits: {
    bodyBytes: number;
    isapiBodyBytes: number;
    /** Failed logins per (account, source) that pass at once; beyond, each waits longer (30 s doubling to 15 min). */
    loginFreePerSource: number;
    /**
     * Failed logins per account from anywhere in `loginAccountWindowS` (NIST SP 800-63B: at most 100
     * consecutive); beyond, only sources the account has signed in from may try, until a success or a reset.
     */
    loginPerAccount: number;
    loginAccountWindowS: number;
    /** Failed logins per source (an IPv4 address, an IPv6 /64) in `loginWindowS`, across accounts. */
    loginPerIp: number;
    loginWindowS: number;
    resetPerLogin: number;
    resetPerIp: number;
    resetWindowS: number;
    /**
     * Wrong label codes per day: per device from everyone (the ceiling that keeps the 26^6 codes
     * unguessable), per calling account, per source. Per (account, device), 5 pass, then each waits.
     */
    bindPerDevice: number;
    bindPerAccount: number;
    bindPerSource: number;
    /** Wrong reset codes per account per day and per 30 days; beyond, only the mailed link works. */
    resetCodePerDay: number;
    resetCodePer30Days: number;
    /** Sign-ups per hour per client IP (slows account enumeration through `register`). */
    registerPerIpPerHour: number;
    /** GraphQL-over-HTTP requests per minute per client IP and per bearer credential. */
    httpPerIpPerMin: number;
    httpPerTokenPerMin: number;
    /** Longest an HTTP GraphQL operation may run before the client gets an error. */
    operationTimeoutMs: number;
    /** Messages per second one GraphQL WebSocket may send before it is closed. */
    wsMessagesPerS: number;
    /** GraphQL WebSockets one user may hold open on one node (4430 beyond). */
    wsConnectionsPerUser: number;
    wsSubscriptionsPerConnection: number;
    /** Undelivered events one subscription may hold; full for `wsSlowConsumerMs`, its socket is closed 1013 (slow consumer). */
    wsPendingEvents: number;
    wsSlowConsumerMs: number;
    /** Unsent bytes one GraphQL WebSocket may hold before it is closed 1013 (slow consumer). */
    wsBufferedBytes: number;
    /** `connection_init` must arrive within this, else 4408. */
    wsInitTimeoutMs: number;
  };
  /** Serve the web console at `/` and the reset page at `/reset` (off: a deployment with its own frontend). */
  console: boolean;
  /** Take the client IP from X-Forwarded-For (only behind a trusted load balancer). */
  trustProxy: boolean;
  /** Identical subscriptions of one caller share one execution per event (off only to measure it). */
  wsGrouping: boolean;
  /** How HTTP queries execute: compiled by graphql-jit (default), or graphql-js's interpreter. */
  graphqlExecutor: 'jit' | 'graphql-js';
  /**
   * argon2 hashes (passwords, label codes) computed at once; default `defaultArgon2Concurrency()`;
   * 0: as many as libuv's thread pool runs.
   */
  argon2Concurrency: number;
  /** argon2 hashes waiting for a slot; past that, RATE_LIMITED at once (never an unbounded queue). */
  argon2MaxWaiting: number;
  accessTokenTtlS: number;
  refreshTokenTtlS: number;
  alarmQuietEndS: number;
  alarmRetentionDays: number;
  /** The owner's objection window for a device claim (reclaim), in seconds. */
  reclaimWindowS: number;
}

/**
 * Parses every setting from the environment. Throws ConfigError naming the first bad variable,
 * so the process stops before it opens a port.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings mean "unset": a `FOO=` line in a unit file should not count as a value.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0] ?? 'environment');
    throw new ConfigError(`${name}: ${issue.message} (got ${JSON.stringify(cleaned[name] ?? null)})`);
  }
  const e = parsed.data;
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir: e.DATA_DIR === ':memory:' ? e.DATA_DIR : path.resolve(e.DATA_DIR),
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    redisPrefix: e.REDIS_PREFIX,
    publicUrl: (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/+$/, ''),
    smtpUrl: e.SMTP_URL,
    mailFrom: e.MAIL_FROM,
    smsWebhookUrl: e.SMS_WEBHOOK_URL,
    jwtPrivateKey: e.JWT_PRIVATE_KEY,
    adminToken: e.ADMIN_TOKEN,
    metricsToken: e.METRICS_TOKEN,
    deviceOfflineAfterS: e.DEVICE_OFFLINE_AFTER_S,
    deviceHeartbeatS: e.DEVICE_HEARTBEAT_S,
    deviceSweepIntervalMs: e.DEVICE_SWEEP_INTERVAL_MS,
    nodeId: e.NODE_ID ?? `${os.hostname()}-${process.pid}`,
    logLevel: e.LOG_LEVEL,
    production: e.NODE_ENV === 'production',
    limits: {
      bodyBytes: e.BODY_LIMIT_BYTES,
      isapiBodyBytes: e.ISAPI_BODY_LIMIT_BYTES,
      loginFreePerSource: e.LOGIN_FREE_PER_SOURCE,
      loginPerAccount: e.LOGIN_MAX_PER_ACCOUNT,
      loginAccountWindowS: e.LOGIN_ACCOUNT_WINDOW_S,
      loginPerIp: e.LOGIN_MAX_PER_IP,
      loginWindowS: e.LOGIN_WINDOW_S,
      resetPerLogin: e.RESET_MAX_PER_LOGIN,
      resetPerIp: e.RESET_MAX_PER_IP,
      resetWindowS: e.RESET_WINDOW_S,
      bindPerDevice: e.BIND_MAX_PER_DEVICE,
      bindPerAccount: e.BIND_MAX_PER_ACCOUNT,
      bindPerSource: e.BIND_MAX_PER_SOURCE,
      resetCodePerDay: e.RESET_CODE_MAX_PER_DAY,
      resetCodePer30Days: e.RESET_CODE_MAX_PER_30_DAYS,
      registerPerIpPerHour: e.REGISTER_MAX_PER_IP,
      httpPerIpPerMin: e.HTTP_RATE_PER_IP,
      httpPerTokenPerMin: e.HTTP_RATE_PER_TOKEN,
      operationTimeoutMs: e.OPERATION_TIMEOUT_MS,
      wsMessagesPerS: e.WS_MESSAGES_PER_S,
      wsConnectionsPerUser: e.WS_MAX_CONNECTIONS_PER_USER,
      wsSubscriptionsPerConnection: e.WS_MAX_SUBSCRIPTIONS_PER_CONNECTION,
      wsPendingEvents: e.WS_MAX_PENDING_EVENTS,
      wsSlowConsumerMs: e.WS_SLOW_CONSUMER_MS,
      wsBufferedBytes: e.WS_MAX_BUFFERED_BYTES,
      wsInitTimeoutMs: e.WS_INIT_TIMEOUT_MS,
    },
    console: e.CONSOLE === 'on',
    trustProxy: e.TRUST_PROXY,
    wsGrouping: e.WS_GROUPING,
    graphqlExecutor: e.GRAPHQL_EXECUTOR,
    argon2Concurrency: e.ARGON2_CONCURRENCY ?? defaultArgon2Concurrency(os.availableParallelism(), e.UV_THREADPOOL_SIZE ?? 4),
    argon2MaxWaiting: e.ARGON2_MAX_WAITING,
    accessTokenTtlS: e.ACCESS_TOKEN_TTL_S,
    refreshTokenTtlS: e.REFRESH_TOKEN_TTL_S,
    alarmQuietEndS: e.ALARM_QUIET_END_S,
    alarmRetentionDays: e.ALARM_RETENTION_DAYS,
    reclaimWindowS: e.RECLAIM_WINDOW_S,
  };
}
