import { randomUUID } from 'node:crypto';
import { and, desc, eq, gt, isNull, ne, sql } from 'drizzle-orm';
import { z } from 'zod';
import { tables, isUniqueViolation, type Db } from '../db/index';
import { sourceKey } from '../lib/client-address';
import { CommonError } from '../lib/domain-error';
import type { LimiterFactory } from '../lib/rate-limit';
import { randomToken, sha256 } from '../lib/secrets';
import { emailSchema, isUuid, loginSchema, parseInput, phoneSchema, type Login } from '../lib/validate';
import { contactOf, enqueueMessage } from '../notify/outbox';
import { AccountError } from './account.errors';
import type { AccessTokenSigner } from './access-tokens';
import type { Caller } from './caller';
import { requireSessionCaller } from './caller';
import { assertPasswordPolicy, hashingAccepts, hashPassword, passwordNeedsRehash, PASSWORD_MAX, verifyPassword } from './password';

export type UserRow = typeof tables.users.$inferSelect;

export interface RequestMeta {
  ip: string;
  userAgent: string | null;
}

export interface AuthResult {
  accessToken: string;
  accessTokenExpiresAt: Date;
  refreshToken: string;
  user: UserRow;
}

export interface SessionView {
  id: string;
  createdAt: Date;
  lastUsedAt: Date;
  userAgent: string | null;
  ip: string | null;
  current: boolean;
}

/** Checks a second factor (TOTP or a recovery code) for a user with 2FA on; consumes recovery codes. */
export interface SecondFactorVerifier {
  verify(db: Db, user: UserRow, code: string): Promise<boolean>;
}

/** Resolves `Authorization: Bearer <secret>` values that are API keys (not JWTs). */
export interface ApiKeyAuthenticator {
  looksLikeApiKey(bearer: string): boolean;
  authenticate(bearer: string): Promise<Caller | null>;
}

export interface AuthServiceDeps {
  db: Db;
  clock: () => Date;
  signer: AccessTokenSigner;
  limiters: LimiterFactory;
  limits: {
    loginFreePerSource: number;
    loginPerAccount: number;
    loginAccountWindowS: number;
    loginPerIp: number;
    loginWindowS: number;
    registerPerIpPerHour: number;
  };
  refreshTokenTtlS: number;
  secondFactor: SecondFactorVerifier;
  apiKeys: ApiKeyAuthenticator;
  /** Nudges the outbox worker after a commit that queued mail. */
  onOutbox: () => void;
  /**
   * Told when sessions end (logout, revokeSession, password change or reset, refresh-token reuse),
   * after the commit where this service owns the transaction; app.ts publishes `session.ended` so
   * every node closes that session's WebSockets. Must not throw.
   */
  onCredentialEnded?: (ended: { sessionId: string }) => void;
}

const passwordInput = z.string().max(PASSWORD_MAX * 4, 'too long');
const registerInput = z
  .object({
    email: emailSchema.nullish(),
    phone: phoneSchema.nullish(),
    password: z.string().max(1024, 'too long'),
    displayName: z.string().trim().min(1, 'must not be empty').max(100, 'too long').nullish(),
  })
  .refine((v) => v.email || v.phone, { message: 'give an email or a phone', path: ['email'] });
const loginInput = z.object({
  login: loginSchema,
  password: passwordInput,
  totp: z.string().trim().max(64, 'too long').nullish(),
});
const opaqueToken = z.string().min(1, 'required').max(512, 'too long');

/** How often a session's lastUsedAt is written back; reads in between don't write. */
const LAST_USED_GRANULARITY_MS = 60_000;

/**
 * After the free failures of one (account, source), each attempt waits 30 s, then 1, 2, 4, 8 min,
 * then 15 min for the rest of the day (NIST SP 800-63B 5.2.2's "30 seconds up to an hour").
 */
export const LOGIN_DELAY = { minWaitS: 30, maxWaitS: 15 * 60, lifetimeS: 24 * 3600 } as const;
/** A source the account has had a session from within this long may still sign in past the account ceiling. */
export const KNOWN_SOURCE_DAYS = 90;

/** One charged password attempt: settle it with the outcome. */
interface PasswordAttempt {
  /** The password was right but a second factor is still due: not a failure of this source, yet nothing is forgotten. */
  passwordRight(): Promise<void>;
  succeeded(): Promise<void>;
}

