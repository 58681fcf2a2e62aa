import { useId, useState } from 'react';
import { useMutation } from 'urql';
import { DeviceRenameDocument } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';

export function RenameForm({ device, onRenamed }: { device: { id: string; name: string }; onRenamed: () => void }) {
  const id = useId();
  const [name, setName] = useState(device.name);
  const [state, rename] = useMutation(DeviceRenameDocument);
  return (
    <form
      aria-label="Rename device"
      className="inline"
      onSubmit={async (e) => {
        e.preventDefault();
        const r = await rename({ id: device.id, name: name.trim() });
        if (r.data) onRenamed();
      }}
    >
      <label htmlFor={`${id}-name`}>Device name</label>
      <input id={`${id}-name`} required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
      <button type="submit" disabled={state.fetching || name.trim() === device.name}>
        Rename
      </button>
      <ErrorAlert error={state.error && fromCombined(state.error)} />
    </form>
  );
}
