import { tables, type Db } from '../db/index';

export type Channel = 'email' | 'sms';

export interface OutboxMessage {
  channel: Channel;
  recipient: string;
  subject: string;
  body: string;
  kind: string;
}

/**
 * Queues a message for delivery. Call it with the transaction that makes the change the message
 * talks about, so the message exists exactly when the change does.
 */
export async function enqueueMessage(db: Db, message: OutboxMessage): Promise<void> {
  await db.insert(tables.outbox).values(message);
}

/** The address a notice about the account goes to: the email when there is one, else the phone. */
export function contactOf(user: { email: string | null; phone: string | null }): { channel: Channel; recipient: string } | null {
  if (user.email) return { channel: 'email', recipient: user.email };
  if (user.phone) return { channel: 'sms', recipient: user.phone };
  return null;
}
