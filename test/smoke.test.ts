import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MeDocument, RegisterDocument } from './generated/graphql';
import { expectCode, expectData, startApp, STRONG_PASSWORD, uniqueEmail, type TestApp } from './helpers/harness';

let t: TestApp;
before(async () => {
  t = await startApp();
});
after(() => t.stop());

test('health and readiness answer when the database is migrated', async () => {
  assert.equal((await fetch(`${t.url}/healthz`)).status, 200);
  const ready = await fetch(`${t.url}/readyz`);
  assert.equal(ready.status, 200);
  assert.equal(((await ready.json()) as { status: string }).status, 'ready');
});

test('register then me returns the new user when the access token is sent', async () => {
  const email = uniqueEmail();
  const reg = expectData(await t.gql(RegisterDocument, { input: { email, password: STRONG_PASSWORD, displayName: 'Ana' } }));
  assert.equal(reg.register.user.email, email);
  const me = expectData(await t.gql(MeDocument, {}, { token: reg.register.accessToken }));
  assert.equal(me.me.id, reg.register.user.id);
});

test('me is UNAUTHENTICATED when no token is sent', async () => {
  expectCode(await t.gql(MeDocument, {}), 'UNAUTHENTICATED');
});

test('metrics expose request counts by operation when scraped', async () => {
  const text = await (await fetch(`${t.url}/metrics`)).text();
  assert.match(text, /vigil_graphql_requests_total\{operation="query.me",outcome="error"\}/);
  assert.match(text, /vigil_open_websockets/);
});
