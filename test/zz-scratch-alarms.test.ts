import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AlarmsDocument } from './generated/graphql';
import { expectData, startApp, type TestApp } from './helpers/harness';
import { provisionAndBind, registerUser } from './helpers/devices';
import { connectDevice, fixture, isapiPost, MULTIPART_TYPE } from './helpers/alarms-fixtures';

let t: TestApp;
before(async () => { t = await startApp({ env: { LOG_LEVEL: 'warn' } }); });
after(async () => { const t0 = Date.now(); await t.stop(); console.log("stopped in", Date.now() - t0); });

test('scratch', async () => {
  console.log("start", Date.now() % 100000); const u = await registerUser(t); console.log("reg", Date.now() % 100000);
  const { provisioned, device } = await provisionAndBind(t, u);
  let r = await isapiPost(t.url, provisioned.ingestPath, fixture('vmd.xml'), 'application/xml');
  console.log(Date.now() % 100000, r.status);
  r = await isapiPost(t.url, provisioned.ingestPath, fixture('linedetection-with-jpeg.multipart'), MULTIPART_TYPE);
  console.log(Date.now() % 100000, r.status);
  r = await isapiPost(t.url, provisioned.ingestPath, fixture('truncated.xml'), 'application/xml');
  console.log(Date.now() % 100000, r.status);
  r = await isapiPost(t.url, '/isapi/events/nope', fixture('vmd.xml'), 'application/xml');
  console.log(Date.now() % 100000, r.status);
  console.log('connecting', Date.now() % 100000);
  const dev = await connectDevice(t.url, { serial: provisioned.serial, deviceKey: provisioned.deviceKey });
  dev.send({ type: 'event', id: 'e1', channel: 2, eventType: 'fielddetection', state: 'active', at: new Date().toISOString() });
  await dev.waitFrame((f) => f.type === 'ack');
  console.log('acked', Date.now() % 100000);
  const a = expectData(await t.gql(AlarmsDocument, {}, { token: u.token }));
  console.log('queried', Date.now() % 100000, a.alarms.edges.length);
  dev.close();
  await dev.closed; console.log('closed', Date.now() % 100000);
});
