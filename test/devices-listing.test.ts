import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { eq, sql } from 'drizzle-orm';
import { parse } from 'graphql';
import { tables } from '../src/db/index';
import {
  DeviceDocument,
  DevicesDocument,
  DevicesSharesByRoleDocument,
  DevicesWithShareGranteesDocument,
  DevicesWithTotalDocument,
  GrantShareDocument,
  RenameDeviceDocument,
  type DevicesQuery,
  type DevicesWithTotalQuery,
} from './generated/graphql';
import { countStatements, provisionAndBind, registerUser, seedBoundDevices, type TestUser } from './helpers/devices';
import { expectCode, expectData, startApp, testClock, type TestApp } from './helpers/harness';

const clock = testClock();
let t: TestApp;
let owner: TestUser;
let friend: TestUser;
let stranger: TestUser;
before(async () => {
  t = await startApp({ clock: clock.now });
  [owner, friend, stranger] = await Promise.all([registerUser(t, 'lister', 'Lena'), registerUser(t, 'friend', 'Fred'), registerUser(t, 'stranger')]);
});
after(() => t.stop());

const ids = (r: { devices: { edges: Array<{ node: { id: string } }> } }) => r.devices.edges.map((e) => e.node.id);

describe('devices pagination', () => {
  test('pages through every device once, in binding order, when following endCursor', async () => {
    const user = await registerUser(t, 'pager');
    const seeded = await seedBoundDevices(t, user.id, 7, { start: new Date(clock.now().getTime() - 60_000) });
    const seen: string[] = [];
    let after: string | null | undefined = null;
    for (let page = 0; page < 10; page++) {
      const r: DevicesWithTotalQuery = expectData(await t.gql(DevicesWithTotalDocument, { first: 3, after }, { token: user.token }));
      assert.equal(r.devices.totalCount, 7);
      seen.push(...ids(r));
      assert.equal(r.devices.pageInfo.endCursor, r.devices.edges.at(-1)?.cursor ?? null);
      if (!r.devices.pageInfo.hasNextPage) break;
      after = r.devices.pageInfo.endCursor;
    }
    assert.deepEqual(
      seen,
      seeded.map((s) => s.id),
    );
  });

  test('neither skips nor repeats a device when devices are bound between pages', async () => {
    const user = await registerUser(t, 'inserts');
    const first = await seedBoundDevices(t, user.id, 4, { start: new Date(clock.now().getTime() - 60_000) });
    const page1 = expectData(await t.gql(DevicesDocument, { first: 2 }, { token: user.token }));
    assert.deepEqual(
      ids(page1),
      first.slice(0, 2).map((d) => d.id),
    );
    // Bound after page 1 was read: one through the API, one seeded at the very same instant as an old one.
    const { device: fresh } = await provisionAndBind(t, user);
    const twin = await seedBoundDevices(t, user.id, 1, { start: first[3]!.boundAt });
    const page2 = expectData(await t.gql(DevicesDocument, { first: 10, after: page1.devices.pageInfo.endCursor }, { token: user.token }));
    const rest = ids(page2);
    assert.deepEqual(new Set([...ids(page1), ...rest]), new Set([...first.map((d) => d.id), fresh.id, twin[0]!.id]));
    assert.equal(ids(page1).length + rest.length, 6);
    assert.equal(rest.at(-1), fresh.id);
    assert.equal(page2.devices.pageInfo.hasNextPage, false);
  });

  test('orders devices bound in the same millisecond by a tie-breaker so pages do not overlap', async () => {
    const user = await registerUser(t, 'ties');
    const seeded = await seedBoundDevices(t, user.id, 5, { sameInstant: true, start: new Date(clock.now().getTime() - 60_000) });
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const r: DevicesQuery = expectData(await t.gql(DevicesDocument, { first: 1, after }, { token: user.token }));
      seen.push(...ids(r));
      if (!r.devices.pageInfo.hasNextPage) break;
      after = r.devices.pageInfo.endCursor!;
    }
    assert.deepEqual(new Set(seen), new Set(seeded.map((s) => s.id)));
    assert.equal(seen.length, 5);
  });

  test('gives BAD_USER_INPUT for a bad cursor or a page size outside 1..100', async () => {
    for (const after of ['garbage', 'bm90LWEtY3Vyc29y', Buffer.from('123.not-a-uuid').toString('base64url'), '!!', 'x'.repeat(300)]) {
      expectCode(await t.gql(DevicesDocument, { first: 5, after }, { token: owner.token }), 'BAD_USER_INPUT');
    }
    for (const first of [0, -1, 101]) expectCode(await t.gql(DevicesDocument, { first }, { token: owner.token }), 'BAD_USER_INPUT');
    expectData(await t.gql(DevicesDocument, { first: 100 }, { token: owner.token }));
    // The default page size is 50.
    const user = await registerUser(t, 'default-page');
    await seedBoundDevices(t, user.id, 51);
    const r = expectData(await t.gql(DevicesDocument, {}, { token: user.token }));
    assert.equal(r.devices.edges.length, 50);
    assert.equal(r.devices.pageInfo.hasNextPage, true);
  });

  test('returns an empty page with no endCursor when the caller has no devices', async () => {
    const r = expectData(await t.gql(DevicesWithTotalDocument, { first: 10 }, { token: stranger.token }));
    assert.deepEqual(r.devices, { totalCount: 0, edges: [], pageInfo: { hasNextPage: false, endCursor: null } });
  });
});

