import { createHash } from 'node:crypto';
import { GraphQLError, getOperationAST, Kind, type ExecutionArgs, type ExecutionResult, type FormattedExecutionResult, type GraphQLFormattedError, type GraphQLSchema, type OperationDefinitionNode } from 'graphql';
import { makeServer, type SubscribePayload } from 'graphql-ws';
import { Counter, Gauge } from 'prom-client';
import type { Logger } from 'pino';
import type { Caller } from '../../accounts/caller';
import { authorizationFromParams, type GraphqlContext } from '../../schema/context';
import type { EventBus, SessionEndedPayload } from '../../streams/bus/event-bus';
import { SlowConsumerError } from '../../streams/live/live.service';
import type { Metrics } from '../../http/metrics';
import { formatGraphqlError } from '../errors';
import { createSubscriptionFanout } from './subscription-fanout';

/**
 * Close codes this server uses on `/graphql` beyond graphql-ws's own (4400 bad message, 4401
 * subscribe before ack, 4403 forbidden, 4406 subprotocol, 4408 no `connection_init` in time, 4409
 * duplicate id, 4429 second `connection_init`, 4500 internal error; the client's own 4004, 4005,
 * 4499, 4504):
 */
export const WsCloseCode = {
  /** No or bad credentials at `connection_init`, or the credential ended later (logout, session or key revoked, password changed). The client may reconnect with a fresh credential. */
  Forbidden: 4403,
  /** This user already holds `maxConnectionsPerUser` connections on this node. The graphql-ws client retries it (with its back-off); it succeeds once one of the user's connections closes. */
  TooManyConnections: 4430,
  /** Slow consumer: undelivered events passed the bound. The graphql-ws client retries; resume alarms with the last cursor. */
  TryAgainLater: 1013,
  /** Message flood (the ws adapter). */
  PolicyViolation: 1008,
} as const;

/**
 * One client connection as the live core sees it: a socket that is already open. The `ws`
 * adapter (ws-adapter.ts) binds a `ws` WebSocket to it; tests drive fakes.
 */
export interface LiveSocket {
  /** The subprotocol the client chose (graphql-ws checks it). */
  readonly protocol: string;
  /** Sends one text frame; resolves once written (graphql-ws waits on it for backpressure). */
  send(data: string | Buffer): Promise<void> | void;
  /**
   * Queues one text frame without waiting for it to be written: the fan-out's direct frames, where
   * `bufferedAmount` bounds what a slow peer holds. A failed write closes the socket. Without it,
   * `send` is used.
   */
  write?(data: Buffer): void;
  /** Starts the close handshake. */
  close(code: number, reason: string): void;
  /** Cuts the connection off without a handshake (a peer that does not answer the close). */
  terminate(): void;
  /** Bytes queued and not yet written. */
  readonly bufferedAmount: number;
  /** True while frames can be sent. */
  isOpen(): boolean;
  /** Registers the one handler of incoming text messages. */
  onMessage(cb: (data: string) => Promise<void>): void;
}

/** What the core knows of the client beyond the socket: read at the upgrade, the request itself is not kept. */
export type LiveConnectionMeta = GraphqlContext['meta'];

/** The caller's credential, as the core checks it at `connection_init` and again while the connection lives. */
export interface LiveCredentials {
  /** The caller of an `authorization` connection parameter (a bearer token or an API key), or null. */
  authenticate(authorization: string): Promise<Caller | null>;
  /** True while the session or API key is open (read from the database). */
  isOpen(caller: Caller): Promise<boolean>;
}

/** One operation to prepare: a `subscribe` message of an authenticated connection. */
export interface OperationRequest {
  id: string;
  payload: SubscribePayload;
  caller: Caller;
  meta: LiveConnectionMeta;
}

/** A prepared operation: the arguments to execute or subscribe with, and its query text (subscriptions are grouped by it). */
export interface PreparedOperation {
  args: ExecutionArgs;
  query: string;
}

/**
 * Parse, validate, limits, cost and the caller's context of one operation (the operation
 * pipeline shared with HTTP plugs in here): the operation, or the errors to answer with.
 */
export type PrepareOperation = (request: OperationRequest) => PreparedOperation | readonly GraphQLError[] | Promise<PreparedOperation | readonly GraphQLError[]>;

