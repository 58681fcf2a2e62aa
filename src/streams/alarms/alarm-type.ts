/**
 * Canonical alarm categories the cloud stores, independent of vendor wording.
 *
 * `OTHER` catches every event type we do not map explicitly, so an unknown or
 * newer firmware event is still stored rather than dropped.
 */
export const ALARM_TYPES = [
  'MOTION',
  'LINE_CROSSING',
  'INTRUSION',
  'REGION_ENTRANCE',
  'REGION_EXIT',
  'TAMPER',
  'VIDEO_LOSS',
  'ALARM_INPUT',
  'FACE',
  'DISK_FULL',
  'DISK_ERROR',
  'ILLEGAL_ACCESS',
  'OTHER',
] as const;

export type AlarmType = (typeof ALARM_TYPES)[number];

const BY_EVENT_TYPE: ReadonlyMap<string, AlarmType> = new Map<string, AlarmType>([
  ['vmd', 'MOTION'],
  ['linedetection', 'LINE_CROSSING'],
  ['fielddetection', 'INTRUSION'],
  ['regionentrance', 'REGION_ENTRANCE'],
  ['regionexiting', 'REGION_EXIT'],
  ['tamperdetection', 'TAMPER'],
  ['shelteralarm', 'TAMPER'],
  ['videoloss', 'VIDEO_LOSS'],
  ['io', 'ALARM_INPUT'],
  ['facedetection', 'FACE'],
  ['diskfull', 'DISK_FULL'],
  ['diskerror', 'DISK_ERROR'],
  ['illaccess', 'ILLEGAL_ACCESS'],
]);

/**
 * Maps a normalised Hikvision ISAPI event type to an {@link AlarmType}.
 *
 * The argument is expected to be already normalised (lower-cased, trimmed,
 * trailing `-N` removed; see `parseAlertXml`); the lookup is nevertheless
 * case-insensitive and trims surrounding whitespace, so `"VMD"` also maps.
 * Never throws: anything not in the table (including the empty string) is
 * `'OTHER'`.
 */
export function alarmTypeFor(normalisedEventType: string): AlarmType {
  return BY_EVENT_TYPE.get(String(normalisedEventType).trim().toLowerCase()) ?? 'OTHER';
}
