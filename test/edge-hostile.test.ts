// One table of hostile inputs, sent over HTTP and over graphql-ws: each must come back with the
// same contract code on both (and, over HTTP, the status), never INTERNAL, and leave the server
// and the socket serving.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Client } from 'graphql-ws';
import WebSocket from 'ws';
import { accessTokenSigner, loadSigningKey } from '../src/accounts/access-tokens';
import { MeDocument } from './generated/graphql';
import { registerUser } from './helpers/devices';
import { expectCode, expectData, startApp, type TestApp } from './helpers/harness';
import { wsClient, type TestWsClient } from './helpers/subscriptions';

interface Payload {
  query: string;
  variables?: Record<string, unknown>;
  /** Variables as JSON text, for values JSON.stringify cannot write (5,000 levels overflow its stack). */
  rawVariables?: string;
  operationName?: string;
  extensions?: Record<string, unknown>;
}

interface Row {
  what: string;
  payload: Payload;
  code: string;
  /** HTTP status: 400 for refusals before execution, 200 for a field's error beside `data`. */
  status: number;
  /** Only over this transport (a subscription is refused over HTTP, served over graphql-ws). */
  only?: 'http' | 'ws';
}

const ID = '00000000-0000-4000-8000-000000000000';
const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64url');
const nestedJson = (depth: number) => `${'{"a":'.repeat(depth)}"x"${'}'.repeat(depth)}`;
/** The payload as JSON text, with raw variables spliced in. */
const payloadJson = ({ rawVariables, ...payload }: Payload) =>
  rawVariables ? `${JSON.stringify(payload).slice(0, -1)},"variables":${rawVariables}}` : JSON.stringify(payload);
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const ALARM_FIELDS = 'cursor node { id type device { id name serial status role permissions boundAt channels firmware model lastSeenAt shares { id } } }';

const DEVICES_N = 'query($n: Int) { devices(first: $n) { totalCount } }';
const DEVICE_ID = 'query($id: ID!) { device(id: $id) { id } }';
const RENAME = 'mutation($name: String!) { renameDevice(id: "' + ID + '", name: $name) { id } }';
const SEARCH = 'query($s: String) { devices(first: 5, filter: { search: $s }) { totalCount } }';
const SINCE = 'query($t: DateTime) { alarms(first: 5, filter: { since: $t }) { edges { cursor } } }';
const ME = '{ me { id } }';

