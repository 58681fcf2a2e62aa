import { useId, useState } from 'react';
import { useMutation } from 'urql';
import { DeviceTransferDocument } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';

/** Hands the device to another account (its shares end); needs the account password. */
export function TransferForm({ device, onTransferred }: { device: { id: string; name: string }; onTransferred: (to: string) => void }) {
  const id = useId();
  const [to, setTo] = useState('');
  const [password, setPassword] = useState('');
  const [state, transfer] = useMutation(DeviceTransferDocument);
  return (
    <section aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>Transfer</h2>
      <form
        aria-label="Transfer device"
        onSubmit={async (e) => {
          e.preventDefault();
          const r = await transfer({ id: device.id, to: to.trim(), password });
          if (r.data?.transferDevice) onTransferred(to.trim());
        }}
      >
        <p>The other account becomes the owner of {device.name}; every share ends.</p>
        <label htmlFor={`${id}-to`}>New owner (email or phone)</label>
        <input id={`${id}-to`} required value={to} onChange={(e) => setTo(e.target.value)} />
        <label htmlFor={`${id}-password`}>Your password</label>
        <input id={`${id}-password`} type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
        <ErrorAlert
          error={state.error && fromCombined(state.error)}
          overrides={{ INVALID_CREDENTIALS: 'The password is wrong.', NOT_FOUND: 'There is no account with that email or phone number.' }}
        />
        <button type="submit" disabled={state.fetching}>
          Transfer
        </button>
      </form>
    </section>
  );
}
