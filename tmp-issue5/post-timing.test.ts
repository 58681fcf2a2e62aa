import { test } from 'node:test';
import { startApp } from '../test/helpers/harness';
import { provisionAndBind, registerUser } from '../test/helpers/devices';
import { alertXml, isapiPost } from '../test/helpers/alarms-fixtures';
test('timing', async () => {
  const t = await startApp();
  const u = await registerUser(t);
  const { provisioned } = await provisionAndBind(t, u);
  for (const desc of [undefined, 'x'.repeat(480)]) {
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) await isapiPost(t.url, provisioned.ingestPath, alertXml({ eventType: 'VMD', channel: 500 + i + (desc ? 100 : 0), description: desc }), 'application/xml');
    console.log('desc', !!desc, (Date.now() - t0) / 20, 'ms/post');
  }
  await t.stop();
});
test('timing record', async () => {
  const t = await startApp();
  const u = await registerUser(t);
  const { provisioned, device } = await provisionAndBind(t, u);
  const post = (i: number) => ({ source: 'ws' as const, eventType: `e${i}`, rawType: 'x', alarmType: 'OTHER' as const, state: 'active' as const, channel: 1, regionId: null, deviceTime: null, activePostCount: 0, description: null, channelName: null, identity: `w:${i}`, retransmission: false, details: null });
  let t0 = Date.now();
  for (let i = 0; i < 20; i++) await t.app.alarmStore.record(device.id, post(i));
  console.log('record', (Date.now() - t0) / 20, 'ms');
  t0 = Date.now();
  for (let i = 0; i < 20; i++) await fetch(`${t.url}/healthz`);
  console.log('healthz', (Date.now() - t0) / 20, 'ms');
  t0 = Date.now();
  for (let i = 0; i < 20; i++) await isapiPost(t.url, provisioned.ingestPath, 'garbage', 'application/xml');
  console.log('bad post', (Date.now() - t0) / 20, 'ms');
  await t.stop();
});
