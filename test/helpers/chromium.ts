import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';

/** Debian's `chromium` package; .ci/run installs it. */
export const CHROMIUM = '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);
/** The `skip` option of a browser suite: skipped without Chromium (a newcomer's machine), never on CI. */
export const chromiumSkip = haveChromium ? false : 'skipped: no Chromium';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** On CI a missing Chromium is a failure, not a skip: registers a failing test saying so. */
export function failWithoutChromiumOnCi(): void {
  if (!haveChromium && process.env.CI) {
    test('chromium is installed when the browser test runs on CI', () => {
      assert.fail(`${CHROMIUM} is missing: .ci/run installs Debian's chromium package before the tests`);
    });
  }
}

/** Runs scripts/<script> when `builtFile` is missing (a checkout whose postinstall did not run). */
export function ensureBuilt(builtFile: string, script: string): void {
  if (existsSync(builtFile)) return;
  const build = spawnSync(process.execPath, [path.join(root, 'scripts', script)], { stdio: 'inherit' });
  assert.equal(build.status, 0, `${script} failed`);
}

/** One headless Chromium with a throwaway profile for a test file; `close()` removes the profile. */
export async function launchChromium(viewport = { width: 1280, height: 760 }): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = await mkdtemp(path.join(os.tmpdir(), 'vigil-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport,
    colorScheme: 'light',
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
