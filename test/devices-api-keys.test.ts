import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  BindDeviceDocument,
  CreateApiKeyDocument,
  DeviceDocument,
  DevicesDocument,
  GrantShareDocument,
  RenameDeviceDocument,
  RevokeShareDocument,
  TransferDeviceDocument,
  UnbindDeviceDocument,
  UnbindDevicesDocument,
  type ApiScope,
} from './generated/graphql';
import { provisionAndBind, provisionDevice, registerUser, type TestUser } from './helpers/devices';
import { expectCode, expectData, OTHER_STRONG_PASSWORD, startApp, type TestApp } from './helpers/harness';

let t: TestApp;
let owner: TestUser;
let friend: TestUser;
let heir: TestUser;
before(async () => {
  t = await startApp();
  [owner, friend, heir] = await Promise.all([registerUser(t, 'partner'), registerUser(t, 'friend'), registerUser(t, 'heir')]);
});
after(() => t.stop());

const apiKey = async (scopes: ApiScope[]) =>
  expectData(await t.gql(CreateApiKeyDocument, { name: scopes.join('+'), scopes }, { token: owner.token })).createApiKey.secret;

test('a DEVICES_READ key reads devices but cannot bind, rename, share or unbind', async () => {
  const key = await apiKey(['DEVICES_READ']);
  const { device } = await provisionAndBind(t, owner);
  assert.ok(expectData(await t.gql(DevicesDocument, { first: 10 }, { token: key })).devices.edges.some((e) => e.node.id === device.id));
  assert.equal(expectData(await t.gql(DeviceDocument, { id: device.id }, { token: key })).device?.id, device.id);
  const p = await provisionDevice(t);
  expectCode(await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode }, { token: key }), 'FORBIDDEN');
  expectCode(await t.gql(RenameDeviceDocument, { id: device.id, name: 'x' }, { token: key }), 'FORBIDDEN');
  expectCode(await t.gql(GrantShareDocument, { deviceId: device.id, grantee: friend.email, permissions: ['LIVE_VIEW'] }, { token: key }), 'FORBIDDEN');
  expectCode(await t.gql(UnbindDeviceDocument, { id: device.id, password: owner.password }, { token: key }), 'FORBIDDEN');
  expectCode(await t.gql(UnbindDevicesDocument, { ids: [device.id], password: owner.password }, { token: key }), 'FORBIDDEN');
  expectCode(await t.gql(TransferDeviceDocument, { id: device.id, to: heir.email, password: owner.password }, { token: key }), 'FORBIDDEN');
});

test('a DEVICES_WRITE key binds and renames, but needs SHARES_WRITE to share and DEVICES_READ to list', async () => {
  const key = await apiKey(['DEVICES_WRITE']);
  const p = await provisionDevice(t);
  const bound = expectData(
    await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode, name: 'Via key' }, { token: key }),
  ).bindDevice;
  assert.equal(bound.role, 'OWNER');
  assert.equal(expectData(await t.gql(RenameDeviceDocument, { id: bound.id, name: 'Renamed via key' }, { token: key })).renameDevice.name, 'Renamed via key');
  expectCode(await t.gql(GrantShareDocument, { deviceId: bound.id, grantee: friend.email, permissions: ['LIVE_VIEW'] }, { token: key }), 'FORBIDDEN');
  expectCode(await t.gql(DevicesDocument, { first: 10 }, { token: key }), 'FORBIDDEN');
  expectCode(await t.gql(DeviceDocument, { id: bound.id }, { token: key }), 'FORBIDDEN');
});

test('a SHARES_WRITE key grants and revokes shares', async () => {
  const key = await apiKey(['SHARES_WRITE']);
  const { device } = await provisionAndBind(t, owner);
  const share = expectData(
    await t.gql(GrantShareDocument, { deviceId: device.id, grantee: friend.email, permissions: ['LIVE_VIEW'] }, { token: key }),
  ).grantShare;
  assert.equal(share.grantee.id, friend.id);
  assert.equal(expectData(await t.gql(RevokeShareDocument, { id: share.id }, { token: key })).revokeShare, true);
});

test('unbind and transfer by a DEVICES_WRITE key still need the account password', async () => {
  const key = await apiKey(['DEVICES_WRITE', 'DEVICES_READ']);
  const [{ device: one }, { device: two }, { device: three }] = await Promise.all([
    provisionAndBind(t, owner),
    provisionAndBind(t, owner),
    provisionAndBind(t, owner),
  ]);
  expectCode(await t.gql(UnbindDeviceDocument, { id: one.id, password: OTHER_STRONG_PASSWORD }, { token: key }), 'INVALID_CREDENTIALS');
  expectCode(await t.gql(TransferDeviceDocument, { id: two.id, to: heir.email, password: '' }, { token: key }), 'INVALID_CREDENTIALS');
  assert.equal(expectData(await t.gql(UnbindDeviceDocument, { id: one.id, password: owner.password }, { token: key })).unbindDevice.ok, true);
  assert.equal(expectData(await t.gql(TransferDeviceDocument, { id: two.id, to: heir.email, password: owner.password }, { token: key })).transferDevice, true);
  assert.deepEqual(
    expectData(await t.gql(UnbindDevicesDocument, { ids: [three.id], password: owner.password }, { token: key })).unbindDevices.map((r) => r.ok),
    [true],
  );
  assert.equal(expectData(await t.gql(DeviceDocument, { id: two.id }, { token: heir.token })).device?.role, 'OWNER');
});
