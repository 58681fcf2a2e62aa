// Vigil's real gateway (src/app.ts: Fastify, Apollo and our plugins, edge and rate limits, the
// configured executor), configured from the environment as in production, printing `READY <url>`
// for the harness. With --memory-data, the bearer lookup and device reads are served from the
// benchmark's in-memory data (bench/peers/lib/http-data.ts), as the S1a peers serve them.
import 'reflect-metadata';
import { buildApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import { withMemoryData } from '../peers/lib/http-data';

const memory = process.argv.includes('--memory-data');
const app = await buildApp(loadConfig(), memory ? { services: withMemoryData } : {});
const url = await app.start(0);
console.log(`READY ${url}`);
process.on('SIGTERM', () => {
  app.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
