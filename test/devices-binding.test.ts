import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BindDeviceDocument, DeviceDocument, DevicesDocument, GrantShareDocument, RenameDeviceDocument } from './generated/graphql';
import {
  adminPost,
  auditOf,
  provisionAndBind,
  provisionDevice,
  recordAccessEvents,
  registerUser,
  uniqueSerial,
  wrongCode,
  type TestUser,
} from './helpers/devices';
import { expectCode, expectData, startApp, waitFor, type TestApp } from './helpers/harness';

let t: TestApp;
let owner: TestUser;
let other: TestUser;
before(async () => {
  t = await startApp();
  [owner, other] = await Promise.all([registerUser(t, 'owner', 'Olga'), registerUser(t, 'other')]);
});
after(() => t.stop());

describe('bindDevice', () => {
  test('binds the device to the caller as OWNER with every permission when the label code matches', async () => {
    const access = await recordAccessEvents(t);
    const p = await provisionDevice(t, { model: 'DS-2CD2143G2-I', channels: 1 });
    const bound = expectData(
      await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode, name: '  Front door ' }, { token: owner.token }),
    );
    const d = bound.bindDevice;
    assert.equal(d.serial, p.serial);
    assert.equal(d.name, 'Front door');
    assert.equal(d.role, 'OWNER');
    assert.deepEqual(d.permissions, ['LIVE_VIEW', 'PLAYBACK', 'ALARMS', 'CONFIGURE']);
    assert.equal(d.status, 'OFFLINE');
    assert.equal(d.lastSeenAt, null);
    assert.ok(Date.parse(d.boundAt) > 0);
    const seen = expectData(await t.gql(DeviceDocument, { id: d.id }, { token: owner.token }));
    assert.equal(seen.device?.id, d.id);
    assert.deepEqual(seen.device?.shares, []);
    const audit = await auditOf(t, d.id);
    assert.deepEqual(
      audit.map((a) => [a.action, a.actorId]),
      [['device.bind', owner.id]],
    );
    await waitFor(() => access.events.find((e) => e.deviceId === d.id), 5000, 'device.access after bind');
    assert.deepEqual(access.events.find((e) => e.deviceId === d.id)?.userIds, [owner.id]);
    await access.stop();
  });

  test('names the device after its model, else its serial, when no name is given', async () => {
    const withModel = await provisionAndBind(t, owner, { model: 'DS-7608NI-K2' });
    assert.equal(withModel.device.name, 'DS-7608NI-K2');
    // Provisioned without a model: the admin endpoint's model is optional.
    const bare = await adminPost(t, { serial: uniqueSerial('BARE') });
    const serial = bare.body.serial as string;
    const d = expectData(await t.gql(BindDeviceDocument, { serial, verificationCode: bare.body.verificationCode as string }, { token: owner.token }));
    assert.equal(d.bindDevice.name, serial);
    assert.equal(d.bindDevice.model, null);
  });

  test('accepts the label code in lower case and with spaces around it', async () => {
    const p = await provisionDevice(t);
    const d = expectData(
      await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: ` ${p.verificationCode.toLowerCase()} ` }, { token: owner.token }),
    );
    assert.equal(d.bindDevice.role, 'OWNER');
  });

  test('gives the same INVALID_VERIFICATION_CODE for an unknown serial and a wrong code', async () => {
    const caller = await registerUser(t, 'guess');
    const p = await provisionDevice(t);
    const wrong = expectCode(
      await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: wrongCode(p.verificationCode) }, { token: caller.token }),
      'INVALID_VERIFICATION_CODE',
    );
    const unknown = expectCode(
      await t.gql(BindDeviceDocument, { serial: uniqueSerial('NOPE'), verificationCode: 'ABCDEF' }, { token: caller.token }),
      'INVALID_VERIFICATION_CODE',
    );
    assert.equal(wrong.message, unknown.message);
    const malformed = expectCode(
      await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: '12345' }, { token: caller.token }),
      'INVALID_VERIFICATION_CODE',
    );
    assert.equal(malformed.message, wrong.message);
  });

  test('gives DEVICE_ALREADY_BOUND without naming the owner when another account holds the device', async () => {
    const { device, provisioned } = await provisionAndBind(t, owner, { name: 'Olga garage' });
    const res = await t.gql(BindDeviceDocument, { serial: provisioned.serial, verificationCode: provisioned.verificationCode }, { token: other.token });
    const err = expectCode(res, 'DEVICE_ALREADY_BOUND');
    for (const secret of [owner.email, owner.id, 'Olga', device.id]) assert.ok(!JSON.stringify(res).includes(secret), `leaks ${secret}`);
    assert.ok(!err.message.includes('@'));
    // A wrong code on a bound device is still just a wrong code: the bound state stays hidden.
    expectCode(
      await t.gql(BindDeviceDocument, { serial: provisioned.serial, verificationCode: wrongCode(provisioned.verificationCode) }, { token: other.token }),
      'INVALID_VERIFICATION_CODE',
    );
  });

  test('returns the same binding unchanged when the owner binds the device again', async () => {
    const { device, provisioned } = await provisionAndBind(t, owner, { name: 'Porch' });
    const again = expectData(
      await t.gql(
        BindDeviceDocument,
        { serial: provisioned.serial, verificationCode: provisioned.verificationCode, name: 'Other name' },
        { token: owner.token },
      ),
    );
    assert.deepEqual(again.bindDevice, device);
    assert.equal((await auditOf(t, device.id)).length, 1);
  });

  test('rejects malformed input with BAD_USER_INPUT and anonymous callers with UNAUTHENTICATED', async () => {
    const p = await provisionDevice(t);
    expectCode(await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode }), 'UNAUTHENTICATED');
    expectCode(await t.gql(BindDeviceDocument, { serial: 'bad serial!', verificationCode: 'ABCDEF' }, { token: owner.token }), 'BAD_USER_INPUT');
    expectCode(await t.gql(BindDeviceDocument, { serial: 'x'.repeat(65), verificationCode: 'ABCDEF' }, { token: owner.token }), 'BAD_USER_INPUT');
    expectCode(
      await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode, name: '   ' }, { token: owner.token }),
      'BAD_USER_INPUT',
    );
    expectCode(
      await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode, name: 'n'.repeat(65) }, { token: owner.token }),
      'BAD_USER_INPUT',
    );
    // None of that bound it.
    expectData(await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode }, { token: other.token }));
  });
});

