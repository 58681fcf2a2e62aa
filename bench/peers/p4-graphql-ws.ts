// P4: a bare graphql-ws server (graphql-ws/use/ws on `ws`), the usual way to serve GraphQL
// subscriptions: graphql-js runs each subscriber's own subscription, so every event is executed
// and serialised once per subscriber. Same Alarm/Device/DeviceStatusEvent shapes as Vigil's schema;
// alarms come from an in-memory pubsub and an in-memory log (for `alarms(after:)`, replayed
// gap-free as Vigil does). POST /publish {"deviceId","channel"} publishes one alarm.
import { createServer } from 'node:http';
import { buildSchema } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';

const schema = buildSchema(`
  enum DeviceStatus { ONLINE OFFLINE UNKNOWN }
  enum AlarmType { MOTION LINE_CROSSING INTRUSION OTHER }
  type Device { id: ID! serial: String! model: String name: String! status: DeviceStatus! channels: Int! }
  type Alarm { id: ID! cursor: String! device: Device! channel: Int! type: AlarmType! rawType: String! description: String startedAt: String! endedAt: String activePostCount: Int! }
  type DeviceStatusEvent { device: Device! status: DeviceStatus! at: String! }
  type Query { ok: Boolean }
  type Subscription {
    deviceStatus(deviceIds: [ID!]): DeviceStatusEvent!
    alarms(deviceIds: [ID!], types: [AlarmType!], after: String): Alarm!
  }
`);

interface AlarmEvent {
  id: string;
  cursor: string;
  seq: number;
  deviceId: string;
  device: { id: string; serial: string; model: string; name: string; status: string; channels: number };
  channel: number;
  type: string;
  rawType: string;
  description: string;
  startedAt: string;
  endedAt: null;
  activePostCount: number;
}

type Listener = (a: AlarmEvent) => void;
const alarmListeners = new Set<Listener>();
const statusListeners = new Set<(s: unknown) => void>();
const log: AlarmEvent[] = [];
let seq = 0;

/** A pull queue fed by a listener; `return()` unsubscribes. */
function queueIterator<T>(attach: (push: (v: T) => void) => () => void, first: T[] = []): AsyncGenerator<T> {
  const items: T[] = [...first];
  let waiter: ((r: IteratorResult<T>) => void) | null = null;
  let done = false;
  const detach = attach((v) => {
    if (done) return;
    if (waiter) {
      const w = waiter;
      waiter = null;
      w({ value: v, done: false });
    } else items.push(v);
  });
  const it: AsyncGenerator<T> = {
    next() {
      if (items.length) return Promise.resolve({ value: items.shift()!, done: false });
      if (done) return Promise.resolve({ value: undefined, done: true });
      return new Promise((r) => (waiter = r));
    },
    return() {
      done = true;
      detach();
      waiter?.({ value: undefined, done: true });
      waiter = null;
      return Promise.resolve({ value: undefined, done: true });
    },
    throw() {
      return it.return(undefined);
    },
    [Symbol.asyncIterator]: () => it,
  };
  return it;
}

const roots = {
  subscription: {
    alarms(args: { deviceIds?: string[] | null; after?: string | null }) {
      const ids = args.deviceIds ? new Set(args.deviceIds) : null;
      const match = (a: AlarmEvent) => !ids || ids.has(a.deviceId);
      // Listen first, then replay the log after the cursor: no gap; live events at or before the replay's end are skipped.
      const after = args.after ? Number(args.after) : null;
      const replay = after === null ? [] : log.filter((a) => a.seq > after && match(a));
      let last = replay.at(-1)?.seq ?? after ?? -1;
      return queueIterator<{ alarms: AlarmEvent }>(
        (push) => {
          const l: Listener = (a) => {
            if (!match(a) || a.seq <= last) return;
            last = a.seq;
            push({ alarms: a });
          };
          alarmListeners.add(l);
          return () => alarmListeners.delete(l);
        },
        replay.map((a) => ({ alarms: a })),
      );
    },
    deviceStatus() {
      return queueIterator<unknown>((push) => {
        statusListeners.add(push);
        return () => statusListeners.delete(push);
      });
    },
  },
};

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.method === 'POST' && req.url === '/publish') {
      const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as { deviceId: string; channel: number };
      const s = ++seq;
      const a: AlarmEvent = {
        id: `00000000-0000-4000-8000-${String(s).padStart(12, '0')}`,
        cursor: String(s),
        seq: s,
        deviceId: body.deviceId,
        device: { id: body.deviceId, serial: `DS-PEER-${body.deviceId.slice(0, 8)}`, model: 'DS-2CD2143G2-I', name: 'Front door', status: 'ONLINE', channels: 1 },
        channel: body.channel,
        type: 'MOTION',
        rawType: 'VMD',
        description: 'Motion alarm',
        startedAt: new Date().toISOString(),
        endedAt: null,
        activePostCount: 1,
      };
      log.push(a);
      if (log.length > 100_000) log.splice(0, 10_000);
      for (const l of alarmListeners) l(a);
      res.end(a.cursor);
      return;
    }
    res.statusCode = 404;
    res.end();
  });
});

const wss = new WebSocketServer({ server, path: '/graphql' });
useServer(
  {
    schema,
    roots,
    onConnect: (ctx) => typeof ctx.connectionParams?.authorization === 'string',
  },
  wss,
);

server.listen(0, '127.0.0.1', () => {
  const a = server.address() as { port: number };
  console.log(`READY http://127.0.0.1:${a.port}`);
});
process.on('SIGTERM', () => process.exit(0));
