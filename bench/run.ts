// `npm run bench [-- S2 S8] [--quick] [--rounds N]`: runs the scenarios in bench/scenarios/ (every
// one by default), a progress line per round, and rewrites bench/RESULTS.md from bench/results.json
// (which keeps the last figures of scenarios not run this time). Needs a Postgres where scratch
// databases may be created and a Redis: BENCH_DATABASE_URL / BENCH_REDIS_URL, else TEST_*, else
// DATABASE_URL / REDIS_URL, else the local defaults below.
import 'reflect-metadata';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { ROOT, type ResultRow, type Scenario } from './lib/harness';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { quick: { type: 'boolean', default: false }, rounds: { type: 'string' } },
});
const quick = values.quick || process.env.BENCH_QUICK === '1';
const rounds = Math.min(Math.max(Number(values.rounds ?? (quick ? 2 : 5)), 1), 50);
const databaseUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const redisUrl = process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const scenarioDir = path.join(ROOT, 'bench', 'scenarios');
const files = readdirSync(scenarioDir).filter((f) => /^s\d+[a-z]?\.ts$/.test(f));
const all: Scenario[] = [];
for (const f of files) all.push((await import(pathToFileURL(path.join(scenarioDir, f)).href)).default as Scenario);
const order = (id: string) => {
  const m = /^S(\d+)([a-z]?)$/.exec(id)!;
  return Number(m[1]) * 100 + (m[2] ? m[2].charCodeAt(0) : 0);
};
all.sort((a, b) => order(a.id) - order(b.id));
const wanted = positionals.map((p) => p.toUpperCase().replace(/A$|B$/, (s) => s.toLowerCase()));
const unknown = wanted.filter((w) => !all.some((s) => s.id === w));
if (unknown.length) {
  console.error(`unknown scenario(s) ${unknown.join(', ')}; known: ${all.map((s) => s.id).join(', ')}`);
  process.exit(2);
}
const selected = wanted.length ? all.filter((s) => wanted.includes(s.id)) : all;

const resultsPath = path.join(ROOT, 'bench', 'results.json');
interface Stored {
  scenario: string;
  title: string;
  date: string;
  rounds: number;
  quick: boolean;
  seconds: number;
  rows: ResultRow[];
  error?: string;
}
const stored: Record<string, Stored> = existsSync(resultsPath) ? JSON.parse(readFileSync(resultsPath, 'utf8')) : {};

const started = Date.now();
const clock = () => `${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s`;
console.log(`bench: ${selected.map((s) => s.id).join(' ')} · ${rounds} rounds${quick ? ' · quick' : ''} · ${cpus().length} cores · Node ${process.version}`);
for (const s of selected) {
  const t0 = Date.now();
  const progress = (message: string) => console.log(`[${clock()}] ${s.id} ${message}`);
  progress(`start: ${s.title}`);
  let rows: ResultRow[] = [];
  let error: string | undefined;
  try {
    rows = await s.run({ rounds, databaseUrl, redisUrl, quick, progress });
  } catch (err) {
    error = err instanceof Error ? (err.stack ?? err.message) : String(err);
    progress(`FAILED: ${error}`);
  }
  const seconds = Math.round((Date.now() - t0) / 1000);
  for (const r of rows) progress(`${r.pass ? 'pass' : 'FAIL'} ${r.metric}: ${fmt(r.ours)} ${r.unit} · ${r.ratio} · goal ${r.goal}`);
  stored[s.id] = { scenario: s.id, title: s.title, date: new Date().toISOString(), rounds, quick, seconds, rows, ...(error ? { error } : {}) };
  writeFileSync(resultsPath, JSON.stringify(stored, null, 2) + '\n');
  writeFileSync(path.join(ROOT, 'bench', 'RESULTS.md'), renderMarkdown(stored, all));
}
console.log(`bench: done in ${clock().trim()}; bench/RESULTS.md written`);
// Child processes and sockets are closed by each scenario; leave nothing behind if one forgot.
process.exit(0);

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(Math.abs(n) >= 10 ? 1 : 2);
}

function renderMarkdown(results: Record<string, Stored>, scenarios: Scenario[]): string {
  const lines = [
    '# Benchmark results',
    '',
    `Written by \`npm run bench\`. Machine: ${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${process.platform}.`,
    'Every figure is a median over alternated rounds (ours and each peer in turn, same run); ratios compare those medians.',
    'How each scenario is run, and what the peers are: bench/README.md.',
    '',
    '| scenario | metric | Vigil | peers | ratio | goal | result |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  const footnotes: string[] = [];
  for (const s of scenarios) {
    const r = results[s.id];
    if (!r) {
      lines.push(`| ${s.id} | ${s.title} | not run | | | | |`);
      continue;
    }
    if (r.error) lines.push(`| ${s.id} | ${s.title} | error | | | | FAIL (${r.error.split('\n')[0]!.replace(/\|/g, '/').slice(0, 120)}) |`);
    for (const row of r.rows) {
      const peers = row.peers.map((p) => `${p.name}: ${fmt(p.value)}`).join('<br>');
      lines.push(`| ${s.id} | ${row.metric} | ${fmt(row.ours)} ${row.unit} | ${peers || '–'} | ${row.ratio} | ${row.goal} | ${row.pass ? 'pass' : '**FAIL**'} |`);
      if (row.note) footnotes.push(`- ${s.id}, ${row.metric}: ${row.note}`);
    }
    footnotes.push(`- ${s.id} run ${r.date.slice(0, 16).replace('T', ' ')} UTC, ${r.rounds} rounds${r.quick ? ' (quick sizes)' : ''}, ${r.seconds} s.`);
  }
  return [...lines, '', '## Notes', '', ...footnotes, ''].join('\n');
}
