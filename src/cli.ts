import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from './config';
import { readAdminToken } from './lib/admin-token';

/**
 * The `vigil` command (bin/vigil.mjs, `npm run vigil --`). Exit codes: 0 done, 1 the gateway
 * refused or failed, 2 bad usage, 3 gateway unreachable, 78 bad configuration (no admin token, bad env).
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3, config: 78 } as const;

const PROVISION_USAGE = `  devices provision       Register a device with a running gateway and print its label code and secrets.
      --serial S          Serial number: 1-64 of A-Z a-z 0-9 - _ . (required)
      --model M           Model, e.g. DS-2CD2143G2-I
      --channels N        Video channels, 1-256 (default 1)
      --url U             Gateway base URL (default VIGIL_URL, else http://HOST:PORT from the environment)
      --json              Print the gateway's JSON reply instead of text
`;

const SIMULATE_USAGE = `  devices simulate        Connect simulated devices to a gateway's device channel (Ctrl-C stops).
      --url U             Device channel (default ws://HOST:PORT/devices/ws from the environment)
      --count N           Devices, 1-10000 (default 10)
      --alarm-rate R      Alarms per device per second (default 0.2)
      --prefix P          Serial prefix (default SIM): P-00001, P-00002, ...
      --state F           Device keys kept for reuse (default <DATA_DIR>/simulator-devices.json)
      --duration S        Stop after S seconds
`;

const ENVIRONMENT = `Environment: the same as the gateway's. PORT and HOST say where the gateway listens (default
127.0.0.1:4000; --url overrides), DATA_DIR where its data dir is (default ./data). The admin token
comes from ADMIN_TOKEN, else from <DATA_DIR>/admin-token (written by the gateway on first start).
`;

const USAGE = `Usage: vigil <command> [options]

Commands:
  serve                   Start the gateway (the same as npm start).
  migrate                 Apply the database migrations and exit.
${PROVISION_USAGE}${SIMULATE_USAGE}
${ENVIRONMENT}`;

const DEVICES_USAGE = `Usage: vigil devices <provision|simulate> [options]

${PROVISION_USAGE}${SIMULATE_USAGE}
${ENVIRONMENT}`;

const helpAsked = (args: readonly string[]) => args.includes('--help') || args.includes('-h');

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  env: NodeJS.ProcessEnv;
}

const defaultIo: CliIo = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`), env: process.env };

class UsageError extends Error {}

/** Runs one command; resolves to the exit code, or null for `serve` (which runs until signalled). */
export async function runCli(argv: readonly string[], io: CliIo = defaultIo): Promise<number | null> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        await import('./main');
        return null;
      case 'migrate':
        if (helpAsked(rest)) {
          io.out(USAGE);
          return EXIT.ok;
        }
        return await migrate(io);
      case 'devices':
        // Help at any depth: `vigil devices --help`, `vigil devices simulate --help`.
        if (helpAsked(rest) || rest[0] === 'help') {
          const sub = rest[0] === 'help' ? rest[1] : rest[0];
          const usage = sub === 'provision' ? PROVISION_USAGE : sub === 'simulate' ? SIMULATE_USAGE : undefined;
          io.out(usage ? `Usage: vigil devices ${sub} [options]\n\n${usage}\n${ENVIRONMENT}` : DEVICES_USAGE);
          return EXIT.ok;
        }
        if (rest[0] === 'provision') return await provision(rest.slice(1), io);
        if (rest[0] === 'simulate') {
          const { runSimulate, SimulateUsageError } = await import('./tools/simulator-cli');
          try {
            return await runSimulate(rest.slice(1), { ...io, tty: io === defaultIo && process.stderr.isTTY });
          } catch (e) {
            if (e instanceof SimulateUsageError) throw new UsageError(e.message);
            throw e;
          }
        }
        throw new UsageError(rest[0] ? `unknown devices command: ${rest[0]}` : 'devices needs a command: provision, simulate');
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.out(USAGE);
        return command === undefined ? EXIT.usage : EXIT.ok;
      default:
        throw new UsageError(`unknown command: ${command}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`vigil: ${e.message}\n\n${USAGE}`);
      return EXIT.usage;
    }
    if (e instanceof ConfigError) {
      io.err(`vigil: bad configuration: ${e.message}`);
      return EXIT.config;
    }
    throw e;
  }
}

async function migrate(io: CliIo): Promise<number> {
  const config = loadConfig(io.env);
  const { openDb } = await import('./db/index');
  const db = await openDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  try {
    await db.migrate();
  } finally {
    await db.close();
  }
  io.out(`migrations applied (${db.kind})`);
  return EXIT.ok;
}

function gatewayUrl(config: Config, flag: string | undefined, env: NodeJS.ProcessEnv): URL {
  const raw = flag ?? env.VIGIL_URL;
  if (raw) {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new UsageError(`--url: not a URL: ${raw}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--url: must be http(s)://, got ${url.protocol}`);
    return url;
  }
  // A wildcard listen address is not somewhere to connect to.
  const host = ['0.0.0.0', '::', '[::]'].includes(config.host) ? '127.0.0.1' : config.host;
  return new URL(`http://${host.includes(':') ? `[${host}]` : host}:${config.port}`);
}

