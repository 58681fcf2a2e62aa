import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ConfirmResetDocument, LoginDocument, RegisterDocument, RequestResetDocument, type RegisterMutation } from '../generated/graphql';
import { expectData, STRONG_PASSWORD, type TestApp } from './harness';
import { readResetMessage, type CaughtMessage, type SmsCatcher, type SmtpCatcher } from './mail-catchers';

/** Shared by the password-reset test files. */
export const PUBLIC_URL = 'https://vigil.example';
export const THIRD_STRONG_PASSWORD = 'Saffron-Glacier-Anvil-52';
export const sha256 = (v: string) => createHash('sha256').update(v).digest('hex');
/** A 6-digit code that is not `code`. */
export const wrongOf = (code: string) => String((Number(code) + 1) % 1_000_000).padStart(6, '0');

export async function register(app: TestApp, login: { email?: string; phone?: string }, password = STRONG_PASSWORD): Promise<RegisterMutation['register']> {
  return expectData(await app.gql(RegisterDocument, { input: { ...login, password } })).register;
}

/** `requestAndRead(app, login)`: requests a reset and returns the message that reaches the login, with its code and token. */
export function resetReader(catchers: () => { mail: SmtpCatcher; sms: SmsCatcher }) {
  return async function requestAndRead(app: TestApp, login: string, catcher?: { waitForMessage: SmtpCatcher['waitForMessage'] }) {
    const { mail, sms } = catchers();
    const from = catcher ?? (login.includes('@') ? mail : sms);
    const seen = new Set<CaughtMessage>([...mail.messages, ...sms.messages]);
    assert.deepEqual(expectData(await app.gql(RequestResetDocument, { login })), { requestReset: { accepted: true } });
    const message = await from.waitForMessage((m) => m.to === login && !seen.has(m) && m.body.includes('/reset?token='));
    return { message, ...readResetMessage(message.body, PUBLIC_URL) };
  };
}

export const confirm = (app: TestApp, input: { token?: string; login?: string; code?: string; newPassword: string }) => app.gql(ConfirmResetDocument, { input });
export const loginWith = (app: TestApp, login: string, password: string) => app.gql(LoginDocument, { input: { login, password } });
