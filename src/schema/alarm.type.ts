import { Field, ID, InputType, Int, ObjectType, registerEnumType } from 'type-graphql';
import { ALARM_TYPES, type AlarmType } from '../streams/alarms/alarm-type';
import { PageInfoType } from './device.type';

/** The GraphQL AlarmType enum, backed by the alarm area's string union so services never import graphql. */
export const AlarmTypeEnum = Object.fromEntries(ALARM_TYPES.map((v) => [v, v])) as { [K in AlarmType]: K };
registerEnumType(AlarmTypeEnum, {
  name: 'AlarmType',
  valuesConfig: {
    MOTION: { description: 'ISAPI VMD.' },
    LINE_CROSSING: { description: 'linedetection.' },
    INTRUSION: { description: 'fielddetection.' },
    REGION_ENTRANCE: { description: 'regionEntrance.' },
    REGION_EXIT: { description: 'regionExiting.' },
    TAMPER: { description: 'tamperdetection, shelteralarm.' },
    VIDEO_LOSS: { description: 'videoloss while active.' },
    ALARM_INPUT: { description: 'IO.' },
    FACE: { description: 'facedetection.' },
    DISK_FULL: { description: 'diskfull.' },
    DISK_ERROR: { description: 'diskerror.' },
    ILLEGAL_ACCESS: { description: 'illaccess.' },
    OTHER: { description: "Anything else; rawType keeps the device's word." },
  },
});

@ObjectType('Alarm')
export class AlarmObject {
  @Field(() => ID)
  id: string;

  @Field(() => String, { description: 'Opaque, totally ordered; pass to alarms(after:) to resume.' })
  cursor: string;

  // `device` and `acknowledgedBy` are field resolvers (AlarmResolver), batched per request.

  @Field(() => Int)
  channel: number;

  @Field(() => AlarmTypeEnum)
  type: AlarmType;

  @Field(() => String, { description: "The device's own eventType." })
  rawType: string;

  @Field(() => String, { nullable: true })
  description: string | null;

  @Field(() => Date, { description: "Device's time of the first active post." })
  startedAt: Date;

  @Field(() => Date, { nullable: true, description: 'Set by an inactive post, or by 10 s without a repeat.' })
  endedAt: Date | null;

  @Field(() => Int, { description: 'Repeated active posts coalesce into one alarm.' })
  activePostCount: number;

  @Field(() => Date, { nullable: true })
  acknowledgedAt: Date | null;
}

@ObjectType('AlarmEdge')
export class AlarmEdgeType {
  @Field(() => String)
  cursor: string;

  @Field(() => AlarmObject)
  node: AlarmObject;
}

@ObjectType('AlarmConnection')
export class AlarmConnectionType {
  @Field(() => [AlarmEdgeType])
  edges: AlarmEdgeType[];

  @Field(() => PageInfoType)
  pageInfo: PageInfoType;
}

@InputType('AlarmFilter')
export class AlarmFilterInput {
  @Field(() => [ID], { nullable: true })
  deviceIds?: string[] | null;

  @Field(() => [AlarmTypeEnum], { nullable: true })
  types?: AlarmType[] | null;

  @Field(() => Date, { nullable: true, description: 'Alarms the gateway received at or after this time.' })
  since?: Date | null;

  @Field(() => Boolean, { nullable: true })
  acknowledged?: boolean | null;
}
