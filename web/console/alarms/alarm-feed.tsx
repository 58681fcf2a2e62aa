import { useId, useState } from 'react';
import { useMutation, useQuery } from 'urql';
import { AlarmAcknowledgeDocument, DeviceListDocument, type AlarmType } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';
import { When } from '../ui/when';
import { useLiveAlarms } from './use-live-alarms';

const TYPES: Record<AlarmType, string> = {
  MOTION: 'Motion',
  LINE_CROSSING: 'Line crossing',
  INTRUSION: 'Intrusion',
  REGION_ENTRANCE: 'Region entrance',
  REGION_EXIT: 'Region exit',
  FACE: 'Face',
  TAMPER: 'Tampering',
  VIDEO_LOSS: 'Video loss',
  ALARM_INPUT: 'Alarm input',
  DISK_ERROR: 'Disk error',
  DISK_FULL: 'Disk full',
  ILLEGAL_ACCESS: 'Illegal access',
  OTHER: 'Other',
};

/** The live alarm feed, filtered by device and type, with Acknowledge. Fixed to one device on its page. */
export function AlarmFeed({ deviceId, title = 'Latest alarms' }: { deviceId?: string; title?: string }) {
  const id = useId();
  const [device, setDevice] = useState(deviceId ?? '');
  const [type, setType] = useState<AlarmType | ''>('');
  const feed = useLiveAlarms({ ...(device ? { deviceIds: [device] } : {}), ...(type ? { types: [type] } : {}) });
  const [devices] = useQuery({ query: DeviceListDocument, variables: { first: 100 }, pause: !!deviceId });
  const [ack, acknowledge] = useMutation(AlarmAcknowledgeDocument);
  return (
    <section aria-labelledby={`${id}-h`} className="card">
      <h2 id={`${id}-h`}>{title}</h2>
      <div className="filters">
        {!deviceId && (
          <>
            <label htmlFor={`${id}-device`}>Device</label>
            <select id={`${id}-device`} value={device} onChange={(e) => setDevice(e.target.value)}>
              <option value="">All devices</option>
              {devices.data?.devices.edges.map(({ node }) => (
                <option key={node.id} value={node.id}>
                  {node.name}
                </option>
              ))}
            </select>
          </>
        )}
        <label htmlFor={`${id}-type`}>Type</label>
        <select id={`${id}-type`} value={type} onChange={(e) => setType(e.target.value as AlarmType | '')}>
          <option value="">All types</option>
          {Object.entries(TYPES).map(([value, label]) => (
            <option key={value} value={value}>
              {label}
            </option>
          ))}
        </select>
      </div>
      <ErrorAlert error={feed.error ?? (ack.error && fromCombined(ack.error))} />
      {feed.loading && <p>Loading…</p>}
      {!feed.loading && feed.items.length === 0 && <p>No alarms.</p>}
      <ol className="feed" aria-label="Alarms" aria-live="polite">
        {feed.items.map((a) => (
          <li key={a.id} className={a.acknowledgedAt ? 'acknowledged' : ''}>
            <strong>{TYPES[a.type]}</strong> on {a.device.name}
            {a.channel ? `, channel ${a.channel}` : ''} · <When at={a.startedAt} />
            {a.activePostCount > 1 ? ` · ${a.activePostCount} posts` : ''}
            {a.endedAt ? ' · ended' : ' · active'}
            {a.description ? <div className="muted">{a.description}</div> : null}{' '}
            {a.acknowledgedAt ? (
              <span className="muted">acknowledged</span>
            ) : (
              <button
                type="button"
                aria-label={`Acknowledge ${TYPES[a.type]} on ${a.device.name}`}
                disabled={ack.fetching}
                onClick={async () => {
                  const r = await acknowledge({ id: a.id });
                  if (r.data) feed.acknowledged(a.id, r.data.acknowledgeAlarm.acknowledgedAt ?? new Date().toISOString());
                }}
              >
                Acknowledge
              </button>
            )}
          </li>
        ))}
      </ol>
    </section>
  );
}
