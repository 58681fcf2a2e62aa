// Vigil's real gateway stack (Fastify, Apollo and our plugins, edge limits, rate limits, the
// configured executor) with the bearer lookup and device reads served from the benchmark's
// in-memory data (bench/peers/lib/http-data.ts). Settings come from the environment as in
// production; prints `READY <url>`.
import 'reflect-metadata';
import { buildApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import { withMemoryData } from '../peers/lib/http-data';

const app = await buildApp(loadConfig(), { services: withMemoryData });
const url = await app.start(0);
console.log(`READY ${url}`);
process.on('SIGTERM', () => {
  app.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
