import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { buildGraphqlSchema, schemaSdl } from '../src/resolvers/index';

test('committed schema.graphql matches what the code emits when the schema changes', async () => {
  const emitted = schemaSdl(await buildGraphqlSchema());
  const committed = readFileSync(new URL('../schema.graphql', import.meta.url), 'utf8');
  assert.equal(committed, emitted, 'schema.graphql is stale: run `npm run schema:emit` and commit it');
});
