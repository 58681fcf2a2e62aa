import type { DeviceStatus } from '../generated/graphql';

const WORDS: Record<DeviceStatus, string> = { ONLINE: 'Online', OFFLINE: 'Offline', UNKNOWN: 'Unknown' };
const ago = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

function lastSeen(at: string): string {
  const s = Math.round((Date.parse(at) - Date.now()) / 1000);
  if (s > -60) return ago.format(s, 'second');
  if (s > -3600) return ago.format(Math.round(s / 60), 'minute');
  if (s > -86400) return ago.format(Math.round(s / 3600), 'hour');
  return ago.format(Math.round(s / 86400), 'day');
}

/** ONLINE / OFFLINE / UNKNOWN in words (not colour alone), with "last seen" when not online. */
export function StatusBadge({ status, lastSeenAt }: { status: DeviceStatus; lastSeenAt?: string | null }) {
  return (
    <span className={`badge badge-${status.toLowerCase()}`} data-status={status}>
      {WORDS[status]}
      {status !== 'ONLINE' && lastSeenAt ? <span className="muted"> · last seen {lastSeen(lastSeenAt)}</span> : null}
    </span>
  );
}
