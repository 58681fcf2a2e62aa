import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { RegisterDocument } from './generated/graphql';
import { expectData, startApp, STRONG_PASSWORD, uniqueEmail } from './helpers/harness';

const t = await startApp();
const email = uniqueEmail();
expectData(await t.gql(RegisterDocument, { input: { email, password: STRONG_PASSWORD } }));
const dir = await mkdtemp(path.join(os.tmpdir(), 'chr-'));
const ctx = await chromium.launchPersistentContext(dir, {
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 800 },
});
const page = await ctx.newPage();
page.on('console', (m) => console.log('console', m.type(), m.text().slice(0, 300)));
page.on('pageerror', (e) => console.log('pageerror', e.message));
page.on('response', (r) => { if (r.status() >= 400) console.log('status', r.status(), r.url()); });
page.on('requestfailed', (r) => console.log('requestfailed', r.url(), r.failure()?.errorText));
const res = await page.goto(`${t.url}/graphiql`);
console.log(res?.status(), res?.headers()['content-security-policy']);
await page.getByLabel('Email or phone').fill(email);
await page.getByLabel('Password').fill(STRONG_PASSWORD);
await page.getByRole('button', { name: 'Sign in' }).click();
await page.getByTestId('signed-in-as').waitFor();
await page.waitForTimeout(3000);
console.log(await page.locator('.graphiql-tab').allInnerTexts());
await page.getByRole('button', { name: /Execute query/ }).click();
await page.locator('.result-window').getByText(email).waitFor();
console.log('result ok');
await page.getByRole('button', { name: 'Add tab' }).click();
await page.locator('.graphiql-query-editor .monaco-editor').first().click();
await page.keyboard.press('Control+A');
await page.keyboard.insertText('{ me { id email } }');
await page.waitForTimeout(500);
console.log(await page.locator('.graphiql-query-editor .view-lines').first().innerText());
await page.keyboard.press('Control+Enter');
await page.waitForTimeout(1500);
console.log(await page.locator('.result-window').innerText());
await page.screenshot({ path: '/tmp/gq/1.png' });
await ctx.close();
await rm(dir, { recursive: true, force: true });
await t.stop();
