import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { eq, inArray } from 'drizzle-orm';
import { tables } from '../src/db/index';
import {
  BindDeviceDocument,
  DeviceDocument,
  DevicesDocument,
  GrantShareDocument,
  TransferDeviceDocument,
  UnbindDeviceDocument,
  UnbindDevicesDocument,
} from './generated/graphql';
import {
  auditOf,
  countStatements,
  openBindings,
  outboxFor,
  provisionAndBind,
  provisionDevice,
  recordAccessEvents,
  recordingCommands,
  registerUser,
  seedBoundDevices,
  type TestUser,
} from './helpers/devices';
import { expectCode, expectData, hasPostgres, OTHER_STRONG_PASSWORD, startApp, testClock, waitFor, type TestApp } from './helpers/harness';

const clock = testClock();
const commands = recordingCommands();
let t: TestApp;
let owner: TestUser;
let newOwner: TestUser;
let grantee: TestUser;
let lapsed: TestUser;
let stranger: TestUser;
before(async () => {
  t = await startApp({ clock: clock.now, deviceCommands: commands, env: { LOGIN_MAX_PER_ACCOUNT: '3', HTTP_RATE_PER_TOKEN: '5000' } });
  [owner, newOwner, grantee, lapsed, stranger] = await Promise.all([
    registerUser(t, 'unbinder', 'Una'),
    registerUser(t, 'heir', 'Hal'),
    registerUser(t, 'guest', 'Gus'),
    registerUser(t, 'lapsed'),
    registerUser(t, 'stranger'),
  ]);
});
after(() => t.stop());

const share = async (deviceId: string, to: TestUser, expiresAt?: string) =>
  expectData(
    await t.gql(GrantShareDocument, { deviceId, grantee: to.email, permissions: ['LIVE_VIEW', 'ALARMS', 'CONFIGURE'], expiresAt }, { token: owner.token }),
  ).grantShare;
const visible = async (deviceId: string, user: TestUser) => expectData(await t.gql(DeviceDocument, { id: deviceId }, { token: user.token })).device;

