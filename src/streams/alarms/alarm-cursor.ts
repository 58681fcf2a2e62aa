/**
 * Alarm cursors: opaque strings over the `(xid, seq)` order of the alarms table. Totally ordered
 * across every node, because both parts come from the one database.
 */
export interface AlarmCursor {
  xid: number;
  seq: number;
}

const PREFIX = 'a1:';

export function encodeAlarmCursor(c: AlarmCursor): string {
  return Buffer.from(`${PREFIX}${c.xid}:${c.seq}`, 'utf8').toString('base64url');
}

/** The cursor, or null when `value` is not one we issued (callers answer BAD_USER_INPUT). */
export function decodeAlarmCursor(value: string): AlarmCursor | null {
  if (typeof value !== 'string' || value.length === 0 || value.length > 64 || !/^[A-Za-z0-9_-]+$/.test(value)) return null;
  const text = Buffer.from(value, 'base64url').toString('utf8');
  const m = /^a1:(\d{1,15}):(\d{1,15})$/.exec(text);
  if (!m) return null;
  const xid = Number(m[1]);
  const seq = Number(m[2]);
  if (!Number.isSafeInteger(xid) || !Number.isSafeInteger(seq)) return null;
  return { xid, seq };
}

export const compareAlarmCursors = (a: AlarmCursor, b: AlarmCursor) => a.xid - b.xid || a.seq - b.seq;
