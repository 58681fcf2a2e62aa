// P1: GraphQL Yoga serving our type-graphql schema and the shared in-memory data, with its
// defaults (parser and validation caches on); GraphiQL and request logging off.
import 'reflect-metadata';
import { createServer } from 'node:http';
import { createYoga } from 'graphql-yoga';
import { buildGraphqlSchema } from '../../src/resolvers/index';
import { peerContext } from './lib/http-data';
import { listenAndAnnounce } from './lib/http-server';

const schema = await buildGraphqlSchema();
const yoga = createYoga({
  schema,
  graphiql: false,
  logging: false,
  landingPage: false,
  context: ({ request }) => peerContext(request.headers.get('authorization') ?? undefined, ''),
});
listenAndAnnounce(createServer(yoga));
