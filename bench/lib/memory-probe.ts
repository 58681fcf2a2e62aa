// The bench side of bench/lib/memory-hook.mjs: start a server with `memoryHookNodeArgs` and
// `memoryHookEnv`, then read its memory after a forced GC, or have it write a heap snapshot.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, sleep } from './harness';

export const MEMORY_HOOK_DIR = mkdtempSync(path.join(tmpdir(), 'vigil-bench-memory-'));
export const memoryHookNodeArgs = ['--expose-gc', '--import', path.join(ROOT, 'bench', 'lib', 'memory-hook.mjs')];
export const memoryHookEnv = { BENCH_MEMORY_HOOK_DIR: MEMORY_HOOK_DIR };

export interface MemoryReading {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

async function hookUrl(pid: number): Promise<string> {
  for (let i = 0; i < 100; i++) {
    try {
      return `http://127.0.0.1:${readFileSync(path.join(MEMORY_HOOK_DIR, String(pid)), 'utf8')}`;
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`process ${pid} has no memory hook (started without memoryHookNodeArgs/memoryHookEnv?)`);
}

/** process.memoryUsage() of `pid` right after two forced full GCs. */
export async function memoryAfterGc(pid: number): Promise<MemoryReading> {
  const res = await fetch(`${await hookUrl(pid)}/memory`, { signal: AbortSignal.timeout(60_000) });
  if (!res.ok) throw new Error(`memory hook: ${res.status} ${await res.text()}`);
  return (await res.json()) as MemoryReading;
}

/** Has `pid` write a heap snapshot (after a forced GC) to `file`. */
export async function heapSnapshot(pid: number, file: string): Promise<void> {
  const res = await fetch(`${await hookUrl(pid)}/snapshot?file=${encodeURIComponent(file)}`, { signal: AbortSignal.timeout(300_000) });
  if (!res.ok) throw new Error(`memory hook: ${res.status} ${await res.text()}`);
}