async function provision(args: readonly string[], io: CliIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: {
        serial: { type: 'string' },
        model: { type: 'string' },
        channels: { type: 'string' },
        url: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (!values.serial) throw new UsageError('devices provision needs --serial');
  let channels = 1;
  if (values.channels !== undefined) {
    channels = Number(values.channels);
    if (!/^\d+$/.test(values.channels) || channels < 1 || channels > 256)
      throw new UsageError(`--channels: must be a whole number from 1 to 256, got ${values.channels}`);
  }

  const config = loadConfig(io.env);
  const base = gatewayUrl(config, values.url, io.env);
  const token = config.adminToken ?? readAdminToken(config.dataDir);
  if (!token) {
    const where = config.dataDir === ':memory:' ? 'an in-memory data dir has none' : `${path.join(config.dataDir, 'admin-token')} does not exist`;
    io.err(`vigil: no admin token: set ADMIN_TOKEN, or run where DATA_DIR points at the gateway's data dir (${where})`);
    return EXIT.config;
  }

  const endpoint = new URL('admin/devices', base.href.endsWith('/') ? base : `${base.href}/`);
  let res: Response;
  try {
    res = await fetch(endpoint, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ serial: values.serial, ...(values.model ? { model: values.model } : {}), channels }),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (e as Error).message;
    io.err(`vigil: cannot reach the gateway at ${base.origin} (${why}). Is it running (vigil serve)? Pass --url otherwise.`);
    return EXIT.unreachable;
  }
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON: reported below with the status
  }
  if (res.status !== 201) {
    const hint =
      res.status === 401
        ? ' (the admin token was refused: check ADMIN_TOKEN or DATA_DIR)'
        : res.status === 409
          ? ' (this serial is already provisioned; provisioning never overwrites)'
          : res.status === 429
            ? ' (too many wrong tokens from this address; wait and retry)'
            : '';
    io.err(`vigil: the gateway answered ${res.status}: ${typeof body.message === 'string' ? body.message : text.slice(0, 200) || res.statusText}${hint}`);
    return EXIT.failed;
  }
  if (values.json) {
    io.out(JSON.stringify(body));
    return EXIT.ok;
  }
  io.out(`Provisioned ${String(body.serial)}`);
  io.out(`  verification code  ${String(body.verificationCode)}    print it on the label; binding needs it`);
  io.out(`  device key         ${String(body.deviceKey)}`);
  io.out(`  ingest URL         ${new URL(String(body.ingestPath), base).href}`);
  io.out('Keep these now: the gateway stores only hashes and cannot show them again.');
  return EXIT.ok;
}

/** Entry point for bin/vigil.mjs: runs and sets the exit code (`serve` keeps running). */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  const code = await runCli(argv);
  if (code !== null) process.exitCode = code;
}

// `tsx src/cli.ts ...` (npm run vigil): run when this file is the entry module.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
