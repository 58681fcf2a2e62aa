import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { parse, specifiedRules, validate, GraphQLError, getOperationAST, Kind, type DocumentNode, type ExecutionResult, type FormattedExecutionResult, type GraphQLSchema, type OperationDefinitionNode, type ValidationRule } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { Counter, Gauge } from 'prom-client';
import type { WebSocket, WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import type { Caller } from '../../accounts/caller';
import { createLoaders, type GraphqlContext } from '../../schema/context';
import type { Services } from '../../services';
import type { EventBus, SessionEndedPayload } from '../../streams/bus/event-bus';
import { SlowConsumerError } from '../../streams/live/live.service';
import { assertCost, withinTokenLimit } from '../edge-limits';
import { formatGraphqlError } from '../errors';
import type { Metrics } from '../../http/metrics';
import { createSubscriptionFanout } from './subscription-fanout';

/**
 * Close codes this server uses on `/graphql` beyond graphql-ws's own (4400 bad message, 4408 no
 * `connection_init` in time, 4409 duplicate id, 4429 second `connection_init`):
 */
export const WsCloseCode = {
  /** No or bad credentials at `connection_init`, or the credential ended later (logout, session or key revoked, password changed). The client may reconnect with a fresh credential. */
  Forbidden: 4403,
  /** This user already holds `maxConnectionsPerUser` connections on this node. The graphql-ws client does not retry it. */
  TooManyConnections: 4429,
  /** Slow consumer: undelivered events passed the bound. The graphql-ws client retries; resume alarms with the last cursor. */
  TryAgainLater: 1013,
  /** Message flood (app.ts). */
  PolicyViolation: 1008,
} as const;

export interface GraphqlWsOptions {
  schema: GraphQLSchema;
  wss: WebSocketServer;
  services: Services;
  bus: EventBus;
  /** Time source for the credential re-check window (tests move it). */
  clock: () => Date;
  log: Logger;
  metrics: Metrics;
  production: boolean;
  /** Extra validation rules (depth, cost...) shared with the HTTP endpoint. */
  validationRules: readonly ValidationRule[];
  maxSubscriptionsPerConnection: number;
  clientIp(request: IncomingMessage): string;
  /** Open connections one user may hold on this node (default 20); beyond, 4429. */
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
}

interface ConnectionState {
  caller: Caller;
  /** `s:<session id>` or `k:<api key id>`. */
  credential: string;
  socket: WebSocket;
  /** Subscription ids running on this connection. */
  active: Set<string>;
  verifiedAt: number;
  verifying: Promise<boolean> | null;
  closed: boolean;
  /** Read from the upgrade request at connect; the request itself is not kept. */
  meta: GraphqlContext['meta'];
}

const credentialOf = (c: Caller) => (c.kind === 'session' ? `s:${c.sessionId}` : `k:${c.apiKeyId}`);
/** Subscribers with the same key see the same events: same user, and for API keys the same scopes. */
const visibilityOf = (c: Caller) => (c.kind === 'session' ? `u:${c.userId}` : `u:${c.userId}:k:${[...c.scopes].sort().join(',')}`);
const CLOSE_BRACE = Buffer.from('}');
const MAX_REMEMBERED_CREDENTIALS = 10_000;
/** Callers whose subscription loaders are kept for sharing (the oldest goes first; its subscriptions keep theirs). */
const MAX_SHARED_LOADERS = 10_000;
/** Distinct valid subscription documents kept parsed (the oldest goes first). */
const MAX_SHARED_DOCUMENTS = 500;

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
/** Sessions and keys announced as ended are refused this long, even before the revoking transaction commits. */
const ENDED_MEMORY_MS = 2 * 60_000;

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
 * graphql-ws on a `ws` server. Apollo's plugins don't run here, so authentication (connection
 * params, 4403 on failure), validation rules, limits and error masking are applied in the hooks.
 *
 * Long-lived connections:
 * - A connection belongs to its credential: when a session or API key ends (`session.ended` on the
 *   bus, from any node) its sockets close with 4403 at once; each event also re-reads the
 *   credential when the last check is older than `credentialRecheckMs`, which bounds a lost
 *   announcement (Redis down).
 * - Limits: `maxSubscriptionsPerConnection`, `maxConnectionsPerUser` (4429), `connection_init`
 *   within `connectionInitTimeoutMs` (4408), and slow consumers (1013): a socket with more than
 *   `maxBufferedBytes` unsent, or a subscription whose `maxPendingPerSubscription` queue stays
 *   full for `slowConsumerMs` (a shorter burst only slows its group down).
 * - Fan-out: subscriptions without `after` that share document, variables, operation name and
 *   caller visibility execute once per event for all of them, and the result is serialised once
 *   and written to each socket as its `next` frame (src/http/subscription-fanout.ts, `directNext`).
 */
export function serveGraphqlWs(opts: GraphqlWsOptions) {
  const { schema, services, log, bus } = opts;
  const rules = [...specifiedRules, ...opts.validationRules];
  const maxConnectionsPerUser = opts.maxConnectionsPerUser ?? 20;
  const maxBufferedBytes = opts.maxBufferedBytes ?? 1024 * 1024;
  const recheckMs = opts.credentialRecheckMs ?? 30_000;
  const grouping = opts.grouping ?? true;

  const state = new WeakMap<object, ConnectionState>();
  const byCredential = new Map<string, Set<ConnectionState>>();
  const perUser = new Map<string, number>();
  const endedRecently = new Map<string, number>();
  const groupKeys = new WeakMap<object, { group: ReturnType<typeof groupOf>; conn: ConnectionState; id: string }>();
  const formatted = new WeakMap<ExecutionResult, FormattedExecutionResult>();
  const validDocuments = new Map<string, DocumentNode>();

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

  function closeConnection(st: ConnectionState, code: number, reason: string, label: string) {
    if (st.closed) return;
    st.closed = true;
    closes.inc({ reason: label });
    st.socket.close(code, reason);
    // A peer that does not answer the close handshake (a stuck slow consumer) is cut off soon.
    setTimeout(() => st.socket.terminate(), 2000).unref();
  }

  function forget(st: ConnectionState) {
    const set = byCredential.get(st.credential);
    if (set?.delete(st) && set.size === 0) byCredential.delete(st.credential);
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

  /** True while the connection's session or key is open; read from the database at most every `recheckMs`. */
  async function credentialOpen(st: ConnectionState): Promise<boolean> {
    if (st.closed || wasEnded(st.credential)) return false;
    if (opts.clock().getTime() - st.verifiedAt < recheckMs) return true;
    st.verifying ??= (async () => {
      try {
        const c = st.caller;
        const open = c.kind === 'session' ? await services.auth.isSessionOpen(c.sessionId) : await services.apiKeys.isKeyActive(c.apiKeyId);
        if (open) st.verifiedAt = opts.clock().getTime();
        return open;
      } catch (err) {
        // The database is unreachable: keep serving; the next event tries again.
        log.warn({ err }, 'could not re-check a WebSocket credential');
        return true;
      } finally {
        st.verifying = null;
      }
    })();
    return st.verifying;
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
      const socket = st.socket;
      // Closing: graphql-ws would send nothing either.
      if (st.closed || socket.readyState !== socket.OPEN) return true;
      if (wasEnded(st.credential)) {
        closeConnection(st, WsCloseCode.Forbidden, 'Forbidden: credential ended', 'credential-ended');
        return true;
      }
      // Due for a re-read of the credential: the queued path awaits it.
      if (opts.clock().getTime() - st.verifiedAt >= recheckMs) return false;
      if (socket.bufferedAmount > maxBufferedBytes) {
        closeConnection(st, WsCloseCode.TryAgainLater, 'Slow consumer: resume with your last cursor', 'slow-consumer');
        return true;
      }
      socket.send(Buffer.concat([prefix, serialised, CLOSE_BRACE], prefix.length + serialised.length + 1), { binary: false });
      return true;
    };
  }

  /**
   * Loaders for subscription events, one set per caller visibility on this node: they memoise
   * nothing (a subscription lives long), but the same user's subscriptions executing one event
   * in the same tick share a batch, so N resumed subscribers cost one device read, not N.
   */
  const loadersByVisibility = new Map<string, GraphqlContext['loaders']>();
  function subscriptionLoaders(caller: Caller): GraphqlContext['loaders'] {
    const key = visibilityOf(caller);
    let loaders = loadersByVisibility.get(key);
    if (!loaders) {
      if (loadersByVisibility.size >= MAX_SHARED_LOADERS) loadersByVisibility.delete(loadersByVisibility.keys().next().value!);
      loaders = createLoaders(services, caller, { cache: false });
      loadersByVisibility.set(key, loaders);
    }
    return loaders;
  }

  /**
   * `authenticate` with a memory: a credential read from the database is trusted for
   * `recheckMs` (as an open connection's is), never past the token's expiry and never once
   * announced as ended, so a reconnect storm does not read every session again.
   */
  const recentAuth = new Map<string, { caller: Caller; at: number; until: number }>();
  async function authenticate(authorization: string): Promise<{ caller: Caller; at: number } | null> {
    const now = opts.clock().getTime();
    const hit = recentAuth.get(authorization);
    if (hit) {
      if (hit.until > now && !wasEnded(credentialOf(hit.caller))) return hit;
      recentAuth.delete(authorization);
    }
    const caller = await services.auth.authenticate(authorization);
    if (!caller) return null;
    const at = opts.clock().getTime();
    if (recentAuth.size >= MAX_REMEMBERED_CREDENTIALS) recentAuth.delete(recentAuth.keys().next().value!);
    recentAuth.set(authorization, { caller, at, until: Math.min(at + recheckMs, jwtExpiryMs(authorization)) });
    return { caller, at };
  }

  const busFeed = bus.subscribe('session.ended')[Symbol.asyncIterator]();
  void (async () => {
    try {
      for (;;) {
        const next = await busFeed.next();
        if (next.done) return;
        credentialEnded(next.value);
      }
    } catch (err) {
      log.warn({ err }, 'session.ended subscription ended');
    }
  })();

  const server = useServer<Record<string, unknown> | undefined, { state?: ConnectionState }>(
    {
      schema,
      connectionInitWaitTimeout: opts.connectionInitTimeoutMs ?? 5_000,
      async onConnect(ctx) {
        const auth = ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization;
        const verified = typeof auth === 'string' ? await authenticate(auth) : null;
        if (!verified) return false; // graphql-ws closes with 4403 Forbidden
        const caller = verified.caller;
        const credential = credentialOf(caller);
        if (wasEnded(credential)) return false;
        const socket = ctx.extra.socket;
        if (socket.readyState !== socket.OPEN) return false;
        // Checked and counted without an await in between, so parallel connects cannot both slip past.
        const count = perUser.get(caller.userId) ?? 0;
        if (count >= maxConnectionsPerUser) {
          closes.inc({ reason: 'too-many-connections' });
          socket.close(WsCloseCode.TooManyConnections, 'Too many connections');
          return false;
        }
        perUser.set(caller.userId, count + 1);
        const request = ctx.extra.request;
        const meta = { ip: opts.clientIp(request), userAgent: request.headers['user-agent'] ?? null };
        const st: ConnectionState = { caller, credential, socket, active: new Set(), verifiedAt: verified.at, verifying: null, closed: false, meta };
        // An idle connection holds only what it needs: not the upgrade request, not the token.
        (ctx.extra as { request?: IncomingMessage }).request = undefined;
        const params = ctx.connectionParams as Record<string, unknown> | undefined;
        if (params) {
          delete params.authorization;
          delete params.Authorization;
        }
        state.set(ctx.extra, st);
        let set = byCredential.get(credential);
        if (!set) byCredential.set(credential, (set = new Set()));
        set.add(st);
        return true;
      },
      onClose(ctx) {
        const st = state.get(ctx.extra);
        if (!st) return;
        state.delete(ctx.extra);
        st.closed = true;
        forget(st);
      },
      async onSubscribe(ctx, id, payload) {
        const st = state.get(ctx.extra);
        if (!st) return [new GraphQLError('Not authenticated', { extensions: { code: 'UNAUTHENTICATED' } })];
        // The credential may have ended since connection_init.
        if (!(await credentialOpen(st))) {
          closeConnection(st, WsCloseCode.Forbidden, 'Forbidden: credential ended', 'credential-ended');
          return [new GraphQLError('Not authenticated', { extensions: { code: 'UNAUTHENTICATED' } })];
        }
        if (st.active.size >= opts.maxSubscriptionsPerConnection) {
          return [new GraphQLError('Too many operations on this connection', { extensions: { code: 'QUERY_TOO_COMPLEX' } })];
        }
        // Valid documents are shared: thousands of subscribers of the same query hold one AST, parsed and validated once.
        let document = validDocuments.get(payload.query);
        if (!document) {
          try {
            if (!withinTokenLimit(payload.query)) return [new GraphQLError('Query has too many tokens', { extensions: { code: 'QUERY_TOO_COMPLEX' } })];
            document = parse(payload.query);
          } catch (e) {
            return [e instanceof GraphQLError ? e : new GraphQLError('Cannot parse the query', { extensions: { code: 'GRAPHQL_PARSE_FAILED' } })];
          }
          const errors = validate(schema, document, rules);
          if (errors.length) return errors.map((e) => new GraphQLError(e.message, { nodes: e.nodes, extensions: { code: e.extensions.code ?? 'GRAPHQL_VALIDATION_FAILED' } }));
          if (validDocuments.size >= MAX_SHARED_DOCUMENTS) validDocuments.delete(validDocuments.keys().next().value!);
          validDocuments.set(payload.query, document);
        }
        const operation = getOperationAST(document, payload.operationName);
        if (!operation) return [new GraphQLError('Unknown operation', { extensions: { code: 'OPERATION_RESOLUTION_FAILURE' } })];
        try {
          assertCost(schema, document, payload.variables ?? undefined, payload.operationName);
        } catch (e) {
          if (e instanceof GraphQLError) return [e];
          throw e;
        }
        st.active.add(id);
        let loaders: GraphqlContext['loaders'] | undefined;
        const contextValue: GraphqlContext = {
          caller: st.caller,
          meta: st.meta,
          requestId: `ws-${id}`,
          services,
          // Made when first used: a grouped subscriber's own context is never executed against.
          get loaders() {
            return (loaders ??= operation.operation === 'subscription' ? subscriptionLoaders(st.caller) : createLoaders(services, st.caller));
          },
          log,
        };
        groupKeys.set(contextValue, { group: grouping ? groupOf(operation, st.caller, payload) : null, conn: st, id });
        return { schema, document, variableValues: payload.variables ?? undefined, operationName: payload.operationName ?? undefined, contextValue };
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
        state.get(ctx.extra)?.active.delete(id);
      },
      onError(ctx, id, _payload, errors) {
        const st = state.get(ctx.extra);
        st?.active.delete(id);
        if (st && errors.some((e) => e.originalError instanceof SlowConsumerError)) {
          closeConnection(st, WsCloseCode.TryAgainLater, 'Slow consumer: resume with your last cursor', 'slow-consumer');
        }
        return errors.map((e) => formatGraphqlError(e.toJSON(), e, { production: opts.production, log, requestId: `ws-${id}` }));
      },
      async onNext(ctx, id, _payload, _args, result) {
        const st = state.get(ctx.extra);
        if (st) {
          // Authorised at delivery: a closed socket sends nothing (graphql-ws skips sends once closing).
          if (!(await credentialOpen(st))) {
            closeConnection(st, WsCloseCode.Forbidden, 'Forbidden: credential ended', 'credential-ended');
            return;
          }
          if (st.socket.bufferedAmount > maxBufferedBytes) {
            closeConnection(st, WsCloseCode.TryAgainLater, 'Slow consumer: resume with your last cursor', 'slow-consumer');
            return;
          }
        }
        if (!result.errors?.length) return;
        // Grouped subscribers share the result object: mask (and log) its errors once.
        let masked = formatted.get(result);
        if (!masked) {
          masked = { ...result, errors: result.errors.map((e) => formatGraphqlError(e.toJSON(), e, { production: opts.production, log, requestId: `ws-${id}` })) };
          formatted.set(result, masked);
        }
        return masked;
      },
    },
    opts.wss,
  );

  return {
    async dispose(): Promise<void> {
      await busFeed.return?.();
      await server.dispose();
    },
    /** Shared executions (groups of identical subscriptions) on this node. */
    groupCount: () => fanout.groupCount(),
  };
}
