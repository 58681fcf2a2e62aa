// The /graphiql file server over real HTTP: page, hashed assets, refusals, and the 503 before
// the explorer is built. The page itself is exercised in Chromium by graphiql.browser.test.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance } from 'fastify';
import { GRAPHIQL_DIST_DIR, registerGraphiqlRoutes } from '../src/http/graphiql.routes';
import { startApp, type TestApp } from './helpers/harness';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** GET with the path sent byte for byte (fetch would normalise `..` and `%2E%2E` away). */
function rawGet(base: string, rawPath: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, path: rawPath, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('graphiql routes on the built explorer', () => {
  let t: TestApp;
  let assetNames: string[];

  before(async () => {
    if (!existsSync(path.join(GRAPHIQL_DIST_DIR, 'index.html'))) {
      const build = spawnSync(process.execPath, [path.join(root, 'scripts/build-graphiql.mjs')], { stdio: 'inherit' });
      assert.equal(build.status, 0, 'npm run build:graphiql failed');
    }
    assetNames = await readdir(path.join(GRAPHIQL_DIST_DIR, 'assets'));
    t = await startApp();
  });
  after(() => t.stop());

  test('serves the page uncached with security headers when /graphiql is asked for', async () => {
    for (const p of ['/graphiql', '/graphiql/']) {
      const res = await fetch(`${t.url}${p}`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/html; charset=utf-8/);
      assert.equal(res.headers.get('cache-control'), 'no-cache');
      assert.equal(res.headers.get('x-frame-options'), 'DENY');
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
      const host = new URL(t.url).host;
      assert.match(res.headers.get('content-security-policy') ?? '', new RegExp(`connect-src 'self' ws://${host} wss://${host};`));
      const html = await res.text();
      const script = /<script type="module" src="\/graphiql\/assets\/(explorer-[A-Z0-9]{8}\.js)"/.exec(html)?.[1];
      assert.ok(script && assetNames.includes(script), 'the page points at a built bundle');
    }
  });

  test('serves hashed assets as immutable with their content type when they exist', async () => {
    const js = assetNames.find((n) => /^explorer-.*\.js$/.test(n))!;
    const css = assetNames.find((n) => /^explorer-.*\.css$/.test(n))!;
    const font = assetNames.find((n) => n.endsWith('.ttf'))!;
    for (const [name, type] of [
      [js, 'text/javascript; charset=utf-8'],
      [css, 'text/css; charset=utf-8'],
      [font, 'font/ttf'],
    ] as const) {
      const res = await fetch(`${t.url}/graphiql/assets/${name}`, { headers: { 'accept-encoding': 'identity' } });
      assert.equal(res.status, 200, name);
      assert.equal(res.headers.get('content-type'), type);
      assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.equal(res.headers.get('content-encoding'), null);
      assert.ok(Number(res.headers.get('content-length')) > 0);
      assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'self'/);
      await res.arrayBuffer();
    }
  });

  test('sends the brotli copy when the browser accepts br', async () => {
    const js = assetNames.find((n) => /^explorer-.*\.js$/.test(n))!;
    // fetch decodes br itself, so the body must still be the JavaScript.
    const res = await fetch(`${t.url}/graphiql/assets/${js}`, { headers: { 'accept-encoding': 'gzip, br' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-encoding'), 'br');
    assert.equal(res.headers.get('vary'), 'accept-encoding');
    assert.match(await res.text(), /createRoot|MonacoEnvironment|graphql/);
  });

  test('answers 404 when the name leaves assets/, is hidden, unknown or of an unserved type', async () => {
    for (const p of [
      '/graphiql/assets/..%2F..%2Fpackage.json',
      '/graphiql/assets/..%2Findex.html',
      '/graphiql/assets/%2E%2E',
      '/graphiql/assets/.env',
      '/graphiql/assets/..',
      '/graphiql/assets/missing-ABCDEFGH.js',
      '/graphiql/assets/explorer.map',
      `/graphiql/assets/${'a'.repeat(300)}.js`,
      '/graphiql/assets/a%00.js',
    ]) {
      const res = await rawGet(t.url, p);
      // Fastify itself answers 414 for a parameter over its length limit.
      assert.ok([404, 414].includes(res.status), `${p}: ${res.status}`);
      assert.doesNotMatch(res.body, /"name"\s*:\s*"vigil"|<!doctype/i, p);
    }
    const literal = await rawGet(t.url, '/graphiql/assets/../../package.json');
    assert.notEqual(literal.status, 200);
    assert.doesNotMatch(literal.body, /"name"\s*:\s*"vigil"/);
  });
});

describe('graphiql routes before the explorer is built', () => {
  let server: FastifyInstance;
  let dir: string;
  let url: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-graphiql-'));
    server = Fastify();
    registerGraphiqlRoutes(server, { dir });
    url = await server.listen({ port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('answers 503 naming npm run build:graphiql when dist/graphiql is missing', async () => {
    const res = await fetch(`${url}/graphiql`);
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.match(await res.text(), /npm run build:graphiql/);
    assert.equal(res.headers.get('x-frame-options'), 'DENY');
  });

  test('serves the page without a restart once the build appears', async () => {
    await mkdir(path.join(dir, 'assets'), { recursive: true });
    await writeFile(path.join(dir, 'index.html'), '<!doctype html><title>built</title>');
    const res = await fetch(`${url}/graphiql`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /built/);
  });
});
