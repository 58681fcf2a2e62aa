import type { Logger } from 'pino';
import type { Caller } from '../accounts/caller';
import type { RequestMeta } from '../accounts/auth.service';
import { createDeviceLoaders, type DeviceLoaderOptions, type DeviceLoaders } from '../devices/catalog/device-loaders';
import type { Services } from '../services';
import { createAlarmLoaders, type AlarmLoaders } from '../streams/alarms/alarm-loaders';

/** Per-operation DataLoaders (batching nested fields); one set per context, for its caller. */
export interface RequestLoaders {
  devices: DeviceLoaders;
  alarms: AlarmLoaders;
}

/**
 * Builds the loaders for one context. `cache: false` for contexts that live long (a graphql-ws
 * subscription keeps one context for all its events), so no event sees a stale device.
 */
export function createLoaders(services: Services, caller: Caller | null, options: DeviceLoaderOptions = {}): RequestLoaders {
  return { devices: createDeviceLoaders(services.devices, caller, options), alarms: createAlarmLoaders(services.alarms, caller, options) };
}

/** The one context both transports build (HTTP per request, graphql-ws per operation). */
export interface GraphqlContext {
  caller: Caller | null;
  meta: RequestMeta;
  requestId: string;
  services: Services;
  loaders: RequestLoaders;
  log: Logger;
}
