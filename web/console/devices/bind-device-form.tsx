import { useId, useState } from 'react';
import { useMutation } from 'urql';
import { DeviceBindDocument } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';
import { Notice } from '../ui/notice';

/** Serial + the verification code from the device label (and an optional name). */
export function BindDeviceForm({ onBound }: { onBound: () => void }) {
  const id = useId();
  const [serial, setSerial] = useState('');
  const [code, setCode] = useState('');
  const [name, setName] = useState('');
  const [bound, setBound] = useState<string | null>(null);
  const [result, bind] = useMutation(DeviceBindDocument);
  return (
    <section aria-labelledby={`${id}-h`} className="card">
      <h2 id={`${id}-h`}>Bind a device</h2>
      <form
        aria-label="Bind a device"
        onSubmit={async (e) => {
          e.preventDefault();
          setBound(null);
          const r = await bind({ serial: serial.trim(), verificationCode: code.trim(), name: name.trim() || null });
          if (r.data) {
            setBound(r.data.bindDevice.name);
            setSerial('');
            setCode('');
            setName('');
            onBound();
          }
        }}
      >
        <label htmlFor={`${id}-serial`}>Serial number</label>
        <input id={`${id}-serial`} required autoComplete="off" value={serial} onChange={(e) => setSerial(e.target.value)} />
        <label htmlFor={`${id}-code`}>Verification code</label>
        <input id={`${id}-code`} required autoComplete="off" aria-describedby={`${id}-code-hint`} value={code} onChange={(e) => setCode(e.target.value)} />
        <p id={`${id}-code-hint`} className="hint">
          The 6 capital letters on the device label.
        </p>
        <label htmlFor={`${id}-name`}>Name (optional)</label>
        <input id={`${id}-name`} value={name} onChange={(e) => setName(e.target.value)} />
        <ErrorAlert
          error={result.error && fromCombined(result.error)}
          overrides={{
            INVALID_VERIFICATION_CODE: 'The serial number or the verification code is wrong. Check the label on the device.',
            NOT_FOUND: 'The serial number or the verification code is wrong. Check the label on the device.',
          }}
        />
        {bound && <Notice>Bound “{bound}”.</Notice>}
        <button type="submit" disabled={result.fetching}>
          Bind device
        </button>
      </form>
    </section>
  );
}
