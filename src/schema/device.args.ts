import { ArgsType, Field, Int } from 'type-graphql';
import { DeviceFilterInput } from './device.input';

@ArgsType()
export class DevicesArgs {
  @Field(() => Int, { nullable: true, defaultValue: 50, description: '1..100.' })
  first?: number | null;

  @Field(() => String, { nullable: true, description: 'An edge cursor or pageInfo.endCursor from an earlier page.' })
  after?: string | null;

  @Field(() => DeviceFilterInput, { nullable: true })
  filter?: DeviceFilterInput | null;
}
