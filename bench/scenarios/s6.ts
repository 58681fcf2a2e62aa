// S6: a login storm at our argon2id parameters while S1a's load runs against the same Vigil process.
// Each round measures, against one Vigil gateway (S1a's in-memory device data, accounts on Postgres):
//   alone  - S1a's load only (its p99 is the baseline);
//   storm  - S1a's load plus LOGIN_CONCURRENCY clients logging in over and over;
//   raw    - S1a's load plus a plain process verifying argon2id hashes, bounded the same way as
//            Vigil's hasher (the same number in flight as its ARGON2_CONCURRENCY), beside the same
//            query load, so both hash rates compete with it alike.
import { alternate, median, ratio, startChild, type BenchContext, type ChildServer, type ResultRow, type Scenario } from '../lib/harness';
import { profileArgs, type HttpLoadResult } from '../lib/http-load';
import { freshDatabase, register, STRONG_PASSWORD } from '../lib/live';
import { availableParallelism } from 'node:os';
import { ARGON2_OPTIONS } from '../../src/accounts/password';
import { defaultArgon2Concurrency } from '../../src/config';
import { checkDevicesAnswer, loadDevices, vigilMemoryEnv } from './s1a';

const LOGIN_CONCURRENCY = Number(process.env.BENCH_LOGIN_CONCURRENCY ?? 16);
const ACCOUNTS = 8;
/** Vigil's bound on hashes at once (its default unless BENCH_ARGON2_CONCURRENCY says), and so the raw verifier's. */
const SETTING = process.env.BENCH_ARGON2_CONCURRENCY;
const UV_POOL = Number(process.env.UV_THREADPOOL_SIZE) || 4;
const BOUND = SETTING !== undefined ? Number(SETTING) : defaultArgon2Concurrency(availableParallelism(), UV_POOL);
/** In flight at the raw verifier: Vigil's bound, or as many as the login clients when Vigil has none (0). */
const RAW_IN_FLIGHT = BOUND > 0 ? BOUND : LOGIN_CONCURRENCY;
const LOGIN = 'mutation Login($i: LoginInput!) { login(input: $i) { accessToken } }';

interface Round {
  s1a: HttpLoadResult;
  /** Logins (or raw verifications) per second; NaN when none ran. */
  hashesPerS: number;
  failedLogins: number;
}

