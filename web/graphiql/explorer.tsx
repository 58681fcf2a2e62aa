// The explorer page served at /graphiql: a sign-in bar above GraphiQL. Bundled (with monaco and
// its workers) by scripts/build-graphiql.mjs; nothing is fetched from anywhere but this gateway.
import './workers';
// graphiql/style.css would inline monaco's and GraphiQL's fonts and images as data: URLs (and
// need a looser CSP); these are the same sheets with the fonts as files, or system fonts.
import 'monaco-editor/min/vs/editor/editor.main.css';
import '@graphiql/react/style.css';
import '@graphiql/plugin-doc-explorer/style.css';
import '@graphiql/plugin-history/style.css';
import 'graphiql/graphiql.css';
import './explorer.css';
import { createGraphiQLFetcher, type Fetcher } from '@graphiql/toolkit';
import { GraphiQL } from 'graphiql';
import { createClient, type Client } from 'graphql-ws';
import { useEffect, useMemo, useRef, useState, type FormEvent } from 'react';
import { createRoot } from 'react-dom/client';
import { exampleTabs } from './examples';
import { graphqlUrl, graphqlWsUrl, refreshSession, signInWithKey, signInWithPassword, signOut, type Session } from './session';

/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 60_000;

function hasAuthorization(headers: HeadersInit | undefined): boolean {
  return new Headers(headers).has('authorization');
}

/**
 * One fetcher per signed-in identity: HTTP for queries and mutations, graphql-ws on the same
 * `/graphql` for subscriptions. The token is read from `token` at each request and at each
 * (re)connection, so a refreshed access token is used without tearing down live subscriptions;
 * a new identity gets a new fetcher and a new WebSocket client.
 */
function createFetcher(token: { current: string | undefined }): { fetcher: Fetcher; ws: Client } {
  const ws = createClient({
    url: graphqlWsUrl(),
    lazy: true,
    retryAttempts: 3,
    // 4403: the server refused the connection params (not signed in, or the token ended).
    shouldRetry: (e) => !(e instanceof CloseEvent && e.code === 4403),
    connectionParams: () => (token.current ? { authorization: `Bearer ${token.current}` } : {}),
  });
  const fetcher = createGraphiQLFetcher({
    url: graphqlUrl(),
    wsClient: ws,
    enableIncrementalDelivery: false,
    // A header typed into GraphiQL's headers editor wins over the signed-in token.
    fetch: (input, init) =>
      fetch(input, {
        ...init,
        credentials: 'omit',
        headers: hasAuthorization(init?.headers) || !token.current ? init?.headers : { ...(init?.headers as Record<string, string>), authorization: `Bearer ${token.current}` },
      }),
  });
  return { fetcher, ws };
}

function SignInBar({ session, onSession }: { session: Session | null; onSession(s: Session | null): void }) {
  const [mode, setMode] = useState<'password' | 'apiKey'>('password');
  const [login, setLogin] = useState('');
  const [password, setPassword] = useState('');
  const [totp, setTotp] = useState('');
  const [needTotp, setNeedTotp] = useState(false);
  const [apiKey, setApiKey] = useState('');
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<string | null>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setMessage(null);
    try {
      const r = mode === 'password' ? await signInWithPassword(login.trim(), password, needTotp ? totp.trim() : undefined) : await signInWithKey(apiKey);
      if (r.ok) {
        setPassword('');
        setTotp('');
        setApiKey('');
        setNeedTotp(false);
        onSession(r.session);
      } else {
        if (r.code === 'TOTP_REQUIRED') setNeedTotp(true);
        setMessage(r.message);
      }
    } catch {
      setMessage('Cannot reach the server.');
    } finally {
      setBusy(false);
    }
  }

  if (session) {
    return (
      <div className="vigil-bar" role="region" aria-label="Sign-in">
        <span className="vigil-title">Vigil API explorer</span>
        <span className="vigil-who" data-testid="signed-in-as">
          Signed in as <strong>{session.label}</strong>
        </span>
        <button
          type="button"
          onClick={async () => {
            onSession(null);
            await signOut(session);
          }}
        >
          Sign out
        </button>
      </div>
    );
  }

  return (
    <form className="vigil-bar" aria-label="Sign in" onSubmit={submit} autoComplete="on">
      <span className="vigil-title">Vigil API explorer</span>
      {mode === 'password' ? (
        <>
          <label>
            Email or phone
            <input name="username" autoComplete="username" required value={login} onChange={(e) => setLogin(e.target.value)} />
          </label>
          <label>
            Password
            <input name="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
          </label>
          {needTotp && (
            <label>
              Authentication code
              <input name="totp" autoComplete="one-time-code" inputMode="numeric" required autoFocus value={totp} onChange={(e) => setTotp(e.target.value)} />
            </label>
          )}
        </>
      ) : (
        <label>
          API key
          <input name="apiKey" type="password" autoComplete="off" required value={apiKey} onChange={(e) => setApiKey(e.target.value)} />
        </label>
      )}
      <button type="submit" disabled={busy}>
        {busy ? 'Signing in…' : 'Sign in'}
      </button>
      <button
        type="button"
        className="vigil-link"
        onClick={() => {
          setMode(mode === 'password' ? 'apiKey' : 'password');
          setMessage(null);
        }}
      >
        {mode === 'password' ? 'Use an API key instead' : 'Use email and password instead'}
      </button>
      {message && (
        <span className="vigil-message" role="alert">
          {message}
        </span>
      )}
      {!message && <span className="vigil-hint">Not signed in: subscriptions, your data and (in production) the docs need a sign-in.</span>}
    </form>
  );
}

function Explorer() {
  const [session, setSession] = useState<Session | null>(null);
  const token = useRef<string | undefined>(undefined);
  token.current = session?.accessToken;

  // A new identity (sign-in, sign-out, another key) gets a new fetcher: GraphiQL then
  // introspects again (production hides the schema from anonymous callers).
  const identity = session ? `${session.kind}:${session.label}` : 'anonymous';
  const { fetcher, ws } = useMemo(() => createFetcher(token), [identity]);
  useEffect(() => () => void ws.dispose(), [ws]);

  // Keep a password sign-in alive: rotate the refresh token a minute before the access token ends.
  useEffect(() => {
    if (!session?.refreshToken || !session.accessTokenExpiresAt) return;
    const delay = Math.max(5_000, session.accessTokenExpiresAt.getTime() - Date.now() - REFRESH_MARGIN_MS);
    const timer = setTimeout(async () => {
      const next = await refreshSession(session).catch(() => undefined);
      setSession(next ?? null);
    }, delay);
    return () => clearTimeout(timer);
  }, [session]);

  return (
    <div className="vigil-page">
      <SignInBar session={session} onSession={setSession} />
      <div className="vigil-graphiql">
        <GraphiQL
          fetcher={fetcher}
          defaultTabs={exampleTabs}
          // Tabs, variables and history can hold passwords (unbind's step-up): keep them for this
          // browser tab only, not in localStorage. Headers are never persisted.
          storage={window.sessionStorage}
          shouldPersistHeaders={false}
          showPersistHeadersSettings={false}
          defaultEditorToolsVisibility="variables"
        >
          <GraphiQL.Logo>Vigil</GraphiQL.Logo>
        </GraphiQL>
      </div>
    </div>
  );
}

createRoot(document.getElementById('root')!).render(<Explorer />);
