import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildSchema, execute, parse, type DocumentNode, type GraphQLSchema } from 'graphql';
import { createJitExecutor } from '../src/graphql/jit-executor';
import { seedBoundDevices, registerUser } from './helpers/devices';
import { startApp, type TestApp } from './helpers/harness';

class Refused extends Error {
  extensions = { code: 'REFUSED' };
}

function toySchema(): GraphQLSchema {
  const schema = buildSchema(`
    type Item { id: ID! name: String! price: Int }
    type Query { items(first: Int!): [Item!]! item(id: ID!): Item refused: String broken: Item! }
    type Mutation { touch: Int! }
  `);
  const items = [1, 2, 3].map((i) => ({ id: String(i), name: `item ${i}`, price: i * 10 }));
  const q = schema.getQueryType()!.getFields();
  q.items!.resolve = (_r, a: { first: number }) => items.slice(0, a.first);
  q.item!.resolve = (_r, a: { id: string }) => (a.id === 'nameless' ? { id: 'nameless', name: null } : (items.find((i) => i.id === a.id) ?? null));
  q.refused!.resolve = () => {
    throw new Refused('no');
  };
  q.broken!.resolve = () => Promise.reject(new Error('database down'));
  let touched = 0;
  schema.getMutationType()!.getFields().touch!.resolve = () => ++touched;
  return schema;
}

/** What both executors should agree on: data, and each error as a client would see it, plus its original error. */
const comparable = (r: { data?: unknown; errors?: readonly { toJSON(): unknown; originalError?: unknown }[] }) => ({
  data: r.data === undefined ? undefined : JSON.parse(JSON.stringify(r.data)),
  errors: r.errors?.map((e) => ({ ...(e.toJSON() as object), original: (e.originalError as Error | undefined)?.message })),
});

describe('graphql-jit executor', () => {
  const schema = toySchema();
  const graphqlJs = (document: DocumentNode, variables?: Record<string, unknown>, operationName: string | null = null) =>
    execute({ schema, document, variableValues: variables, operationName });

  const runBoth = async (query: string, variables?: Record<string, unknown>, operationName: string | null = null) => {
    const jit = createJitExecutor(schema);
    const document = parse(query);
    const operationType = /^\s*mutation/.test(query) ? 'mutation' : 'query';
    const args = { document, operationName, operationType, documentKey: query, context: {}, variables };
    return { jit: await jit.run(args), reference: await graphqlJs(document, variables, operationName), executor: jit };
  };

  test('answers a query as graphql-js does, compiling each document once', async () => {
    const schemaJit = createJitExecutor(schema);
    const query = 'query Items($n: Int!) { items(first: $n) { id name price } }';
    const document = parse(query);
    for (const n of [2, 3]) {
      const r = await schemaJit.run({ document, operationName: 'Items', operationType: 'query', documentKey: query, context: {}, variables: { n } });
      assert.deepEqual(comparable(r as never), comparable((await graphqlJs(document, { n }, 'Items')) as never));
    }
    assert.equal(schemaJit.cachedCount(), 1);
  });

  test('keeps at most maxCached compiled operations', async () => {
    const jit = createJitExecutor(schema, { maxCached: 2 });
    for (const field of ['id', 'name', 'price']) {
      const query = `{ items(first: 1) { ${field} } }`;
      await jit.run({ document: parse(query), operationName: null, operationType: 'query', documentKey: query, context: {}, variables: undefined });
    }
    assert.equal(jit.cachedCount(), 2);
  });

  test('a resolver error carries its original error, path and locations, as in graphql-js', async () => {
    const { jit, reference } = await runBoth('{ items(first: 1) { id } refused }');
    assert.deepEqual(comparable(jit as never), comparable(reference as never));
    assert.ok(jit.errors![0]!.originalError instanceof Refused);
  });

  test('null in a non-null field, and a rejected promise at the root, read as in graphql-js', async () => {
    for (const query of ['{ item(id: "nameless") { id name } }', '{ broken { id } }']) {
      const { jit, reference } = await runBoth(query);
      assert.deepEqual(comparable(jit as never), comparable(reference as never), query);
    }
  });

  test('variables that do not coerce give graphql-js errors and no data', async () => {
    for (const variables of [{ n: 'three' }, {}, { n: 2 ** 40 }]) {
      const { jit, reference } = await runBoth('query Items($n: Int!) { items(first: $n) { id } }', variables, null);
      assert.equal(jit.data, undefined);
      assert.deepEqual(comparable(jit as never), comparable(reference as never), JSON.stringify(variables));
    }
  });

  test('mutations run on graphql-js and are not compiled', async () => {
    const { jit, executor } = await runBoth('mutation { touch }');
    assert.equal(typeof jit.data?.touch, 'number');
    assert.equal(executor.cachedCount(), 0);
  });

  test('an operation jit cannot compile falls back to graphql-js and is reported once', async () => {
    const reasons: string[] = [];
    const jit = createJitExecutor(schema, { onFallback: (_name, reason) => reasons.push(reason) });
    const query = 'query A { items(first: 1) { id } }';
    const document = parse(query);
    for (let i = 0; i < 2; i++) {
      const r = await jit.run({ document, operationName: 'Missing', operationType: 'query', documentKey: query, context: {}, variables: undefined });
      assert.deepEqual(comparable(r as never), comparable((await graphqlJs(document, undefined, 'Missing')) as never));
    }
    assert.equal(reasons.length, 1);
  });
});

