import { DomainError } from '../lib/domain-error';

export type AccountErrorCode =
  | 'INVALID_CREDENTIALS'
  | 'TOTP_REQUIRED'
  | 'WEAK_PASSWORD'
  | 'INVALID_RESET_CODE'
  | 'LOGIN_TAKEN';

export class AccountError extends DomainError<AccountErrorCode> {
  readonly area = 'accounts' as const;
  override name = 'AccountError';
}
