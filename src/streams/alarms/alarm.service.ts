import { z } from 'zod';
import { requireCaller, type Caller } from '../../accounts/caller';
import type { GranteeView } from '../../devices/catalog/device.model';
import { ALARM_TYPES, type AlarmType } from './alarm-type';
import { CommonError } from '../../lib/domain-error';
import { isUuid, parseInput } from '../../lib/validate';
import { decodeAlarmCursor } from './alarm-cursor';
import { alarmEndedAt, type AlarmRow, type AlarmStore } from './alarm-store';

/** An alarm as the API shows it. `deviceId`, `bindingId` and `acknowledgedById` feed the nested fields. */
export interface AlarmView {
  id: string;
  cursor: string;
  deviceId: string;
  bindingId: string;
  channel: number;
  type: AlarmType;
  rawType: string;
  description: string | null;
  startedAt: Date;
  endedAt: Date | null;
  activePostCount: number;
  acknowledgedAt: Date | null;
  acknowledgedById: string | null;
}

export interface AlarmEdge {
  cursor: string;
  node: AlarmView;
}

export interface AlarmPage {
  edges: AlarmEdge[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

/**
 * Who acknowledged an alarm, as other viewers of the alarm may see them: id and display name
 * (email and phone only when it is the caller); `createdAt` is the acknowledgement's time, not
 * the account's, and `totpEnabled` is always false: the same card a share's owner sees of a grantee.
 */
export type AcknowledgerView = GranteeView;

export const MAX_ALARM_PAGE = 100;
const DEFAULT_PAGE = 50;

const listInput = z.object({
  first: z
    .number()
    .int()
    .min(1, 'must be between 1 and 100')
    .max(MAX_ALARM_PAGE, 'must be between 1 and 100')
    .nullish()
    .transform((v) => v ?? DEFAULT_PAGE),
  after: z.string().max(200, 'not a valid cursor').nullish(),
  filter: z
    .object({
      // Ids that cannot exist match nothing, like ids of devices the caller does not see.
      deviceIds: z
        .array(z.string().max(100, 'too long'))
        .max(100, 'at most 100 device ids')
        .nullish()
        .transform((ids) => (ids ? ids.filter(isUuid) : ids)),
      types: z.array(z.enum(ALARM_TYPES)).max(ALARM_TYPES.length * 2, 'too many types').nullish(),
      since: z.date().nullish(),
      acknowledged: z.boolean().nullish(),
    })
    .nullish(),
});

export interface AlarmServiceDeps {
  clock: () => Date;
  store: AlarmStore;
  /** ALARM_QUIET_END_S: an alarm with no post for this long shows as ended. */
  quietEndS: number;
}

/** Reading and acknowledging alarms, with the visibility rules of the alarm's own binding. */
export function createAlarmService(deps: AlarmServiceDeps) {
  const { clock, store } = deps;

  const view = (row: AlarmRow, now: Date): AlarmView => ({
    id: row.id,
    cursor: store.cursorOf(row),
    deviceId: row.deviceId,
    bindingId: row.bindingId,
    channel: row.channel,
    type: (ALARM_TYPES as readonly string[]).includes(row.alarmType) ? (row.alarmType as AlarmType) : 'OTHER',
    rawType: row.rawType,
    description: row.description,
    startedAt: row.startedAt,
    endedAt: alarmEndedAt(row, now, deps.quietEndS),
    activePostCount: row.activePostCount > 0 ? row.activePostCount : row.postCount,
    acknowledgedAt: row.acknowledgedAt,
    acknowledgedById: row.acknowledgedBy,
  });

  return {
    /** The API's view of a stored row at `now` (the live streams map the tailer's rows with it). */
    toView: view,

    /**
     * Newest first: alarms of bindings the caller owns, or holds an unrevoked, unexpired share of
     * with ALARMS; never those of earlier or later bindings of the same device. BAD_INPUT for a
     * bad `first` (1..100) or cursor.
     */
    async list(caller: Caller | null, args: { first?: unknown; after?: unknown; filter?: unknown }): Promise<AlarmPage> {
      const c = requireCaller(caller, 'ALARMS_READ');
      const v = parseInput(listInput, { first: args.first, after: args.after, filter: args.filter ?? null });
      const before = v.after ? decodeAlarmCursor(v.after) : null;
      if (v.after && !before) throw CommonError.badInput('after: not a valid cursor');
      const now = clock();
      const rows = await store.pageForUser(c.userId, now, before, v.filter, v.first + 1);
      const edges = rows.slice(0, v.first).map((r) => {
        const node = view(r, now);
        return { cursor: node.cursor, node };
      });
      return { edges, pageInfo: { hasNextPage: rows.length > v.first, endCursor: edges.at(-1)?.cursor ?? null } };
    },

    /**
     * Acknowledges an alarm for the owner or a grantee with CONFIGURE, recording who and when (the
     * first acknowledgement stands). NOT_FOUND when the caller may not see the alarm, FORBIDDEN
     * when they see it (ALARMS) but lack CONFIGURE.
     */
    async acknowledge(caller: Caller | null, id: unknown): Promise<AlarmView> {
      const c = requireCaller(caller, 'DEVICES_WRITE');
      const alarmId = parseInput(z.object({ id: z.string().max(100, 'too long') }), { id }).id;
      if (!isUuid(alarmId)) throw CommonError.notFound('Alarm not found');
      const now = clock();
      const access = await store.accessOf(c.userId, now, alarmId);
      if (!access || !access.canSee) throw CommonError.notFound('Alarm not found');
      if (!access.canConfigure) throw CommonError.forbidden('This share lacks the CONFIGURE permission');
      const row = await store.acknowledge(alarmId, c.userId, now);
      if (!row) throw CommonError.notFound('Alarm not found');
      return view(row, now);
    },

    /** Batch for Alarm.acknowledgedBy (DataLoader): one statement for any number of alarms. */
    async acknowledgersOf(caller: Caller | null, alarms: readonly AlarmView[]): Promise<Array<AcknowledgerView | null>> {
      const c = requireCaller(caller);
      const ids = [...new Set(alarms.map((a) => a.acknowledgedById).filter((x): x is string => !!x))];
      const users = await store.usersByIds(ids);
      const byId = new Map(users.map((u) => [u.id, u]));
      return alarms.map((a) => {
        const u = a.acknowledgedById ? byId.get(a.acknowledgedById) : undefined;
        if (!u || !a.acknowledgedAt) return null;
        const self = u.id === c.userId;
        return { id: u.id, email: self ? u.email : null, phone: self ? u.phone : null, displayName: u.displayName, totpEnabled: false, createdAt: a.acknowledgedAt };
      });
    },
  };
}

export type AlarmService = ReturnType<typeof createAlarmService>;
