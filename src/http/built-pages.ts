import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

// What the browser apps built at install (web/ -> dist/) share on the server side: the strict
// security headers, and a file server for their hashed assets.

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

export interface PagePolicy {
  /**
   * Allow `<style>` elements injected at run time (monaco cannot be given a nonce; styles cannot
   * run script). Default false: styles only from this origin's files.
   */
  inlineStyles?: boolean;
  /** Allow data: images (monaco's squiggles). Default false. */
  dataImages?: boolean;
}

export function contentSecurityPolicy(host: string | undefined, policy: PagePolicy = {}): string {
  // 'self' covers same-origin ws(s) in current browsers; older WebKit needs the scheme spelled out.
  const ws = host && PLAIN_HOST.test(host) ? ` ws://${host} wss://${host}` : '';
  return [
    "default-src 'self'",
    "script-src 'self'",
    `style-src 'self'${policy.inlineStyles ? " 'unsafe-inline'" : ''}`,
    // monaco's workers are same-origin files built next to the page (no blob: workers).
    "worker-src 'self'",
    `connect-src 'self'${ws}`,
    `img-src 'self'${policy.dataImages ? ' data:' : ''}`,
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    // Forms are handled in script; a native submit (which would put a password in the URL) is refused.
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** The headers every built page and asset carries: strict CSP, no framing, no sniffing, no referrer. */
export function securityHeaders(request: FastifyRequest, reply: FastifyReply, policy: PagePolicy = {}): void {
  reply
    .header('content-security-policy', contentSecurityPolicy(request.headers.host, policy))
    .header('x-frame-options', 'DENY')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cross-origin-opener-policy', 'same-origin')
    .header('cross-origin-resource-policy', 'same-origin');
}

/**
 * `GET <prefix>/:file` from `assetsDir`: only plain names with a known type, the brotli copy when
 * the browser accepts it, hashed names cached for good. Files are looked up on each request, so a
 * rebuild is picked up without a restart.
 */
export function registerAssetRoute(fastify: FastifyInstance, prefix: string, assetsDir: string, policy: PagePolicy = {}): void {
  fastify.get<{ Params: { file: string } }>(`${prefix}/:file`, async (request, reply) => {
    securityHeaders(request, reply, policy);
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
