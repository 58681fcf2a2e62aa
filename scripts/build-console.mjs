#!/usr/bin/env node
// Builds the web console and the password-reset page (web/console) into dist/console: index.html
// (GET /), reset.html (GET /reset) and hashed files in assets/, with brotli copies. Runs from
// `postinstall` after the explorer's build; `npm run build:console` rebuilds it. Prints what a
// browser downloads before the first paint (the "initial" JavaScript and CSS, brotli) per page;
// zxcvbn's dictionaries and the QR code are chunks loaded on demand.
import { mkdir, readFile, readdir, rm, writeFile, rename, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { brotliCompress, constants as zlib } from 'node:zlib';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'web/console');
const out = path.join(root, 'dist/console');
const tmp = `${out}.tmp-${process.pid}`;
const assets = path.join(tmp, 'assets');
const fromInstall = process.env.npm_lifecycle_event === 'postinstall';

let esbuild;
try {
  esbuild = await import('esbuild');
} catch (err) {
  // A partial install must not fail `npm install`: the gateway then answers 503 at / naming the fix.
  const msg = `web console not built: ${err instanceof Error ? err.message.split('\n')[0] : err}`;
  if (fromInstall) {
    console.warn(`[build:console] ${msg}`);
    process.exit(0);
  }
  console.error(msg);
  process.exit(1);
}

const started = performance.now();
await rm(tmp, { recursive: true, force: true });
await mkdir(assets, { recursive: true });
process.on('exit', (code) => {
  if (code !== 0) rmSync(tmp, { recursive: true, force: true });
});

const entries = { console: 'console.tsx', reset: 'reset.tsx' };
const result = await esbuild.build({
  entryPoints: Object.fromEntries(Object.entries(entries).map(([name, file]) => [name, path.join(src, file)])),
  bundle: true,
  minify: true,
  legalComments: 'linked',
  target: ['es2022', 'chrome111', 'firefox115', 'safari16.4'],
  outdir: assets,
  metafile: true,
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
  entryNames: '[name]-[hash]',
  chunkNames: 'chunk-[hash]',
  assetNames: '[name]-[hash]',
  format: 'esm',
  splitting: true,
  jsx: 'automatic',
});
if (process.env.CONSOLE_ANALYZE) console.log(await esbuild.analyzeMetafile(result.metafile));

const icon = await readFile(path.join(src, 'favicon.svg'));
const iconName = `favicon-${createHash('sha256').update(icon).digest('hex').slice(0, 8).toUpperCase()}.svg`;
await writeFile(path.join(assets, iconName), icon);

// Brotli copies (served when the browser accepts br).
const brotli = promisify(brotliCompress);
const brSize = new Map();
for (const f of (await readdir(assets)).filter((f) => /\.(js|css)$/.test(f))) {
  const body = await readFile(path.join(assets, f));
  const br = await brotli(body, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_SIZE_HINT]: body.length } });
  await writeFile(path.join(assets, `${f}.br`), br);
  brSize.set(f, br.length);
}

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

await rm(out, { recursive: true, force: true });
await mkdir(path.dirname(out), { recursive: true });
await rename(tmp, out);
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`[build:console] dist/console in ${seconds} s: ${report.join('; ')}; ${kib(lazy)} JS brotli in all, with lazy chunks`);
await stat(path.join(out, 'index.html'));
await esbuild.stop();
