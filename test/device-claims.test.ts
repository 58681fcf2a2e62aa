import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { and, eq, sql } from 'drizzle-orm';
import { tables } from '../src/db/index';
import { BIND_LIMITS } from '../src/devices/catalog/device.service';
import {
  AlarmIdsDocument,
  BindDeviceDocument,
  CancelClaimDocument,
  ClaimDeviceDocument,
  DeviceClaimsDocument,
  DeviceDocument,
  GrantShareDocument,
  TransferDeviceDocument,
  UnbindDeviceDocument,
  type ClaimFieldsFragment,
} from './generated/graphql';
import { alertXml, isapiPost } from './helpers/alarms-fixtures';
import {
  auditOf,
  openBindings,
  outboxFor,
  provisionAndBind,
  provisionDevice,
  recordAccessEvents,
  recordingCommands,
  registerUser,
  wrongCode,
  type Provisioned,
  type TestUser,
} from './helpers/devices';
import { expectCode, expectData, freshDatabase, hasPostgres, startApp, testClock, waitFor, type GqlResult, type TestApp } from './helpers/harness';

const WINDOW_S = 90;
const clock = testClock();
const commands = recordingCommands();
const env = { RECLAIM_WINDOW_S: String(WINDOW_S), HTTP_RATE_PER_TOKEN: '5000', REGISTER_MAX_PER_IP: '100' };
let t: TestApp;
let owner: TestUser;
let claimant: TestUser;
let rival: TestUser;
let grantee: TestUser;
let heir: TestUser;
let stranger: TestUser;
/** Everything the claimant side was shown (answers and errors), checked for the owner's identity at the end. */
const seenByClaimants: unknown[] = [];
/** Everything the owner side was shown, checked for the claimant's identity at the end. */
const seenByOwners: unknown[] = [];

before(async () => {
  t = await startApp({ clock: clock.now, deviceCommands: commands, env });
  [owner, claimant, rival, grantee, heir, stranger] = await Promise.all([
    registerUser(t, 'olga', 'Olga Owner'),
    registerUser(t, 'carl', 'Carl Claimant'),
    registerUser(t, 'rita', 'Rita Rival'),
    registerUser(t, 'gus', 'Gus Grantee'),
    registerUser(t, 'hal', 'Hal Heir'),
    registerUser(t, 'sam', 'Sam Stranger'),
  ]);
});
after(() => t.stop());

const OWNER_NAME = 'Olga porch camera';

function seen<T>(list: unknown[], result: GqlResult<T>): GqlResult<T> {
  list.push(result.data ?? null, result.errors ?? null);
  return result;
}
const claim = async (user: TestUser, p: Provisioned, code = p.verificationCode) =>
  seen(user === owner || user === heir ? seenByOwners : seenByClaimants, await t.gql(ClaimDeviceDocument, { serial: p.serial, verificationCode: code }, { token: user.token }));
const claimsOf = async (user: TestUser): Promise<ClaimFieldsFragment[]> =>
  expectData(seen(user === claimant || user === rival ? seenByClaimants : seenByOwners, await t.gql(DeviceClaimsDocument, {}, { token: user.token }))).deviceClaims;
const claimOf = async (user: TestUser, id: string) => (await claimsOf(user)).find((c) => c.id === id);
const cancel = async (user: TestUser, id: string) => t.gql(CancelClaimDocument, { id }, { token: user.token });
const visible = async (deviceId: string, user: TestUser) => expectData(await t.gql(DeviceDocument, { id: deviceId }, { token: user.token })).device;
const share = async (deviceId: string, to: TestUser) =>
  expectData(await t.gql(GrantShareDocument, { deviceId, grantee: to.email, permissions: ['LIVE_VIEW', 'ALARMS'] }, { token: owner.token }));
const kinds = async (user: TestUser) => (await outboxFor(t, user.email)).map((m) => m.kind);
/** Moves the shared clock past the window and runs one completion round (as the worker would). */
async function windowPasses() {
  clock.advance((WINDOW_S + 1) * 1000);
  await t.app.services.claims.completeDue();
}
const alarmIdsOf = async (user: TestUser, deviceId: string) =>
  expectData(await t.gql(AlarmIdsDocument, { first: 100, filter: { deviceIds: [deviceId] } }, { token: user.token })).alarms.edges.map((e) => e.node.id);
