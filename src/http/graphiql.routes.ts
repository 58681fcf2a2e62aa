import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { registerAssetRoute, securityHeaders as pageHeaders } from './built-pages';

/** Where scripts/build-graphiql.mjs writes the explorer (index.html + assets/). */
export const GRAPHIQL_DIST_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/graphiql');

export interface GraphiqlRouteOptions {
  /** Built explorer directory; default dist/graphiql at the repository root. */
  dir?: string;
}

// monaco injects <style> elements at run time and draws its squiggles as data: SVG backgrounds.
const EXPLORER_POLICY = { inlineStyles: true, dataImages: true } as const;
const securityHeaders = (request: FastifyRequest, reply: FastifyReply) => pageHeaders(request, reply, EXPLORER_POLICY);

const NOT_BUILT =
  'The GraphiQL explorer is not built on this server.\n' +
  'Run `npm run build:graphiql` in the gateway directory (npm install and npm ci run it for you), then reload.\n';

/**
 * The API explorer: `GET /graphiql` (the page) and `/graphiql/assets/<file>` (its bundle, built at
 * install time). Answers 503 naming `npm run build:graphiql` while the build is missing; files are
 * looked up on each request, so a rebuild is picked up without a restart.
 */
export function registerGraphiqlRoutes(fastify: FastifyInstance, opts: GraphiqlRouteOptions = {}): void {
  const dir = opts.dir ?? GRAPHIQL_DIST_DIR;
  const assetsDir = path.join(dir, 'assets');

  const page = async (request: FastifyRequest, reply: FastifyReply) => {
    securityHeaders(request, reply);
    let html: string;
    try {
      html = await readFile(path.join(dir, 'index.html'), 'utf8');
    } catch {
      return reply.code(503).header('cache-control', 'no-store').type('text/plain; charset=utf-8').send(NOT_BUILT);
    }
    return reply.header('cache-control', 'no-cache').type('text/html; charset=utf-8').send(html);
  };
  fastify.get('/graphiql', page);
  fastify.get('/graphiql/', page);

  registerAssetRoute(fastify, '/graphiql/assets', assetsDir, EXPLORER_POLICY);
}
