import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { safeEqual, sha256 } from '../lib/secrets';
import type { Metrics } from './metrics';

export interface HealthRouteOptions {
  /** Resolves when the node can serve (database reachable and migrated); rejects otherwise. */
  ready(): Promise<{ database: string }>;
  metrics: Metrics;
  /** Bearer token `/metrics` requires (METRICS_TOKEN); unset, `/metrics` is open. */
  metricsToken: string | undefined;
  log: Logger;
}

/** `/healthz` (process alive), `/readyz` (database reachable and migrated), `/metrics` (Prometheus). */
export function registerHealthRoutes(fastify: FastifyInstance, opts: HealthRouteOptions): void {
  fastify.get('/healthz', async () => ({ status: 'ok' }));
  fastify.get('/readyz', async (_req, reply) => {
    try {
      const { database } = await opts.ready();
      return { status: 'ready', database };
    } catch (err) {
      opts.log.warn({ err }, 'readiness check failed');
      return reply.code(503).send({ status: 'unavailable' });
    }
  });
  const expected = opts.metricsToken === undefined ? undefined : sha256(opts.metricsToken);
  fastify.get('/metrics', async (request, reply) => {
    if (expected !== undefined) {
      const bearer = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
      // Hashes compared in constant time: the token's length and prefix leak nothing.
      if (!bearer || !safeEqual(sha256(bearer), expected)) {
        return reply.code(401).header('www-authenticate', 'Bearer realm="metrics"').send({ error: 'unauthorized' });
      }
    }
    reply.header('content-type', opts.metrics.registry.contentType);
    return opts.metrics.registry.metrics();
  });
}
