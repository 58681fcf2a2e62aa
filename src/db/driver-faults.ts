import type { Logger } from 'pino';

/**
 * postgres.js 3.4.9 (3.4.10 alike) can throw from a write it deferred on a connection the server
 * killed (`socket.write` on null in `nextWrite`; upstream issues porsager/postgres#1154, #1208):
 * an uncaught TypeError outside any query, after the pool has already replaced the connection.
 * Nothing is lost (the query on that connection already failed and was answered), so the process
 * should not die of it.
 */
export function isDriverWriteAfterClose(err: unknown): boolean {
  return err instanceof TypeError && /reading 'write'/.test(err.message) && /postgres[\\/](?:cjs[\\/])?src[\\/]connection\.js/.test(err.stack ?? '');
}

/**
 * For the gateway process only (main.ts): the driver fault above is logged and survived; any other
 * uncaught exception is logged and ends the process with exit code 1, as Node would.
 */
export function surviveDriverWriteAfterClose(log: Logger): void {
  process.on('uncaughtException', (err) => {
    if (isDriverWriteAfterClose(err)) {
      log.warn({ err: err.message }, 'postgres.js wrote to a killed connection (known driver fault); continuing');
      return;
    }
    log.fatal({ err }, 'uncaught exception');
    process.exit(1);
  });
}
