import { and, desc, asc, eq, gt, gte, inArray, isNotNull, isNull, lt, or, sql, type SQL } from 'drizzle-orm';
import { unionAll } from 'drizzle-orm/pg-core';
import type { Logger } from 'pino';
import { tables, type Db } from '../db/index';
import type { AlarmDetails } from '../db/schema/alarms';
import type { AlarmType } from '../devices/alarm-type';
import { encodeAlarmCursor, type AlarmCursor } from './alarm-cursor';
import type { EventBus } from './event-bus';

const { alarms, alarmReceipts, bindings, shares } = tables;

export type AlarmRow = typeof alarms.$inferSelect;

/** One alarm post from either door, already normalised. */
export interface AlarmPost {
  source: 'isapi' | 'ws';
  /** Normalised event type (lower-case, `-N` stripped): part of the coalescing key. */
  eventType: string;
  /** The device's own word. */
  rawType: string;
  alarmType: AlarmType;
  state: 'active' | 'inactive';
  /** Raw channel number (NVR IP channels stay 32+N). */
  channel: number;
  regionId: string | null;
  /** The device's clock; null when it sent none or an unparseable one. */
  deviceTime: Date | null;
  /** As the device reports it; 0 when it reports none. */
  activePostCount: number;
  description: string | null;
  channelName: string | null;
  /**
   * The post's own identity (`u:<uuid>` for ISAPI JSON, `w:<event id>` for the WebSocket): a post
   * whose identity was seen before for this device is a duplicate and changes nothing.
   */
  identity: string | null;
  /** ISAPI `isDataRetransmission`; recorded only (de-duplication is on the identity, as DEVICES.md says). */
  retransmission: boolean;
  details: AlarmDetails | null;
}

/**
 * What `record` did:
 * - `created`: a new alarm; `alarm.created` is published after the commit.
 * - `coalesced`: an active repeat within the quiet window updated the open alarm.
 * - `ended`: an inactive post ended the open alarm.
 * - `duplicate`: a post with the same identity was stored before.
 * - `unbound`: the device has no owner, so the alarm belongs to nobody and is not kept.
 * - `stray-inactive`: an inactive post with no open alarm to end.
 */
export type RecordOutcome = 'created' | 'coalesced' | 'ended' | 'duplicate' | 'unbound' | 'stray-inactive';

export interface AlarmFilterSpec {
  deviceIds?: readonly string[] | null;
  types?: readonly AlarmType[] | null;
  /** Alarms received by the gateway at or after this time (device clocks cannot be trusted). */
  since?: Date | null;
  acknowledged?: boolean | null;
}

export interface AlarmStoreDeps {
  db: Db;
  clock: () => Date;
  bus: EventBus;
  log: Logger;
  /** ALARM_QUIET_END_S: an open alarm with no post for this long has ended. */
  quietEndS: number;
}

/** Alarms whose inserting transaction precedes every transaction still running: nothing can commit before them any more. */
const belowHorizon = sql`${alarms.xid} < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint`;

const cursorOf = (row: Pick<AlarmRow, 'xid' | 'seq'>): string => encodeAlarmCursor({ xid: row.xid, seq: row.seq });

/**
 * The alarm store: exactly-once storage with coalescing, the visibility rules, and cursors.
 *
 * Cursor design: every row records the id of the transaction that inserted it (`xid`) next to a
 * sequence number (`seq`), and is ordered by `(xid, seq)`. Readers only return rows whose `xid` is
 * below the xmin of the statement's own snapshot: every transaction with a smaller id has ended,
 * so no row can ever commit behind a cursor a reader has already been given. (A plain `seq >
 * cursor` read skips rows whose transaction took its sequence value early but committed late.)
 * The price is that an alarm becomes readable only once every transaction older than it has
 * ended, which is milliseconds for the short transactions this gateway runs.
 */
