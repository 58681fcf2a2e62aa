// The password policy as one pure function, shared by the server (password.ts, which turns a
// problem into WEAK_PASSWORD) and the web console's live feedback (web/console, which loads
// zxcvbn lazily). No Node or DOM imports here: both sides bundle it.
import type { ZxcvbnFactory } from '@zxcvbn-ts/core';

export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 128;
/** zxcvbn score 0..4; 3 means "safely unguessable: moderate protection from offline slow-hash attacks". */
export const MIN_STRENGTH_SCORE = 3;

export interface PasswordIdentity {
  email?: string | null;
  phone?: string | null;
  displayName?: string | null;
}

/**
 * Why `password` fails the policy, in words, or null when it passes: length 8..128, not containing
 * the account's email (local part) or phone digits, not a common/dictionary password, and a zxcvbn
 * score of at least MIN_STRENGTH_SCORE.
 */
export function passwordProblem(zxcvbn: Pick<ZxcvbnFactory, 'check'>, password: string, identity: PasswordIdentity): string | null {
  if (password.length < PASSWORD_MIN) return `Password must be at least ${PASSWORD_MIN} characters`;
  if (password.length > PASSWORD_MAX) return `Password must be at most ${PASSWORD_MAX} characters`;
  const lower = password.toLowerCase();
  const localPart = identity.email?.split('@')[0];
  if (identity.email && (lower.includes(identity.email) || (localPart && localPart.length >= 3 && lower.includes(localPart)))) {
    return 'Password must not contain your email address';
  }
  const phoneDigits = identity.phone?.replace(/\D/g, '');
  if (phoneDigits && phoneDigits.length >= 6) {
    const pwDigits = password.replace(/\D/g, '');
    const national = phoneDigits.slice(-8);
    if (pwDigits.includes(national) || pwDigits.includes(phoneDigits)) return 'Password must not contain your phone number';
  }
  const inputs = [identity.email, localPart, identity.phone, phoneDigits, identity.displayName, 'vigil', 'hikvision', 'hikconnect', 'camera'].filter(
    (v): v is string => !!v,
  );
  const result = zxcvbn.check(password, inputs);
  if (result.score < MIN_STRENGTH_SCORE) {
    const dictionaryHit = result.sequence.some((m) => m.pattern === 'dictionary' && m.token.length >= password.length - 2);
    const hint = result.feedback.warning || result.feedback.suggestions[0];
    return dictionaryHit
      ? 'Password is too common: it appears in lists of breached or frequently used passwords'
      : `Password is too easy to guess${hint ? `: ${hint}` : ''}`;
  }
  return null;
}
