import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { MeDocument, RegisterDocument } from './generated/graphql';
import { expectCode, expectData, startApp, STRONG_PASSWORD, uniqueEmail, type TestApp } from './helpers/harness';

/** Raw POST for hostile bodies the typed helper would never send. */
async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: { data?: unknown; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> } | undefined;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}
const codesOf = (r: Awaited<ReturnType<typeof post>>) => r.json?.errors?.map((e) => e.extensions?.code) ?? [];

describe('hostile input on the GraphQL edge', () => {
  let t: TestApp;
  let token: string;
  before(async () => {
    t = await startApp();
    token = expectData(await t.gql(RegisterDocument, { input: { email: uniqueEmail('edge'), password: STRONG_PASSWORD } })).register.accessToken;
  });
  after(() => t.stop());

  const stillServing = async () => {
    expectData(await t.gql(MeDocument, {}, { token }));
  };

  test('a query 1,000 levels deep is refused with QUERY_TOO_COMPLEX when sent', async () => {
    const query = `{ me ${'{ a '.repeat(1000)}${'}'.repeat(1000)} }`;
    const r = await post(t.url, { query }, { authorization: `Bearer ${token}` });
    assert.ok(codesOf(r).includes('QUERY_TOO_COMPLEX'), r.text.slice(0, 300));
    await stillServing();
  });

  test('a valid query deeper than the depth limit is refused with QUERY_TOO_COMPLEX when under the token limit', async () => {
    const query = `{ __type(name: "User") { ${'fields { type { ofType { '.repeat(6)}name${' } } }'.repeat(6)} } }`;
    const r = await post(t.url, { query });
    // graphql-js's own introspection-depth rule may also speak; ours must.
    assert.ok(codesOf(r).includes('QUERY_TOO_COMPLEX'), r.text.slice(0, 300));
    assert.match(r.json!.errors![0]!.message, /depth/i);
    await stillServing();
  });

  test('10,000 aliases are refused with QUERY_TOO_COMPLEX when sent', async () => {
    const query = `{ ${Array.from({ length: 10_000 }, (_, i) => `a${i}: me { id }`).join(' ')} }`;
    const r = await post(t.url, { query }, { authorization: `Bearer ${token}` });
    assert.ok(codesOf(r).includes('QUERY_TOO_COMPLEX'), r.text.slice(0, 300));
    await stillServing();
  });

  test('40 aliases are refused by the alias rule when the document is otherwise small', async () => {
    const query = `{ ${Array.from({ length: 40 }, (_, i) => `a${i}: me { id }`).join(' ')} }`;
    const r = await post(t.url, { query }, { authorization: `Bearer ${token}` });
    assert.deepEqual(codesOf(r), ['QUERY_TOO_COMPLEX']);
    assert.match(r.json!.errors![0]!.message, /alias/i);
  });

  test('too many directives are refused with QUERY_TOO_COMPLEX when sent', async () => {
    const query = `{ me { id ${'@include(if: true) '.repeat(50)} } }`;
    const r = await post(t.url, { query }, { authorization: `Bearer ${token}` });
    assert.ok(codesOf(r).includes('QUERY_TOO_COMPLEX'), r.text.slice(0, 300));
  });

  test('a huge string argument is BAD_USER_INPUT when it fits the body limit and 413 when it does not', async () => {
    const login = `mutation($i: LoginInput!) { login(input: $i) { accessToken } }`;
    const big = await post(t.url, { query: login, variables: { i: { login: 'a@example.com', password: 'x'.repeat(900_000) } } });
    assert.deepEqual(codesOf(big), ['BAD_USER_INPUT']);
    const huge = await post(t.url, { query: login, variables: { i: { login: 'a@example.com', password: 'x'.repeat(10 * 1024 * 1024) } } });
    assert.equal(huge.status, 413);
    assert.deepEqual(codesOf(huge), ['BAD_USER_INPUT']);
    await stillServing();
  });

  test('a batch of 1,000 operations is refused when batching is off', async () => {
    const batch = Array.from({ length: 1000 }, () => ({ query: '{ me { id } }' }));
    const r = await post(t.url, batch, { authorization: `Bearer ${token}` });
    assert.equal(r.status, 400);
    assert.ok(!r.text.includes('"me"'), 'no operation ran');
    await stillServing();
  });

  test('a CSRF-style simple POST is refused and runs nothing when sent as text/plain', async () => {
    const email = uniqueEmail('csrf');
    const query = `mutation { register(input: {email: "${email}", password: "${STRONG_PASSWORD}"}) { accessToken } }`;
    const r = await post(t.url, JSON.stringify({ query }), { 'content-type': 'text/plain' });
    assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
    assert.ok(!r.text.includes('accessToken'));
    assert.deepEqual(codesOf(r), ['BAD_USER_INPUT']);
    assert.equal(typeof r.json?.errors?.[0]?.extensions?.requestId, 'string', 'the CSRF refusal carries a request id');
    // The account was not created: registering it properly now succeeds.
    expectData(await t.gql(RegisterDocument, { input: { email, password: STRONG_PASSWORD } }));
  });

  test('a GET mutation is refused when sent without the CSRF header', async () => {
    const r = await fetch(`${t.url}/graphql?query=${encodeURIComponent('{ me { id } }')}`);
    assert.equal(r.status, 400);
  });

  test('a GET query runs when it carries a preflight header and a GET mutation is 405', async () => {
    const headers = { 'apollo-require-preflight': 'true', authorization: `Bearer ${token}` };
    const ok = await fetch(`${t.url}/graphql?query=${encodeURIComponent('{ me { id } }')}`, { headers });
    assert.equal(ok.status, 200);
    assert.ok(((await ok.json()) as { data?: { me?: unknown } }).data?.me);
    const mutation = `mutation { logout(refreshToken: "x") }`;
    const refused = await fetch(`${t.url}/graphql?query=${encodeURIComponent(mutation)}`, { headers });
    assert.equal(refused.status, 405);
    assert.equal(refused.headers.get('allow'), 'POST');
    const body = (await refused.json()) as { errors: Array<{ extensions: { code: string; requestId?: string } }> };
    assert.equal(body.errors[0]!.extensions.code, 'BAD_USER_INPUT');
    assert.equal(typeof body.errors[0]!.extensions.requestId, 'string');
  });

  test('automatic persisted queries run by hash once the query has been sent with it', async () => {
    const query = '{ me { id email } }';
    const sha256Hash = createHash('sha256').update(query).digest('hex');
    const extensions = { persistedQuery: { version: 1, sha256Hash } };
    const auth = { authorization: `Bearer ${token}` };
    const miss = await post(t.url, { extensions }, auth);
    assert.deepEqual(codesOf(miss), ['BAD_USER_INPUT']);
    assert.equal(miss.json!.errors![0]!.message, 'PersistedQueryNotFound'); // what APQ clients look for
    const register = await post(t.url, { query, extensions }, auth);
    assert.ok((register.json?.data as { me?: unknown })?.me);
    const hit = await post(t.url, { extensions }, auth);
    assert.deepEqual(hit.json?.data, register.json?.data);
  });

  test('errors carry a request id and no stack when they happen', async () => {
    const r = await post(t.url, { query: '{ nope }' });
    const err = r.json!.errors![0]!;
    assert.equal(err.extensions?.code, 'BAD_USER_INPUT');
    assert.equal(typeof err.extensions?.requestId, 'string');
    assert.ok(!r.text.includes('stacktrace') && !r.text.includes('/work/'), r.text);
  });

  test('a flood of WebSocket messages closes that socket with 1008 when over the per-connection limit', async () => {
    const ws = new WebSocket(`${t.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } })));
      ws.on('message', (m) => JSON.parse(m.toString()).type === 'connection_ack' && resolve());
      ws.once('error', reject);
    });
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    for (let i = 0; i < 500; i++) ws.send(JSON.stringify({ type: 'ping' }));
    assert.equal(await closed, 1008);
    await stillServing();
  });

  test('a WebSocket without credentials is closed with 4403 when it initialises', async () => {
    const ws = new WebSocket(`${t.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
    ws.once('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: {} })));
    const code = await new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
    assert.equal(code, 4403);
  });
});

describe('production mode', () => {
  let t: TestApp;
  before(async () => {
    t = await startApp({ env: { NODE_ENV: 'production', HTTP_RATE_PER_IP: '40' } });
  });
  after(() => t.stop());

  test('introspection is UNAUTHENTICATED when the caller is anonymous and allowed when signed in', async () => {
    const query = '{ __schema { queryType { name } } }';
    assert.deepEqual(codesOf(await post(t.url, { query })), ['UNAUTHENTICATED']);
    const token = expectData(await t.gql(RegisterDocument, { input: { email: uniqueEmail('prod'), password: STRONG_PASSWORD } })).register.accessToken;
    const ok = await post(t.url, { query }, { authorization: `Bearer ${token}` });
    assert.deepEqual(ok.json?.data, { __schema: { queryType: { name: 'Query' } } });
  });

  test('field suggestions are hidden when a query misspells a field', async () => {
    const r = await post(t.url, { query: '{ mee { id } }' });
    assert.deepEqual(codesOf(r), ['BAD_USER_INPUT']);
    assert.ok(!/Did you mean/.test(r.text), r.text);
  });

  test('requests over the per-IP rate are RATE_LIMITED with retryAfterSeconds when the budget is spent', async () => {
    let limited: Awaited<ReturnType<typeof post>> | undefined;
    for (let i = 0; i < 60 && !limited; i++) {
      const r = await post(t.url, { query: '{ me { id } }' });
      if (r.status === 429) limited = r;
    }
    assert.ok(limited, 'never limited');
    const err = limited.json!.errors![0]!;
    assert.equal(err.extensions?.code, 'RATE_LIMITED');
    assert.ok(Number(err.extensions?.retryAfterSeconds) > 0);
  });
});

test('me is UNAUTHENTICATED rather than INTERNAL when the bearer is garbage', async () => {
  const t = await startApp();
  try {
    expectCode(await t.gql(MeDocument, {}, { token: 'x'.repeat(5000) }), 'UNAUTHENTICATED');
  } finally {
    await t.stop();
  }
});

describe('METRICS_TOKEN', () => {
  const metricsToken = 'm'.repeat(12) + 'etrics-token-123';
  let t: TestApp;
  before(async () => {
    t = await startApp({ env: { METRICS_TOKEN: metricsToken } });
  });
  after(() => t.stop());

  test('/metrics is 401 when the bearer is missing or wrong and served when it matches', async () => {
    assert.equal((await fetch(`${t.url}/metrics`)).status, 401);
    assert.equal((await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${metricsToken}x` } })).status, 401);
    const ok = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${metricsToken}` } });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /vigil_graphql_requests_total|process_cpu/);
    // Health stays open: load balancers probe it without credentials.
    assert.equal((await fetch(`${t.url}/healthz`)).status, 200);
  });
});

test('the device registry is stopped once when the app stops', async () => {
  const t = await startApp();
  let stops = 0;
  const stop = t.app.registry.stop.bind(t.app.registry);
  t.app.registry.stop = () => {
    stops++;
    return stop();
  };
  await t.stop();
  assert.equal(stops, 1);
});
