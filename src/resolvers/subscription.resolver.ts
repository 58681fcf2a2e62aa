import { Arg, Ctx, FieldResolver, ID, Resolver, Root, Subscription, type SubscribeResolverData } from 'type-graphql';
import type { DeviceView } from '../devices/catalog/index';
import { CommonError } from '../lib/domain-error';
import { AlarmObject, AlarmTypeEnum } from '../schema/alarm.type';
import type { GraphqlContext } from '../schema/context';
import { DeviceType } from '../schema/device.type';
import { DeviceStatusEventType } from '../schema/subscription.type';
import type { AlarmView } from '../streams/alarms/alarm.service';
import type { DeviceStatusEventView } from '../streams/live/live.service';

type Subscribe<A> = SubscribeResolverData<unknown, A, GraphqlContext>;

/**
 * The live streams over graphql-ws. `subscribe` hands the service's stream to graphql-js; the
 * resolver itself returns each event (the payload) for the selection set to run on.
 */
@Resolver()
export class SubscriptionResolver {
  @Subscription(() => DeviceStatusEventType, {
    description: 'Only devices the caller owns or holds a share with ALARMS on; omitting deviceIds means all of them, including devices bound or shared later.',
    subscribe: ({ args, context }: Subscribe<{ deviceIds?: string[] | null }>) => context.services.live.deviceStatus(context.caller, args),
  })
  deviceStatus(@Arg('deviceIds', () => [ID], { nullable: true }) _deviceIds: string[] | null, @Root() event: DeviceStatusEventView): DeviceStatusEventView {
    return event;
  }

  @Subscription(() => AlarmObject, {
    description: 'With `after`, first replays every stored alarm after that cursor, in order, then goes live with no gap and no duplicate.',
    subscribe: ({ args, context }: Subscribe<{ deviceIds?: string[] | null; types?: string[] | null; after?: string | null }>) =>
      context.services.live.alarms(context.caller, args),
  })
  alarms(
    @Arg('deviceIds', () => [ID], { nullable: true }) _deviceIds: string[] | null,
    @Arg('types', () => [AlarmTypeEnum], { nullable: true }) _types: string[] | null,
    @Arg('after', () => String, { nullable: true }) _after: string | null,
    @Root() alarm: AlarmView,
  ): AlarmView {
    return alarm;
  }
}

@Resolver(() => DeviceStatusEventType)
export class DeviceStatusEventResolver {
  @FieldResolver(() => DeviceType)
  async device(@Root() event: DeviceStatusEventView, @Ctx() ctx: GraphqlContext): Promise<DeviceView> {
    const device = await ctx.loaders.devices.device.load(event.deviceId);
    // Only when access ended between the event's check and this read; graphql-ws drops such events.
    if (!device) throw CommonError.notFound('Device not found');
    return device;
  }
}
