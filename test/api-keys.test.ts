import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { requireCaller, requireSessionCaller, type Caller } from '../src/accounts/caller';
import { tables } from '../src/db/index';
import { sha256 } from '../src/lib/secrets';
import {
  ApiKeysDocument,
  ChangePasswordDocument,
  CreateApiKeyDocument,
  EnableTotpDocument,
  MeDocument,
  RegisterDocument,
  RevokeApiKeyDocument,
  RevokeSessionDocument,
  ScopeProbeDevicesDocument,
  ScopeProbeRenameDeviceDocument,
  SessionsDocument,
  type ApiScope,
} from './generated/graphql';
import { expectCode, expectData, OTHER_STRONG_PASSWORD, startApp, STRONG_PASSWORD, testClock, uniqueEmail, type TestApp } from './helpers/harness';

let t: TestApp;
const clock = testClock();
let alice: { token: string; userId: string };
let bob: { token: string; userId: string };

async function newUser() {
  const r = expectData(await t.gql(RegisterDocument, { input: { email: uniqueEmail('keys'), password: STRONG_PASSWORD } }));
  return { token: r.register.accessToken, userId: r.register.user.id };
}

before(async () => {
  t = await startApp({ clock: clock.now });
  alice = await newUser();
  bob = await newUser();
});
after(() => t.stop());

const create = (token: string, name = 'CI exporter', scopes: ApiScope[] = ['DEVICES_READ']) => t.gql(CreateApiKeyDocument, { name, scopes }, { token });

async function keyRow(id: string) {
  const [row] = await t.app.db.db.select().from(tables.apiKeys).where(eq(tables.apiKeys.id, id));
  return row!;
}

test('createApiKey shows a vgk_ secret with 256 random bits once and stores only its hash', async () => {
  const r = expectData(await create(alice.token, '  Partner sync  ', ['DEVICES_READ', 'ALARMS_READ', 'DEVICES_READ'])).createApiKey;
  assert.match(r.secret, /^vgk_[0-9a-f]{8}_[0-9a-f]{64}$/);
  assert.equal(r.apiKey.name, 'Partner sync');
  assert.deepEqual([...r.apiKey.scopes].sort(), ['ALARMS_READ', 'DEVICES_READ']);
  assert.equal(r.apiKey.prefix, r.secret.slice(0, 12));
  assert.equal(r.apiKey.lastUsedAt, null);
  const row = await keyRow(r.apiKey.id);
  assert.equal(row.secretHash, sha256(r.secret));
  assert.ok(!JSON.stringify(row).includes(r.secret.slice(13)), 'the secret part must not be stored');
  const listed = expectData(await t.gql(ApiKeysDocument, {}, { token: alice.token })).apiKeys.find((k) => k.id === r.apiKey.id);
  assert.ok(listed);
  assert.equal(listed.prefix, r.apiKey.prefix);
  assert.ok(!JSON.stringify(listed).includes(r.secret.slice(13)), 'apiKeys must not show the secret');
});

test('an API key authenticates as its owner when sent as a Bearer token', async () => {
  const { secret } = expectData(await create(alice.token)).createApiKey;
  const me = expectData(await t.gql(MeDocument, {}, { token: secret })).me;
  assert.equal(me.id, alice.userId);
});

test('an API key is UNAUTHENTICATED when it is unknown, tampered with or malformed', async () => {
  const { secret } = expectData(await create(alice.token)).createApiKey;
  const last = secret.at(-1) === '0' ? '1' : '0';
  for (const token of [`${secret.slice(0, -1)}${last}`, `vgk_00000000_${'0'.repeat(64)}`, 'vgk_short', `${secret}0`, secret.toUpperCase()]) {
    expectCode(await t.gql(MeDocument, {}, { token }), 'UNAUTHENTICATED');
  }
});

