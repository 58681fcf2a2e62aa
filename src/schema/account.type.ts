import { Field, ID, ObjectType, registerEnumType } from 'type-graphql';
import { API_SCOPES } from '../accounts/caller';
import { UserType } from './user.type';

@ObjectType('AuthPayload')
export class AuthPayloadType {
  @Field(() => String, { description: 'Short-lived JWT, sent as `Authorization: Bearer <token>`.' })
  accessToken: string;

  @Field(() => Date)
  accessTokenExpiresAt: Date;

  @Field(() => String, { description: 'Opaque, single-use, rotated on every refresh.' })
  refreshToken: string;

  @Field(() => UserType)
  user: UserType;
}

@ObjectType('RequestResetPayload')
export class RequestResetPayloadType {
  @Field(() => Boolean, { description: 'Always true and byte-for-byte the same whether or not the login exists.' })
  accepted: boolean;
}

@ObjectType('Session')
export class SessionType {
  @Field(() => ID)
  id: string;

  @Field(() => Date)
  createdAt: Date;

  @Field(() => Date)
  lastUsedAt: Date;

  @Field(() => String, { nullable: true })
  userAgent: string | null;

  @Field(() => String, { nullable: true })
  ip: string | null;

  @Field(() => Boolean)
  current: boolean;
}

@ObjectType('TotpEnrollment')
export class TotpEnrollmentType {
  @Field(() => String, { description: 'Base32 secret.' })
  secret: string;

  @Field(() => String, { description: 'otpauth://totp/... URL for authenticator apps (QR code).' })
  otpauthUrl: string;
}

/** GraphQL enum backed by the service layer's string union, so services never import graphql. */
export const ApiScopeEnum = Object.fromEntries(API_SCOPES.map((s) => [s, s])) as { [K in (typeof API_SCOPES)[number]]: K };
registerEnumType(ApiScopeEnum, { name: 'ApiScope' });

@ObjectType('ApiKey')
export class ApiKeyType {
  @Field(() => ID)
  id: string;

  @Field(() => String)
  name: string;

  @Field(() => [ApiScopeEnum])
  scopes: string[];

  @Field(() => Date)
  createdAt: Date;

  @Field(() => Date, { nullable: true })
  lastUsedAt: Date | null;

  @Field(() => String, { description: 'First characters of the key, for recognising it.' })
  prefix: string;
}

@ObjectType('ApiKeyWithSecret')
export class ApiKeyWithSecretType {
  @Field(() => ApiKeyType)
  apiKey: ApiKeyType;

  @Field(() => String, { description: 'Shown once; sent as `Authorization: Bearer <secret>`.' })
  secret: string;
}
