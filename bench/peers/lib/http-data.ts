// The data and context every S1a contender serves: one account with 60 devices (every fifth shared
// with two people), an in-memory bearer lookup, and the devices service's read methods over that
// data. Vigil gets it through AppOverrides.services; the peers build the same context by hand.
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import type { Caller } from '../../../src/accounts/caller';
import type { DeviceConnection, DeviceView, ShareView } from '../../../src/devices/catalog/index';
import { CommonError } from '../../../src/lib/domain-error';
import { createLoaders, type GraphqlContext } from '../../../src/schema/context';
import type { Services } from '../../../src/services';

export const BENCH_TOKEN = 'bench-session-token-0123456789abcdef';
export const DEVICE_COUNT = 60;

/** The S1a/S6 document: a device card as the app's device list shows it. */
export const DEVICES_QUERY = `query DeviceCards($first: Int) {
  devices(first: $first) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      cursor
      node {
        id name serial model firmware status lastSeenAt role permissions channels
        shares { id permissions expiresAt grantee { id displayName email } }
      }
    }
  }
}`;
export const DEVICES_BODY = JSON.stringify({ query: DEVICES_QUERY, variables: { first: 50 }, operationName: 'DeviceCards' });

const caller: Caller = { kind: 'session', userId: '7b0c5c1e-2f4d-4a51-9b6e-2d1f0a9c0001', sessionId: '7b0c5c1e-2f4d-4a51-9b6e-2d1f0a9c0002' };
const sessions = new Map<string, Caller>([[BENCH_TOKEN, caller]]);

const t0 = Date.UTC(2026, 0, 1);
const devices: DeviceView[] = Array.from({ length: DEVICE_COUNT }, (_, i) => ({
  id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  serial: `DS-2CD2143G2-I20230101AAWRJ${String(10_000_000 + i)}`,
  model: i % 3 ? 'DS-2CD2143G2-I' : 'DS-7608NI-K2',
  firmware: 'V5.7.3 build 220112',
  channels: i % 3 ? 1 : 8,
  name: `Camera ${i + 1}`,
  status: (['ONLINE', 'OFFLINE', 'UNKNOWN'] as const)[i % 3]!,
  lastSeenAt: new Date(t0 + i * 60_000),
  boundAt: new Date(t0 + i * 1000),
  role: 'OWNER',
  permissions: ['LIVE_VIEW', 'PLAYBACK', 'ALARMS', 'CONFIGURE'],
  bindingId: `10000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
}));
const sharesByBinding = new Map<string, ShareView[]>(
  devices
    .filter((_, i) => i % 5 === 0)
    .map((d, i) => [
      d.bindingId,
      [0, 1].map((k) => ({
        id: `20000000-0000-4000-8000-${String(i * 2 + k).padStart(12, '0')}`,
        device: d,
        grantee: { id: `30000000-0000-4000-8000-${String(k).padStart(12, '0')}`, email: `family${k}@example.com`, phone: null, displayName: `Family ${k}`, totpEnabled: false as const, createdAt: new Date(t0) },
        permissions: k ? ['LIVE_VIEW' as const] : ['LIVE_VIEW' as const, 'ALARMS' as const],
        expiresAt: null,
        createdAt: new Date(t0),
      })),
    ]),
);

/** What a hand-written server does with a bearer: a map lookup. The same for every contender. */
export function authenticateInMemory(authorization: string | undefined | null): Promise<Caller | null> {
  if (!authorization || !authorization.startsWith('Bearer ')) return Promise.resolve(null);
  return Promise.resolve(sessions.get(authorization.slice(7)) ?? null);
}

const encodeCursor = (d: DeviceView) => Buffer.from(`${d.boundAt.getTime()}.${d.bindingId}`).toString('base64url');

/** devices(first, after) over the array: the same checks the real service makes on `first`. */
function listDevices(c: Caller | null, args: { first?: unknown; after?: unknown }): Promise<DeviceConnection> {
  if (!c) throw CommonError.unauthenticated();
  const first = args.first ?? 50;
  if (typeof first !== 'number' || !Number.isInteger(first) || first < 1 || first > 100) throw CommonError.badInput('first: must be 1..100');
  let start = 0;
  if (typeof args.after === 'string') {
    start = devices.findIndex((d) => encodeCursor(d) === args.after) + 1;
    if (start === 0) throw CommonError.badInput('after: not a cursor');
  }
  const page = devices.slice(start, start + first);
  const edges = page.map((node) => ({ cursor: encodeCursor(node), node }));
  return Promise.resolve({
    edges,
    pageInfo: { hasNextPage: start + first < devices.length, endCursor: edges.at(-1)?.cursor ?? null },
    countTotal: () => Promise.resolve(devices.length),
  });
}

function sharesOfDevices(c: Caller | null, views: readonly DeviceView[]): Promise<ShareView[][]> {
  if (!c) throw CommonError.unauthenticated();
  return Promise.resolve(views.map((v) => sharesByBinding.get(v.bindingId) ?? []));
}

function devicesByIds(c: Caller | null, ids: readonly string[]): Promise<Array<DeviceView | null>> {
  if (!c) throw CommonError.unauthenticated();
  return Promise.resolve(ids.map((id) => devices.find((d) => d.id === id) ?? null));
}

/** Vigil's services with the bearer lookup and device reads replaced by the in-memory ones. */
export function withMemoryData(built: Services): Services {
  return {
    ...built,
    auth: { ...built.auth, authenticate: authenticateInMemory },
    devices: { ...built.devices, listDevices, sharesOfDevices, devicesByIds },
  };
}

/** The peers have no other services; only what the document reaches is there. */
const peerServices = { devices: { listDevices, sharesOfDevices, devicesByIds }, alarms: {} } as unknown as Services;
const log = pino({ level: 'silent' });

/** The GraphQL context a peer builds per request, the same shape Vigil builds. */
export async function peerContext(authorization: string | undefined, ip: string): Promise<GraphqlContext> {
  const c = await authenticateInMemory(authorization);
  return { caller: c, meta: { ip, userAgent: null }, requestId: randomUUID(), services: peerServices, loaders: createLoaders(peerServices, c), log };
}
