import { sql } from 'drizzle-orm';
import { bigserial, boolean, index, integer, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';

const createdAt = () => timestamp({ withTimezone: true, mode: 'date' }).notNull().defaultNow();
const at = () => timestamp({ withTimezone: true, mode: 'date' });

export const users = pgTable(
  'users',
  {
    id: uuid().primaryKey().defaultRandom(),
    email: text(), // lower-cased
    phone: text(), // E.164
    displayName: text(),
    passwordHash: text().notNull(),
    passwordChangedAt: createdAt(),
    /** Base32 TOTP secret; set while enrolling (totpEnabled false) and once enabled. */
    totpSecret: text(),
    totpEnabled: boolean().notNull().default(false),
    /** Last accepted TOTP time step, so a code cannot be replayed within its window. */
    totpLastStep: integer(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('users_email_key').on(t.email), uniqueIndex('users_phone_key').on(t.phone)],
);

export const sessions = pgTable(
  'sessions',
  {
    id: uuid().primaryKey().defaultRandom(),
    userId: uuid()
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    createdAt: createdAt(),
    lastUsedAt: createdAt(),
    expiresAt: at().notNull(),
    userAgent: text(),
    ip: text(),
    revokedAt: at(),
    revokedReason: text(),
  },
  (t) => [index('sessions_user_idx').on(t.userId)],
);

/** Every refresh token ever issued, by hash; a used one presented again revokes its session. */
export const refreshTokens = pgTable(
  'refresh_tokens',
  {
    tokenHash: text().primaryKey(),
    sessionId: uuid()
      .notNull()
      .references(() => sessions.id, { onDelete: 'cascade' }),
    createdAt: createdAt(),
    usedAt: at(),
  },
  (t) => [index('refresh_tokens_session_idx').on(t.sessionId)],
);

export const recoveryCodes = pgTable(
  'recovery_codes',
  {
    id: uuid().primaryKey().defaultRandom(),
    userId: uuid()
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    codeHash: text().notNull(),
    usedAt: at(),
    createdAt: createdAt(),
  },
  (t) => [index('recovery_codes_user_idx').on(t.userId)],
);

export const passwordResets = pgTable(
  'password_resets',
  {
    id: uuid().primaryKey().defaultRandom(),
    userId: uuid()
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    tokenHash: text().notNull(),
    codeHash: text().notNull(),
    channel: text().notNull(), // 'email' | 'sms'
    expiresAt: at().notNull(),
    failedAttempts: integer().notNull().default(0),
    /** Set when used, superseded by a newer request, or burnt by too many wrong codes. */
    closedAt: at(),
    closedReason: text(),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('password_resets_token_key').on(t.tokenHash),
    index('password_resets_open_idx').on(t.userId).where(sql`closed_at is null`),
  ],
);

export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid().primaryKey().defaultRandom(),
    userId: uuid()
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text().notNull(),
    prefix: text().notNull(),
    secretHash: text().notNull(),
    scopes: text().array().notNull(),
    createdAt: createdAt(),
    lastUsedAt: at(),
    revokedAt: at(),
  },
  (t) => [uniqueIndex('api_keys_secret_key').on(t.secretHash), index('api_keys_user_idx').on(t.userId)],
);

/** Messages to deliver, written in the same transaction as the change that causes them. */
export const outbox = pgTable(
  'outbox',
  {
    id: bigserial({ mode: 'number' }).primaryKey(),
    channel: text().notNull(), // 'email' | 'sms'
    recipient: text().notNull(),
    subject: text().notNull(),
    body: text().notNull(),
    kind: text().notNull(), // e.g. 'password-reset', 'password-changed', 'device-unbound'
    createdAt: createdAt(),
    attempts: integer().notNull().default(0),
    nextAttemptAt: createdAt(),
    sentAt: at(),
    failedAt: at(),
    lastError: text(),
  },
  (t) => [index('outbox_pending_idx').on(t.nextAttemptAt).where(sql`sent_at is null and failed_at is null`)],
);
