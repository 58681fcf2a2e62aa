import type { IncomingMessage } from 'node:http';
import { CloseCode, handleProtocols } from 'graphql-ws';
import type { Logger } from 'pino';
import type { WebSocket, WebSocketServer } from 'ws';
import type { LiveConnectionMeta, LiveServer, LiveSocket } from './live-server';

export interface WsAdapterOptions {
  production: boolean;
  log: Logger;
  clientIp(request: IncomingMessage): string;
  /** Ping every this often (default 12 s, graphql-ws's); a peer that does not pong within as long is cut off. */
  keepAliveMs?: number;
}

const TEXT_FRAME = { binary: false } as const;

/**
 * A `ws` WebSocket as the live core's LiveSocket; a message handler that throws goes to `failed`.
 * A class: its methods live on the prototype, not in closures per connection.
 */
class WsLiveSocket implements LiveSocket {
  constructor(
    private readonly socket: WebSocket,
    private readonly failed: (err: unknown) => void,
  ) {}

  get protocol(): string {
    return this.socket.protocol;
  }

  send(data: string | Buffer): Promise<void> {
    const socket = this.socket;
    return new Promise<void>((resolve, reject) => {
      if (socket.readyState !== socket.OPEN) return resolve();
      socket.send(data, TEXT_FRAME, (err) => (err ? reject(err) : resolve()));
    });
  }

  write(data: Buffer): void {
    // No callback: a failed write surfaces as the socket's 'error' and close.
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(data, TEXT_FRAME);
  }

  close(code: number, reason: string): void {
    this.socket.close(code, reason);
  }

  terminate(): void {
    this.socket.terminate();
  }

  get bufferedAmount(): number {
    return this.socket.bufferedAmount;
  }

  isOpen(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  onMessage(cb: (data: string) => Promise<void>): void {
    this.socket.on('message', (data) => void cb(String(data)).catch(this.failed));
  }
}

/**
 * Binds the live core to a `ws` server, as graphql-ws's `use/ws` binds `makeServer`: subprotocol
 * choice, keep-alive pings, 4500 on a socket error or a failed message handler, and
 * `closed(code, reason)` when the socket closes. `dispose` closes every client (1001) and the server.
 */
export function bindLiveServerToWs(wss: WebSocketServer, server: LiveServer, opts: WsAdapterOptions) {
  const keepAliveMs = opts.keepAliveMs ?? 12_000;
  const log = opts.log;
  const internalError = (err: unknown) => (opts.production ? 'Internal server error' : (err instanceof Error ? err.message : String(err)).slice(0, 123));
  wss.options.handleProtocols = handleProtocols;

  wss.once('error', (err) => {
    log.error({ err }, 'graphql WebSocket server error');
    for (const client of wss.clients) client.close(CloseCode.InternalServerError, internalError(err));
  });

  wss.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    socket.once('error', (err) => {
      log.warn({ err }, 'graphql WebSocket error');
      socket.close(CloseCode.InternalServerError, internalError(err));
    });
    let pongWait: NodeJS.Timeout | null = null;
    const ping = setInterval(() => {
      if (socket.readyState !== socket.OPEN) return;
      pongWait = setTimeout(() => socket.terminate(), keepAliveMs);
      socket.once('pong', () => {
        if (pongWait) clearTimeout(pongWait);
        pongWait = null;
      });
      socket.ping();
    }, keepAliveMs);
    const meta: LiveConnectionMeta = { ip: opts.clientIp(request), userAgent: request.headers['user-agent'] ?? null };
    const live = new WsLiveSocket(socket, (err) => {
      log.error({ err }, 'graphql WebSocket message handling failed');
      socket.close(CloseCode.InternalServerError, internalError(err));
    });
    const closed = server.opened(live, meta);
    socket.once('close', (code, reason) => {
      if (pongWait) clearTimeout(pongWait);
      clearInterval(ping);
      void closed(code, String(reason));
    });
  });

  return {
    /** Closes every client (1001 going away) and the server. */
    async dispose(): Promise<void> {
      for (const client of wss.clients) client.close(1001, 'Going away');
      wss.removeAllListeners();
      await new Promise<void>((resolve, reject) => wss.close((err) => (err ? reject(err) : resolve())));
    },
  };
}