const rows: Row[] = [
  // Variables that do not fit their type.
  { what: 'a string for an Int variable', payload: { query: DEVICES_N, variables: { n: 'ten' } }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'a float for an Int variable', payload: { query: DEVICES_N, variables: { n: 1.5 } }, code: 'BAD_USER_INPUT', status: 400 },
  { what: '2^53+1 for an Int variable', payload: { query: DEVICES_N, variables: { n: 2 ** 53 + 1 } }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'an object for an ID variable', payload: { query: DEVICE_ID, variables: { id: { $gt: '' } } }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'variables nested 5,000 deep', payload: { query: SEARCH, rawVariables: `{"s":${nestedJson(5000)}}` }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'a missing required variable', payload: { query: RENAME }, code: 'BAD_USER_INPUT', status: 400 },
  // Text no database column can hold, in variables and in literals, in every kind of string argument.
  { what: 'a NUL in renameDevice name', payload: { query: RENAME, variables: { name: 'a\u0000b' } }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'a NUL in a string literal', payload: { query: `mutation { renameDevice(id: "${ID}", name: "a\\u0000b") { id } }` }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'a NUL in bindDevice name', payload: { query: 'mutation($n: String) { bindDevice(name: $n, serial: "X", verificationCode: "ABCDEF") { id } }', variables: { n: '\u0000' } }, code: 'BAD_USER_INPUT', status: 400 },
  {
    what: 'a NUL in register displayName',
    payload: { query: 'mutation($i: RegisterInput!) { register(input: $i) { accessToken } }', variables: { i: { email: 'nul@example.com', password: 'Violet-Harbor-Quartz-71', displayName: 'a\u0000' } } },
    code: 'BAD_USER_INPUT',
    status: 400,
  },
  { what: 'a NUL in createApiKey name', payload: { query: 'mutation($n: String!) { createApiKey(name: $n, scopes: [DEVICES_READ]) { secret } }', variables: { n: 'k\u0000' } }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'a NUL in devices(filter: {search})', payload: { query: SEARCH, variables: { s: '%\u0000%' } }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'a lone surrogate in a variable', payload: { query: SEARCH, variables: { s: 'a\ud800b' } }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'a lone surrogate in a literal', payload: { query: '{ devices(first: 5, filter: { search: "\\udc00" }) { totalCount } }' }, code: 'BAD_USER_INPUT', status: 400 },
  // Dates Postgres cannot hold.
  { what: 'year 0 in a DateTime variable', payload: { query: SINCE, variables: { t: '0000-01-01T00:00:00Z' } }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'year 10000 (after the offset) in a DateTime variable', payload: { query: SINCE, variables: { t: '9999-12-31T23:59:59-23:59' } }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'year 0 in a DateTime literal', payload: { query: '{ alarms(first: 5, filter: { since: "0000-01-01T00:00:00Z" }) { edges { cursor } } }' }, code: 'BAD_USER_INPUT', status: 400 },
  // Cursors: checked by the service, so a field error beside data: null.
  { what: 'a garbage device cursor', payload: { query: '{ devices(first: 2, after: "garbage") { totalCount } }' }, code: 'BAD_USER_INPUT', status: 200 },
  { what: 'a device cursor out of range', payload: { query: `{ devices(first: 2, after: "${b64(`999999999999999.${ID}`)}") { totalCount } }` }, code: 'BAD_USER_INPUT', status: 200 },
  { what: 'a garbage alarm cursor', payload: { query: '{ alarms(first: 2, after: "%%%") { edges { cursor } } }' }, code: 'BAD_USER_INPUT', status: 200 },
  // Documents.
  { what: 'a syntax error', payload: { query: '{ me { id ' }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'an unknown field', payload: { query: '{ nope }' }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'an unknown operation name', payload: { query: 'query A { me { id } }', operationName: 'B' }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'a subscription over HTTP', payload: { query: 'subscription { deviceStatus { deviceId } }' }, code: 'BAD_USER_INPUT', status: 400, only: 'http' },
  // Automatic persisted queries.
  { what: 'an APQ hash that does not match the query', payload: { query: ME, extensions: { persistedQuery: { version: 1, sha256Hash: sha256('{ other }') } } }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'APQ version 99', payload: { query: ME, extensions: { persistedQuery: { version: 99, sha256Hash: sha256(ME) } } }, code: 'BAD_USER_INPUT', status: 400 },
  { what: 'an APQ extension that is not an object', payload: { query: ME, extensions: { persistedQuery: 'yes' } }, code: 'BAD_USER_INPUT', status: 400 },
  // Limits.
  { what: 'a query 1,000 levels deep', payload: { query: `{ me ${'{ a '.repeat(1000)}${'}'.repeat(1000)} }` }, code: 'QUERY_TOO_COMPLEX', status: 400 },
  { what: 'a valid query deeper than the depth limit', payload: { query: `{ devices(first: 1) { edges { node { ${'shares { device { '.repeat(7)}id${' } }'.repeat(7)} } } } }` }, code: 'QUERY_TOO_COMPLEX', status: 400 },
  { what: '40 aliases', payload: { query: `{ ${Array.from({ length: 40 }, (_, i) => `a${i}: me { id }`).join(' ')} }` }, code: 'QUERY_TOO_COMPLEX', status: 400 },
  { what: '50 directives', payload: { query: `{ me { id ${'@include(if: true) '.repeat(50)} } }` }, code: 'QUERY_TOO_COMPLEX', status: 400 },
  { what: 'more tokens than the limit', payload: { query: `{ me { ${'id '.repeat(3100)} } }` }, code: 'QUERY_TOO_COMPLEX', status: 400 },
  { what: 'a cost over the limit', payload: { query: `{ ${Array.from({ length: 15 }, (_, i) => `a${i}: alarms(first: 100) { edges { ${ALARM_FIELDS} } }`).join(' ')} }` }, code: 'QUERY_TOO_COMPLEX', status: 400 },
  { what: 'a cost over the limit through a variable', payload: { query: `query($n: Int) { ${Array.from({ length: 15 }, (_, i) => `a${i}: alarms(first: $n) { edges { ${ALARM_FIELDS} } }`).join(' ')} }`, variables: { n: 100 } }, code: 'QUERY_TOO_COMPLEX', status: 400 },
];

type Outcome = { codes: string[]; status?: number; requestIds: unknown[] };

async function overHttp(url: string, token: string, payload: Payload): Promise<Outcome> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: payloadJson(payload),
  });
  const body = (await res.json()) as { errors?: Array<{ extensions?: { code?: string; requestId?: unknown } }> };
  return { codes: body.errors?.map((e) => String(e.extensions?.code)) ?? [], status: res.status, requestIds: body.errors?.map((e) => e.extensions?.requestId) ?? [] };
}

function overWs(client: Client, payload: Payload): Promise<Outcome> {
  if (payload.rawVariables) return overRawWs(client, payload);
  return new Promise((resolve) => {
    const codes: string[] = [];
    const requestIds: unknown[] = [];
    const take = (errors: ReadonlyArray<{ extensions?: Record<string, unknown> }>) => {
      for (const e of errors) {
        codes.push(String(e.extensions?.code));
        requestIds.push(e.extensions?.requestId);
      }
    };
    client.subscribe(payload, {
      next: (r) => take(r.errors ?? []),
      error: (err) => {
        if (Array.isArray(err)) take(err);
        else codes.push(`transport error: ${(err as { code?: number }).code ?? String(err)}`);
        resolve({ codes, requestIds });
      },
      complete: () => resolve({ codes, requestIds }),
    });
  });
}

/**
 * For payloads the graphql-ws client cannot stringify: the same protocol on a plain socket
 * (connection_init, subscribe, then the server's error or complete).
 */
