#!/usr/bin/env node
// Builds the web console and the password-reset page (web/console) into dist/console: index.html
// (GET /), reset.html (GET /reset) and hashed files in assets/, with brotli copies. Runs from
// `postinstall` after the explorer's build; `npm run build:console` rebuilds it. Prints what a
// browser downloads before the first paint (the "initial" JavaScript and CSS, brotli) per page;
// zxcvbn's dictionaries and the QR code are chunks loaded on demand.
import { readFile, writeFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCopies, bundleOptions, pageBundleOptions, finishOutput, hashedIcon, loadEsbuild, startOutput } from './web-build.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'web/console');
const out = path.join(root, 'dist/console');

const esbuild = await loadEsbuild('build:console');
const started = performance.now();
const { tmp, assets } = await startOutput(out);

const entries = { console: 'console.tsx', reset: 'reset.tsx' };
const result = await esbuild.build({
  entryPoints: Object.fromEntries(Object.entries(entries).map(([name, file]) => [name, path.join(src, file)])),
  ...bundleOptions(assets),
  ...pageBundleOptions,
});
if (process.env.CONSOLE_ANALYZE) console.log(await esbuild.analyzeMetafile(result.metafile));

const iconName = await hashedIcon(path.join(src, 'favicon.svg'), assets);
// Brotli copies (served when the browser accepts br).
const brSize = await brotliCopies(assets, /\.(js|css)$/, 11);

const outputs = result.metafile.outputs;
/** The entry file and every chunk it imports statically, transitively: what loads before the first paint. */
function initialFiles(entryFile) {
  const seen = new Set();
  const visit = (file) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const i of outputs[file]?.imports ?? []) if (i.kind === 'import-statement' && outputs[i.path]) visit(i.path);
  };
  visit(entryFile);
  return [...seen];
}

const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const report = [];
for (const [name, file] of Object.entries(entries)) {
  const [entryFile, meta] = Object.entries(outputs).find(([, m]) => m.entryPoint?.endsWith(`web/console/${file}`)) ?? [];
  if (!entryFile) throw new Error(`no output for ${file}`);
  const files = initialFiles(entryFile);
  const js = files.reduce((sum, f) => sum + (brSize.get(path.basename(f)) ?? 0), 0);
  const css = meta.cssBundle ? (brSize.get(path.basename(meta.cssBundle)) ?? 0) : 0;
  const html = (await readFile(path.join(src, 'page.html'), 'utf8'))
    .replace('%TITLE%', name === 'reset' ? 'Reset your password · Vigil' : 'Vigil console')
    .replace('%ICON%', `/console/assets/${iconName}`)
    .replace('%SCRIPT%', `/console/assets/${path.basename(entryFile)}`)
    .replace('%STYLE%', meta.cssBundle ? `/console/assets/${path.basename(meta.cssBundle)}` : '');
  await writeFile(path.join(tmp, name === 'console' ? 'index.html' : 'reset.html'), html);
  report.push(`${name === 'console' ? '/' : '/reset'}: ${kib(js)} JS + ${kib(css)} CSS initial (brotli)`);
}
const lazy = [...brSize.entries()].filter(([f]) => f.endsWith('.js')).reduce((s, [, n]) => s + n, 0);

await finishOutput(tmp, out);
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`[build:console] dist/console in ${seconds} s: ${report.join('; ')}; ${kib(lazy)} JS brotli in all, with lazy chunks`);
await stat(path.join(out, 'index.html'));
await esbuild.stop();