export interface LiveServerOptions {
  schema: GraphQLSchema;
  bus: EventBus;
  /** Time source for the credential re-check window (tests move it). */
  clock: () => Date;
  log: Logger;
  metrics: Metrics;
  production: boolean;
  credentials: LiveCredentials;
  prepare: PrepareOperation;
  /** Executes queries and mutations sent over the socket (default graphql-js's; subscription events always run through graphql-js, as its `subscribe` does). */
  execute?: (args: ExecutionArgs) => ExecutionResult | Promise<ExecutionResult>;
  /** Masks an error for the client (default: formatGraphqlError). */
  formatError?(error: GraphQLError, requestId: string): GraphQLFormattedError;
  maxSubscriptionsPerConnection: number;
  /** Open connections one user may hold on this node (default 20); beyond, 4430. */
  maxConnectionsPerUser?: number;
  /** `connection_init` must arrive within this (default 5000 ms), else 4408. */
  connectionInitTimeoutMs?: number;
  /** A socket whose unsent bytes pass this (default 1 MiB) is closed 1013 (slow consumer). */
  maxBufferedBytes?: number;
  /** Undelivered events one subscription may hold (default 1000). */
  maxPendingPerSubscription?: number;
  /** A subscription whose queue stays full this long (default 5000 ms) is a slow consumer: 1013. */
  slowConsumerMs?: number;
  /** How long a connection's credential check is trusted before it is read again at the next event (default 30 s). */
  credentialRecheckMs?: number;
  /** Share one execution per event among subscribers with the same document, variables and caller (default true). */
  grouping?: boolean;
  /** A peer that does not complete the close handshake within this (default 2000 ms) is cut off. */
  closeTimeoutMs?: number;
}

interface ConnectionState {
  caller: Caller;
  /** `s:<session id>` or `k:<api key id>`. */
  credential: string;
  socket: ClosingSocket;
  /** Subscription ids running on this connection. */
  active: Set<string>;
  verifiedAt: number;
  closed: boolean;
  meta: LiveConnectionMeta;
}

/** A socket and whether it is closing: the server closes it once (graphql-ws may close again after us). */
interface ClosingSocket {
  raw: LiveSocket;
  closing: boolean;
}

/** graphql-ws's per-connection `extra`. */
interface Extra {
  socket: ClosingSocket;
  meta: LiveConnectionMeta;
  state?: ConnectionState;
}

const credentialOf = (c: Caller) => (c.kind === 'session' ? `s:${c.sessionId}` : `k:${c.apiKeyId}`);
/** Subscribers with the same key see the same events: same user, and for API keys the same scopes. */
const visibilityOf = (c: Caller) => (c.kind === 'session' ? `u:${c.userId}` : `u:${c.userId}:k:${[...c.scopes].sort().join(',')}`);
const CLOSE_BRACE = Buffer.from('}');
const MAX_REMEMBERED_CREDENTIALS = 10_000;
/** Sessions and keys announced as ended are refused this long, even before the revoking transaction commits. */
const ENDED_MEMORY_MS = 2 * 60_000;

/** A bearer JWT's `exp` in ms; Infinity for anything else (API keys are checked by the bus and the re-check). */
function jwtExpiryMs(authorization: string): number {
  const token = authorization.replace(/^Bearer\s+/i, '').trim();
  const parts = token.split('.');
  if (parts.length !== 3) return Infinity;
  try {
    const exp = (JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { exp?: unknown }).exp;
    return typeof exp === 'number' ? exp * 1000 : 0;
  } catch {
    return 0;
  }
}

/**
 * The group of a subscription, or null when it must run alone: only a plain root field is
 * grouped. A resumed one (`after` given through a variable without a default) is keyed as the
 * same subscription without `after`, which it joins once its replay has caught up
 * (`liveVariables`: its variables without the cursor); a cursor written in the document runs alone.
 */
