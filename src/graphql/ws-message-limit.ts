import type { WebSocket } from 'ws';

/** Close code for a message flood (policy violation). */
export const FLOOD_CLOSE_CODE = 1008;

/**
 * graphql-ws has no message limit of its own: a socket that sends more than `perSecond` messages
 * within one second is closed with 1008 (policy violation).
 */
export function limitMessageRate(socket: WebSocket, perSecond: number, now: () => number = Date.now): void {
  let windowStart = now();
  let messages = 0;
  socket.on('message', () => {
    const t = now();
    if (t - windowStart >= 1000) {
      windowStart = t;
      messages = 0;
    }
    if (++messages > perSecond) socket.close(FLOOD_CLOSE_CODE, 'Too many messages');
  });
}
