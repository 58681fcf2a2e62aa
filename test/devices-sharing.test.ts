import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { DeviceDocument, GrantShareDocument, RegisterDocument, RevokeShareDocument } from './generated/graphql';
import { auditOf, provisionAndBind, recordAccessEvents, registerUser, type TestUser } from './helpers/devices';
import { expectCode, expectData, startApp, STRONG_PASSWORD, testClock, uniqueEmail, waitFor, type TestApp } from './helpers/harness';

const clock = testClock();
let t: TestApp;
let owner: TestUser;
let grantee: TestUser;
let stranger: TestUser;
before(async () => {
  t = await startApp({ clock: clock.now });
  [owner, grantee, stranger] = await Promise.all([registerUser(t, 'sharer', 'Sam'), registerUser(t, 'grantee', 'Gina'), registerUser(t, 'stranger', 'Stan')]);
});
after(() => t.stop());

const future = (ms: number) => new Date(clock.now().getTime() + ms).toISOString();

describe('grantShare', () => {
  test('shares with an account by email and shows the owner only the grantee’s id, name and invite login', async () => {
    const access = await recordAccessEvents(t);
    const { device } = await provisionAndBind(t, owner, { name: 'Hall' });
    const invite = ` ${grantee.email.toUpperCase()} `;
    const share = expectData(
      await t.gql(GrantShareDocument, { deviceId: device.id, grantee: invite, permissions: ['ALARMS', 'LIVE_VIEW', 'ALARMS'] }, { token: owner.token }),
    ).grantShare;
    assert.deepEqual(share.permissions, ['LIVE_VIEW', 'ALARMS']);
    assert.equal(share.expiresAt, null);
    assert.deepEqual(share.device, { id: device.id, role: 'OWNER' });
    assert.deepEqual(share.grantee, { id: grantee.id, email: grantee.email, phone: null, displayName: 'Gina', totpEnabled: false, createdAt: share.createdAt });

    const ownerView = expectData(await t.gql(DeviceDocument, { id: device.id }, { token: owner.token })).device;
    assert.deepEqual(ownerView?.shares, [share]);
    await waitFor(() => access.events.find((e) => e.deviceId === device.id && e.userIds.includes(grantee.id)), 5000, 'device.access after grant');
    await access.stop();
    assert.equal((await auditOf(t, device.id)).at(-1)?.action, 'share.grant');
  });

  test('gives the grantee the device as SHARED with the granted permissions and only its own share', async () => {
    const other = await registerUser(t, 'other-grantee');
    const { device } = await provisionAndBind(t, owner, { name: 'Office' });
    expectData(await t.gql(GrantShareDocument, { deviceId: device.id, grantee: grantee.email, permissions: ['PLAYBACK'] }, { token: owner.token }));
    expectData(await t.gql(GrantShareDocument, { deviceId: device.id, grantee: other.email, permissions: ['LIVE_VIEW'] }, { token: owner.token }));
    const seen = expectData(await t.gql(DeviceDocument, { id: device.id }, { token: grantee.token })).device;
    assert.equal(seen?.role, 'SHARED');
    assert.deepEqual(seen?.permissions, ['PLAYBACK']);
    assert.equal(seen?.name, 'Office');
    assert.deepEqual(
      seen?.shares.map((s) => s.grantee.id),
      [grantee.id],
    );
    assert.equal(expectData(await t.gql(DeviceDocument, { id: device.id }, { token: owner.token })).device?.shares.length, 2);
  });

  test('finds the grantee by phone and shows the phone as the invite login', async () => {
    const phone = `+141555501${String(randomInt(100)).padStart(2, '0')}`;
    const reg = expectData(await t.gql(RegisterDocument, { input: { phone, password: STRONG_PASSWORD, displayName: 'Phoebe' } }));
    const { device } = await provisionAndBind(t, owner);
    const share = expectData(
      await t.gql(
        GrantShareDocument,
        { deviceId: device.id, grantee: phone.replace(/^(\+1)(\d{3})/, '$1 $2 '), permissions: ['LIVE_VIEW'] },
        { token: owner.token },
      ),
    ).grantShare;
    assert.deepEqual(share.grantee, { id: reg.register.user.id, email: null, phone, displayName: 'Phoebe', totpEnabled: false, createdAt: share.createdAt });
    assert.equal(expectData(await t.gql(DeviceDocument, { id: device.id }, { token: reg.register.accessToken })).device?.role, 'SHARED');
  });

  test('updates the existing share instead of adding one when granted again to the same person', async () => {
    const { device } = await provisionAndBind(t, owner);
    const first = expectData(
      await t.gql(GrantShareDocument, { deviceId: device.id, grantee: grantee.email, permissions: ['LIVE_VIEW'] }, { token: owner.token }),
    ).grantShare;
    const expiresAt = future(3600_000);
    const second = expectData(
      await t.gql(
        GrantShareDocument,
        { deviceId: device.id, grantee: grantee.email, permissions: ['CONFIGURE', 'PLAYBACK'], expiresAt },
        { token: owner.token },
      ),
    ).grantShare;
    assert.equal(second.id, first.id);
    assert.equal(second.createdAt, first.createdAt);
    assert.deepEqual(second.permissions, ['PLAYBACK', 'CONFIGURE']);
    assert.equal(second.expiresAt, expiresAt);
    const shares = expectData(await t.gql(DeviceDocument, { id: device.id }, { token: owner.token })).device?.shares;
    assert.equal(shares?.length, 1);
    assert.deepEqual(
      (await auditOf(t, device.id)).map((a) => a.action),
      ['device.bind', 'share.grant', 'share.update'],
    );
  });

  test('rejects bad grants with the contract’s codes', async () => {
    const { device } = await provisionAndBind(t, owner);
    const grant = (
      vars: Partial<{ deviceId: string; grantee: string; permissions: Array<'LIVE_VIEW' | 'PLAYBACK' | 'ALARMS' | 'CONFIGURE'>; expiresAt: string }>,
      token = owner.token,
    ) => t.gql(GrantShareDocument, { deviceId: device.id, grantee: grantee.email, permissions: ['LIVE_VIEW'], ...vars }, { token });
    expectCode(await grant({ grantee: uniqueEmail('nobody') }), 'NOT_FOUND');
    expectCode(await grant({ grantee: 'not a login' }), 'BAD_USER_INPUT');
    expectCode(await grant({ grantee: owner.email }), 'BAD_USER_INPUT');
    expectCode(await grant({ permissions: [] }), 'BAD_USER_INPUT');
    expectCode(await grant({ expiresAt: future(-1000) }), 'BAD_USER_INPUT');
    expectCode(await grant({ expiresAt: 'tomorrow' }), 'BAD_USER_INPUT');
    expectCode(await grant({ deviceId: '00000000-0000-4000-8000-000000000000' }), 'NOT_FOUND');
    expectCode(await grant({ deviceId: 'junk' }), 'NOT_FOUND');
    expectCode(await grant({}, stranger.token), 'NOT_FOUND');
    expectCode(await t.gql(GrantShareDocument, { deviceId: device.id, grantee: grantee.email, permissions: ['LIVE_VIEW'] }), 'UNAUTHENTICATED');
    // A grantee, even with every permission, cannot share onwards.
    expectData(await grant({ permissions: ['LIVE_VIEW', 'PLAYBACK', 'ALARMS', 'CONFIGURE'] }));
    expectCode(await grant({ grantee: stranger.email }, grantee.token), 'FORBIDDEN');
    assert.equal(expectData(await t.gql(DeviceDocument, { id: device.id }, { token: owner.token })).device?.shares.length, 1);
  });
});

