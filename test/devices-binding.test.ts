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
    assert.match(err.message, /claimDevice/, 'points a second-hand buyer to the claim');
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
  // Its own app: sources named in X-Forwarded-For, budgets small enough to reach.
  let lt: TestApp;
  before(async () => {
    lt = await startApp({ env: { TRUST_PROXY: 'true', BIND_MAX_PER_DEVICE: '12', BIND_MAX_PER_ACCOUNT: '10', BIND_MAX_PER_SOURCE: '30', REGISTER_MAX_PER_IP: '1000' } });
  });
  after(() => lt.stop());
  let ipSeq = 0;
  const freshIp = () => `203.0.113.${++ipSeq}`;
  const bind = (app: TestApp, serial: string, code: string, token: string, ip = '198.51.100.1') =>
    app.gql(BindDeviceDocument, { serial, verificationCode: code }, { token, headers: { 'x-forwarded-for': ip } });

  test('lets the buyer bind after other accounts sent 5 wrong codes for the serial', async () => {
    // Before: 5 wrong codes on a serial, from anyone, held every account off it for 15 minutes.
    const [a, b] = await Promise.all([registerUser(t, 'guess-a'), registerUser(t, 'guess-b')]);
    const p = await provisionDevice(t);
    const wrong = wrongCode(p.verificationCode);
    for (const u of [a, a, a, b, b]) expectCode(await bind(t, p.serial, wrong, u.token), 'INVALID_VERIFICATION_CODE');
    expectData(await bind(t, p.serial, p.verificationCode, owner.token));
  });

  test('slows one account on one device after 5 wrong codes, checking the 6th, without holding others back', async () => {
    const guesser = await registerUser(lt, 'guesser');
    const buyer = await registerUser(lt, 'buyer');
    const p = await provisionDevice(lt);
    const ip = freshIp();
    for (let i = 0; i < 6; i++) expectCode(await bind(lt, p.serial, wrongCode(p.verificationCode), guesser.token, ip), 'INVALID_VERIFICATION_CODE');
    const limited = expectCode(await bind(lt, p.serial, p.verificationCode, guesser.token, ip), 'RATE_LIMITED');
    const wait = limited.extensions?.retryAfterSeconds ?? 0;
    assert.ok(wait >= 1 && wait <= 60, `first wait ${wait}s`);
    expectData(await bind(lt, p.serial, p.verificationCode, buyer.token, freshIp()));
  });

  test('gives RATE_LIMITED when one account spends its daily budget across devices, and spends no device budget', async () => {
    const guesser = await registerUser(lt, 'sprayer');
    const ip = freshIp();
    for (let i = 0; i < 10; i++) expectCode(await bind(lt, uniqueSerial('GUESS'), 'QWERTY', guesser.token, ip), 'INVALID_VERIFICATION_CODE');
    const p = await provisionDevice(lt);
    const limited = expectCode(await bind(lt, p.serial, p.verificationCode, guesser.token, ip), 'RATE_LIMITED');
    assert.ok((limited.extensions?.retryAfterSeconds ?? 0) > 0);
    const buyer = await registerUser(lt, 'buyer');
    expectData(await bind(lt, p.serial, p.verificationCode, buyer.token, freshIp()));
  });

  test('limits one source failing across accounts, and leaves other sources alone', async () => {
    const users = await Promise.all([1, 2, 3, 4].map((i) => registerUser(lt, `nat-${i}`)));
    const ip = freshIp();
    const p = await provisionDevice(lt);
    let limited = false;
    for (let i = 0; i < 31 && !limited; i++) {
      const r = await bind(lt, uniqueSerial('SPRAY'), 'QWERTY', users[i % 4]!.token, ip);
      if (r.errors?.[0]?.extensions?.code === 'RATE_LIMITED') limited = true;
      else expectCode(r, 'INVALID_VERIFICATION_CODE');
    }
    assert.ok(limited, 'no RATE_LIMITED after 31 failures from one source');
    expectData(await bind(lt, p.serial, p.verificationCode, users[0]!.token, freshIp()));
  });

  test('past a device\'s daily ceiling of wrong codes, leaves each account and source 3 guesses, so strangers cannot lock the buyer out', async () => {
    const p = await provisionDevice(lt);
    const wrong = wrongCode(p.verificationCode);
    for (let u = 0; u < 3; u++) {
      const guesser = await registerUser(lt, `ring-${u}`);
      const ip = freshIp();
      for (let i = 0; i < 4; i++) expectCode(await bind(lt, p.serial, wrong, guesser.token, ip), 'INVALID_VERIFICATION_CODE');
    }
    // The ceiling (12 here) is reached. A new guesser gets its 3 grace guesses, then is held off,
    // even with the right code (it is not checked).
    const late = await registerUser(lt, 'ring-late');
    const lateIp = freshIp();
    for (let i = 0; i < 3; i++) expectCode(await bind(lt, p.serial, wrong, late.token, lateIp), 'INVALID_VERIFICATION_CODE');
    expectCode(await bind(lt, p.serial, p.verificationCode, late.token, lateIp), 'RATE_LIMITED');
    // A new account from that source, or that account from a new source, is held off too.
    expectCode(await bind(lt, p.serial, wrong, (await registerUser(lt, 'ring-later')).token, lateIp), 'RATE_LIMITED');
    expectCode(await bind(lt, p.serial, wrong, late.token, freshIp()), 'RATE_LIMITED');
    // The buyer, from their own account and network, binds with the code on the label.
    const buyer = await registerUser(lt, 'late-buyer');
    expectData(await bind(lt, p.serial, p.verificationCode, buyer.token, freshIp()));
  });

  test('does not count right codes against the limit when an account binds many times', async () => {
    const installer = await registerUser(t, 'installer');
    const p = await provisionDevice(t);
    for (let i = 0; i < 7; i++) expectData(await bind(t, p.serial, p.verificationCode, installer.token));
  });

  test('cannot slip extra guesses past the delay when they arrive in parallel', async () => {
    const racer = await registerUser(lt, 'racer');
    const p = await provisionDevice(lt);
    const wrong = wrongCode(p.verificationCode);
    const ip = freshIp();
    const results = await Promise.all(Array.from({ length: 12 }, () => bind(lt, p.serial, wrong, racer.token, ip)));
    const codes = results.map((r) => r.errors?.[0]?.extensions?.code);
    // 5 free guesses and the first delayed one are checked; the rest wait.
    assert.equal(codes.filter((c) => c === 'INVALID_VERIFICATION_CODE').length, 6, JSON.stringify(codes));
    assert.equal(codes.filter((c) => c === 'RATE_LIMITED').length, 6);
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
