import { Arg, Ctx, ID, Mutation, Query, Resolver } from 'type-graphql';
import { AuthPayloadType, SessionType } from '../schema/account.type';
import { LoginInput, RegisterInput } from '../schema/account.input';
import type { GraphqlContext } from '../schema/context';
import { UserType } from '../schema/user.type';

@Resolver()
export class AccountResolver {
  @Query(() => UserType)
  me(@Ctx() ctx: GraphqlContext) {
    return ctx.services.auth.me(ctx.caller);
  }

  @Query(() => [SessionType])
  sessions(@Ctx() ctx: GraphqlContext) {
    return ctx.services.auth.listSessions(ctx.caller);
  }

  @Mutation(() => AuthPayloadType)
  register(@Arg('input', () => RegisterInput) input: RegisterInput, @Ctx() ctx: GraphqlContext) {
    return ctx.services.auth.register(input, ctx.meta);
  }

  @Mutation(() => AuthPayloadType)
  login(@Arg('input', () => LoginInput) input: LoginInput, @Ctx() ctx: GraphqlContext) {
    return ctx.services.auth.login(input, ctx.meta);
  }

  @Mutation(() => AuthPayloadType)
  refreshToken(@Arg('refreshToken', () => String) refreshToken: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.auth.refresh(refreshToken, ctx.meta);
  }

  @Mutation(() => Boolean)
  logout(@Arg('refreshToken', () => String) refreshToken: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.auth.logout(refreshToken);
  }

  @Mutation(() => Boolean)
  revokeSession(@Arg('id', () => ID) id: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.auth.revokeSession(ctx.caller, id);
  }

  @Mutation(() => Boolean)
  changePassword(
    @Arg('currentPassword', () => String) currentPassword: string,
    @Arg('newPassword', () => String) newPassword: string,
    @Ctx() ctx: GraphqlContext,
  ) {
    return ctx.services.auth.changePassword(ctx.caller, currentPassword, newPassword, ctx.meta);
  }
}
