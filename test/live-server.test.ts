import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GraphQLError, GraphQLInt, GraphQLObjectType, GraphQLSchema, parse, validate } from 'graphql';
import { pino } from 'pino';
import type { Caller } from '../src/accounts/caller';
import { createLiveServer, WsCloseCode, type LiveServerOptions, type LiveSocket, type PreparedOperation } from '../src/graphql/live/live-server';
import { createMetrics } from '../src/http/metrics';
import { createEventBus } from '../src/streams/bus/event-bus';
import { waitFor } from './helpers/harness';

/** A socket without a network: what the server sent, how it closed; the test plays the client. */
class FakeSocket implements LiveSocket {
  readonly protocol = 'graphql-transport-ws';
  readonly sent: { id?: string; type: string; payload?: unknown }[] = [];
  readonly raw: string[] = [];
  bufferedAmount = 0;
  closedWith: { code: number; reason: string } | null = null;
  terminated = false;
  private handler: ((data: string) => Promise<void>) | null = null;
  /** The transport's close event: the test wires it to the server's `closed`. */
  onClosed: (code: number, reason: string) => void = () => {};

  send(data: string | Buffer) {
    const text = data.toString();
    this.raw.push(text);
    this.sent.push(JSON.parse(text) as { type: string });
  }
  close(code: number, reason: string) {
    if (this.closedWith) return;
    this.closedWith = { code, reason };
    queueMicrotask(() => this.onClosed(code, reason));
  }
  terminate() {
    this.terminated = true;
  }
  isOpen() {
    return !this.closedWith;
  }
  onMessage(cb: (data: string) => Promise<void>) {
    this.handler = cb;
  }
  /** The client sends a message. */
  async receive(message: object) {
    await this.handler!(JSON.stringify(message));
  }
  /** The client goes away (no close frame from the server). */
  drop() {
    this.closedWith = { code: 1006, reason: '' };
    this.onClosed(1006, '');
  }
  ofType(type: string) {
    return this.sent.filter((m) => m.type === type);
  }
}

/** A socket whose transport can queue a frame without a completion promise (`ws` can): the fan-out's direct frames use it. */
class WritingSocket extends FakeSocket {
  writes = 0;
  write(data: Buffer) {
    this.writes++;
    this.send(data);
  }
}

/** A subscription source the test pushes ticks into; counts executions of the selection. */
function ticker() {
  const listeners = new Set<(n: number) => void>();
  let executions = 0;
  const schema = new GraphQLSchema({
    query: new GraphQLObjectType({ name: 'Query', fields: { ok: { type: GraphQLInt, resolve: () => 1 } } }),
    subscription: new GraphQLObjectType({
      name: 'Subscription',
      fields: {
        tick: {
          type: GraphQLInt,
          subscribe: () => {
            const queue: number[] = [];
            let wake: (() => void) | null = null;
            const listener = (n: number) => {
              queue.push(n);
              wake?.();
            };
            listeners.add(listener);
            return (async function* () {
              try {
                for (;;) {
                  while (queue.length) yield queue.shift()!;
                  await new Promise<void>((r) => (wake = r));
                }
              } finally {
                listeners.delete(listener);
              }
            })();
          },
          resolve: (n: number) => (executions++, n),
        },
      },
    }),
  });
  return { schema, push: (n: number) => listeners.forEach((l) => l(n)), executions: () => executions, sources: () => listeners.size };
}

function setup(overrides: Partial<LiveServerOptions> = {}) {
  const t = ticker();
  const bus = createEventBus();
  let now = 1_000_000;
  const callers = new Map<string, Caller>([
    ['alice-1', { kind: 'session', userId: 'alice', sessionId: 's-alice-1' }],
    ['alice-2', { kind: 'session', userId: 'alice', sessionId: 's-alice-2' }],
    ['bob', { kind: 'session', userId: 'bob', sessionId: 's-bob' }],
  ]);
  const ended = new Set<string>();
  let credentialReads = 0;
  let authentications = 0;
  const server = createLiveServer({
    schema: t.schema,
    bus,
    clock: () => new Date(now),
    log: pino({ level: 'silent' }),
    metrics: createMetrics(),
    production: true,
    credentials: {
      authenticate: async (authorization) => {
        authentications++;
        await new Promise((r) => setTimeout(r, 5));
        return callers.get(authorization.replace(/^Bearer /, '')) ?? null;
      },
      isOpen: async (c) => (credentialReads++, !ended.has(c.kind === 'session' ? c.sessionId : c.apiKeyId)),
    },
    prepare: async ({ payload, caller }): Promise<PreparedOperation | readonly GraphQLError[]> => {
      const query = payload.query!;
      const document = parse(query);
      const errors = validate(t.schema, document);
      if (errors.length) return errors;
      return { query, args: { schema: t.schema, document, variableValues: payload.variables ?? undefined, contextValue: { caller } } };
    },
    maxSubscriptionsPerConnection: 5,
    maxConnectionsPerUser: 2,
    credentialRecheckMs: 30_000,
    ...overrides,
  });
  const sockets: FakeSocket[] = [];
  /** Opens a socket and, with a token, sends connection_init. */
  async function connect(token: string | null, socket: FakeSocket = new FakeSocket()) {
    const closed = server.opened(socket, { ip: '127.0.0.1', userAgent: null });
    socket.onClosed = (code, reason) => void closed(code, reason);
    sockets.push(socket);
    if (token !== null) await socket.receive({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } });
    return socket;
  }
  async function subscribe(socket: FakeSocket, id: string) {
    // graphql-ws's `subscribe` handler runs until the subscription ends: do not wait for it.
    void socket.receive({ id, type: 'subscribe', payload: { query: 'subscription { tick }' } });
    await waitFor(() => t.sources() > 0, 2000, 'a running subscription');
  }
  return {
    ...t,
    server,
    bus,
    connect,
    subscribe,
    ended,
    credentialReads: () => credentialReads,
    authentications: () => authentications,
    advance: (ms: number) => (now += ms),
    async dispose() {
      for (const s of sockets) if (!s.closedWith) s.drop();
      await server.dispose();
    },
  };
}

