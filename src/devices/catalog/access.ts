import { and, gt, inArray, isNull, or, type AnyColumn, type SQL } from 'drizzle-orm';
import { tables, type Db } from '../../db/index';

/**
 * Who may see a device: the one home of the rule, used by every store (devices, alarms, live).
 * A binding is visible to its owner while open; a share grants its permissions while it is not
 * revoked and not expired. Callers join `shares` (or an alias of it) and add this condition.
 */
export function shareIsActive(share: { revokedAt: AnyColumn; expiresAt: AnyColumn }, now: Date): SQL {
  return and(isNull(share.revokedAt), or(isNull(share.expiresAt), gt(share.expiresAt, now)))!;
}

export interface UserContact {
  id: string;
  email: string | null;
  phone: string | null;
  displayName: string | null;
}

/** Contact fields of users (the caller decides what a viewer may see of them). */
export async function usersByIds(db: Db, ids: readonly string[]): Promise<UserContact[]> {
  if (ids.length === 0) return [];
  const { users } = tables;
  return db
    .select({ id: users.id, email: users.email, phone: users.phone, displayName: users.displayName })
    .from(users)
    .where(inArray(users.id, [...new Set(ids)]));
}
