import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** Where scripts/build-graphiql.mjs writes the explorer (index.html + assets/). */
export const GRAPHIQL_DIST_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/graphiql');

export interface GraphiqlRouteOptions {
  /** Built explorer directory; default dist/graphiql at the repository root. */
  dir?: string;
}

const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.ttf': 'font/ttf',
  '.woff2': 'font/woff2',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
};

/** One path segment, no leading dot: with the 404 on anything else, no way out of assets/. */
const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;
/** esbuild's `[name]-[hash]`: contents never change under such a name. */
const HASHED_NAME = /-[A-Z0-9]{8}\./;
/** Only a plain host (name, IPv4, [IPv6], port) goes into the CSP; anything else is left out. */
const PLAIN_HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

function contentSecurityPolicy(host: string | undefined): string {
  // 'self' covers same-origin ws(s) in current browsers; older WebKit needs the scheme spelled out.
  const ws = host && PLAIN_HOST.test(host) ? ` ws://${host} wss://${host}` : '';
  return [
    "default-src 'self'",
    "script-src 'self'",
    // monaco injects <style> elements at run time (themes, decorations, widget sizes) and cannot
    // be given a nonce; styles cannot run script, so this is the one relaxation.
    "style-src 'self' 'unsafe-inline'",
    // monaco's workers are same-origin files built next to the page (no blob: workers).
    "worker-src 'self'",
    `connect-src 'self'${ws}`,
    // monaco draws its error/warning squiggles as data: SVG backgrounds; images cannot run script.
    "img-src 'self' data:",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    // The sign-in form is handled in script; a native submit (which would put the password in
    // the URL) is refused outright.
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

function securityHeaders(request: FastifyRequest, reply: FastifyReply): void {
  reply
    .header('content-security-policy', contentSecurityPolicy(request.headers.host))
    .header('x-frame-options', 'DENY')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cross-origin-opener-policy', 'same-origin')
    .header('cross-origin-resource-policy', 'same-origin');
}

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

  fastify.get<{ Params: { file: string } }>('/graphiql/assets/:file', async (request, reply) => {
    securityHeaders(request, reply);
    const name = request.params.file;
    const type = CONTENT_TYPES[path.extname(name)];
    if (!SAFE_NAME.test(name) || !type) return reply.code(404).type('text/plain; charset=utf-8').send('Not found\n');
    const file = path.join(assetsDir, name);
    // Pre-compressed by the build; picked when the browser accepts it.
    const acceptsBr = /\bbr\b/.test(String(request.headers['accept-encoding'] ?? ''));
    const candidates = acceptsBr ? [`${file}.br`, file] : [file];
    for (const candidate of candidates) {
      const info = await stat(candidate).catch(() => undefined);
      if (!info?.isFile()) continue;
      if (candidate !== file) reply.header('content-encoding', 'br');
      return reply
        .header('vary', 'accept-encoding')
        .header('cache-control', HASHED_NAME.test(name) ? 'public, max-age=31536000, immutable' : 'no-cache')
        .header('content-length', info.size)
        .type(type)
        .send(createReadStream(candidate));
    }
    return reply.code(404).type('text/plain; charset=utf-8').send('Not found\n');
  });
}
