// One argon2 worker of the bounded hasher (argon2-hasher.ts): it computes the jobs it is sent one
// at a time, in order, and answers each. Its own event loop starts the next job the moment one
// ends, however busy the main thread is serving queries. Plain JavaScript so that it runs under
// any loader.
import { parentPort } from 'node:worker_threads';
import argon2 from 'argon2';

const queue = [];
let busy = false;

async function drain() {
  busy = true;
  while (queue.length) {
    const job = queue.shift();
    try {
      const value = job.op === 'hash' ? await argon2.hash(job.secret, job.options) : await argon2.verify(job.hash, job.secret);
      parentPort.postMessage({ id: job.id, value });
    } catch (err) {
      parentPort.postMessage({ id: job.id, error: err instanceof Error ? err.message : String(err) });
    }
  }
  busy = false;
}

parentPort.on('message', (job) => {
  queue.push(job);
  if (!busy) void drain();
});
