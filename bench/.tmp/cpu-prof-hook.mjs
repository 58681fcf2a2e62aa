import inspector from 'node:inspector';
import fs from 'node:fs';
const s = new inspector.Session();
s.connect();
s.post('Profiler.enable');
s.post('Profiler.setSamplingInterval', { interval: 500 });
s.post('Profiler.start');
process.on('exit', () => {
  s.post('Profiler.stop', (err, r) => {
    if (!err) fs.writeFileSync(`/tmp/prof/gw-${process.pid}.cpuprofile`, JSON.stringify(r.profile));
  });
});