describe('unbindDevice', () => {
  test('unbinds, ends the shares, notifies, audits and keeps the device provisioned when the owner confirms with the password', async () => {
    const { device, provisioned } = await provisionAndBind(t, owner, { name: 'Back yard' });
    await share(device.id, grantee);
    await share(device.id, lapsed, new Date(clock.now().getTime() + 30_000).toISOString());
    clock.advance(60_000); // lapsed's share expires: it ended before the unbind
    const access = await recordAccessEvents(t);

    const result = expectData(await t.gql(UnbindDeviceDocument, { id: device.id, password: owner.password }, { token: owner.token })).unbindDevice;
    assert.deepEqual(result, { deviceId: device.id, ok: true, error: null, revokedShares: 1 });

    assert.equal(await visible(device.id, owner), null);
    assert.equal(await visible(device.id, grantee), null);
    assert.ok(!expectData(await t.gql(DevicesDocument, { first: 100 }, { token: owner.token })).devices.edges.some((e) => e.node.id === device.id));
    const [binding] = await t.app.db.db.select().from(tables.bindings).where(eq(tables.bindings.deviceId, device.id));
    assert.equal(binding?.endedBy, owner.id);
    assert.equal(binding?.endReason, 'unbind');
    assert.ok(binding?.endedAt);
    const shares = await t.app.db.db.select().from(tables.shares).where(eq(tables.shares.deviceId, device.id));
    assert.ok(shares.length === 2 && shares.every((s) => s.revokedAt));

    const audit = (await auditOf(t, device.id)).at(-1)!;
    assert.equal(audit.action, 'device.unbind');
    assert.equal(audit.actorId, owner.id);
    assert.deepEqual(audit.details, { bindingId: binding!.id, revokedShares: 1 });

    const ownerMail = (await outboxFor(t, owner.email)).filter((m) => m.kind === 'device-unbound');
    assert.equal(ownerMail.length, 1);
    assert.match(ownerMail[0]!.body, new RegExp(`Back yard \\(${provisioned.serial}\\)`));
    assert.match(ownerMail[0]!.body, /can be bound again with the code on its label/);
    assert.equal((await outboxFor(t, grantee.email)).filter((m) => m.kind === 'share-ended').length, 1);
    assert.equal((await outboxFor(t, lapsed.email)).filter((m) => m.kind === 'share-ended').length, 0);

    const event = await waitFor(() => access.events.find((e) => e.deviceId === device.id), 5000, 'device.access after unbind');
    assert.deepEqual(new Set(event.userIds), new Set([owner.id, grantee.id]));
    await access.stop();
    assert.ok(commands.unbinds.includes(device.id));

    // Still provisioned: anyone with the label code binds it afresh, without the old shares.
    const again = expectData(
      await t.gql(BindDeviceDocument, { serial: provisioned.serial, verificationCode: provisioned.verificationCode }, { token: newOwner.token }),
    ).bindDevice;
    assert.equal(again.id, device.id);
    assert.equal(again.role, 'OWNER');
    assert.deepEqual((await visible(device.id, newOwner))?.shares, []);
    assert.equal(await visible(device.id, grantee), null);
  });

  test('gives INVALID_CREDENTIALS and changes nothing when the password is wrong, then RATE_LIMITED', async () => {
    const user = await registerUser(t, 'fumbler');
    const { device } = await provisionAndBind(t, user);
    for (let i = 0; i < 3; i++)
      expectCode(await t.gql(UnbindDeviceDocument, { id: device.id, password: OTHER_STRONG_PASSWORD }, { token: user.token }), 'INVALID_CREDENTIALS');
    const limited = expectCode(await t.gql(UnbindDeviceDocument, { id: device.id, password: user.password }, { token: user.token }), 'RATE_LIMITED');
    assert.ok((limited.extensions?.retryAfterSeconds ?? 0) > 0);
    expectCode(await t.gql(UnbindDevicesDocument, { ids: [device.id], password: user.password }, { token: user.token }), 'RATE_LIMITED');
    expectCode(await t.gql(TransferDeviceDocument, { id: device.id, to: owner.email, password: user.password }, { token: user.token }), 'RATE_LIMITED');
    assert.equal((await visible(device.id, user))?.role, 'OWNER');
  });

  test('gives FORBIDDEN to a grantee and NOT_FOUND to a stranger or for unknown ids', async () => {
    const { device } = await provisionAndBind(t, owner);
    await share(device.id, grantee);
    expectCode(await t.gql(UnbindDeviceDocument, { id: device.id, password: grantee.password }, { token: grantee.token }), 'FORBIDDEN');
    expectCode(await t.gql(UnbindDeviceDocument, { id: device.id, password: stranger.password }, { token: stranger.token }), 'NOT_FOUND');
    expectCode(
      await t.gql(UnbindDeviceDocument, { id: '00000000-0000-4000-8000-000000000000', password: owner.password }, { token: owner.token }),
      'NOT_FOUND',
    );
    expectCode(await t.gql(UnbindDeviceDocument, { id: 'junk', password: owner.password }, { token: owner.token }), 'NOT_FOUND');
    expectCode(await t.gql(UnbindDeviceDocument, { id: device.id, password: owner.password }), 'UNAUTHENTICATED');
    assert.equal((await visible(device.id, grantee))?.role, 'SHARED');
  });
});