test('an API key is FORBIDDEN from account management whatever its scopes', async () => {
  const { secret } = expectData(await create(alice.token, 'all scopes', ['DEVICES_READ', 'DEVICES_WRITE', 'ALARMS_READ', 'SHARES_WRITE'])).createApiKey;
  expectCode(await t.gql(SessionsDocument, {}, { token: secret }), 'FORBIDDEN');
  expectCode(await t.gql(ApiKeysDocument, {}, { token: secret }), 'FORBIDDEN');
  expectCode(await t.gql(CreateApiKeyDocument, { name: 'escalate', scopes: ['DEVICES_WRITE'] }, { token: secret }), 'FORBIDDEN');
  expectCode(await t.gql(ChangePasswordDocument, { currentPassword: STRONG_PASSWORD, newPassword: OTHER_STRONG_PASSWORD }, { token: secret }), 'FORBIDDEN');
  expectCode(await t.gql(EnableTotpDocument, {}, { token: secret }), 'FORBIDDEN');
  expectCode(await t.gql(RevokeSessionDocument, { id: '00000000-0000-4000-8000-000000000000' }, { token: secret }), 'FORBIDDEN');
  const { apiKey } = expectData(await create(alice.token)).createApiKey;
  expectCode(await t.gql(RevokeApiKeyDocument, { id: apiKey.id }, { token: secret }), 'FORBIDDEN');
  // Nothing changed: the password still works and the other key is still listed.
  assert.ok(expectData(await t.gql(ApiKeysDocument, {}, { token: alice.token })).apiKeys.some((k) => k.id === apiKey.id));
});

test('an API key reaches device operations only with the scope each needs', async () => {
  const noDevices = expectData(await create(alice.token, 'alarms only', ['ALARMS_READ'])).createApiKey.secret;
  const read = expectData(await create(alice.token, 'read', ['DEVICES_READ'])).createApiKey.secret;
  const write = expectData(await create(alice.token, 'write', ['DEVICES_WRITE'])).createApiKey.secret;
  const junkId = '00000000-0000-4000-8000-000000000000';
  expectCode(await t.gql(ScopeProbeDevicesDocument, {}, { token: noDevices }), 'FORBIDDEN');
  expectCode(await t.gql(ScopeProbeRenameDeviceDocument, { id: junkId }, { token: noDevices }), 'FORBIDDEN');
  assert.equal(expectData(await t.gql(ScopeProbeDevicesDocument, {}, { token: read })).devices.totalCount, 0);
  expectCode(await t.gql(ScopeProbeRenameDeviceDocument, { id: junkId }, { token: read }), 'FORBIDDEN');
  expectCode(await t.gql(ScopeProbeDevicesDocument, {}, { token: write }), 'FORBIDDEN');
  // Past the scope check, the device lookup answers as it would for the owner.
  expectCode(await t.gql(ScopeProbeRenameDeviceDocument, { id: junkId }, { token: write }), 'NOT_FOUND');
  // A person's session has every scope.
  assert.equal(expectData(await t.gql(ScopeProbeDevicesDocument, {}, { token: alice.token })).devices.totalCount, 0);
});

test('requireCaller admits an API key only for the scopes it holds', () => {
  const key: Caller = { kind: 'apiKey', userId: 'u', apiKeyId: 'k', scopes: ['DEVICES_READ'] };
  const session: Caller = { kind: 'session', userId: 'u', sessionId: 's' };
  assert.equal(requireCaller(key, 'DEVICES_READ'), key);
  assert.equal(requireCaller(key), key);
  assert.throws(() => requireCaller(key, 'DEVICES_WRITE'), { code: 'FORBIDDEN' });
  assert.throws(() => requireCaller(key, 'SHARES_WRITE'), { code: 'FORBIDDEN' });
  assert.equal(requireCaller(session, 'DEVICES_WRITE'), session);
  assert.throws(() => requireCaller(null, 'DEVICES_READ'), { code: 'UNAUTHENTICATED' });
  assert.throws(() => requireSessionCaller(key), { code: 'FORBIDDEN' });
});

test('an API key authenticates with the scopes it was created with when it reaches a service', async () => {
  const { secret, apiKey } = expectData(await create(alice.token, 'readonly', ['ALARMS_READ'])).createApiKey;
  const caller = await t.app.services.auth.authenticate(`Bearer ${secret}`);
  assert.deepEqual(caller, { kind: 'apiKey', userId: alice.userId, apiKeyId: apiKey.id, scopes: ['ALARMS_READ'] });
});

