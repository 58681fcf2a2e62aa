import { ZxcvbnFactory } from '@zxcvbn-ts/core';
import * as common from '@zxcvbn-ts/language-common';
import * as en from '@zxcvbn-ts/language-en';
import { argon2Hash, argon2NeedsRehash, argon2Verify } from '../lib/argon2-hasher';
import { DomainError } from '../lib/domain-error';
import { AccountError } from './account.errors';
import { passwordProblem, type PasswordIdentity } from './password-policy';

export { ARGON2_OPTIONS, configureHashing, hashingAccepts, hashingNow } from '../lib/argon2-hasher';

export { MIN_STRENGTH_SCORE, PASSWORD_MAX, PASSWORD_MIN } from './password-policy';

const zxcvbn = new ZxcvbnFactory({
  dictionary: { ...common.dictionary, ...en.dictionary },
  graphs: common.adjacencyGraphs,
  translations: en.translations,
});

export const hashPassword = (password: string) => argon2Hash(password);

/** A real hash of a random value, verified against when the login is unknown so both paths cost the same. */
let dummyHash: Promise<string> | undefined;
const getDummyHash = () =>
  (dummyHash ??= hashPassword(`dummy-${Math.random()}`).catch((err: unknown) => {
    dummyHash = undefined; // refused (queue full): the next caller tries again
    throw err;
  }));

/**
 * Verifies `password` against `hash`, or against a dummy hash when `hash` is null, so that an
 * unknown login and a wrong password take the same time and the same place in the hash queue.
 * False for a malformed hash; throws RATE_LIMITED only when the hash queue is full.
 */
export async function verifyPassword(hash: string | null, password: string): Promise<boolean> {
  try {
    const target = hash ?? (await getDummyHash());
    const ok = await argon2Verify(target, password);
    return ok && hash !== null;
  } catch (err) {
    if (err instanceof DomainError) throw err;
    return false;
  }
}

export const passwordNeedsRehash = argon2NeedsRehash;

/**
 * Throws WEAK_PASSWORD with a human reason when the password fails the policy (password-policy.ts,
 * shared with the web console's live feedback).
 */
export function assertPasswordPolicy(password: string, identity: PasswordIdentity) {
  const problem = passwordProblem(zxcvbn, password, identity);
  if (problem) throw new AccountError('WEAK_PASSWORD', problem);
}