describe('unbindDevices', () => {
  test('reports one result per id in order, unbinding duplicates once, with one password check', async () => {
    const [a, b] = await Promise.all([provisionAndBind(t, owner, { name: 'Bulk A' }), provisionAndBind(t, owner, { name: 'Bulk B' })]);
    const { device: theirs } = await provisionAndBind(t, stranger);
    const { device: sharedWithOwner } = await provisionAndBind(t, newOwner);
    expectData(await t.gql(GrantShareDocument, { deviceId: sharedWithOwner.id, grantee: owner.email, permissions: ['LIVE_VIEW'] }, { token: newOwner.token }));
    await share(a.device.id, grantee);
    const before = (await outboxFor(t, owner.email)).length;

    const ids = [a.device.id, sharedWithOwner.id, theirs.id, 'junk', b.device.id, a.device.id];
    const results = expectData(await t.gql(UnbindDevicesDocument, { ids, password: owner.password }, { token: owner.token })).unbindDevices;
    assert.deepEqual(results, [
      { deviceId: a.device.id, ok: true, error: null, revokedShares: 1 },
      { deviceId: sharedWithOwner.id, ok: false, error: 'FORBIDDEN', revokedShares: 0 },
      { deviceId: theirs.id, ok: false, error: 'NOT_FOUND', revokedShares: 0 },
      { deviceId: 'junk', ok: false, error: 'NOT_FOUND', revokedShares: 0 },
      { deviceId: b.device.id, ok: true, error: null, revokedShares: 0 },
      { deviceId: a.device.id, ok: true, error: null, revokedShares: 0 },
    ]);
    assert.equal((await visible(theirs.id, stranger))?.role, 'OWNER');
    assert.equal((await visible(sharedWithOwner.id, owner))?.role, 'SHARED');
    // One notice for the batch, naming both devices.
    const notices = (await outboxFor(t, owner.email)).slice(before).filter((m) => m.kind === 'device-unbound');
    assert.equal(notices.length, 1);
    assert.match(notices[0]!.body, /Bulk A[\s\S]*Bulk B/);
  });

  test('gives BAD_USER_INPUT for more than 100 ids or none, and INVALID_CREDENTIALS for the whole batch', async () => {
    const { device } = await provisionAndBind(t, owner);
    expectCode(
      await t.gql(UnbindDevicesDocument, { ids: Array.from({ length: 101 }, () => device.id), password: owner.password }, { token: owner.token }),
      'BAD_USER_INPUT',
    );
    expectCode(await t.gql(UnbindDevicesDocument, { ids: [], password: owner.password }, { token: owner.token }), 'BAD_USER_INPUT');
    expectCode(await t.gql(UnbindDevicesDocument, { ids: [device.id], password: 'wrong-password' }, { token: owner.token }), 'INVALID_CREDENTIALS');
    assert.equal((await visible(device.id, owner))?.role, 'OWNER');
  });

  test('unbinds 100 devices in one call', async () => {
    const user = await registerUser(t, 'fleet');
    const seeded = await seedBoundDevices(t, user.id, 100, { start: new Date(clock.now().getTime() - 60_000) });
    await Promise.all(
      seeded
        .slice(0, 20)
        .map(async (d) =>
          expectData(await t.gql(GrantShareDocument, { deviceId: d.id, grantee: grantee.email, permissions: ['LIVE_VIEW'] }, { token: user.token })),
        ),
    );
    const started = performance.now();
    const run = await countStatements(t, () => t.gql(UnbindDevicesDocument, { ids: seeded.map((d) => d.id), password: user.password }, { token: user.token }));
    const ms = performance.now() - started;
    const results = expectData(run.result).unbindDevices;
    assert.equal(results.length, 100);
    assert.ok(results.every((r, i) => r.ok && r.deviceId === seeded[i]!.id));
    assert.equal(
      results.reduce((n, r) => n + r.revokedShares, 0),
      20,
    );
    assert.deepEqual(
      await openBindings(
        t,
        seeded.map((d) => d.id),
      ),
      [],
    );
    console.log(
      `# unbindDevices(100 ids, 20 shares) on ${t.app.db.kind}: ${ms.toFixed(0)} ms over HTTP, ${run.statements.length} SQL statements (argon2 step-up included)`,
    );
  });
});

