import { useId, useMemo, useState } from 'react';
import { useMutation, useQuery } from 'urql';
import { ClaimCancelDocument, DeviceClaimListDocument } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';
import { Notice } from '../ui/notice';
import { When } from '../ui/when';

/**
 * Pending reclaims: on a device page, claims against that device (the owner may refuse); on the
 * home view, every pending claim the caller made or faces. Nothing when there are none.
 */
export function ClaimsPanel({ deviceId, version = 0 }: { deviceId?: string; version?: number }) {
  const id = useId();
  const [list, refetch] = useQuery({ query: DeviceClaimListDocument, requestPolicy: 'cache-and-network', context: useMemo(() => ({ version }), [version]) });
  const [cancelling, cancel] = useMutation(ClaimCancelDocument);
  const [notice, setNotice] = useState<string | null>(null);
  const claims = (list.data?.deviceClaims ?? []).filter((c) => c.status === 'PENDING' && (!deviceId || (!c.mine && c.device?.id === deviceId)));
  if (claims.length === 0 && !notice && !list.error && !cancelling.error) return null;
  return (
    <section aria-labelledby={`${id}-h`} className="card">
      <h2 id={`${id}-h`}>{deviceId ? 'Claims on this device' : 'Pending claims'}</h2>
      <ErrorAlert error={(list.error && fromCombined(list.error)) ?? (cancelling.error && fromCombined(cancelling.error))} />
      {notice && <Notice>{notice}</Notice>}
      <ul className="plain" aria-label="Claims">
        {claims.map((c) => (
          <li key={c.id}>
            {c.mine ? (
              <>
                You claimed <code>{c.serial}</code>: it becomes yours <When at={c.completesAt} /> unless its owner refuses.{' '}
              </>
            ) : (
              <>
                Someone holding the label code of {c.device?.name ?? c.serial} claimed it <When at={c.createdAt} />. Unless you refuse, it
                leaves your account <When at={c.completesAt} />.{' '}
              </>
            )}
            <button
              type="button"
              className={c.mine ? undefined : 'danger'}
              disabled={cancelling.fetching}
              onClick={async () => {
                const r = await cancel({ id: c.id });
                if (r.data?.cancelClaim) {
                  setNotice(c.mine ? 'Claim withdrawn.' : 'Claim refused: the device stays in your account.');
                  refetch({ requestPolicy: 'network-only' });
                }
              }}
            >
              {c.mine ? 'Withdraw claim' : 'Refuse claim'}
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}
