import { Field, InputType } from 'type-graphql';

@InputType('RegisterInput')
export class RegisterInput {
  @Field(() => String, { nullable: true, description: 'At least one of email / phone.' })
  email?: string | null;

  @Field(() => String, { nullable: true })
  phone?: string | null;

  @Field(() => String)
  password: string;

  @Field(() => String, { nullable: true })
  displayName?: string | null;
}

@InputType('LoginInput')
export class LoginInput {
  @Field(() => String, { description: 'Email or phone.' })
  login: string;

  @Field(() => String)
  password: string;

  @Field(() => String, { nullable: true, description: '6-digit TOTP or a one-time recovery code, when totpEnabled.' })
  totp?: string | null;
}

@InputType('ConfirmResetInput')
export class ConfirmResetInput {
  @Field(() => String, { nullable: true, description: "From the emailed/SMS'd link ..." })
  token?: string | null;

  @Field(() => String, { nullable: true, description: '... or login + 6-digit code.' })
  login?: string | null;

  @Field(() => String, { nullable: true })
  code?: string | null;

  @Field(() => String)
  newPassword: string;
}
