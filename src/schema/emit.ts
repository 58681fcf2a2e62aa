import { writeFileSync } from 'node:fs';
import { buildGraphqlSchema, schemaSdl } from '../resolvers/index';

// `npm run schema:emit`: rewrites schema.graphql from the code.
const sdl = schemaSdl(await buildGraphqlSchema());
writeFileSync(new URL('../../schema.graphql', import.meta.url), sdl);
console.log('schema.graphql written');
