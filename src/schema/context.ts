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

/** The one context both transports build (HTTP per request, graphql-ws per operation). A type, not an interface: graphql-http wants a record. */
export type GraphqlContext = {
  caller: Caller | null;
  meta: RequestMeta;
  requestId: string;
  services: Services;
  loaders: RequestLoaders;
  log: Logger;
};

/** Where a request came from: the caller (null = anonymous), client details, and the id its errors carry. */
export interface ContextSource {
  caller: Caller | null;
  meta: RequestMeta;
  requestId: string;
  /** Loaders for this context, made when first used; default a fresh, caching set for the caller. */
  loaders?: () => RequestLoaders;
}

/** The `authorization` value an HTTP request carries in its header. */
export const authorizationFromHeaders = (headers: Record<string, string | string[] | undefined>): string | undefined =>
  typeof headers.authorization === 'string' ? headers.authorization : undefined;

/** The `authorization` value a graphql-ws client sends in `connectionParams` (either spelling). */
export function authorizationFromParams(params: Record<string, unknown> | undefined | null): string | undefined {
  const value = params?.authorization ?? params?.Authorization;
  return typeof value === 'string' ? value : undefined;
}

/**
 * The one context builder for both transports: HTTP per request (authorization header), graphql-ws
 * per operation (connectionParams, read once at connection_init). `callerOf` answers null for
 * anything that does not check out (missing, malformed, expired, revoked, unknown session).
 */
export function createContextBuilder(services: Services, log: Logger) {
  return {
    callerOf: (authorization: string | undefined): Promise<Caller | null> => services.auth.authenticate(authorization),
    context(source: ContextSource): GraphqlContext {
      let loaders: RequestLoaders | undefined;
      const caller = source.caller;
      const make = source.loaders ?? (() => createLoaders(services, caller));
      return {
        caller,
        meta: source.meta,
        requestId: source.requestId,
        services,
        // Made when first used: a grouped subscriber's own context is never executed against.
        get loaders() {
          return (loaders ??= make());
        },
        log,
      };
    },
  };
}

export type ContextBuilder = ReturnType<typeof createContextBuilder>;
