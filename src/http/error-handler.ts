import type { FastifyInstance } from 'fastify';
import { ErrorCode } from '../schema/error-code';
import { refusalBody } from './graphql.route';

/**
 * Errors Fastify raises before a route answers (body too large, unparsable JSON, unsupported
 * content type) in the GraphQL error shape, with the request id: 4xx + BAD_USER_INPUT for the
 * client's, 500 + INTERNAL (logged) for ours.
 */
export function registerErrorHandler(fastify: FastifyInstance): void {
  fastify.setErrorHandler((error: { code?: string; statusCode?: number }, request, reply) => {
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.code(413).send(refusalBody(request.id, ErrorCode.BAD_USER_INPUT, 'Request body too large'));
    const clientError = !!error.statusCode && error.statusCode >= 400 && error.statusCode < 500;
    if (!clientError) request.log.error({ err: error }, 'unhandled error');
    return reply
      .code(clientError ? error.statusCode! : 500)
      .send(clientError ? refusalBody(request.id, ErrorCode.BAD_USER_INPUT, 'Bad request') : refusalBody(request.id, ErrorCode.INTERNAL, 'Internal error'));
  });
}
