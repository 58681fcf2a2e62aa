import { createHmac, randomUUID } from 'node:crypto';
import { and, desc, eq, gt, isNull, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { z } from 'zod';
import { tables, type Db } from '../db/index';
import { sourceKey } from '../lib/client-address';
import type { LimiterFactory } from '../lib/rate-limit';
import { randomDigits, randomToken, safeEqual, sha256 } from '../lib/secrets';
import { loginSchema, parseInput, type Login } from '../lib/validate';
import { contactsOf, DISCARDED_KIND, enqueueMessage, sealedBody, type SecretBox } from '../notify/index';
import { AccountError } from './account.errors';
import type { AuthService, RequestMeta, UserRow } from './auth.service';
import { assertPasswordPolicy, hashPassword, PASSWORD_MAX } from './password';

/** How long a reset code and link work. */
export const RESET_TTL_MS = 15 * 60_000;
/** Wrong codes after which a reset's code stops working (its link still works, so the owner is never locked out). */
export const RESET_MAX_CODE_ATTEMPTS = 5;
/** The user id the statements for a login without an account look for: no row has it. */
const NO_USER = '00000000-0000-0000-0000-000000000000';
/** Pending reset requests held in memory; beyond this, requests are dropped (and logged). */
const QUEUE_LIMIT = 1000;

export interface PasswordResetDeps {
  db: Db;
  clock: () => Date;
  log: Logger;
  limiters: LimiterFactory;
  /**
   * `resetCodePerDay` / `resetCodePer30Days`: wrong codes one account takes in any 24 hours / 30
   * days, across all its resets (counted in the database); past them, codes are refused unchecked
   * and only the mailed link works. README "Limits" has the arithmetic.
   */
  limits: { resetPerLogin: number; resetPerIp: number; resetWindowS: number; resetCodePerDay: number; resetCodePer30Days: number };
  /** Base of the link in the message: `<publicUrl>/reset?token=...`. */
  publicUrl: string;
  /**
   * Server secret for the keyed hash of the 6-digit codes: derived from the signing key, which is
   * not in the database, so a stolen database does not let anyone try the 10^6 codes offline.
   */
  codeKey: Buffer;
  auth: Pick<AuthService, 'findUserByLogin' | 'revokeAllSessions' | 'clearLoginFailures'>;
  /** Seals the code and link in the stored message (the delivery worker opens it with the same box). */
  outboxBox: SecretBox;
  /** Nudges the outbox worker after a commit that queued messages. */
  onOutbox: () => void;
}

export interface RequestResetResult {
  accepted: true;
}

const confirmInput = z
  .object({
    token: z.string().max(512, 'too long').nullish(),
    login: z.string().max(254, 'too long').nullish(),
    code: z.string().max(64, 'too long').nullish(),
    newPassword: z.string().max(PASSWORD_MAX * 4, 'too long'),
  })
  .refine((v) => !!v.token !== !!(v.login || v.code), { message: 'give either token, or login and code', path: ['token'] });

const CODE_FORMAT = /^\d{6}$/;

/**
 * Password reset by emailed/SMS'd link or 6-digit code.
 *
 * `requestReset` does only work that is the same for every login (format check, rate limits) and
 * hands the rest to an in-process queue, so its answer and its timing say nothing about whether
 * the login exists. The queue's worker (`worker`, started and stopped with the app) looks the user
 * up, stores the token (sha256) and code (HMAC-SHA256 keyed with `codeKey` and the reset id), and
 * queues the message in the same transaction.
 */
export function createPasswordResetService(deps: PasswordResetDeps) {
  const { db, clock, log: baseLog } = deps;
  const log = baseLog.child({ component: 'password-reset' });
  const byLogin = deps.limiters.create('reset-login', deps.limits.resetPerLogin, deps.limits.resetWindowS);
  const byIp = deps.limiters.create('reset-ip', deps.limits.resetPerIp, deps.limits.resetWindowS);
  // Wrong codes per source: as many as its allowed requests could earn, then its codes are refused.
  // Links are not limited here: a 256-bit token cannot be guessed, and the owner's link must work.
  const codeFailuresBySource = deps.limiters.create('reset-confirm-ip', deps.limits.resetPerIp * RESET_MAX_CODE_ATTEMPTS, deps.limits.resetWindowS);

  const codeHash = (resetId: string, code: string) => createHmac('sha256', deps.codeKey).update(`${resetId}:${code}`).digest('hex');
  const invalid = () => new AccountError('INVALID_RESET_CODE', 'The reset code or link is invalid or has expired');

  /** The message with `{{code}}` and `{{link}}` for the secrets, which are sealed apart (notify's sealedBody). */
  function resetMessage(login: Login, token: string, code: string) {
    const secrets = { code, link: `${deps.publicUrl}/reset?token=${token}` };
    const sealed = (template: string) => sealedBody(deps.outboxBox, login.value, template, secrets);
    if (login.kind === 'phone') {
      return { subject: 'Vigil password reset', body: sealed('Vigil password reset code: {{code}}\nOr open {{link}}\nValid 15 minutes. Not you? Ignore this.') };
    }
    return {
      subject: 'Reset your Vigil password',
      body: sealed([
        'Someone, hopefully you, asked to reset the password of your Vigil account.',
        '',
        'Your code: {{code}}',
        '',
        'Or open this link:',
        '{{link}}',
        '',
        'The code and the link work once and expire in 15 minutes. If you did not ask for this,',
        'ignore this message: your password stays as it is.',
      ].join('\n')),
    };
  }

  /**
   * Creates the reset for `login` if it belongs to an account; the worker's job. For a login
   * without an account it does the same statements against nothing, and queues a message the
   * delivery worker discards: on the embedded database this work shares the gateway's thread, and
   * work done only for real accounts would slow the caller's next request measurably
   * (bench/reset-timing.ts).
   */
  async function processRequest(login: Login): Promise<void> {
    const user = await deps.auth.findUserByLogin(db, login);
    const id = randomUUID();
    const token = randomToken(32); // 256 bits
    const code = randomDigits(6);
    const now = clock();
    const userId = user?.id ?? NO_USER;
    const channel = login.kind === 'email' ? ('email' as const) : ('sms' as const);
    await db.transaction(async (tx) => {
      // Serialises concurrent requests for one account (on any node), so only one reset is ever open.
      await tx.select({ id: tables.users.id }).from(tables.users).where(eq(tables.users.id, userId)).for('update');
      await tx
        .update(tables.passwordResets)
        .set({ closedAt: now, closedReason: 'superseded' })
        .where(and(eq(tables.passwordResets.userId, userId), isNull(tables.passwordResets.closedAt)));
      if (user) {
        await tx.insert(tables.passwordResets).values({
          id,
          userId: user.id,
          tokenHash: sha256(token),
          codeHash: codeHash(id, code),
          channel,
          expiresAt: new Date(now.getTime() + RESET_TTL_MS),
          createdAt: now,
        });
      }
      await enqueueMessage(tx, { channel, recipient: login.value, kind: user ? 'password-reset' : DISCARDED_KIND, ...resetMessage(login, token, code) });
    });
    deps.onOutbox();
  }

  const queue = createJobQueue<Login>(processRequest, { limit: QUEUE_LIMIT, log });

  type ResetRow = typeof tables.passwordResets.$inferSelect;
  type Proof = { token: string } | { login: Login; code: string };

  /** Wrong codes the user gave in the last day and in the last 30 days, over all their resets. */
  async function codeFailures(tx: Db, userId: string, now: Date): Promise<{ day: number; month: number }> {
    const dayAgo = new Date(now.getTime() - 86_400_000);
    const [row] = await tx
      .select({
        day: sql<number>`coalesce(sum(case when ${tables.passwordResets.createdAt} > ${dayAgo.toISOString()} then ${tables.passwordResets.failedAttempts} else 0 end), 0)::int`,
        month: sql<number>`coalesce(sum(${tables.passwordResets.failedAttempts}), 0)::int`,
      })
      .from(tables.passwordResets)
      .where(and(eq(tables.passwordResets.userId, userId), gt(tables.passwordResets.createdAt, new Date(now.getTime() - 30 * 86_400_000))));
    return { day: Number(row?.day ?? 0), month: Number(row?.month ?? 0) };
  }

  /**
   * Finds the open reset `proof` points at, locked for update, or null. A wrong code counts against
   * the newest open reset of the login; at the fifth, or past the account's daily or 30-day budget
   * of wrong codes, codes are refused unchecked. The link is never affected by wrong codes.
   */
  async function findValidReset(tx: Db, proof: Proof, now: Date): Promise<ResetRow | null> {
    const usable = (r: ResetRow | undefined): r is ResetRow => !!r && !r.closedAt && r.expiresAt > now;
    if ('token' in proof) {
      const hash = sha256(proof.token);
      const [row] = await tx.select().from(tables.passwordResets).where(eq(tables.passwordResets.tokenHash, hash)).for('update').limit(1);
      return usable(row) && safeEqual(row.tokenHash, hash) ? row : null;
    }
    const user = await deps.auth.findUserByLogin(tx, proof.login);
    if (!user) return null;
    const [row] = await tx
      .select()
      .from(tables.passwordResets)
      .where(and(eq(tables.passwordResets.userId, user.id), isNull(tables.passwordResets.closedAt)))
      .orderBy(desc(tables.passwordResets.createdAt))
      .for('update')
      .limit(1);
    if (!usable(row) || row.failedAttempts >= RESET_MAX_CODE_ATTEMPTS) return null;
    // The row lock above serialises the account's code checks, so this budget cannot be overrun in parallel.
    const spent = await codeFailures(tx, user.id, now);
    if (spent.day >= deps.limits.resetCodePerDay || spent.month >= deps.limits.resetCodePer30Days) return null;
    if (safeEqual(codeHash(row.id, proof.code), row.codeHash)) return row;
    await tx
      .update(tables.passwordResets)
      .set({ failedAttempts: row.failedAttempts + 1 })
      .where(eq(tables.passwordResets.id, row.id));
    return null;
  }

  return {
    /**
     * Always `{accepted: true}` for a well-formed login, whether or not it has an account and
     * whether or not a limit applied; only a malformed login is refused (BAD_USER_INPUT).
     */
    async requestReset(login: unknown, meta: RequestMeta): Promise<RequestResetResult> {
      const parsed = parseInput(loginSchema, login);
      // The IP first, so one address cannot spend a victim's per-login budget once it is itself limited.
      const limited = (await byIp.consume(meta.ip)) > 0 || (await byLogin.consume(`${parsed.kind}:${parsed.value}`)) > 0;
      if (limited) log.info({ ip: meta.ip }, 'reset request over its limit; accepted silently');
      else if (!queue.push(parsed)) log.warn('reset queue full or stopped; request dropped');
      return { accepted: true };
    },

    /**
     * Sets a new password from a valid token or login + code, ends every session of the account
     * and notifies all its addresses. Every failure is INVALID_RESET_CODE; the one other answer is
     * WEAK_PASSWORD, given only for a valid proof and without using it up, so the user can retry.
     */
    async confirmReset(input: unknown, meta: RequestMeta): Promise<true> {
      const v = parseInput(confirmInput, input);
      const source = sourceKey(meta.ip);
      const fail = async () => {
        if (!v.token) await codeFailuresBySource.consume(source);
        return invalid();
      };
      let proof: Proof;
      if (v.token) {
        proof = { token: v.token };
      } else {
        if ((await codeFailuresBySource.blockedFor(source)) > 0) throw invalid();
        const login = loginSchema.safeParse(v.login ?? '');
        const code = (v.code ?? '').trim();
        if (!login.success || !CODE_FORMAT.test(code)) throw await fail();
        proof = { login: login.data, code };
      }

      // Check the proof (counting a wrong code) before looking at the new password.
      const checked = await db.transaction(async (tx) => {
        const reset = await findValidReset(tx, proof, clock());
        if (!reset) return null;
        const [user] = await tx.select().from(tables.users).where(eq(tables.users.id, reset.userId)).limit(1);
        return user ? { reset, user } : null;
      });
      if (!checked) throw await fail();
      assertPasswordPolicy(v.newPassword, checked.user);
      const passwordHash = await hashPassword(v.newPassword);

      // Use the reset; re-checked under lock, since the hash took a while and another node may have won.
      const user: UserRow = checked.user;
      const done = await db.transaction(async (tx) => {
        const now = clock();
        const [reset] = await tx.select().from(tables.passwordResets).where(eq(tables.passwordResets.id, checked.reset.id)).for('update').limit(1);
        if (!reset || reset.closedAt || reset.expiresAt <= now) return false;
        await tx
          .update(tables.passwordResets)
          .set({ closedAt: now, closedReason: 'used' })
          .where(and(eq(tables.passwordResets.userId, user.id), isNull(tables.passwordResets.closedAt)));
        await tx.update(tables.users).set({ passwordHash, passwordChangedAt: now }).where(eq(tables.users.id, user.id));
        await deps.auth.revokeAllSessions(tx, user.id, 'password-reset');
        for (const contact of contactsOf(user)) {
          await enqueueMessage(tx, {
            ...contact,
            kind: 'password-changed',
            subject: 'Your Vigil password was changed',
            body: 'The password of your Vigil account was just reset, and every device signed in to it was signed out. If this was not you, reset your password at once and review your devices and shares.',
          });
        }
        return true;
      });
      if (!done) throw await fail();
      // The guesses counted against the old password say nothing about the new one.
      await deps.auth.clearLoginFailures(user).catch((err) => log.warn({ err }, 'could not clear login failures'));
      log.info({ userId: user.id }, 'password reset; all sessions revoked');
      deps.onOutbox();
      return true;
    },

    /** The request queue's worker; started and stopped with the app. */
    worker: queue,
  };
}

export type PasswordResetService = ReturnType<typeof createPasswordResetService>;

/**
 * A bounded FIFO drained one job at a time in the background. `push` never waits and returns
 * false when the queue is full or stopped. `stop` lets queued jobs finish.
 */
function createJobQueue<T>(handler: (job: T) => Promise<void>, opts: { limit: number; log: Logger }) {
  const jobs: T[] = [];
  let started = false;
  let stopped = false;
  let draining: Promise<void> | undefined;

  function drain() {
    if (!started || draining || jobs.length === 0) return;
    draining = (async () => {
      // Yield first, so the request that queued the job is answered before the job runs.
      await new Promise((resolve) => setImmediate(resolve));
      for (let job = jobs.shift(); job !== undefined; job = jobs.shift()) {
        try {
          await handler(job);
        } catch (err) {
          opts.log.error({ err }, 'queued job failed');
        }
      }
    })().finally(() => {
      draining = undefined;
      drain();
    });
  }

  return {
    push(job: T): boolean {
      if (stopped || jobs.length >= opts.limit) return false;
      jobs.push(job);
      drain();
      return true;
    },
    start() {
      started = true;
      drain();
    },
    async stop() {
      stopped = true;
      started = true;
      drain();
      while (draining) await draining;
    },
  };
}