describe('revokeShare', () => {
  test('ends the share when the owner revokes it or the grantee leaves', async () => {
    const { device } = await provisionAndBind(t, owner);
    const s1 = expectData(
      await t.gql(GrantShareDocument, { deviceId: device.id, grantee: grantee.email, permissions: ['LIVE_VIEW'] }, { token: owner.token }),
    ).grantShare;
    const access = await recordAccessEvents(t);
    assert.equal(expectData(await t.gql(RevokeShareDocument, { id: s1.id }, { token: owner.token })).revokeShare, true);
    assert.equal(expectData(await t.gql(DeviceDocument, { id: device.id }, { token: grantee.token })).device, null);
    await waitFor(() => access.events.find((e) => e.deviceId === device.id && e.userIds.includes(grantee.id)), 5000, 'device.access after revoke');
    await access.stop();
    expectCode(await t.gql(RevokeShareDocument, { id: s1.id }, { token: owner.token }), 'NOT_FOUND');

    const s2 = expectData(
      await t.gql(GrantShareDocument, { deviceId: device.id, grantee: grantee.email, permissions: ['LIVE_VIEW'] }, { token: owner.token }),
    ).grantShare;
    assert.notEqual(s2.id, s1.id);
    assert.equal(expectData(await t.gql(RevokeShareDocument, { id: s2.id }, { token: grantee.token })).revokeShare, true);
    assert.deepEqual(expectData(await t.gql(DeviceDocument, { id: device.id }, { token: owner.token })).device?.shares, []);
    const revokes = (await auditOf(t, device.id)).filter((a) => a.action === 'share.revoke');
    assert.deepEqual(
      revokes.map((a) => [a.actorId, (a.details as { by: string }).by]),
      [
        [owner.id, 'owner'],
        [grantee.id, 'grantee'],
      ],
    );
  });

  test('gives NOT_FOUND to a stranger, to another grantee and for unknown ids', async () => {
    const other = await registerUser(t, 'co-grantee');
    const { device } = await provisionAndBind(t, owner);
    const share = expectData(
      await t.gql(GrantShareDocument, { deviceId: device.id, grantee: grantee.email, permissions: ['LIVE_VIEW'] }, { token: owner.token }),
    ).grantShare;
    expectData(await t.gql(GrantShareDocument, { deviceId: device.id, grantee: other.email, permissions: ['LIVE_VIEW', 'CONFIGURE'] }, { token: owner.token }));
    expectCode(await t.gql(RevokeShareDocument, { id: share.id }, { token: stranger.token }), 'NOT_FOUND');
    expectCode(await t.gql(RevokeShareDocument, { id: share.id }, { token: other.token }), 'NOT_FOUND');
    expectCode(await t.gql(RevokeShareDocument, { id: 'junk' }, { token: owner.token }), 'NOT_FOUND');
    expectCode(await t.gql(RevokeShareDocument, { id: share.id }), 'UNAUTHENTICATED');
    assert.equal(expectData(await t.gql(DeviceDocument, { id: device.id }, { token: grantee.token })).device?.role, 'SHARED');
  });
});

