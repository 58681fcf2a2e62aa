import DataLoader from 'dataloader';
import type { Caller } from '../../accounts/caller';
import type { DeviceView, ShareView } from './device.model';
import type { DeviceAccess, DeviceService } from './device.service';

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
   * Without `cache`: a load of a key whose read is still running shares that read instead of
   * starting another (default false). Nothing is kept once the read is done. Subscriptions
   * executing events one by one (a reconnect storm's replays) then share statements.
   */
  shareInFlight?: boolean;
  /**
   * Device reads shared by every caller on this node (`createSharedDeviceReads`): the device loader
   * takes its rows from there and makes the caller's own view of them. For the live path, where
   * one event's executions for many accounts need the same device at once.
   */
  sharedDeviceReads?: SharedDeviceReads;
}

/** One node-wide batcher of device access rows, caller-independent, holding a read only while it runs. */
export type SharedDeviceReads = DataLoader<string, DeviceAccess | null>;

export function createSharedDeviceReads(devices: DeviceService): SharedDeviceReads {
  return new DataLoader((ids) => devices.deviceAccessByIds(ids), { maxBatchSize: 500, cacheMap: inFlightOnly<string, DeviceAccess | null>() });
}

/** A DataLoader cache that holds a key only while its read runs. */
function inFlightOnly<K, V>(): DataLoader.CacheMap<K, Promise<V>> {
  const running = new Map<K, Promise<V>>();
  return {
    get: (key) => running.get(key),
    set(key, value) {
      running.set(key, value);
      const done = () => {
        if (running.get(key) === value) running.delete(key);
      };
      value.then(done, done);
    },
    delete: (key) => running.delete(key),
    clear: () => running.clear(),
  };
}

export function createDeviceLoaders(devices: DeviceService, caller: Caller | null, options: DeviceLoaderOptions = {}): DeviceLoaders {
  const inFlight = !(options.cache ?? true) && options.shareInFlight === true;
  const cache = inFlight || (options.cache ?? true);
  const shared = options.sharedDeviceReads;
  return {
    device: new DataLoader(shared ? (ids) => devices.devicesFromSharedReads(caller, ids, (keys) => shared.loadMany(keys)) : (ids) => devices.devicesByIds(caller, ids), {
      cache,
      maxBatchSize: 500,
      ...(inFlight ? { cacheMap: inFlightOnly<string, DeviceView | null>() } : {}),
    }),
    shares: new DataLoader((views) => devices.sharesOfDevices(caller, views), {
      cache,
      cacheKeyFn: (v) => `${v.bindingId}:${v.role}`,
      maxBatchSize: 500,
      ...(inFlight ? { cacheMap: inFlightOnly<string, ShareView[]>() } : {}),
    }),
  };
}
