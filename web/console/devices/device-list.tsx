import { useCallback, useId, useMemo, useState } from 'react';
import { useQuery } from 'urql';
import { DeviceListDocument, type DeviceRole, type DeviceStatus } from '../generated/graphql';
import { fromCombined } from '../lib/api-errors';
import { ErrorAlert } from '../ui/error-alert';
import { Notice } from '../ui/notice';
import { BulkUnbindDialog } from './bulk-unbind-dialog';
import { StatusBadge } from './status-badge';
import { useLiveStatus } from './use-live-status';

const PAGE = 20;

/** The devices list: search, filter, pages, live status badges, and "Unbind selected". */
export function DeviceList({ version, onChanged }: { version: number; onChanged: () => void }) {
  const id = useId();
  const [search, setSearch] = useState('');
  const [status, setStatus] = useState<DeviceStatus | ''>('');
  const [role, setRole] = useState<DeviceRole | ''>('');
  const [cursors, setCursors] = useState<Array<string | null>>([null]);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [bulkOpen, setBulkOpen] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const filter = { ...(search.trim() ? { search: search.trim() } : {}), ...(status ? { status } : {}), ...(role ? { role } : {}) };
  const [list, refetch] = useQuery({
    query: DeviceListDocument,
    variables: { first: PAGE, after: cursors.at(-1) ?? null, filter },
    requestPolicy: 'cache-and-network',
    // A new context when a bind or unbind happened elsewhere on the page: urql asks the network again.
    context: useMemo(() => ({ version }), [version]),
  });
  const reload = useCallback(() => refetch({ requestPolicy: 'network-only' }), [refetch]);
  const live = useLiveStatus(reload);
  const edges = list.data?.devices.edges ?? [];
  const owned = edges.filter((e) => e.node.role === 'OWNER');
  const resetPaging = () => setCursors([null]);

  return (
    <section aria-labelledby={`${id}-h`} className="card">
      <h2 id={`${id}-h`}>Devices{list.data ? ` (${list.data.devices.totalCount})` : ''}</h2>
      <div className="filters" role="search">
        <label htmlFor={`${id}-search`}>Search devices</label>
        <input
          id={`${id}-search`}
          type="search"
          placeholder="Name or serial"
          value={search}
          onChange={(e) => {
            setSearch(e.target.value);
            resetPaging();
          }}
        />
        <label htmlFor={`${id}-status`}>Status</label>
        <select
          id={`${id}-status`}
          value={status}
          onChange={(e) => {
            setStatus(e.target.value as DeviceStatus | '');
            resetPaging();
          }}
        >
          <option value="">Any</option>
          <option value="ONLINE">Online</option>
          <option value="OFFLINE">Offline</option>
          <option value="UNKNOWN">Unknown</option>
        </select>
        <label htmlFor={`${id}-role`}>Role</label>
        <select
          id={`${id}-role`}
          value={role}
          onChange={(e) => {
            setRole(e.target.value as DeviceRole | '');
            resetPaging();
          }}
        >
          <option value="">Any</option>
          <option value="OWNER">Mine</option>
          <option value="SHARED">Shared with me</option>
        </select>
      </div>
      <ErrorAlert error={list.error && fromCombined(list.error)} />
      {notice && <Notice>{notice}</Notice>}
      {list.data && edges.length === 0 && <p>No devices{Object.keys(filter).length ? ' match' : ' yet: bind one with the form'}.</p>}
      {edges.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">
                <span className="visually-hidden">Select</span>
              </th>
              <th scope="col">Name</th>
              <th scope="col">Serial</th>
              <th scope="col">Model</th>
              <th scope="col">Role</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {edges.map(({ node: d }) => {
              const s = live[d.id] ?? { status: d.status, lastSeenAt: d.lastSeenAt ?? null };
              return (
                <tr key={d.id} data-device-id={d.id}>
                  <td>
                    {d.role === 'OWNER' && (
                      <input
                        type="checkbox"
                        aria-label={`Select ${d.name}`}
                        checked={selected.has(d.id)}
                        onChange={(e) => {
                          const next = new Set(selected);
                          if (e.target.checked) next.add(d.id);
                          else next.delete(d.id);
                          setSelected(next);
                        }}
                      />
                    )}
                  </td>
                  <th scope="row">
                    <a href={`#/devices/${encodeURIComponent(d.id)}`}>{d.name}</a>
                  </th>
                  <td>
                    <code>{d.serial}</code>
                  </td>
                  <td>{d.model ?? ''}</td>
                  <td>{d.role === 'OWNER' ? 'Owner' : 'Shared with me'}</td>
                  <td>
                    <StatusBadge status={s.status} lastSeenAt={s.lastSeenAt} />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <div className="row">
        <button type="button" disabled={cursors.length < 2} onClick={() => setCursors(cursors.slice(0, -1))}>
          Previous page
        </button>
        <button
          type="button"
          disabled={!list.data?.devices.pageInfo.hasNextPage}
          onClick={() => setCursors([...cursors, list.data!.devices.pageInfo.endCursor ?? null])}
        >
          Next page
        </button>
        <button type="button" disabled={selected.size === 0 || owned.length === 0} onClick={() => setBulkOpen(true)}>
          Unbind selected{selected.size ? ` (${selected.size})` : ''}
        </button>
      </div>
      {bulkOpen && (
        <BulkUnbindDialog
          devices={edges.filter((e) => selected.has(e.node.id)).map((e) => e.node)}
          onClose={(unbound) => {
            setBulkOpen(false);
            if (unbound > 0) {
              setSelected(new Set());
              setNotice(`${unbound} ${unbound === 1 ? 'device' : 'devices'} unbound.`);
              onChanged();
            }
          }}
        />
      )}
    </section>
  );
}
