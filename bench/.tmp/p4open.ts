import { startChild, wallMs } from '../lib/harness';
import { startWsLoad } from '../lib/ws-load';
const p4 = await startChild('bench/peers/p4-graphql-ws.ts');
const load = await startWsLoad(2);
try {
  const url = `${p4.url.replace(/^http/, 'ws')}/graphql`;
  const t = wallMs();
  const o = await load.open(Array.from({ length: 1000 }, (_, i) => ({ url, mode: 'graphql-ws' as const, token: 'u', subs: [{ tag: 0, query: 'subscription($after: String) { alarms(after: $after) { id cursor channel } }', resumeVar: 'after' }] })), { concurrency: 20 });
  console.log('open', o, wallMs() - t);
  await fetch(`${p4.url}/publish`, { method: 'POST', body: JSON.stringify({ deviceId: 'x', channel: 1 }) });
  await new Promise((r) => setTimeout(r, 500));
  console.log(await load.take([{ key: 1, tag: 0, at: t }]).then((r) => ({ ...r, latencies: r.latencies.length })));
  await load.drop();
  await fetch(`${p4.url}/publish`, { method: 'POST', body: JSON.stringify({ deviceId: 'x', channel: 2 }) });
  const t0 = wallMs();
  const r = await load.reconnect(1000, 20000);
  console.log('reconnect', { ...r, ms: r.last - t0 });
} finally {
  await load.stop();
  await p4.stop();
}
