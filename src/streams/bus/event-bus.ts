import { createPubSub, type PubSub } from '@graphql-yoga/subscription';
import { createRedisEventTarget } from '@graphql-yoga/redis-event-target';
import type { Redis } from 'ioredis';

/** JSON-safe payloads only (ISO strings, ids), so the Redis event target carries them unchanged. */
export interface DeviceStatusPayload {
  deviceId: string;
  status: 'ONLINE' | 'OFFLINE' | 'UNKNOWN';
  at: string;
}

export interface AlarmPayload {
  alarmId: string;
  deviceId: string;
  bindingId: string;
  cursor: string;
}

/** A device's audience changed (bound, unbound, transferred, shared, share ended). */
export interface AccessChangedPayload {
  deviceId: string;
  userIds: string[];
}

/**
 * A credential ended (logout, session revoked, password changed or reset, refresh-token reuse, API
 * key revoked): every node closes the GraphQL WebSockets opened with it. One of the two is set.
 */
export interface SessionEndedPayload {
  sessionId?: string;
  apiKeyId?: string;
}

/** Gateway-internal: a newer connection of the device took over; the node holding `connectionId` closes it (4409). */
export interface DeviceReplacedPayload {
  deviceId: string;
  connectionId: string;
}

/** Gateway-internal: commands are waiting for the device; the node holding its WebSocket delivers them. */
export interface DeviceCommandPayload {
  deviceId: string;
}

export type TopicMap = {
  'device.status': [DeviceStatusPayload];
  'alarm.created': [AlarmPayload];
  'device.access': [AccessChangedPayload];
  'session.ended': [SessionEndedPayload];
  'device.replaced': [DeviceReplacedPayload];
  'device.command': [DeviceCommandPayload];
};

/** Where `listen` reports a handler that threw, or a feed that failed (pino's `warn` fits). */
export type BusWarn = (fields: { err: unknown; topic: keyof TopicMap }, message: string) => void;

export interface EventBus extends PubSub<TopicMap> {
  /**
   * Calls `handler` with every event of `topic` published from now on (on every node with Redis),
   * one at a time, in order, until the returned stop function is called; stop resolves once the
   * feed has ended and is idempotent. A handler that throws is reported to `warn` and the next
   * event still comes; a feed that fails (the Redis subscription broke) is reported and ends.
   */
  listen<K extends keyof TopicMap>(topic: K, handler: (...payload: TopicMap[K]) => void, warn?: BusWarn): () => Promise<void>;
}

/**
 * In-process bus by default; with Redis clients, every gateway node sees every event. Topics are
 * prefixed by the Redis event target's channel names only, so one Redis can serve one deployment.
 */
export function createEventBus(redis?: { publish: Redis; subscribe: Redis; onError?: (err: unknown, what: string) => void }): EventBus {
  if (!redis) return withListen(createPubSub<TopicMap>());
  const onError = redis.onError ?? (() => {});
  return withListen(
    createPubSub<TopicMap>({
      eventTarget: createRedisEventTarget({ publishClient: failSafePublisher(redis.publish, onError), subscribeClient: failSafeSubscriber(redis.subscribe, onError) }),
    }),
  );
}

function withListen(pubsub: PubSub<TopicMap>): EventBus {
  const listen: EventBus['listen'] = (topic, handler, warn) => {
    const feed = (pubsub.subscribe as (t: keyof TopicMap) => AsyncIterable<unknown>)(topic)[Symbol.asyncIterator]();
    let stopped = false;
    const drained = (async () => {
      try {
        for (;;) {
          const next = await feed.next();
          if (next.done) return;
          try {
            (handler as (payload: unknown) => void)(next.value);
          } catch (err) {
            warn?.({ err, topic }, 'bus handler failed');
          }
        }
      } catch (err) {
        if (!stopped) warn?.({ err, topic }, 'bus subscription ended');
      }
    })();
    return async () => {
      if (stopped) return;
      stopped = true;
      await feed.return?.();
      await drained;
    };
  };
  return Object.assign(pubsub, { listen });
}

/**
 * The Redis event target leaves ioredis's promises unhandled, and an unhandled rejection ends a
 * Node process: with Redis down, the first publish would kill the node. A failed publish is
 * reported and dropped (the event is lost; alarms are not, they are in Postgres).
 */
function failSafePublisher(client: Redis, onError: (err: unknown, what: string) => void): Redis {
  return {
    publish: (channel: string, message: string) => client.publish(channel, message).catch((err: unknown) => onError(err, `publish ${channel}`)),
  } as unknown as Redis;
}

/**
 * Same for SUBSCRIBE; a channel whose SUBSCRIBE failed (Redis down at start) is subscribed again
 * once the connection is ready (ioredis re-subscribes only channels that succeeded).
 */
function failSafeSubscriber(client: Redis, onError: (err: unknown, what: string) => void): Redis {
  const wanted = new Set<string>();
  const failed = new Set<string>();
  const subscribe = (channel: string) =>
    client.subscribe(channel).then(
      () => failed.delete(channel),
      (err: unknown) => {
        if (wanted.has(channel)) failed.add(channel);
        onError(err, `subscribe ${channel}`);
      },
    );
  client.on('ready', () => {
    for (const channel of [...failed]) {
      failed.delete(channel);
      void subscribe(channel);
    }
  });
  return {
    on: (event: string, listener: (...args: unknown[]) => void) => client.on(event, listener),
    subscribe: (channel: string) => {
      wanted.add(channel);
      return subscribe(channel);
    },
    unsubscribe: (channel: string) => {
      wanted.delete(channel);
      failed.delete(channel);
      return client.unsubscribe(channel).catch((err: unknown) => onError(err, `unsubscribe ${channel}`));
    },
  } as unknown as Redis;
}
