import { useId, useState } from 'react';
import { useQuery } from 'urql';
import { AlarmFeed } from '../alarms/alarm-feed';
import { DeviceDetailsDocument } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { go } from '../lib/use-hash-route';
import { ErrorAlert } from '../ui/error-alert';
import { When } from '../ui/when';
import { ClaimsPanel } from './claims-panel';
import { RenameForm } from './rename-form';
import { SharesPanel } from './shares-panel';
import { StatusBadge } from './status-badge';
import { TransferForm } from './transfer-form';
import { UnbindDialog } from './unbind-dialog';
import { useLiveStatus } from './use-live-status';

/** One device: details, rename, shares, transfer, its alarms, and Unbind. */
export function DevicePage({ deviceId, onGone }: { deviceId: string; onGone: (notice: string) => void }) {
  const id = useId();
  const [result, refetch] = useQuery({ query: DeviceDetailsDocument, variables: { id: deviceId }, requestPolicy: 'cache-and-network' });
  const [unbinding, setUnbinding] = useState(false);
  const live = useLiveStatus();
  const reload = () => refetch({ requestPolicy: 'network-only' });
  const d = result.data?.device;
  if (result.error) return <ErrorAlert error={fromCombined(result.error)} />;
  if (!result.data) return <p>Loading…</p>;
  if (!d)
    return (
      <div role="alert" className="error">
        <p>This device is not in your account (it may have been unbound, or its share ended).</p>
        <a href="#/">Back to devices</a>
      </div>
    );
  const s = live[d.id] ?? { status: d.status, lastSeenAt: d.lastSeenAt ?? null };
  const owner = d.role === 'OWNER';
  return (
    <div className="stack">
      <p>
        <a href="#/">← All devices</a>
      </p>
      <h1 id={`${id}-h`}>{d.name}</h1>
      <dl className="details">
        <dt>Status</dt>
        <dd>
          <StatusBadge status={s.status} lastSeenAt={s.lastSeenAt} />
        </dd>
        <dt>Serial</dt>
        <dd>
          <code>{d.serial}</code>
        </dd>
        <dt>Model</dt>
        <dd>{d.model ?? 'Unknown'}</dd>
        <dt>Channels</dt>
        <dd>{d.channels}</dd>
        <dt>Firmware</dt>
        <dd>{d.firmware ?? 'Unknown'}</dd>
        <dt>Your role</dt>
        <dd>{owner ? 'Owner' : `Shared with you (${d.permissions.join(', ').toLowerCase().replace(/_/g, ' ')})`}</dd>
        <dt>Bound</dt>
        <dd>
          <When at={d.boundAt} />
        </dd>
      </dl>
      {(owner || d.permissions.includes('CONFIGURE')) && <RenameForm key={d.name} device={d} onRenamed={reload} />}
      {owner && <ClaimsPanel deviceId={d.id} />}
      <SharesPanel device={d} onChanged={reload} />
      {owner && <TransferForm device={d} onTransferred={(to) => onGone(`${d.name} was transferred to ${to}.`)} />}
      {owner && (
        <section aria-labelledby={`${id}-unbind`}>
          <h2 id={`${id}-unbind`}>Unbind</h2>
          <p>Removes the device from your account.</p>
          <button type="button" className="danger" onClick={() => setUnbinding(true)}>
            Unbind
          </button>
        </section>
      )}
      <AlarmFeed deviceId={d.id} title={`Alarms of ${d.name}`} />
      {unbinding && (
        <UnbindDialog
          device={d}
          onClose={() => setUnbinding(false)}
          onUnbound={() => {
            setUnbinding(false);
            onGone('Device unbound.');
            go('');
          }}
        />
      )}
    </div>
  );
}