describe('transferDevice', () => {
  test('hands the device over in one step, ends the shares and notifies both accounts', async () => {
    const { device, provisioned } = await provisionAndBind(t, owner, { name: 'Mum’s bedroom', model: 'DS-2CD1023G0-I' });
    await share(device.id, grantee);
    const access = await recordAccessEvents(t);
    const sent = commands.unbinds.length;
    clock.advance(1000);

    assert.equal(
      expectData(await t.gql(TransferDeviceDocument, { id: device.id, to: newOwner.email, password: owner.password }, { token: owner.token })).transferDevice,
      true,
    );

    assert.equal(await visible(device.id, owner), null);
    assert.equal(await visible(device.id, grantee), null);
    const theirs = await visible(device.id, newOwner);
    assert.equal(theirs?.role, 'OWNER');
    assert.equal(theirs?.name, 'DS-2CD1023G0-I', 'the old owner’s name for the device does not travel');
    assert.ok(Date.parse(theirs!.boundAt) > Date.parse(device.boundAt));
    assert.deepEqual(theirs?.shares, []);

    assert.equal((await outboxFor(t, owner.email)).filter((m) => m.kind === 'device-transferred-out').length, 1);
    const incoming = (await outboxFor(t, newOwner.email)).filter((m) => m.kind === 'device-transferred-in');
    assert.equal(incoming.length, 1);
    assert.ok(incoming[0]!.body.includes(provisioned.serial));
    assert.ok(!incoming[0]!.body.includes(owner.email) && !incoming[0]!.body.includes('bedroom'));
    assert.ok((await outboxFor(t, grantee.email)).some((m) => m.kind === 'share-ended' && m.body.includes('transferred')));

    const audit = (await auditOf(t, device.id)).at(-1)!;
    assert.equal(audit.action, 'device.transfer');
    assert.equal((audit.details as { toUserId: string }).toUserId, newOwner.id);
    assert.equal(commands.unbinds.length, sent + 1);
    // The share's own event may still be arriving through Redis: wait for the transfer's (it names the new owner).
    const event = await waitFor(() => access.events.find((e) => e.deviceId === device.id && e.userIds.includes(newOwner.id)), 5000, 'device.access after transfer');
    assert.deepEqual(new Set(event.userIds), new Set([owner.id, newOwner.id, grantee.id]));
    await access.stop();
  });

  test('rejects transfers with the contract’s codes and changes nothing', async () => {
    const { device } = await provisionAndBind(t, owner);
    await share(device.id, grantee);
    const transfer = (to: string, user: TestUser = owner, password = user.password) =>
      t.gql(TransferDeviceDocument, { id: device.id, to, password }, { token: user.token });
    expectCode(await transfer('nobody@example.com'), 'NOT_FOUND');
    expectCode(await transfer(owner.email), 'BAD_USER_INPUT');
    expectCode(await transfer('not-a-login'), 'BAD_USER_INPUT');
    expectCode(await transfer(newOwner.email, owner, 'wrong-password'), 'INVALID_CREDENTIALS');
    expectCode(await transfer(newOwner.email, grantee), 'FORBIDDEN');
    expectCode(await transfer(newOwner.email, stranger), 'NOT_FOUND');
    expectCode(await t.gql(TransferDeviceDocument, { id: 'junk', to: newOwner.email, password: owner.password }, { token: owner.token }), 'NOT_FOUND');
    assert.equal((await visible(device.id, owner))?.role, 'OWNER');
    assert.equal((await visible(device.id, grantee))?.role, 'SHARED');
  });
});

