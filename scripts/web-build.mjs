// What the builds of the browser apps (build-graphiql.mjs, build-console.mjs) share: loading
// esbuild without failing `npm install`, a temporary output folder that replaces the previous
// build only when complete, brotli copies, and the favicon under a hashed name.
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { brotliCompress, constants as zlib } from 'node:zlib';
import path from 'node:path';

/**
 * esbuild (and `also`, other packages the build needs), or an exit: with code 0 from `postinstall`
 * (a partial install must not fail `npm install`; the gateway then answers 503 naming the script),
 * with 1 when run by hand.
 */
export async function loadEsbuild(label, also = () => {}) {
  try {
    const esbuild = await import('esbuild');
    also();
    return esbuild;
  } catch (err) {
    const msg = `${label} not built: ${err instanceof Error ? err.message.split('\n')[0] : err}`;
    if (process.env.npm_lifecycle_event === 'postinstall') {
      console.warn(`[${label}] ${msg}`);
      process.exit(0);
    }
    console.error(msg);
    process.exit(1);
  }
}

/** esbuild options both apps build with: minified production bundles for current browsers, with a metafile. */
export const bundleOptions = (outdir) => ({
  bundle: true,
  minify: true,
  legalComments: 'linked',
  target: ['es2022', 'chrome111', 'firefox115', 'safari16.4'],
  outdir,
  metafile: true,
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
});

/** Options of a page bundle: ES modules split into hashed chunks, JSX with the automatic runtime. */
export const pageBundleOptions = {
  entryNames: '[name]-[hash]',
  chunkNames: 'chunk-[hash]',
  assetNames: '[name]-[hash]',
  format: 'esm',
  splitting: true,
  jsx: 'automatic',
};

/** A fresh `<out>.tmp-<pid>/assets`; a failed build removes it and leaves the previous `out` in place. */
export async function startOutput(out) {
  const tmp = `${out}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(path.join(tmp, 'assets'), { recursive: true });
  process.on('exit', (code) => {
    if (code !== 0) rmSync(tmp, { recursive: true, force: true });
  });
  return { tmp, assets: path.join(tmp, 'assets') };
}

/** Swaps the finished build in, atomically enough for a running gateway (it re-reads files per request). */
export async function finishOutput(tmp, out) {
  await rm(out, { recursive: true, force: true });
  await mkdir(path.dirname(out), { recursive: true });
  await rename(tmp, out);
}

/** Writes `<file>.br` beside every file in `dir` matching `pattern`; returns each file's brotli size. */
export async function brotliCopies(dir, pattern, quality = 9) {
  const brotli = promisify(brotliCompress);
  const files = (await readdir(dir)).filter((f) => pattern.test(f));
  const sizes = new Map();
  await Promise.all(
    files.map(async (f) => {
      const body = await readFile(path.join(dir, f));
      const br = await brotli(body, { params: { [zlib.BROTLI_PARAM_QUALITY]: quality, [zlib.BROTLI_PARAM_SIZE_HINT]: body.length } });
      await writeFile(path.join(dir, `${f}.br`), br);
      sizes.set(f, br.length);
    }),
  );
  return sizes;
}

/** Copies the icon into `assets` under a content-hashed name (cacheable for good); returns that name. */
export async function hashedIcon(iconFile, assets) {
  const icon = await readFile(iconFile);
  const name = `favicon-${createHash('sha256').update(icon).digest('hex').slice(0, 8).toUpperCase()}.svg`;
  await writeFile(path.join(assets, name), icon);
  return name;
}
