import { useId, useState } from 'react';
import { useMutation } from 'urql';
import { DevicesUnbindDocument, type DeviceRowFragment, type DevicesUnbindMutation } from '../generated/graphql';
import { describeError, fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';
import { ModalDialog } from '../ui/modal-dialog';
import { UnbindExplanation } from './unbind-explanation';

/** "Unbind selected": one password for all, then each device's own result. */
export function BulkUnbindDialog({ devices, onClose }: { devices: DeviceRowFragment[]; onClose: (unbound: number) => void }) {
  const id = useId();
  const [password, setPassword] = useState('');
  const [results, setResults] = useState<DevicesUnbindMutation['unbindDevices'] | null>(null);
  const [state, unbind] = useMutation(DevicesUnbindDocument);
  const unbound = results?.filter((r) => r.ok).length ?? 0;
  const nameOf = (deviceId: string) => devices.find((d) => d.id === deviceId)?.name ?? deviceId;
  return (
    <ModalDialog title={`Unbind ${devices.length} ${devices.length === 1 ? 'device' : 'devices'}`} onClose={() => onClose(unbound)}>
      {!results ? (
        <form
          aria-label="Unbind selected devices"
          onSubmit={async (e) => {
            e.preventDefault();
            const r = await unbind({ ids: devices.map((d) => d.id), password });
            if (r.data) setResults(r.data.unbindDevices);
          }}
        >
          <ul>
            {devices.map((d) => (
              <li key={d.id}>
                {d.name} <code>{d.serial}</code>
              </li>
            ))}
          </ul>
          <UnbindExplanation />
          <label htmlFor={`${id}-password`}>Password</label>
          <input id={`${id}-password`} type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
          <ErrorAlert error={state.error && fromCombined(state.error)} overrides={{ INVALID_CREDENTIALS: 'The password is wrong. Nothing was unbound.' }} />
          <div className="row">
            <button type="button" className="dialog-close" onClick={() => onClose(0)}>
              Cancel
            </button>
            <button type="submit" className="danger" disabled={state.fetching}>
              Unbind selected
            </button>
          </div>
        </form>
      ) : (
        <>
          <p role="status">
            {unbound} of {results.length} unbound.
          </p>
          <ul aria-label="Results">
            {results.map((r) => (
              <li key={r.deviceId}>
                {nameOf(r.deviceId)}: {r.ok ? 'unbound' : describeError({ code: r.error ?? 'INTERNAL', message: '' })}
              </li>
            ))}
          </ul>
          <button type="button" onClick={() => onClose(unbound)}>
            Close
          </button>
        </>
      )}
    </ModalDialog>
  );
}