describe('expiry', () => {
  test('an expired share grants nothing but can still be left by the grantee', async () => {
    const { device } = await provisionAndBind(t, owner);
    const share = expectData(
      await t.gql(
        GrantShareDocument,
        { deviceId: device.id, grantee: grantee.email, permissions: ['LIVE_VIEW', 'CONFIGURE'], expiresAt: future(30_000) },
        { token: owner.token },
      ),
    ).grantShare;
    assert.equal(expectData(await t.gql(DeviceDocument, { id: device.id }, { token: grantee.token })).device?.role, 'SHARED');
    clock.advance(60_000);
    assert.equal(expectData(await t.gql(DeviceDocument, { id: device.id }, { token: grantee.token })).device, null);
    assert.equal(expectData(await t.gql(RevokeShareDocument, { id: share.id }, { token: grantee.token })).revokeShare, true);
  });
});

test('gives RATE_LIMITED when an owner keeps sharing with unknown logins', async () => {
  const prober = await registerUser(t, 'prober');
  const { device } = await provisionAndBind(t, prober);
  const codes: string[] = [];
  for (let i = 0; i < 21; i++) {
    const r = await t.gql(GrantShareDocument, { deviceId: device.id, grantee: uniqueEmail('probe'), permissions: ['LIVE_VIEW'] }, { token: prober.token });
    codes.push(r.errors?.[0]?.extensions?.code ?? 'OK');
  }
  assert.deepEqual(codes, [...Array(20).fill('NOT_FOUND'), 'RATE_LIMITED']);
  // A known grantee is also refused while the budget is spent: no probing by alternating.
  expectCode(
    await t.gql(GrantShareDocument, { deviceId: device.id, grantee: grantee.email, permissions: ['LIVE_VIEW'] }, { token: prober.token }),
    'RATE_LIMITED',
  );
  // Other owners are unaffected.
  const { device: mine } = await provisionAndBind(t, owner);
  expectData(await t.gql(GrantShareDocument, { deviceId: mine.id, grantee: grantee.email, permissions: ['LIVE_VIEW'] }, { token: owner.token }));
});
