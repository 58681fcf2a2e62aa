/**
 * Base of every error a service throws on purpose. `code` is the area's own word; the GraphQL
 * boundary (src/schema/error-code.ts) maps it to the contract's ErrorCode. Anything that is not a
 * DomainError leaves the API as INTERNAL.
 */
export abstract class DomainError<Code extends string = string> extends Error {
  abstract readonly area: string;
  constructor(
    readonly code: Code,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

export type CommonErrorCode = 'BAD_INPUT' | 'UNAUTHENTICATED' | 'FORBIDDEN' | 'NOT_FOUND' | 'RATE_LIMITED' | 'TOO_COMPLEX';

/** Errors that any area raises: bad input, missing auth, invisible objects, limits. */
export class CommonError extends DomainError<CommonErrorCode> {
  readonly area = 'common' as const;
  override name = 'CommonError';

  static badInput(message: string) {
    return new CommonError('BAD_INPUT', message);
  }
  static unauthenticated(message = 'Authentication required') {
    return new CommonError('UNAUTHENTICATED', message);
  }
  static forbidden(message = 'Not allowed') {
    return new CommonError('FORBIDDEN', message);
  }
  static notFound(message = 'Not found') {
    return new CommonError('NOT_FOUND', message);
  }
  static rateLimited(retryAfterSeconds: number) {
    return new CommonError('RATE_LIMITED', 'Too many attempts; try again later', Math.max(1, Math.ceil(retryAfterSeconds)));
  }
}

export function assertUnreachable(value: never): never {
  throw new Error(`unreachable: ${String(value)}`);
}
