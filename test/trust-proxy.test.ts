import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { print } from 'graphql';
import { createClient } from 'graphql-ws';
import { WebSocket } from 'ws';
import { ChangePasswordDocument, RegisterDocument } from './generated/graphql';
import { insertDevice, openDeviceSocket } from './helpers/alarms-fixtures';
import { expectCode, expectData, OTHER_STRONG_PASSWORD, startApp, STRONG_PASSWORD, uniqueEmail, type TestApp } from './helpers/harness';

// Behind the load balancer the README recommends, every connection comes from the balancer's
// address; with TRUST_PROXY=true each door must read the client from X-Forwarded-For.
let t: TestApp;
before(async () => {
  t = await startApp({ env: { TRUST_PROXY: 'true' } });
});
after(() => t.stop());

const helloFrom = async (ip: string, serial: string, key: string) => {
  const dev = await openDeviceSocket(t.url, ['vigil-device.v1'], { 'x-forwarded-for': `${ip}, 10.0.0.1` });
  dev.send({ type: 'hello', serial, key });
  await Promise.race([dev.waitFrame((f) => f.type === 'welcome'), dev.closed]);
  const welcomed = dev.frames[0]?.type === 'welcome';
  dev.close();
  await dev.closed;
  return welcomed ? 'welcome' : (await dev.closed).code;
};

describe('TRUST_PROXY on every door', () => {
  test('the device WebSocket counts failed hellos per client, not per balancer', async () => {
    const d = await insertDevice(t.app.db.db);
    // A misconfigured client fails until its (source, serial) is held...
    for (let i = 0; i < 6; i++) assert.equal(await helloFrom('198.51.100.20', d.serial, 'stale-key'), 4401);
    assert.equal(await helloFrom('198.51.100.20', d.serial, d.deviceKey), 4401, 'held at its own address');
    // ...while the same device from another client address, through the same balancer, gets in.
    assert.equal(await helloFrom('198.51.100.21', d.serial, d.deviceKey), 'welcome');
  });

  test('graphql-ws sees the client address, as HTTP does', async () => {
    const email = uniqueEmail();
    const reg = expectData(await t.gql(RegisterDocument, { input: { email, password: STRONG_PASSWORD } }, { headers: { 'x-forwarded-for': '198.51.100.30' } }));
    const token = reg.register.accessToken;
    const headers = { 'x-forwarded-for': '198.51.100.31, 10.0.0.1' };
    class ForwardedWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols, { headers });
      }
    }
    const client = createClient({
      url: `${t.url.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: ForwardedWebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${token}` },
    });
    const changeOverWs = (currentPassword: string) =>
      new Promise<string | undefined>((resolve, reject) => {
        let code: string | undefined;
        client.subscribe(
          { query: print(ChangePasswordDocument), variables: { currentPassword, newPassword: OTHER_STRONG_PASSWORD } },
          {
            next: (v) => (code = (v.errors?.[0]?.extensions as { code?: string } | undefined)?.code),
            error: reject,
            complete: () => resolve(code),
          },
        );
      });
    try {
      // Six wrong step-up passwords over graphql-ws from 198.51.100.31 hold that (account, source)...
      for (let i = 0; i < 6; i++) assert.equal(await changeOverWs(OTHER_STRONG_PASSWORD), 'INVALID_CREDENTIALS');
      // ...so HTTP from the same client address waits, and another address does not.
      const same = await t.gql(ChangePasswordDocument, { currentPassword: STRONG_PASSWORD, newPassword: OTHER_STRONG_PASSWORD }, { token, headers: { 'x-forwarded-for': '198.51.100.31' } });
      expectCode(same, 'RATE_LIMITED');
      expectData(await t.gql(ChangePasswordDocument, { currentPassword: STRONG_PASSWORD, newPassword: OTHER_STRONG_PASSWORD }, { token, headers: { 'x-forwarded-for': '198.51.100.32' } }));
    } finally {
      await client.dispose();
    }
  });
});
