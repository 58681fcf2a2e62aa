/**
 * Sign-in for the explorer page: talks to the same `/graphql` endpoint as GraphiQL. Tokens live
 * only in this page's memory (never in the URL or in storage): a reload signs out.
 */

export interface Session {
  kind: 'password' | 'apiKey';
  accessToken: string;
  /** Password sign-in only: rotated on every refresh, sent to `logout` on sign-out. */
  refreshToken?: string;
  accessTokenExpiresAt?: Date;
  /** What the page shows: the account's email, phone or name, or the key's prefix. */
  label: string;
}

export type SignInResult =
  | { ok: true; session: Session }
  | { ok: false; code: string; message: string };

interface GraphqlError {
  message: string;
  extensions?: { code?: string; retryAfterSeconds?: number };
}

interface UserLabel {
  id: string;
  email?: string | null;
  phone?: string | null;
  displayName?: string | null;
}

export const graphqlUrl = () => new URL('/graphql', window.location.href).toString();

export function graphqlWsUrl(): string {
  const url = new URL('/graphql', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

async function post<T>(query: string, variables: Record<string, unknown>, token?: string): Promise<{ data?: T | null; errors?: GraphqlError[] }> {
  const res = await fetch(graphqlUrl(), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  try {
    return (await res.json()) as { data?: T | null; errors?: GraphqlError[] };
  } catch {
    return { errors: [{ message: `The server answered ${res.status}`, extensions: { code: 'INTERNAL' } }] };
  }
}

function failure(errors: GraphqlError[] | undefined): { ok: false; code: string; message: string } {
  const e = errors?.[0];
  const code = e?.extensions?.code ?? 'INTERNAL';
  switch (code) {
    case 'INVALID_CREDENTIALS':
      return { ok: false, code, message: 'Wrong login, password or code.' };
    case 'TOTP_REQUIRED':
      return { ok: false, code, message: 'This account uses two-factor authentication: enter the 6-digit code or a recovery code.' };
    case 'RATE_LIMITED': {
      const after = e?.extensions?.retryAfterSeconds;
      return { ok: false, code, message: `Too many attempts; try again${after ? ` in ${after} s` : ' later'}.` };
    }
    case 'UNAUTHENTICATED':
      return { ok: false, code, message: 'The server does not accept this key or token.' };
    default:
      return { ok: false, code, message: e?.message ?? 'Sign-in failed.' };
  }
}

const labelOf = (u: UserLabel) => u.email ?? u.phone ?? u.displayName ?? u.id;

const AUTH_FIELDS = 'accessToken accessTokenExpiresAt refreshToken user { id email phone displayName }';
interface AuthPayload {
  accessToken: string;
  accessTokenExpiresAt: string;
  refreshToken: string;
  user: UserLabel;
}

/** Email/phone + password, and the TOTP (or recovery) code when the server asked for it. */
export async function signInWithPassword(login: string, password: string, totp?: string): Promise<SignInResult> {
  const input = { login, password, ...(totp ? { totp } : {}) };
  const r = await post<{ login: AuthPayload }>(`mutation ExplorerLogin($input: LoginInput!) { login(input: $input) { ${AUTH_FIELDS} } }`, { input });
  if (!r.data?.login) return failure(r.errors);
  const p = r.data.login;
  return {
    ok: true,
    session: {
      kind: 'password',
      accessToken: p.accessToken,
      refreshToken: p.refreshToken,
      accessTokenExpiresAt: new Date(p.accessTokenExpiresAt),
      label: labelOf(p.user),
    },
  };
}

/** A pasted API key (or an access token): checked with `me` before the page uses it. */
export async function signInWithKey(key: string): Promise<SignInResult> {
  const token = key.trim().replace(/^Bearer\s+/i, '');
  if (!token) return { ok: false, code: 'BAD_USER_INPUT', message: 'Paste an API key.' };
  const r = await post<{ me: UserLabel }>('query ExplorerMe { me { id email phone displayName } }', {}, token);
  if (!r.data?.me) return failure(r.errors);
  // API keys start with a public prefix (`vgk_` + 8 hex) worth showing; nothing else is shown.
  const prefix = /^vgk_[0-9a-f]{8}/.exec(token)?.[0];
  return { ok: true, session: { kind: 'apiKey', accessToken: token, label: `${labelOf(r.data.me)} (${prefix ? `key ${prefix}…` : 'pasted token'})` } };
}

/** Rotates the refresh token for a new access token; undefined when the session has ended. */
export async function refreshSession(s: Session): Promise<Session | undefined> {
  if (!s.refreshToken) return undefined;
  const r = await post<{ refreshToken: AuthPayload }>(
    `mutation ExplorerRefresh($refreshToken: String!) { refreshToken(refreshToken: $refreshToken) { ${AUTH_FIELDS} } }`,
    { refreshToken: s.refreshToken },
  );
  const p = r.data?.refreshToken;
  if (!p) return undefined;
  return { ...s, accessToken: p.accessToken, refreshToken: p.refreshToken, accessTokenExpiresAt: new Date(p.accessTokenExpiresAt), label: labelOf(p.user) };
}

/** Ends the server-side session of a password sign-in; an API key is only forgotten. */
export async function signOut(s: Session): Promise<void> {
  if (!s.refreshToken) return;
  await post('mutation ExplorerLogout($refreshToken: String!) { logout(refreshToken: $refreshToken) }', { refreshToken: s.refreshToken }, s.accessToken).catch(() => {});
}
