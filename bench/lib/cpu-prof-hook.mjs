// `--cpu-prof` for a process that is started through NODE_OPTIONS (where node refuses the flag):
// BENCH_GATEWAY_NODE_OPTIONS="--import ./bench/lib/cpu-prof-hook.mjs" BENCH_CPU_PROF=<dir> npm run bench -- S4
// The profile is written to <dir>/gateway-<pid>.cpuprofile when the process exits.
import { Session } from 'node:inspector';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const dir = process.env.BENCH_CPU_PROF;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 1000 });
  session.post('Profiler.start');
  process.once('exit', () => {
    // Same-thread inspector sessions answer synchronously, so this works in 'exit'.
    session.post('Profiler.stop', (err, result) => {
      if (err) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, `gateway-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
