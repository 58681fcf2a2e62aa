#!/usr/bin/env node
// Builds the /graphiql explorer (web/graphiql) into dist/graphiql: index.html plus hashed
// files in assets/ (the page bundle, its CSS and fonts, monaco's three web workers). Runs from
// `postinstall`, so `npm install` and `npm ci` leave a ready explorer; `npm run build:graphiql`
// rebuilds it. Everything is served by the gateway itself: nothing is loaded from elsewhere.
import { readFile, writeFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCopies, bundleOptions, pageBundleOptions, finishOutput, hashedIcon, loadEsbuild, startOutput } from './web-build.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'web/graphiql');
const out = path.join(root, 'dist/graphiql');

// A partial install (e.g. without optional dependencies) must not fail `npm install`: the
// gateway then answers 503 at /graphiql naming `npm run build:graphiql`.
const esbuild = await loadEsbuild('build:graphiql', () => createRequire(import.meta.url).resolve('graphiql'));
const started = performance.now();
// A failed build leaves the previous dist/graphiql in place and no half-written copy.
const { tmp, assets } = await startOutput(out);

// monaco's ESM modules import their own CSS pieces; explorer.tsx imports monaco's prebuilt
// stylesheet instead, so those imports are emptied rather than emitted as unused CSS chunks.
const monacoCssOnce = {
  name: 'monaco-css-once',
  setup(build) {
    build.onLoad({ filter: /[\\/]monaco-editor[\\/]esm[\\/].*\.css$/ }, () => ({ contents: '', loader: 'css' }));
  },
};

const common = bundleOptions(assets);

// 1. Monaco's workers as classic same-origin scripts (no blob: workers, no eval).
const workerEntries = {
  editor: 'monaco-editor/esm/vs/editor/editor.worker.js',
  json: 'monaco-editor/esm/vs/language/json/json.worker.js',
  graphql: 'monaco-graphql/esm/graphql.worker.js',
};
const workers = await esbuild.build({
  ...common,
  entryPoints: Object.entries(workerEntries).map(([name, input]) => ({ in: input, out: `${name}.worker` })),
  entryNames: '[name]-[hash]',
  format: 'iife',
});
const workerFiles = {};
for (const [file, meta] of Object.entries(workers.metafile.outputs)) {
  if (!meta.entryPoint) continue;
  const name = Object.entries(workerEntries).find(([, input]) => meta.entryPoint.endsWith(input.replace(/^.*?\//, '/')))?.[0];
  if (name) workerFiles[name] = path.basename(file);
}
if (Object.keys(workerFiles).length !== 3) throw new Error(`worker outputs not found: ${JSON.stringify(workerFiles)}`);

// 2. The page: React + GraphiQL, with monaco and prettier in chunks loaded on demand.
const page = await esbuild.build({
  ...common,
  entryPoints: { explorer: path.join(src, 'explorer.tsx') },
  ...pageBundleOptions,
  loader: { '.ttf': 'file', '.woff': 'file', '.woff2': 'file', '.svg': 'file', '.png': 'file' },
  define: { ...common.define, __MONACO_WORKERS__: JSON.stringify(workerFiles) },
  // @graphiql/react's prettify imports prettier's UMD parser files with import(); bundled as
  // CommonJS they expose only `default`, so "Prettify" silently did nothing. The ESM builds of
  // the same plugins have the named `parsers` export (and are already in the bundle).
  alias: { 'prettier/parser-graphql': 'prettier/plugins/graphql', 'prettier/parser-babel': 'prettier/plugins/babel' },
  plugins: [monacoCssOnce],
});
if (process.env.GRAPHIQL_ANALYZE) console.log(await esbuild.analyzeMetafile(page.metafile));
const [entryFile, entryMeta] = Object.entries(page.metafile.outputs).find(([, m]) => m.entryPoint?.endsWith('explorer.tsx')) ?? [];
if (!entryFile || !entryMeta?.cssBundle) throw new Error('explorer bundle or its CSS not found');

// 3. index.html pointing at the hashed names (the icon too, so it can be cached for good).
const iconName = await hashedIcon(path.join(src, 'favicon.svg'), assets);
const html = (await readFile(path.join(src, 'index.html'), 'utf8'))
  .replace('%ICON%', `/graphiql/assets/${iconName}`)
  .replace('%SCRIPT%', `/graphiql/assets/${path.basename(entryFile)}`)
  .replace('%STYLE%', `/graphiql/assets/${path.basename(entryMeta.cssBundle)}`);
await writeFile(path.join(tmp, 'index.html'), html);

// 4. Brotli copies (served when the browser accepts br): about a fifth of the bytes on the wire.
const compressed = [...(await brotliCopies(assets, /\.(js|css|ttf)$/)).values()];

// Swap in the new build atomically enough for a running gateway (it re-reads index.html).
await finishOutput(tmp, out);

const outputs = { ...workers.metafile.outputs, ...page.metafile.outputs };
let total = 0;
let initial = 0;
for (const [file, meta] of Object.entries(outputs)) {
  if (file.endsWith('.map') || file.endsWith('.LEGAL.txt')) continue;
  total += meta.bytes;
  if (file === entryFile || file === entryMeta.cssBundle || entryMeta.imports.some((i) => i.path === file && i.kind === 'import-statement')) initial += meta.bytes;
}
const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
const seconds = ((performance.now() - started) / 1000).toFixed(1);
const wire = compressed.reduce((a, b) => a + b, 0);
console.log(`[build:graphiql] dist/graphiql in ${seconds} s: ${kib(total)} (${kib(wire)} brotli) in all, ${kib(initial)} before monaco loads`);
await stat(path.join(out, 'index.html'));
await esbuild.stop();
