#!/usr/bin/env node
// The `vigil` command: runs src/cli.ts through tsx's ESM loader, so no build step is needed.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli.ts');
await main(process.argv.slice(2));
