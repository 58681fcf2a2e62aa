import argon2 from 'argon2';
import { ZxcvbnFactory } from '@zxcvbn-ts/core';
import * as common from '@zxcvbn-ts/language-common';
import * as en from '@zxcvbn-ts/language-en';
import { AccountError } from './account.errors';
import { passwordProblem, type PasswordIdentity } from './password-policy';

/** OWASP's argon2id floor (19 MiB, t=2, p=1). Hashes made with less are upgraded at the next login. */
export const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 } as const;

export { MIN_STRENGTH_SCORE, PASSWORD_MAX, PASSWORD_MIN } from './password-policy';

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
 * Throws WEAK_PASSWORD with a human reason when the password fails the policy (password-policy.ts,
 * shared with the web console's live feedback).
 */
export function assertPasswordPolicy(password: string, identity: PasswordIdentity) {
  const problem = passwordProblem(zxcvbn, password, identity);
  if (problem) throw new AccountError('WEAK_PASSWORD', problem);
}
