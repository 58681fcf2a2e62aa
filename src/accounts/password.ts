import argon2 from 'argon2';
import { ZxcvbnFactory } from '@zxcvbn-ts/core';
import * as common from '@zxcvbn-ts/language-common';
import * as en from '@zxcvbn-ts/language-en';
import { AccountError } from './account.errors';

/** OWASP's argon2id floor (19 MiB, t=2, p=1). Hashes made with less are upgraded at the next login. */
export const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 } as const;

export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 128;
/** zxcvbn score 0..4; 3 means "safely unguessable: moderate protection from offline slow-hash attacks". */
export const MIN_STRENGTH_SCORE = 3;

const zxcvbn = new ZxcvbnFactory({
  dictionary: { ...common.dictionary, ...en.dictionary },
  graphs: common.adjacencyGraphs,
  translations: en.translations,
});

/**
 * At most this many argon2 computations run at once (0: no limit beyond libuv's thread pool). Each
 * takes a thread and 19 MiB; on a small machine, a bound keeps a login storm from starving the
 * event loop that serves queries. Set from ARGON2_CONCURRENCY by the app.
 */
let hashSlots = 0;
let hashesRunning = 0;
const waitingForSlot: Array<() => void> = [];

export function setHashConcurrency(limit: number) {
  hashSlots = Math.max(0, Math.floor(limit));
  while (waitingForSlot.length && (hashSlots === 0 || hashesRunning < hashSlots)) {
    hashesRunning++;
    waitingForSlot.shift()!();
  }
}

/** Hashes computing now and waiting for a slot (for metrics and tests). */
export const hashingNow = () => ({ running: hashesRunning, waiting: waitingForSlot.length });

async function withHashSlot<T>(work: () => Promise<T>): Promise<T> {
  if (hashSlots === 0 || hashesRunning < hashSlots) hashesRunning++;
  else await new Promise<void>((resolve) => waitingForSlot.push(resolve));
  try {
    return await work();
  } finally {
    // Hand the slot straight to the next waiter, so no newcomer can slip in between.
    const next = waitingForSlot.shift();
    if (next) next();
    else hashesRunning--;
  }
}

export const hashPassword = (password: string) => withHashSlot(() => argon2.hash(password, ARGON2_OPTIONS));

/** A real hash of a random value, verified against when the login is unknown so both paths cost the same. */
let dummyHash: Promise<string> | undefined;
const getDummyHash = () => (dummyHash ??= hashPassword(`dummy-${Math.random()}`));

/**
 * Verifies `password` against `hash`, or against a dummy hash when `hash` is null, so that an
 * unknown login and a wrong password take the same time. Never throws on a malformed hash.
 */
export async function verifyPassword(hash: string | null, password: string): Promise<boolean> {
  try {
    const target = hash ?? (await getDummyHash());
    const ok = await withHashSlot(() => argon2.verify(target, password));
    return ok && hash !== null;
  } catch {
    return false;
  }
}

/** True for a hash made with other parameters or another argon2 variant (argon2's own check ignores the variant). */
export const passwordNeedsRehash = (hash: string) => !hash.startsWith('$argon2id$') || argon2.needsRehash(hash, ARGON2_OPTIONS);

/**
 * Throws WEAK_PASSWORD with a human reason when the password fails the policy: length 8..128,
 * not containing the account's email (local part) or phone digits, not a common/dictionary
 * password, and a zxcvbn score of at least MIN_STRENGTH_SCORE.
 */
export function assertPasswordPolicy(password: string, identity: { email?: string | null; phone?: string | null; displayName?: string | null }) {
  const weak = (why: string) => new AccountError('WEAK_PASSWORD', why);
  if (password.length < PASSWORD_MIN) throw weak(`Password must be at least ${PASSWORD_MIN} characters`);
  if (password.length > PASSWORD_MAX) throw weak(`Password must be at most ${PASSWORD_MAX} characters`);
  const lower = password.toLowerCase();
  const localPart = identity.email?.split('@')[0];
  if (identity.email && (lower.includes(identity.email) || (localPart && localPart.length >= 3 && lower.includes(localPart)))) {
    throw weak('Password must not contain your email address');
  }
  const phoneDigits = identity.phone?.replace(/\D/g, '');
  if (phoneDigits && phoneDigits.length >= 6) {
    const pwDigits = password.replace(/\D/g, '');
    const national = phoneDigits.slice(-8);
    if (pwDigits.includes(national) || pwDigits.includes(phoneDigits)) throw weak('Password must not contain your phone number');
  }
  const inputs = [identity.email, localPart, identity.phone, phoneDigits, identity.displayName, 'vigil', 'hikvision', 'hikconnect', 'camera'].filter(
    (v): v is string => !!v,
  );
  const result = zxcvbn.check(password, inputs);
  if (result.score < MIN_STRENGTH_SCORE) {
    const dictionaryHit = result.sequence.some((m) => m.pattern === 'dictionary' && m.token.length >= password.length - 2);
    const hint = result.feedback.warning || result.feedback.suggestions[0];
    throw weak(
      dictionaryHit
        ? 'Password is too common: it appears in lists of breached or frequently used passwords'
        : `Password is too easy to guess${hint ? `: ${hint}` : ''}`,
    );
  }
}
