import { useId, useState } from 'react';
import { useMutation } from 'urql';
import { DeviceUnbindDocument } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';
import { ModalDialog } from '../ui/modal-dialog';
import { UnbindExplanation } from './unbind-explanation';

/** Unbind one device: what it does, the account Password, and a button named Unbind. */
export function UnbindDialog({ device, onClose, onUnbound }: { device: { id: string; name: string }; onClose: () => void; onUnbound: () => void }) {
  const id = useId();
  const [password, setPassword] = useState('');
  const [state, unbind] = useMutation(DeviceUnbindDocument);
  const failed = state.data?.unbindDevice.ok === false ? { code: state.data.unbindDevice.error ?? 'INTERNAL', message: '' } : null;
  return (
    <ModalDialog title={`Unbind ${device.name}?`} onClose={onClose}>
      <form
        aria-label="Unbind device"
        onSubmit={async (e) => {
          e.preventDefault();
          const r = await unbind({ id: device.id, password });
          if (r.data?.unbindDevice.ok) onUnbound();
        }}
      >
        <UnbindExplanation />
        <label htmlFor={`${id}-password`}>Password</label>
        <input id={`${id}-password`} type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
        <p className="hint">Your account password, to confirm it is you.</p>
        <ErrorAlert error={(state.error && fromCombined(state.error)) ?? failed} overrides={{ INVALID_CREDENTIALS: 'The password is wrong.' }} />
        <div className="row">
          <button type="button" className="dialog-close" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="danger" disabled={state.fetching}>
            Unbind
          </button>
        </div>
      </form>
    </ModalDialog>
  );
}
