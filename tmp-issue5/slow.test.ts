import { test } from 'node:test';
import WebSocket from 'ws';
import { startApp } from '../test/helpers/harness';
import { provisionAndBind, registerUser } from '../test/helpers/devices';
import { gauge, subscriptionsRunning } from '../test/helpers/subscriptions';
test('slow', async () => {
  const t = await startApp({ env: { WS_MAX_PENDING_EVENTS: '20' } });
  const u = await registerUser(t);
  const { device } = await provisionAndBind(t, u);
  const ws = new WebSocket(`${t.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${u.token}` } })));
    ws.on('message', (m) => JSON.parse(m.toString()).type === 'connection_ack' && resolve());
    ws.once('error', reject);
  });
  const fields = Array.from({ length: 14 }, (_, i) => `s${i}: status a${i}: at`).join(" ");
  ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: `subscription { deviceStatus { status ${fields} } }` } }));
  let bytes = 0; let n = 0;
  ws.on('message', (m) => { bytes += (m as Buffer).length; n++; });
  await subscriptionsRunning(t.app, 1);
  await new Promise((r) => setTimeout(r, 200));
  ws.pause();
  const t0 = Date.now();
  let i = 0;
  for (; i < 5000; i++) {
    t.app.bus.publish('device.status', { deviceId: device.id, status: 'ONLINE', at: new Date().toISOString() });
    if (i % 20 === 0) { await new Promise((r) => setTimeout(r, 5)); if ((await gauge(t.app, 'vigil_graphql_ws_server_closes_total')) > 0) break; }
  }
  console.log('closed after', i, 'events', Date.now() - t0, 'ms; received before pause', n, bytes);
  await t.stop();
});
