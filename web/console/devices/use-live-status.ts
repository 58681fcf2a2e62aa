import { useEffect, useState } from 'react';
import { useSubscription } from 'urql';
import { DeviceStatusLiveDocument, type DeviceStatus } from '../generated/graphql';
import { useLive } from '../lib/api-context';

export type LiveStatus = Record<string, { status: DeviceStatus; lastSeenAt: string | null }>;

/**
 * Status changes of every device the caller may see (`deviceStatus`), newest per device. `onResume`
 * runs after the socket came back from a drop, so the caller can reload what it may have missed.
 */
export function useLiveStatus(onResume?: () => void): LiveStatus {
  const { ws } = useLive();
  const [live, setLive] = useState<LiveStatus>({});
  const [result] = useSubscription({ query: DeviceStatusLiveDocument, variables: {} });
  useEffect(() => {
    const e = result.data?.deviceStatus;
    if (e) setLive((prev) => ({ ...prev, [e.device.id]: { status: e.status, lastSeenAt: e.device.lastSeenAt ?? null } }));
  }, [result.data]);
  useEffect(() => (onResume ? ws.on('connected', (_socket, _payload, wasRetry) => wasRetry && onResume()) : undefined), [ws, onResume]);
  return live;
}
