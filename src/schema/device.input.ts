import { Field, InputType } from 'type-graphql';
import type { DeviceRole, DeviceStatus } from '../devices/catalog/device.model';
import { DeviceRoleEnum, DeviceStatusEnum } from './device.type';

@InputType('DeviceFilter')
export class DeviceFilterInput {
  @Field(() => DeviceStatusEnum, { nullable: true })
  status?: DeviceStatus | null;

  @Field(() => DeviceRoleEnum, { nullable: true })
  role?: DeviceRole | null;

  @Field(() => String, { nullable: true, description: 'Matches name or serial, case-insensitive.' })
  search?: string | null;
}
