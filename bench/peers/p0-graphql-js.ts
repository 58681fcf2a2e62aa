// P0: graphql-js on node:http, our type-graphql schema and the shared in-memory data; parsed and
// validated documents are cached by query text, as any production graphql-js server would.
import 'reflect-metadata';
import { execute, parse, validate, specifiedRules, type DocumentNode } from 'graphql';
import { buildGraphqlSchema } from '../../src/resolvers/index';
import { peerContext } from './lib/http-data';
import { serveGraphql } from './lib/http-server';

const schema = await buildGraphqlSchema();
const documents = new Map<string, DocumentNode | { errors: readonly Error[] }>();

serveGraphql(async (body, req) => {
  let doc = documents.get(body.query);
  if (!doc) {
    const parsed = parse(body.query);
    const errors = validate(schema, parsed, specifiedRules);
    doc = errors.length ? { errors } : parsed;
    if (documents.size > 1000) documents.clear();
    documents.set(body.query, doc);
  }
  if ('errors' in doc) return { status: 400, json: JSON.stringify({ errors: doc.errors.map((e) => ({ message: e.message })) }) };
  const contextValue = await peerContext(req.headers.authorization, req.socket.remoteAddress ?? '');
  const result = await execute({ schema, document: doc, variableValues: body.variables, operationName: body.operationName, contextValue });
  return { status: 200, json: JSON.stringify(result) };
});
