import { Field, ID, ObjectType, registerEnumType } from 'type-graphql';
import { CLAIM_STATUSES, type ClaimStatus } from '../devices/catalog/claim.model';
import { enumOf } from './device.type';

export const ClaimStatusEnum = enumOf(CLAIM_STATUSES);
registerEnumType(ClaimStatusEnum, {
  name: 'ClaimStatus',
  valuesConfig: {
    PENDING: { description: "Waiting out the owner's objection window." },
    COMPLETED: { description: 'The device now belongs to the claimant.' },
    CANCELLED: { description: 'Withdrawn by the claimant or refused by the owner.' },
  },
});

@ObjectType('DeviceClaim', {
  description: 'A claim by someone who holds a device (its label code) that another account still has bound. Neither side learns who the other is.',
})
export class DeviceClaimType {
  @Field(() => ID)
  id: string;

  @Field(() => String)
  serial: string;

  @Field(() => ClaimStatusEnum)
  status: ClaimStatus;

  @Field(() => Date)
  createdAt: Date;

  @Field(() => Date, { description: "End of the owner's objection window (RECLAIM_WINDOW_S, default 7 days)." })
  completesAt: Date;

  @Field(() => Boolean, { description: 'True: the caller made the claim; false: it is against a device the caller owns.' })
  mine: boolean;

  // `device` is a field resolver (ClaimResolver): the owner's device for the owner; for the claimant, set once COMPLETED.
}
