import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import type { Logger } from 'pino';
import { DomainError } from '../lib/domain-error';
import { ErrorCode, toErrorCode } from '../schema/error-code';

/** Codes that graphql-js and Apollo give to malformed requests; all reach the client as BAD_USER_INPUT. */
const REQUEST_ERROR_CODES = new Set([
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_USER_INPUT',
  'BAD_REQUEST',
  'OPERATION_RESOLUTION_FAILURE',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
]);

function codesInChain(error: unknown): unknown[] {
  const codes: unknown[] = [];
  for (let e = error, i = 0; e instanceof GraphQLError && i < 5; e = e.originalError, i++) codes.push(e.extensions?.code);
  return codes;
}

function originalOf(error: unknown): unknown {
  let e = error;
  while (e instanceof GraphQLError && e.originalError && e.originalError !== e) e = e.originalError;
  return e;
}

/**
 * The single place an error becomes what a client sees: a contract ErrorCode, a safe message,
 * `retryAfterSeconds` for RATE_LIMITED, nothing internal. Unknown errors are logged in full and
 * leave as INTERNAL. In production, graphql-js "Did you mean" hints are stripped.
 */
export function formatGraphqlError(
  formatted: GraphQLFormattedError,
  error: unknown,
  opts: { production: boolean; log?: Logger; requestId?: string },
): GraphQLFormattedError {
  const original = originalOf(error);
  const base = { locations: formatted.locations, path: formatted.path };
  const withId = (ext: Record<string, unknown>) => (opts.requestId ? { ...ext, requestId: opts.requestId } : ext);

  if (original instanceof DomainError) {
    const code = toErrorCode(original);
    if (code !== ErrorCode.INTERNAL) {
      const ext: Record<string, unknown> = { code };
      if (original.retryAfterSeconds) ext.retryAfterSeconds = original.retryAfterSeconds;
      return { message: original.message, ...base, extensions: withId(ext) };
    }
  }
  const existing = formatted.extensions?.code;
  // Limit rules and the introspection gate tag their errors; Apollo re-wraps validation errors
  // (as GRAPHQL_VALIDATION_FAILED), so look down the chain for the tag.
  const tagged = codesInChain(error).find((c) => c === ErrorCode.QUERY_TOO_COMPLEX || c === ErrorCode.UNAUTHENTICATED);
  if (tagged) return { message: formatted.message, ...base, extensions: withId({ code: tagged }) };
  if (typeof existing === 'string' && REQUEST_ERROR_CODES.has(existing)) {
    let message = formatted.message;
    if (opts.production) message = message.replace(/ Did you mean .*$/s, '');
    return { message, ...base, extensions: withId({ code: ErrorCode.BAD_USER_INPUT }) };
  }
  // graphql-js coercion errors (wrong variable types etc.) arrive without a code and without an original error.
  if (error instanceof GraphQLError && !error.originalError && !existing && !formatted.path) {
    return { message: formatted.message, ...base, extensions: withId({ code: ErrorCode.BAD_USER_INPUT }) };
  }
  opts.log?.error({ err: original, requestId: opts.requestId, path: formatted.path }, 'internal error');
  return { message: 'Internal error', ...base, extensions: withId({ code: ErrorCode.INTERNAL }) };
}
