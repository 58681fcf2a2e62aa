import { Kind, type GraphQLResolveInfo, type SelectionSetNode } from 'graphql';
import { Arg, Args, Ctx, FieldResolver, ID, Info, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { DeviceConnection, DeviceView, ShareView, UnbindOutcome } from '../devices/catalog/index';
import type { GraphqlContext } from '../schema/context';
import { DevicesArgs } from '../schema/device.args';
import { DeviceConnectionType, DeviceType, PermissionEnum, ShareType, UnbindResultType } from '../schema/device.type';
import { ErrorCode, toErrorCode } from '../schema/error-code';

/** Whether the field's selection names `field` directly or through fragments (directives aside: asking too often is harmless). */
function selects(info: GraphQLResolveInfo, field: string): boolean {
  const seen = new Set<string>();
  const walk = (set: SelectionSetNode | undefined): boolean =>
    !!set?.selections.some((s) => {
      if (s.kind === Kind.FIELD) return s.name.value === field;
      if (s.kind === Kind.INLINE_FRAGMENT) return walk(s.selectionSet);
      if (seen.has(s.name.value)) return false;
      seen.add(s.name.value);
      return walk(info.fragments?.[s.name.value]?.selectionSet);
    });
  return info.fieldNodes.some((node) => walk(node.selectionSet));
}

@Resolver(() => DeviceType)
export class DeviceResolver {
  @Query(() => DeviceConnectionType)
  devices(@Args(() => DevicesArgs) args: DevicesArgs, @Ctx() ctx: GraphqlContext, @Info() info: GraphQLResolveInfo) {
    // The total comes with the page in one statement when the document asks for it.
    return ctx.services.devices.listDevices(ctx.caller, args, { withTotal: selects(info, 'totalCount') });
  }

  @Query(() => DeviceType, { nullable: true, description: 'Null when missing or not visible to the caller.' })
  device(@Arg('id', () => ID) id: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.devices.device(ctx.caller, id);
  }

  @Mutation(() => DeviceType)
  bindDevice(
    @Arg('serial', () => String) serial: string,
    @Arg('verificationCode', () => String) verificationCode: string,
    @Arg('name', () => String, { nullable: true }) name: string | null | undefined,
    @Ctx() ctx: GraphqlContext,
  ) {
    return ctx.services.devices.bindDevice(ctx.caller, serial, verificationCode, name, ctx.meta);
  }

  @Mutation(() => DeviceType)
  renameDevice(@Arg('id', () => ID) id: string, @Arg('name', () => String) name: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.devices.renameDevice(ctx.caller, id, name);
  }

  @Mutation(() => UnbindResultType, { description: 'Step-up: the account password.' })
  unbindDevice(@Arg('id', () => ID) id: string, @Arg('password', () => String) password: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.devices.unbindDevice(ctx.caller, id, password, ctx.meta);
  }

  @Mutation(() => [UnbindResultType], { description: 'Bulk, at most 100 ids.' })
  unbindDevices(@Arg('ids', () => [ID]) ids: string[], @Arg('password', () => String) password: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.devices.unbindDevices(ctx.caller, ids, password, ctx.meta);
  }

  @Mutation(() => Boolean, { description: 'to = email or phone of an account.' })
  transferDevice(
    @Arg('id', () => ID) id: string,
    @Arg('to', () => String) to: string,
    @Arg('password', () => String) password: string,
    @Ctx() ctx: GraphqlContext,
  ) {
    return ctx.services.devices.transferDevice(ctx.caller, id, to, password, ctx.meta);
  }

  @Mutation(() => ShareType)
  grantShare(
    @Arg('deviceId', () => ID) deviceId: string,
    @Arg('grantee', () => String) grantee: string,
    @Arg('permissions', () => [PermissionEnum]) permissions: string[],
    @Arg('expiresAt', () => Date, { nullable: true }) expiresAt: Date | null | undefined,
    @Ctx() ctx: GraphqlContext,
  ) {
    return ctx.services.devices.grantShare(ctx.caller, deviceId, grantee, permissions, expiresAt);
  }

  @Mutation(() => Boolean, { description: 'By the owner, or by the grantee to leave a share.' })
  revokeShare(@Arg('id', () => ID) id: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.devices.revokeShare(ctx.caller, id);
  }

  @FieldResolver(() => [ShareType], { description: 'Owner: every share; grantee: only its own.' })
  shares(@Root() device: DeviceView, @Ctx() ctx: GraphqlContext): Promise<ShareView[]> {
    return ctx.loaders.devices.shares.load(device);
  }
}

@Resolver(() => DeviceConnectionType)
export class DeviceConnectionResolver {
  @FieldResolver(() => Int)
  totalCount(@Root() connection: DeviceConnection): Promise<number> {
    return connection.countTotal();
  }
}

@Resolver(() => UnbindResultType)
export class UnbindResultResolver {
  @FieldResolver(() => ErrorCode, { nullable: true, description: 'Set when ok is false (bulk unbind reports per device).' })
  error(@Root() result: UnbindOutcome): ErrorCode | null {
    return result.error ? toErrorCode(result.error) : null;
  }
}
