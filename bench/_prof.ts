import { clusterSecrets } from '../test/helpers/gateway-process';
import { startChild } from './lib/harness';
import { httpLoad } from './lib/http-load';
import { freshDatabase, register } from './lib/live';
import { BENCH_TOKEN, DEVICES_BODY } from './peers/lib/http-data';
import { seed } from './scenarios/s1b';
import { vigilMemoryEnv } from './scenarios/s1a';
const mode = process.argv[2];
const dir = process.argv[3]!;
const db = await freshDatabase('postgres://postgres@127.0.0.1:5432/postgres');
const secrets = clusterSecrets();
const env = mode === 'mem' ? vigilMemoryEnv(db.url, { ...(process.env.EXEC ? { GRAPHQL_EXECUTOR: process.env.EXEC } : {}) }) : { ...secrets, DATA_DIR: ':memory:', DATABASE_URL: db.url, REDIS_URL: '', NODE_ENV: 'production', LOG_LEVEL: 'warn', HTTP_RATE_PER_IP: '100000000', HTTP_RATE_PER_TOKEN: '100000000', REGISTER_MAX_PER_IP: '1000' };
const s = await startChild('bench/servers/vigil-http.ts', mode === 'mem' ? ['--memory-data'] : [], env, { readyTimeoutMs: 120_000, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=200'] });
try {
  let token = BENCH_TOKEN;
  if (mode !== 'mem') {
    const owner = await register(s.url, 'p');
    const g = [await register(s.url, 'g1'), await register(s.url, 'g2')];
    await seed(db.url, owner.id, g);
    token = owner.token;
  }
  const h = { authorization: `Bearer ${token}` };
  await httpLoad({ url: `${s.url}/graphql`, body: DEVICES_BODY, headers: h, connections: 64, durationS: 2 });
  const r = await httpLoad({ url: `${s.url}/graphql`, body: DEVICES_BODY, headers: h, connections: 64, durationS: Number(process.env.DUR ?? 6) });
  console.log(JSON.stringify(r));
} finally {
  await s.stop();
  await db.drop();
}