const nextData = (s: FakeSocket) => s.ofType('next').map((m) => (m.payload as { data: { tick: number } }).data.tick);

describe('live core without a network: credentials', () => {
  test('acknowledges a valid credential and closes 4403 on a missing or unknown one', async () => {
    const w = setup();
    try {
      const ok = await w.connect('alice-1');
      assert.deepEqual(ok.ofType('connection_ack').length, 1);
      assert.equal(ok.closedWith, null);
      const unknown = await w.connect('mallory');
      assert.equal(unknown.closedWith?.code, 4403);
      const none = await w.connect(null);
      await none.receive({ type: 'connection_init', payload: {} });
      assert.equal(none.closedWith?.code, 4403);
    } finally {
      await w.dispose();
    }
  });

  test('verifies a credential once when many sockets connect with it at once (a reconnect storm)', async () => {
    const w = setup({ maxConnectionsPerUser: 100 });
    try {
      const sockets = await Promise.all(Array.from({ length: 50 }, () => w.connect('alice-1')));
      assert.ok(sockets.every((s) => s.ofType('connection_ack').length === 1));
      await Promise.all(Array.from({ length: 5 }, () => w.connect('mallory')));
      assert.equal(w.authentications(), 2, 'one read for alice, one for the bad token');
    } finally {
      await w.dispose();
    }
  });

  test('closes every socket of a credential with 4403 when session.ended is announced, and refuses that credential afterwards', async () => {
    const w = setup();
    try {
      const a = await w.connect('alice-1');
      const b = await w.connect('alice-2');
      const bob = await w.connect('bob');
      w.bus.publish('session.ended', { sessionId: 's-alice-1' });
      await waitFor(() => a.closedWith !== null, 2000, 'the close');
      assert.equal(a.closedWith?.code, WsCloseCode.Forbidden);
      // Another session of the same user and another user are untouched.
      assert.equal(b.closedWith, null);
      assert.equal(bob.closedWith, null);
      const again = await w.connect('alice-1');
      assert.equal(again.closedWith?.code, 4403);
    } finally {
      await w.dispose();
    }
  });

  test('reads a due credential once for all its sockets, and closes them 4403 at the next event when it ended without an announcement', async () => {
    const w = setup({ maxConnectionsPerUser: 10 });
    try {
      const sockets = await Promise.all([0, 1, 2].map(() => w.connect('alice-1')));
      for (const [i, s] of sockets.entries()) await w.subscribe(s, String(i));
      await waitFor(() => w.sources() === 1, 2000, 'one shared source');
      w.push(1);
      await waitFor(() => sockets.every((s) => nextData(s).length === 1), 2000, 'the first tick');
      assert.equal(w.credentialReads(), 0);
      // The check is due; the session ended while Redis was down (no announcement).
      w.advance(31_000);
      w.ended.add('s-alice-1');
      w.push(2);
      await waitFor(() => sockets.every((s) => s.closedWith !== null), 2000, 'the closes');
      assert.deepEqual(
        sockets.map((s) => s.closedWith?.code),
        [4403, 4403, 4403],
      );
      assert.deepEqual(sockets.map(nextData), [[1], [1], [1]], 'nothing after the end');
      assert.equal(w.credentialReads(), 1, 'one read for the three sockets');
    } finally {
      await w.dispose();
    }
  });
});

