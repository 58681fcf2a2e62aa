// The GraphQL-over-HTTP conformance audits of graphql-http (the reference implementation), run
// against the real /graphql in development and in production mode. Every MUST passes; SHOULD and
// MAY results are reported as diagnostics (our deliberate choices: 400 rather than 200 for
// refused documents with application/json, as before; GETs need a CSRF-preflight header).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { serverAudits } from 'graphql-http';
import { registerUser } from './helpers/devices';
import { startApp, type TestApp } from './helpers/harness';

for (const mode of ['development', 'production'] as const) {
  describe(`graphql-http server audits in ${mode} mode`, () => {
    let t: TestApp;
    let token = '';
    before(async () => {
      t = await startApp({ env: mode === 'production' ? { NODE_ENV: 'production' } : {} });
      token = (await registerUser(t, `audit-${mode}`)).token;
    });
    after(() => t.stop());

    // Two MUST audits (BF61, 28B9) probe with `__type`, which production keeps from anonymous
    // callers on purpose; there the audits run as a signed-in client.
    const fetchFn: typeof fetch = (input, init) => {
      const headers = new Headers(init?.headers);
      if (mode === 'production') headers.set('authorization', `Bearer ${token}`);
      return fetch(input, { ...init, headers });
    };
    const audits = serverAudits({ url: () => `${t.url}/graphql`, fetchFn });
    for (const audit of audits) {
      test(`${audit.id} ${audit.name}`, async (tc) => {
        const result = await audit.fn();
        if (result.status === 'ok') return;
        if (audit.name.startsWith('MUST')) assert.fail(`${audit.id} failed: ${result.reason}`);
        tc.diagnostic(`${result.status}: ${result.reason}`);
      });
    }

    if (mode !== 'production') return;
    test('anonymous introspection is the one thing production refuses when the audits run unsigned', async () => {
      const unsigned = serverAudits({ url: () => `${t.url}/graphql` });
      const failed: string[] = [];
      for (const audit of unsigned) {
        if (!audit.name.startsWith('MUST')) continue;
        const result = await audit.fn();
        if (result.status !== 'ok') {
          failed.push(audit.id);
          const status = result.response.status;
          assert.equal(status, 401, `${audit.id}: ${result.reason}`);
        }
      }
      assert.deepEqual(failed.sort(), ['28B9', 'BF61']);
    });
  });
}
