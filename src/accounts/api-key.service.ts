import { randomBytes } from 'node:crypto';
import { and, count, desc, eq, isNull, lt, or } from 'drizzle-orm';
import { z } from 'zod';
import { tables, type Db } from '../db/index';
import { CommonError } from '../lib/domain-error';
import type { LimiterFactory } from '../lib/rate-limit';
import { safeEqual, sha256 } from '../lib/secrets';
import { isUuid, parseInput } from '../lib/validate';
import type { ApiKeyAuthenticator } from './auth.service';
import { API_SCOPES, requireSessionCaller, type ApiScope, type Caller } from './caller';

/**
 * Keys look like `vgk_<8 hex>_<64 hex>`: a fixed tag (so the gateway, and secret scanners, can
 * tell a key from a JWT), a public prefix for recognising the key in a list, and 256 random bits.
 * Only sha256 of the whole key is stored: the secret has full entropy, so a slow hash adds nothing.
 */
const KEY_TAG = 'vgk';
const KEY_PATTERN = /^vgk_[0-9a-f]{8}_[0-9a-f]{64}$/;
export const MAX_ACTIVE_API_KEYS = 20;
/** last_used_at is written at most this often per key, so a busy partner doesn't write on every request. */
const LAST_USED_GRANULARITY_MS = 60_000;

export interface ApiKeyView {
  id: string;
  name: string;
  scopes: ApiScope[];
  createdAt: Date;
  lastUsedAt: Date | null;
  prefix: string;
}

const createInput = z.object({
  name: z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters'),
  scopes: z
    .array(z.enum(API_SCOPES, { message: 'unknown scope' }))
    .min(1, 'give at least one scope')
    .max(API_SCOPES.length * 2, 'too many scopes'),
});

type ApiKeyRow = typeof tables.apiKeys.$inferSelect;

const knownScopes = (scopes: readonly string[]): ApiScope[] => scopes.filter((s): s is ApiScope => (API_SCOPES as readonly string[]).includes(s));

const view = (row: ApiKeyRow): ApiKeyView => ({
  id: row.id,
  name: row.name,
  scopes: knownScopes(row.scopes),
  createdAt: row.createdAt,
  lastUsedAt: row.lastUsedAt,
  prefix: row.prefix,
});

export interface ApiKeyServiceDeps {
  db: Db;
  clock: () => Date;
  limiters: LimiterFactory;
  /** Told after a key is revoked; app.ts publishes `session.ended` so every node closes its WebSockets. Must not throw. */
  onCredentialEnded?: (ended: { apiKeyId: string }) => void;
}

