import { Arg, Ctx, ID, Mutation, Query, Resolver } from 'type-graphql';
import { ApiKeyType, ApiKeyWithSecretType, ApiScopeEnum } from '../schema/account.type';
import type { GraphqlContext } from '../schema/context';

@Resolver()
export class ApiKeyResolver {
  @Query(() => [ApiKeyType])
  apiKeys(@Ctx() ctx: GraphqlContext) {
    return ctx.services.apiKeys.list(ctx.caller);
  }

  @Mutation(() => ApiKeyWithSecretType)
  createApiKey(
    @Arg('name', () => String) name: string,
    @Arg('scopes', () => [ApiScopeEnum]) scopes: string[],
    @Ctx() ctx: GraphqlContext,
  ) {
    return ctx.services.apiKeys.create(ctx.caller, name, scopes);
  }

  @Mutation(() => Boolean)
  revokeApiKey(@Arg('id', () => ID) id: string, @Ctx() ctx: GraphqlContext) {
    return ctx.services.apiKeys.revoke(ctx.caller, id);
  }
}
