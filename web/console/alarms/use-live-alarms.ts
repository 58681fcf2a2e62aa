import { stringifyDocument } from '@urql/core';
import { useEffect, useState } from 'react';
import { useQuery } from 'urql';
import { AlarmListDocument, AlarmsLiveDocument, type AlarmItemFragment, type AlarmType, type AlarmsLiveSubscription } from '../generated/graphql';
import { fromCombined, type ApiError } from '../lib/api-errors';
import { useLive } from '../lib/api-context';

const SHOWN = 30;

/**
 * The latest alarms, then every new one live. The subscription starts after the newest loaded
 * alarm's cursor, and each arriving alarm moves that cursor on: graphql-ws resends the same payload
 * when it reconnects after a drop, so the server replays exactly what was missed meanwhile.
 */
export function useLiveAlarms(filter: { deviceIds?: string[]; types?: AlarmType[] }) {
  const { ws } = useLive();
  const key = JSON.stringify(filter);
  const [initial] = useQuery({
    query: AlarmListDocument,
    variables: { first: SHOWN, filter: { ...(filter.deviceIds ? { deviceIds: filter.deviceIds } : {}), ...(filter.types ? { types: filter.types } : {}) } },
    requestPolicy: 'network-only',
  });
  const [items, setItems] = useState<AlarmItemFragment[]>([]);
  const [error, setError] = useState<ApiError | null>(null);

  useEffect(() => {
    if (!initial.data) return;
    const seed = initial.data.alarms.edges.map((e) => e.node);
    setItems(seed);
    setError(null);
    const payload = {
      query: stringifyDocument(AlarmsLiveDocument),
      variables: { after: seed[0]?.cursor ?? null, deviceIds: filter.deviceIds ?? null, types: filter.types ?? null },
    };
    return ws.subscribe<AlarmsLiveSubscription>(payload, {
      next(result) {
        const alarm = result.data?.alarms;
        if (result.errors?.length) setError(fromGraphql(result.errors[0]!));
        if (!alarm) return;
        payload.variables.after = alarm.cursor;
        setItems((prev) => [alarm, ...prev.filter((a) => a.id !== alarm.id)].slice(0, SHOWN * 2));
      },
      error(e) {
        if (Array.isArray(e) && e[0]) setError(fromGraphql(e[0]));
        else if (!(e && typeof e === 'object' && 'code' in e && (e as { code: number }).code === 4403)) setError({ code: 'NETWORK', message: '' });
      },
      complete() {},
    });
    // `key` stands for the filter's contents.
  }, [initial.data, ws, key]);

  const acknowledged = (id: string, at: string) => setItems((prev) => prev.map((a) => (a.id === id ? { ...a, acknowledgedAt: at } : a)));
  return { items, loading: !initial.data && !initial.error, error: error ?? (initial.error ? fromCombined(initial.error) : null), acknowledged };
}

function fromGraphql(e: { message: string; extensions?: Record<string, unknown> }): ApiError {
  return { code: (e.extensions?.code as ApiError['code']) ?? 'INTERNAL', message: e.message };
}
