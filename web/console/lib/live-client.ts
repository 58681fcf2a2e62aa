import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { cacheExchange, Client, fetchExchange, mapExchange, subscriptionExchange } from '@urql/core';
import { graphqlUrl, type SessionStore } from './session-store';

export interface ApiClients {
  urql: Client;
  ws: WsClient;
  dispose(): void;
}

/** graphql-ws's close code for a refused or ended credential. */
const FORBIDDEN = 4403;

function graphqlWsUrl(): string {
  const url = new URL('/graphql', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

/**
 * The console's two transports for one signed-in session: urql over HTTP for queries and
 * mutations, graphql-ws for subscriptions, both carrying the current access token. A socket closed
 * as forbidden (the session ended elsewhere) or an UNAUTHENTICATED answer makes the store refresh
 * once, which signs the page out when the server refuses.
 */
export function createApiClients(store: SessionStore): ApiClients {
  const ws = createWsClient({
    url: graphqlWsUrl(),
    lazy: true,
    connectionParams: () => ({ authorization: `Bearer ${store.session?.accessToken ?? ''}` }),
    retryAttempts: Infinity,
    shouldRetry: (event) => {
      const code = (event as { code?: number } | null)?.code;
      if (code === FORBIDDEN) {
        void store.onUnauthenticated();
        return false;
      }
      return true;
    },
  });
  const urql = new Client({
    url: graphqlUrl(),
    requestPolicy: 'cache-and-network',
    // POST only: nothing of an operation goes into a URL, and Apollo's CSRF guard refuses a bare GET.
    preferGetMethod: false,
    fetchOptions: () => ({
      headers: { authorization: `Bearer ${store.session?.accessToken ?? ''}` },
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    }),
    exchanges: [
      mapExchange({
        onError(error) {
          if (error.graphQLErrors.some((e) => e.extensions?.code === 'UNAUTHENTICATED')) void store.onUnauthenticated();
        },
      }),
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || '' };
          return {
            subscribe(sink) {
              return { unsubscribe: ws.subscribe(input, sink) };
            },
          };
        },
      }),
    ],
  });
  return { urql, ws, dispose: () => void ws.dispose() };
}
