import fs from 'node:fs';
const snap = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const m = snap.snapshot.meta; const F = m.node_fields.length; const types = m.node_types[0];
const iType = m.node_fields.indexOf('type'), iName = m.node_fields.indexOf('name'), iSize = m.node_fields.indexOf('self_size');
const want = process.argv[3] ?? 'string';
const agg = new Map(); const n = snap.nodes;
for (let i = 0; i < n.length; i += F) { const t = types[n[i + iType]]; if (t !== want) continue; const k = snap.strings[n[i + iName]].slice(0, 70); const a = agg.get(k) ?? [0, 0]; a[0]++; a[1] += n[i + iSize]; agg.set(k, a); }
for (const [k, [c, s]] of [...agg].sort((a, b) => b[1][1] - a[1][1]).slice(0, 25)) console.log(String(s).padStart(10), String(c).padStart(8), JSON.stringify(k));
