// The newcomer path of issue 11: subcommand help, the simulator's closing summary, and the start-up
// lines that say where the console, the explorer, the mails and the admin token are.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EXIT, runCli } from '../src/cli';
import { loadConfig } from '../src/config';
import { startupNotes } from '../src/http/startup-notes';
import { summaryLine } from '../src/tools/simulator';
import { startApp, type TestApp } from './helpers/harness';

function capture(env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l), env } };
}

describe('vigil CLI help', () => {
  test('prints the devices commands and exits 0 when `devices --help` is asked for', async () => {
    for (const args of [['devices', '--help'], ['devices', '-h'], ['devices', 'help']]) {
      const c = capture();
      assert.equal(await runCli(args, c.io), EXIT.ok, args.join(' '));
      const text = c.out.join('\n');
      assert.match(text, /devices provision/);
      assert.match(text, /devices simulate/);
      assert.match(text, /PORT/);
      assert.match(text, /DATA_DIR/);
      assert.deepEqual(c.err, []);
    }
  });

  test('prints only that command\'s options when `devices simulate --help` or `devices provision --help` is asked for', async () => {
    const sim = capture();
    assert.equal(await runCli(['devices', 'simulate', '--help'], sim.io), EXIT.ok);
    assert.match(sim.out.join('\n'), /--alarm-rate R/);
    assert.doesNotMatch(sim.out.join('\n'), /--serial S/);
    const prov = capture();
    assert.equal(await runCli(['devices', 'provision', '--help'], prov.io), EXIT.ok);
    assert.match(prov.out.join('\n'), /--serial S/);
    assert.doesNotMatch(prov.out.join('\n'), /--alarm-rate/);
  });

  test('still refuses an unknown option with exit 2 when help is not asked for', async () => {
    const c = capture();
    assert.equal(await runCli(['devices', 'simulate', '--nope'], c.io), EXIT.usage);
    assert.match(c.err.join('\n'), /Unknown option '--nope'/);
  });
});

describe('simulator summary', () => {
  let t: TestApp;
  const ADMIN_TOKEN = 'newcomer-test-admin-token-0123456789abcdef';
  before(async () => {
    t = await startApp({ env: { ADMIN_TOKEN } });
  });
  after(() => t.stop());

  test('words the totals of a run, not the zero connections after stopping', () => {
    const line = summaryLine({ devices: 20, connected: 0, everConnected: 20, alarmsSent: 240, acked: 238, pending: 2, reconnects: 1, commands: 0, refused: 0 }, 59.6);
    assert.equal(line, 'summary: 20/20 devices connected during 60 s; 240 alarms sent, 238 acked, 2 unacked at stop; 1 reconnect');
  });

  test('ends a CLI run with the summary line when the run stops', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vigil-newcomer-'));
    try {
      const c = capture({ ADMIN_TOKEN, DATA_DIR: dir });
      const prefix = `NEW${process.pid}`;
      const { runSimulate } = await import('../src/tools/simulator-cli');
      const code = await runSimulate(['--url', `${t.url.replace(/^http/, 'ws')}/devices/ws`, '--count', '2', '--alarm-rate', '0', '--prefix', prefix], {
        ...c.io,
        until: (sim) => sim.allConnected(),
      });
      assert.equal(code, 0);
      assert.match(c.out.at(-1) ?? '', /^summary: 2\/2 devices connected during \d+ s; 0 alarms sent, 0 acked, 0 unacked at stop; 0 reconnects$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('start-up notes', () => {
  test('names the console, the explorer, the outbox folder and the admin-token file when nothing is configured', () => {
    const config = loadConfig({ DATA_DIR: '/srv/vigil-data' });
    const text = startupNotes(config, 'http://127.0.0.1:4000').join('\n');
    assert.match(text, /Web console: http:\/\/127\.0\.0\.1:4000\/ /);
    assert.match(text, /API explorer: http:\/\/127\.0\.0\.1:4000\/graphiql/);
    assert.match(text, /no SMTP_URL set, so mails go to the log and the folder \/srv\/vigil-data\/outbox/);
    assert.match(text, /in the file \/srv\/vigil-data\/admin-token/);
  });

  test('says where mails go and that the console is off when SMTP and CONSOLE=off are set', () => {
    const config = loadConfig({ DATA_DIR: '/srv/vigil-data', SMTP_URL: 'smtp://mail.example:25', ADMIN_TOKEN: 'x'.repeat(32), CONSOLE: 'off' });
    const text = startupNotes(config, 'http://127.0.0.1:4000').join('\n');
    assert.match(text, /Web console: off/);
    assert.match(text, /Mail: sent through SMTP_URL/);
    assert.match(text, /Admin token .*: from ADMIN_TOKEN/);
  });
});
