import { and, asc, eq, inArray, isNull, lte, sql } from 'drizzle-orm';
import { tables, type Db } from '../db/index';

export type Channel = 'email' | 'sms';

export interface OutboxMessage {
  channel: Channel;
  recipient: string;
  subject: string;
  body: string;
  kind: string;
}

/** A message claimed for delivery; `attempts` already counts the attempt about to be made. */
export interface ClaimedMessage extends OutboxMessage {
  id: number;
  attempts: number;
}

/**
 * The kind of a message queued only so that a request without an account costs what one with an
 * account does (password reset): claimed like any other, never sent, deleted once claimed.
 */
export const DISCARDED_KIND = 'discarded';

/** Seals secrets at rest (accounts' AES-256-GCM box, keyed from the signing key, which is not in the database). */
export interface SecretBox {
  seal(plain: string, aad: string): string;
  open(sealed: string, aad: string): string;
}

const SEALED_PREFIX = 'sealed:';
/** What stands where a secret was, once its message was delivered or given up. */
export const REMOVED_SECRET = '[removed after delivery]';

/**
 * The stored body of a message that carries secrets (a reset code and link): `template` with
 * `{{name}}` placeholders and the `secrets` that fill them, sealed together, so a copy of the
 * database never holds them in the clear. The delivery worker opens it only to send, and then
 * keeps just the template with each secret replaced by REMOVED_SECRET.
 */
export function sealedBody(box: SecretBox, recipient: string, template: string, secrets: Record<string, string>): string {
  return SEALED_PREFIX + box.seal(JSON.stringify({ template, secrets }), recipient);
}

/**
 * The text to send and, for a sealed body, what to keep once it is delivered (`redacted`; null for
 * a body without secrets, which is kept as it is). Throws when the body is sealed and `box` is
 * missing or cannot open it (the signing key changed).
 */
export function openBody(box: SecretBox | undefined, recipient: string, body: string): { text: string; redacted: string | null } {
  if (!body.startsWith(SEALED_PREFIX)) return { text: body, redacted: null };
  if (!box) throw new Error('sealed message and no key to open it');
  const { template, secrets } = JSON.parse(box.open(body.slice(SEALED_PREFIX.length), recipient)) as { template: string; secrets: Record<string, string> };
  const fill = (value: (name: string) => string) => template.replace(/\{\{(\w+)\}\}/g, (_, name: string) => value(name));
  return { text: fill((name) => secrets[name] ?? ''), redacted: fill(() => REMOVED_SECRET) };
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

/** Every address of the account: security notices go to all of them, so a hijacked channel is not the only one told. */
export function contactsOf(user: { email: string | null; phone: string | null }): Array<{ channel: Channel; recipient: string }> {
  const out: Array<{ channel: Channel; recipient: string }> = [];
  if (user.email) out.push({ channel: 'email', recipient: user.email });
  if (user.phone) out.push({ channel: 'sms', recipient: user.phone });
  return out;
}

const pending = () => and(isNull(tables.outbox.sentAt), isNull(tables.outbox.failedAt));

/**
 * Claims up to `limit` due messages for this worker: locks them with `FOR UPDATE SKIP LOCKED` (so
 * workers on other nodes pass over them), counts the attempt and leases them until `leaseUntil`.
 * A worker that dies mid-send leaves the row pending; it becomes due again when the lease ends.
 */
export async function claimDueMessages(db: Db, now: Date, limit: number, leaseUntil: Date): Promise<ClaimedMessage[]> {
  return db.transaction(async (tx) => {
    const rows = await tx
      .select({
        id: tables.outbox.id,
        channel: tables.outbox.channel,
        recipient: tables.outbox.recipient,
        subject: tables.outbox.subject,
        body: tables.outbox.body,
        kind: tables.outbox.kind,
        attempts: tables.outbox.attempts,
      })
      .from(tables.outbox)
      .where(and(pending(), lte(tables.outbox.nextAttemptAt, now)))
      .orderBy(asc(tables.outbox.nextAttemptAt), asc(tables.outbox.id))
      .limit(limit)
      .for('update', { skipLocked: true });
    if (rows.length === 0) return [];
    await tx
      .update(tables.outbox)
      .set({ attempts: sql`${tables.outbox.attempts} + 1`, nextAttemptAt: leaseUntil })
      .where(
        inArray(
          tables.outbox.id,
          rows.map((r) => r.id),
        ),
      );
    return rows.map((r) => ({ ...r, channel: r.channel as Channel, attempts: r.attempts + 1 }));
  });
}

/** Deletes a claimed DISCARDED_KIND message, which is never sent. */
export async function dropDiscardedMessage(db: Db, id: number): Promise<void> {
  await db.delete(tables.outbox).where(and(eq(tables.outbox.id, id), eq(tables.outbox.kind, DISCARDED_KIND)));
}

/** Marks the message sent; `body` replaces the stored one (a sealed body's redacted text). */
export async function markMessageSent(db: Db, id: number, now: Date, body?: string): Promise<void> {
  await db
    .update(tables.outbox)
    .set({ sentAt: now, lastError: null, ...(body !== undefined ? { body } : {}) })
    .where(and(eq(tables.outbox.id, id), pending()));
}

export async function scheduleMessageRetry(db: Db, id: number, at: Date, error: string): Promise<void> {
  await db.update(tables.outbox).set({ nextAttemptAt: at, lastError: error }).where(and(eq(tables.outbox.id, id), pending()));
}

export async function markMessageFailed(db: Db, id: number, now: Date, error: string, body?: string): Promise<void> {
  await db
    .update(tables.outbox)
    .set({ failedAt: now, lastError: error, ...(body !== undefined ? { body } : {}) })
    .where(and(eq(tables.outbox.id, id), pending()));
}