describe('label code attempts', () => {
  test('gives RATE_LIMITED after 5 wrong codes from one account, whatever the serial', async () => {
    const guesser = await registerUser(t, 'guesser');
    for (let i = 0; i < 5; i++) {
      expectCode(
        await t.gql(BindDeviceDocument, { serial: uniqueSerial('GUESS'), verificationCode: 'QWERTY' }, { token: guesser.token }),
        'INVALID_VERIFICATION_CODE',
      );
    }
    const p = await provisionDevice(t);
    const limited = expectCode(
      await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode }, { token: guesser.token }),
      'RATE_LIMITED',
    );
    assert.ok((limited.extensions?.retryAfterSeconds ?? 0) > 0);
    // The device's own budget was not spent by the refused attempt: its owner binds it.
    expectData(await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode }, { token: other.token }));
  });

  test('gives RATE_LIMITED after 5 wrong codes for one device, whoever sent them', async () => {
    const [a, b] = await Promise.all([registerUser(t, 'guess-a'), registerUser(t, 'guess-b')]);
    const p = await provisionDevice(t);
    const wrong = wrongCode(p.verificationCode);
    for (const u of [a, a, a, b, b])
      expectCode(await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: wrong }, { token: u.token }), 'INVALID_VERIFICATION_CODE');
    expectCode(await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode }, { token: owner.token }), 'RATE_LIMITED');
    // Account a (3 wrong) may still bind another device.
    const q = await provisionDevice(t);
    expectData(await t.gql(BindDeviceDocument, { serial: q.serial, verificationCode: q.verificationCode }, { token: a.token }));
  });

  test('does not count right codes against the limit when an account binds many times', async () => {
    const installer = await registerUser(t, 'installer');
    const p = await provisionDevice(t);
    for (let i = 0; i < 7; i++)
      expectData(await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode }, { token: installer.token }));
  });

  test('cannot slip extra guesses past the limit when they arrive in parallel', async () => {
    const racer = await registerUser(t, 'racer');
    const p = await provisionDevice(t);
    const wrong = wrongCode(p.verificationCode);
    const results = await Promise.all(
      Array.from({ length: 12 }, () => t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: wrong }, { token: racer.token })),
    );
    const codes = results.map((r) => r.errors?.[0]?.extensions?.code);
    assert.equal(codes.filter((c) => c === 'INVALID_VERIFICATION_CODE').length, 5, JSON.stringify(codes));
    assert.equal(codes.filter((c) => c === 'RATE_LIMITED').length, 7);
  });
});

