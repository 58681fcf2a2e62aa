import type { IncomingMessage } from 'node:http';
import type { WebSocketServer } from 'ws';
import type { Caller } from '../../accounts/caller';
import { createSharedDeviceReads } from '../../devices/catalog/index';
import { createLoaders, type ContextBuilder, type GraphqlContext } from '../../schema/context';
import type { Services } from '../../services';
import type { OperationPipeline } from '../pipeline';
import { createLiveServer, type LiveServerOptions, type OperationRequest, type PreparedOperation } from './live-server';
import { bindLiveServerToWs } from './ws-adapter';
import type { GraphQLError } from 'graphql';

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
  /** The operation pipeline shared with the HTTP endpoint (parse, validate, limits, cost, execute). */
  pipeline: OperationPipeline;
  /** The context builder shared with the HTTP endpoint. */
  contexts: ContextBuilder;
  clientIp(request: IncomingMessage): string;
}

/** Subscribers with the same key see the same events: same user, and for API keys the same scopes. */
const visibilityOf = (c: Caller) => (c.kind === 'session' ? `u:${c.userId}` : `u:${c.userId}:k:${[...c.scopes].sort().join(',')}`);
/** Callers whose subscription loaders are kept for sharing (the oldest goes first; its subscriptions keep theirs). */
const MAX_SHARED_LOADERS = 10_000;

/**
 * GraphQL over WebSocket on a `ws` server: the live core (live-server.ts) with this gateway's
 * credentials (session tokens and API keys, through the shared context builder) and the operation
 * pipeline shared with HTTP (src/graphql/pipeline.ts), bound to `wss` by the ws adapter.
 */
export function serveGraphqlWs(opts: GraphqlWsOptions) {
  const { services } = opts;

  /**
   * Loaders for subscription events, one set per caller visibility on this node: they memoise
   * nothing (a subscription lives long), but the same user's subscriptions executing one event in
   * the same tick share a batch, and while a device's read runs, other executions that need it
   * share that read: N resumed subscribers replaying the same alarms cost a few device reads, not N.
   */
  const loadersByVisibility = new Map<string, GraphqlContext['loaders']>();
  /** One event's executions for all accounts read its device once; each caller's view is still its own. */
  const sharedDeviceReads = createSharedDeviceReads(services.devices);
  function subscriptionLoaders(caller: Caller): GraphqlContext['loaders'] {
    const key = visibilityOf(caller);
    let loaders = loadersByVisibility.get(key);
    if (!loaders) {
      if (loadersByVisibility.size >= MAX_SHARED_LOADERS) loadersByVisibility.delete(loadersByVisibility.keys().next().value!);
      loaders = createLoaders(services, caller, { cache: false, shareInFlight: true, sharedDeviceReads });
      loadersByVisibility.set(key, loaders);
    }
    return loaders;
  }

  /** The same pipeline as HTTP (it caches valid documents, so thousands of subscribers of one query hold one AST) and the same context builder. */
  function prepare({ id, payload, caller, meta }: OperationRequest): PreparedOperation | readonly GraphQLError[] {
    const prepared = opts.pipeline.prepare(payload, { transport: 'ws', authenticated: true });
    if (!prepared.ok) return prepared.errors;
    const { operation, document } = prepared;
    const contextValue = opts.contexts.context({
      caller,
      meta,
      requestId: `ws-${id}`,
      loaders: operation.operation === 'subscription' ? () => subscriptionLoaders(caller) : undefined,
    });
    return { query: prepared.query, args: { schema: opts.schema, document, variableValues: prepared.variables, operationName: prepared.operationName, contextValue } };
  }

  const { wss, services: _services, pipeline, contexts, clientIp, ...core } = opts;
  const live = createLiveServer({
    ...core,
    execute: pipeline.execute,
    credentials: {
      authenticate: (authorization) => contexts.callerOf(authorization),
      isOpen: (c) => (c.kind === 'session' ? services.auth.isSessionOpen(c.sessionId) : services.apiKeys.isKeyActive(c.apiKeyId)),
    },
    prepare,
  });
  const transport = bindLiveServerToWs(wss, live, { production: opts.production, log: opts.log, clientIp });

  return {
    async dispose(): Promise<void> {
      await live.dispose();
      await transport.dispose();
    },
    /** Shared executions (groups of identical subscriptions) on this node. */
    groupCount: () => live.groupCount(),
  };
}
