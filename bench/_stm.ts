import { clusterSecrets } from '../test/helpers/gateway-process';
import { startChild } from './lib/harness';
import { postJson } from './lib/http-load';
import { freshDatabase, register } from './lib/live';
import { DEVICES_BODY } from './peers/lib/http-data';
import { seed } from './scenarios/s1b';
const db = await freshDatabase('postgres://postgres@127.0.0.1:5432/postgres');
const env = { ...clusterSecrets(), DATA_DIR: ':memory:', DATABASE_URL: db.url, REDIS_URL: '', NODE_ENV: 'production', LOG_LEVEL: 'warn', REGISTER_MAX_PER_IP: '1000' };
const s = await startChild('bench/servers/vigil-http.ts', [], env, { readyTimeoutMs: 120_000 });
const stm = async () => Number(/^vigil_db_statements_total (\S+)/m.exec(await (await fetch(`${s.url}/metrics`)).text())?.[1]);
try {
  const owner = await register(s.url, 'p');
  await seed(db.url, owner.id, [await register(s.url, 'g1'), await register(s.url, 'g2')]);
  const h = { authorization: `Bearer ${owner.token}` };
  await postJson(`${s.url}/graphql`, DEVICES_BODY, h);
  const a = await stm();
  for (let i = 0; i < 10; i++) await postJson(`${s.url}/graphql`, DEVICES_BODY, h);
  console.log('statements per request', ((await stm()) - a) / 10);
  const t0 = performance.now();
  for (let i = 0; i < 50; i++) await postJson(`${s.url}/graphql`, DEVICES_BODY, h);
  console.log('sequential ms per request', (performance.now() - t0) / 50);
  const raw = await startChild('bench/peers/raw-pg.ts', [], { DATABASE_URL: db.url, JWT_PRIVATE_KEY: env.JWT_PRIVATE_KEY! });
  for (let i = 0; i < 5; i++) await postJson(`${raw.url}/graphql`, DEVICES_BODY, h);
  const t1 = performance.now();
  for (let i = 0; i < 50; i++) await postJson(`${raw.url}/graphql`, DEVICES_BODY, h);
  console.log('raw sequential ms per request', (performance.now() - t1) / 50);
  const t2 = performance.now();
  for (let i = 0; i < 50; i++) await postJson(`${s.url}/graphql`, DEVICES_BODY, h);
  console.log('vigil sequential ms per request', (performance.now() - t2) / 50);
  await raw.stop();
} finally {
  await s.stop();
  await db.drop();
}
