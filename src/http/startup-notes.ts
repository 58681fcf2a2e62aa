import path from 'node:path';
import type { Config } from '../config';
import { adminTokenFile } from '../lib/admin-token';

/**
 * What a person who just ran `npm start` needs to know, in plain words: where the console and the
 * explorer are, where mails and SMS go, and where the operator token is. One line each.
 */
export function startupNotes(config: Config, url: string): string[] {
  const outbox = config.dataDir === ':memory:' ? 'the log only (DATA_DIR is :memory:)' : `the log and the folder ${path.join(config.dataDir, 'outbox')}`;
  const lines = [
    config.console ? `Web console: ${url}/ (password reset page: ${url}/reset)` : 'Web console: off (CONSOLE=off)',
    `API explorer: ${url}/graphiql; GraphQL endpoint: ${url}/graphql`,
    `Mail: ${config.smtpUrl ? 'sent through SMTP_URL' : `no SMTP_URL set, so mails go to ${outbox}`}`,
    `SMS: ${config.smsWebhookUrl ? 'posted to SMS_WEBHOOK_URL' : `no SMS_WEBHOOK_URL set, so SMS go to ${outbox}`}`,
    `Admin token (for /admin and \`vigil devices provision\`): ${
      config.adminToken ? 'from ADMIN_TOKEN' : config.dataDir === ':memory:' ? 'random, in memory only' : `in the file ${adminTokenFile(config.dataDir)}`
    }`,
  ];
  if (config.publicUrl !== url && !config.publicUrl.startsWith('http://localhost:')) lines.push(`Links in mails point at PUBLIC_URL: ${config.publicUrl}`);
  return lines;
}