let rawUrl = '';
let rawToken = '';
async function overRawWs(_client: Client, payload: Payload): Promise<Outcome> {
  const socket = new WebSocket(`${rawUrl.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
  try {
    return await new Promise<Outcome>((resolve, reject) => {
      const codes: string[] = [];
      const requestIds: unknown[] = [];
      socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${rawToken}` } })));
      socket.on('message', (data) => {
        const m = JSON.parse(data.toString()) as { type: string; payload?: unknown };
        if (m.type === 'connection_ack') socket.send(`{"id":"1","type":"subscribe","payload":${payloadJson(payload)}}`);
        const errors = m.type === 'error' ? (m.payload as Array<{ extensions?: Record<string, unknown> }>) : m.type === 'next' ? ((m.payload as { errors?: [] }).errors ?? []) : [];
        for (const e of errors) {
          codes.push(String(e.extensions?.code));
          requestIds.push(e.extensions?.requestId);
        }
        if (m.type === 'error' || m.type === 'complete') resolve({ codes, requestIds });
      });
      socket.once('close', (code) => resolve({ codes: [...codes, `closed ${code}`], requestIds }));
      socket.once('error', reject);
    });
  } finally {
    socket.close();
  }
}

describe('the same hostile inputs over HTTP and graphql-ws', () => {
  let t: TestApp;
  let token: string;
  let ws: TestWsClient;
  let wsClosed = false;
  before(async () => {
    t = await startApp();
    token = (await registerUser(t, 'hostile')).token;
    rawUrl = t.url;
    rawToken = token;
    ws = wsClient(t.url, token);
    void ws.closed.then(() => (wsClosed = true));
    await ws.connected;
  });
  after(async () => {
    await ws.dispose();
    await t.stop();
  });

  for (const row of rows) {
    if (row.only !== 'ws') {
      test(`${row.what}: ${row.code} with HTTP ${row.status} over HTTP`, async () => {
        const r = await overHttp(t.url, token, row.payload);
        assert.ok(r.codes.length > 0 && r.codes.every((c) => c !== 'INTERNAL'), JSON.stringify(r));
        assert.equal(r.codes[0], row.code, JSON.stringify(r));
        assert.equal(r.status, row.status, JSON.stringify(r));
        assert.ok(r.requestIds.every((id) => typeof id === 'string' && id.length > 0), 'every error carries a requestId');
      });
    }
    if (row.only !== 'http') {
      test(`${row.what}: ${row.code} over graphql-ws, the socket still open`, async () => {
        const r = await overWs(ws.client, row.payload);
        assert.ok(r.codes.length > 0 && r.codes.every((c) => c !== 'INTERNAL'), JSON.stringify(r));
        assert.equal(r.codes[0], row.code, JSON.stringify(r));
        assert.equal(wsClosed, false, 'the socket stayed open');
      });
    }
  }

  test('the server and the socket still serve after the whole table', async () => {
    expectData(await t.gql(MeDocument, {}, { token }));
    const r = await overWs(ws.client, { query: ME });
    assert.deepEqual(r.codes, []);
    assert.equal(wsClosed, false);
  });
});

describe('a validly signed token that does not check out', () => {
  let t: TestApp;
  let forged: string;
  before(async () => {
    const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    t = await startApp({ env: { JWT_PRIVATE_KEY: pem } });
    const user = await registerUser(t, 'forged');
    // Signed with the server's own key, so only the claims are wrong.
    const signer = accessTokenSigner(await loadSigningKey(pem, ':memory:'), 600, () => new Date());
    forged = (await signer.sign(user.id, 'not-a-uuid')).token;
  });
  after(() => t.stop());

  test('a session id that is not a UUID is UNAUTHENTICATED over HTTP', async () => {
    const r = await t.gql(MeDocument, {}, { token: forged });
    expectCode(r, 'UNAUTHENTICATED');
    assert.equal(typeof r.errors?.[0]?.extensions?.requestId, 'string');
  });

  test('a session id that is not a UUID closes graphql-ws with 4403', async () => {
    const c = wsClient(t.url, forged);
    try {
      assert.equal((await c.closed).code, 4403);
    } finally {
      await c.dispose();
    }
  });

  test('a token for a session that never existed is UNAUTHENTICATED when sent', async () => {
    const signer = accessTokenSigner(await loadSigningKey(undefined, ':memory:'), 600, () => new Date());
    const other = (await signer.sign(randomUUID(), randomUUID())).token;
    expectCode(await t.gql(MeDocument, {}, { token: other }), 'UNAUTHENTICATED');
  });
});

describe('introspection in production', () => {
  let t: TestApp;
  before(async () => {
    t = await startApp({ env: { NODE_ENV: 'production' } });
  });
  after(() => t.stop());

  test('anonymous introspection is UNAUTHENTICATED with HTTP 401 when in production', async () => {
    const res = await fetch(`${t.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ __schema { queryType { name } } }' }) });
    assert.equal(res.status, 401);
    const body = (await res.json()) as { errors: Array<{ extensions: { code: string; requestId?: string } }> };
    assert.equal(body.errors[0]!.extensions.code, 'UNAUTHENTICATED');
    assert.equal(typeof body.errors[0]!.extensions.requestId, 'string');
  });
});
