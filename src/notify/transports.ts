import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type { Logger } from 'pino';
import type { Channel, ClaimedMessage } from './outbox';

/** Sends one message or throws; a throw makes the delivery worker retry later. */
export interface Transport {
  readonly name: string;
  send(message: ClaimedMessage): Promise<void>;
  close?(): void;
}

export type Transports = Record<Channel, Transport>;

/** SMTP through nodemailer. `url` is `smtp://` or `smtps://`, query parameters become nodemailer options. */
export function smtpTransport(url: string, from: string): Transport {
  const transporter = nodemailer.createTransport({
    url,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
  });
  return {
    name: 'smtp',
    async send(m) {
      await transporter.sendMail({ from, to: m.recipient, subject: m.subject, text: m.body });
    },
    close: () => transporter.close(),
  };
}

/** SMS as a JSON POST of `{"to","body"}`; any non-2xx answer or a timeout is a failure. */
export function smsWebhookTransport(url: string, timeoutMs = 10_000): Transport {
  return {
    name: 'sms-webhook',
    async send(m) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to: m.recipient, body: m.body }),
        signal: AbortSignal.timeout(timeoutMs),
        redirect: 'error',
      });
      await res.body?.cancel();
      if (!res.ok) throw new Error(`SMS webhook answered HTTP ${res.status}`);
    },
  };
}

/**
 * The fallback when a channel has no transport configured: writes the message to
 * `<dataDir>/outbox/<id>-<kind>.txt` (mode 0600) and logs the path, so a newcomer running
 * `npm start` can open the reset mail. With `dataDir` ':memory:' nothing is written.
 * The body (it holds reset codes) is logged only outside production.
 */
export function fileTransport(opts: { dataDir: string; log: Logger; production: boolean }): Transport {
  const dir = opts.dataDir === ':memory:' ? undefined : path.join(opts.dataDir, 'outbox');
  return {
    name: 'file',
    async send(m) {
      let file: string | undefined;
      if (dir) {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        file = path.join(dir, `${m.id}-${m.kind.replace(/[^a-z0-9-]/gi, '_')}.txt`);
        const text = `Channel: ${m.channel}\nTo: ${m.recipient}\nSubject: ${m.subject}\n\n${m.body}\n`;
        await writeFile(file, text, { mode: 0o600 });
        await chmod(file, 0o600); // mode applies only on creation; a re-send overwrites
      }
      opts.log.info(
        { outboxId: m.id, kind: m.kind, channel: m.channel, to: m.recipient, file, ...(opts.production ? {} : { body: m.body }) },
        `no ${m.channel === 'email' ? 'SMTP_URL' : 'SMS_WEBHOOK_URL'} configured: message ${file ? 'written to file' : 'logged only'}`,
      );
    },
  };
}

export interface TransportConfig {
  smtpUrl: string | undefined;
  mailFrom: string;
  smsWebhookUrl: string | undefined;
  dataDir: string;
  production: boolean;
}

/** One transport per channel from the configuration; the file fallback for what is not configured. */
export function transportsFor(config: TransportConfig, log: Logger): Transports {
  const fallback = fileTransport({ dataDir: config.dataDir, log, production: config.production });
  return {
    email: config.smtpUrl ? smtpTransport(config.smtpUrl, config.mailFrom) : fallback,
    sms: config.smsWebhookUrl ? smsWebhookTransport(config.smsWebhookUrl) : fallback,
  };
}
