import { test } from 'node:test';
import { startApp } from '../test/helpers/harness';
test('x', async () => {
  let t0 = Date.now();
  const t = await startApp();
  console.log('start', Date.now() - t0); t0 = Date.now();
  await t.stop();
  console.log('stop', Date.now() - t0);
});
