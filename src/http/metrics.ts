import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One registry per app, so several apps in one test process don't collide. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    graphqlRequests: new Counter({
      name: 'vigil_graphql_requests_total',
      help: 'GraphQL operations by operation (type.rootField) and outcome',
      labelNames: ['operation', 'outcome'] as const,
      registers: [registry],
    }),
    graphqlDuration: new Histogram({
      name: 'vigil_graphql_request_duration_seconds',
      help: 'GraphQL operation duration by operation (type.rootField)',
      labelNames: ['operation'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    openWebSockets: new Gauge({
      name: 'vigil_open_websockets',
      help: 'Open WebSocket connections by endpoint',
      labelNames: ['endpoint'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
