import 'reflect-metadata';
import { lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { buildSchema } from 'type-graphql';
import { DateTimeScalar } from '../schema/scalars';
import '../schema/error-code';
import { AccountResolver } from './account.resolver';
import { AlarmResolver } from './alarm.resolver';
import { ApiKeyResolver } from './api-key.resolver';
import { ClaimResolver } from './claim.resolver';
import { DeviceConnectionResolver, DeviceResolver, UnbindResultResolver } from './device.resolver';
import { ResetResolver } from './reset.resolver';
import { DeviceStatusEventResolver, SubscriptionResolver } from './subscription.resolver';
import { TotpResolver } from './totp.resolver';

/** Every resolver class of the API; add new ones here. */
export const resolvers = [AccountResolver, TotpResolver, ApiKeyResolver, ResetResolver, DeviceResolver, DeviceConnectionResolver, UnbindResultResolver, AlarmResolver, SubscriptionResolver, DeviceStatusEventResolver, ClaimResolver] as const;

/** type-graphql wants a PubSub once there are subscriptions; ours bring their own `subscribe`, so it is never used. */
const unusedPubSub = {
  publish() {
    throw new Error('subscriptions publish through the event bus (src/streams/event-bus.ts)');
  },
  subscribe(): never {
    throw new Error('every @Subscription provides its own subscribe');
  },
};

/** Builds the executable schema. Validation is done by the services (zod), not class-validator. */
export function buildGraphqlSchema(): Promise<GraphQLSchema> {
  return buildSchema({
    resolvers: [...resolvers],
    scalarsMap: [{ type: Date, scalar: DateTimeScalar }],
    validate: false,
    emitSchemaFile: false,
    pubSub: unusedPubSub,
  });
}

const HEADER = '# Emitted by `npm run schema:emit` from the type-graphql classes in src/. Do not edit by hand.\n\n';

/** The SDL committed as schema.graphql; a test fails when the committed file differs. */
export function schemaSdl(schema: GraphQLSchema): string {
  return HEADER + printSchema(lexicographicSortSchema(schema)) + '\n';
}