export function createApiKeyService(deps: ApiKeyServiceDeps) {
  const { db, clock } = deps;
  // Caps churn (create/revoke loops) on top of the cap on active keys.
  const createByUser = deps.limiters.create('api-key-create', 30, 3600);

  const authenticator: ApiKeyAuthenticator = {
    looksLikeApiKey: (bearer) => bearer.startsWith(`${KEY_TAG}_`),

    /** The owner limited to the key's scopes, or null for a malformed, unknown or revoked key. */
    async authenticate(bearer) {
      if (!KEY_PATTERN.test(bearer)) return null;
      const hash = sha256(bearer);
      const [row] = await db
        .select({ id: tables.apiKeys.id, userId: tables.apiKeys.userId, secretHash: tables.apiKeys.secretHash, scopes: tables.apiKeys.scopes, lastUsedAt: tables.apiKeys.lastUsedAt })
        .from(tables.apiKeys)
        .where(and(eq(tables.apiKeys.secretHash, hash), isNull(tables.apiKeys.revokedAt)))
        .limit(1);
      if (!row || !safeEqual(row.secretHash, hash)) return null;
      const now = clock();
      if (!row.lastUsedAt || now.getTime() - row.lastUsedAt.getTime() >= LAST_USED_GRANULARITY_MS) {
        const cutoff = new Date(now.getTime() - LAST_USED_GRANULARITY_MS);
        await db
          .update(tables.apiKeys)
          .set({ lastUsedAt: now })
          .where(and(eq(tables.apiKeys.id, row.id), or(isNull(tables.apiKeys.lastUsedAt), lt(tables.apiKeys.lastUsedAt, cutoff))));
      }
      return { kind: 'apiKey', userId: row.userId, apiKeyId: row.id, scopes: knownScopes(row.scopes) };
    },
  };

  return {
    ...authenticator,

    /** Creates a key and returns its secret, the only time it is ever shown. */
    async create(caller: Caller | null, name: unknown, scopes: unknown): Promise<{ apiKey: ApiKeyView; secret: string }> {
      const c = requireSessionCaller(caller);
      const v = parseInput(createInput, { name, scopes });
      const wait = await createByUser.consume(c.userId);
      if (wait > 0) throw CommonError.rateLimited(wait);
      const prefix = `${KEY_TAG}_${randomBytes(4).toString('hex')}`;
      const secret = `${prefix}_${randomBytes(32).toString('hex')}`;
      const row = await db.transaction(async (tx) => {
        // Lock the owner's row so concurrent creates cannot both pass the cap.
        await tx.select({ id: tables.users.id }).from(tables.users).where(eq(tables.users.id, c.userId)).for('update');
        const [active] = await tx
          .select({ n: count() })
          .from(tables.apiKeys)
          .where(and(eq(tables.apiKeys.userId, c.userId), isNull(tables.apiKeys.revokedAt)));
        if ((active?.n ?? 0) >= MAX_ACTIVE_API_KEYS) {
          throw CommonError.badInput(`You have ${MAX_ACTIVE_API_KEYS} active API keys; revoke one before creating another`);
        }
        const [inserted] = await tx
          .insert(tables.apiKeys)
          .values({ userId: c.userId, name: v.name, prefix, secretHash: sha256(secret), scopes: [...new Set(v.scopes)], createdAt: clock() })
          .returning();
        return inserted!;
      });
      return { apiKey: view(row), secret };
    },

    /** The caller's keys that are not revoked, newest first; never their secrets. */
    async list(caller: Caller | null): Promise<ApiKeyView[]> {
      const c = requireSessionCaller(caller);
      const rows = await db
        .select()
        .from(tables.apiKeys)
        .where(and(eq(tables.apiKeys.userId, c.userId), isNull(tables.apiKeys.revokedAt)))
        .orderBy(desc(tables.apiKeys.createdAt))
        .limit(MAX_ACTIVE_API_KEYS);
      return rows.map(view);
    },

    /** Revokes one of the caller's keys; it stops working with the next request. NOT_FOUND for anyone else's. */
    async revoke(caller: Caller | null, id: string): Promise<boolean> {
      const c = requireSessionCaller(caller);
      if (!isUuid(id)) throw CommonError.notFound('API key not found');
      const updated = await db
        .update(tables.apiKeys)
        .set({ revokedAt: clock() })
        .where(and(eq(tables.apiKeys.id, id), eq(tables.apiKeys.userId, c.userId), isNull(tables.apiKeys.revokedAt)))
        .returning({ id: tables.apiKeys.id });
      if (updated.length === 0) throw CommonError.notFound('API key not found');
      try {
        deps.onCredentialEnded?.({ apiKeyId: id });
      } catch {
        // A lost announcement is bounded by the sockets' periodic re-check.
      }
      return true;
    },

    /** True while the key exists and is not revoked: used by long-lived sockets. */
    async isKeyActive(apiKeyId: string): Promise<boolean> {
      const [row] = await db
        .select({ id: tables.apiKeys.id })
        .from(tables.apiKeys)
        .where(and(eq(tables.apiKeys.id, apiKeyId), isNull(tables.apiKeys.revokedAt)))
        .limit(1);
      return !!row;
    },
  };
}

export type ApiKeyService = ReturnType<typeof createApiKeyService>;