describe('device(id) and renameDevice', () => {
  test('device is null when the id is unknown, malformed or someone else’s', async () => {
    const { device } = await provisionAndBind(t, owner);
    assert.equal(expectData(await t.gql(DeviceDocument, { id: device.id }, { token: other.token })).device, null);
    assert.equal(expectData(await t.gql(DeviceDocument, { id: '00000000-0000-4000-8000-000000000000' }, { token: owner.token })).device, null);
    assert.equal(expectData(await t.gql(DeviceDocument, { id: 'not-a-uuid' }, { token: owner.token })).device, null);
    expectCode(await t.gql(DeviceDocument, { id: device.id }), 'UNAUTHENTICATED');
    expectCode(await t.gql(DevicesDocument, {}), 'UNAUTHENTICATED');
  });

  test('renames for the owner and for a grantee with CONFIGURE, and nobody else', async () => {
    const [configurer, viewer] = await Promise.all([registerUser(t, 'configurer'), registerUser(t, 'viewer')]);
    const { device } = await provisionAndBind(t, owner, { name: 'Old' });
    expectData(await t.gql(GrantShareDocument, { deviceId: device.id, grantee: configurer.email, permissions: ['CONFIGURE'] }, { token: owner.token }));
    expectData(
      await t.gql(GrantShareDocument, { deviceId: device.id, grantee: viewer.email, permissions: ['LIVE_VIEW', 'PLAYBACK', 'ALARMS'] }, { token: owner.token }),
    );

    assert.equal(expectData(await t.gql(RenameDeviceDocument, { id: device.id, name: 'By owner' }, { token: owner.token })).renameDevice.name, 'By owner');
    const byGrantee = expectData(await t.gql(RenameDeviceDocument, { id: device.id, name: ' By grantee ' }, { token: configurer.token })).renameDevice;
    assert.equal(byGrantee.name, 'By grantee');
    assert.equal(byGrantee.role, 'SHARED');
    expectCode(await t.gql(RenameDeviceDocument, { id: device.id, name: 'By viewer' }, { token: viewer.token }), 'FORBIDDEN');
    expectCode(await t.gql(RenameDeviceDocument, { id: device.id, name: 'By stranger' }, { token: other.token }), 'NOT_FOUND');
    expectCode(await t.gql(RenameDeviceDocument, { id: 'junk', name: 'x' }, { token: owner.token }), 'NOT_FOUND');
    expectCode(await t.gql(RenameDeviceDocument, { id: device.id, name: '' }, { token: owner.token }), 'BAD_USER_INPUT');
    expectCode(await t.gql(RenameDeviceDocument, { id: device.id, name: 'n'.repeat(65) }, { token: owner.token }), 'BAD_USER_INPUT');
    // The owner sees the grantee's name: there is one name per binding.
    assert.equal(expectData(await t.gql(DeviceDocument, { id: device.id }, { token: owner.token })).device?.name, 'By grantee');
    assert.deepEqual(
      (await auditOf(t, device.id)).filter((a) => a.action === 'device.rename').map((a) => a.actorId),
      [owner.id, configurer.id],
    );
  });
});
