import { Field, ObjectType } from 'type-graphql';
import type { DeviceStatus } from '../devices/catalog/device.model';
import { DeviceStatusEnum } from './device.type';

@ObjectType('DeviceStatusEvent')
export class DeviceStatusEventType {
  // `device` is a field resolver (DeviceStatusEventResolver): the device as the subscriber sees it.

  @Field(() => DeviceStatusEnum)
  status: DeviceStatus;

  @Field(() => Date)
  at: Date;
}