function groupOf(
  operation: OperationDefinitionNode,
  caller: Caller,
  payload: { query: string; operationName?: string | null; variables?: Record<string, unknown> | null },
): { key: string; liveVariables: Record<string, unknown> | null } | null {
  if (operation.operation !== 'subscription') return null;
  const [root] = operation.selectionSet.selections;
  if (!root || root.kind !== Kind.FIELD || operation.selectionSet.selections.length !== 1) return null;
  let variables = payload.variables ?? {};
  let resumes = false;
  for (const arg of root.arguments ?? []) {
    if (arg.name.value !== 'after' || arg.value.kind === Kind.NULL) continue;
    if (arg.value.kind !== Kind.VARIABLE) return null;
    const name = arg.value.name.value;
    const definition = operation.variableDefinitions?.find((d) => d.variable.name.value === name);
    // Absent and null must mean the same, and the cursor must feed nothing but `after`.
    if (!definition || definition.defaultValue || payload.query.split(`$${name}`).length !== 3) return null;
    const { [name]: cursor, ...rest } = variables;
    variables = rest;
    if (cursor != null) resumes = true;
  }
  const key = createHash('sha256')
    .update(visibilityOf(caller))
    .update('\0')
    .update(payload.operationName ?? '')
    .update('\0')
    .update(payload.query)
    .update('\0')
    .update(JSON.stringify(variables))
    .digest('base64url');
  return { key, liveVariables: resumes ? variables : null };
}

/**
 * The GraphQL WebSocket server without a transport: graphql-ws's `makeServer` as the protocol
 * engine, with what a long-lived connection needs around it. `opened(socket, meta)` runs one
 * connection and returns its `closed(code, reason)`, to call when the transport closes.
 *
 * - Credentials: `connection_init` carries `authorization` (4403 without a valid one); a
 *   connection belongs to its credential: when a session or API key ends (`session.ended` on the
 *   bus, from any node) its sockets close with 4403 at once; each event also re-reads the
 *   credential when the last check is older than `credentialRecheckMs`, which bounds a lost
 *   announcement (Redis down). A reconnect storm does not read every session again: a credential
 *   read is trusted for `credentialRecheckMs`, never past the token's expiry or its end.
 * - Limits: `maxSubscriptionsPerConnection`, `maxConnectionsPerUser` (4430), `connection_init`
 *   within `connectionInitTimeoutMs` (4408), and slow consumers (1013): a socket with more than
 *   `maxBufferedBytes` unsent, or a subscription whose `maxPendingPerSubscription` queue stays
 *   full for `slowConsumerMs` (a shorter burst only slows its group down).
 * - Operations are prepared by `prepare` (the operation pipeline); the core adds grouping:
 *   subscriptions that share document, variables, operation name and caller visibility execute
 *   once per event for all of them, and the result is serialised once and written to each socket
 *   as its `next` frame (subscription-fanout.ts, `directNext`); a resumed `alarms(after:)` joins
 *   its group once its replay has caught up.
 */
