// The web console (GET /) and the reset page (GET /reset) in real headless Chromium (Debian's
// `chromium`, driven by playwright-core), selecting by role and label as a person reads the page.
// One browser for the file; each test opens its own tab (a tab's sessionStorage is its own, so a
// new tab starts signed out). Skipped when /usr/bin/chromium is missing, except on CI.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generate } from 'otplib';
import type { BrowserContext, Page, WebSocketRoute } from 'playwright-core';
import { CONSOLE_DIST_DIR } from '../src/http/pages.routes';
import { ConfirmTotpDocument, EnableTotpDocument, RegisterDocument } from './generated/graphql';
import { connectDevice, fixture, isapiPost } from './helpers/alarms-fixtures';
import { chromiumSkip, ensureBuilt, failWithoutChromiumOnCi, launchChromium } from './helpers/chromium';
import { provisionAndBind, provisionDevice, registerUser, seedBoundDevices, type TestUser } from './helpers/devices';
import { expectData, OTHER_STRONG_PASSWORD, startApp, STRONG_PASSWORD, waitFor, type TestApp } from './helpers/harness';
import { readResetMessage, startSmtpCatcher, type CaughtMessage, type SmtpCatcher } from './helpers/mail-catchers';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.join(root, 'test-output');
/** Links in mails point here; the test opens the same path and query on the test server. */
const PUBLIC_URL = 'https://vigil.example';

failWithoutChromiumOnCi();