export function createAlarmStore(deps: AlarmStoreDeps) {
  const { db, clock, bus, log } = deps;
  const quietMs = deps.quietEndS * 1000;

  /** Open bindings whose alarms the user may see: owned, or shared with them unrevoked, unexpired and with `permission`. */
  function visibleBindings(userId: string, now: Date, permission: 'ALARMS' | 'CONFIGURE') {
    const owned = db
      .select({ id: bindings.id })
      .from(bindings)
      .where(and(eq(bindings.ownerId, userId), isNull(bindings.endedAt)));
    const shared = db
      .select({ id: shares.bindingId })
      .from(shares)
      .innerJoin(bindings, and(eq(bindings.id, shares.bindingId), isNull(bindings.endedAt)))
      .where(
        and(
          eq(shares.granteeId, userId),
          isNull(shares.revokedAt),
          or(isNull(shares.expiresAt), gt(shares.expiresAt, now)),
          sql`${permission} = any(${shares.permissions})`,
        ),
      );
    return unionAll(owned, shared);
  }

  function filterConditions(filter: AlarmFilterSpec | null | undefined): SQL[] {
    const where: SQL[] = [];
    if (!filter) return where;
    if (filter.deviceIds) where.push(filter.deviceIds.length ? inArray(alarms.deviceId, [...filter.deviceIds]) : sql`false`);
    if (filter.types) where.push(filter.types.length ? inArray(alarms.alarmType, [...filter.types]) : sql`false`);
    if (filter.since) where.push(gte(alarms.receivedAt, filter.since));
    if (filter.acknowledged === true) where.push(isNotNull(alarms.acknowledgedAt));
    if (filter.acknowledged === false) where.push(isNull(alarms.acknowledgedAt));
    return where;
  }

  return {
    /**
     * Stores one post durably (the promise resolves after the commit) and returns what it did.
     * Posts of one device are serialised (a lock on its open binding), so concurrent posts
     * coalesce correctly and a resent post is stored once. `alarm.created` is published after
     * the commit. Throws only on database failure (nothing is then stored; the device retries).
     */
    async record(deviceId: string, post: AlarmPost): Promise<{ outcome: RecordOutcome; alarm: AlarmRow | null }> {
      const now = clock();
      const result = await db.transaction(async (tx) => {
        // Locking the open binding serialises the posts of one device (and an unbind waits for
        // them); a device with no binding stores nothing, so it needs no lock.
        const [binding] = await tx
          .select({ id: bindings.id })
          .from(bindings)
          .where(and(eq(bindings.deviceId, deviceId), isNull(bindings.endedAt)))
          .limit(1)
          .for('no key update');
        if (!binding) return { outcome: 'unbound' as const, alarm: null };

        const openKey = and(
          eq(alarms.deviceId, deviceId),
          eq(alarms.channel, post.channel),
          eq(alarms.eventType, post.eventType),
          sql`coalesce(${alarms.regionId}, '') = ${post.regionId ?? ''}`,
          isNull(alarms.endedAt),
        );
        let open: AlarmRow | undefined;
        if (post.identity) {
          // One round trip for both: the open alarm of the key, and whether this post was seen.
          const [row] = await tx
            .select({
              open: alarms,
              seen: sql<boolean>`exists (select 1 from alarm_receipts r where r.device_id = ${deviceId} and r.key = ${post.identity})`,
            })
            .from(sql`(select 1) as one`)
            .leftJoin(alarms, openKey);
          if (row?.seen === true || String(row?.seen) === 'true') return { outcome: 'duplicate' as const, alarm: null };
          open = row?.open ?? undefined;
        } else {
          [open] = await tx.select().from(alarms).where(openKey).limit(1);
        }
        // An alarm quiet for the window, or one of an earlier binding, has ended: close it first.
        if (open && (open.bindingId !== binding.id || now.getTime() - open.lastPostAt.getTime() >= quietMs)) {
          await tx
            .update(alarms)
            .set({ endedAt: open.lastPostDeviceAt ?? open.lastPostAt })
            .where(and(eq(alarms.id, open.id), isNull(alarms.endedAt)));
          open = undefined;
        }

        let outcome: RecordOutcome;
        let alarm: AlarmRow | null = null;
        if (post.state === 'inactive') {
          if (open) {
            [alarm] = (await tx
              .update(alarms)
              .set({ endedAt: post.deviceTime ?? now, lastPostAt: now, lastPostDeviceAt: post.deviceTime })
              .where(eq(alarms.id, open.id))
              .returning()) as [AlarmRow];
            outcome = 'ended';
          } else {
            outcome = 'stray-inactive';
          }
        } else if (open) {
          [alarm] = (await tx
            .update(alarms)
            .set({
              lastPostAt: now,
              lastPostDeviceAt: post.deviceTime,
              activePostCount: post.activePostCount > 0 ? post.activePostCount : open.activePostCount,
              postCount: sql`${alarms.postCount} + 1`,
            })
            .where(eq(alarms.id, open.id))
            .returning()) as [AlarmRow];
          outcome = 'coalesced';
        } else {
          [alarm] = (await tx
            .insert(alarms)
            .values({
              deviceId,
              bindingId: binding.id,
              source: post.source,
              channel: post.channel,
              eventType: post.eventType,
              rawType: post.rawType,
              alarmType: post.alarmType,
              regionId: post.regionId,
              description: post.description,
              channelName: post.channelName,
              startedAt: post.deviceTime ?? now,
              receivedAt: now,
              lastPostAt: now,
              lastPostDeviceAt: post.deviceTime,
              activePostCount: post.activePostCount,
              postCount: 1,
              details: post.details,
            })
            .returning()) as [AlarmRow];
          outcome = 'created';
        }

        if (post.identity) {
          await tx
            .insert(alarmReceipts)
            .values({ deviceId, key: post.identity, alarmId: alarm?.id ?? null, receivedAt: now })
            .onConflictDoNothing();
        }
        return { outcome, alarm };
      });

      if (result.outcome === 'created' && result.alarm) {
        const a = result.alarm;
        try {
          bus.publish('alarm.created', { alarmId: a.id, deviceId: a.deviceId, bindingId: a.bindingId, cursor: cursorOf(a) });
        } catch (err) {
          log.warn({ err, alarmId: a.id }, 'alarm.created publish failed');
        }
      }
      return result;
    },

    /** Ends open alarms with no post for the quiet window (endedAt = the last post's time). Returns how many. */
    async endQuiet(limit = 1000): Promise<number> {
      const cutoff = new Date(clock().getTime() - quietMs);
      const stale = db
        .select({ id: alarms.id })
        .from(alarms)
        .where(and(isNull(alarms.endedAt), lt(alarms.lastPostAt, cutoff)))
        .limit(limit);
      const rows = await db
        .update(alarms)
        .set({ endedAt: sql`coalesce(${alarms.lastPostDeviceAt}, ${alarms.lastPostAt})` })
        .where(and(inArray(alarms.id, stale), isNull(alarms.endedAt)))
        .returning({ id: alarms.id });
      return rows.length;
    },

    /** Newest first: alarms the user may see (ALARMS), before `before` when given. */
    async pageForUser(userId: string, now: Date, before: AlarmCursor | null, filter: AlarmFilterSpec | null | undefined, limit: number): Promise<AlarmRow[]> {
      // No horizon here: a newest-first list must show an alarm the moment it is acked (the horizon is
      // cluster-wide, so any open write transaction would hide it). Paging downwards cannot skip a
      // late commit either: it has a smaller cursor and turns up on a later page. Resuming forwards
      // (replay) is what needs the horizon.
      const where: SQL[] = [inArray(alarms.bindingId, visibleBindings(userId, now, 'ALARMS')), ...filterConditions(filter)];
      if (before) where.push(sql`(${alarms.xid}, ${alarms.seq}) < (${before.xid}::bigint, ${before.seq}::bigint)`);
      return db
        .select()
        .from(alarms)
        .where(and(...where))
        .orderBy(desc(alarms.xid), desc(alarms.seq))
        .limit(limit);
    },

    /**
     * Oldest first: alarms the user may see after `after` (or from the beginning), for replay;
     * with `until`, only up to it (inclusive): the replay half of replay-then-live, whose live half
     * (the node's tailer) delivers everything after `until`. A reader that keeps passing the last
     * cursor it got never misses a row (see the cursor design above).
     */
    async replayForUser(
      userId: string,
      now: Date,
      after: AlarmCursor | null,
      filter: AlarmFilterSpec | null | undefined,
      limit: number,
      until?: AlarmCursor,
    ): Promise<AlarmRow[]> {
      const where: SQL[] = [inArray(alarms.bindingId, visibleBindings(userId, now, 'ALARMS')), belowHorizon, ...filterConditions(filter)];
      if (after) where.push(sql`(${alarms.xid}, ${alarms.seq}) > (${after.xid}::bigint, ${after.seq}::bigint)`);
      if (until) where.push(sql`(${alarms.xid}, ${alarms.seq}) <= (${until.xid}::bigint, ${until.seq}::bigint)`);
      return db
        .select()
        .from(alarms)
        .where(and(...where))
        .orderBy(asc(alarms.xid), asc(alarms.seq))
        .limit(limit);
    },

    /**
     * Every alarm after `after` (all users), oldest first, below the horizon: the node's tailer
     * (src/streams/alarm-tail.ts) reads this once per wake-up for all its subscribers. Rows it
     * returns are final: no row can later appear at or before the last one.
     */
    async tailAfter(after: AlarmCursor, limit: number): Promise<AlarmRow[]> {
      return db
        .select()
        .from(alarms)
        .where(and(belowHorizon, sql`(${alarms.xid}, ${alarms.seq}) > (${after.xid}::bigint, ${after.seq}::bigint)`))
        .orderBy(asc(alarms.xid), asc(alarms.seq))
        .limit(limit);
    },

    /** The cursor of the newest alarm below the horizon, or `{0, 0}` when there is none: where a tailer starts. */
    async tailEnd(): Promise<AlarmCursor> {
      const [row] = await db
        .select({ xid: alarms.xid, seq: alarms.seq })
        .from(alarms)
        .where(belowHorizon)
        .orderBy(desc(alarms.xid), desc(alarms.seq))
        .limit(1);
      return row ? { xid: row.xid, seq: row.seq } : { xid: 0, seq: 0 };
    },

    /**
     * Who-sees-what for the live streams' access cache, in one statement: the user's open
     * bindings (as owner) and the open bindings shared with them unrevoked with ALARMS, with each
     * share's expiry (checked at delivery, so an expiry needs no event).
     */
    async alarmAudienceOf(userId: string): Promise<Array<{ bindingId: string; deviceId: string; owner: boolean; expiresAt: Date | null }>> {
      const owned = db
        .select({ bindingId: bindings.id, deviceId: bindings.deviceId, owner: sql<boolean>`true`.as('owner'), expiresAt: sql<Date | null>`null::timestamptz`.as('expires_at') })
        .from(bindings)
        .where(and(eq(bindings.ownerId, userId), isNull(bindings.endedAt)));
      const shared = db
        .select({ bindingId: bindings.id, deviceId: bindings.deviceId, owner: sql<boolean>`false`.as('owner'), expiresAt: sql<Date | null>`${shares.expiresAt}`.as('expires_at') })
        .from(shares)
        .innerJoin(bindings, and(eq(bindings.id, shares.bindingId), isNull(bindings.endedAt)))
        .where(and(eq(shares.granteeId, userId), isNull(shares.revokedAt), sql`'ALARMS' = any(${shares.permissions})`));
      const rows = await unionAll(owned, shared);
      // Raw selections come back as the driver gives them (a string on some drivers).
      return rows.map((r) => ({ bindingId: r.bindingId, deviceId: r.deviceId, owner: r.owner === true || String(r.owner) === 'true', expiresAt: r.expiresAt ? new Date(r.expiresAt) : null }));
    },

    /**
     * The alarm with what the user may do with it: `canSee` (owner, or a share with ALARMS) and
     * `canConfigure` (owner, or a share with CONFIGURE), both on the alarm's own, still open binding.
     */
    async accessOf(userId: string, now: Date, alarmId: string): Promise<{ alarm: AlarmRow; canSee: boolean; canConfigure: boolean } | null> {
      const [alarm] = await db.select().from(alarms).where(eq(alarms.id, alarmId)).limit(1);
      if (!alarm) return null;
      const [binding] = await db
        .select({ ownerId: bindings.ownerId })
        .from(bindings)
        .where(and(eq(bindings.id, alarm.bindingId), isNull(bindings.endedAt)))
        .limit(1);
      if (!binding) return { alarm, canSee: false, canConfigure: false };
      if (binding.ownerId === userId) return { alarm, canSee: true, canConfigure: true };
      const grants = await db
        .select({ permissions: shares.permissions })
        .from(shares)
        .where(
          and(eq(shares.bindingId, alarm.bindingId), eq(shares.granteeId, userId), isNull(shares.revokedAt), or(isNull(shares.expiresAt), gt(shares.expiresAt, now))),
        );
      const perms = new Set(grants.flatMap((g) => g.permissions));
      return { alarm, canSee: perms.has('ALARMS'), canConfigure: perms.has('CONFIGURE') };
    },

    /** Records the first acknowledgement (who and when); a second one changes nothing. Returns the row. */
    async acknowledge(alarmId: string, userId: string, now: Date): Promise<AlarmRow | null> {
      const [updated] = await db
        .update(alarms)
        .set({ acknowledgedAt: now, acknowledgedBy: userId })
        .where(and(eq(alarms.id, alarmId), isNull(alarms.acknowledgedAt)))
        .returning();
      if (updated) return updated;
      const [row] = await db.select().from(alarms).where(eq(alarms.id, alarmId)).limit(1);
      return row ?? null;
    },

    /** Contact fields of users (the service decides what a viewer may see). */
    async usersByIds(ids: readonly string[]): Promise<Array<{ id: string; email: string | null; phone: string | null; displayName: string | null }>> {
      if (ids.length === 0) return [];
      const { users } = tables;
      return db
        .select({ id: users.id, email: users.email, phone: users.phone, displayName: users.displayName })
        .from(users)
        .where(inArray(users.id, [...ids]));
    },

    /**
     * Deletes alarms and receipts received before `cutoff`, at most `batch` of each per call;
     * returns how many alarms went. Retention calls it until it returns less than `batch`.
     */
    async pruneBefore(cutoff: Date, batch = 5000): Promise<number> {
      const oldAlarms = db.select({ id: alarms.id }).from(alarms).where(lt(alarms.receivedAt, cutoff)).limit(batch);
      const deleted = await db.delete(alarms).where(inArray(alarms.id, oldAlarms)).returning({ id: alarms.id });
      const oldReceipts = db
        .select({ deviceId: alarmReceipts.deviceId, key: alarmReceipts.key })
        .from(alarmReceipts)
        .where(lt(alarmReceipts.receivedAt, cutoff))
        .limit(batch);
      await db.delete(alarmReceipts).where(sql`(${alarmReceipts.deviceId}, ${alarmReceipts.key}) in ${oldReceipts}`);
      return deleted.length;
    },

    cursorOf,
  };
}

export type AlarmStore = ReturnType<typeof createAlarmStore>;

/**
 * The public face of an alarm row at time `now`: an open alarm with no post for the quiet window
 * has ended (at its last post's time) even before the sweeper writes that down.
 */
export function alarmEndedAt(row: Pick<AlarmRow, 'endedAt' | 'lastPostAt' | 'lastPostDeviceAt'>, now: Date, quietEndS: number): Date | null {
  if (row.endedAt) return row.endedAt;
  return now.getTime() - row.lastPostAt.getTime() >= quietEndS * 1000 ? (row.lastPostDeviceAt ?? row.lastPostAt) : null;
}
