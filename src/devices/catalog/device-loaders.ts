import DataLoader from 'dataloader';
import type { Caller } from '../../accounts/caller';
import type { DeviceView, ShareView } from './device.model';
import type { DeviceService } from './device.service';

/**
 * Per-request batchers for nested device fields, so a page of 50 devices costs one statement for
 * all their shares rather than 50. Create them once per GraphQL operation, for that caller.
 */
export interface DeviceLoaders {
  /** A device as the caller sees it, or null (missing or invisible). For Alarm.device and the like. */
  device: DataLoader<string, DeviceView | null>;
  /** Device.shares: every open share for an owner, the caller's own for a grantee. Keyed by binding. */
  shares: DataLoader<DeviceView, ShareView[], string>;
}

export interface DeviceLoaderOptions {
  /**
   * Memoise results for the loader's lifetime (default true). Turn it off where one context lives
   * long, as a graphql-ws subscription's does: a cached device would outlive an unbind.
   */
  cache?: boolean;
  /**
   * When a batch is dispatched (default: after the current tick). Subscriptions executing events
   * one by one widen it, so many executions share one statement.
   */
  batchScheduleFn?: (dispatch: () => void) => void;
}

export function createDeviceLoaders(devices: DeviceService, caller: Caller | null, options: DeviceLoaderOptions = {}): DeviceLoaders {
  const cache = options.cache ?? true;
  const batchScheduleFn = options.batchScheduleFn;
  return {
    device: new DataLoader((ids) => devices.devicesByIds(caller, ids), { cache, maxBatchSize: 500, batchScheduleFn }),
    shares: new DataLoader((views) => devices.sharesOfDevices(caller, views), { cache, cacheKeyFn: (v) => `${v.bindingId}:${v.role}`, maxBatchSize: 500, batchScheduleFn }),
  };
}
