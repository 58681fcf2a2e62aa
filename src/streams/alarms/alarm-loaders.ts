import DataLoader from 'dataloader';
import type { Caller } from '../../accounts/caller';
import type { AcknowledgerView, AlarmService, AlarmView } from './alarm.service';

/** Per-request batchers for nested alarm fields. */
export interface AlarmLoaders {
  /** Alarm.acknowledgedBy, keyed by alarm (the view depends on when it was acknowledged). */
  acknowledgedBy: DataLoader<AlarmView, AcknowledgerView | null, string>;
}

export function createAlarmLoaders(alarms: AlarmService, caller: Caller | null, options: { cache?: boolean } = {}): AlarmLoaders {
  return {
    acknowledgedBy: new DataLoader((views) => alarms.acknowledgersOf(caller, views), {
      cache: options.cache ?? true,
      cacheKeyFn: (v) => `${v.id}:${v.acknowledgedById ?? ''}`,
      maxBatchSize: 500,
    }),
  };
}
