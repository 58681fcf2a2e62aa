import { randomUUID } from 'node:crypto';
import { and, desc, asc, eq, gt, gte, inArray, isNotNull, isNull, lt, or, sql, type SQL } from 'drizzle-orm';
import { unionAll } from 'drizzle-orm/pg-core';
import type { Logger } from 'pino';
import { tables, type Db, type DbHandle } from '../../db/index';
import type { AlarmDetails } from '../../db/schema/alarms';
import type { AlarmType } from './alarm-type';
import { shareIsActive, usersByIds } from '../../devices/catalog/access';
import { encodeAlarmCursor, type AlarmCursor } from './alarm-cursor';
import type { EventBus } from '../bus/event-bus';

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
  /** The device's clock; null when it sent none or an unparseable one. A time no timestamp column can hold (outside years 1..9999) is stored as unknown. */
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
 * - `created`: a new alarm; `alarm.created` is published after the commit (one per commit, for its newest alarm).
 * - `coalesced`: an active repeat within the quiet window updated the open alarm.
 * - `ended`: an inactive post ended the open alarm.
 * - `duplicate`: a post with the same identity was stored before, or the post is a retry of one
 *   that already made an alarm (same device, channel, event type, region, device time and
 *   activePostCount, within the retry window): the answer the device missed, given again.
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
  /** Most posts one group commit takes (default 200). */
  maxBatch?: number;
  /** Group commits running at once, each on its own connection (default 4). */
  batchesInFlight?: number;
  /** The database handle's prepared-statement runner: enables the one-round-trip path for new alarms. */
  prepared?: DbHandle['prepared'];
  /**
   * A post without identity that repeats, within this many ms, the device time and
   * activePostCount of a post that made an alarm (or of an alarm's last post) is that post
   * resent, not a new event (default 60,000). Only posts that carry a device time are recognised.
   */
  retryWindowMs?: number;
}

type RecordResult = { outcome: RecordOutcome; alarm: AlarmRow | null };