/** `concurrency` clients logging in for `ms`, each with its own accounts in turn; successful logins per second. */
async function loginStorm(base: string, emails: string[], concurrency: number, ms: number): Promise<{ perS: number; failed: number }> {
  const started = performance.now();
  const deadline = started + ms;
  let ok = 0;
  let failed = 0;
  const client = async (k: number) => {
    for (let i = k; performance.now() < deadline; i += concurrency) {
      const res = await fetch(`${base}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: LOGIN, variables: { i: { login: emails[i % emails.length], password: STRONG_PASSWORD } } }),
        signal: AbortSignal.timeout(10_000),
      });
      const body = (await res.json()) as { data?: { login?: { accessToken?: string } } };
      if (body.data?.login?.accessToken) ok++;
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, k) => client(k)));
  return { perS: ok / ((performance.now() - started) / 1000), failed };
}

async function rawVerify(base: string, ms: number, concurrency: number): Promise<number> {
  const res = await fetch(`${base}/run?ms=${ms}&concurrency=${concurrency}`, { signal: AbortSignal.timeout(ms + 30_000) });
  const r = (await res.json()) as { verified: number; elapsedMs: number };
  return r.verified / (r.elapsedMs / 1000);
}

async function run(ctx: BenchContext): Promise<ResultRow[]> {
  const durationS = ctx.quick ? 2 : 3;
  const db = await freshDatabase(ctx.databaseUrl);
  let vigil: ChildServer | undefined;
  let raw: ChildServer | undefined;
  try {
    ctx.progress('starting Vigil and the raw argon2 process');
    const env = vigilMemoryEnv(db.url, {
      LOGIN_MAX_PER_ACCOUNT: '1000000',
      LOGIN_MAX_PER_IP: '1000000',
      REGISTER_MAX_PER_IP: '1000',
      ...(SETTING !== undefined ? { ARGON2_CONCURRENCY: SETTING } : {}),
    });
    [vigil, raw] = await Promise.all([
      startChild('bench/servers/vigil-http.ts', ['--memory-data'], env, { readyTimeoutMs: 90_000, nodeArgs: profileArgs() }),
      startChild('bench/peers/argon2-verify.ts', [], {}, { readyTimeoutMs: 60_000 }),
    ]);
    await checkDevicesAnswer('Vigil', vigil.url);
    const emails: string[] = [];
    for (let i = 0; i < ACCOUNTS; i++) emails.push((await register(vigil.url, `s6-${i}`)).email);
    ctx.progress('warming up');
    await Promise.all([loadDevices(vigil.url, 2), loginStorm(vigil.url, emails, LOGIN_CONCURRENCY, 2000), rawVerify(raw.url, 2000, RAW_IN_FLIGHT)]);

    const ms = durationS * 1000;
    const v = vigil;
    const r = raw;
    const results = await alternate<Round>(
      ctx,
      [
        { name: 'alone', measure: async () => ({ s1a: await loadDevices(v.url, durationS), hashesPerS: NaN, failedLogins: 0 }) },
        {
          name: 'storm',
          measure: async () => {
            const [s1a, storm] = await Promise.all([loadDevices(v.url, durationS), loginStorm(v.url, emails, LOGIN_CONCURRENCY, ms)]);
            return { s1a, hashesPerS: storm.perS, failedLogins: storm.failed };
          },
        },
        {
          name: 'raw',
          measure: async () => {
            const [s1a, perS] = await Promise.all([loadDevices(v.url, durationS), rawVerify(r.url, ms, RAW_IN_FLIGHT)]);
            return { s1a, hashesPerS: perS, failedLogins: 0 };
          },
        },
      ],
      (x) => `${Math.round(x.s1a.rps)} req/s p99 ${x.s1a.p99Ms} ms${Number.isNaN(x.hashesPerS) ? '' : `, ${x.hashesPerS.toFixed(1)} hashes/s`}${x.failedLogins ? ` (${x.failedLogins} logins failed)` : ''}`,
    );
    const rawAlone = await rawVerify(raw.url, ms, RAW_IN_FLIGHT);
    const of = (name: string, f: (x: Round) => number) => median(results.get(name)!.map(f));
    const logins = of('storm', (x) => x.hashesPerS);
    const rawRate = of('raw', (x) => x.hashesPerS);
    const p99Alone = of('alone', (x) => x.s1a.p99Ms);
    const p99Storm = of('storm', (x) => x.s1a.p99Ms);
    const p99Raw = of('raw', (x) => x.s1a.p99Ms);
    const failedLogins = results.get('storm')!.reduce((n, x) => n + x.failedLogins, 0);
    const failedQueries = [...results.values()].flat().reduce((n, x) => n + x.s1a.failed, 0);
    const { memoryCost, timeCost, parallelism } = ARGON2_OPTIONS;
    const setting =
      SETTING !== undefined
        ? `ARGON2_CONCURRENCY=${SETTING}`
        : `ARGON2_CONCURRENCY default ${BOUND} (one per spare core, below libuv's pool of ${UV_POOL}; ${availableParallelism()} CPUs)`;
    const note =
      `argon2id m=${memoryCost} KiB, t=${timeCost}, p=${parallelism}; ${LOGIN_CONCURRENCY} login clients (${ACCOUNTS} accounts, login limits raised by env) against the Vigil process serving S1a's load ` +
      `(devices(first: 50), ${64} connections, in-memory device data, accounts on Postgres, ${setting}); raw = a plain Node process keeping ${RAW_IN_FLIGHT} argon2.verify calls in flight (Vigil's bound), ` +
      `measured while the same S1a load runs against Vigil. ${durationS} s per phase, phases alternated. ` +
      `S1a req/s: alone ${Math.round(of('alone', (x) => x.s1a.rps))}, with storm ${Math.round(of('storm', (x) => x.s1a.rps))}, with raw ${Math.round(of('raw', (x) => x.s1a.rps))}; ` +
      `S1a p99 with the raw process beside it ${p99Raw} ms. Raw verifications/s on the otherwise idle machine: ${rawAlone.toFixed(1)}.` +
      (failedLogins || failedQueries ? ` Failed: ${failedLogins} logins, ${failedQueries} queries.` : '');
    return [
      {
        scenario: 'S6',
        metric: `logins/s, ${LOGIN_CONCURRENCY} clients, ${BOUND || 'unbounded'} hashing at once, while S1a runs`,
        unit: 'logins/s',
        ours: logins,
        peers: [{ name: `raw argon2 verify, ${RAW_IN_FLIGHT} in flight`, value: rawRate }],
        goal: '>= 0.9x raw argon2 verify bounded the same way',
        pass: logins >= 0.9 * rawRate && failedLogins === 0,
        ratio: `${ratio(logins, rawRate)} raw`,
        note,
      },
      {
        scenario: 'S6',
        metric: 'S1a p99 during the login storm',
        unit: 'ms',
        ours: p99Storm,
        peers: [{ name: 'S1a alone', value: p99Alone }],
        goal: '<= 2x S1a alone',
        pass: p99Storm <= 2 * p99Alone && failedQueries === 0,
        ratio: `${ratio(p99Storm, p99Alone)} alone`,
      },
    ];
  } finally {
    await Promise.all([vigil?.stop(), raw?.stop()]);
    await db.drop();
  }
}

const scenario: Scenario = { id: 'S6', title: 'login storm (argon2id, OWASP parameters) while S1a runs', run };
export default scenario;
