import type { IncomingMessage } from 'node:http';
import { parse, specifiedRules, validate, GraphQLError, getOperationAST, type DocumentNode, type ExecutionArgs, type GraphQLSchema, type ValidationRule } from 'graphql';
import type { WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import type { Caller } from '../../accounts/caller';
import { createLoaders, type GraphqlContext } from '../../schema/context';
import type { Services } from '../../services';
import type { EventBus } from '../../streams/bus/event-bus';
import { assertCost, withinTokenLimit } from '../edge-limits';
import type { Metrics } from '../../http/metrics';
import { createLiveServer, type OperationRequest } from './live-server';
import { bindLiveServerToWs } from './ws-adapter';

export { WsCloseCode } from './live-server';

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
}

/** Subscribers with the same key see the same events: same user, and for API keys the same scopes. */
const visibilityOf = (c: Caller) => (c.kind === 'session' ? `u:${c.userId}` : `u:${c.userId}:k:${[...c.scopes].sort().join(',')}`);
/** Callers whose subscription loaders are kept for sharing (the oldest goes first; its subscriptions keep theirs). */
const MAX_SHARED_LOADERS = 10_000;
/** Distinct valid subscription documents kept parsed (the oldest goes first). */
const MAX_SHARED_DOCUMENTS = 500;
/**
 * Subscription events execute one by one (each subscriber or group in its own turn): their device
 * reads wait this long for each other, so a reconnect storm's replays share statements.
 */
const SUBSCRIPTION_BATCH_MS = 2;

/**
 * GraphQL over WebSocket on a `ws` server: the live core (live-server.ts) with this gateway's
 * credentials (session tokens and API keys) and its operation preparation (parse, validation
 * rules, limits, cost, context), bound to `wss` by the ws adapter. Apollo's plugins do not run
 * here, so the limits and masking are applied by the core and `prepare`.
 */
export function serveGraphqlWs(opts: GraphqlWsOptions) {
  const { schema, services, log } = opts;
  const rules = [...specifiedRules, ...opts.validationRules];
  const validDocuments = new Map<string, DocumentNode>();

  /**
   * Loaders for subscription events, one set per caller visibility on this node: they memoise
   * nothing (a subscription lives long), but the same user's subscriptions executing events
   * within `SUBSCRIPTION_BATCH_MS` share a batch, so N resumed subscribers cost one device read, not N.
   */
  const loadersByVisibility = new Map<string, GraphqlContext['loaders']>();
  function subscriptionLoaders(caller: Caller): GraphqlContext['loaders'] {
    const key = visibilityOf(caller);
    let loaders = loadersByVisibility.get(key);
    if (!loaders) {
      if (loadersByVisibility.size >= MAX_SHARED_LOADERS) loadersByVisibility.delete(loadersByVisibility.keys().next().value!);
      loaders = createLoaders(services, caller, { cache: false, batchScheduleFn: (dispatch) => setTimeout(dispatch, SUBSCRIPTION_BATCH_MS) });
      loadersByVisibility.set(key, loaders);
    }
    return loaders;
  }

  /** Parse (valid documents are shared: thousands of subscribers of one query hold one AST), validation, limits, cost and context. */
  async function prepare({ id, payload, caller, meta }: OperationRequest): Promise<ExecutionArgs | readonly GraphQLError[]> {
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
    let loaders: GraphqlContext['loaders'] | undefined;
    const contextValue: GraphqlContext = {
      caller,
      meta,
      requestId: `ws-${id}`,
      services,
      // Made when first used: a grouped subscriber's own context is never executed against.
      get loaders() {
        return (loaders ??= operation.operation === 'subscription' ? subscriptionLoaders(caller) : createLoaders(services, caller));
      },
      log,
    };
    return { schema, document, variableValues: payload.variables ?? undefined, operationName: payload.operationName ?? undefined, contextValue };
  }

  const live = createLiveServer({
    schema,
    bus: opts.bus,
    clock: opts.clock,
    log,
    metrics: opts.metrics,
    production: opts.production,
    credentials: {
      authenticate: (authorization) => services.auth.authenticate(authorization),
      isOpen: (c) => (c.kind === 'session' ? services.auth.isSessionOpen(c.sessionId) : services.apiKeys.isKeyActive(c.apiKeyId)),
    },
    prepare,
    maxSubscriptionsPerConnection: opts.maxSubscriptionsPerConnection,
    maxConnectionsPerUser: opts.maxConnectionsPerUser,
    connectionInitTimeoutMs: opts.connectionInitTimeoutMs,
    maxBufferedBytes: opts.maxBufferedBytes,
    maxPendingPerSubscription: opts.maxPendingPerSubscription,
    slowConsumerMs: opts.slowConsumerMs,
    credentialRecheckMs: opts.credentialRecheckMs,
    grouping: opts.grouping,
  });
  const transport = bindLiveServerToWs(opts.wss, live, { production: opts.production, log, clientIp: opts.clientIp });

  return {
    async dispose(): Promise<void> {
      await live.dispose();
      await transport.dispose();
    },
    /** Shared executions (groups of identical subscriptions) on this node. */
    groupCount: () => live.groupCount(),
  };
}
