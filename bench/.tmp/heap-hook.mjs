import v8 from 'node:v8';
process.on('SIGUSR2', () => { v8.writeHeapSnapshot(`/tmp/prof/heap-${process.pid}-${Date.now()}.heapsnapshot`); });
