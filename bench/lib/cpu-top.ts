// Top self-time functions of a V8 .cpuprofile: `npx tsx bench/lib/cpu-top.ts file.cpuprofile [n]`.
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
const profile = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as { nodes: Node[]; samples: number[]; startTime: number; endTime: number };
const n = Number(process.argv[3] ?? 30);
const hits = new Map<number, number>();
for (const s of profile.samples) hits.set(s, (hits.get(s) ?? 0) + 1);
const byFn = new Map<string, number>();
let total = 0;
for (const node of profile.nodes) {
  const h = hits.get(node.id) ?? 0;
  total += h;
  const url = node.callFrame.url.replace(/^.*node_modules\//, '').replace(/^.*\/work\/main\//, '');
  const key = `${node.callFrame.functionName || '(anonymous)'} ${url}:${node.callFrame.lineNumber + 1}`;
  byFn.set(key, (byFn.get(key) ?? 0) + h);
}
const byPkg = new Map<string, number>();
for (const [k, h] of byFn) {
  const m = /\s(@[^/]+\/[^/]+|[^/@\s][^/\s]*)\//.exec(k);
  const pkg = k.includes(' node:') || / :\d+$/.test(k) ? 'node/native' : (m?.[1] ?? 'other');
  byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + h);
}
const pct = (h: number) => ((100 * h) / total).toFixed(1).padStart(5) + '%';
console.log(`samples ${total}`);
for (const [k, h] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(pct(h), k);
console.log('--- by package/dir');
for (const [k, h] of [...byPkg].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(pct(h), k);

// Inclusive time (a function and everything it called), counting each sample once per function.
const children = new Map<number, number[]>();
const full = profile.nodes as (Node & { children?: number[] })[];
for (const node of full) children.set(node.id, node.children ?? []);
const parent = new Map<number, number>();
for (const [id, cs] of children) for (const c of cs) parent.set(c, id);
const keyOf = new Map<number, string>();
for (const node of full) {
  const url = node.callFrame.url.replace(/^.*node_modules\//, '').replace(/^.*\/work\/main\//, '');
  keyOf.set(node.id, `${node.callFrame.functionName || '(anonymous)'} ${url}:${node.callFrame.lineNumber + 1}`);
}
const inclusive = new Map<string, number>();
for (const [id, h] of hits) {
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = keyOf.get(cur)!;
    if (!seen.has(k)) {
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + h);
    }
  }
}
console.log('--- inclusive');
for (const [k, h] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.INCL ?? 60))) console.log(pct(h), k);
