import { inspect } from 'node:util';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import type { App } from '../../src/app';
import { waitFor } from './harness';

export interface WsError {
  message: string;
  extensions?: { code?: string };
}

/** A graphql-ws client on `/graphql` (real WebSocket, no retries) with its close event recorded. */
export interface TestWsClient {
  client: Client;
  /** Resolves with the close code and reason once the socket closes (server or client side). */
  closed: Promise<{ code: number; reason: string }>;
  /** Resolves once connection_ack arrived. */
  connected: Promise<void>;
  dispose(): Promise<void>;
}

export function wsClient(baseUrl: string, token: string | null): TestWsClient {
  let onClosed: (e: { code: number; reason: string }) => void = () => {};
  let onConnected: () => void = () => {};
  const closed = new Promise<{ code: number; reason: string }>((r) => (onClosed = r));
  const connected = new Promise<void>((r) => (onConnected = r));
  const client = createClient({
    url: `${baseUrl.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: false,
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
    on: {
      connected: () => onConnected(),
      closed: (e) => {
        const ev = e as { code?: number; reason?: string };
        onClosed({ code: ev.code ?? 0, reason: ev.reason ?? '' });
      },
    },
    // No client-side error logging for expected closes.
    onNonLazyError: () => {},
  });
  return {
    client,
    closed,
    connected,
    async dispose() {
      await client.dispose();
    },
  };
}

/** One running subscription: what it received, its errors, whether it completed. */
export interface LiveSubscription<T> {
  events: T[];
  /** GraphQL errors from `next` payloads or an `error` message. */
  errors: WsError[];
  /** A close event or a transport error the sink got. */
  failure: unknown;
  completed: boolean;
  /** Waits until `n` events arrived (fails after `timeoutMs`). */
  received(n: number, timeoutMs?: number): Promise<T[]>;
  /** Waits until the stream ended (complete, error or close). */
  ended(timeoutMs?: number): Promise<void>;
  stop(): void;
}

export function subscribe<T, V>(c: TestWsClient, doc: TypedDocumentNode<T, V>, variables?: V): LiveSubscription<T> {
  const sub: LiveSubscription<T> = {
    events: [],
    errors: [],
    failure: undefined,
    completed: false,
    received: (n, timeoutMs = 10_000) =>
      waitFor(() => sub.events.length >= n || sub.completed || sub.failure !== undefined, timeoutMs, `${n} events (got ${sub.events.length})`).then(() => {
        if (sub.events.length < n) throw new Error(`stream ended after ${sub.events.length} of ${n} events: ${JSON.stringify({ errors: sub.errors, failure: inspect(sub.failure, { depth: 2 }) })}`);
        return sub.events.slice(0, n);
      }),
    ended: (timeoutMs = 10_000) => waitFor(() => sub.completed || sub.failure !== undefined, timeoutMs, 'the end of the stream').then(() => undefined),
    stop: () => unsubscribe(),
  };
  const unsubscribe = c.client.subscribe<T>(
    { query: print(doc), variables: (variables ?? {}) as Record<string, unknown> },
    {
      next: (value) => {
        if (value.errors?.length) sub.errors.push(...(value.errors as WsError[]));
        if (value.data) sub.events.push(value.data as T);
      },
      error: (err) => {
        if (Array.isArray(err)) sub.errors.push(...(err as WsError[]));
        sub.failure = err ?? 'error';
      },
      complete: () => {
        sub.completed = true;
      },
    },
  );
  return sub;
}

/** Reads a metric of the app's registry, summed over the series matching `labels` (0 when absent). */
export async function gauge(app: App, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = app.metrics.registry.getSingleMetric(name);
  if (!metric) return 0;
  const value = await metric.get();
  return value.values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((sum, v) => sum + v.value, 0);
}

/** Waits until the app runs `n` subscriptions (each is registered with its streams by then). */
export async function subscriptionsRunning(app: App, n: number, timeoutMs = 5000): Promise<void> {
  await waitFor(async () => (await gauge(app, 'vigil_graphql_subscriptions')) === n, timeoutMs, `${n} running subscriptions`);
}

/** Same, over HTTP for a gateway in another process (its /metrics endpoint). */
export async function subscriptionsRunningAt(baseUrl: string, n: number, timeoutMs = 5000): Promise<void> {
  await waitFor(
    async () => {
      const text = await (await fetch(`${baseUrl}/metrics`)).text();
      const m = /^vigil_graphql_subscriptions (\d+)/m.exec(text);
      return Number(m?.[1] ?? -1) === n;
    },
    timeoutMs,
    `${n} running subscriptions at ${baseUrl}`,
  );
}
