/**
 * Where the fixture's alert document ends: after the first end tag of an EventNotification(Alert)
 * element, else after the brace closing the first JSON object. A prefix shorter than this holds a
 * cut document; null when the file holds neither.
 */
export function alertEnd(body: Buffer): number | null {
  const s = body.toString('latin1');
  const tag = /<\/(?:[\w.-]+:)?EventNotification(?:Alert)?\s*>/i.exec(s);
  if (tag) return tag.index + tag[0].length;
  const open = s.indexOf('{');
  if (open < 0) return null;
  let depth = 0;
  let inString = false;
  for (let i = open; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i + 1;
  }
  return null;
}
