// GET / and /reset over real HTTP: headers of pages that handle secrets, no token echoed by any
// 404, and CONSOLE=off. The pages themselves run in Chromium in console.browser.test.ts.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CONSOLE_DIST_DIR } from '../src/http/pages.routes';
import { ensureBuilt } from './helpers/chromium';
import { startApp, type TestApp } from './helpers/harness';

const SECRET = 'tok_' + 'x'.repeat(40);

describe('console and reset pages', () => {
  let t: TestApp;
  before(async () => {
    ensureBuilt(path.join(CONSOLE_DIST_DIR, 'index.html'), 'build-console.mjs');
    t = await startApp();
  });
  after(() => t.stop());

  test('serves / and /reset uncached, unreferred and unframed with a strict CSP when asked for', async () => {
    for (const p of ['/', `/reset?token=${SECRET}`, '/reset']) {
      const res = await fetch(`${t.url}${p}`);
      assert.equal(res.status, 200, p);
      assert.match(res.headers.get('content-type') ?? '', /^text\/html; charset=utf-8/);
      assert.equal(res.headers.get('cache-control'), 'no-store');
      assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
      assert.equal(res.headers.get('x-frame-options'), 'DENY');
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      const csp = res.headers.get('content-security-policy') ?? '';
      for (const d of ["default-src 'self'", "script-src 'self'", "style-src 'self';", "frame-ancestors 'none'", "object-src 'none'", "form-action 'none'", "base-uri 'none'"]) {
        assert.ok(csp.includes(d), `${p}: CSP lacks ${d}: ${csp}`);
      }
      const html = await res.text();
      assert.ok(!html.includes(SECRET), 'the page echoes the token');
      const script = /<script type="module" src="(\/console\/assets\/[^"]+\.js)"/.exec(html)?.[1];
      assert.ok(script, `${p} points at a bundle`);
      const js = await fetch(`${t.url}${script}`, { headers: { 'accept-encoding': 'br' } });
      assert.equal(js.status, 200);
      assert.match(js.headers.get('cache-control') ?? '', /immutable/);
    }
  });

  test('answers 404 without echoing the path or query when a route does not exist', async () => {
    for (const p of [`/resett?token=${SECRET}`, `/reset/${SECRET}`, `/nope/${SECRET}?token=${SECRET}`, `/console/assets/${SECRET}.js`]) {
      const res = await fetch(`${t.url}${p}`);
      assert.equal(res.status, 404, p);
      const body = await res.text();
      assert.ok(!body.includes(SECRET) && !body.includes('tok_'), `${p} echoed: ${body}`);
    }
    const post = await fetch(`${t.url}/reset?token=${SECRET}`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 404);
    const body = await post.text();
    assert.ok(!body.includes(SECRET), `POST /reset echoed: ${body}`);
    assert.deepEqual(JSON.parse(body).errors[0].extensions.code, 'NOT_FOUND');
  });

  test('serves no page and echoes nothing when CONSOLE=off', async () => {
    const off = await startApp({ env: { CONSOLE: 'off' } });
    try {
      for (const p of ['/', `/reset?token=${SECRET}`]) {
        const res = await fetch(`${off.url}${p}`);
        assert.equal(res.status, 404, p);
        assert.ok(!(await res.text()).includes(SECRET));
      }
      const assets = await readdir(path.join(CONSOLE_DIST_DIR, 'assets'));
      const res = await fetch(`${off.url}/console/assets/${assets.find((a) => a.endsWith('.js'))}`);
      assert.equal(res.status, 404);
      assert.equal((await fetch(`${off.url}/graphiql`)).status, 200, 'the explorer stays');
    } finally {
      await off.stop();
    }
  });
});
