import type { IncomingMessage } from 'node:http';
import { parse, specifiedRules, validate, GraphQLError, getOperationAST, type GraphQLSchema, type ValidationRule } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import type { WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import type { Caller } from '../accounts/caller';
import { createLoaders, type GraphqlContext } from '../schema/context';
import type { Services } from '../services';
import { assertCost, withinTokenLimit } from './graphql-edge';
import { formatGraphqlError } from './graphql-errors';
import type { Metrics } from './metrics';

export interface GraphqlWsOptions {
  schema: GraphQLSchema;
  wss: WebSocketServer;
  services: Services;
  log: Logger;
  metrics: Metrics;
  production: boolean;
  /** Extra validation rules (depth, cost...) shared with the HTTP endpoint. */
  validationRules: readonly ValidationRule[];
  maxSubscriptionsPerConnection: number;
  clientIp(request: IncomingMessage): string;
}

interface ConnectionState {
  caller: Caller | null;
  operations: number;
}

/**
 * graphql-ws on a `ws` server. Apollo's plugins don't run here, so authentication (connection
 * params, 4403 on failure), validation rules, limits and error masking are applied in the hooks.
 */
export function serveGraphqlWs(opts: GraphqlWsOptions) {
  const { schema, services, log } = opts;
  const rules = [...specifiedRules, ...opts.validationRules];
  const state = new WeakMap<object, ConnectionState>();

  return useServer<Record<string, unknown> | undefined, { state?: ConnectionState }>(
    {
      schema,
      connectionInitWaitTimeout: 5_000,
      async onConnect(ctx) {
        const auth = ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization;
        const caller = typeof auth === 'string' ? await services.auth.authenticate(auth) : null;
        if (!caller) return false; // graphql-ws closes with 4403 Forbidden
        state.set(ctx.extra, { caller, operations: 0 });
        return true;
      },
      async onSubscribe(ctx, id, payload) {
        const st = state.get(ctx.extra);
        if (!st) return [new GraphQLError('Not authenticated', { extensions: { code: 'UNAUTHENTICATED' } })];
        if (st.operations >= opts.maxSubscriptionsPerConnection) {
          return [new GraphQLError('Too many operations on this connection', { extensions: { code: 'QUERY_TOO_COMPLEX' } })];
        }
        let document;
        try {
          if (!withinTokenLimit(payload.query)) return [new GraphQLError('Query has too many tokens', { extensions: { code: 'QUERY_TOO_COMPLEX' } })];
          document = parse(payload.query);
        } catch (e) {
          return [e instanceof GraphQLError ? e : new GraphQLError('Cannot parse the query', { extensions: { code: 'GRAPHQL_PARSE_FAILED' } })];
        }
        const errors = validate(schema, document, rules);
        if (errors.length) return errors.map((e) => new GraphQLError(e.message, { nodes: e.nodes, extensions: { code: e.extensions.code ?? 'GRAPHQL_VALIDATION_FAILED' } }));
        if (!getOperationAST(document, payload.operationName)) {
          return [new GraphQLError('Unknown operation', { extensions: { code: 'OPERATION_RESOLUTION_FAILURE' } })];
        }
        try {
          assertCost(schema, document, payload.variables ?? undefined, payload.operationName);
        } catch (e) {
          if (e instanceof GraphQLError) return [e];
          throw e;
        }
        st.operations++;
        const request = ctx.extra.request;
        const contextValue: GraphqlContext = {
          caller: st.caller,
          meta: { ip: opts.clientIp(request), userAgent: request.headers['user-agent'] ?? null },
          requestId: `ws-${id}`,
          services,
          // A subscription keeps this context for all its events: no memoised devices there.
          loaders: createLoaders(services, st.caller, { cache: getOperationAST(document, payload.operationName)?.operation !== 'subscription' }),
          log,
        };
        return { schema, document, variableValues: payload.variables ?? undefined, operationName: payload.operationName ?? undefined, contextValue };
      },
      onComplete(ctx) {
        const st = state.get(ctx.extra);
        if (st) st.operations = Math.max(0, st.operations - 1);
      },
      onError(_ctx, id, _payload, errors) {
        return errors.map((e) => formatGraphqlError(e.toJSON(), e, { production: opts.production, log, requestId: `ws-${id}` }));
      },
      onNext(_ctx, id, _payload, _args, result) {
        if (!result.errors?.length) return;
        return {
          ...result,
          errors: result.errors.map((e) => formatGraphqlError(e.toJSON(), e, { production: opts.production, log, requestId: `ws-${id}` })),
        };
      },
    },
    opts.wss,
  );
}
