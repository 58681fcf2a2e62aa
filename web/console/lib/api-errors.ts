import type { CombinedError } from '@urql/core';
import type { ErrorCode } from '../generated/graphql';

/** An API failure: one of the contract's ErrorCodes, or NETWORK when the server could not be reached. */
export interface ApiError {
  code: ErrorCode | 'NETWORK';
  /** The server's own words (shown for BAD_USER_INPUT and WEAK_PASSWORD, whose reasons are for people). */
  message: string;
  retryAfterSeconds?: number;
}

const KNOWN = new Set<string>([
  'BAD_USER_INPUT',
  'DEVICE_ALREADY_BOUND',
  'FORBIDDEN',
  'INTERNAL',
  'INVALID_CREDENTIALS',
  'INVALID_RESET_CODE',
  'INVALID_VERIFICATION_CODE',
  'NOT_FOUND',
  'QUERY_TOO_COMPLEX',
  'RATE_LIMITED',
  'TOTP_REQUIRED',
  'UNAUTHENTICATED',
  'WEAK_PASSWORD',
] satisfies ErrorCode[]);

export function apiErrorOf(e: { message: string; extensions?: Record<string, unknown> }): ApiError {
  const code = String(e.extensions?.code ?? 'INTERNAL');
  const retry = e.extensions?.retryAfterSeconds;
  return {
    code: KNOWN.has(code) ? (code as ErrorCode) : 'INTERNAL',
    message: e.message,
    ...(typeof retry === 'number' ? { retryAfterSeconds: retry } : {}),
  };
}

/** The first error of an urql result, as an ApiError. */
export function fromCombined(error: CombinedError): ApiError {
  if (error.graphQLErrors.length) return apiErrorOf(error.graphQLErrors[0]!);
  return { code: 'NETWORK', message: '' };
}

const waitWords = (s: number | undefined) => (s ? (s >= 120 ? `in ${Math.ceil(s / 60)} minutes` : `in ${s} seconds`) : 'later');
const sentence = (text: string) => (/[.!?]$/.test(text) ? text : `${text}.`);

/**
 * Every error in words. Each ErrorCode has a sentence (a new code breaks the build until it has one);
 * `overrides` gives a screen its own words for the codes it knows better (a wrong code on the bind
 * form, an expired link on the reset page).
 */
export function describeError(error: ApiError, overrides: Partial<Record<ApiError['code'], string>> = {}): string {
  const own = overrides[error.code];
  if (own) return own;
  const words: Record<ApiError['code'], string> = {
    BAD_USER_INPUT: error.message ? `Please check what you entered: ${sentence(error.message)}` : 'Please check what you entered.',
    DEVICE_ALREADY_BOUND: 'This device is already bound to another account: ask its owner to share it with you.',
    FORBIDDEN: 'You are not allowed to do that.',
    INTERNAL: 'Something went wrong on the server. Please try again.',
    INVALID_CREDENTIALS: 'Wrong login or password.',
    INVALID_RESET_CODE: 'This link has expired or was already used.',
    INVALID_VERIFICATION_CODE: 'The verification code is wrong: it is the 6 letters on the device label.',
    NOT_FOUND: 'Not found: it may have been unbound, or its share ended.',
    QUERY_TOO_COMPLEX: 'That request was too large for the server. Try a smaller page.',
    RATE_LIMITED: `Too many attempts. Please try again ${waitWords(error.retryAfterSeconds)}.`,
    TOTP_REQUIRED: 'This account uses two-factor authentication: enter the code from your authenticator app.',
    UNAUTHENTICATED: 'You are signed out. Please sign in again.',
    WEAK_PASSWORD: error.message ? sentence(error.message) : 'This password is too weak.',
    NETWORK: 'The server could not be reached. Check your connection and try again.',
  };
  return words[error.code];
}
