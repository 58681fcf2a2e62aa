import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { waitFor } from './harness';

/** A message as it reached the catcher. */
export interface CaughtMessage {
  channel: 'email' | 'sms';
  to: string;
  subject: string;
  body: string;
}

interface Catcher {
  readonly messages: CaughtMessage[];
  /** Resolves with the first caught message (old or new) matching `predicate`; fails after `timeoutMs`. */
  waitForMessage(predicate: (m: CaughtMessage) => boolean, timeoutMs?: number): Promise<CaughtMessage>;
  stop(): Promise<void>;
}

function catcherBase(messages: CaughtMessage[]): Pick<Catcher, 'messages' | 'waitForMessage'> {
  return {
    messages,
    waitForMessage: (predicate, timeoutMs = 10_000) => waitFor(() => messages.find(predicate), timeoutMs, 'a caught message'),
  };
}

/** Decodes a single-part text mail's body (7bit, 8bit, quoted-printable or base64) and its headers. */
function parseMail(raw: string): { headers: Map<string, string>; body: string } {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const headers = new Map<string, string>();
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  let body = raw.slice(split + 4).replace(/\r\n$/, '');
  const encoding = (headers.get('content-transfer-encoding') ?? '7bit').toLowerCase();
  if (encoding === 'quoted-printable') {
    const bytes = body.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    body = Buffer.from(bytes, 'latin1').toString('utf8');
  } else if (encoding === 'base64') {
    body = Buffer.from(body, 'base64').toString('utf8');
  }
  return { headers, body: body.replace(/\r\n/g, '\n') };
}

export interface SmtpCatcher extends Catcher {
  readonly port: number;
  /** `smtp://127.0.0.1:<port>` for SMTP_URL. */
  readonly url: string;
  /** Stops listening (the app sees connection refused) until `up()`. */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
}

/** A real SMTP server (smtp-server) on 127.0.0.1, port 0, keeping every mail it accepts. */
export async function startSmtpCatcher(): Promise<SmtpCatcher> {
  const messages: CaughtMessage[] = [];
  const make = () =>
    new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      logger: false,
      closeTimeout: 1000,
      onData(stream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const { headers, body } = parseMail(Buffer.concat(chunks).toString('latin1'));
          for (const rcpt of session.envelope.rcptTo) {
            messages.push({ channel: 'email', to: rcpt.address, subject: headers.get('subject') ?? '', body });
          }
          callback();
        });
      },
    });
  const listen = (s: SMTPServer, port: number) =>
    new Promise<number>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve((s.server.address() as AddressInfo).port));
    });
  const close = (s: SMTPServer) => new Promise<void>((resolve) => s.close(() => resolve()));

  let server: SMTPServer | undefined = make();
  const port = await listen(server, 0);
  return {
    ...catcherBase(messages),
    port,
    url: `smtp://127.0.0.1:${port}`,
    async down() {
      if (server) await close(server);
      server = undefined;
    },
    async up() {
      if (server) return;
      server = make();
      await listen(server, port);
    },
    async stop() {
      if (server) await close(server);
      server = undefined;
    },
  };
}

export interface SmsCatcher extends Catcher {
  /** SMS_WEBHOOK_URL for the app. */
  readonly url: string;
  /** Every POST received, accepted or not. */
  readonly requests: Array<{ to: string; body: string; status: number }>;
  /** Answers the next `count` requests with `status` (a failure) instead of 200. */
  failNext(count: number, status?: number): void;
}

/** A real HTTP listener for the SMS webhook on 127.0.0.1, port 0: POST `{"to","body"}`. */
export async function startSmsCatcher(): Promise<SmsCatcher> {
  const messages: CaughtMessage[] = [];
  const requests: SmsCatcher['requests'] = [];
  let failures: { count: number; status: number } = { count: 0, status: 500 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let payload: { to?: unknown; body?: unknown } = {};
      try {
        payload = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof payload;
      } catch {
        // answered 400 below
      }
      const valid = req.method === 'POST' && req.headers['content-type']?.startsWith('application/json') && typeof payload.to === 'string' && typeof payload.body === 'string';
      let status = valid ? 200 : 400;
      if (valid && failures.count > 0) {
        failures.count--;
        status = failures.status;
      }
      requests.push({ to: String(payload.to), body: String(payload.body), status });
      if (status === 200) messages.push({ channel: 'sms', to: payload.to as string, subject: '', body: payload.body as string });
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: status === 200 }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    ...catcherBase(messages),
    url: `http://127.0.0.1:${port}/sms`,
    requests,
    failNext(count, status = 500) {
      failures = { count, status };
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The 6-digit code and the link token of a reset message, as a user would read them. */
export function readResetMessage(body: string, publicUrl: string): { code: string; token: string; link: string } {
  const code = /\b(\d{6})\b/.exec(body)?.[1];
  const escaped = publicUrl.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const link = new RegExp(`${escaped}/reset\\?token=([A-Za-z0-9_-]+)`).exec(body);
  if (!code || !link) throw new Error(`no code or link in message: ${body}`);
  return { code, token: link[1]!, link: link[0] };
}