describe('the HTTP endpoint with GRAPHQL_EXECUTOR=jit and =graphql-js', () => {
  const apps: Record<string, TestApp> = {};
  const tokens: Record<string, string> = {};
  before(async () => {
    for (const kind of ['jit', 'graphql-js']) {
      const t = await startApp({ env: { GRAPHQL_EXECUTOR: kind } });
      apps[kind] = t;
      const user = await registerUser(t, `exec-${kind}`);
      await seedBoundDevices(t, user.id, 3, { start: new Date('2026-01-01T00:00:00Z'), name: (i) => `Camera ${i}` });
      tokens[kind] = user.token;
    }
  });
  after(async () => {
    for (const t of Object.values(apps)) await t.stop();
  });

  /** The response body with per-app values (ids, cursors, times, request ids) blanked. */
  async function post(kind: string, body: unknown, withToken = true) {
    const res = await fetch(`${apps[kind]!.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(withToken ? { authorization: `Bearer ${tokens[kind]}` } : {}) },
      body: JSON.stringify(body),
    });
    const text = (await res.text())
      .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uuid>')
      .replace(/"(cursor|endCursor)":"[^"]+"/g, '"$1":"<cursor>"')
      .replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, '<time>')
      .replace(/"serial":"[^"]+"/g, '"serial":"<serial>"');
    return { status: res.status, text };
  }

  const cases: Array<[string, unknown, boolean?]> = [
    ['a page of devices', { query: 'query($n: Int) { devices(first: $n) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id name serial status role permissions shares { id } } } } }', variables: { n: 2 } }],
    ['a bad cursor', { query: 'query($a: String) { devices(first: 2, after: $a) { totalCount } }', variables: { a: 'garbage' } }],
    ['a page size out of range', { query: '{ devices(first: 500) { totalCount } }' }],
    ['no credentials', { query: '{ devices(first: 2) { totalCount } }' }, false],
    ['a variable of the wrong type', { query: 'query($n: Int) { devices(first: $n) { totalCount } }', variables: { n: 'two' } }],
    ['an unknown operation name', { query: 'query A { devices(first: 1) { totalCount } }', operationName: 'B' }],
    ['an unknown field', { query: '{ devices(first: 1) { totl } }' }],
    ['a missing device', { query: '{ device(id: "00000000-0000-4000-8000-000000000000") { id } }' }],
  ];
  for (const [what, body, withToken] of cases) {
    test(`${what}: the same status and body`, async () => {
      const jit = await post('jit', body, withToken ?? true);
      const reference = await post('graphql-js', body, withToken ?? true);
      assert.deepEqual(jit, reference);
    });
  }
});
