import { Arg, Ctx, FieldResolver, ID, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { ClaimView } from '../devices/catalog/claim.model';
import type { DeviceView } from '../devices/catalog/index';
import { DeviceClaimType } from '../schema/claim.type';
import type { GraphqlContext } from '../schema/context';
import { DeviceType } from '../schema/device.type';

@Resolver(() => DeviceClaimType)
export class ClaimResolver {
  @Query(() => [DeviceClaimType], { description: 'Claims the caller made, and claims against devices the caller owns.' })
  deviceClaims(@Ctx() ctx: GraphqlContext) {
    return ctx.services.claims.deviceClaims(ctx.caller);
  }

  @Mutation(() => DeviceClaimType, {
    description:
      'For a device that bindDevice reports as DEVICE_ALREADY_BOUND: the label code proves possession; the owner is told and may refuse within the window, else the device moves to the claimant.',
  })
  claimDevice(@Arg('serial', () => String) serial: string, @Arg('verificationCode', () => String) verificationCode: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.claims.claimDevice(ctx.caller, serial, verificationCode, ctx.meta);
  }

  @Mutation(() => Boolean, { description: 'The claimant withdraws, or the owner refuses.' })
  cancelClaim(@Arg('id', () => ID) id: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.claims.cancelClaim(ctx.caller, id);
  }

  @FieldResolver(() => DeviceType, { nullable: true, description: "The owner's device for the owner; for the claimant, set once COMPLETED." })
  device(@Root() claim: ClaimView, @Ctx() ctx: GraphqlContext): Promise<DeviceView | null> | null {
    return claim.deviceId ? ctx.loaders.devices.device.load(claim.deviceId) : null;
  }
}
