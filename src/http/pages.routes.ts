import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { registerAssetRoute, securityHeaders } from './built-pages';

/** Where scripts/build-console.mjs writes the console (index.html, reset.html, assets/). */
export const CONSOLE_DIST_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/console');

export interface PageRouteOptions {
  /** Built console directory; default dist/console at the repository root. */
  dir?: string;
}

const NOT_BUILT =
  'The web console is not built on this server.\n' +
  'Run `npm run build:console` in the gateway directory (npm install and npm ci run it for you), then reload.\n';

/**
 * The pages a person lands on: the console at `GET /` and the password-reset page at `GET /reset`
 * (the link in reset mails), plus their assets under `/console/assets/`. Both pages may carry a
 * secret (a reset token in the query, tokens in memory), so they are never cached or referred, and
 * the query string is neither logged nor echoed; the page removes the token from the address bar.
 */
export function registerPageRoutes(fastify: FastifyInstance, opts: PageRouteOptions = {}): void {
  const dir = opts.dir ?? CONSOLE_DIST_DIR;
  const page = (file: string) => async (request: FastifyRequest, reply: FastifyReply) => {
    securityHeaders(request, reply);
    reply.header('cache-control', 'no-store');
    let html: string;
    try {
      html = await readFile(path.join(dir, file), 'utf8');
    } catch {
      return reply.code(503).type('text/plain; charset=utf-8').send(NOT_BUILT);
    }
    return reply.type('text/html; charset=utf-8').send(html);
  };
  fastify.get('/', page('index.html'));
  fastify.get('/reset', page('reset.html'));
  registerAssetRoute(fastify, '/console/assets', path.join(dir, 'assets'));
}

/**
 * Fastify's default 404 says `Route GET:/reset?token=<token> not found`: it echoes the URL, and so
 * a reset token (or anything else in it) back into a body that proxies and browsers may keep. This
 * one names nothing of the request.
 */
export function registerNotFound(fastify: FastifyInstance): void {
  fastify.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .header('cache-control', 'no-store')
      .header('referrer-policy', 'no-referrer')
      .header('x-content-type-options', 'nosniff')
      .send({ errors: [{ message: 'Not found', extensions: { code: 'NOT_FOUND', requestId: request.id } }] }),
  );
}
