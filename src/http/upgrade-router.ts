import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';

/** Handles WebSocket upgrades for one path (graphql-ws, the device channel). */
export type UpgradeHandler = (request: IncomingMessage, socket: Duplex, head: Buffer) => void;

/**
 * Routes the HTTP server's upgrade requests by path; an unknown path, or any path once `closed()`
 * is true (shutting down), is answered 404 and the socket ended.
 */
export function routeUpgrades(server: Server, handlers: ReadonlyMap<string, UpgradeHandler>, closed: () => boolean): void {
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const pathname = new URL(req.url ?? '/', 'http://x').pathname;
    const handler = handlers.get(pathname);
    if (!handler || closed()) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    handler(req, socket, head);
  });
}
