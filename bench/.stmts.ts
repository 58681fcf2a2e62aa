import { freshDatabase, startNodes } from './lib/live';
import { seedDevices } from './scenarios/s8';
import { runIsapiLoad } from './lib/isapi-load';
const db = await freshDatabase('postgres://postgres@127.0.0.1:5432/postgres');
const { nodes: [g] } = await startNodes(['x'], { DATABASE_URL: db.url, NODE_ENV: 'production', REDIS_URL: '' });
try {
  const s = await seedDevices(db.url, 100, 'st');
  const m = async () => { const t = await (await fetch(`${g!.url}/metrics`)).text(); return Number(/^vigil_db_statements_total (\S+)/m.exec(t)?.[1]); };
  await runIsapiLoad(g!.url, s.tokens, 32, 1000, 1);
  const a = await m();
  const r = await runIsapiLoad(g!.url, s.tokens, 32, 3000, 100000);
  const b = await m();
  console.log('posts', r.ok, 'statements', b - a, 'per post', ((b - a) / r.ok).toFixed(2), 'rate', (r.ok / r.elapsedMs * 1000).toFixed(0));
} finally { await g!.kill(); await db.drop(); }
