// A minimal GraphQL-over-HTTP endpoint on node:http for the peers: POST /graphql with a JSON body,
// everything else 404. Prints `READY <url>` for the harness and stops on SIGTERM.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GraphqlBody {
  query: string;
  variables?: Record<string, unknown>;
  operationName?: string;
}

export type GraphqlHandler = (body: GraphqlBody, req: IncomingMessage) => Promise<{ status: number; json: string }>;

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]!.toString() : Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

export function serveGraphql(handler: GraphqlHandler): void {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'POST' || req.url !== '/graphql') {
      res.writeHead(404).end();
      return;
    }
    readBody(req)
      .then(async (text) => {
        const { status, json } = await handler(JSON.parse(text) as GraphqlBody, req);
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(json) }).end(json);
      })
      .catch((err: unknown) => {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ message: String(err) }] }));
      });
  });
  listenAndAnnounce(server);
}

export function listenAndAnnounce(server: import('node:http').Server): void {
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo;
    console.log(`READY http://127.0.0.1:${port}`);
  });
  process.on('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