export function createAuthService(deps: AuthServiceDeps) {
  const { db, clock } = deps;
  // Password guesses are counted three ways (README "Limits"): per (account, source), slowed down
  // progressively; per source across accounts; per account from anywhere, a ceiling past which
  // only sources the account already knows may try (the step-up: the owner's own devices, or a reset).
  const byPair = deps.limiters.backoff('login-pair', { free: deps.limits.loginFreePerSource, ...LOGIN_DELAY });
  const bySource = deps.limiters.create('login-source', deps.limits.loginPerIp, deps.limits.loginWindowS);
  const byAccount = deps.limiters.create('login-account', deps.limits.loginPerAccount, deps.limits.loginAccountWindowS);
  const registerByIp = deps.limiters.create('register-ip', deps.limits.registerPerIpPerHour, 3600);
  // Every authenticated request runs this: built once and prepared, so neither Drizzle nor Postgres plans it again.
  // Placeholders skip column encoders, so `now` is passed as an ISO string (Drizzle's postgres.js driver takes timestamps as text).
  const liveSessionById = db
    .select({ id: tables.sessions.id, userId: tables.sessions.userId, lastUsedAt: tables.sessions.lastUsedAt })
    .from(tables.sessions)
    .where(and(eq(tables.sessions.id, sql.placeholder('id')), isNull(tables.sessions.revokedAt), gt(tables.sessions.expiresAt, sql.placeholder('now'))))
    .limit(1)
    .prepare('auth_live_session');

  async function findUserByLogin(executor: Db, login: Login): Promise<UserRow | undefined> {
    const column = login.kind === 'email' ? tables.users.email : tables.users.phone;
    const [user] = await executor.select().from(tables.users).where(eq(column, login.value)).limit(1);
    return user;
  }

  async function startSession(user: UserRow, meta: RequestMeta): Promise<AuthResult> {
    const refreshToken = randomToken(32);
    // The id is made here so the access token is signed while the session is written.
    const sessionId = randomUUID();
    const now = clock().toISOString();
    const expiresAt = new Date(clock().getTime() + deps.refreshTokenTtlS * 1000).toISOString();
    // One statement (atomic on its own, the refresh token's foreign key checked at its end) writes
    // the session and its first refresh token: one round trip where a transaction takes four, each
    // of which waits its turn on a busy event loop (bench S6).
    const written = db.execute(sql`
      with s as (
        insert into ${tables.sessions} (id, user_id, user_agent, ip, expires_at, created_at, last_used_at)
        values (${sessionId}::uuid, ${user.id}::uuid, ${meta.userAgent?.slice(0, 300) ?? null}, ${meta.ip}, ${expiresAt}::timestamptz, ${now}::timestamptz, ${now}::timestamptz)
        returning id
      )
      insert into ${tables.refreshTokens} (token_hash, session_id, created_at) select ${sha256(refreshToken)}, s.id, ${now}::timestamptz from s`);
    const [access] = await Promise.all([deps.signer.sign(user.id, sessionId), written]);
    return { accessToken: access.token, accessTokenExpiresAt: access.expiresAt, refreshToken, user };
  }

  /** Revokes the open sessions `where` matches; returns their ids for `announceEnded` (after the commit). */
  async function revokeSessions(executor: Db, where: ReturnType<typeof and>, reason: string): Promise<string[]> {
    const rows = await executor
      .update(tables.sessions)
      .set({ revokedAt: clock(), revokedReason: reason })
      .where(and(where, isNull(tables.sessions.revokedAt)))
      .returning({ id: tables.sessions.id });
    return rows.map((r) => r.id);
  }

  function announceEnded(sessionIds: readonly string[]) {
    for (const sessionId of sessionIds) {
      try {
        deps.onCredentialEnded?.({ sessionId });
      } catch {
        // A lost announcement is bounded by the sockets' periodic re-check.
      }
    }
  }

  /** True when `userId` has had a session from `ip` in the last KNOWN_SOURCE_DAYS. */
  async function isKnownSource(userId: string, ip: string): Promise<boolean> {
    const since = new Date(clock().getTime() - KNOWN_SOURCE_DAYS * 86_400_000);
    const [row] = await db
      .select({ id: tables.sessions.id })
      .from(tables.sessions)
      .where(and(eq(tables.sessions.userId, userId), eq(tables.sessions.ip, ip), gt(tables.sessions.lastUsedAt, since)))
      .limit(1);
    return !!row;
  }

  /**
   * Refuses (RATE_LIMITED) before anything is looked up or charged when the hash queue is full: the
   * same answer whether or not the account exists, and not counted as a guess.
   */
  function assertHasherAccepts() {
    if (!hashingAccepts()) throw CommonError.rateLimited(1);
  }

  /**
   * Charges one password attempt against `accountKey` from `meta.ip` before the password is
   * checked, so parallel guesses cannot slip past; a failure needs no further call. Throws
   * RATE_LIMITED when the source is over its budget, when this (account, source) must still wait,
   * or when the account is over its ceiling and `knownSource()` says no.
   */
  async function chargeAttempt(accountKey: string, meta: RequestMeta, knownSource: () => Promise<boolean>): Promise<PasswordAttempt> {
    const source = sourceKey(meta.ip);
    const pairKey = `${accountKey}|${source}`;
    const sourceWait = await bySource.consume(source);
    if (sourceWait) {
      await bySource.refund(source);
      throw CommonError.rateLimited(sourceWait);
    }
    const pairWait = await byPair.attempt(pairKey);
    if (pairWait) {
      await bySource.refund(source);
      throw CommonError.rateLimited(pairWait);
    }
    const accountWait = await byAccount.consume(accountKey);
    if (accountWait) {
      // Over the ceiling, the attempt is not counted against the account: either it is refused,
      // or it comes from a known source, which the pair delay already slows.
      await byAccount.refund(accountKey);
      if (!(await knownSource())) {
        await bySource.refund(source);
        throw new CommonError(
          'RATE_LIMITED',
          'Too many failed sign-ins for this account: sign in from a device or network you have used before, or reset your password',
          accountWait,
        );
      }
    }
    return {
      async passwordRight() {
        await bySource.refund(source);
      },
      async succeeded() {
        await Promise.all([bySource.refund(source), byPair.reset(pairKey), byAccount.reset(accountKey)]);
      },
    };
  }

  /** Forgets every login failure counted against the user's logins (after a password reset: the guesses were at the old password). */
  async function clearLoginFailures(user: Pick<UserRow, 'id' | 'email' | 'phone'>): Promise<void> {
    const keys = [`user:${user.id}`, ...(user.email ? [`email:${user.email}`] : []), ...(user.phone ? [`phone:${user.phone}`] : [])];
    await Promise.all(keys.map((k) => byAccount.reset(k)));
  }

  /**
   * Step-up check for sensitive actions (change password, disable 2FA, unbind a device): the
   * account's own password, limited like login attempts. Returns the user row; throws
   * INVALID_CREDENTIALS or RATE_LIMITED.
   */
  async function confirmPassword(userId: string, password: unknown, meta: RequestMeta): Promise<UserRow> {
    const value = parseInput(passwordInput, password);
    assertHasherAccepts();
    // No known-source pass here: the caller holds a session, and a stolen one is exactly the case
    // to stop. The owner's way past the ceiling is a reset, which also ends the stolen session.
    const attempt = await chargeAttempt(`user:${userId}`, meta, async () => false);
    const [user] = await db.select().from(tables.users).where(eq(tables.users.id, userId)).limit(1);
    if (!(await verifyPassword(user?.passwordHash ?? null, value)) || !user) {
      throw new AccountError('INVALID_CREDENTIALS', 'The password is wrong');
    }
    await attempt.succeeded();
    return user;
  }

  return {
    async register(input: unknown, meta: RequestMeta): Promise<AuthResult> {
      const v = parseInput(registerInput, input);
      const wait = await registerByIp.consume(meta.ip);
      if (wait > 0) throw CommonError.rateLimited(wait);
      assertPasswordPolicy(v.password, { email: v.email, phone: v.phone, displayName: v.displayName });
      const passwordHash = await hashPassword(v.password);
      let user: UserRow;
      try {
        [user] = (await db
          .insert(tables.users)
          .values({ email: v.email ?? null, phone: v.phone ?? null, displayName: v.displayName ?? null, passwordHash, createdAt: clock(), passwordChangedAt: clock() })
          .returning()) as [UserRow];
      } catch (e) {
        // Deliberately vague: the same answer for a taken email and a taken phone.
        if (isUniqueViolation(e)) throw new AccountError('LOGIN_TAKEN', 'This email or phone cannot be used to register');
        throw e;
      }
      return startSession(user, meta);
    },

    async login(input: unknown, meta: RequestMeta): Promise<AuthResult> {
      const v = parseInput(loginInput, input);
      assertHasherAccepts();
      const accountKey = `${v.login.kind}:${v.login.value}`;
      // The lookup runs while the attempt is charged (the limiters' round trips, with Redis); the
      // password is checked only once both are done.
      const lookup = findUserByLogin(db, v.login);
      const [user, attempt] = await Promise.all([
        lookup,
        // An unknown login is never a known source: refused past the ceiling just like a real one.
        chargeAttempt(accountKey, meta, async () => {
          const found = await lookup;
          return !!found && (await isKnownSource(found.id, meta.ip));
        }),
      ]);
      // Same argon2 work whether or not the login exists.
      const ok = await verifyPassword(user?.passwordHash ?? null, v.password);
      if (!ok || !user) throw new AccountError('INVALID_CREDENTIALS', 'Invalid login or password');
      if (user.totpEnabled) {
        if (!v.totp) {
          await attempt.passwordRight();
          throw new AccountError('TOTP_REQUIRED', 'Enter the code from your authenticator app or a recovery code');
        }
        if (!(await deps.secondFactor.verify(db, user, v.totp))) throw new AccountError('INVALID_CREDENTIALS', 'Invalid login or password');
      }
      await attempt.succeeded();
      if (passwordNeedsRehash(user.passwordHash)) {
        const upgraded = await hashPassword(v.password);
        await db.update(tables.users).set({ passwordHash: upgraded }).where(eq(tables.users.id, user.id));
      }
      return startSession(user, meta);
    },

    async refresh(refreshToken: unknown, meta: RequestMeta): Promise<AuthResult> {
      const token = parseInput(opaqueToken, refreshToken);
      const hash = sha256(token);
      const now = clock();
      const outcome = await db.transaction(async (tx) => {
        const [row] = await tx
          .select({ token: tables.refreshTokens, session: tables.sessions, user: tables.users })
          .from(tables.refreshTokens)
          .innerJoin(tables.sessions, eq(tables.sessions.id, tables.refreshTokens.sessionId))
          .innerJoin(tables.users, eq(tables.users.id, tables.sessions.userId))
          .where(eq(tables.refreshTokens.tokenHash, hash))
          .for('update', { of: tables.refreshTokens })
          .limit(1);
        if (!row) return { kind: 'invalid' as const };
        if (row.token.usedAt) {
          // Reuse of a rotated token: someone holds a copy. End the whole session.
          return { kind: 'reused' as const, ended: await revokeSessions(tx, eq(tables.sessions.id, row.session.id), 'refresh-token-reuse') };
        }
        if (row.session.revokedAt || row.session.expiresAt <= now) return { kind: 'invalid' as const };
        await tx.update(tables.refreshTokens).set({ usedAt: now }).where(eq(tables.refreshTokens.tokenHash, hash));
        const next = randomToken(32);
        await tx.insert(tables.refreshTokens).values({ tokenHash: sha256(next), sessionId: row.session.id, createdAt: now });
        await tx
          .update(tables.sessions)
          .set({ lastUsedAt: now, ip: meta.ip, userAgent: meta.userAgent?.slice(0, 300) ?? row.session.userAgent })
          .where(eq(tables.sessions.id, row.session.id));
        return { kind: 'ok' as const, next, user: row.user, sessionId: row.session.id };
      });
      if (outcome.kind === 'reused') announceEnded(outcome.ended);
      if (outcome.kind !== 'ok') throw CommonError.unauthenticated('Invalid or expired refresh token');
      const access = await deps.signer.sign(outcome.user.id, outcome.sessionId);
      return { accessToken: access.token, accessTokenExpiresAt: access.expiresAt, refreshToken: outcome.next, user: outcome.user };
    },

    /** Ends the session the refresh token belongs to. True whether or not it was still open (no oracle). */
    async logout(refreshToken: unknown): Promise<boolean> {
      const token = parseInput(opaqueToken, refreshToken);
      const [row] = await db
        .select({ sessionId: tables.refreshTokens.sessionId })
        .from(tables.refreshTokens)
        .where(eq(tables.refreshTokens.tokenHash, sha256(token)))
        .limit(1);
      if (row) announceEnded(await revokeSessions(db, eq(tables.sessions.id, row.sessionId), 'logout'));
      return true;
    },

    async revokeSession(caller: Caller | null, id: string): Promise<boolean> {
      const c = requireSessionCaller(caller);
      if (!isUuid(id)) throw CommonError.notFound('Session not found');
      const updated = await db
        .update(tables.sessions)
        .set({ revokedAt: clock(), revokedReason: 'revoked' })
        .where(and(eq(tables.sessions.id, id), eq(tables.sessions.userId, c.userId), isNull(tables.sessions.revokedAt)))
        .returning({ id: tables.sessions.id });
      if (updated.length === 0) throw CommonError.notFound('Session not found');
      announceEnded(updated.map((u) => u.id));
      return true;
    },

    async listSessions(caller: Caller | null): Promise<SessionView[]> {
      const c = requireSessionCaller(caller);
      const rows = await db
        .select()
        .from(tables.sessions)
        .where(and(eq(tables.sessions.userId, c.userId), isNull(tables.sessions.revokedAt), gt(tables.sessions.expiresAt, clock())))
        .orderBy(desc(tables.sessions.lastUsedAt))
        .limit(200);
      return rows.map((s) => ({ id: s.id, createdAt: s.createdAt, lastUsedAt: s.lastUsedAt, userAgent: s.userAgent, ip: s.ip, current: s.id === c.sessionId }));
    },

    async changePassword(caller: Caller | null, currentPassword: unknown, newPassword: unknown, meta: RequestMeta): Promise<boolean> {
      const c = requireSessionCaller(caller);
      const next = parseInput(passwordInput, newPassword);
      const user = await confirmPassword(c.userId, currentPassword, meta);
      assertPasswordPolicy(next, user);
      const passwordHash = await hashPassword(next);
      const contact = contactOf(user);
      const ended = await db.transaction(async (tx) => {
        await tx.update(tables.users).set({ passwordHash, passwordChangedAt: clock() }).where(eq(tables.users.id, user.id));
        const ended = await revokeSessions(tx, and(eq(tables.sessions.userId, user.id), ne(tables.sessions.id, c.sessionId)), 'password-changed');
        if (contact) {
          await enqueueMessage(tx, {
            ...contact,
            kind: 'password-changed',
            subject: 'Your Vigil password was changed',
            body: 'The password of your Vigil account was just changed. If this was not you, reset your password at once and review your devices and shares.',
          });
        }
        return ended;
      });
      announceEnded(ended);
      deps.onOutbox();
      return true;
    },

    /**
     * Resolves a bearer credential to a caller, or null when it is missing, malformed, expired,
     * or belongs to a revoked session or key. Checks the session row on every call, so logout and
     * revokeSession take effect at once, before the access token expires.
     */
    async authenticate(authorization: string | undefined | null): Promise<Caller | null> {
      if (!authorization) return null;
      const match = /^Bearer\s+(\S{1,4096})$/i.exec(authorization.trim());
      if (!match) return null;
      const bearer = match[1]!;
      if (deps.apiKeys.looksLikeApiKey(bearer)) return deps.apiKeys.authenticate(bearer);
      const claims = await deps.signer.verify(bearer);
      if (!claims) return null;
      const now = clock();
      const [session] = await liveSessionById.execute({ id: claims.sessionId, now: now.toISOString() });
      if (!session || session.userId !== claims.userId) return null;
      if (now.getTime() - session.lastUsedAt.getTime() > LAST_USED_GRANULARITY_MS) {
        await db.update(tables.sessions).set({ lastUsedAt: now }).where(eq(tables.sessions.id, session.id));
      }
      return { kind: 'session', userId: session.userId, sessionId: session.id };
    },

    async me(caller: Caller | null): Promise<UserRow> {
      if (!caller) throw CommonError.unauthenticated();
      const [user] = await db.select().from(tables.users).where(eq(tables.users.id, caller.userId)).limit(1);
      if (!user) throw CommonError.unauthenticated();
      return user;
    },

    /** True while the session exists, is open and unexpired: used by long-lived sockets. */
    async isSessionOpen(sessionId: string): Promise<boolean> {
      const [s] = await db
        .select({ id: tables.sessions.id })
        .from(tables.sessions)
        .where(and(eq(tables.sessions.id, sessionId), isNull(tables.sessions.revokedAt), gt(tables.sessions.expiresAt, clock())))
        .limit(1);
      return !!s;
    },

    findUserByLogin,
    confirmPassword,
    clearLoginFailures,
    /**
     * Revokes every session of the user inside the caller's transaction. The sessions are announced
     * at once, before that commit (this service cannot see it); graphql-ws refuses the ended
     * sessions for a while so a reconnect cannot slip in before the commit.
     */
    revokeAllSessions: async (executor: Db, userId: string, reason: string): Promise<void> => {
      announceEnded(await revokeSessions(executor, eq(tables.sessions.userId, userId), reason));
    },
  };
}

export type AuthService = ReturnType<typeof createAuthService>;