describe('live core without a network: limits', () => {
  test('closes with 4430 (not graphql-ws\'s 4429) a connection over the per-user cap, and admits one again once another closes', async () => {
    const w = setup();
    try {
      const first = await w.connect('alice-1');
      await w.connect('alice-2');
      const over = await w.connect('alice-1');
      assert.equal(over.closedWith?.code, WsCloseCode.TooManyConnections);
      assert.equal(WsCloseCode.TooManyConnections, 4430);
      assert.match(over.closedWith?.reason ?? '', /retry later/);
      // Other users are not affected.
      assert.equal((await w.connect('bob')).closedWith, null);
      first.drop();
      await new Promise((r) => setImmediate(r));
      const retry = await w.connect('alice-1');
      assert.equal(retry.closedWith, null);
      assert.equal(retry.ofType('connection_ack').length, 1);
    } finally {
      await w.dispose();
    }
  });

  test('closes a slow consumer with 1013 when its socket holds more unsent bytes than allowed, and cuts it off if it does not answer the close', async () => {
    const w = setup({ maxBufferedBytes: 100, closeTimeoutMs: 5 });
    try {
      const fast = await w.connect('alice-1');
      const slow = await w.connect('bob');
      await w.subscribe(fast, '1');
      await w.subscribe(slow, '1');
      slow.bufferedAmount = 1000;
      // The slow socket never completes its close handshake.
      slow.close = (code, reason) => {
        slow.closedWith ??= { code, reason };
      };
      w.push(1);
      await waitFor(() => slow.closedWith !== null && nextData(fast).length === 1, 2000, 'the slow consumer closed');
      assert.equal(slow.closedWith?.code, WsCloseCode.TryAgainLater);
      assert.deepEqual(nextData(slow), []);
      await waitFor(() => slow.terminated, 2000, 'the cut-off');
    } finally {
      await w.dispose();
    }
  });

  test('refuses a subscription past the per-connection limit with QUERY_TOO_COMPLEX', async () => {
    const w = setup({ maxSubscriptionsPerConnection: 1 });
    try {
      const s = await w.connect('alice-1');
      await w.subscribe(s, '1');
      await s.receive({ id: '2', type: 'subscribe', payload: { query: 'subscription { tick }' } });
      const [error] = s.ofType('error');
      assert.equal(error?.id, '2');
      assert.equal((error?.payload as { extensions: { code: string } }[])[0]?.extensions.code, 'QUERY_TOO_COMPLEX');
    } finally {
      await w.dispose();
    }
  });
});

describe('live core without a network: grouping', () => {
  test('queues grouped frames with the transport\'s write when it has one, and still closes a socket over the buffered bound', async () => {
    const w = setup({ maxConnectionsPerUser: 10, maxBufferedBytes: 100 });
    try {
      const sockets = [new WritingSocket(), new WritingSocket()];
      for (const s of sockets) {
        await w.connect('alice-1', s);
        await w.subscribe(s, 'x');
      }
      w.push(1);
      w.push(2);
      await waitFor(() => sockets.every((s) => nextData(s).length === 2), 2000, 'two ticks on both sockets');
      for (const s of sockets) assert.equal(s.writes, 2, 'each next frame written without waiting');
      // One socket's peer stops reading: it is closed as a slow consumer, not written to.
      sockets[1]!.bufferedAmount = 1000;
      w.push(3);
      await waitFor(() => sockets[1]!.closedWith !== null, 2000, 'the slow consumer closed');
      assert.equal(sockets[1]!.closedWith?.code, WsCloseCode.TryAgainLater);
      assert.deepEqual(nextData(sockets[1]!), [1, 2]);
      await waitFor(() => nextData(sockets[0]!).length === 3, 2000, 'the third tick on the other socket');
      assert.deepEqual(nextData(sockets[0]!), [1, 2, 3]);
      assert.equal(sockets[0]!.writes, 3);
    } finally {
      await w.dispose();
    }
  });

  test('executes once per event for identical subscriptions of one user and writes the same payload to every socket', async () => {
    const w = setup({ maxConnectionsPerUser: 10 });
    try {
      const sockets = await Promise.all([0, 1, 2, 3].map(() => w.connect('alice-1')));
      for (const s of sockets) await w.subscribe(s, 'x');
      assert.equal(w.server.groupCount(), 1);
      assert.equal(w.sources(), 1);
      w.push(7);
      w.push(8);
      await waitFor(() => sockets.every((s) => nextData(s).length === 2), 2000, 'two ticks everywhere');
      assert.equal(w.executions(), 2);
      assert.deepEqual(new Set(sockets.map((s) => s.raw.filter((r) => r.includes('"next"')).join('|'))).size, 1);
      // Another user runs apart (what one sees is not shared with another).
      const bob = await w.connect('bob');
      void bob.receive({ id: 'x', type: 'subscribe', payload: { query: 'subscription { tick }' } });
      await waitFor(() => w.sources() === 2, 2000, "bob's own source");
      assert.equal(w.server.groupCount(), 2);
      // Leaving ends the group with its last member.
      for (const s of sockets) await s.receive({ id: 'x', type: 'complete' });
      await waitFor(() => w.server.groupCount() === 1, 2000, 'the group closed');
    } finally {
      await w.dispose();
    }
  });
});
