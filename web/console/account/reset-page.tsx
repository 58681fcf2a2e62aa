import { useEffect, useId, useState } from 'react';
import { ResetConfirmDocument, ResetRequestDocument } from '../generated/graphql';
import type { ApiError } from '../lib/api-errors';
import { post } from '../lib/session-store';
import { ErrorAlert } from '../ui/error-alert';
import { NewPasswordFields, newPasswordReady, type NewPasswordValue } from './new-password-fields';

type Step = { kind: 'link'; token: string } | { kind: 'ask' } | { kind: 'code'; login: string } | { kind: 'done' };

/** Takes the token out of the address bar at once: it is kept in memory only, never stored or sent elsewhere. */
function takeTokenFromUrl(): string | null {
  const url = new URL(window.location.href);
  const token = url.searchParams.get('token');
  if (url.search || url.hash) window.history.replaceState(null, '', url.pathname);
  return token && token.length <= 512 ? token : null;
}

const EXPIRED_LINK = 'This link has expired or was already used. Ask for a new one below.';
const WRONG_CODE = 'This code is wrong, has expired or was already used. Check the latest message, or ask for a new code.';

/** GET /reset: from the mail's link (token), or by email/phone and the 6-digit code. */
export function ResetPage() {
  const [step, setStep] = useState<Step>(() => {
    const token = takeTokenFromUrl();
    return token ? { kind: 'link', token } : { kind: 'ask' };
  });
  useEffect(() => {
    document.querySelector<HTMLElement>('main input')?.focus();
  }, [step.kind]);
  return (
    <main className="narrow">
      <h1>Reset your password</h1>
      {step.kind === 'ask' && <AskForReset onSent={(login) => setStep({ kind: 'code', login })} />}
      {step.kind === 'link' && <ChooseNewPassword token={step.token} onDone={() => setStep({ kind: 'done' })} onAskAgain={() => setStep({ kind: 'ask' })} />}
      {step.kind === 'code' && <ChooseNewPassword login={step.login} onDone={() => setStep({ kind: 'done' })} onAskAgain={() => setStep({ kind: 'ask' })} />}
      {step.kind === 'done' && (
        <div role="status" className="notice">
          <p>Password changed. Every other session of your account was signed out.</p>
          <p>
            <a href="/">Sign in with your new password</a>
          </p>
        </div>
      )}
    </main>
  );
}

function AskForReset({ onSent }: { onSent: (login: string) => void }) {
  const id = useId();
  const [login, setLogin] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  return (
    <form
      aria-label="Ask for a reset code"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setError(null);
        const r = await post(ResetRequestDocument, { login: login.trim() });
        setBusy(false);
        if (r.error) setError(r.error);
        else onSent(login.trim());
      }}
    >
      <p>Enter the email or phone number of your account. We send a link and a 6-digit code to it.</p>
      <label htmlFor={`${id}-login`}>Email or phone</label>
      <input id={`${id}-login`} autoComplete="username" required value={login} onChange={(e) => setLogin(e.target.value)} />
      <ErrorAlert error={error} />
      <button type="submit" disabled={busy}>
        Send reset code
      </button>
      <p>
        <a href="/">Back to sign in</a>
      </p>
    </form>
  );
}

function ChooseNewPassword({ token, login, onDone, onAskAgain }: { token?: string; login?: string; onDone: () => void; onAskAgain: () => void }) {
  const id = useId();
  const [code, setCode] = useState('');
  const [value, setValue] = useState<NewPasswordValue>({ password: '', confirm: '' });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  return (
    <form
      aria-label="Choose a new password"
      onSubmit={async (e) => {
        e.preventDefault();
        if (!newPasswordReady(value)) return;
        setBusy(true);
        setError(null);
        const input = token ? { token, newPassword: value.password } : { login, code: code.trim(), newPassword: value.password };
        const r = await post(ResetConfirmDocument, { input });
        setBusy(false);
        if (r.data?.confirmReset) onDone();
        else setError(r.error ?? { code: 'INTERNAL', message: '' });
      }}
    >
      {login && (
        <>
          <p>If an account uses {login}, a message with a 6-digit code is on its way. It may take a minute; check spam too.</p>
          <label htmlFor={`${id}-code`}>Code</label>
          <input
            id={`${id}-code`}
            inputMode="numeric"
            autoComplete="one-time-code"
            pattern="[0-9]{6}"
            maxLength={6}
            required
            value={code}
            onChange={(e) => setCode(e.target.value)}
          />
        </>
      )}
      <NewPasswordFields value={value} onChange={setValue} />
      <ErrorAlert error={error} overrides={{ INVALID_RESET_CODE: token ? EXPIRED_LINK : WRONG_CODE }}>
        {error?.code === 'INVALID_RESET_CODE' && (
          <button type="button" onClick={onAskAgain}>
            Ask for a new {token ? 'link' : 'code'}
          </button>
        )}
      </ErrorAlert>
      <button type="submit" disabled={busy || !newPasswordReady(value)}>
        Reset password
      </button>
    </form>
  );
}
