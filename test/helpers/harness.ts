import 'reflect-metadata';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import { scratchDatabase } from './scratch-database';
import { pino } from 'pino';
import { buildApp, type App, type AppOverrides } from '../../src/app';
import { loadConfig } from '../../src/config';

export const hasPostgres = !!process.env.TEST_DATABASE_URL;
export const hasRedis = !!process.env.TEST_REDIS_URL;

/** A fresh, empty Postgres database for one test file, or undefined to use in-memory PGlite. */
export async function freshDatabase(): Promise<{ url: string; drop(): Promise<void> } | undefined> {
  const base = process.env.TEST_DATABASE_URL;
  return base ? scratchDatabase(base, 'vigil_t_') : undefined;
}

/** A clock tests can move forward; every service reads time through it. */
export function testClock(start = new Date()) {
  let offsetMs = 0;
  return {
    now: () => new Date(start.getTime() + offsetMs + (Date.now() - startedAt)),
    advance(ms: number) {
      offsetMs += ms;
    },
  };
}
const startedAt = Date.now();

export interface GqlResult<T> {
  data?: T | null;
  errors?: Array<{ message: string; extensions?: { code?: string; retryAfterSeconds?: number; requestId?: string } }>;
  status: number;
}

export interface TestApp {
  app: App;
  url: string;
  /** Runs a typed operation over real HTTP. Fails the test on any INTERNAL error. */
  gql<T, V>(doc: TypedDocumentNode<T, V>, variables?: V, opts?: { token?: string; headers?: Record<string, string> }): Promise<GqlResult<T>>;
  stop(): Promise<void>;
}

export interface StartOptions {
  env?: Record<string, string>;
  clock?: () => Date;
  /** Share a database between apps (several gateway nodes); default: a fresh one. */
  databaseUrl?: string;
  /** Records or fakes the commands sent to connected devices (unbind). */
  deviceCommands?: AppOverrides['deviceCommands'];
}

/** Starts the real app factory on port 0, on a fresh database (Postgres when TEST_DATABASE_URL is set, else PGlite). */
export async function startApp(options: StartOptions = {}): Promise<TestApp> {
  const fresh = options.databaseUrl ? undefined : await freshDatabase();
  const databaseUrl = options.databaseUrl ?? fresh?.url;
  const config = loadConfig({
    DATA_DIR: ':memory:',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...(process.env.TEST_REDIS_URL ? { REDIS_URL: process.env.TEST_REDIS_URL } : {}),
    ...options.env,
  });
  const app = await buildApp(config, {
    clock: options.clock,
    redisPrefix: `vigil-test:${randomBytes(4).toString('hex')}:`,
    logger: pino({ level: config.logLevel }),
    deviceCommands: options.deviceCommands,
  });
  const url = await app.start(0);
  return {
    app,
    url,
    async gql(doc, variables, opts = {}) {
      const res = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
          ...opts.headers,
        },
        body: JSON.stringify({ query: print(doc), variables }),
      });
      const body = (await res.json()) as GqlResult<never>;
      const internal = body.errors?.find((e) => e.extensions?.code === 'INTERNAL');
      assert.equal(internal, undefined, `INTERNAL error from the server: ${JSON.stringify(internal)}`);
      return { ...body, status: res.status };
    },
    async stop() {
      await app.stop();
      await fresh?.drop();
    },
  };
}

/** Asserts the operation failed with `code` (the contract's ErrorCode) and returns the error. */
export function expectCode(result: GqlResult<unknown>, code: string) {
  const codes = result.errors?.map((e) => e.extensions?.code) ?? [];
  assert.ok(codes.includes(code), `expected ${code}, got ${JSON.stringify(result.errors ?? result.data)}`);
  return result.errors!.find((e) => e.extensions?.code === code)!;
}

/** Asserts success and returns data. */
export function expectData<T>(result: GqlResult<T>): T {
  assert.equal(result.errors, undefined, `unexpected errors: ${JSON.stringify(result.errors)}`);
  assert.ok(result.data, 'no data');
  return result.data;
}

let counter = 0;
/** A unique, valid email for this test run. */
export const uniqueEmail = (tag = 'user') => `${tag}.${process.pid}.${Date.now().toString(36)}.${counter++}@example.com`;
/** A password zxcvbn scores as strong. */
export const STRONG_PASSWORD = 'Violet-Harbor-Quartz-71';
export const OTHER_STRONG_PASSWORD = 'Copper-Lantern-Meadow-38';

/** Waits until `predicate` holds, polling briefly; fails after `timeoutMs`. For events, not clocks. */
export async function waitFor<T>(predicate: () => T | Promise<T>, timeoutMs = 5000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
