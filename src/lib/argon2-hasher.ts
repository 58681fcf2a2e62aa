import { Worker } from 'node:worker_threads';
import argon2 from 'argon2';
import { CommonError } from './domain-error';

/**
 * The one place in the server that runs argon2 (passwords and device label codes), with its worker
 * argon2-worker.mjs. Every hash and verification takes a slot: at most `concurrency` run at once
 * (one per worker thread; the computation itself runs on libuv's thread pool), at most
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

interface Job {
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/** One worker thread (argon2-worker.mjs) and the jobs it has been sent but not answered. */
interface HashWorker {
  thread: Worker;
  jobs: Map<number, Job>;
  retired: boolean;
}

let slots = 0;
let maxWaiting = DEFAULT_MAX_WAITING;
let workers: HashWorker[] = [];
let nextJobId = 0;
/** Slots held by `withHashSlot` callers (tests), counted as running hashes on a worker. */
const heldOn = new Map<HashWorker, number>();
/** Hashes running on the main thread's libuv pool when there is no bound. */
let unboundedRunning = 0;

const outstanding = (w: HashWorker) => w.jobs.size + (heldOn.get(w) ?? 0);

/**
 * Sets the bounds (at start-up; jobs already sent to a worker stay there). With a bound, each slot
 * is a worker thread that computes one hash at a time and holds its own queue, so the next hash
 * starts without waiting for the main thread; with 0, hashes run straight on libuv's pool.
 */
export function configureHashing(bounds: HashingBounds) {
  slots = Math.max(0, Math.floor(bounds.concurrency));
  maxWaiting = Math.max(0, Math.floor(bounds.maxWaiting));
  for (const w of workers.slice(slots)) retire(w);
  workers = workers.slice(0, slots);
}

function retire(w: HashWorker) {
  w.retired = true;
  if (outstanding(w) === 0) void w.thread.terminate();
}

function spawnWorker(): HashWorker {
  const w: HashWorker = { thread: new Worker(new URL('./argon2-worker.mjs', import.meta.url)), jobs: new Map(), retired: false };
  w.thread.on('message', (m: { id: number; value?: unknown; error?: string }) => {
    const job = w.jobs.get(m.id);
    if (!job) return;
    w.jobs.delete(m.id);
    if (m.error !== undefined) job.reject(new Error(m.error));
    else job.resolve(m.value);
    if (w.jobs.size === 0) w.thread.unref();
    if (w.retired && outstanding(w) === 0) void w.thread.terminate();
  });
  const fail = (err: Error) => {
    workers = workers.filter((x) => x !== w);
    for (const job of w.jobs.values()) job.reject(err);
    w.jobs.clear();
  };
  w.thread.on('error', fail);
  w.thread.on('exit', (code) => fail(new Error(`argon2 worker exited (${code})`)));
  // An idle hasher never keeps the process alive; a busy one does, until its answers are in. (Set
  // after the listeners: adding a 'message' listener refs the worker again.)
  w.thread.unref();
  return w;
}

/** The worker with the fewest jobs (a new one while there are fewer than `slots`), or null when the queue is full. */
function pickWorker(): HashWorker | null {
  if (workers.length < slots) {
    const w = spawnWorker();
    workers.push(w);
    return w;
  }
  let best: HashWorker | null = null;
  for (const w of workers) if (!best || outstanding(w) < outstanding(best)) best = w;
  if (!best) return null;
  return outstanding(best) === 0 || hashingNow().waiting < maxWaiting ? best : null;
}

/** Hashes computing now and waiting for a slot (for metrics and tests). */
export function hashingNow() {
  let running = unboundedRunning;
  let waiting = 0;
  for (const w of workers) {
    const n = outstanding(w);
    running += Math.min(n, 1);
    waiting += Math.max(n - 1, 0);
  }
  return { running, waiting };
}

/** False when a new hash would be refused: every slot busy and the queue full. */
export function hashingAccepts() {
  if (slots === 0 || workers.length < slots) return true;
  return workers.some((w) => outstanding(w) === 0) || hashingNow().waiting < maxWaiting;
}

/** Refusal when the queue is full; the wait is a guess at one queue's worth, at least a second. */
const hasherBusy = () => CommonError.rateLimited(1);

type WorkerJob = { op: 'hash'; secret: string; options: typeof ARGON2_OPTIONS } | { op: 'verify'; hash: string; secret: string };

async function run<T>(job: WorkerJob, direct: () => Promise<T>): Promise<T> {
  if (slots === 0) {
    unboundedRunning++;
    try {
      return await direct();
    } finally {
      unboundedRunning--;
    }
  }
  const w = pickWorker();
  if (!w) throw hasherBusy();
  const id = ++nextJobId;
  const answer = new Promise<T>((resolve, reject) => w.jobs.set(id, { resolve: resolve as (v: unknown) => void, reject }));
  w.thread.ref();
  w.thread.postMessage({ id, ...job });
  return answer;
}

/**
 * Occupies one slot while `work` runs, as a hash would (throws RATE_LIMITED when the queue is
 * full). For tests that need the hasher busy; hashes sent to that slot's worker meanwhile are
 * counted as waiting but do run.
 */
export async function withHashSlot<T>(work: () => Promise<T>): Promise<T> {
  if (slots === 0) return run({ op: 'verify', hash: '', secret: '' }, work);
  const w = pickWorker();
  if (!w) throw hasherBusy();
  heldOn.set(w, (heldOn.get(w) ?? 0) + 1);
  try {
    return await work();
  } finally {
    heldOn.set(w, heldOn.get(w)! - 1);
    if (w.retired && outstanding(w) === 0) void w.thread.terminate();
  }
}

/** An argon2id hash of `secret` at ARGON2_OPTIONS. Throws RATE_LIMITED when the queue is full. */
export const argon2Hash = (secret: string) => run<string>({ op: 'hash', secret, options: ARGON2_OPTIONS }, () => argon2.hash(secret, ARGON2_OPTIONS));

/**
 * argon2's own verification of `secret` against `hash`. Throws RATE_LIMITED when the queue is
 * full, and whatever argon2 throws for a malformed hash.
 */
export const argon2Verify = (hash: string, secret: string) => run<boolean>({ op: 'verify', hash, secret }, () => argon2.verify(hash, secret));

/** True for a hash made with other parameters or another argon2 variant (argon2's own check ignores the variant). */
export const argon2NeedsRehash = (hash: string) => !hash.startsWith('$argon2id$') || argon2.needsRehash(hash, ARGON2_OPTIONS);