describe(`concurrency (${hasPostgres ? 'Postgres' : 'PGlite'})`, () => {
  test('two parallel unbinds of one device leave exactly one ok', async () => {
    const { device } = await provisionAndBind(t, owner);
    const results = await Promise.all([0, 1].map(() => t.gql(UnbindDeviceDocument, { id: device.id, password: owner.password }, { token: owner.token })));
    const oks = results.filter((r) => r.data?.unbindDevice.ok);
    assert.equal(oks.length, 1, JSON.stringify(results));
    expectCode(
      results.find((r) => !r.data)!,
      'NOT_FOUND',
    );
    assert.equal((await auditOf(t, device.id)).filter((a) => a.action === 'device.unbind').length, 1);
  });

  test('overlapping bulk unbinds in opposite orders neither deadlock nor unbind twice', async () => {
    const user = await registerUser(t, 'overlap');
    const seeded = (await seedBoundDevices(t, user.id, 30)).map((d) => d.id);
    const [x, y] = await Promise.all([
      t.gql(UnbindDevicesDocument, { ids: seeded.slice(0, 20), password: user.password }, { token: user.token }),
      t.gql(UnbindDevicesDocument, { ids: seeded.slice(10).reverse(), password: user.password }, { token: user.token }),
    ]);
    const all = [...expectData(x).unbindDevices, ...expectData(y).unbindDevices];
    for (const id of seeded) assert.equal(all.filter((r) => r.deviceId === id && r.ok).length, 1, id);
    assert.equal(all.filter((r) => !r.ok).length, 10);
    assert.ok(all.filter((r) => !r.ok).every((r) => r.error === 'NOT_FOUND'));
  });

  test('an unbind racing a bind by someone else ends in one consistent state', async () => {
    const racer = await registerUser(t, 'racer');
    const p = await provisionDevice(t);
    for (let round = 0; round < 3; round++) {
      const bound = expectData(await t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode }, { token: owner.token })).bindDevice;
      const [unbind, bind] = await Promise.all([
        t.gql(UnbindDeviceDocument, { id: bound.id, password: owner.password }, { token: owner.token }),
        t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode }, { token: racer.token }),
      ]);
      assert.equal(expectData(unbind).unbindDevice.ok, true);
      const open = await openBindings(t, [bound.id]);
      if (bind.data) {
        assert.deepEqual(
          open.map((b) => b.ownerId),
          [racer.id],
        );
        assert.equal((await visible(bound.id, racer))?.role, 'OWNER');
        expectData(await t.gql(UnbindDeviceDocument, { id: bound.id, password: racer.password }, { token: racer.token }));
      } else {
        expectCode(bind, 'DEVICE_ALREADY_BOUND');
        assert.deepEqual(open, []);
      }
    }
  });

  test('two accounts binding one device at once: exactly one gets it', async () => {
    const p = await provisionDevice(t);
    const results = await Promise.all(
      [owner, stranger].map((u) => t.gql(BindDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode }, { token: u.token })),
    );
    assert.equal(results.filter((r) => r.data?.bindDevice).length, 1);
    expectCode(
      results.find((r) => !r.data)!,
      'DEVICE_ALREADY_BOUND',
    );
    const id = results.find((r) => r.data)!.data!.bindDevice.id;
    assert.equal((await openBindings(t, [id])).length, 1);
  });

  test('a transfer racing an unbind of the same device: exactly one happens', async () => {
    const { device } = await provisionAndBind(t, owner);
    const [transfer, unbind] = await Promise.all([
      t.gql(TransferDeviceDocument, { id: device.id, to: newOwner.email, password: owner.password }, { token: owner.token }),
      t.gql(UnbindDeviceDocument, { id: device.id, password: owner.password }, { token: owner.token }),
    ]);
    const transferred = transfer.data?.transferDevice === true;
    const unbound = unbind.data?.unbindDevice.ok === true;
    assert.ok(transferred !== unbound, JSON.stringify({ transfer, unbind }));
    const open = await openBindings(t, [device.id]);
    assert.deepEqual(
      open.map((b) => b.ownerId),
      transferred ? [newOwner.id] : [],
    );
    const ended = await t.app.db.db
      .select()
      .from(tables.bindings)
      .where(inArray(tables.bindings.deviceId, [device.id]));
    assert.equal(ended.filter((b) => b.endedAt).length, 1);
  });
});
