import { Arg, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { DeviceView } from '../devices/catalog/index';
import { AlarmConnectionType, AlarmFilterInput, AlarmObject } from '../schema/alarm.type';
import type { GraphqlContext } from '../schema/context';
import { DeviceType } from '../schema/device.type';
import { UserType } from '../schema/user.type';
import type { AcknowledgerView, AlarmView } from '../streams/alarms/alarm.service';
import { CommonError } from '../lib/domain-error';

@Resolver(() => AlarmObject)
export class AlarmResolver {
  @Query(() => AlarmConnectionType, { description: 'Newest first.' })
  alarms(
    @Arg('first', () => Int, { nullable: true, defaultValue: 50 }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null | undefined,
    @Arg('filter', () => AlarmFilterInput, { nullable: true }) filter: AlarmFilterInput | null | undefined,
    @Ctx() ctx: GraphqlContext,
  ) {
    return ctx.services.alarms.list(ctx.caller, { first, after, filter });
  }

  @Mutation(() => AlarmObject)
  acknowledgeAlarm(@Arg('id', () => ID) id: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.alarms.acknowledge(ctx.caller, id);
  }

  @FieldResolver(() => DeviceType)
  async device(@Root() alarm: AlarmView, @Ctx() ctx: GraphqlContext): Promise<DeviceView> {
    const device = await ctx.loaders.devices.device.load(alarm.deviceId);
    // Only between reading the alarm and its device (an unbind in between) can this happen.
    if (!device) throw CommonError.notFound('Device not found');
    return device;
  }

  @FieldResolver(() => UserType, { nullable: true })
  acknowledgedBy(@Root() alarm: AlarmView, @Ctx() ctx: GraphqlContext): Promise<AcknowledgerView | null> {
    return ctx.loaders.alarms.acknowledgedBy.load(alarm);
  }
}
