// S1b: the S1a document over Drizzle on Postgres: a Vigil gateway process (production mode, no
// Redis: one node) on a fresh database with 50 bound devices, against a hand-written node:http +
// postgres.js handler (bench/peers/raw-pg.ts) doing the equivalent database work.
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { clusterSecrets } from '../../test/helpers/gateway-process';
import { alternate, median, ratio, startChild, type BenchContext, type ChildServer, type ResultRow, type Scenario } from '../lib/harness';
import { profileArgs } from '../lib/http-load';
import { httpLoad, postJson } from '../lib/http-load';
import { freshDatabase, register } from '../lib/live';
import { DEVICES_BODY } from '../peers/lib/http-data';

const CONNECTIONS = 64;
const DEVICES = 50;

/** 50 devices bound to `ownerId`, every fifth shared with both grantees; written by SQL, as the API would leave them. */
export async function seed(url: string, ownerId: string, grantees: { id: string; email: string }[]) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const t0 = Date.UTC(2026, 0, 1);
    for (let i = 0; i < DEVICES; i++) {
      const [d] = await sql`insert into devices (serial, model, firmware, channels, verification_code_hash, device_key_hash, ingest_token_hash, online, heartbeats, last_seen_at)
        values (${`DS-2CD2143G2-I20230101AAWRJ${10_000_000 + i}`}, ${i % 3 ? 'DS-2CD2143G2-I' : 'DS-7608NI-K2'}, 'V5.7.3 build 220112', ${i % 3 ? 1 : 8},
                ${randomBytes(16).toString('hex')}, ${randomBytes(16).toString('hex')}, ${randomBytes(16).toString('hex')}, ${i % 3 === 0}, ${i % 3 === 1}, ${new Date(t0 + i * 60_000)})
        returning id`;
      const [b] = await sql`insert into bindings (device_id, owner_id, name, bound_at) values (${d!.id}, ${ownerId}, ${`Camera ${i + 1}`}, ${new Date(t0 + i * 1000)}) returning id`;
      if (i % 5 === 0) {
        for (const [k, g] of grantees.entries()) {
          await sql`insert into shares (binding_id, device_id, grantee_id, invite_login, permissions, created_at)
            values (${b!.id}, ${d!.id}, ${g.id}, ${g.email}, ${k ? ['LIVE_VIEW'] : ['LIVE_VIEW', 'ALARMS']}, ${new Date(t0 + i * 1000 + k)})`;
        }
      }
    }
    await sql`analyze`;
  } finally {
    await sql.end();
  }
}

async function run(ctx: BenchContext): Promise<ResultRow[]> {
  const durationS = ctx.quick ? 2 : 3;
  const db = await freshDatabase(ctx.databaseUrl);
  const secrets = clusterSecrets();
  let vigil: ChildServer | undefined;
  let raw: ChildServer | undefined;
  try {
    ctx.progress('starting the Vigil gateway on a fresh database');
    vigil = await startChild('bench/servers/vigil-http.ts', [], {
      ...secrets,
      DATA_DIR: ':memory:',
      DATABASE_URL: db.url,
      REDIS_URL: '',
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      HTTP_RATE_PER_IP: '100000000',
      HTTP_RATE_PER_TOKEN: '100000000',
      REGISTER_MAX_PER_IP: '1000',
    }, { readyTimeoutMs: 90_000, nodeArgs: profileArgs() });
    const owner = await register(vigil.url, 's1b-owner');
    const grantees = [await register(vigil.url, 's1b-family'), await register(vigil.url, 's1b-friend')];
    await seed(db.url, owner.id, grantees);
    raw = await startChild('bench/peers/raw-pg.ts', [], { DATABASE_URL: db.url, JWT_PRIVATE_KEY: secrets.JWT_PRIVATE_KEY! });
    const auth = { authorization: `Bearer ${owner.token}` };
    const contenders = { Vigil: vigil.url, 'raw postgres.js': raw.url };
    const answers: string[] = [];
    for (const [name, base] of Object.entries(contenders)) {
      const r = await postJson(`${base}/graphql`, DEVICES_BODY, auth);
      if (r.status !== 200 || r.json.errors || r.json.data?.devices?.edges?.length !== DEVICES) throw new Error(`${name} answered ${r.status}: ${JSON.stringify(r.json).slice(0, 300)}`);
      answers.push(JSON.stringify(r.json.data));
    }
    if (answers[0] !== answers[1]) throw new Error(`the raw handler's JSON differs from Vigil's:\n${answers[0]!.slice(0, 400)}\n${answers[1]!.slice(0, 400)}`);
    ctx.progress('warming up (2 s each)');
    for (const base of Object.values(contenders)) await httpLoad({ url: `${base}/graphql`, body: DEVICES_BODY, headers: auth, connections: CONNECTIONS, durationS: 2 });
    const results = await alternate(
      ctx,
      Object.entries(contenders).map(([name, base]) => ({
        name,
        measure: () => httpLoad({ url: `${base}/graphql`, body: DEVICES_BODY, headers: auth, connections: CONNECTIONS, durationS }),
      })),
      (r) => `${Math.round(r.rps)} req/s p99 ${r.p99Ms} ms${r.failed ? ` (${r.failed} failed)` : ''}`,
    );
    const rps = (name: string) => median(results.get(name)!.map((r) => r.rps));
    const p99 = (name: string) => median(results.get(name)!.map((r) => r.p99Ms));
    const failed = [...results.values()].flat().reduce((n, r) => n + r.failed, 0);
    const ours = rps('Vigil');
    const theirs = rps('raw postgres.js');
    return [
      {
        scenario: 'S1b',
        metric: `req/s, devices(first: 50) on Postgres, ${CONNECTIONS} connections`,
        unit: 'req/s',
        ours,
        peers: [{ name: 'raw postgres.js', value: theirs }],
        goal: '>= 0.7x raw',
        pass: ours >= 0.7 * theirs && failed === 0,
        ratio: `${ratio(ours, theirs)} raw`,
        note:
          `The S1a document (totalCount, pageInfo, 10 device fields, shares { grantee }) over ${DEVICES} bound devices (10 with 2 shares) on a fresh Postgres database, ${CONNECTIONS} connections, ${durationS} s per round after a 2 s warm-up. ` +
          `Vigil: one gateway process (NODE_ENV=production, no Redis, pool of 10), a real session bearer (Ed25519 JWT + session row). ` +
          `Raw: node:http + postgres.js (pool of 10) verifying the same JWT with jose, then session, page + count (concurrently) and shares statements; byte-identical data JSON. ` +
          `p99 ms: Vigil ${p99('Vigil')}, raw ${p99('raw postgres.js')}.` +
          (failed ? ` ${failed} requests failed.` : ''),
      },
    ];
  } finally {
    await raw?.stop();
    await vigil?.stop();
    await db.drop();
  }
}

const scenario: Scenario = { id: 'S1b', title: 'HTTP devices(first: 50) over Drizzle on Postgres vs raw postgres.js + node:http', run };
export default scenario;
