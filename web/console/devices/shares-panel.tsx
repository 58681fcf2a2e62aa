import { useId, useState } from 'react';
import { useMutation } from 'urql';
import { ShareGrantDocument, ShareRevokeDocument, type DeviceDetailsQuery, type Permission } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';
import { Notice } from '../ui/notice';
import { When } from '../ui/when';

type Device = NonNullable<DeviceDetailsQuery['device']>;

const PERMISSIONS: Array<{ permission: Permission; label: string }> = [
  { permission: 'LIVE_VIEW', label: 'Live view' },
  { permission: 'PLAYBACK', label: 'Playback' },
  { permission: 'ALARMS', label: 'Alarms and status' },
  { permission: 'CONFIGURE', label: 'Rename and acknowledge alarms' },
];
const words = (ps: readonly Permission[]) => ps.map((p) => PERMISSIONS.find((x) => x.permission === p)?.label ?? p).join(', ');

/** Who else may use the device: grant (permissions, optional expiry) and revoke. */
export function SharesPanel({ device, onChanged }: { device: Device; onChanged: () => void }) {
  const id = useId();
  const [grantee, setGrantee] = useState('');
  const [permissions, setPermissions] = useState<Permission[]>(['LIVE_VIEW', 'ALARMS']);
  const [expires, setExpires] = useState('');
  const [notice, setNotice] = useState<string | null>(null);
  const [granting, grant] = useMutation(ShareGrantDocument);
  const [revoking, revoke] = useMutation(ShareRevokeDocument);
  const owner = device.role === 'OWNER';
  return (
    <section aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>Shares</h2>
      <ErrorAlert
        error={(granting.error && fromCombined(granting.error)) ?? (revoking.error && fromCombined(revoking.error))}
        overrides={{ NOT_FOUND: 'There is no account with that email or phone number.' }}
      />
      {notice && <Notice>{notice}</Notice>}
      {device.shares.length === 0 ? (
        <p>{owner ? 'Not shared with anyone.' : ''}</p>
      ) : (
        <ul className="plain" aria-label="Current shares">
          {device.shares.map((s) => {
            const who = s.grantee.email ?? s.grantee.phone ?? s.grantee.displayName ?? 'an account';
            return (
              <li key={s.id}>
                <strong>{who}</strong>: {words(s.permissions)}
                {s.expiresAt ? (
                  <>
                    , until <When at={s.expiresAt} />
                  </>
                ) : null}{' '}
                <button
                  type="button"
                  aria-label={owner ? `Revoke share with ${who}` : 'Leave this share'}
                  disabled={revoking.fetching}
                  onClick={async () => {
                    const r = await revoke({ id: s.id });
                    if (r.data) {
                      setNotice(owner ? `Share with ${who} revoked.` : 'You left the share.');
                      onChanged();
                    }
                  }}
                >
                  {owner ? 'Revoke' : 'Leave'}
                </button>
              </li>
            );
          })}
        </ul>
      )}
      {owner && (
        <form
          aria-label="Share this device"
          onSubmit={async (e) => {
            e.preventDefault();
            setNotice(null);
            const r = await grant({
              deviceId: device.id,
              grantee: grantee.trim(),
              permissions,
              expiresAt: expires ? new Date(`${expires}T23:59:59`).toISOString() : null,
            });
            if (r.data) {
              setNotice(`Shared with ${grantee.trim()}.`);
              setGrantee('');
              onChanged();
            }
          }}
        >
          <label htmlFor={`${id}-grantee`}>Share with (email or phone)</label>
          <input id={`${id}-grantee`} required value={grantee} onChange={(e) => setGrantee(e.target.value)} />
          <fieldset>
            <legend>Permissions</legend>
            {PERMISSIONS.map(({ permission, label }) => (
              <label key={permission} className="check">
                <input
                  type="checkbox"
                  checked={permissions.includes(permission)}
                  onChange={(e) => setPermissions(e.target.checked ? [...permissions, permission] : permissions.filter((p) => p !== permission))}
                />
                {label}
              </label>
            ))}
          </fieldset>
          <label htmlFor={`${id}-expires`}>Expires (optional)</label>
          <input id={`${id}-expires`} type="date" value={expires} onChange={(e) => setExpires(e.target.value)} />
          <button type="submit" disabled={granting.fetching || permissions.length === 0}>
            Share
          </button>
        </form>
      )}
    </section>
  );
}
