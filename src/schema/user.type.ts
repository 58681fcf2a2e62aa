import { Field, ID, ObjectType } from 'type-graphql';

// Plain rows: no per-field middleware wrapper (see device.type.ts).
@ObjectType('User', { simpleResolvers: true })
export class UserType {
  @Field(() => ID)
  id: string;

  @Field(() => String, { nullable: true, description: 'Lower-cased.' })
  email: string | null;

  @Field(() => String, { nullable: true, description: 'E.164, e.g. +14155550123.' })
  phone: string | null;

  @Field(() => String, { nullable: true })
  displayName: string | null;

  @Field(() => Boolean)
  totpEnabled: boolean;

  @Field(() => Date)
  createdAt: Date;
}
