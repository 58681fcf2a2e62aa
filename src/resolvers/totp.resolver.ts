import { Arg, Ctx, Mutation, Resolver } from 'type-graphql';
import { TotpEnrollmentType } from '../schema/account.type';
import type { GraphqlContext } from '../schema/context';

@Resolver()
export class TotpResolver {
  @Mutation(() => TotpEnrollmentType)
  enableTotp(@Ctx() ctx: GraphqlContext) {
    return ctx.services.totp.enable(ctx.caller);
  }

  @Mutation(() => [String], { description: 'Returns one-time recovery codes.' })
  confirmTotp(@Arg('code', () => String) code: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.totp.confirm(ctx.caller, code);
  }

  @Mutation(() => Boolean)
  disableTotp(@Arg('password', () => String) password: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.totp.disable(ctx.caller, password, ctx.meta);
  }
}
