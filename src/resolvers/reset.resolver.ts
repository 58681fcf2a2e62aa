import { Arg, Ctx, Mutation, Resolver } from 'type-graphql';
import { ConfirmResetInput } from '../schema/account.input';
import { RequestResetPayloadType } from '../schema/account.type';
import type { GraphqlContext } from '../schema/context';

@Resolver()
export class ResetResolver {
  @Mutation(() => RequestResetPayloadType)
  requestReset(@Arg('login', () => String) login: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.passwordReset.requestReset(login, ctx.meta);
  }

  @Mutation(() => Boolean)
  confirmReset(@Arg('input', () => ConfirmResetInput) input: ConfirmResetInput, @Ctx() ctx: GraphqlContext) {
    return ctx.services.passwordReset.confirmReset(input, ctx.meta);
  }
}
