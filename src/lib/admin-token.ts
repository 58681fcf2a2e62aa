import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomToken } from './secrets';

/** Where the generated operator token lives when ADMIN_TOKEN is unset. */
export const adminTokenFile = (dataDir: string) => path.join(dataDir, 'admin-token');

/** The token in `<dataDir>/admin-token`, or undefined when there is none (or the dir is ':memory:'). */
export function readAdminToken(dataDir: string): string | undefined {
  if (dataDir === ':memory:') return undefined;
  try {
    return readFileSync(adminTokenFile(dataDir), 'utf8').trim() || undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * The operator token: ADMIN_TOKEN when set; else the one in `<dataDir>/admin-token`, generated
 * (256 bits, mode 0600) on first start; with a ':memory:' data dir, a random one held in memory.
 * Several gateway nodes must share ADMIN_TOKEN: each node's data dir would otherwise hold its own.
 */
export function loadAdminToken(configured: string | undefined, dataDir: string): string {
  if (configured) return configured;
  if (dataDir === ':memory:') return randomToken(32);
  const existing = readAdminToken(dataDir);
  if (existing) return existing;
  const token = randomToken(32);
  mkdirSync(dataDir, { recursive: true });
  try {
    // 'wx': two processes starting on one data dir agree on the first file written.
    writeFileSync(adminTokenFile(dataDir), `${token}\n`, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return readAdminToken(dataDir) ?? token;
    throw e;
  }
  chmodSync(adminTokenFile(dataDir), 0o600);
  return token;
}
