import { useId, useState } from 'react';
import { useMutation, useQuery } from 'urql';
import { ApiKeyCreateDocument, ApiKeyRevokeDocument, ConsoleApiKeysDocument, type ApiScope } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';
import { When } from '../ui/when';

const SCOPES: Array<{ scope: ApiScope; label: string }> = [
  { scope: 'DEVICES_READ', label: 'Read devices' },
  { scope: 'DEVICES_WRITE', label: 'Change devices' },
  { scope: 'SHARES_WRITE', label: 'Manage shares' },
  { scope: 'ALARMS_READ', label: 'Read alarms' },
];

/** API keys for scripts and partners: the secret is shown once, at creation. */
export function ApiKeysPanel() {
  const id = useId();
  const [list, refetch] = useQuery({ query: ConsoleApiKeysDocument, requestPolicy: 'network-only' });
  const [created, create] = useMutation(ApiKeyCreateDocument);
  const [revoking, revoke] = useMutation(ApiKeyRevokeDocument);
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<ApiScope[]>(['DEVICES_READ']);
  const [secret, setSecret] = useState<string | null>(null);
  const error = list.error ?? created.error ?? revoking.error;
  return (
    <section aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>API keys</h2>
      <ErrorAlert error={error && fromCombined(error)} />
      <form
        aria-label="Create an API key"
        onSubmit={async (e) => {
          e.preventDefault();
          const r = await create({ name: name.trim(), scopes });
          if (r.data) {
            setSecret(r.data.createApiKey.secret);
            setName('');
            refetch({ requestPolicy: 'network-only' });
          }
        }}
      >
        <label htmlFor={`${id}-name`}>Key name</label>
        <input id={`${id}-name`} required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
        <fieldset>
          <legend>What the key may do</legend>
          {SCOPES.map(({ scope, label }) => (
            <label key={scope} className="check">
              <input
                type="checkbox"
                checked={scopes.includes(scope)}
                onChange={(e) => setScopes(e.target.checked ? [...scopes, scope] : scopes.filter((s) => s !== scope))}
              />
              {label}
            </label>
          ))}
        </fieldset>
        <button type="submit" disabled={created.fetching || scopes.length === 0}>
          Create key
        </button>
      </form>
      {secret && (
        <div role="status" className="notice">
          <p>Copy this key now: it is shown only once. Send it as <code>Authorization: Bearer &lt;key&gt;</code>.</p>
          <code className="secret" data-testid="api-key-secret">
            {secret}
          </code>
        </div>
      )}
      <ul className="plain">
        {list.data?.apiKeys.map((k) => (
          <li key={k.id}>
            <strong>{k.name}</strong> <code>{k.prefix}…</code> ({k.scopes.join(', ')}), created <When at={k.createdAt} />
            {k.lastUsedAt && (
              <>
                , last used <When at={k.lastUsedAt} />
              </>
            )}{' '}
            <button
              type="button"
              aria-label={`Revoke key ${k.name}`}
              onClick={async () => {
                const r = await revoke({ id: k.id });
                if (r.data) refetch({ requestPolicy: 'network-only' });
              }}
            >
              Revoke
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}
