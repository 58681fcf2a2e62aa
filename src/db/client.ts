import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import * as schema from './schema/index';

/** The one database type every data-access module accepts: postgres.js, PGlite, or a transaction of either. */
export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface DbHandle {
  db: Db;
  kind: 'postgres' | 'pglite';
  /** Applies the committed migrations; safe to call on every start and from several nodes. */
  migrate(): Promise<void>;
  /** Cheap liveness probe for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
  /**
   * Calls `listener` with the SQL text of every statement run through `db` until the returned
   * function is called (transaction BEGIN/COMMIT are not included). For tests and diagnostics,
   * e.g. counting the statements one GraphQL request costs.
   */
  observeStatements(listener: (sql: string) => void): () => void;
  /**
   * Runs one statement of fixed text with positional parameters (arrays welcome) as a prepared
   * statement: parsed once per connection, then one round trip per call. For hot paths that
   * bypass the query builder; rows come back as the driver gives them (snake_case columns).
   */
  prepared(text: string, params: unknown[]): Promise<Array<Record<string, unknown>>>;
}

/** drizzle's logger hook fanned out to whoever observes; costs one empty loop when no one does. */
function statementObservers() {
  const listeners = new Set<(sql: string) => void>();
  return {
    logger: { logQuery: (query: string) => listeners.forEach((l) => l(query)) },
    notify: (query: string) => listeners.forEach((l) => l(query)),
    observeStatements(listener: (sql: string) => void) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
  };
}

export const migrationsFolder = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');
const casing = 'snake_case' as const;

export interface OpenDbOptions {
  /** Postgres connection string; when absent, embedded PGlite is used. */
  databaseUrl?: string | undefined;
  /** Directory for PGlite's files, or ':memory:' for a throwaway database. */
  dataDir: string;
  /** postgres.js pool size. */
  poolSize?: number;
}

/**
 * Drizzle runs its statements unprepared, so Postgres parses and plans every one again; on short
 * hot queries that is most of the database's work (a raw postgres.js handler of the same page is
 * ~2.7x faster prepared than not). This prepares the statements this process runs repeatedly: a
 * text seen twice is prepared from then on. Postgres keeps prepared statements per connection, so
 * only the first `maxPrepared` distinct texts are (bounded memory however many shapes of
 * `in (...)` lists appear); later ones stay unprepared. Pool connections are recycled by
 * postgres.js's max_lifetime, which drops their statements.
 */
export function prepareRepeatedStatements(client: postgres.Sql, maxPrepared = 256): void {
  const preparedTexts = new Set<string>();
  const seenOnce = new Set<string>();
  const unsafe = client.unsafe.bind(client);
  client.unsafe = ((query: string, params?: unknown[], options?: { prepare?: boolean }) => {
    let prepare = options?.prepare ?? false;
    if (!prepare && preparedTexts.size < maxPrepared) {
      if (seenOnce.delete(query)) preparedTexts.add(query);
      else if (!preparedTexts.has(query)) {
        if (seenOnce.size >= 4096) seenOnce.clear();
        seenOnce.add(query);
      }
    }
    if (!prepare && preparedTexts.has(query)) prepare = true;
    return unsafe(query, params as never[], { ...options, prepare });
  }) as typeof client.unsafe;
}

export async function openDb(options: OpenDbOptions): Promise<DbHandle> {
  if (options.databaseUrl) {
    const url = options.databaseUrl;
    const client = postgres(url, { max: options.poolSize ?? 10, onnotice: () => {}, connection: { application_name: 'vigil', statement_timeout: 30_000, idle_in_transaction_session_timeout: 60_000 } });
    const observers = statementObservers();
    prepareRepeatedStatements(client);
    const db = drizzlePostgres({ client, schema, casing, logger: observers.logger }) as unknown as Db;
    return {
      db,
      observeStatements: observers.observeStatements,
      prepared: (text, params) => (observers.notify(text), client.unsafe(text, params as never[], { prepare: true }) as unknown as Promise<Array<Record<string, unknown>>>),
      kind: 'postgres',
      async migrate() {
        // Its own single connection, so the migrator's advisory work never shares a pooled session.
        const migrationClient = postgres(url, { max: 1, onnotice: () => {} });
        try {
          // Serialise concurrent starts of several nodes on one database.
          await migrationClient`select pg_advisory_lock(727274)`;
          await migratePostgres(drizzlePostgres({ client: migrationClient, casing }), { migrationsFolder });
        } finally {
          await migrationClient.end({ timeout: 5 });
        }
      },
      async ping() {
        await db.execute(sql`select 1`);
      },
      async close() {
        await client.end({ timeout: 5 });
      },
    };
  }
  let dataPath: string | undefined;
  if (options.dataDir !== ':memory:') {
    dataPath = path.join(options.dataDir, 'pglite');
    mkdirSync(dataPath, { recursive: true });
  }
  const client = dataPath ? new PGlite(dataPath) : new PGlite();
  await client.waitReady;
  const observers = statementObservers();
  const db = drizzlePglite({ client, schema, casing, logger: observers.logger }) as unknown as Db;
  return {
    db,
    observeStatements: observers.observeStatements,
    prepared: async (text, params) => (observers.notify(text), await client.query<Record<string, unknown>>(text, params)).rows,
    kind: 'pglite',
    async migrate() {
      await migratePglite(drizzlePglite({ client, casing }), { migrationsFolder });
    },
    async ping() {
      await client.query('select 1');
    },
    async close() {
      await client.close();
    },
  };
}