test('an API key records lastUsedAt at most once a minute when it is used', async () => {
  const { secret, apiKey } = expectData(await create(alice.token)).createApiKey;
  expectData(await t.gql(MeDocument, {}, { token: secret }));
  const first = (await keyRow(apiKey.id)).lastUsedAt;
  assert.ok(first);
  clock.advance(10_000);
  expectData(await t.gql(MeDocument, {}, { token: secret }));
  assert.equal((await keyRow(apiKey.id)).lastUsedAt?.getTime(), first.getTime());
  clock.advance(60_000);
  expectData(await t.gql(MeDocument, {}, { token: secret }));
  const later = (await keyRow(apiKey.id)).lastUsedAt!;
  assert.ok(later.getTime() > first.getTime());
  const listed = expectData(await t.gql(ApiKeysDocument, {}, { token: alice.token })).apiKeys.find((k) => k.id === apiKey.id);
  assert.equal(listed?.lastUsedAt, later.toISOString());
});

test('revokeApiKey stops the key at once and drops it from apiKeys', async () => {
  const { secret, apiKey } = expectData(await create(alice.token)).createApiKey;
  expectData(await t.gql(MeDocument, {}, { token: secret }));
  assert.equal(expectData(await t.gql(RevokeApiKeyDocument, { id: apiKey.id }, { token: alice.token })).revokeApiKey, true);
  expectCode(await t.gql(MeDocument, {}, { token: secret }), 'UNAUTHENTICATED');
  assert.ok(!expectData(await t.gql(ApiKeysDocument, {}, { token: alice.token })).apiKeys.some((k) => k.id === apiKey.id));
  expectCode(await t.gql(RevokeApiKeyDocument, { id: apiKey.id }, { token: alice.token }), 'NOT_FOUND');
});

test("revokeApiKey is NOT_FOUND and the key keeps working when the id is someone else's or junk", async () => {
  const { secret, apiKey } = expectData(await create(alice.token)).createApiKey;
  expectCode(await t.gql(RevokeApiKeyDocument, { id: apiKey.id }, { token: bob.token }), 'NOT_FOUND');
  expectCode(await t.gql(RevokeApiKeyDocument, { id: 'nope' }, { token: bob.token }), 'NOT_FOUND');
  expectCode(await t.gql(RevokeApiKeyDocument, { id: '00000000-0000-4000-8000-000000000000' }, { token: bob.token }), 'NOT_FOUND');
  expectData(await t.gql(MeDocument, {}, { token: secret }));
  assert.ok(!expectData(await t.gql(ApiKeysDocument, {}, { token: bob.token })).apiKeys.some((k) => k.id === apiKey.id));
});

test('createApiKey is BAD_USER_INPUT when the name is empty or too long or no scope is given', async () => {
  const before = expectData(await t.gql(ApiKeysDocument, {}, { token: bob.token })).apiKeys.length;
  expectCode(await create(bob.token, ''), 'BAD_USER_INPUT');
  expectCode(await create(bob.token, '   '), 'BAD_USER_INPUT');
  expectCode(await create(bob.token, 'x'.repeat(101)), 'BAD_USER_INPUT');
  expectCode(await create(bob.token, 'no scopes', []), 'BAD_USER_INPUT');
  expectCode(await create(bob.token, 'bad scope', ['ROOT' as ApiScope]), 'BAD_USER_INPUT');
  expectData(await create(bob.token, 'x'.repeat(100)));
  assert.equal(expectData(await t.gql(ApiKeysDocument, {}, { token: bob.token })).apiKeys.length, before + 1);
});

test('createApiKey is UNAUTHENTICATED when no token is sent', async () => {
  expectCode(await create(''), 'UNAUTHENTICATED');
  expectCode(await t.gql(ApiKeysDocument, {}), 'UNAUTHENTICATED');
  expectCode(await t.gql(RevokeApiKeyDocument, { id: '00000000-0000-4000-8000-000000000000' }), 'UNAUTHENTICATED');
});

test('createApiKey is BAD_USER_INPUT when the owner already has 20 active keys, and works again after a revoke', async () => {
  const u = await newUser();
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) ids.push(expectData(await create(u.token, `key ${i}`)).createApiKey.apiKey.id);
  const err = expectCode(await create(u.token, 'one too many'), 'BAD_USER_INPUT');
  assert.match(err.message, /20/);
  expectData(await t.gql(RevokeApiKeyDocument, { id: ids[0]! }, { token: u.token }));
  expectData(await create(u.token, 'replacement'));
  assert.equal(expectData(await t.gql(ApiKeysDocument, {}, { token: u.token })).apiKeys.length, 20);
});