describe('devices filters', () => {
  test('filters by role, status and a case-insensitive search that treats % and _ literally', async () => {
    const user = await registerUser(t, 'filters');
    const mine = await seedBoundDevices(t, user.id, 5, {
      start: new Date(clock.now().getTime() - 60_000),
      name: (i) => ['Garage_1', 'Garage11', 'Kitchen 100%', 'Kitchen 1000', 'Yard'][i]!,
      tag: 'FLT',
    });
    const { device: shared } = await provisionAndBind(t, friend, { name: 'Friend cam' });
    expectData(await t.gql(GrantShareDocument, { deviceId: shared.id, grantee: user.email, permissions: ['LIVE_VIEW'] }, { token: friend.token }));

    // Registry columns (owned by the connection registry) set directly: online, heartbeating-offline, quiet, never seen.
    const db = t.app.db.db;
    await db.update(tables.devices).set({ online: true, lastSeenAt: clock.now() }).where(eq(tables.devices.id, mine[0]!.id));
    await db.update(tables.devices).set({ online: false, heartbeats: true, lastSeenAt: clock.now() }).where(eq(tables.devices.id, mine[1]!.id));
    await db.update(tables.devices).set({ online: false, heartbeats: false, lastSeenAt: clock.now() }).where(eq(tables.devices.id, mine[2]!.id));

    const query = async (filter: Record<string, unknown>) => {
      const r = expectData(await t.gql(DevicesWithTotalDocument, { first: 50, filter }, { token: user.token }));
      assert.equal(r.devices.totalCount, r.devices.edges.length);
      return new Set(ids(r));
    };
    assert.deepEqual(await query({ role: 'OWNER' }), new Set(mine.map((d) => d.id)));
    assert.deepEqual(await query({ role: 'SHARED' }), new Set([shared.id]));
    assert.deepEqual(await query({ status: 'ONLINE' }), new Set([mine[0]!.id]));
    assert.deepEqual(await query({ status: 'UNKNOWN' }), new Set([mine[2]!.id]));
    assert.deepEqual(await query({ status: 'OFFLINE' }), new Set([mine[1]!.id, mine[3]!.id, mine[4]!.id, shared.id]));
    assert.deepEqual(await query({ status: 'OFFLINE', role: 'SHARED' }), new Set([shared.id]));
    assert.deepEqual(await query({ search: 'garage_' }), new Set([mine[0]!.id]));
    assert.deepEqual(await query({ search: 'GARAGE' }), new Set([mine[0]!.id, mine[1]!.id]));
    assert.deepEqual(await query({ search: '100%' }), new Set([mine[2]!.id]));
    assert.deepEqual(await query({ search: 'friend' }), new Set([shared.id]));
    assert.deepEqual(await query({ search: mine[4]!.serial.toLowerCase() }), new Set([mine[4]!.id]));
    assert.deepEqual(await query({ search: '   ' }), new Set([...mine.map((d) => d.id), shared.id]));
    assert.deepEqual(await query({ search: 'no such thing' }), new Set());

    const status = expectData(await t.gql(DeviceDocument, { id: mine[2]!.id }, { token: user.token })).device;
    assert.equal(status?.status, 'UNKNOWN');
    assert.ok(status?.lastSeenAt);
    expectCode(await t.gql(DevicesDocument, { filter: { search: 's'.repeat(65) } }, { token: user.token }), 'BAD_USER_INPUT');
  });

  test('gives lastSeenAt and boundAt to the millisecond in the list, as the device query does, when stored with microseconds', async () => {
    const user = await registerUser(t, 'instants');
    const [d] = await seedBoundDevices(t, user.id, 1, { start: new Date(Date.UTC(2026, 2, 4, 5, 6, 7, 891)), tag: 'INS' });
    await t.app.db.db
      .update(tables.devices)
      .set({ lastSeenAt: sql`'2026-03-04T05:06:07.891789Z'::timestamptz` })
      .where(eq(tables.devices.id, d!.id));
    type Instants = { lastSeenAt: string | null; boundAt: string };
    const list = parse('{ devices(first: 5) { edges { node { id lastSeenAt boundAt } } } }') as TypedDocumentNode<{ devices: { edges: Array<{ node: Instants & { id: string } }> } }>;
    const one = parse('query ($id: ID!) { device(id: $id) { lastSeenAt boundAt } }') as TypedDocumentNode<{ device: Instants | null }, { id: string }>;
    const [listed] = expectData(await t.gql(list, {}, { token: user.token })).devices.edges.map((e) => e.node);
    const alone = expectData(await t.gql(one, { id: d!.id }, { token: user.token })).device;
    assert.deepEqual({ lastSeenAt: listed?.lastSeenAt, boundAt: listed?.boundAt }, { lastSeenAt: '2026-03-04T05:06:07.891Z', boundAt: '2026-03-04T05:06:07.891Z' });
    assert.deepEqual(alone, { lastSeenAt: '2026-03-04T05:06:07.891Z', boundAt: '2026-03-04T05:06:07.891Z' });
  });

  test('totalCount counts every match whatever the cursor, with the page in one statement', async () => {
    const user = await registerUser(t, 'totals');
    const mine = await seedBoundDevices(t, user.id, 5, {
      start: new Date(clock.now().getTime() - 60_000),
      name: (i) => ['Porch A', 'Porch B', 'Porch C', 'Hall', 'Porch D'][i]!,
      tag: 'TOT',
    });
    const { device: shared } = await provisionAndBind(t, friend, { name: 'Porch of a friend' });
    expectData(await t.gql(GrantShareDocument, { deviceId: shared.id, grantee: user.email, permissions: ['LIVE_VIEW'] }, { token: friend.token }));
    await t.app.db.db.update(tables.devices).set({ online: true, lastSeenAt: clock.now() }).where(eq(tables.devices.id, mine[1]!.id));

    const page = async (first: number, after: string | null, filter: Record<string, unknown>) =>
      expectData(await t.gql(DevicesWithTotalDocument, { first, after, filter }, { token: user.token })).devices;
    const walk = async (filter: Record<string, unknown>) => {
      const seen: string[] = [];
      const totals = new Set<number>();
      let after: string | null = null;
      for (let i = 0; i < 10; i++) {
        const r = await page(2, after, filter);
        totals.add(r.totalCount);
        seen.push(...r.edges.map((e) => e.node.id));
        if (!r.pageInfo.hasNextPage) break;
        after = r.pageInfo.endCursor ?? null;
      }
      return { seen, totals: [...totals] };
    };
    const porches = await walk({ search: 'porch' });
    assert.deepEqual(porches.seen, [mine[0]!.id, mine[1]!.id, mine[2]!.id, mine[4]!.id, shared.id]);
    assert.deepEqual(porches.totals, [5]);
    const owned = await walk({ search: 'porch', role: 'OWNER' });
    assert.deepEqual(owned.totals, [4]);
    assert.deepEqual((await walk({ role: 'SHARED' })).totals, [1]);
    assert.deepEqual((await walk({ status: 'OFFLINE', search: 'porch' })).totals, [4]);
    assert.deepEqual((await walk({ search: 'nothing like it' })).totals, [0]);
    // Past the last device: an empty page still carries the total.
    const last = await page(5, null, { search: 'porch' });
    const beyond = await page(5, last.pageInfo.endCursor ?? null, { search: 'porch' });
    assert.deepEqual({ edges: beyond.edges, totalCount: beyond.totalCount, hasNextPage: beyond.pageInfo.hasNextPage }, { edges: [], totalCount: 5, hasNextPage: false });

    // Asked for through a fragment, the total still comes with the page: one read besides the session check.
    const viaFragment = parse('query ($f: DeviceFilter) { devices(first: 2, filter: $f) { ...Total edges { node { id } } } } fragment Total on DeviceConnection { totalCount }') as TypedDocumentNode<
      { devices: { totalCount: number; edges: Array<{ node: { id: string } }> } },
      { f: Record<string, unknown> }
    >;
    const counted = await countStatements(t, () => t.gql(viaFragment, { f: { search: 'porch' } }, { token: user.token }));
    assert.equal(expectData(counted.result).devices.totalCount, 5);
    const reads = counted.statements.filter((q) => /^\s*select/i.test(q) && /\bbindings\b/.test(q));
    assert.equal(reads.length, 1, counted.statements.join('\n'));
  });

  test('lists a shared device only while the share is unexpired', async () => {
    const { device } = await provisionAndBind(t, owner, { name: 'Short lease' });
    // Short enough that moving the clock past it keeps the access tokens (15 min) valid.
    const expiresAt = new Date(clock.now().getTime() + 60_000).toISOString();
    expectData(
      await t.gql(GrantShareDocument, { deviceId: device.id, grantee: friend.email, permissions: ['LIVE_VIEW', 'CONFIGURE'] }, { token: owner.token }),
    );
    // Re-granting replaces the permissions and sets the expiry.
    expectData(
      await t.gql(
        GrantShareDocument,
        { deviceId: device.id, grantee: friend.email, permissions: ['LIVE_VIEW', 'CONFIGURE'], expiresAt },
        { token: owner.token },
      ),
    );
    assert.ok(ids(expectData(await t.gql(DevicesDocument, { first: 100 }, { token: friend.token }))).includes(device.id));

    clock.advance(2 * 60_000);
    assert.ok(!ids(expectData(await t.gql(DevicesDocument, { first: 100 }, { token: friend.token }))).includes(device.id));
    assert.equal(expectData(await t.gql(DeviceDocument, { id: device.id }, { token: friend.token })).device, null);
    expectCode(await t.gql(RenameDeviceDocument, { id: device.id, name: 'late' }, { token: friend.token }), 'NOT_FOUND');
    // The owner still sees the lapsed share, to renew or revoke it.
    const seen = expectData(await t.gql(DeviceDocument, { id: device.id }, { token: owner.token })).device;
    assert.equal(seen?.shares.length, 1);
    assert.equal(seen?.shares[0]?.expiresAt, expiresAt);
  });
});

