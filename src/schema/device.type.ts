import { Field, ID, Int, ObjectType, registerEnumType } from 'type-graphql';
import { DEVICE_ROLES, DEVICE_STATUSES, PERMISSIONS, type DeviceRole, type DeviceStatus, type Permission } from '../devices/catalog/device.model';
import { UserType } from './user.type';

/** GraphQL enums backed by the device area's string unions, so services never import graphql. */
export const enumOf = <T extends string>(values: readonly T[]) => Object.fromEntries(values.map((v) => [v, v])) as { [K in T]: K };

export const DeviceStatusEnum = enumOf(DEVICE_STATUSES);
registerEnumType(DeviceStatusEnum, {
  name: 'DeviceStatus',
  valuesConfig: { UNKNOWN: { description: 'An ISAPI device that sends no heartbeat and has been quiet; see lastSeenAt.' } },
});

export const PermissionEnum = enumOf(PERMISSIONS);
registerEnumType(PermissionEnum, {
  name: 'Permission',
  valuesConfig: {
    ALARMS: { description: 'Receive alarms and status of the device.' },
    CONFIGURE: { description: 'Rename, acknowledge alarms.' },
  },
});

export const DeviceRoleEnum = enumOf(DEVICE_ROLES);
registerEnumType(DeviceRoleEnum, { name: 'DeviceRole' });

// Plain data (no getters or methods): simpleResolvers leaves default resolvers, which graphql-jit inlines.
@ObjectType('Device', { simpleResolvers: true })
export class DeviceType {
  @Field(() => ID)
  id: string;

  @Field(() => String, { description: 'E.g. DS-2CD2143G2-I20230101AAWRJ12345678.' })
  serial: string;

  @Field(() => String, { nullable: true })
  model: string | null;

  @Field(() => String)
  name: string;

  @Field(() => DeviceStatusEnum)
  status: DeviceStatus;

  @Field(() => Date, { nullable: true })
  lastSeenAt: Date | null;

  @Field(() => String, { nullable: true })
  firmware: string | null;

  @Field(() => Int)
  channels: number;

  @Field(() => DeviceRoleEnum, { description: "The caller's relation to the device." })
  role: DeviceRole;

  @Field(() => [PermissionEnum], { description: 'What the caller may do (an owner has all).' })
  permissions: Permission[];

  // `shares` is a field resolver (DeviceResolver), batched per request.

  @Field(() => Date)
  boundAt: Date;
}

@ObjectType('DeviceEdge', { simpleResolvers: true })
export class DeviceEdgeType {
  @Field(() => String)
  cursor: string;

  @Field(() => DeviceType)
  node: DeviceType;
}

@ObjectType('PageInfo', { simpleResolvers: true })
export class PageInfoType {
  @Field(() => Boolean)
  hasNextPage: boolean;

  @Field(() => String, { nullable: true })
  endCursor: string | null;
}

@ObjectType('DeviceConnection', { simpleResolvers: true })
export class DeviceConnectionType {
  @Field(() => [DeviceEdgeType])
  edges: DeviceEdgeType[];

  @Field(() => PageInfoType)
  pageInfo: PageInfoType;

  // `totalCount` is a field resolver (DeviceConnectionResolver): counted only when asked for.
}

@ObjectType('Share', { simpleResolvers: true })
export class ShareType {
  @Field(() => ID)
  id: string;

  @Field(() => DeviceType)
  device: DeviceType;

  @Field(() => UserType, { description: 'Only id/displayName and the login used to invite are visible to the owner.' })
  grantee: UserType;

  @Field(() => [PermissionEnum])
  permissions: Permission[];

  @Field(() => Date, { nullable: true })
  expiresAt: Date | null;

  @Field(() => Date)
  createdAt: Date;
}

@ObjectType('UnbindResult')
export class UnbindResultType {
  @Field(() => ID)
  deviceId: string;

  @Field(() => Boolean)
  ok: boolean;

  // `error` is a field resolver (UnbindResultResolver) mapping the service's error to ErrorCode.

  @Field(() => Int, { description: 'Shares that ended with the unbinding.' })
  revokedShares: number;
}
