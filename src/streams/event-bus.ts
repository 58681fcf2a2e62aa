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

/** Session ended (logout, revoke, password change): sockets of that session must close. */
export interface SessionEndedPayload {
  sessionId: string;
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

export type EventBus = PubSub<TopicMap>;

/**
 * In-process bus by default; with Redis clients, every gateway node sees every event. Topics are
 * prefixed by the Redis event target's channel names only, so one Redis can serve one deployment.
 */
export function createEventBus(redis?: { publish: Redis; subscribe: Redis }): EventBus {
  if (!redis) return createPubSub<TopicMap>();
  return createPubSub<TopicMap>({
    eventTarget: createRedisEventTarget({ publishClient: redis.publish, subscribeClient: redis.subscribe }),
  });
}