export function createLiveServer(opts: LiveServerOptions) {
  const { log, bus, credentials } = opts;
  const maxConnectionsPerUser = opts.maxConnectionsPerUser ?? 20;
  const maxBufferedBytes = opts.maxBufferedBytes ?? 1024 * 1024;
  const recheckMs = opts.credentialRecheckMs ?? 30_000;
  const grouping = opts.grouping ?? true;
  const closeTimeoutMs = opts.closeTimeoutMs ?? 2000;
  const formatError = opts.formatError ?? ((e: GraphQLError, requestId: string) => formatGraphqlError(e.toJSON(), e, { production: opts.production, log, requestId }));

  const byCredential = new Map<string, Set<ConnectionState>>();
  const perUser = new Map<string, number>();
  const endedRecently = new Map<string, number>();
  const groupKeys = new WeakMap<object, { group: ReturnType<typeof groupOf>; conn: ConnectionState; id: string }>();
  const formatted = new WeakMap<ExecutionResult, FormattedExecutionResult>();
  const sockets = new Set<ClosingSocket>();

  const subscriptionsGauge = new Gauge({ name: 'vigil_graphql_subscriptions', help: 'Running GraphQL subscriptions on this node', registers: [opts.metrics.registry] });
  const groupsGauge = new Gauge({ name: 'vigil_graphql_subscription_groups', help: 'Shared executions (groups of identical subscriptions) on this node', registers: [opts.metrics.registry] });
  const closes = new Counter({
    name: 'vigil_graphql_ws_server_closes_total',
    help: 'GraphQL WebSockets closed by the server, by reason',
    labelNames: ['reason'] as const,
    registers: [opts.metrics.registry],
  });
  const fanout = createSubscriptionFanout({
    maxPending: opts.maxPendingPerSubscription,
    slowAfterMs: opts.slowConsumerMs,
    onCount: (what, delta) => (what === 'groups' ? groupsGauge : subscriptionsGauge).inc(delta),
  });

  function closeSocket(socket: ClosingSocket, code: number, reason: string) {
    if (socket.closing) return;
    socket.closing = true;
    socket.raw.close(code, reason);
    // A peer that does not answer the close handshake (a stuck slow consumer) is cut off soon.
    setTimeout(() => socket.raw.terminate(), closeTimeoutMs).unref();
  }

  function closeConnection(st: ConnectionState, code: number, reason: string, label: string) {
    if (st.closed) return;
    st.closed = true;
    closes.inc({ reason: label });
    closeSocket(st.socket, code, reason);
  }

  function forget(st: ConnectionState) {
    const set = byCredential.get(st.credential);
    if (set?.delete(st) && set.size === 0) {
      byCredential.delete(st.credential);
      credentialReads.delete(st.credential);
    }
    const n = (perUser.get(st.caller.userId) ?? 1) - 1;
    if (n > 0) perUser.set(st.caller.userId, n);
    else perUser.delete(st.caller.userId);
  }

  function wasEnded(credential: string): boolean {
    const until = endedRecently.get(credential);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    endedRecently.delete(credential);
    return false;
  }

  function credentialEnded(p: SessionEndedPayload) {
    const credential = p.sessionId ? `s:${p.sessionId}` : p.apiKeyId ? `k:${p.apiKeyId}` : null;
    if (!credential) return;
    const now = Date.now();
    if (endedRecently.size > 100_000) for (const [k, until] of endedRecently) if (until <= now) endedRecently.delete(k);
    endedRecently.set(credential, now + ENDED_MEMORY_MS);
    for (const st of byCredential.get(credential) ?? []) closeConnection(st, WsCloseCode.Forbidden, 'Forbidden: credential ended', 'credential-ended');
  }

  /**
   * When each credential was last read as open: one read serves every connection of the
   * credential (a user's many sockets, a reconnect storm), so a check costs one statement per
   * credential and `recheckMs`, not one per connection.
   */
  const credentialReads = new Map<string, { at: number; pending: Promise<boolean> | null }>();

  /** Whether the connection's credential check is older than `recheckMs` (the shared read counts). */
  function dueForRecheck(st: ConnectionState): boolean {
    const shared = credentialReads.get(st.credential)?.at ?? 0;
    if (shared > st.verifiedAt) st.verifiedAt = shared;
    return opts.clock().getTime() - st.verifiedAt >= recheckMs;
  }

  /** True while the connection's session or key is open; read from the database at most every `recheckMs` per credential. */
  async function credentialOpen(st: ConnectionState): Promise<boolean> {
    if (st.closed || wasEnded(st.credential)) return false;
    if (!dueForRecheck(st)) return true;
    let read = credentialReads.get(st.credential);
    if (!read) credentialReads.set(st.credential, (read = { at: 0, pending: null }));
    const entry = read;
    entry.pending ??= (async () => {
      try {
        const open = await credentials.isOpen(st.caller);
        if (open) entry.at = opts.clock().getTime();
        return open;
      } catch (err) {
        // The database is unreachable: keep serving; the next event tries again.
        log.warn({ err }, 'could not re-check a WebSocket credential');
        return true;
      } finally {
        entry.pending = null;
      }
    })();
    const open = await entry.pending;
    if (open) dueForRecheck(st);
    return open;
  }

  /**
   * The group's shared bytes as this subscription's `next` frame, written to the socket at once:
   * what graphql-ws's emit.next would send after `onNext`, without executing or stringifying per
   * socket. The same checks as `onNext`, when they can be made synchronously; otherwise false, and
   * the result goes through graphql-ws (and `onNext`).
   */
  function directNext(st: ConnectionState, id: string): (serialised: Buffer) => boolean {
    const prefix = Buffer.from(`{"id":${JSON.stringify(id)},"type":"next","payload":`);
    return (serialised) => {
      const socket = st.socket.raw;
      // Closing: graphql-ws would send nothing either.
      if (st.closed || st.socket.closing || !socket.isOpen()) return true;
      if (wasEnded(st.credential)) {
        closeConnection(st, WsCloseCode.Forbidden, 'Forbidden: credential ended', 'credential-ended');
        return true;
      }
      // Due for a re-read of the credential: the queued path awaits it.
      if (dueForRecheck(st)) return false;
      if (socket.bufferedAmount > maxBufferedBytes) {
        closeConnection(st, WsCloseCode.TryAgainLater, 'Slow consumer: resume with your last cursor', 'slow-consumer');
        return true;
      }
      const frame = Buffer.concat([prefix, serialised, CLOSE_BRACE], prefix.length + serialised.length + 1);
      // Thousands of these go out per event: no promise and callback per frame when the transport can do without.
      if (socket.write) socket.write(frame);
      else void Promise.resolve(socket.send(frame)).catch(() => {});
      return true;
    };
  }

  /**
   * `authenticate` with a memory: a credential read from the database is trusted for
   * `recheckMs` (as an open connection's is), never past the token's expiry and never once
   * announced as ended, and connects with the same credential while it is being read wait for that
   * one read, so a reconnect storm verifies each token and reads each session once, not per socket.
   */
  const recentAuth = new Map<string, { caller: Caller; at: number; until: number }>();
  const authenticating = new Map<string, Promise<{ caller: Caller; at: number } | null>>();
  async function authenticate(authorization: string): Promise<{ caller: Caller; at: number } | null> {
    const now = opts.clock().getTime();
    const hit = recentAuth.get(authorization);
    if (hit) {
      if (hit.until > now && !wasEnded(credentialOf(hit.caller))) return hit;
      recentAuth.delete(authorization);
    }
    let pending = authenticating.get(authorization);
    if (!pending) {
      pending = (async () => {
        try {
          const caller = await credentials.authenticate(authorization);
          if (!caller) return null;
          const at = opts.clock().getTime();
          if (recentAuth.size >= MAX_REMEMBERED_CREDENTIALS) recentAuth.delete(recentAuth.keys().next().value!);
          recentAuth.set(authorization, { caller, at, until: Math.min(at + recheckMs, jwtExpiryMs(authorization)) });
          return { caller, at };
        } finally {
          authenticating.delete(authorization);
        }
      })();
      authenticating.set(authorization, pending);
    }
    return pending;
  }

  const unlisten = bus.listen('session.ended', credentialEnded, (fields, message) => log.warn(fields, message));

  const server = makeServer<Record<string, unknown> | undefined, Extra>({
    schema: opts.schema,
    ...(opts.execute ? { execute: opts.execute } : {}),
    connectionInitWaitTimeout: opts.connectionInitTimeoutMs ?? 5_000,
    async onConnect(ctx) {
      const auth = authorizationFromParams(ctx.connectionParams);
      const verified = auth ? await authenticate(auth) : null;
      if (!verified) return false; // graphql-ws closes with 4403 Forbidden
      const caller = verified.caller;
      const credential = credentialOf(caller);
      if (wasEnded(credential)) return false;
      const socket = ctx.extra.socket;
      if (socket.closing || !socket.raw.isOpen()) return false;
      // Checked and counted without an await in between, so parallel connects cannot both slip past.
      const count = perUser.get(caller.userId) ?? 0;
      if (count >= maxConnectionsPerUser) {
        closes.inc({ reason: 'too-many-connections' });
        closeSocket(socket, WsCloseCode.TooManyConnections, 'Too many connections: retry later');
        return false;
      }
      perUser.set(caller.userId, count + 1);
      const st: ConnectionState = { caller, credential, socket, active: new Set(), verifiedAt: verified.at, closed: false, meta: ctx.extra.meta };
      // An idle connection holds only what it needs: not the token.
      const params = ctx.connectionParams as Record<string, unknown> | undefined;
      if (params) {
        delete params.authorization;
        delete params.Authorization;
      }
      ctx.extra.state = st;
      let set = byCredential.get(credential);
      if (!set) byCredential.set(credential, (set = new Set()));
      set.add(st);
      return true;
    },
    onClose(ctx) {
      const st = ctx.extra.state;
      if (!st) return;
      ctx.extra.state = undefined;
      st.closed = true;
      forget(st);
    },
    async onSubscribe(ctx, id, payload) {
      const st = ctx.extra.state;
      if (!st) return [new GraphQLError('Not authenticated', { extensions: { code: 'UNAUTHENTICATED' } })];
      // The credential may have ended since connection_init.
      if (!(await credentialOpen(st))) {
        closeConnection(st, WsCloseCode.Forbidden, 'Forbidden: credential ended', 'credential-ended');
        return [new GraphQLError('Not authenticated', { extensions: { code: 'UNAUTHENTICATED' } })];
      }
      if (st.active.size >= opts.maxSubscriptionsPerConnection) {
        return [new GraphQLError('Too many operations on this connection', { extensions: { code: 'QUERY_TOO_COMPLEX' } })];
      }
      const prepared = await opts.prepare({ id, payload, caller: st.caller, meta: st.meta });
      if (!('args' in prepared)) return prepared;
      const { args, query } = prepared;
      st.active.add(id);
      const operation = grouping ? getOperationAST(args.document, args.operationName) : null;
      const group = operation ? groupOf(operation, st.caller, { query, operationName: args.operationName, variables: args.variableValues as Record<string, unknown> | undefined }) : null;
      groupKeys.set(args.contextValue as object, { group, conn: st, id });
      return args;
    },
    subscribe(args) {
      const info = groupKeys.get(args.contextValue as object);
      const conn = info?.conn;
      const group = info?.group ?? null;
      return fanout.subscribe(
        args,
        group?.key ?? null,
        {
          onSlow: () => conn && closeConnection(conn, WsCloseCode.TryAgainLater, 'Slow consumer: resume with your last cursor', 'slow-consumer'),
          deliver: conn && info ? directNext(conn, info.id) : undefined,
        },
        group?.liveVariables ? { liveArgs: { ...args, variableValues: group.liveVariables } } : undefined,
      );
    },
    onComplete(ctx, id) {
      ctx.extra.state?.active.delete(id);
    },
    onError(ctx, id, _payload, errors) {
      const st = ctx.extra.state;
      st?.active.delete(id);
      if (st && errors.some((e) => e.originalError instanceof SlowConsumerError)) {
        closeConnection(st, WsCloseCode.TryAgainLater, 'Slow consumer: resume with your last cursor', 'slow-consumer');
      }
      return errors.map((e) => formatError(e, `ws-${id}`));
    },
    async onNext(ctx, id, _payload, _args, result) {
      const st = ctx.extra.state;
      if (st) {
        // Authorised at delivery: a closed socket sends nothing (graphql-ws skips sends once closing).
        if (!(await credentialOpen(st))) {
          closeConnection(st, WsCloseCode.Forbidden, 'Forbidden: credential ended', 'credential-ended');
          return;
        }
        if (st.socket.raw.bufferedAmount > maxBufferedBytes) {
          closeConnection(st, WsCloseCode.TryAgainLater, 'Slow consumer: resume with your last cursor', 'slow-consumer');
          return;
        }
      }
      if (!result.errors?.length) return;
      // Grouped subscribers share the result object: mask (and log) its errors once.
      let masked = formatted.get(result);
      if (!masked) {
        masked = { ...result, errors: result.errors.map((e) => formatError(e, `ws-${id}`)) };
        formatted.set(result, masked);
      }
      return masked;
    },
  });

  return {
    /**
     * Runs the protocol on one open socket. Returns `closed(code, reason)`: call it once when the
     * transport closed (it ends the connection's subscriptions and releases its limits).
     */
    opened(raw: LiveSocket, meta: LiveConnectionMeta): (code: number, reason: string) => Promise<void> {
      const socket: ClosingSocket = { raw, closing: false };
      sockets.add(socket);
      const closed = server.opened(
        {
          protocol: raw.protocol,
          send: (data) => (socket.closing ? undefined : raw.send(data)),
          close: (code, reason) => closeSocket(socket, code ?? 1000, reason ?? ''),
          onMessage: (cb) => raw.onMessage(cb),
        },
        { socket, meta },
      );
      return async (code, reason) => {
        sockets.delete(socket);
        socket.closing = true;
        await closed(code, reason);
      };
    },

    /** Closes every open connection (shutdown: 1001 going away). */
    closeAll(code: number, reason: string): void {
      for (const socket of sockets) closeSocket(socket, code, reason);
    },

    /** Stops listening on the bus. Connections are the transport's to close (closeAll). */
    async dispose(): Promise<void> {
      await unlisten();
    },

    /** Shared executions (groups of identical subscriptions) on this node. */
    groupCount: () => fanout.groupCount(),

    /** Open connections on this node. */
    connectionCount: () => sockets.size,
  };
}

export type LiveServer = ReturnType<typeof createLiveServer>;
