import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import type { Logger } from 'pino';
import { assertUnreachable, DomainError } from '../lib/domain-error';
import { ErrorCode, toErrorCode } from '../schema/error-code';

const CONTRACT_CODES = new Set<string>(Object.values(ErrorCode));
const isContractCode = (code: unknown): code is ErrorCode => typeof code === 'string' && CONTRACT_CODES.has(code);

/**
 * The HTTP status of a request refused with `code` before anything ran (the pipeline's refusals,
 * the HTTP route's own). Errors from a running operation leave with 200 beside their data.
 */
export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case ErrorCode.BAD_USER_INPUT:
    case ErrorCode.QUERY_TOO_COMPLEX:
    case ErrorCode.WEAK_PASSWORD:
    case ErrorCode.INVALID_CREDENTIALS:
    case ErrorCode.TOTP_REQUIRED:
    case ErrorCode.INVALID_RESET_CODE:
    case ErrorCode.DEVICE_ALREADY_BOUND:
    case ErrorCode.INVALID_VERIFICATION_CODE:
      return 400;
    case ErrorCode.UNAUTHENTICATED:
      return 401;
    case ErrorCode.FORBIDDEN:
      return 403;
    case ErrorCode.NOT_FOUND:
      return 404;
    case ErrorCode.RATE_LIMITED:
      return 429;
    case ErrorCode.INTERNAL:
      return 500;
    default:
      return assertUnreachable(code);
  }
}

/** `httpStatusOf` for a code read off an error; anything else is our fault (500). */
export const refusalStatus = (code: unknown): number => (isContractCode(code) ? httpStatusOf(code) : 500);

/** Codes found down an error's chain (graphql-js wraps resolver errors; limits tag their own). */
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
 * `retryAfterSeconds` for RATE_LIMITED, `requestId` when given, nothing internal. Unknown errors
 * are logged in full and leave as INTERNAL. In production, graphql-js "Did you mean" hints are
 * stripped.
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
  // The pipeline and the limit rules tag their refusals with a contract code.
  const tagged = codesInChain(error).find((c): c is ErrorCode => isContractCode(c) && c !== ErrorCode.INTERNAL);
  // graphql-js coercion errors (wrong argument or variable types) arrive without a code, an original error or a path.
  const coercion = error instanceof GraphQLError && !error.originalError && !formatted.extensions?.code && !formatted.path;
  if (tagged || coercion) {
    let message = formatted.message;
    if (opts.production) message = message.replace(/ Did you mean .*$/s, '');
    return { message, ...base, extensions: withId({ code: tagged ?? ErrorCode.BAD_USER_INPUT }) };
  }
  opts.log?.error({ err: original, requestId: opts.requestId, path: formatted.path }, 'internal error');
  return { message: 'Internal error', ...base, extensions: withId({ code: ErrorCode.INTERNAL }) };
}