describe('web console in Chromium', { skip: chromiumSkip }, () => {
  let t: TestApp;
  /** The mails the gateway sends (outbox rows keep codes and links only sealed, then not at all). */
  let mail: SmtpCatcher;
  let context: BrowserContext;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  const urls: string[] = [];
  const problems: string[] = [];

  before(async () => {
    ensureBuilt(path.join(CONSOLE_DIST_DIR, 'index.html'), 'build-console.mjs');
    // This file registers a dozen accounts and asks for several resets from one address.
    mail = await startSmtpCatcher();
    t = await startApp({ env: { PUBLIC_URL, SMTP_URL: mail.url, REGISTER_MAX_PER_IP: '1000', RESET_MAX_PER_IP: '1000' } });
    browser = await launchChromium({ width: 1280, height: 800 });
    context = browser.context;
    // Everything waited for here happens within a few seconds; fail fast and say what was missing.
    context.setDefaultTimeout(10_000);
    await mkdir(outDir, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    await t?.stop();
    await mail?.stop();
    // Nothing came from another host, and the CSP refused nothing the pages needed.
    const foreign = urls.filter((u) => !u.startsWith(t.url) && !u.startsWith(t.url.replace('http', 'ws')) && !u.startsWith('data:'));
    assert.deepEqual(foreign, []);
    assert.deepEqual(problems, []);
  });

  async function open(pathAndQuery = '/'): Promise<Page> {
    const page = await context.newPage();
    page.on('request', (r) => urls.push(r.url()));
    page.on('websocket', (ws) => urls.push(ws.url()));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) problems.push(`console ${m.type()}: ${m.text()}`);
    });
    const response = await page.goto(`${t.url}${pathAndQuery}`);
    assert.equal(response?.status(), 200);
    return page;
  }

  async function signIn(page: Page, login: string, password: string) {
    await page.getByLabel('Email or phone').fill(login);
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  async function openSignedIn(user: TestUser, route = ''): Promise<Page> {
    const page = await open(`/${route}`);
    await signIn(page, user.email, user.password);
    await page.getByTestId('signed-in-as').getByText(user.email).waitFor();
    return page;
  }

  /** The README's pictures: refreshed on demand, so test runs don't churn committed files. */
  async function screenshot(page: Page, name: string) {
    await page.screenshot({ path: path.join(outDir, name) });
    const docsShot = path.join(root, 'docs', name);
    if (process.env.UPDATE_DOCS_SCREENSHOT || !existsSync(docsShot)) await page.screenshot({ path: docsShot });
  }

  /** The newest reset mail to `login`, as its reader sees it. */
  const resetMail = async (login: string) => {
    const isReset = (x: CaughtMessage) => x.to === login && x.body.includes('/reset?token=');
    await mail.waitForMessage(isReset);
    return readResetMessage(mail.messages.filter(isReset).at(-1)!.body, PUBLIC_URL);
  };

  test('resets the password from the mail link, cleans the address bar and refuses the link twice', async () => {
    const user = await registerUser(t, 'reset-link');
    const page = await open('/');
    await page.getByRole('link', { name: 'Forgot password?' }).click();
    await page.getByLabel('Email or phone').fill(user.email);
    await page.getByRole('button', { name: 'Send reset code' }).click();
    await page.getByLabel('Code').waitFor();
    const { link, token } = await resetMail(user.email);
    const target = link.slice(PUBLIC_URL.length);

    const linkPage = await open(target);
    // The token leaves the address bar at once and is nowhere in storage.
    await waitFor(() => !linkPage.url().includes('token'), 2000, 'the token removed from the address bar');
    assert.equal(new URL(linkPage.url()).pathname, '/reset');
    const stored = await linkPage.evaluate('JSON.stringify({ ...sessionStorage, ...localStorage })');
    assert.ok(typeof stored === 'string' && !stored.includes(token), 'the reset token was written to web storage');

    await linkPage.getByLabel('New password', { exact: true }).fill('password123');
    await linkPage.getByText(/Too weak: Password is too common/).waitFor();
    await linkPage.getByLabel('New password', { exact: true }).fill(OTHER_STRONG_PASSWORD);
    await linkPage.getByLabel('Confirm new password').fill(`${OTHER_STRONG_PASSWORD}x`);
    await linkPage.getByText('The passwords do not match.').waitFor();
    assert.equal(await linkPage.getByRole('button', { name: 'Reset password' }).isDisabled(), true);
    await linkPage.getByLabel('Confirm new password').fill(OTHER_STRONG_PASSWORD);
    await linkPage.getByText('Strong password.').waitFor();
    await screenshot(linkPage, 'console-reset.png');
    await linkPage.getByRole('button', { name: 'Reset password' }).click();
    await linkPage.getByRole('status').getByText(/Password changed/).waitFor();
    await linkPage.getByRole('link', { name: /Sign in/ }).click();
    await signIn(linkPage, user.email, OTHER_STRONG_PASSWORD);
    await linkPage.getByTestId('signed-in-as').getByText(user.email).waitFor();

    // The same link again: refused in words, with a way to ask for a new one.
    const again = await open(target);
    await again.getByLabel('New password', { exact: true }).fill(STRONG_PASSWORD);
    await again.getByLabel('Confirm new password').fill(STRONG_PASSWORD);
    await again.getByRole('button', { name: 'Reset password' }).click();
    await again.getByRole('alert').getByText('This link has expired or was already used').waitFor();
    await again.getByRole('button', { name: 'Ask for a new link' }).click();
    await again.getByLabel('Email or phone').waitFor();
    assert.ok(!urls.some((u) => u.includes(token) && !u.endsWith(target)), 'the token went into another request URL');
    await Promise.all([page.close(), linkPage.close(), again.close()]);
  });

  test('resets the password with the 6-digit code when there is no link', async () => {
    const user = await registerUser(t, 'reset-code');
    const page = await open('/reset');
    await page.getByLabel('Email or phone').fill(user.email);
    await page.getByRole('button', { name: 'Send reset code' }).click();
    await page.getByLabel('Code').waitFor();
    const { code } = await resetMail(user.email);
    await page.getByLabel('Code').fill(code === '000000' ? '111111' : '000000');
    await page.getByLabel('New password', { exact: true }).fill(OTHER_STRONG_PASSWORD);
    await page.getByLabel('Confirm new password').fill(OTHER_STRONG_PASSWORD);
    await page.getByRole('button', { name: 'Reset password' }).click();
    await page.getByRole('alert').getByText(/This code is wrong/).waitFor();
    await page.getByLabel('Code').fill(code);
    await page.getByRole('button', { name: 'Reset password' }).click();
    await page.getByRole('status').getByText(/Password changed/).waitFor();
    await page.close();
  });

  test('signs in with a password, and asks for the Code when the account has two-factor on', async () => {
    const plain = await registerUser(t, 'plain');
    const page = await open('/');
    await signIn(page, plain.email, 'Not-The-Password-42');
    await page.getByRole('alert').getByText('Wrong login or password.').waitFor();
    await signIn(page, plain.email, plain.password);
    await page.getByTestId('signed-in-as').getByText(plain.email).waitFor();
    // A reload keeps the tab signed in (the refresh token is in this tab's sessionStorage only).
    await page.reload();
    await page.getByTestId('signed-in-as').getByText(plain.email).waitFor();
    const stored = (await page.evaluate('JSON.stringify({ ...sessionStorage, ...localStorage })')) as string;
    assert.ok(!/eyJ/.test(stored), 'an access token (JWT) was written to web storage');

    const totpUser = await registerUser(t, 'totp');
    const { secret } = expectData(await t.gql(EnableTotpDocument, {}, { token: totpUser.token })).enableTotp;
    expectData(await t.gql(ConfirmTotpDocument, { code: await generate({ secret }) }, { token: totpUser.token }));
    const second = await open('/');
    await signIn(second, totpUser.email, totpUser.password);
    await second.getByRole('alert').getByText(/two-factor authentication/).waitFor();
    // The next time step's code: the current one was spent on confirming (a code works once).
    await second.getByLabel('Code').fill(await generate({ secret, epoch: Math.floor(Date.now() / 1000) + 30 }));
    await second.getByRole('button', { name: 'Sign in' }).click();
    await second.getByTestId('signed-in-as').getByText(totpUser.email).waitFor();
    await Promise.all([page.close(), second.close()]);
  });

  test('enrols two-factor from the account page with the QR code and shows recovery codes once', async () => {
    const user = await registerUser(t, 'enrol');
    const page = await openSignedIn(user, '#/account');
    await page.getByRole('button', { name: 'Turn on two-factor authentication' }).click();
    await page.getByRole('img', { name: /QR code/ }).waitFor();
    const secret = (await page.getByTestId('totp-secret').innerText()).trim();
    await page.getByLabel('Code').fill(await generate({ secret }));
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('list', { name: 'Recovery codes' }).waitFor();
    assert.ok((await page.getByRole('list', { name: 'Recovery codes' }).getByRole('listitem').count()) >= 5);
    await page.close();
  });

  test('shows a status change live, binds with errors in words, claims a bound device, and shares one', async () => {
    // A fixed address reads better in the README's screenshot; the database is this file's own.
    const ownerEmail = 'owner@example.com';
    const reg = expectData(await t.gql(RegisterDocument, { input: { email: ownerEmail, password: STRONG_PASSWORD, displayName: null } }));
    const owner: TestUser = { id: reg.register.user.id, email: ownerEmail, token: reg.register.accessToken, password: STRONG_PASSWORD };
    const friend = await registerUser(t, 'friend');
    const { provisioned } = await provisionAndBind(t, owner, { name: 'Front door', model: 'DS-2CD2143G2-I' });
    await provisionAndBind(t, owner, { name: 'Garage', model: 'DS-7608NI-K2' });
    const page = await openSignedIn(owner);
    const row = (name: string) => page.getByRole('row').filter({ has: page.getByRole('link', { name }) });
    await row('Front door').getByText(/Offline|Unknown/).waitFor();
    // The device connects over its WebSocket: the badge turns Online without a reload.
    const device = await connectDevice(t.url, provisioned);
    await row('Front door').getByText('Online').waitFor({ timeout: 5000 });
    await screenshot(page, 'console-devices.png');

    // Bind: a wrong code, then the right one.
    const fresh = await provisionDevice(t, { model: 'DS-2CD1023G0-I' });
    await page.getByLabel('Serial number').fill(fresh.serial);
    await page.getByLabel('Verification code').fill(fresh.verificationCode === 'ABCDEF' ? 'ABCDEG' : 'ABCDEF');
    await page.getByRole('button', { name: 'Bind device' }).click();
    await page.getByRole('alert').getByText(/verification code is wrong/).waitFor();
    await page.getByLabel('Verification code').fill(fresh.verificationCode);
    await page.getByLabel('Name (optional)').fill('Backyard');
    await page.getByRole('button', { name: 'Bind device' }).click();
    await row('Backyard').waitFor();

    // Already bound by someone else: say whom to ask.
    const other = await registerUser(t, 'other');
    const otherPage = await openSignedIn(other);
    await otherPage.getByLabel('Serial number').fill(provisioned.serial);
    await otherPage.getByLabel('Verification code').fill(provisioned.verificationCode);
    await otherPage.getByRole('button', { name: 'Bind device' }).click();
    await otherPage.getByRole('alert').getByText(/ask its owner to share it/).waitFor();
    // ... or, holding the device, claim it; the owner sees the claim on the device page and refuses.
    await otherPage.getByRole('button', { name: 'Claim it' }).click();
    await otherPage.getByRole('status').getByText(/Claim made/).waitFor();
    await otherPage.getByRole('list', { name: 'Claims' }).getByText(provisioned.serial).waitFor();

    // Share from the device page.
    await row('Front door').getByRole('link', { name: 'Front door' }).click();
    await page.getByRole('heading', { name: 'Front door', level: 1 }).waitFor();
    const claims = page.getByRole('region', { name: 'Claims on this device' });
    await claims.getByText(/claimed it/).waitFor();
    await claims.getByRole('button', { name: 'Refuse claim' }).click();
    await claims.getByRole('status').getByText(/Claim refused/).waitFor();
    await page.getByLabel('Share with (email or phone)').fill(friend.email);
    await page.getByRole('checkbox', { name: 'Playback' }).check();
    await page.getByRole('button', { name: 'Share', exact: true }).click();
    await page.getByRole('status').getByText(`Shared with ${friend.email}.`).waitFor();
    await page.getByRole('list', { name: 'Current shares' }).getByText(friend.email).waitFor();
    const friendPage = await openSignedIn(friend);
    await friendPage.getByRole('row').filter({ hasText: 'Front door' }).getByText('Shared with me').waitFor();

    device.close();
    await device.closed;
    await page.getByRole('link', { name: '← All devices' }).click();
    await row('Front door').getByText('Offline').waitFor({ timeout: 5000 });
    await Promise.all([page.close(), otherPage.close(), friendPage.close()]);
  });

  test('shows an alarm live within a second of the ISAPI post, and acknowledges it', async () => {
    const owner = await registerUser(t, 'alarms');
    const { provisioned } = await provisionAndBind(t, owner, { name: 'Lobby' });
    // One stored alarm first: the feed subscribes after its cursor, so nothing posted later is missed.
    assert.equal((await isapiPost(t.url, provisioned.ingestPath, fixture('linedetection.xml'))).status, 200);
    const page = await openSignedIn(owner);
    const feed = page.getByRole('list', { name: 'Alarms' });
    await feed.getByText('Line crossing', { exact: true }).waitFor();
    const posted = Date.now();
    assert.equal((await isapiPost(t.url, provisioned.ingestPath, fixture('vmd.xml'))).status, 200);
    await feed.getByText('Motion', { exact: true }).waitFor({ timeout: 5000 });
    const ms = Date.now() - posted;
    console.log(`# alarm on the page ${ms} ms after the ISAPI post`);
    assert.ok(ms < 2000, `the alarm took ${ms} ms to appear`);
    await feed.getByRole('button', { name: 'Acknowledge Motion on Lobby' }).click();
    await feed.getByRole('listitem').filter({ hasText: 'Motion' }).getByText('acknowledged', { exact: true }).waitFor();
    await page.close();
  });

  test('resumes the alarm feed from its last cursor when the connection drops, missing nothing', async () => {
    const owner = await registerUser(t, 'resume');
    const { provisioned } = await provisionAndBind(t, owner, { name: 'Gate' });
    assert.equal((await isapiPost(t.url, provisioned.ingestPath, fixture('linedetection.xml'))).status, 200);
    // The page's GraphQL socket runs through the test, which can cut it as a network would.
    const page = await context.newPage();
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    const sockets: WebSocketRoute[] = [];
    /** The `after` of each AlarmsLive subscribe frame the page sent, per socket. */
    const afters: Array<Array<string | null>> = [];
    await page.routeWebSocket(/\/graphql$/, (ws) => {
      const server = ws.connectToServer();
      const mine: Array<string | null> = [];
      sockets.push(ws);
      afters.push(mine);
      ws.onMessage((message) => {
        const frame = typeof message === 'string' ? (JSON.parse(message) as { type?: string; payload?: { query?: string; variables?: { after?: string | null } } }) : {};
        if (frame.type === 'subscribe' && frame.payload?.query?.includes('AlarmsLive')) mine.push(frame.payload.variables?.after ?? null);
        server.send(message);
      });
      ws.onClose(() => server.close());
    });
    await page.goto(`${t.url}/`);
    await signIn(page, owner.email, owner.password);
    const feed = page.getByRole('list', { name: 'Alarms' });
    await feed.getByText('Line crossing', { exact: true }).waitFor();
    await waitFor(() => afters[0]?.length === 1, 5000, 'the live alarms subscription');
    // One alarm live before the drop: the cursor the feed resumes from moves past it.
    assert.equal((await isapiPost(t.url, provisioned.ingestPath, fixture('vmd.xml'))).status, 200);
    await feed.getByText('Motion', { exact: true }).waitFor();
    // Drop it (1012: restarting, which graphql-ws retries) and raise an alarm while it is down.
    await sockets[0]!.close({ code: 1012, reason: 'test drop' });
    assert.equal((await isapiPost(t.url, provisioned.ingestPath, fixture('tamperdetection.xml'))).status, 200);
    await waitFor(() => sockets.length === 2, 15_000, 'the reconnect');
    await feed.getByText('Tampering', { exact: true }).waitFor();
    assert.equal(afters[1]?.length, 1, 'the feed subscribed again on the new socket');
    assert.notEqual(afters[1]![0], afters[0]![0], 'the feed resumed from the cursor it started with, not the last one');
    assert.equal(await feed.getByText('Line crossing', { exact: true }).count(), 1, 'the replay repeated an alarm');
    await page.close();
  });

  test('unbinds from the dialog with the password, and unbinds several at once', async () => {
    const owner = await registerUser(t, 'unbind');
    await provisionAndBind(t, owner, { name: 'Old camera' });
    await seedBoundDevices(t, owner.id, 3, { name: (i) => `Shed ${i}` });
    const page = await openSignedIn(owner);
    await page.getByRole('link', { name: 'Old camera' }).click();
    const unbind = page.getByRole('button', { name: 'Unbind', exact: true });
    await unbind.click();
    const dialog = page.getByRole('dialog', { name: 'Unbind Old camera?' });
    await dialog.getByText(/Recordings stay on the device/).waitFor();
    // Focus moved into the dialog, on the password field.
    assert.equal(await page.evaluate('document.activeElement?.getAttribute("type")'), 'password');
    await screenshot(page, 'console-unbind.png');
    await dialog.getByLabel('Password').fill('Wrong-Password-99');
    await dialog.getByRole('button', { name: 'Unbind', exact: true }).click();
    await dialog.getByRole('alert').getByText('The password is wrong.').waitFor();
    await dialog.getByLabel('Password').fill(owner.password);
    await dialog.getByRole('button', { name: 'Unbind', exact: true }).click();
    await page.getByRole('status').getByText('Device unbound.').waitFor();
    await page.getByRole('link', { name: 'Shed 0' }).waitFor();
    assert.equal(await page.getByRole('link', { name: 'Old camera' }).count(), 0);

    await page.getByRole('checkbox', { name: 'Select Shed 0' }).check();
    await page.getByRole('checkbox', { name: 'Select Shed 2' }).check();
    await page.getByRole('button', { name: /Unbind selected/ }).click();
    const bulk = page.getByRole('dialog', { name: 'Unbind 2 devices' });
    await bulk.getByLabel('Password').fill(owner.password);
    await bulk.getByRole('button', { name: 'Unbind selected' }).click();
    await bulk.getByRole('status').getByText('2 of 2 unbound.').waitFor();
    await bulk.getByRole('list', { name: 'Results' }).getByText('Shed 2: unbound').waitFor();
    await bulk.getByRole('button', { name: 'Close' }).click();
    await page.getByRole('status').getByText('2 devices unbound.').waitFor();
    await waitFor(async () => (await page.getByRole('link', { name: /^Shed/ }).count()) === 1, 5000, 'the list without the unbound devices');
    // Focus came back out of the dialog to the page.
    assert.notEqual(await page.evaluate('document.activeElement?.tagName'), 'INPUT');
    await page.close();
  });

  test('signs a tab out when its session is signed out from another one', async () => {
    const user = await registerUser(t, 'elsewhere');
    const here = await openSignedIn(user);
    const there = await openSignedIn(user, '#/account');
    const sessions = there.getByRole('table').filter({ hasText: 'This browser' });
    await sessions.getByText('This browser').waitFor();
    // Every other session of the account (the other tab's and the API registration's).
    const buttons = sessions.getByRole('button', { name: /Sign out the session/ });
    for (let n = await buttons.count(); n > 0; n = await buttons.count()) {
      await buttons.first().click();
      await waitFor(async () => (await buttons.count()) < n, 5000, 'the signed-out session gone from the list');
    }
    await here.getByRole('form', { name: 'Sign in' }).waitFor({ timeout: 10_000 });
    await here.getByRole('alert').getByText(/Your session ended/).waitFor();
    await there.getByTestId('signed-in-as').getByText(user.email).waitFor();
    await Promise.all([here.close(), there.close()]);
  });
});
