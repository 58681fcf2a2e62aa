import { after, before, test } from 'node:test';
import { startApp, type TestApp } from './helpers/harness';
let t: TestApp;
before(async () => { t = await startApp(); });
after(() => t.stop());
test('probe', async () => {
  await new Promise((r) => setTimeout(r, 1000));
  for (const topic of ['device.access', 'device.access', 'device.status', 'device.status'] as const) {
    const it = t.app.bus.subscribe(topic)[Symbol.asyncIterator]();
    let got = 0;
    void (async () => { for (;;) { const v = await it.next(); if (v.done) return; got++; } })();
    await new Promise((r) => setTimeout(r, 300));
    t.app.bus.publish(topic as 'device.access', { deviceId: 'probe-x', userIds: [] } as never);
    await new Promise((r) => setTimeout(r, 300));
    console.log(topic, 'got', got);
  }
});
