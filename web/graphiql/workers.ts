/**
 * Monaco's web workers, bundled by scripts/build-graphiql.mjs into hashed files next to this
 * bundle; the build passes their names in `__MONACO_WORKERS__`. Same-origin classic workers, so
 * the page's CSP needs no `blob:`. Must run before monaco loads (imported first by explorer.tsx).
 */
declare const __MONACO_WORKERS__: { editor: string; json: string; graphql: string };

const workerUrl = (file: string) => new URL(`./${file}`, import.meta.url).toString();

(globalThis as { MonacoEnvironment?: unknown }).MonacoEnvironment = {
  getWorker(_workerId: string, label: string) {
    const file = label === 'json' ? __MONACO_WORKERS__.json : label === 'graphql' ? __MONACO_WORKERS__.graphql : __MONACO_WORKERS__.editor;
    return new Worker(workerUrl(file), { name: `monaco-${label}` });
  },
};