const sameIds = (a: string[], b: string[]) => a.length === b.length && a.every((x) => b.includes(x));
async function raise(p: Provisioned, deviceId: string, channel: number): Promise<string> {
  const res = await isapiPost(t.url, p.ingestPath, alertXml({ eventType: 'VMD', channel }), 'application/xml');
  assert.equal(res.status, 200);
  const row = await waitFor(async () => {
    const [r] = await t.app.db.db
      .select({ id: tables.alarms.id })
      .from(tables.alarms)
      .where(and(eq(tables.alarms.deviceId, deviceId), eq(tables.alarms.channel, channel)))
      .limit(1);
    return r;
  });
  return row.id;
}

describe('claimDevice', () => {
  test('answers INVALID_VERIFICATION_CODE alike for a wrong code and an unknown serial, and counts them toward bindDevice limits', async () => {
    const guesser = await registerUser(t, 'guesser');
    const { provisioned } = await provisionAndBind(t, owner);
    const wrong = expectCode(await t.gql(ClaimDeviceDocument, { serial: provisioned.serial, verificationCode: wrongCode(provisioned.verificationCode) }, { token: guesser.token }), 'INVALID_VERIFICATION_CODE');
    const unknown = expectCode(await t.gql(ClaimDeviceDocument, { serial: 'DS-NO-SUCH-SERIAL-1', verificationCode: 'ABCDEF' }, { token: guesser.token }), 'INVALID_VERIFICATION_CODE');
    assert.equal(wrong.message, unknown.message);
    // Different serials, so only the account's daily budget (not the per-device delay) runs out.
    for (let i = 2; i < BIND_LIMITS.bindPerAccount; i++) {
      expectCode(await t.gql(ClaimDeviceDocument, { serial: `DS-NO-SUCH-SERIAL-X${i}`, verificationCode: 'ABCDEF' }, { token: guesser.token }), 'INVALID_VERIFICATION_CODE');
    }
    // The claim guesses used up the account's bind budget: bindDevice is limited too, and so is claimDevice.
    expectCode(await t.gql(BindDeviceDocument, { serial: 'DS-NO-SUCH-SERIAL-2', verificationCode: 'ABCDEF', name: null }, { token: guesser.token }), 'RATE_LIMITED');
    expectCode(await t.gql(ClaimDeviceDocument, { serial: 'DS-NO-SUCH-SERIAL-3', verificationCode: 'ABCDEF' }, { token: guesser.token }), 'RATE_LIMITED');
    assert.deepEqual(expectData(await t.gql(DeviceClaimsDocument, {}, { token: guesser.token })).deviceClaims, []);
    assert.deepEqual(await kinds(owner), [], 'a wrong code tells the owner nothing');
  });

  test('refuses anonymous callers and malformed arguments', async () => {
    expectCode(await t.gql(ClaimDeviceDocument, { serial: 'DS-1', verificationCode: 'ABCDEF' }), 'UNAUTHENTICATED');
    expectCode(await t.gql(CancelClaimDocument, { id: '00000000-0000-4000-8000-000000000000' }), 'UNAUTHENTICATED');
    expectCode(await t.gql(DeviceClaimsDocument, {}), 'UNAUTHENTICATED');
    expectCode(await t.gql(ClaimDeviceDocument, { serial: 'x'.repeat(500), verificationCode: 'ABCDEF' }, { token: stranger.token }), 'BAD_USER_INPUT');
    expectCode(await cancel(stranger, 'x'.repeat(500)), 'BAD_USER_INPUT');
  });

  test('binds a device that is not bound at once (COMPLETED) when the caller holds its code', async () => {
    const p = await provisionDevice(t);
    const c = expectData(await claim(claimant, p)).claimDevice;
    assert.equal(c.status, 'COMPLETED');
    assert.equal(c.mine, true);
    assert.equal(c.serial, p.serial);
    assert.equal(c.device?.role, 'OWNER');
    assert.equal(c.completesAt, c.createdAt);
    assert.deepEqual(
      (await openBindings(t, [c.device!.id])).map((b) => b.ownerId),
      [claimant.id],
    );
    // The caller's own device cannot be claimed.
    expectCode(await claim(claimant, p), 'BAD_USER_INPUT');
  });

  test('tells the owner at once and lets them refuse; a refused claimant is blocked from that device for 30 days', async () => {
    const { device, provisioned: p } = await provisionAndBind(t, owner, { name: OWNER_NAME });
    await share(device.id, grantee);
    const made = expectData(await claim(claimant, p)).claimDevice;
    assert.equal(made.status, 'PENDING');
    assert.equal(made.mine, true);
    assert.equal(made.device, null, 'the claimant sees no device while the claim is pending');
    assert.equal(new Date(made.completesAt).getTime() - new Date(made.createdAt).getTime(), WINDOW_S * 1000);
    // Claiming again while pending is the same claim.
    assert.equal(expectData(await claim(claimant, p)).claimDevice.id, made.id);

    // The owner: told at once by mail, and in deviceClaims, with full use of the device meanwhile.
    const theirs = await claimOf(owner, made.id);
    assert.equal(theirs?.mine, false);
    assert.equal(theirs?.status, 'PENDING');
    assert.equal(theirs?.completesAt, made.completesAt);
    assert.equal(theirs?.device?.id, device.id);
    assert.equal(theirs?.device?.name, OWNER_NAME);
    assert.equal((await visible(device.id, owner))?.role, 'OWNER');
    const [notice, ...more] = (await outboxFor(t, owner.email)).filter((m) => m.kind === 'device-claim-made');
    assert.equal(more.length, 0);
    assert.ok(notice!.body.includes(made.completesAt), 'says when the claim completes');
    assert.ok(notice!.body.includes(`cancelClaim(id: "${made.id}")`), 'says how to refuse');
    assert.ok(notice!.body.includes(p.serial));

    // One pending claim per device; nobody but the two parties may touch it.
    const second = expectCode(await claim(rival, p), 'DEVICE_ALREADY_BOUND');
    assert.doesNotMatch(second.message, /olga|Olga/);
    expectCode(await claim(owner, p), 'BAD_USER_INPUT');
    expectCode(await cancel(stranger, made.id), 'NOT_FOUND');
    expectCode(await cancel(grantee, made.id), 'NOT_FOUND');
    expectCode(await cancel(rival, '00000000-0000-4000-8000-000000000000'), 'NOT_FOUND');
    expectCode(await cancel(rival, 'not-an-id'), 'NOT_FOUND');
    assert.equal((await claimsOf(grantee)).length, 0);
    assert.equal((await claimsOf(stranger)).length, 0);

    // The owner refuses.
    assert.equal(expectData(await cancel(owner, made.id)).cancelClaim, true);
    assert.equal(expectData(await cancel(owner, made.id)).cancelClaim, false, 'already ended');
    assert.equal(expectData(await cancel(claimant, made.id)).cancelClaim, false, 'already ended');
    assert.equal((await claimOf(claimant, made.id))?.status, 'CANCELLED');
    assert.equal((await claimOf(owner, made.id))?.status, 'CANCELLED');
    assert.ok((await kinds(claimant)).includes('device-claim-refused'));
    assert.equal((await auditOf(t, device.id)).at(-1)?.action, 'device.claim.refused');
    assert.equal((await visible(device.id, owner))?.role, 'OWNER');
    assert.equal((await visible(device.id, grantee))?.role, 'SHARED', 'a refused claim changes nothing');

    // Blocked for 30 days (the refusal aged in the database: the tokens would not survive the clock).
    const blocked = expectCode(await claim(claimant, p), 'DEVICE_ALREADY_BOUND');
    assert.match(blocked.message, /refused/);
    const age = async (days: number) =>
      t.app.db.db
        .update(tables.deviceClaims)
        .set({ endedAt: sql`${tables.deviceClaims.endedAt} - make_interval(days => ${days})` })
        .where(eq(tables.deviceClaims.id, made.id));
    await age(29);
    expectCode(await claim(claimant, p), 'DEVICE_ALREADY_BOUND');
    // Another claimant is not blocked by someone else's refusal, but the claim is pending only once.
    const rivals = expectData(await claim(rival, p)).claimDevice;
    assert.equal(rivals.status, 'PENDING');
    assert.equal(expectData(await cancel(rival, rivals.id)).cancelClaim, true, 'the claimant withdraws');
    assert.ok((await kinds(owner)).includes('device-claim-withdrawn'));
    await age(2);
    const again = expectData(await claim(claimant, p)).claimDevice;
    assert.equal(again.status, 'PENDING');
    assert.equal(expectData(await cancel(claimant, again.id)).cancelClaim, true);
    // A withdrawal does not block.
    const third = expectData(await claim(claimant, p)).claimDevice;
    assert.equal(expectData(await cancel(claimant, third.id)).cancelClaim, true);
  });

  test('moves the device after the window with every share ended, alarms kept apart, both parties told and the device commanded', async () => {
    const { device, provisioned: p } = await provisionAndBind(t, owner, { name: OWNER_NAME });
    await share(device.id, grantee);
    const before1 = await raise(p, device.id, 1);
    const made = expectData(await claim(claimant, p)).claimDevice;
    const during = await raise(p, device.id, 2);
    await waitFor(async () => sameIds(await alarmIdsOf(owner, device.id), [before1, during]), 5000, 'the owner keeps full use during the window');
    const access = await recordAccessEvents(t);
    const unbindsBefore = commands.unbinds.length;
    const owed = await outboxFor(t, owner.email);
    const claimantTold = (await kinds(claimant)).length;

    // Not before the window has passed.
    assert.equal(await t.app.services.claims.completeDue(), 0);
    assert.equal((await claimOf(claimant, made.id))?.status, 'PENDING');
    await windowPasses();

    const done = await claimOf(claimant, made.id);
    assert.equal(done?.status, 'COMPLETED');
    assert.equal(done?.device?.id, device.id);
    assert.equal(done?.device?.role, 'OWNER');
    assert.notEqual(done?.device?.name, OWNER_NAME, "the owner's name for the device does not travel");
    assert.deepEqual(done?.device?.shares, []);
    assert.equal(await visible(device.id, owner), null);
    assert.equal(await visible(device.id, grantee), null);
    const old = await claimOf(owner, made.id);
    assert.equal(old?.status, 'COMPLETED');
    assert.equal(old?.device, null);
    const [binding] = await openBindings(t, [device.id]);
    assert.equal(binding?.ownerId, claimant.id);
    const shares = await t.app.db.db.select().from(tables.shares).where(eq(tables.shares.deviceId, device.id));
    assert.ok(shares.length === 1 && shares[0]!.revokedAt, 'the share ended');
    const audit = (await auditOf(t, device.id)).filter((a) => a.action === 'device.reclaimed');
    assert.equal(audit.length, 1);
    assert.equal(audit[0]!.details?.claimId, made.id);

    // Both told, once; the grantee too; the device got the unbind command; live audiences updated.
    assert.deepEqual(
      (await outboxFor(t, owner.email)).slice(owed.length).map((m) => m.kind),
      ['device-reclaimed'],
    );
    assert.deepEqual((await kinds(claimant)).slice(claimantTold), ['device-claim-completed']);
    assert.ok((await kinds(grantee)).includes('share-ended'));
    assert.deepEqual(commands.unbinds.slice(unbindsBefore), [device.id]);
    const event = await waitFor(() => access.events.find((e) => e.deviceId === device.id), 5000, 'device.access');
    assert.deepEqual(new Set(event.userIds), new Set([owner.id, claimant.id, grantee.id]));

    // Alarms stay with the binding they arrived under.
    const after1 = await raise(p, device.id, 3);
    await waitFor(async () => sameIds(await alarmIdsOf(claimant, device.id), [after1]), 5000, "the claimant's alarm");
    assert.deepEqual(await alarmIdsOf(claimant, device.id), [after1], 'none from before');
    assert.deepEqual(await alarmIdsOf(owner, device.id), []);

    // Exactly once: another round changes nothing.
    assert.equal(await t.app.services.claims.completeDue(), 0);
    assert.equal((await auditOf(t, device.id)).filter((a) => a.action === 'device.reclaimed').length, 1);
  });

  test('completes the claim at once when the owner unbinds during the window', async () => {
    const { device, provisioned: p } = await provisionAndBind(t, owner);
    const made = expectData(await claim(claimant, p)).claimDevice;
    const access = await recordAccessEvents(t);
    const told = (await kinds(claimant)).length;
    const ownerTold = (await outboxFor(t, owner.email)).length;
    const res = expectData(await t.gql(UnbindDeviceDocument, { id: device.id, password: owner.password }, { token: owner.token })).unbindDevice;
    assert.equal(res.ok, true);
    // The owner's unbind notice says where the device went, not that it is free to bind again.
    const [unbound] = (await outboxFor(t, owner.email)).slice(ownerTold).filter((m) => m.kind === 'device-unbound');
    assert.ok(unbound, 'the owner is told of the unbind');
    assert.match(unbound.body, /gone to the person who claimed it/);
    assert.doesNotMatch(unbound.body, /can be bound again/);
    assert.doesNotMatch(unbound.body, new RegExp(claimant.email.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i'), 'the claimant stays anonymous');

    const done = await claimOf(claimant, made.id);
    assert.equal(done?.status, 'COMPLETED');
    assert.equal(done?.device?.role, 'OWNER');
    assert.deepEqual(
      (await openBindings(t, [device.id])).map((b) => b.ownerId),
      [claimant.id],
    );
    assert.deepEqual((await kinds(claimant)).slice(told), ['device-claim-completed']);
    assert.equal((await auditOf(t, device.id)).at(-1)?.action, 'device.reclaimed');
    await waitFor(() => access.events.some((e) => e.deviceId === device.id && e.userIds.includes(claimant.id)), 5000, 'access event for the claimant');
    // Nothing left for the worker.
    clock.advance((WINDOW_S + 1) * 1000);
    assert.equal(await t.app.services.claims.completeDue(), 0);
  });

  test('keeps the window running across a transfer and tells the new owner the time left', async () => {
    const { device, provisioned: p } = await provisionAndBind(t, owner, { name: OWNER_NAME });
    const made = expectData(await claim(claimant, p)).claimDevice;
    clock.advance(10_000);
    expectData(await t.gql(TransferDeviceDocument, { id: device.id, to: heir.email, password: owner.password }, { token: owner.token }));

    const inherited = await claimOf(heir, made.id);
    assert.equal(inherited?.status, 'PENDING');
    assert.equal(inherited?.mine, false);
    assert.equal(inherited?.completesAt, made.completesAt, 'the window is not reset');
    assert.equal(inherited?.device?.id, device.id);
    assert.equal(await claimOf(owner, made.id), undefined, 'the former owner no longer answers for it');
    const [notice] = (await outboxFor(t, heir.email)).filter((m) => m.kind === 'device-claim-inherited');
    assert.ok(notice?.body.includes(made.completesAt));
    assert.ok(notice?.body.includes(made.id));

    await windowPasses();
    assert.equal((await claimOf(claimant, made.id))?.status, 'COMPLETED');
    assert.equal(await visible(device.id, heir), null);
    assert.ok((await kinds(heir)).includes('device-reclaimed'));
  });

  test('lets the new owner refuse a claim that came with a transferred device', async () => {
    const { device, provisioned: p } = await provisionAndBind(t, owner);
    const made = expectData(await claim(rival, p)).claimDevice;
    expectData(await t.gql(TransferDeviceDocument, { id: device.id, to: heir.email, password: owner.password }, { token: owner.token }));
    expectCode(await cancel(owner, made.id), 'NOT_FOUND');
    assert.equal(expectData(await cancel(heir, made.id)).cancelClaim, true);
    await windowPasses();
    assert.equal((await visible(device.id, heir))?.role, 'OWNER');
  });

  test('completes the claim when the owner transfers the device to the claimant', async () => {
    const { device, provisioned: p } = await provisionAndBind(t, owner);
    const made = expectData(await claim(claimant, p)).claimDevice;
    expectData(await t.gql(TransferDeviceDocument, { id: device.id, to: claimant.email, password: owner.password }, { token: owner.token }));
    const done = await claimOf(claimant, made.id);
    assert.equal(done?.status, 'COMPLETED');
    assert.equal(done?.device?.role, 'OWNER');
  });
});

describe('completion on many nodes', () => {
  test('completes each claim once, with one notice pair, when two nodes race', async () => {
    const fresh = hasPostgres ? await freshDatabase() : undefined;
    // Two gateway nodes on one Postgres database; on PGlite, two racing rounds of one node.
    const a = fresh ? await startApp({ clock: clock.now, env, databaseUrl: fresh.url }) : t;
    const b = fresh ? await startApp({ clock: clock.now, env, databaseUrl: fresh.url }) : t;
    try {
      const [o, c] = await Promise.all([registerUser(a, 'olga2', 'Olga Owner'), registerUser(a, 'carl2', 'Carl Claimant')]);
      const devices = await Promise.all([0, 1, 2, 3].map(() => provisionAndBind(a, o)));
      for (const d of devices) {
        const made = expectData(await a.gql(ClaimDeviceDocument, { serial: d.provisioned.serial, verificationCode: d.provisioned.verificationCode }, { token: c.token })).claimDevice;
        assert.equal(made.status, 'PENDING');
      }
      clock.advance((WINDOW_S + 1) * 1000);
      const counts = await Promise.all([a, b, a, b].map((node) => node.app.services.claims.completeDue()));
      assert.ok(counts.reduce((x, y) => x + y, 0) <= devices.length);

      for (const d of devices) {
        const bindings = await openBindings(a, [d.device.id]);
        assert.deepEqual(
          bindings.map((x) => x.ownerId),
          [c.id],
        );
        assert.equal((await auditOf(a, d.device.id)).filter((x) => x.action === 'device.reclaimed').length, 1);
      }
      const toClaimant = (await outboxFor(a, c.email)).filter((m) => m.kind === 'device-claim-completed');
      const toOwner = (await outboxFor(a, o.email)).filter((m) => m.kind === 'device-reclaimed');
      assert.equal(toClaimant.length, devices.length);
      assert.equal(toOwner.length, devices.length);
      const claims = await a.app.db.db.select().from(tables.deviceClaims).where(eq(tables.deviceClaims.claimantId, c.id));
      assert.ok(claims.every((x) => x.status === 'COMPLETED' && x.claimantBindingId));
    } finally {
      if (fresh) {
        await a.app.stop();
        await b.app.stop();
        await fresh.drop();
      }
    }
  });
});

describe('races with the owner', () => {
  test('leaves the claimant the one owner when a transfer and the completion race', async () => {
    const { device, provisioned: p } = await provisionAndBind(t, owner);
    const made = expectData(await claim(claimant, p)).claimDevice;
    clock.advance((WINDOW_S + 1) * 1000);
    const [transfer] = await Promise.all([
      t.gql(TransferDeviceDocument, { id: device.id, to: heir.email, password: owner.password }, { token: owner.token }),
      t.app.services.claims.completeDue(),
      t.app.services.claims.completeDue(),
    ]);
    // Either order is fine: the transfer first (the heir then loses it), or the completion first (the transfer then finds no device).
    if (transfer.errors) expectCode(transfer, 'NOT_FOUND');
    await t.app.services.claims.completeDue();
    assert.equal((await claimOf(claimant, made.id))?.status, 'COMPLETED');
    assert.deepEqual(
      (await openBindings(t, [device.id])).map((b) => b.ownerId),
      [claimant.id],
    );
    assert.equal((await auditOf(t, device.id)).filter((a) => a.action === 'device.reclaimed').length, 1);
  });
});

describe('the completion worker', () => {
  test('completes a due claim by itself on the node holding the lease', async () => {
    const own = testClock();
    const node = await startApp({ clock: own.now, env: { ...env, RECLAIM_WINDOW_S: '10' } });
    try {
      const [o, c] = await Promise.all([registerUser(node, 'olga3'), registerUser(node, 'carl3')]);
      const { provisioned: p } = await provisionAndBind(node, o);
      const made = expectData(await node.gql(ClaimDeviceDocument, { serial: p.serial, verificationCode: p.verificationCode }, { token: c.token })).claimDevice;
      own.advance(11_000);
      // The job ticks every RECLAIM_WINDOW_S / 10 (at least 1 s, at most 60 s).
      await waitFor(
        async () => expectData(await node.gql(DeviceClaimsDocument, {}, { token: c.token })).deviceClaims.find((x) => x.id === made.id)?.status === 'COMPLETED',
        20_000,
        'the worker to complete the claim',
      );
    } finally {
      await node.stop();
    }
  });
});

describe('privacy', () => {
  test('no answer, error or notice names the other party', async () => {
    // Claim notices only: a transfer's own notices name the account the owner typed, by design.
    const claimKinds = /^(device-claim-|device-reclaimed$|share-ended$)/;
    const mailsTo = async (u: TestUser) => JSON.stringify((await outboxFor(t, u.email)).filter((m) => claimKinds.test(m.kind)).map((m) => [m.subject, m.body]));
    const identity = (u: TestUser, name: string) => [u.email, u.id, name, u.email.split('@')[0]!];
    const ownerSide = identity(owner, 'Olga Owner').concat(identity(heir, 'Hal Heir'), [OWNER_NAME]);
    const claimantSide = identity(claimant, 'Carl Claimant').concat(identity(rival, 'Rita Rival'));
    const toClaimants = JSON.stringify(seenByClaimants) + (await mailsTo(claimant)) + (await mailsTo(rival));
    const toOwners = JSON.stringify(seenByOwners) + (await mailsTo(owner)) + (await mailsTo(heir));
    assert.ok(toClaimants.length > 1000 && toOwners.length > 1000, 'the earlier tests recorded what each side saw');
    for (const s of ownerSide) assert.ok(!toClaimants.includes(s), `the claimant side saw ${s}`);
    for (const s of claimantSide) assert.ok(!toOwners.includes(s), `the owner side saw ${s}`);
  });
});
