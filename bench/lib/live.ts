// Shared set-up for the live-stream benchmarks: a fresh Postgres database, gateway processes,
// accounts and devices over the real API, and graphql-ws subscribers.
import { randomBytes } from 'node:crypto';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { clusterSecrets, startGateway, type GatewayProcess } from '../../test/helpers/gateway-process';
import { scratchDatabase } from '../../test/helpers/scratch-database';

export const STRONG_PASSWORD = 'Violet-Harbor-Quartz-71';

export function requireEnv(): { databaseUrl: string; redisUrl: string } {
  const databaseUrl = process.env.DATABASE_URL;
  const redisUrl = process.env.REDIS_URL;
  if (!databaseUrl || !redisUrl) {
    console.error('set DATABASE_URL (a Postgres the bench may create a database in) and REDIS_URL');
    process.exit(78);
  }
  return { databaseUrl, redisUrl };
}

/** A fresh database next to `base`, dropped by `drop()`. */
export const freshDatabase = (base: string) => scratchDatabase(base, 'vigil_bench_');

/** Gateway processes sharing `env` and one signing key and operator token; the first starts alone (it migrates). */
export async function startNodes(names: string[], env: Record<string, string>): Promise<{ nodes: GatewayProcess[]; adminToken: string }> {
  const secrets = clusterSecrets();
  // Benchmarks register many accounts and bind many devices from one address: raised limits, and
  // counters of their own in Redis (a day-long count from an earlier run must not stop this one).
  const shared = {
    REGISTER_MAX_PER_IP: '10000',
    BIND_MAX_PER_SOURCE: '100000',
    HTTP_RATE_PER_IP: '100000',
    REDIS_PREFIX: `vigil-bench:${randomBytes(4).toString('hex')}:`,
    ...secrets,
    ...env,
    LOG_LEVEL: 'info',
  };
  const nodes: GatewayProcess[] = [await startGateway(names[0]!, shared)];
  nodes.push(...(await Promise.all(names.slice(1).map((n) => startGateway(n, shared)))));
  return { nodes, adminToken: secrets.ADMIN_TOKEN! };
}

export async function gql<T = Record<string, unknown>>(base: string, query: string, variables: Record<string, unknown>, token?: string): Promise<T> {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: T; errors?: unknown[] };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data!;
}

export async function register(base: string, tag: string): Promise<{ id: string; email: string; token: string }> {
  const email = `${tag}.${randomBytes(4).toString('hex')}@bench.example.com`;
  const r = await gql<{ register: { accessToken: string; user: { id: string } } }>(
    base,
    'mutation($i: RegisterInput!) { register(input: $i) { accessToken user { id } } }',
    { i: { email, password: STRONG_PASSWORD } },
  );
  return { id: r.register.user.id, email, token: r.register.accessToken };
}

export async function provisionAndBind(base: string, adminToken: string, token: string): Promise<{ deviceId: string; ingestPath: string }> {
  const res = await fetch(`${base}/admin/devices`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify({ serial: `DS-BENCH-${randomBytes(5).toString('hex').toUpperCase()}`, model: 'DS-2CD2143G2-I', channels: 1 }),
  });
  if (res.status !== 201) throw new Error(`provisioning failed: ${res.status}`);
  const p = (await res.json()) as { serial: string; verificationCode: string; ingestPath: string };
  const b = await gql<{ bindDevice: { id: string } }>(base, 'mutation($s: String!, $c: String!) { bindDevice(serial: $s, verificationCode: $c) { id } }', { s: p.serial, c: p.verificationCode }, token);
  return { deviceId: b.bindDevice.id, ingestPath: p.ingestPath };
}

let nextChannel = 1;
/** One ISAPI alarm post on a fresh channel (a new alarm each time); `onSend` is called just before the request with that channel. */
export async function postAlarm(base: string, ingestPath: string, onSend?: (channel: number) => void): Promise<void> {
  const channel = nextChannel++;
  const xml = `<?xml version="1.0" encoding="UTF-8"?><EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema"><channelID>${channel}</channelID><dateTime>${new Date().toISOString()}</dateTime><activePostCount>1</activePostCount><eventType>VMD</eventType><eventState>active</eventState><eventDescription>Motion alarm</eventDescription></EventNotificationAlert>`;
  onSend?.(channel);
  const res = await fetch(`${base}${ingestPath}`, { method: 'POST', headers: { 'content-type': 'application/xml' }, body: xml });
  if (res.status !== 200) throw new Error(`ISAPI post failed: ${res.status}`);
  await res.text();
}

export const ALARM_SUBSCRIPTION = 'subscription { alarms { id cursor type startedAt device { id name status } } }';

export function connect(base: string, token: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = createClient({
      url: `${base.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: false,
      connectionParams: { authorization: `Bearer ${token}` },
      on: { connected: () => resolve(client), closed: (e) => reject(new Error(`closed ${(e as { code?: number }).code}`)) },
      onNonLazyError: reject,
    });
  });
}

export async function running(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(/^vigil_graphql_subscriptions (\d+)/m.exec(text)?.[1] ?? 0);
}

export async function cpuSeconds(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(/^process_cpu_seconds_total (\S+)/m.exec(text)?.[1] ?? 0);
}

export async function until(pred: () => boolean | Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
