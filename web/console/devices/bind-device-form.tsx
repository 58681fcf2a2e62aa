import { useId, useState } from 'react';
import { useMutation } from 'urql';
import { ClaimMakeDocument, DeviceBindDocument } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';
import { Notice } from '../ui/notice';

/** Serial + the verification code from the device label (and an optional name). */
export function BindDeviceForm({ onBound, onClaimed }: { onBound: () => void; onClaimed?: () => void }) {
  const id = useId();
  const [serial, setSerial] = useState('');
  const [code, setCode] = useState('');
  const [name, setName] = useState('');
  const [bound, setBound] = useState<string | null>(null);
  const [result, bind] = useMutation(DeviceBindDocument);
  const [claim, makeClaim] = useMutation(ClaimMakeDocument);
  const [claimed, setClaimed] = useState<string | null>(null);
  const alreadyBound = result.error?.graphQLErrors.some((e) => e.extensions?.code === 'DEVICE_ALREADY_BOUND');
  return (
    <section aria-labelledby={`${id}-h`} className="card">
      <h2 id={`${id}-h`}>Bind a device</h2>
      <form
        aria-label="Bind a device"
        onSubmit={async (e) => {
          e.preventDefault();
          setBound(null);
          setClaimed(null);
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
          error={claimed ? null : result.error && fromCombined(result.error)}
          overrides={{
            INVALID_VERIFICATION_CODE: 'The serial number or the verification code is wrong. Check the label on the device.',
            NOT_FOUND: 'The serial number or the verification code is wrong. Check the label on the device.',
          }}
        >
          {alreadyBound && !claimed && (
            <p>
              You hold this device (a second-hand camera, or one left behind)?{' '}
              <button
                type="button"
                disabled={claim.fetching}
                onClick={async () => {
                  const r = await makeClaim({ serial: serial.trim(), verificationCode: code.trim() });
                  const c = r.data?.claimDevice;
                  if (!c) return;
                  if (c.status === 'COMPLETED') {
                    setClaimed('The device was free and is now bound to your account.');
                    onBound();
                  } else {
                    const when = new Date(c.completesAt).toLocaleString();
                    setClaimed(`Claim made. Its owner has been told; unless they refuse, the device becomes yours on ${when}.`);
                    onClaimed?.();
                  }
                }}
              >
                Claim it
              </button>
            </p>
          )}
        </ErrorAlert>
        <ErrorAlert error={claim.error && fromCombined(claim.error)} overrides={{ DEVICE_ALREADY_BOUND: 'Someone else has already claimed this device; try again later.' }} />
        {claimed && <Notice>{claimed}</Notice>}
        {bound && <Notice>Bound “{bound}”.</Notice>}
        <button type="submit" disabled={result.fetching}>
          Bind device
        </button>
      </form>
    </section>
  );
}
