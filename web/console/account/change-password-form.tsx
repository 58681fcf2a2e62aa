import { useId, useState } from 'react';
import { useMutation } from 'urql';
import { ChangePasswordDocument } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { useSession } from '../lib/use-session';
import { ErrorAlert } from '../ui/error-alert';
import { Notice } from '../ui/notice';
import { NewPasswordFields, newPasswordReady, type NewPasswordValue } from './new-password-fields';

export function ChangePasswordForm() {
  const id = useId();
  const session = useSession();
  const [current, setCurrent] = useState('');
  const [value, setValue] = useState<NewPasswordValue>({ password: '', confirm: '' });
  const [done, setDone] = useState(false);
  const [result, change] = useMutation(ChangePasswordDocument);
  return (
    <section aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>Change password</h2>
      <form
        aria-label="Change password"
        onSubmit={async (e) => {
          e.preventDefault();
          setDone(false);
          const r = await change({ currentPassword: current, newPassword: value.password });
          if (r.data?.changePassword) {
            setDone(true);
            setCurrent('');
            setValue({ password: '', confirm: '' });
          }
        }}
      >
        <label htmlFor={`${id}-current`}>Current password</label>
        <input id={`${id}-current`} type="password" autoComplete="current-password" required value={current} onChange={(e) => setCurrent(e.target.value)} />
        <NewPasswordFields value={value} onChange={setValue} identity={session?.user ?? {}} />
        <ErrorAlert error={result.error && fromCombined(result.error)} overrides={{ INVALID_CREDENTIALS: 'The current password is wrong.' }} />
        {done && <Notice>Password changed. Your other sessions were signed out.</Notice>}
        <button type="submit" disabled={result.fetching || !newPasswordReady(value)}>
          Change password
        </button>
      </form>
    </section>
  );
}
