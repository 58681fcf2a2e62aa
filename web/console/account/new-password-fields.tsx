import { useId } from 'react';
import type { PasswordIdentity } from '../../../src/accounts/password-policy';
import { usePasswordCheck } from '../lib/use-password-check';

export interface NewPasswordValue {
  password: string;
  confirm: string;
}

/** True when both fields agree and the live check found nothing (the server decides in the end). */
export const newPasswordReady = (v: NewPasswordValue) => v.password.length > 0 && v.password === v.confirm;

/** "New password" and "Confirm new password", with live strength and mismatch feedback. */
export function NewPasswordFields({ value, onChange, identity }: { value: NewPasswordValue; onChange: (v: NewPasswordValue) => void; identity?: PasswordIdentity }) {
  const id = useId();
  const verdict = usePasswordCheck(value.password, identity);
  const mismatch = value.confirm.length > 0 && value.confirm !== value.password;
  return (
    <>
      <label htmlFor={`${id}-new`}>New password</label>
      <input
        id={`${id}-new`}
        type="password"
        autoComplete="new-password"
        required
        value={value.password}
        aria-describedby={`${id}-strength`}
        onChange={(e) => onChange({ ...value, password: e.target.value })}
      />
      <p id={`${id}-strength`} className={`hint strength-${verdict.state}`} aria-live="polite">
        {verdict.state === 'empty' && 'At least 8 characters; a few unrelated words make a strong password.'}
        {verdict.state === 'checking' && 'Checking strength…'}
        {verdict.state === 'weak' && `Too weak: ${verdict.reason}.`}
        {verdict.state === 'strong' && 'Strong password.'}
      </p>
      <label htmlFor={`${id}-confirm`}>Confirm new password</label>
      <input
        id={`${id}-confirm`}
        type="password"
        autoComplete="new-password"
        required
        value={value.confirm}
        aria-invalid={mismatch}
        aria-describedby={`${id}-match`}
        onChange={(e) => onChange({ ...value, confirm: e.target.value })}
      />
      <p id={`${id}-match`} className="hint" aria-live="polite">
        {mismatch ? 'The passwords do not match.' : ''}
      </p>
    </>
  );
}
