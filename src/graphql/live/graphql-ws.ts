import type { IncomingMessage } from 'node:http';
import { parse, specifiedRules, validate, GraphQLError, getOperationAST, type DocumentNode, type ExecutionArgs, type ValidationRule } from 'graphql';
import type { WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import type { Caller } from '../../accounts/caller';
import { createLoaders, type GraphqlContext } from '../../schema/context';
import type { Services } from '../../services';
import { assertCost, withinTokenLimit } from '../edge-limits';
import { createLiveServer, type LiveServerOptions, type OperationRequest } from './live-server';
import { bindLiveServerToWs } from './ws-adapter';

export { WsCloseCode } from './live-server';

/** The core's settings (see LiveServerOptions), and what this gateway composes it with. */
export interface GraphqlWsOptions
  extends Pick<
    LiveServerOptions,
    | 'schema'
    | 'bus'
    | 'clock'
    | 'log'
    | 'metrics'
    | 'production'
    | 'maxSubscriptionsPerConnection'
    | 'maxConnectionsPerUser'
    | 'connectionInitTimeoutMs'
    | 'maxBufferedBytes'
    | 'maxPendingPerSubscription'
    | 'slowConsumerMs'
    | 'credentialRecheckMs'
    | 'grouping'
  > {
  wss: WebSocketServer;
  services: Services;
  /** Extra validation rules (depth, cost...) shared with the HTTP endpoint. */
  validationRules: readonly ValidationRule[];
  clientIp(request: IncomingMessage): string;
}

/** Subscribers with the same key see the same events: same user, and for API keys the same scopes. */
const visibilityOf = (c: Caller) => (c.kind === 'session' ? `u:${c.userId}` : `u:${c.userId}:k:${[...c.scopes].sort().join(',')}`);
/** Callers whose subscription loaders are kept for sharing (the oldest goes first; its subscriptions keep theirs). */
const MAX_SHARED_LOADERS = 10_000;
/** Distinct valid subscription documents kept parsed (the oldest goes first). */
const MAX_SHARED_DOCUMENTS = 500;

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
   * nothing (a subscription lives long), but the same user's subscriptions executing one event in
   * the same tick share a batch, and while a device's read runs, other executions that need it
   * share that read: N resumed subscribers replaying the same alarms cost a few device reads, not N.
   */
  const loadersByVisibility = new Map<string, GraphqlContext['loaders']>();
  function subscriptionLoaders(caller: Caller): GraphqlContext['loaders'] {
    const key = visibilityOf(caller);
    let loaders = loadersByVisibility.get(key);
    if (!loaders) {
      if (loadersByVisibility.size >= MAX_SHARED_LOADERS) loadersByVisibility.delete(loadersByVisibility.keys().next().value!);
      loaders = createLoaders(services, caller, { cache: false, shareInFlight: true });
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

  const { wss, services: _services, validationRules: _rules, clientIp, ...core } = opts;
  const live = createLiveServer({
    ...core,
    credentials: {
      authenticate: (authorization) => services.auth.authenticate(authorization),
      isOpen: (c) => (c.kind === 'session' ? services.auth.isSessionOpen(c.sessionId) : services.apiKeys.isKeyActive(c.apiKeyId)),
    },
    prepare,
  });
  const transport = bindLiveServerToWs(wss, live, { production: opts.production, log, clientIp });

  return {
    async dispose(): Promise<void> {
      await live.dispose();
      await transport.dispose();
    },
    /** Shared executions (groups of identical subscriptions) on this node. */
    groupCount: () => live.groupCount(),
  };
}
