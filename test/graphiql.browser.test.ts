// The /graphiql explorer in real headless Chromium (Debian's `chromium` package, driven by
// playwright-core): sign in through the page, run operations, stream an alarm. Skipped when
// /usr/bin/chromium is missing, except on CI, where that is a failure (.ci/run installs it).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generate } from 'otplib';
import type { BrowserContext, Page } from 'playwright-core';
import { GRAPHIQL_DIST_DIR } from '../src/http/graphiql.routes';
import {
  BindDeviceDocument,
  ConfirmTotpDocument,
  CreateApiKeyDocument,
  EnableTotpDocument,
  RegisterDocument,
  RootFieldNamesDocument,
} from './generated/graphql';
import { chromiumSkip, ensureBuilt, failWithoutChromiumOnCi, launchChromium } from './helpers/chromium';
import { expectData, startApp, STRONG_PASSWORD, uniqueEmail, waitFor, type TestApp } from './helpers/harness';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.join(root, 'test-output');
const ADMIN_TOKEN = 'graphiql-browser-test-admin-token-0123456789';

failWithoutChromiumOnCi();

describe('graphiql explorer in Chromium', { skip: chromiumSkip }, () => {
  let t: TestApp;
  let context: BrowserContext;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  let email: string;
  let accessToken: string;
  /** Every URL the browser asked for (pages, assets, fetches, WebSockets) and what the console said. */
  const urls: string[] = [];
  const problems: string[] = [];

  before(async () => {
    ensureBuilt(path.join(GRAPHIQL_DIST_DIR, 'index.html'), 'build-graphiql.mjs');
    t = await startApp({ env: { ADMIN_TOKEN } });
    // A fixed address reads better in the README's screenshot; the database is this file's own.
    email = 'partner@example.com';
    accessToken = expectData(await t.gql(RegisterDocument, { input: { email, password: STRONG_PASSWORD, displayName: 'Partner' } })).register.accessToken;
    browser = await launchChromium();
    context = browser.context;
    await mkdir(outDir, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    await t?.stop();
  });

  /** A fresh tab (fresh sessionStorage: signed out, default example tabs) on /graphiql. */
  async function openExplorer(): Promise<Page> {
    const page = await context.newPage();
    page.on('request', (r) => urls.push(r.url()));
    page.on('websocket', (ws) => urls.push(ws.url()));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push(`console ${m.type()}: ${m.text()}`);
    });
    const response = await page.goto(`${t.url}/graphiql`);
    assert.equal(response?.status(), 200);
    // The editors are up once monaco (loaded lazily, with its workers) has rendered the first tab.
    await page.locator('.graphiql-query-editor .monaco-editor').first().waitFor();
    return page;
  }

  async function signIn(page: Page, login: string, password: string) {
    await page.getByLabel('Email or phone').fill(login);
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  /**
   * Pastes a named operation into a new tab and runs it. GraphiQL reads the operation name and
   * kind (subscription or not) from state it updates a moment after an edit; the tab's title
   * turning into the operation's name is the sign that it has.
   */
  async function run(page: Page, operation: string) {
    const name = /^\s*(?:query|mutation|subscription)\s+(\w+)/.exec(operation)?.[1];
    assert.ok(name, 'run() needs a named operation');
    await page.getByRole('button', { name: 'New tab' }).click();
    await page.locator('.graphiql-query-editor .monaco-editor').first().click();
    await page.keyboard.press('Control+A');
    await page.keyboard.insertText(operation);
    await page.locator('.graphiql-tab-active', { hasText: name }).waitFor();
    await page.getByRole('button', { name: /Execute query/ }).click();
  }

  const resultPane = (page: Page) => page.locator('.result-window');
  /** The result pane's text; monaco renders spaces as no-break spaces. */
  const resultText = async (page: Page) => (await resultPane(page).innerText()).replace(/\u00a0/g, ' ');

  test('serves the page with a strict CSP and no framing when /graphiql is opened', async () => {
    const res = await fetch(`${t.url}/graphiql`);
    assert.equal(res.status, 200);
    const csp = res.headers.get('content-security-policy') ?? '';
    for (const directive of ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "form-action 'none'"]) {
      assert.ok(csp.includes(directive), `CSP lacks ${directive}: ${csp}`);
    }
    assert.doesNotMatch(csp, /script-src[^;]*(unsafe|blob:|data:|\*)/);
    assert.equal(res.headers.get('x-frame-options'), 'DENY');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer');

    const page = await openExplorer();
    const tabs = await page.locator('.graphiql-tab').allInnerTexts();
    for (const name of ['Me', 'ListDevices', 'BindDevice', 'ShareDevice', 'UnbindDevice', 'LiveAlarms']) {
      assert.ok(tabs.some((tab) => tab.includes(name)), `no example tab ${name} in ${JSON.stringify(tabs)}`);
    }
    // Every file came from this gateway (nothing from a CDN), and the CSP blocked nothing.
    const foreign = urls.filter((u) => !u.startsWith(t.url) && !u.startsWith(t.url.replace('http', 'ws')));
    assert.deepEqual(foreign, []);
    assert.deepEqual(problems, []);
    await page.close();
  });

  test('signs in with a password and shows me in the result pane when the form is used', async () => {
    const page = await openExplorer();
    const login = page.waitForResponse((r) => r.url().endsWith('/graphql') && (r.request().postData() ?? '').includes('ExplorerLogin'));
    await signIn(page, email, STRONG_PASSWORD);
    const token = ((await (await login).json()) as { data: { login: { accessToken: string } } }).data.login.accessToken;
    await page.getByTestId('signed-in-as').getByText(email).waitFor();

    await run(page, 'query WhoAmI { me { id email } }');
    await resultPane(page).getByText(email).waitFor();

    // The token travels in headers only: not in the address bar, any request URL or storage.
    assert.ok(!page.url().includes(token));
    assert.deepEqual(
      urls.filter((u) => u.includes(token) || /token|password/i.test(new URL(u).search)),
      [],
    );
    // Runs in the page (the test's own types have no DOM).
    const stored = await page.evaluate('JSON.stringify({ ...sessionStorage, ...localStorage })');
    assert.ok(typeof stored === 'string' && !stored.includes(token), 'the access token was written to web storage');

    // Prettier (loaded on demand) lays the pasted one-liner out over several lines.
    await page.getByRole('button', { name: /Prettify query/ }).click();
    await waitFor(async () => (await page.locator('.graphiql-query-editor .view-line').count()) > 3, 10_000, 'the prettified query');
    // The docs pane: the schema's descriptions, from an ordinary introspection.
    await page.getByRole('button', { name: 'Show Documentation Explorer' }).click();
    await page.locator('.graphiql-doc-explorer').getByText('Query', { exact: true }).first().click();
    await page.locator('.graphiql-doc-explorer-title', { hasText: 'Query' }).waitFor();
    assert.ok((await page.locator('.graphiql-doc-explorer .graphiql-markdown-description').count()) > 0, 'the docs pane shows no descriptions');
    await page.screenshot({ path: path.join(outDir, 'graphiql.png') });
    // The README's picture: refreshed on demand, so test runs don't churn a committed file.
    const docsShot = path.join(root, 'docs/graphiql.png');
    if (process.env.UPDATE_DOCS_SCREENSHOT || !existsSync(docsShot)) {
      await mkdir(path.dirname(docsShot), { recursive: true });
      await page.screenshot({ path: docsShot });
    }
    assert.deepEqual(problems, []);
    await page.close();
  });

  test('asks for the second factor and accepts a recovery code when the account has TOTP on', async () => {
    const totpEmail = uniqueEmail('explorer-totp');
    const token = expectData(await t.gql(RegisterDocument, { input: { email: totpEmail, password: STRONG_PASSWORD } })).register.accessToken;
    const { secret } = expectData(await t.gql(EnableTotpDocument, {}, { token })).enableTotp;
    const recoveryCodes = expectData(await t.gql(ConfirmTotpDocument, { code: await generate({ secret }) }, { token })).confirmTotp;

    const page = await openExplorer();
    await signIn(page, totpEmail, STRONG_PASSWORD);
    await page.getByRole('alert').getByText(/two-factor/).waitFor();
    await page.getByLabel('Authentication code').fill(recoveryCodes[0]!);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('signed-in-as').getByText(totpEmail).waitFor();
    await page.close();
  });

  test('signs in with a pasted API key and signs out again when the buttons are used', async () => {
    const { secret } = expectData(await t.gql(CreateApiKeyDocument, { name: 'explorer', scopes: ['DEVICES_READ'] }, { token: accessToken })).createApiKey;
    const page = await openExplorer();
    await page.getByRole('button', { name: 'Use an API key instead' }).click();
    await page.getByLabel('API key').fill(secret);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('signed-in-as').getByText(email).waitFor();
    await run(page, 'query WhoAmI { me { email } }');
    await resultPane(page).getByText(email).waitFor();

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('form', { name: 'Sign in' }).waitFor();
    await run(page, 'query WhoAmI { me { email } }');
    await resultPane(page).getByText('UNAUTHENTICATED').waitFor();
    await page.close();
  });

  /** WebSocket frames for a failure message, without the bearer token. */
  const redact = (frames: string[]) => frames.join(' | ').replace(/Bearer [\w.-]+/g, 'Bearer [redacted]');

  test('streams a posted ISAPI alarm into the result pane when the alarms subscription runs', async (tc) => {
    const roots = expectData(await t.gql(RootFieldNamesDocument, {}, { token: accessToken }));
    if (!roots.subscription?.fields?.some((f) => f.name === 'alarms')) return tc.skip('alarms subscription not implemented yet');
    if (!roots.mutation?.fields?.some((f) => f.name === 'bindDevice')) return tc.skip('device binding not implemented yet');

    const serial = `DS-2CD2143G2-I2026${Date.now().toString().slice(-8)}`;
    const provisioned = await fetch(`${t.url}/admin/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ serial, model: 'DS-2CD2143G2-I', channels: 1 }),
    });
    if (provisioned.status === 404) return tc.skip('device provisioning not implemented yet');
    assert.equal(provisioned.status, 201);
    const device = (await provisioned.json()) as { verificationCode: string; ingestPath: string };
    expectData(await t.gql(BindDeviceDocument, { serial, verificationCode: device.verificationCode, name: 'Explorer cam' }, { token: accessToken }));

    const page = await openExplorer();
    const frames: string[] = [];
    page.on('websocket', (ws) => {
      ws.on('framesent', (f) => frames.push(`sent ${f.payload}`));
      ws.on('framereceived', (f) => frames.push(`received ${f.payload}`));
    });
    await signIn(page, email, STRONG_PASSWORD);
    await page.getByTestId('signed-in-as').getByText(email).waitFor();
    await run(page, 'subscription LiveAlarmsNow { alarms { id type rawType channel startedAt device { id name } } }');
    // graphql-ws: the token went in connection_init's payload, the server acked, the operation started.
    await waitFor(() => frames.some((f) => f.startsWith('sent') && f.includes('"subscribe"')), 10_000, 'the subscribe frame').catch(async (e) => {
      throw new Error(`${e.message}: ${await resultText(page)} ${redact(frames)} ${problems.join(' | ')}`);
    });
    const init = frames.find((f) => f.includes('"connection_init"')) ?? '';
    assert.match(init, /"authorization":"Bearer [^"]+"/);
    assert.ok(frames.some((f) => f.includes('"connection_ack"')));

    // The server registers the subscription just after the frame arrives; post distinct alarm
    // types until one reaches the page rather than guessing how long that takes.
    const fixtures = ['vmd.xml', 'linedetection.xml', 'fielddetection.xml', 'regionentrance.xml', 'tamperdetection.xml', 'io.xml'];
    let posted = 0;
    let lastPost = 0;
    await waitFor(
      async () => {
        if ((await resultText(page)).includes('Explorer cam')) return true;
        if (Date.now() - lastPost < 500) return false;
        lastPost = Date.now();
        const fixture = fixtures[posted++ % fixtures.length]!;
        const res = await fetch(`${t.url}${device.ingestPath}`, {
          method: 'POST',
          headers: { 'content-type': 'application/xml' },
          body: await readFile(path.join(root, 'test/fixtures/isapi', fixture)),
        });
        assert.equal(res.status, 200, `ISAPI post of ${fixture}`);
        return false;
      },
      15_000,
      'the alarm in the result pane',
    ).catch(async (e) => {
      throw new Error(`${e.message}; posted ${posted}; result pane: ${await resultText(page)}; frames: ${redact(frames)}`);
    });
    assert.match(await resultText(page), /"rawType"/);
    await page.screenshot({ path: path.join(outDir, 'graphiql-alarms.png') });
    assert.deepEqual(problems, []);
    await page.close();
  });
});
