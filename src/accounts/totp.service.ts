import { createCipheriv, createDecipheriv, randomBytes, randomInt } from 'node:crypto';
import { and, eq, isNull, lt, or } from 'drizzle-orm';
import { generateSecret, generateURI, verify as verifyTotp } from 'otplib';
import { z } from 'zod';
import { tables, type Db } from '../db/index';
import { CommonError } from '../lib/domain-error';
import type { LimiterFactory } from '../lib/rate-limit';
import { sha256 } from '../lib/secrets';
import { parseInput } from '../lib/validate';
import { contactOf, enqueueMessage } from '../notify/outbox';
import type { RequestMeta, SecondFactorVerifier, UserRow } from './auth.service';
import { requireSessionCaller, type Caller } from './caller';

export const TOTP_ISSUER = 'Vigil';
const TOTP_PERIOD_S = 30;
/** ±1 time step of clock drift between the server and the authenticator app. */
const TOTP_TOLERANCE_S = TOTP_PERIOD_S;
export const RECOVERY_CODE_COUNT = 10;

/**
 * Seals TOTP secrets at rest. They must be reversible (the server recomputes codes from them), so
 * they cannot be hashed; AES-256-GCM with the user id as associated data, so a sealed secret
 * copied to another user's row does not open.
 */
export interface SecretBox {
  seal(plain: string, userId: string): string;
  open(sealed: string, userId: string): string;
}

export function aesGcmSecretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new Error('the TOTP secret key must be 32 bytes');
  return {
    seal(plain, userId) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(userId));
      const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]);
      return `v1.${iv.toString('base64url')}.${body.toString('base64url')}`;
    },
    open(sealed, userId) {
      const [version, iv, body] = sealed.split('.');
      if (version !== 'v1' || !iv || !body) throw new Error('unknown TOTP secret format');
      const data = Buffer.from(body, 'base64url');
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      decipher.setAAD(Buffer.from(userId));
      decipher.setAuthTag(data.subarray(data.length - 16));
      // Throws when the key changed or the row was tampered with: logged, surfaces as INTERNAL.
      return Buffer.concat([decipher.update(data.subarray(0, data.length - 16)), decipher.final()]).toString('utf8');
    },
  };
}

// Recovery codes: 12 characters of Crockford's base32 (no i, l, o, u), shown as xxxx-xxxx-xxxx.
// 60 random bits each: far beyond online guessing (login attempts are rate-limited), and the
// reversible TOTP secret sits in the same database, so a slow hash would protect nothing more.
// sha256 with the user id mixed in keeps the hashes from being attacked all users at once.
const RECOVERY_ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const RECOVERY_LENGTH = 12;

function newRecoveryCode(): string {
  let raw = '';
  for (let i = 0; i < RECOVERY_LENGTH; i++) raw += RECOVERY_ALPHABET[randomInt(RECOVERY_ALPHABET.length)];
  return raw.match(/.{4}/g)!.join('-');
}

/** Canonical form of a typed recovery code (case, dashes, spaces and look-alikes forgiven), or null. */
function normalizeRecoveryCode(input: string): string | null {
  const v = input.toLowerCase().replace(/[\s-]/g, '').replace(/[il]/g, '1').replace(/o/g, '0');
  if (v.length !== RECOVERY_LENGTH) return null;
  for (const ch of v) if (!RECOVERY_ALPHABET.includes(ch)) return null;
  return v;
}

const recoveryCodeHash = (userId: string, normalized: string) => sha256(`recovery:${userId}:${normalized}`);

/** Six digits, spaces forgiven ("123 456"). */
const totpCodeInput = z
  .string()
  .max(64, 'too long')
  .transform((v) => v.replace(/\s/g, ''))
  .pipe(z.string().regex(/^\d{6}$/, 'must be the 6-digit code from your authenticator app'));

/** The matched time step of a valid code (±1 step of drift), or null. */
async function matchTotp(secret: string, code: string, now: Date): Promise<number | null> {
  const result = await verifyTotp({ secret, token: code, epoch: Math.floor(now.getTime() / 1000), period: TOTP_PERIOD_S, epochTolerance: TOTP_TOLERANCE_S });
  return result.valid && 'timeStep' in result ? result.timeStep : null;
}

/**
 * The second factor at login: a current TOTP code, accepted once per time step (users.totp_last_step
 * moves forward by a conditional update, so a code for the same or an earlier step is refused even
 * under concurrent logins), or an unused recovery code (consumed by a conditional update on
 * used_at). Returns false for anything else.
 */
export function createSecondFactorVerifier(deps: { clock: () => Date; box: SecretBox }): SecondFactorVerifier {
  return {
    async verify(db: Db, user: UserRow, input: string): Promise<boolean> {
      if (!user.totpEnabled) return false;
      const code = input.replace(/\s/g, '');
      if (/^\d{6}$/.test(code)) {
        if (!user.totpSecret) return false;
        const step = await matchTotp(deps.box.open(user.totpSecret, user.id), code, deps.clock());
        if (step === null || (user.totpLastStep !== null && step <= user.totpLastStep)) return false;
        const moved = await db
          .update(tables.users)
          .set({ totpLastStep: step })
          .where(
            and(
              eq(tables.users.id, user.id),
              eq(tables.users.totpEnabled, true),
              or(isNull(tables.users.totpLastStep), lt(tables.users.totpLastStep, step)),
            ),
          )
          .returning({ id: tables.users.id });
        return moved.length === 1;
      }
      const normalized = normalizeRecoveryCode(code);
      if (!normalized) return false;
      const used = await db
        .update(tables.recoveryCodes)
        .set({ usedAt: deps.clock() })
        .where(
          and(
            eq(tables.recoveryCodes.userId, user.id),
            eq(tables.recoveryCodes.codeHash, recoveryCodeHash(user.id, normalized)),
            isNull(tables.recoveryCodes.usedAt),
          ),
        )
        .returning({ id: tables.recoveryCodes.id });
      return used.length === 1;
    },
  };
}

