/** The reclaim vocabulary, free of GraphQL and Drizzle (src/schema/claim.type.ts registers the enum from it). */

export const CLAIM_STATUSES = ['PENDING', 'COMPLETED', 'CANCELLED'] as const;
export type ClaimStatus = (typeof CLAIM_STATUSES)[number];

/**
 * A claim as one caller sees it. Nothing in it names the other party. `deviceId` is what
 * DeviceClaim.device resolves (through the caller's own visibility): the owner's device for the
 * owner, the claimant's only once COMPLETED; null otherwise.
 */
export interface ClaimView {
  id: string;
  serial: string;
  status: ClaimStatus;
  createdAt: Date;
  completesAt: Date;
  mine: boolean;
  deviceId: string | null;
}
