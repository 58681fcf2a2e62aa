import { lazy, Suspense, useId, useState } from 'react';
import { useMutation, useQuery } from 'urql';
import { ConsoleMeDocument, TotpConfirmDocument, TotpDisableDocument, TotpEnableDocument } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';
import { Notice } from '../ui/notice';

const TotpQrCode = lazy(() => import('./totp-qr-code').then((m) => ({ default: m.TotpQrCode })));

/** Two-factor authentication: enrol with a QR code, confirm with a code, recovery codes shown once. */
export function TwoFactorPanel() {
  const id = useId();
  const [me, refetchMe] = useQuery({ query: ConsoleMeDocument });
  const [enrolment, enable] = useMutation(TotpEnableDocument);
  const [confirmation, confirm] = useMutation(TotpConfirmDocument);
  const [disabling, disable] = useMutation(TotpDisableDocument);
  const [code, setCode] = useState('');
  const [password, setPassword] = useState('');
  const [recovery, setRecovery] = useState<string[] | null>(null);
  const [off, setOff] = useState(false);
  const enabled = me.data?.me.totpEnabled;
  const pending = enrolment.data?.enableTotp;
  const error = enrolment.error ?? confirmation.error ?? disabling.error;
  return (
    <section aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>Two-factor authentication</h2>
      <ErrorAlert
        error={error && fromCombined(error)}
        overrides={{ INVALID_CREDENTIALS: confirmation.error ? 'That code is wrong. Enter the current 6 digits from the app.' : 'The password is wrong.' }}
      />
      {recovery && (
        <div role="status" className="notice">
          <p>Two-factor authentication is on. Keep these recovery codes somewhere safe: each signs you in once without the app. They are shown only now.</p>
          <ul aria-label="Recovery codes" className="codes">
            {recovery.map((c) => (
              <li key={c}>
                <code>{c}</code>
              </li>
            ))}
          </ul>
        </div>
      )}
      {off && <Notice>Two-factor authentication is off.</Notice>}
      {enabled === false && !pending && (
        <>
          <p>Off. With it on, signing in also asks for a code from an authenticator app.</p>
          <button type="button" disabled={enrolment.fetching} onClick={() => void enable({})}>
            Turn on two-factor authentication
          </button>
        </>
      )}
      {enabled === false && pending && (
        <form
          aria-label="Confirm two-factor authentication"
          onSubmit={async (e) => {
            e.preventDefault();
            const r = await confirm({ code: code.trim() });
            if (r.data) {
              setRecovery(r.data.confirmTotp);
              setCode('');
              refetchMe({ requestPolicy: 'network-only' });
            }
          }}
        >
          <p>Scan this QR code with your authenticator app, or type the key into it, then enter the code it shows.</p>
          <Suspense fallback={<p>Loading the QR code…</p>}>
            <TotpQrCode url={pending.otpauthUrl} />
          </Suspense>
          <p>
            Key: <code data-testid="totp-secret">{pending.secret}</code>
          </p>
          <label htmlFor={`${id}-code`}>Code</label>
          <input id={`${id}-code`} inputMode="numeric" autoComplete="one-time-code" required value={code} onChange={(e) => setCode(e.target.value)} />
          <button type="submit" disabled={confirmation.fetching}>
            Confirm
          </button>
        </form>
      )}
      {enabled && (
        <form
          aria-label="Turn off two-factor authentication"
          onSubmit={async (e) => {
            e.preventDefault();
            const r = await disable({ password });
            if (r.data?.disableTotp) {
              setOff(true);
              setRecovery(null);
              setPassword('');
              refetchMe({ requestPolicy: 'network-only' });
            }
          }}
        >
          <p>On.</p>
          <label htmlFor={`${id}-password`}>Password</label>
          <input id={`${id}-password`} type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
          <button type="submit" disabled={disabling.fetching}>
            Turn off two-factor authentication
          </button>
        </form>
      )}
    </section>
  );
}