export interface TotpEnrollment {
  secret: string;
  otpauthUrl: string;
}

export interface TotpServiceDeps {
  db: Db;
  clock: () => Date;
  box: SecretBox;
  limiters: LimiterFactory;
  /** The account password check shared with changePassword (rate-limited like login). */
  confirmPassword(userId: string, password: unknown, meta: RequestMeta): Promise<UserRow>;
  /** Nudges the outbox worker after a commit that queued mail. */
  onOutbox: () => void;
}

export function createTotpService(deps: TotpServiceDeps) {
  const { db, clock } = deps;
  // A wrong confirmation code costs nothing to retry; cap it so the endpoint is no oracle for bulk guessing.
  const confirmByUser = deps.limiters.create('totp-confirm', 10, 15 * 60);

  async function loadUser(userId: string): Promise<UserRow> {
    const [user] = await db.select().from(tables.users).where(eq(tables.users.id, userId)).limit(1);
    if (!user) throw CommonError.unauthenticated();
    return user;
  }

  async function notify(executor: Db, user: UserRow, subject: string, body: string) {
    const contact = contactOf(user);
    if (contact) await enqueueMessage(executor, { ...contact, kind: 'security-notice', subject, body });
  }

  return {
    /**
     * Starts (or restarts) enrolment: a fresh secret is stored pending (totpEnabled stays false)
     * until confirmTotp proves the app has it. BAD_INPUT when 2FA is already on.
     */
    async enable(caller: Caller | null): Promise<TotpEnrollment> {
      const c = requireSessionCaller(caller);
      const user = await loadUser(c.userId);
      if (user.totpEnabled) throw CommonError.badInput('Two-step verification is already on; turn it off first to enrol a new app');
      const secret = generateSecret({ length: 20 });
      const updated = await db
        .update(tables.users)
        .set({ totpSecret: deps.box.seal(secret, user.id), totpLastStep: null })
        .where(and(eq(tables.users.id, user.id), eq(tables.users.totpEnabled, false)))
        .returning({ id: tables.users.id });
      if (updated.length === 0) throw CommonError.badInput('Two-step verification is already on; turn it off first to enrol a new app');
      const label = user.email ?? user.phone ?? user.id;
      return { secret, otpauthUrl: generateURI({ issuer: TOTP_ISSUER, label, secret, period: TOTP_PERIOD_S }) };
    },

    /**
     * Turns 2FA on when `code` matches the pending secret, and returns ten new recovery codes
     * (replacing any old ones). A wrong code is BAD_INPUT: the caller is already signed in, so
     * this is a typo to fix, not a failed sign-in.
     */
    async confirm(caller: Caller | null, code: unknown): Promise<string[]> {
      const c = requireSessionCaller(caller);
      const value = parseInput(totpCodeInput, code);
      const wait = await confirmByUser.consume(c.userId);
      if (wait > 0) throw CommonError.rateLimited(wait);
      const user = await loadUser(c.userId);
      if (user.totpEnabled) throw CommonError.badInput('Two-step verification is already on');
      if (!user.totpSecret) throw CommonError.badInput('Start with enableTotp first');
      const step = await matchTotp(deps.box.open(user.totpSecret, user.id), value, clock());
      const wrong = () => CommonError.badInput('code is wrong or expired');
      if (step === null) throw wrong();
      const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newRecoveryCode);
      const now = clock();
      await db.transaction(async (tx) => {
        // Conditional on the very secret just checked: a concurrent enableTotp that replaced it wins.
        const on = await tx
          .update(tables.users)
          .set({ totpEnabled: true, totpLastStep: step })
          .where(and(eq(tables.users.id, user.id), eq(tables.users.totpEnabled, false), eq(tables.users.totpSecret, user.totpSecret!)))
          .returning({ id: tables.users.id });
        if (on.length === 0) throw wrong();
        await tx.delete(tables.recoveryCodes).where(eq(tables.recoveryCodes.userId, user.id));
        await tx
          .insert(tables.recoveryCodes)
          .values(codes.map((code) => ({ userId: user.id, codeHash: recoveryCodeHash(user.id, normalizeRecoveryCode(code)!), createdAt: now })));
        await notify(
          tx,
          user,
          'Two-step verification is on',
          'Two-step verification was just turned on for your Vigil account. If this was not you, reset your password at once.',
        );
      });
      await confirmByUser.reset(c.userId);
      deps.onOutbox();
      return codes;
    },

    /** Turns 2FA off after a password check (INVALID_CREDENTIALS / RATE_LIMITED); drops secret and recovery codes. */
    async disable(caller: Caller | null, password: unknown, meta: RequestMeta): Promise<boolean> {
      const c = requireSessionCaller(caller);
      const user = await deps.confirmPassword(c.userId, password, meta);
      await db.transaction(async (tx) => {
        await tx.update(tables.users).set({ totpEnabled: false, totpSecret: null, totpLastStep: null }).where(eq(tables.users.id, user.id));
        await tx.delete(tables.recoveryCodes).where(eq(tables.recoveryCodes.userId, user.id));
        if (user.totpEnabled) {
          await notify(
            tx,
            user,
            'Two-step verification is off',
            'Two-step verification was just turned off for your Vigil account. If this was not you, reset your password at once and turn it back on.',
          );
        }
      });
      deps.onOutbox();
      return true;
    },
  };
}

export type TotpService = ReturnType<typeof createTotpService>;
