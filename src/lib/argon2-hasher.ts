import argon2 from 'argon2';
import { CommonError } from './domain-error';

/**
 * The one place in the server that runs argon2 (passwords and device label codes). Every hash and
 * verification takes a slot: at most `concurrency` run at once on libuv's thread pool, at most
 * `maxWaiting` wait for a slot, and past that the caller is refused with RATE_LIMITED at once, so
 * a login storm can neither starve the event loop that serves queries nor pile up without bound.
 *
 * The limiter is process-wide on purpose: what it shares out is the machine's CPU and libuv's
 * pool, which every app in the process uses. The app sets it from ARGON2_CONCURRENCY and
 * ARGON2_MAX_WAITING (src/config.ts says how the default bound is chosen).
 */

/** OWASP's argon2id floor (19 MiB, t=2, p=1). Hashes made with less are upgraded at the next login. */
export const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 } as const;

export interface HashingBounds {
  /** Hashes computed at once; 0: no bound beyond libuv's thread pool. */
  concurrency: number;
  /** Hashes waiting for a slot before newcomers are refused (RATE_LIMITED). */
  maxWaiting: number;
}

export const DEFAULT_MAX_WAITING = 64;

let slots = 0;
let maxWaiting = DEFAULT_MAX_WAITING;
let running = 0;
const waiting: Array<() => void> = [];

export function configureHashing(bounds: HashingBounds) {
  slots = Math.max(0, Math.floor(bounds.concurrency));
  maxWaiting = Math.max(0, Math.floor(bounds.maxWaiting));
  while (waiting.length && (slots === 0 || running < slots)) {
    running++;
    waiting.shift()!();
  }
}

/** Hashes computing now and waiting for a slot (for metrics and tests). */
export const hashingNow = () => ({ running, waiting: waiting.length });

/** False when a new hash would be refused: every slot busy and the queue full. */
export const hashingAccepts = () => slots === 0 || running < slots || waiting.length < maxWaiting;

/** Refusal when the queue is full; the wait is a guess at one queue's worth, at least a second. */
const hasherBusy = () => CommonError.rateLimited(1);

/** Runs `work` in a hash slot (or throws RATE_LIMITED when the queue is full); the hashes below use it, tests hold a slot with it. */
export async function withHashSlot<T>(work: () => Promise<T>): Promise<T> {
  if (slots === 0 || running < slots) running++;
  else if (waiting.length >= maxWaiting) throw hasherBusy();
  else await new Promise<void>((resolve) => waiting.push(resolve));
  try {
    return await work();
  } finally {
    // Hand the slot straight to the next waiter, so no newcomer can slip in between.
    const next = waiting.shift();
    if (next) next();
    else running--;
  }
}

/** An argon2id hash of `secret` at ARGON2_OPTIONS. Throws RATE_LIMITED when the queue is full. */
export const argon2Hash = (secret: string) => withHashSlot(() => argon2.hash(secret, ARGON2_OPTIONS));

/**
 * argon2's own verification of `secret` against `hash`. Throws RATE_LIMITED when the queue is
 * full, and whatever argon2 throws for a malformed hash.
 */
export const argon2Verify = (hash: string, secret: string) => withHashSlot(() => argon2.verify(hash, secret));

/** True for a hash made with other parameters or another argon2 variant (argon2's own check ignores the variant). */
export const argon2NeedsRehash = (hash: string) => !hash.startsWith('$argon2id$') || argon2.needsRehash(hash, ARGON2_OPTIONS);
