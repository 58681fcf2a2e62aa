import { stringifyDocument } from '@urql/core';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import {
  ConsoleLoginDocument,
  ConsoleLogoutDocument,
  ConsoleRefreshDocument,
  ConsoleRegisterDocument,
  type ConsoleAuthFragment,
} from '../generated/graphql';
import { apiErrorOf, type ApiError } from './api-errors';

/**
 * The signed-in session. The access token lives in this object only (memory): never in storage, the
 * URL or a log. The refresh token is kept in one sessionStorage entry so that a reload of the tab
 * stays signed in; sessionStorage is this tab's alone and ends with it, the token is single-use and
 * rotated at every refresh, and the page's CSP admits no script but its own. Signing out, or a
 * refresh the server refuses, removes it.
 */
export interface Session {
  accessToken: string;
  expiresAt: number;
  refreshToken: string;
  user: ConsoleAuthFragment['user'];
}

export type SignInOutcome = { ok: true } | { ok: false; error: ApiError };

const STORAGE_KEY = 'vigil.console.refresh';
/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 60_000;

export const graphqlUrl = () => new URL('/graphql', window.location.href).toString();

/** One POST to /graphql; failures come back as an ApiError (never thrown, never raw JSON). */
export async function post<T, V>(doc: TypedDocumentNode<T, V>, variables: V, token?: string): Promise<{ data?: T; error?: ApiError }> {
  let res: Response;
  try {
    res = await fetch(graphqlUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query: stringifyDocument(doc), variables }),
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
  } catch {
    return { error: { code: 'NETWORK', message: '' } };
  }
  let body: { data?: T | null; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
  try {
    body = await res.json();
  } catch {
    return { error: { code: res.status === 429 ? 'RATE_LIMITED' : 'INTERNAL', message: '' } };
  }
  if (body.errors?.length) return { error: apiErrorOf(body.errors[0]!) };
  return body.data ? { data: body.data } : { error: { code: 'INTERNAL', message: '' } };
}

type Listener = () => void;

export class SessionStore {
  private current: Session | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private refreshing: Promise<boolean> | undefined;
  private listeners = new Set<Listener>();
  /** Why the last session ended, when the user did not ask for it (shown on the sign-in form). */
  endedReason: string | null = null;
  /** True until a stored refresh token has been tried after a reload. */
  restoring = false;

  constructor() {
    const stored = sessionStorage.getItem(STORAGE_KEY);
    if (stored) {
      this.restoring = true;
      void this.refresh(stored).finally(() => {
        this.restoring = false;
        this.emit();
      });
    }
  }

  get session(): Session | null {
    return this.current;
  }

  subscribe = (listener: Listener) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private emit() {
    for (const l of this.listeners) l();
  }

  private set(payload: ConsoleAuthFragment | null) {
    clearTimeout(this.timer);
    if (!payload) {
      this.current = null;
      sessionStorage.removeItem(STORAGE_KEY);
    } else {
      const expiresAt = Date.parse(payload.accessTokenExpiresAt);
      this.current = { accessToken: payload.accessToken, expiresAt, refreshToken: payload.refreshToken, user: payload.user };
      sessionStorage.setItem(STORAGE_KEY, payload.refreshToken);
      const wait = Math.max(5_000, expiresAt - Date.now() - REFRESH_MARGIN_MS);
      this.timer = setTimeout(() => void this.refresh(), wait);
    }
    this.emit();
  }

  async signIn(login: string, password: string, totp?: string): Promise<SignInOutcome> {
    const r = await post(ConsoleLoginDocument, { input: { login, password, ...(totp ? { totp } : {}) } });
    if (!r.data) return { ok: false, error: r.error! };
    this.endedReason = null;
    this.set(r.data.login);
    return { ok: true };
  }

  async register(email: string, password: string, displayName?: string): Promise<SignInOutcome> {
    const login = email.trim();
    const input = login.includes('@') ? { email: login, password, displayName } : { phone: login, password, displayName };
    const r = await post(ConsoleRegisterDocument, { input });
    if (!r.data) return { ok: false, error: r.error! };
    this.endedReason = null;
    this.set(r.data.register);
    return { ok: true };
  }

  /**
   * Trades the refresh token for a new pair. Concurrent callers share one attempt (the token is
   * single-use). False, and signed out, when the server refuses it (session ended elsewhere).
   */
  refresh(token = this.current?.refreshToken): Promise<boolean> {
    if (!token) return Promise.resolve(false);
    this.refreshing ??= (async () => {
      const r = await post(ConsoleRefreshDocument, { refreshToken: token });
      if (r.data) {
        this.set(r.data.refreshToken);
        return true;
      }
      if (r.error?.code === 'NETWORK') {
        // Offline for a moment: keep the session and try again shortly.
        clearTimeout(this.timer);
        this.timer = setTimeout(() => void this.refresh(), 10_000);
        return false;
      }
      if (this.current || this.restoring) this.endedReason = 'Your session ended (signed out here or from another device). Please sign in again.';
      this.set(null);
      return false;
    })().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** The API said UNAUTHENTICATED, or the live socket was closed as forbidden: refresh once or sign out. */
  async onUnauthenticated(): Promise<void> {
    if (this.current) await this.refresh();
  }

  async signOut(): Promise<void> {
    const s = this.current;
    this.endedReason = null;
    this.set(null);
    if (s) await post(ConsoleLogoutDocument, { refreshToken: s.refreshToken }, s.accessToken);
  }
}
