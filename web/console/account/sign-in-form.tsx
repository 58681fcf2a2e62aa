import { useId, useState } from 'react';
import type { ApiError } from '../lib/api-errors';
import { useStore } from '../lib/api-context';
import { ErrorAlert } from '../ui/error-alert';

/** Email or phone + Password; a Code field appears when the account has two-factor authentication. */
export function SignInForm({ onRegister }: { onRegister: () => void }) {
  const id = useId();
  const store = useStore();
  const [login, setLogin] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [needCode, setNeedCode] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  return (
    <form
      aria-label="Sign in"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setError(null);
        const r = await store.signIn(login.trim(), password, needCode ? code.trim() : undefined);
        setBusy(false);
        if (r.ok) return;
        if (r.error.code === 'TOTP_REQUIRED') {
          if (!needCode) {
            setNeedCode(true);
            setError(r.error);
            queueMicrotask(() => document.getElementById(`${id}-code`)?.focus());
            return;
          }
        }
        setError(r.error);
      }}
    >
      <h1>Sign in to Vigil</h1>
      {store.endedReason && (
        <p role="alert" className="error">
          {store.endedReason}
        </p>
      )}
      <label htmlFor={`${id}-login`}>Email or phone</label>
      <input id={`${id}-login`} autoComplete="username" required value={login} onChange={(e) => setLogin(e.target.value)} />
      <label htmlFor={`${id}-password`}>Password</label>
      <input id={`${id}-password`} type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
      {needCode && (
        <>
          <label htmlFor={`${id}-code`}>Code</label>
          <input id={`${id}-code`} autoComplete="one-time-code" required value={code} onChange={(e) => setCode(e.target.value)} aria-describedby={`${id}-code-hint`} />
          <p id={`${id}-code-hint`} className="hint">
            The 6 digits from your authenticator app, or one of your recovery codes.
          </p>
        </>
      )}
      <ErrorAlert
        error={error}
        overrides={{ INVALID_CREDENTIALS: needCode ? 'Wrong login, password or code.' : 'Wrong login or password.' }}
      />
      <button type="submit" disabled={busy}>
        Sign in
      </button>
      <p>
        <a href="/reset">Forgot password?</a>
      </p>
      <p>
        New here?{' '}
        <button type="button" className="link" onClick={onRegister}>
          Create an account
        </button>
      </p>
    </form>
  );
}
