import type { IncomingMessage } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';
import proxyAddr from '@fastify/proxy-addr';

/**
 * The client address of a raw request (a WebSocket upgrade), by the rule Fastify's `trustProxy`
 * applies to HTTP requests: without TRUST_PROXY the socket's peer; with it (every hop trusted,
 * as Fastify's `trustProxy: true`), the furthest address of `X-Forwarded-For`. Both doors thus
 * see the same address for the same client.
 */
export function clientAddressOf(trustProxy: boolean): (request: IncomingMessage) => string {
  const trust = trustProxy ? () => true : () => false;
  return (request) => {
    try {
      return proxyAddr(request, trust) || 'unknown';
    } catch {
      return request.socket.remoteAddress ?? 'unknown';
    }
  };
}

/**
 * The key a limit counts a client address under: an IPv4 address as is (also when written as
 * IPv4-mapped IPv6), an IPv6 address by its /64, since one subscriber usually holds a whole /64
 * and could otherwise step to a fresh address for every attempt.
 */
export function sourceKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped && isIPv4(mapped[1]!)) return mapped[1]!;
  if (!isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.split('%')[0]!.split('::') as [string, string?];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g || '0', 16).toString(16))
    .join(':')}::/64`;
}
