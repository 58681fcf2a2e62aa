import { useId, useState } from 'react';
import type { ApiError } from '../lib/api-errors';
import { useStore } from '../lib/api-context';
import { ErrorAlert } from '../ui/error-alert';
import { NewPasswordFields, newPasswordReady, type NewPasswordValue } from './new-password-fields';

/** Creates an account with an email or a phone number, then signs in. */
export function RegisterForm({ onSignIn }: { onSignIn: () => void }) {
  const id = useId();
  const store = useStore();
  const [login, setLogin] = useState('');
  const [name, setName] = useState('');
  const [value, setValue] = useState<NewPasswordValue>({ password: '', confirm: '' });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const identity = login.includes('@') ? { email: login.trim().toLowerCase(), displayName: name } : { phone: login.trim(), displayName: name };
  return (
    <form
      aria-label="Create an account"
      onSubmit={async (e) => {
        e.preventDefault();
        if (!newPasswordReady(value)) return;
        setBusy(true);
        setError(null);
        const r = await store.register(login, value.password, name.trim() || undefined);
        setBusy(false);
        if (!r.ok) setError(r.error);
      }}
    >
      <h1>Create an account</h1>
      <label htmlFor={`${id}-login`}>Email or phone</label>
      <input id={`${id}-login`} autoComplete="username" required value={login} onChange={(e) => setLogin(e.target.value)} />
      <label htmlFor={`${id}-name`}>Your name (optional)</label>
      <input id={`${id}-name`} autoComplete="name" value={name} onChange={(e) => setName(e.target.value)} />
      <NewPasswordFields value={value} onChange={setValue} identity={identity} />
      <ErrorAlert error={error} overrides={{ BAD_USER_INPUT: error?.message ? `Please check what you entered: ${error.message}` : undefined }} />
      <button type="submit" disabled={busy || !newPasswordReady(value)}>
        Create account
      </button>
      <p>
        Have an account?{' '}
        <button type="button" className="link" onClick={onSignIn}>
          Sign in
        </button>
      </p>
    </form>
  );
}
