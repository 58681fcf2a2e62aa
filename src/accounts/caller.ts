import { CommonError } from '../lib/domain-error';

export const API_SCOPES = ['DEVICES_READ', 'DEVICES_WRITE', 'ALARMS_READ', 'SHARES_WRITE'] as const;
export type ApiScope = (typeof API_SCOPES)[number];

/** Who is calling: a signed-in session, or a partner's API key limited to its scopes. */
export type Caller =
  | { kind: 'session'; userId: string; sessionId: string }
  | { kind: 'apiKey'; userId: string; apiKeyId: string; scopes: readonly ApiScope[] };

/** Throws UNAUTHENTICATED without a caller, FORBIDDEN when an API key lacks `scope`. */
export function requireCaller(caller: Caller | null, scope?: ApiScope): Caller {
  if (!caller) throw CommonError.unauthenticated();
  if (scope && caller.kind === 'apiKey' && !caller.scopes.includes(scope)) {
    throw CommonError.forbidden(`This API key lacks the ${scope} scope`);
  }
  return caller;
}

/** Account management (passwords, sessions, 2FA, keys) is for people, not for API keys. */
export function requireSessionCaller(caller: Caller | null): Extract<Caller, { kind: 'session' }> {
  const c = requireCaller(caller);
  if (c.kind !== 'session') throw CommonError.forbidden('API keys cannot manage the account');
  return c;
}