describe('nested fields', () => {
  test('resolves 50 devices with their shares and grantees in a constant number of statements', async () => {
    const user = await registerUser(t, 'nplus1');
    const seeded = await seedBoundDevices(t, user.id, 50, { start: new Date(clock.now().getTime() - 60_000) });
    // Shares through the API: every device with friend, every other one with stranger too.
    for (let i = 0; i < seeded.length; i += 10) {
      await Promise.all(
        seeded
          .slice(i, i + 10)
          .flatMap((d, j) => [
            t.gql(GrantShareDocument, { deviceId: d.id, grantee: friend.email, permissions: ['LIVE_VIEW'] }, { token: user.token }).then(expectData),
            ...((i + j) % 2 === 0
              ? [t.gql(GrantShareDocument, { deviceId: d.id, grantee: stranger.email, permissions: ['ALARMS'] }, { token: user.token }).then(expectData)]
              : []),
          ]),
      );
    }
    const big = await countStatements(t, () => t.gql(DevicesWithShareGranteesDocument, { first: 50 }, { token: user.token }));
    const data = expectData(big.result);
    assert.equal(data.devices.edges.length, 50);
    assert.equal(
      data.devices.edges.reduce((n, e) => n + e.node.shares.length, 0),
      75,
    );
    assert.ok(data.devices.edges.every((e) => e.node.shares.some((s) => s.grantee.id === friend.id)));

    const small = await countStatements(t, () => t.gql(DevicesWithShareGranteesDocument, { first: 2 }, { token: user.token }));
    expectData(small.result);
    // Session check + the page + one batch of shares (with grantees joined), whatever the page size.
    // (Authentication may add a once-a-minute lastUsedAt write; it is not the query's doing.)
    // Background loops (outbox delivery, sweepers, the alarm tail) share the pool and may run
    // meanwhile: count only the read statements this query can have caused.
    const own = (statements: string[]) =>
      statements.filter((q) => /^\s*select/i.test(q) && !/for update|"sessions"|"outbox"|"leases"|"device_commands"|"alarms"|pg_snapshot/.test(q));
    assert.equal(own(big.statements).length, own(small.statements).length, big.statements.join('\n'));
    assert.equal(own(big.statements).length, 2, big.statements.join('\n'));
    console.log(`# devices(first: 50) { edges { node { shares { grantee { id } } } } }: ${big.statements.length} SQL statements`);

    // A grantee's view batches the same way and shows only its own share.
    const mineOnly = await countStatements(t, () => t.gql(DevicesSharesByRoleDocument, { first: 100, filter: { role: 'SHARED' } }, { token: friend.token }));
    const friendView = expectData(mineOnly.result);
    assert.ok(friendView.devices.edges.length >= 50);
    assert.ok(friendView.devices.edges.every((e) => e.node.role === 'SHARED' && e.node.shares.length === 1 && e.node.shares[0]!.grantee.id === friend.id));
    assert.equal(own(mineOnly.statements).length, 2, mineOnly.statements.join("\n"));
  });
});
