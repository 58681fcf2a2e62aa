import { useId } from 'react';
import { useMutation, useQuery } from 'urql';
import { ConsoleSessionsDocument, SessionRevokeDocument } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';
import { When } from '../ui/when';

/** Where the account is signed in, with "Sign out" per other session. */
export function SessionsPanel() {
  const id = useId();
  const [list, refetch] = useQuery({ query: ConsoleSessionsDocument, requestPolicy: 'network-only' });
  const [revoking, revoke] = useMutation(SessionRevokeDocument);
  const error = list.error ?? revoking.error;
  return (
    <section aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>Sessions</h2>
      <ErrorAlert error={error && fromCombined(error)} />
      <table>
        <thead>
          <tr>
            <th scope="col">Browser or app</th>
            <th scope="col">Address</th>
            <th scope="col">Signed in</th>
            <th scope="col">Last used</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {list.data?.sessions.map((s) => (
            <tr key={s.id}>
              <td>{s.userAgent ?? 'Unknown'}</td>
              <td>{s.ip ?? ''}</td>
              <td>
                <When at={s.createdAt} />
              </td>
              <td>
                <When at={s.lastUsedAt} />
              </td>
              <td>
                {s.current ? (
                  'This browser'
                ) : (
                  <button
                    type="button"
                    aria-label={`Sign out the session signed in ${new Date(s.createdAt).toLocaleString()}`}
                    disabled={revoking.fetching}
                    onClick={async () => {
                      const r = await revoke({ id: s.id });
                      if (r.data) refetch({ requestPolicy: 'network-only' });
                    }}
                  >
                    Sign out
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