/** A post waiting for its group commit. */
interface PendingPost {
  deviceId: string;
  post: AlarmPost;
  /** The receipt key: the post's identity, else its retry key (`r:`, see {@link retryKeyOf}), else null. */
  key: string | null;
  /** The gateway's time when the post arrived. */
  now: Date;
  resolve(result: RecordResult): void;
  reject(err: unknown): void;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** Receipt keys that only de-duplicate within the retry window, and are recorded only for posts that made an alarm. */
const isRetryKey = (key: string) => key.startsWith('r:');

/**
 * The retry identity of an active post without identity but with a device time: a device
 * resending a post it got no answer for sends the same channel, type, region, time and count.
 */
function retryKeyOf(post: AlarmPost): string | null {
  if (post.identity || post.state !== 'active' || !post.deviceTime) return null;
  return `r:${post.channel}:${post.eventType}:${post.regionId ?? ''}:${post.deviceTime.getTime()}:${post.activePostCount}`;
}

/** NUL (refused by Postgres text and jsonb) and unpaired surrogates (refused by jsonb). */
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const UNSTORABLE_ALL = new RegExp(UNSTORABLE.source, 'g');
function storableText<T extends string | null | undefined>(s: T): T {
  return (typeof s === 'string' && UNSTORABLE.test(s) ? s.replace(UNSTORABLE_ALL, '\ufffd') : s) as T;
}

/** Years a timestamp column takes as the ISO text this store sends (JS writes others as `+010000-...`, and Postgres has no year 0). */
function storableTime(d: Date | null): Date | null {
  if (!d || !Number.isFinite(d.getTime())) return null;
  const y = d.getUTCFullYear();
  return y >= 1 && y <= 9999 ? d : null;
}

/**
 * The post as the database can hold it, whatever a door let through: a device time out of
 * range becomes unknown (the receive time stays), text loses what Postgres refuses. Input can
 * then never fail the write, so it never earns a 5xx or a "resend" (which the device would
 * repeat forever).
 */
function storablePost(post: AlarmPost): AlarmPost {
  let details = post.details;
  if (details) {
    for (const [k, v] of Object.entries(details)) {
      if (typeof v === 'string' && UNSTORABLE.test(v)) details = { ...details, [k]: storableText(v) };
    }
  }
  return {
    ...post,
    eventType: storableText(post.eventType),
    rawType: storableText(post.rawType),
    regionId: storableText(post.regionId),
    description: storableText(post.description),
    channelName: storableText(post.channelName),
    identity: storableText(post.identity),
    deviceTime: storableTime(post.deviceTime),
    details,
  };
}
const openKeyOf = (deviceId: string, channel: number, eventType: string, regionId: string | null) => `${deviceId}\u0000${channel}\u0000${eventType}\u0000${regionId ?? ''}`;

/** A new alarm's row as its first post makes it (`xid`/`seq` come from the insert). */
function newAlarmRow(deviceId: string, bindingId: string, post: AlarmPost, now: Date): AlarmRow {
  return {
    id: randomUUID(),
    seq: 0,
    xid: 0,
    deviceId,
    bindingId,
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
    endedAt: null,
    activePostCount: post.activePostCount,
    postCount: 1,
    acknowledgedAt: null,
    acknowledgedBy: null,
    details: post.details,
  };
}

/**
 * The fast path's statement (see storeBatch): fixed text, so it is prepared once per connection.
 * Times travel as text: the driver's timestamp-array serializer is not usable under drizzle.
 */
const INSERT_NEW_ALARMS = `with v as (
    select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
      $11::text[], $12::text[], $13::text[], $14::int[], $15::text[], $16::text[])
      as v(id, device_id, source, channel, event_type, raw_type, alarm_type, region_id, description, channel_name,
        started_at, received_at, last_post_device_at, active_post_count, details, identity)
  ),
  b as (
    select id, device_id from bindings where device_id in (select device_id from v) and ended_at is null order by id for no key update
  ),
  fresh as materialized (
    select * from v where v.identity is null or not exists (select 1 from alarm_receipts r where r.device_id = v.device_id and r.key = v.identity
      and (left(v.identity, 2) <> 'r:' or r.received_at >= v.received_at::timestamptz - $17::interval))
  ),
  ins as (
    insert into alarms (id, device_id, binding_id, source, channel, event_type, raw_type, alarm_type, region_id, description, channel_name,
      started_at, received_at, last_post_at, last_post_device_at, active_post_count, post_count, details)
    select v.id, v.device_id, b.id, v.source, v.channel, v.event_type, v.raw_type, v.alarm_type, v.region_id, v.description, v.channel_name,
      v.started_at::timestamptz, v.received_at::timestamptz, v.received_at::timestamptz, v.last_post_device_at::timestamptz, v.active_post_count, 1, v.details::jsonb
    from fresh v join b on b.device_id = v.device_id
    on conflict (device_id, channel, event_type, (coalesce(region_id, ''))) where ended_at is null do nothing
    returning id, binding_id, xid, seq
  ),
  rec as (
    insert into alarm_receipts (device_id, key, alarm_id, received_at)
    select v.device_id, v.identity, v.id, v.received_at::timestamptz from ins join v on v.id = ins.id where v.identity is not null
    on conflict (device_id, key) do update set alarm_id = excluded.alarm_id, received_at = excluded.received_at
      where left(alarm_receipts.key, 2) = 'r:'
    returning alarm_id
  )
  select ins.id, ins.binding_id, ins.xid, ins.seq,
    1 / (v.identity is null or ins.id in (select alarm_id from rec))::int as receipted
  from ins join v on v.id = ins.id`;

/**
 * The statement's horizon: the smallest xid its snapshot sees running in THIS database, or the
 * snapshot's xmax when none is. Every transaction with a smaller xid had ended when the snapshot
 * was taken (its rows are visible to the statement, or never will be), or runs in another database
 * and so cannot write an alarm. The cluster-wide xmin would also wait for other databases'
 * transactions (another application's migration or batch job on a shared server held alarms back
 * for hundreds of milliseconds in measurements). A running xid counts as another database's only
 * when the server's activity view (`pg_stat_get_activity`) shows a backend of another database
 * holding it; one that ended meanwhile, or that the role may not see, counts as this database's
 * (later, never wrong). With nothing running (xmin = xmax) the activity view is not read.
 */
const snapshotHorizon = sql`(select case when pg_snapshot_xmin(s) = pg_snapshot_xmax(s) then (pg_snapshot_xmax(s)::text)::bigint else coalesce(
    (select min((x::text)::bigint) from pg_snapshot_xip(s) as x
      where not exists (select 1 from pg_stat_get_activity(null) a
        where (a.backend_xid::text)::bigint = (x::text)::bigint % 4294967296
          and a.datid <> (select oid from pg_database where datname = current_database()))),
    (pg_snapshot_xmax(s)::text)::bigint) end
  from pg_current_snapshot() as s)`;

/** Alarms whose inserting transaction precedes every transaction of this database still running: nothing can commit before them any more. */
const belowHorizon = sql`${alarms.xid} < ${snapshotHorizon}`;

const cursorOf = (row: Pick<AlarmRow, 'xid' | 'seq'>): string => encodeAlarmCursor({ xid: row.xid, seq: row.seq });

/**
 * The alarm store: exactly-once storage with coalescing, the visibility rules, and cursors.
 *
 * Cursor design: every row records the id of the transaction that inserted it (`xid`) next to a
 * sequence number (`seq`), and is ordered by `(xid, seq)`. Readers only return rows whose `xid` is
 * below the horizon of the statement's own snapshot (`snapshotHorizon`: every transaction of this
 * database with a smaller id has ended), so no row can ever commit behind a cursor a reader has
 * already been given. (A plain `seq > cursor` read skips rows whose transaction took its sequence
 * value early but committed late.) The price is that an alarm becomes readable only once every
 * transaction of this database older than it has ended, which is milliseconds for the short
 * transactions this gateway runs.
 */
export function createAlarmStore(deps: AlarmStoreDeps) {
  const { db, clock, bus, log } = deps;
  const quietMs = deps.quietEndS * 1000;
  const retryWindowMs = deps.retryWindowMs ?? 60_000;
  const retryInterval = `${retryWindowMs} milliseconds`;

  /** The post repeats the alarm's last post (device time and count) within the retry window. */
  function isRetryOfLastPost(current: AlarmRow, post: AlarmPost, now: Date): boolean {
    return (
      post.state === 'active' &&
      !post.identity &&
      post.deviceTime !== null &&
      current.lastPostDeviceAt !== null &&
      current.lastPostDeviceAt.getTime() === post.deviceTime.getTime() &&
      current.activePostCount === post.activePostCount &&
      now.getTime() - current.lastPostAt.getTime() < retryWindowMs
    );
  }
  /** Handed the rows of each commit on this node that created alarms, before the bus hears of it. */
  const localListeners = new Set<(rows: AlarmRow[]) => void>();

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
          shareIsActive(shares, now),
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

  /**
   * Stores a batch of posts in one transaction and returns each post's result, in order. Same
   * rules as storing them one by one: the bindings are locked first (in binding-id order, so two
   * batches never deadlock), then the open alarms of every key and the receipts of every identity
   * are read once, the posts are applied in arrival order in memory, and the changes are written
   * with one update (existing alarms), one insert (new alarms) and one insert (receipts).
   */
  async function storeGeneral(batch: PendingPost[]): Promise<RecordResult[]> {
    const results = await db.transaction(async (tx) => {
      const deviceIds = [...new Set(batch.map((p) => p.deviceId))];
      const bound = await tx
        .select({ id: bindings.id, deviceId: bindings.deviceId })
        .from(bindings)
        .where(and(inArray(bindings.deviceId, deviceIds), isNull(bindings.endedAt)))
        .orderBy(bindings.id)
        .for('no key update');
      const bindingOf = new Map(bound.map((b) => [b.deviceId, b.id]));
      const live = batch.filter((p) => bindingOf.has(p.deviceId));

      const keys = new Map<string, PendingPost>();
      for (const p of live) keys.set(openKeyOf(p.deviceId, p.post.channel, p.post.eventType, p.post.regionId), p);
      const openRows = keys.size
        ? await tx
            .select()
            .from(alarms)
            .where(
              and(
                isNull(alarms.endedAt),
                sql`(${alarms.deviceId}, ${alarms.channel}, ${alarms.eventType}, coalesce(${alarms.regionId}, '')) in (${sql.join(
                  [...keys.values()].map((p) => sql`(${p.deviceId}::uuid, ${p.post.channel}::int, ${p.post.eventType}::text, ${p.post.regionId ?? ''}::text)`),
                  sql`, `,
                )})`,
              ),
            )
        : [];
      const identified = live.filter((p) => p.key);
      const seen = new Set<string>();
      if (identified.length) {
        const rows = await tx
          .select({ deviceId: alarmReceipts.deviceId, key: alarmReceipts.key, receivedAt: alarmReceipts.receivedAt })
          .from(alarmReceipts)
          .where(sql`(${alarmReceipts.deviceId}, ${alarmReceipts.key}) in (${sql.join(identified.map((p) => sql`(${p.deviceId}::uuid, ${p.key}::text)`), sql`, `)})`);
        const retrySince = Math.min(...identified.map((p) => p.now.getTime())) - retryWindowMs;
        for (const r of rows) if (!isRetryKey(r.key) || r.receivedAt.getTime() >= retrySince) seen.add(`${r.deviceId}\u0000${r.key}`);
      }

      // Applies the posts in arrival order to the open alarms in memory.
      const open = new Map<string, AlarmRow>();
      for (const row of openRows) open.set(openKeyOf(row.deviceId, row.channel, row.eventType, row.regionId), row);
      const existing = new Set<AlarmRow>(openRows);
      const changed = new Set<AlarmRow>();
      const created: AlarmRow[] = [];
      const receipts: Array<typeof alarmReceipts.$inferInsert> = [];
      const out: Array<{ outcome: RecordOutcome; alarm: AlarmRow | null }> = [];
      for (const { deviceId, post, now, key: receiptKey } of batch) {
        const bindingId = bindingOf.get(deviceId);
        if (!bindingId) {
          out.push({ outcome: 'unbound', alarm: null });
          continue;
        }
        if (receiptKey) {
          const seenKey = `${deviceId}\u0000${receiptKey}`;
          if (seen.has(seenKey)) {
            out.push({ outcome: 'duplicate', alarm: null });
            continue;
          }
          seen.add(seenKey);
        }
        const key = openKeyOf(deviceId, post.channel, post.eventType, post.regionId);
        let current = open.get(key);
        // The open alarm's last post sent again after the quiet window: the answer was lost, not a new event.
        if (current && current.bindingId === bindingId && isRetryOfLastPost(current, post, now)) {
          out.push({ outcome: 'duplicate', alarm: null });
          continue;
        }
        // An alarm quiet for the window, or one of an earlier binding, has ended: close it first.
        if (current && (current.bindingId !== bindingId || now.getTime() - current.lastPostAt.getTime() >= quietMs)) {
          current.endedAt = current.lastPostDeviceAt ?? current.lastPostAt;
          if (existing.has(current)) changed.add(current);
          open.delete(key);
          current = undefined;
        }
        let outcome: RecordOutcome;
        let alarm: AlarmRow | null = null;
        if (post.state === 'inactive') {
          if (current) {
            current.endedAt = post.deviceTime ?? now;
            current.lastPostAt = now;
            current.lastPostDeviceAt = post.deviceTime;
            open.delete(key);
            alarm = current;
            outcome = 'ended';
          } else {
            outcome = 'stray-inactive';
          }
        } else if (current) {
          current.lastPostAt = now;
          current.lastPostDeviceAt = post.deviceTime;
          if (post.activePostCount > 0) current.activePostCount = post.activePostCount;
          current.postCount += 1;
          alarm = current;
          outcome = 'coalesced';
        } else {
          alarm = newAlarmRow(deviceId, bindingId, post, now);
          created.push(alarm);
          open.set(key, alarm);
          outcome = 'created';
        }
        if (alarm && existing.has(alarm)) changed.add(alarm);
        if (receiptKey && (!isRetryKey(receiptKey) || outcome === 'created')) receipts.push({ deviceId, key: receiptKey, alarmId: alarm?.id ?? null, receivedAt: now });
        out.push({ outcome, alarm });
      }

      // Existing alarms first: one closed here frees its key for a new alarm inserted below. An
      // alarm the quiet-end sweeper ended meanwhile keeps its end.
      if (changed.size) {
        const values = [...changed].map(
          (r) => sql`(${r.id}::uuid, ${iso(r.endedAt)}::timestamptz, ${iso(r.lastPostAt)}::timestamptz, ${iso(r.lastPostDeviceAt)}::timestamptz, ${r.activePostCount}::int, ${r.postCount}::int)`,
        );
        await tx.execute(sql`update alarms as a set ended_at = coalesce(a.ended_at, v.ended_at), last_post_at = v.last_post_at, last_post_device_at = v.last_post_device_at,
          active_post_count = v.active_post_count, post_count = v.post_count
          from (values ${sql.join(values, sql`, `)}) as v(id, ended_at, last_post_at, last_post_device_at, active_post_count, post_count) where a.id = v.id`);
      }
      if (created.length) {
        const rows = await tx
          .insert(alarms)
          .values(created.map(({ seq: _seq, xid: _xid, acknowledgedAt: _a, acknowledgedBy: _b, ...row }) => row))
          .returning({ id: alarms.id, xid: alarms.xid, seq: alarms.seq });
        const byId = new Map(rows.map((r) => [r.id, r]));
        for (const row of created) {
          const r = byId.get(row.id)!;
          row.xid = r.xid;
          row.seq = r.seq;
        }
      }
      if (receipts.length) {
        // A retry key seen before only outside the window is taken over; an identity is never.
        await tx
          .insert(alarmReceipts)
          .values(receipts)
          .onConflictDoUpdate({
            target: [alarmReceipts.deviceId, alarmReceipts.key],
            set: { alarmId: sql`excluded.alarm_id`, receivedAt: sql`excluded.received_at` },
            setWhere: sql`left(${alarmReceipts.key}, 2) = 'r:'`,
          });
      }
      return out;
    });

    publishCreated(results);
    return results;
  }

  /**
   * One `alarm.created` per commit, for its newest alarm: the tailers only need to know how far
   * to read (they read every row up to that cursor), and one message per alarm cost both nodes a
   * Redis message each at thousands of alarms per second.
   */
  function publishCreated(results: RecordResult[]) {
    const rows: AlarmRow[] = [];
    for (const r of results) if (r.outcome === 'created' && r.alarm) rows.push(r.alarm);
    if (!rows.length) return;
    rows.sort((a, b) => a.xid - b.xid || a.seq - b.seq);
    const newest = rows[rows.length - 1]!;
    const cursor = cursorOf(newest);
    // This node's tailer gets the committed rows at once (copies: the caller keeps its own); other
    // nodes hear through the bus (a Redis round trip later) and read them.
    if (localListeners.size) {
      const handed = rows.map((r) => ({ ...r }));
      for (const listener of localListeners) {
        try {
          listener(handed);
        } catch (err) {
          log.warn({ err }, 'alarm.created local listener failed');
        }
      }
    }
    try {
      bus.publish('alarm.created', { alarmId: newest.id, deviceId: newest.deviceId, bindingId: newest.bindingId, cursor });
    } catch (err) {
      log.warn({ err, alarmId: newest.id }, 'alarm.created publish failed');
    }
  }

  /**
   * The common case in one prepared statement (one round trip, autocommit): active posts that open
   * a new alarm. Each is inserted unless its key already has an open alarm (the open-key index
   * says so), its device has no open binding, or its identity was stored before; those, and every
   * later post of the same key in the batch, go through the general path afterwards, in arrival
   * order. The bindings are locked as in the general path, so an unbind waits for the insert. Two
   * statements racing with one identity: the loser's receipt insert finds the winner's row, and it
   * fails as a whole (division by zero) rather than keep an alarm without its receipt.
   */
  async function storeFast(batch: PendingPost[]): Promise<PendingPost[]> {
    if (!deps.prepared) return batch;
    const keysSeen = new Set<string>();
    const fast: Array<{ index: number; row: AlarmRow; key: string | null }> = [];
    batch.forEach(({ deviceId, post, now, key }, index) => {
      const openKey = openKeyOf(deviceId, post.channel, post.eventType, post.regionId);
      const first = !keysSeen.has(openKey);
      keysSeen.add(openKey);
      if (first && post.state === 'active') fast.push({ index, row: newAlarmRow(deviceId, '', post, now), key });
    });
    if (!fast.length) return batch;
    const column = <T>(pick: (r: AlarmRow) => T) => fast.map((f) => pick(f.row));
    const rows = await deps.prepared(INSERT_NEW_ALARMS, [
      column((r) => r.id),
      column((r) => r.deviceId),
      column((r) => r.source),
      column((r) => r.channel),
      column((r) => r.eventType),
      column((r) => r.rawType),
      column((r) => r.alarmType),
      column((r) => r.regionId),
      column((r) => r.description),
      column((r) => r.channelName),
      column((r) => r.startedAt.toISOString()),
      column((r) => r.receivedAt.toISOString()),
      column((r) => iso(r.lastPostDeviceAt)),
      column((r) => r.activePostCount),
      column((r) => (r.details === null ? null : JSON.stringify(r.details))),
      fast.map((f) => f.key),
      retryInterval,
    ]);
    const inserted = new Map(rows.map((r) => [String(r.id), r]));
    const done = new Set<number>();
    const created: RecordResult[] = [];
    for (const { index, row } of fast) {
      const r = inserted.get(row.id);
      if (!r) continue;
      row.bindingId = String(r.binding_id);
      row.xid = Number(r.xid);
      row.seq = Number(r.seq);
      const result: RecordResult = { outcome: 'created', alarm: row };
      batch[index]!.resolve(result);
      created.push(result);
      done.add(index);
    }
    publishCreated(created);
    return batch.filter((_, i) => !done.has(i));
  }

  /**
   * Group commit: posts that arrive while earlier batches are being written wait and go together
   * into the next one. Nothing is answered before its own write committed, and a post whose
   * write committed is answered from it whatever happens to the rest of its batch: posts the
   * fast path stored are settled at once; when the general transaction fails, its posts are
   * stored one by one, so one bad post fails alone. A write whose commit was lost on the way
   * back (the connection died) is found again by the retry: identities and retry keys make it a
   * `duplicate`, never a second alarm.
   */
  const writer = (() => {
    const maxBatch = Math.max(1, deps.maxBatch ?? 200);
    const maxInFlight = Math.max(1, deps.batchesInFlight ?? 4);
    const queue: PendingPost[] = [];
    let inFlight = 0;
    let scheduled = false;

    async function commit(batch: PendingPost[]) {
      let rest: PendingPost[];
      try {
        rest = await storeFast(batch);
      } catch (err) {
        // Nothing of it is answered yet: the general path decides each post, and sees what did commit.
        log.warn({ err, posts: batch.length }, 'alarm fast insert failed; storing through the general path');
        rest = batch;
      }
      if (!rest.length) return;
      try {
        const results = await storeGeneral(rest);
        rest.forEach((p, i) => p.resolve(results[i]!));
      } catch (err) {
        if (rest.length === 1) return rest[0]!.reject(err);
        log.warn({ err, posts: rest.length }, 'alarm group commit failed; storing its posts one by one');
        for (const p of rest) {
          try {
            p.resolve((await storeGeneral([p]))[0]!);
          } catch (e) {
            p.reject(e);
          }
        }
      }
    }

    /** Devices with posts in a batch being written, and how many such batches. */
    const busy = new Map<string, number>();

    /**
     * The next batch: queued posts in arrival order, except those of a device whose earlier posts
     * are still being written in another batch (with every later post of that device), so one
     * device's posts are stored in the order they came even when batches run side by side.
     */
    function takeBatch(): PendingPost[] {
      if (busy.size === 0 && queue.length <= maxBatch) return queue.splice(0);
      const batch: PendingPost[] = [];
      const rest: PendingPost[] = [];
      const held = new Set<string>();
      for (const p of queue) {
        if (batch.length < maxBatch && !busy.has(p.deviceId) && !held.has(p.deviceId)) batch.push(p);
        else {
          held.add(p.deviceId);
          rest.push(p);
        }
      }
      queue.length = 0;
      queue.push(...rest);
      return batch;
    }

    function flush() {
      scheduled = false;
      while (inFlight < maxInFlight && queue.length) {
        const batch = takeBatch();
        if (!batch.length) break; // every queued device waits for its batch in flight; its end flushes again
        const devices = new Set(batch.map((p) => p.deviceId));
        for (const d of devices) busy.set(d, (busy.get(d) ?? 0) + 1);
        inFlight++;
        void commit(batch).finally(() => {
          for (const d of devices) {
            const n = busy.get(d)! - 1;
            if (n) busy.set(d, n);
            else busy.delete(d);
          }
          inFlight--;
          schedule();
        });
      }
    }

    // Waits for the current turn of the event loop, so posts that arrived together share a batch.
    function schedule() {
      if (scheduled || inFlight >= maxInFlight || queue.length === 0) return;
      scheduled = true;
      setImmediate(flush);
    }

    return {
      submit(deviceId: string, post: AlarmPost): Promise<RecordResult> {
        return new Promise<RecordResult>((resolve, reject) => {
          const stored = storablePost(post);
          queue.push({ deviceId, post: stored, key: stored.identity ?? retryKeyOf(stored), now: clock(), resolve, reject });
          schedule();
        });
      },
    };
  })();

  return {
    /**
     * Hands `listener` the alarms every commit on this node created, in cursor order, once the
     * commit succeeded (a failed commit hands nothing); returns the unsubscribe. The rows are as
     * committed; they become final (readable by the tailer) only once the horizon passes them.
     */
    onCreatedHere(listener: (rows: AlarmRow[]) => void): () => void {
      localListeners.add(listener);
      return () => localListeners.delete(listener);
    },
    /**
     * Stores one post durably (the promise resolves after the commit) and returns what it did.
     * Posts arriving together are group-committed: one transaction (and a handful of statements)
     * per batch instead of per post, each post answered only once its batch committed. Posts of
     * one device are serialised (a lock on its open binding), so concurrent posts coalesce
     * correctly and a resent post is stored once. `alarm.created` is published after the commit
     * (one per commit, naming its newest alarm). Throws only on database failure (nothing of that
     * post is then stored; the device retries).
     */
    record(deviceId: string, post: AlarmPost): Promise<{ outcome: RecordOutcome; alarm: AlarmRow | null }> {
      return writer.submit(deviceId, post);
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
     * (the node's tailer) delivers everything after `until`. `until` must be a position a tail read
     * has passed (every row up to it is final), so no horizon applies below it. A reader that keeps passing the last
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
      const where: SQL[] = [inArray(alarms.bindingId, visibleBindings(userId, now, 'ALARMS')), ...filterConditions(filter)];
      if (after) where.push(sql`(${alarms.xid}, ${alarms.seq}) > (${after.xid}::bigint, ${after.seq}::bigint)`);
      // Rows up to a tail position are final already; this statement's own horizon could be lower
      // (a transaction of another database that ended between its snapshot and its look at the
      // backends counts as this database's), and would hide some of them.
      if (until) where.push(sql`(${alarms.xid}, ${alarms.seq}) <= (${until.xid}::bigint, ${until.seq}::bigint)`);
      else where.push(belowHorizon);
      return db
        .select()
        .from(alarms)
        .where(and(...where))
        .orderBy(asc(alarms.xid), asc(alarms.seq))
        .limit(limit);
    },

    /**
     * Every alarm after `after` (all users), oldest first, below the horizon, except the rows whose
     * id is in `skip` (rows this node already holds, see {@link onCreatedHere}): the node's tailer
     * (src/streams/live/alarm-tail.ts) reads this once per wake-up for all its subscribers.
     * `horizon` is the statement's own: every row with a smaller `xid` has committed or never
     * will, so `rows` plus the skipped rows below `horizon` are every row after `after`, up to
     * the last row returned when the read is full. Rows it returns are final.
     */
    async tailAfter(after: AlarmCursor, limit: number, skip: readonly string[] = []): Promise<{ rows: AlarmRow[]; horizon: number }> {
      // The page is ordered and limited on its own (an index range scan), then joined to the one
      // horizon row: a join around an unlimited scan would sort every row after `after` first.
      // The horizon is computed once and the page is read below that same value (a lateral join):
      // the tailer decides on its handed rows with the horizon the page was read with.
      const h = db
        .select({ horizon: sql<number>`${snapshotHorizon}`.as('horizon') })
        .from(sql`(select 1) as one`)
        .as('h');
      const where: SQL[] = [sql`${alarms.xid} < ${h.horizon}`, sql`(${alarms.xid}, ${alarms.seq}) > (${after.xid}::bigint, ${after.seq}::bigint)`];
      // One text parameter whatever the count, so the statement's text (and its prepared plan) stays the same.
      if (skip.length) where.push(sql`${alarms.id} <> all(${`{${skip.join(',')}}`}::uuid[])`);
      const page = db
        .select()
        .from(alarms)
        .where(and(...where))
        .orderBy(asc(alarms.xid), asc(alarms.seq))
        .limit(limit)
        .as('page');
      const got = await db
        .select({ horizon: h.horizon, alarm: page._.selectedFields })
        .from(h)
        .leftJoinLateral(page, sql`true`)
        .orderBy(asc(page.xid), asc(page.seq));
      const rows: AlarmRow[] = [];
      for (const r of got) if (r.alarm?.id) rows.push(r.alarm as AlarmRow);
      return { rows, horizon: Number(got[0]?.horizon ?? 0) };
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
          and(eq(shares.bindingId, alarm.bindingId), eq(shares.granteeId, userId), shareIsActive(shares, now)),
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
    usersByIds: (ids: readonly string[]) => usersByIds(db, ids),

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
