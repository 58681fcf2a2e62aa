import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

/**
 * Tests that need real services: skipped with "skipped: no Postgres" / "skipped: no Redis" when
 * TEST_DATABASE_URL / TEST_REDIS_URL are unset, but failing in CI, where both must be there.
 */
export function requireServices(needs: { postgres?: boolean; redis?: boolean }): string | undefined {
  const missing = needs.postgres && !process.env.TEST_DATABASE_URL ? 'Postgres' : needs.redis && !process.env.TEST_REDIS_URL ? 'Redis' : undefined;
  if (!missing) return undefined;
  if (process.env.CI) {
    test(`has ${missing} when running in CI`, () => {
      throw new Error(`TEST_${missing === 'Postgres' ? 'DATABASE' : 'REDIS'}_URL must be set in CI`);
    });
  }
  return `skipped: no ${missing}`;
}

/** Settings every node of one test cluster shares (signing key, operator token). */
export function clusterSecrets(): Record<string, string> {
  const { privateKey } = generateKeyPairSync('ed25519');
  return {
    JWT_PRIVATE_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    ADMIN_TOKEN: randomBytes(24).toString('base64url'),
  };
}

export interface GatewayProcess {
  name: string;
  url: string;
  proc: ChildProcess;
  /** Resolves with the exit code (or signal) once the process ended. */
  exited: Promise<number | string | null>;
  /** Its log lines so far (JSON). */
  lines: string[];
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts `src/main.ts` as a real gateway process on a free port, as `npm start` would, and waits
 * for its "vigil gateway listening" line. `env` adds to the parent's environment. Set
 * TEST_GATEWAY_LOGS=1 to see its log lines.
 */
export function startGateway(name: string, env: Record<string, string>): Promise<GatewayProcess> {
  const dataDir = mkdtempSync(path.join(tmpdir(), `vigil-${name}-`));
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', NODE_ENV: '', NODE_ID: name, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const exited = new Promise<number | string | null>((resolve) =>
    proc.once('exit', (code, signal) => {
      rmSync(dataDir, { recursive: true, force: true });
      resolve(code ?? signal);
    }),
  );
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString();
      let i: number;
      while ((i = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 1);
        lines.push(line);
        if (process.env.TEST_GATEWAY_LOGS) process.stderr.write(`[${name}] ${line}\n`);
        const m = /"url":"(http:\/\/[^"]+)".*vigil gateway listening/.exec(line);
        if (m) {
          resolve({
            name,
            url: m[1]!,
            proc,
            exited,
            lines,
            async kill(signal: NodeJS.Signals = 'SIGTERM') {
              if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
              await exited;
            },
          });
        }
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    void exited.then((code) => reject(new Error(`${name} exited early (${code}):\n${lines.slice(-20).join('\n')}`)));
  });
}

/**
 * A TCP proxy in front of Redis that a test can cut (every connection dropped, new ones refused)
 * and restore on the same port: a Redis outage without touching the shared Redis.
 */
export async function redisProxy(target: string) {
  const t = new URL(target);
  const sockets = new Set<net.Socket>();
  let port = 0;
  let server: net.Server | undefined;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = net.createServer((client) => {
        const upstream = net.connect(Number(t.port || 6379), t.hostname);
        sockets.add(client).add(upstream);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        for (const sock of [client, upstream]) {
          sock.on('error', drop);
          sock.on('close', drop);
        }
        client.pipe(upstream);
        upstream.pipe(client);
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as AddressInfo).port;
        server = s;
        resolve();
      });
    });
  await listen();
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    /** Drops every connection and refuses new ones. */
    async cut() {
      const s = server;
      server = undefined;
      for (const sock of sockets) sock.destroy();
      sockets.clear();
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
    /** Accepts connections again, on the same port. */
    restore: listen,
    close() {
      return this.cut();
    },
  };
}
