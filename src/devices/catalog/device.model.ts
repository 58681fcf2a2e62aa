/**
 * The device area's own vocabulary, free of GraphQL and Drizzle: the GraphQL enums in
 * src/schema/device.type.ts are registered from these lists.
 */

export const DEVICE_STATUSES = ['ONLINE', 'OFFLINE', 'UNKNOWN'] as const;
export type DeviceStatus = (typeof DEVICE_STATUSES)[number];

export const PERMISSIONS = ['LIVE_VIEW', 'PLAYBACK', 'ALARMS', 'CONFIGURE'] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const DEVICE_ROLES = ['OWNER', 'SHARED'] as const;
export type DeviceRole = (typeof DEVICE_ROLES)[number];

/** A device as one caller sees it: the device, the open binding, and the caller's relation to it. */
export interface DeviceView {
  id: string;
  serial: string;
  model: string | null;
  firmware: string | null;
  channels: number;
  name: string;
  status: DeviceStatus;
  lastSeenAt: Date | null;
  boundAt: Date;
  role: DeviceRole;
  /** What the caller may do; an owner has every permission. */
  permissions: Permission[];
  /** The open binding the view was read from (alarms and shares hang off it). Not in the API. */
  bindingId: string;
}

/**
 * What an owner may know about a grantee: the id, the display name and the login the owner typed
 * when inviting (in `email` or `phone`, the other null). `createdAt` is the share's, not the
 * account's, and `totpEnabled` is always false: neither is the owner's business.
 */
export interface GranteeView {
  id: string;
  email: string | null;
  phone: string | null;
  displayName: string | null;
  totpEnabled: false;
  createdAt: Date;
}

export interface ShareView {
  id: string;
  device: DeviceView;
  grantee: GranteeView;
  permissions: Permission[];
  expiresAt: Date | null;
  createdAt: Date;
}

/** One device's outcome in unbindDevice(s). `error` is the failure (NOT_FOUND, FORBIDDEN) when `ok` is false. */
export interface UnbindOutcome {
  deviceId: string;
  ok: boolean;
  error: Error | null;
  revokedShares: number;
}

/**
 * Status from the registry columns (written by the connection registry, issue 4):
 * online -> ONLINE; a device that ever sent heartbeats and is not online -> OFFLINE; a quiet
 * listening-mode device that was heard from but never heartbeats -> UNKNOWN; never seen -> OFFLINE.
 * Keep in step with `STATUS_SQL` in device.store.ts.
 */
export function statusOf(d: { online: boolean; heartbeats: boolean; lastSeenAt: Date | null }): DeviceStatus {
  if (d.online) return 'ONLINE';
  if (d.heartbeats) return 'OFFLINE';
  return d.lastSeenAt ? 'UNKNOWN' : 'OFFLINE';
}

/** Keeps only known permission words, in the canonical order, without duplicates. */
export function normalizePermissions(values: readonly string[]): Permission[] {
  return PERMISSIONS.filter((p) => values.includes(p));
}
