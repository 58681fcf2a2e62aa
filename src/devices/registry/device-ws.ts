import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Metrics } from '../../http/metrics';
import { DEVICE_SUBPROTOCOL, type DeviceRegistry } from './device-registry';

export interface DeviceWsOptions {
  registry: DeviceRegistry;
  log: Logger;
  metrics?: Metrics;
  /**
   * Transport ceiling for one frame; `ws` closes the connection (1009) beyond it. The registry
   * refuses frames over its own, smaller limit with 4400 first. Default 64 KiB.
   */
  maxPayloadBytes?: number;
  /** Open device connections this node accepts at most; beyond, upgrades get 503. Default 50 000. */
  maxConnections?: number;
  /** The client address of an upgrade request (lib/client-address's, honouring TRUST_PROXY); default the socket's peer. */
  clientAddress?: (request: IncomingMessage) => string;
}

const uncorkSocket = (raw: Duplex) => raw.uncork();

/**
 * The `ws` adapter of the device channel at `/devices/ws`: accepts upgrades that offer the
 * `vigil-device.v1` subprotocol (others get 400), and hands each socket to the registry, which
 * runs the protocol. Thin on purpose: everything testable lives in the transport-free registry.
 */
export function createDeviceWsServer(opts: DeviceWsOptions) {
  const { registry, log, metrics } = opts;
  const maxConnections = opts.maxConnections ?? 50_000;
  const clientAddress = opts.clientAddress ?? ((request: IncomingMessage) => request.socket.remoteAddress ?? 'unknown');
  const sockets = new Set<WebSocket>();
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: opts.maxPayloadBytes ?? 64 * 1024,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(DEVICE_SUBPROTOCOL) ? DEVICE_SUBPROTOCOL : false),
  });

  wss.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    sockets.add(socket);
    metrics?.openWebSockets.inc({ endpoint: 'devices' });
    let handler: ((data: string, isBinary: boolean) => void) | undefined;
    // Frames sent in one turn of the event loop (the acks of one group commit) leave in one write.
    const raw = (socket as unknown as { _socket?: Duplex })._socket;
    const teardown = registry.open(
      {
        send: (frame) => {
          if (socket.readyState !== socket.OPEN) return;
          // The socket's own cork count, not a flag of ours: no per-connection state for it.
          if (raw && raw.writableCorked === 0) {
            raw.cork();
            process.nextTick(uncorkSocket, raw);
          }
          socket.send(frame);
        },
        close: (code, reason) => {
          if (socket.readyState === socket.OPEN || socket.readyState === socket.CONNECTING) socket.close(code, reason.slice(0, 120));
          // A peer that never answers the close handshake is cut off rather than held for 30 s.
          setTimeout(() => socket.terminate(), 2000).unref();
        },
        onMessage: (h) => {
          handler = h;
        },
      },
      { ip: clientAddress(request) },
    );
    socket.on('message', (data, isBinary) => {
      if (!handler) return;
      if (isBinary) return handler('', true);
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      handler(buf.toString('utf8'), false);
    });
    socket.on('error', (err) => log.debug({ err: err.message }, 'device socket error'));
    socket.once('close', () => {
      sockets.delete(socket);
      metrics?.openWebSockets.dec({ endpoint: 'devices' });
      void teardown();
    });
  });

  return {
    /** The upgrade handler for app.ts's `upgrades` map. */
    handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer) {
      const offered = String(request.headers['sec-websocket-protocol'] ?? '')
        .split(',')
        .map((p) => p.trim());
      if (!offered.includes(DEVICE_SUBPROTOCOL)) {
        socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nsubprotocol ${DEVICE_SUBPROTOCOL} required\n`);
        return;
      }
      if (sockets.size >= maxConnections) {
        socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 30\r\n\r\n');
        return;
      }
      wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request));
    },
    /** Open device sockets on this node. */
    size: () => sockets.size,
    /** Cuts every socket that is still open (after the registry has closed them with 1001) and closes the server. */
    async close() {
      for (const s of sockets) s.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
