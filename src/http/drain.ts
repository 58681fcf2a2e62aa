import type { FastifyInstance } from 'fastify';

/**
 * Graceful stop for keep-alive clients: once `draining()` is true, every response still being
 * answered goes out with `Connection: close`, so its socket ends with it and `fastify.close()`
 * (which closes idle sockets itself) does not wait on it.
 */
export function closeConnectionsWhenDraining(fastify: FastifyInstance, draining: () => boolean): void {
  fastify.addHook('onSend', async (_request, reply) => {
    if (draining()) reply.header('connection', 'close');
  });
}
