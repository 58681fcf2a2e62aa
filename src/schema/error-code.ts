import { registerEnumType } from 'type-graphql';
import { AccountError } from '../accounts/account.errors';
import { DeviceError } from '../devices/catalog/device.errors';
import { CommonError, DomainError, assertUnreachable } from '../lib/domain-error';

/** The contract's ErrorCode: every error leaves the API as one of these. */
export enum ErrorCode {
  UNAUTHENTICATED = 'UNAUTHENTICATED',
  FORBIDDEN = 'FORBIDDEN',
  NOT_FOUND = 'NOT_FOUND',
  BAD_USER_INPUT = 'BAD_USER_INPUT',
  WEAK_PASSWORD = 'WEAK_PASSWORD',
  INVALID_CREDENTIALS = 'INVALID_CREDENTIALS',
  TOTP_REQUIRED = 'TOTP_REQUIRED',
  INVALID_RESET_CODE = 'INVALID_RESET_CODE',
  RATE_LIMITED = 'RATE_LIMITED',
  DEVICE_ALREADY_BOUND = 'DEVICE_ALREADY_BOUND',
  INVALID_VERIFICATION_CODE = 'INVALID_VERIFICATION_CODE',
  QUERY_TOO_COMPLEX = 'QUERY_TOO_COMPLEX',
  INTERNAL = 'INTERNAL',
}

registerEnumType(ErrorCode, { name: 'ErrorCode', description: 'Machine-readable error codes, found in `extensions.code` of every error.' });

function commonCode(e: CommonError): ErrorCode {
  switch (e.code) {
    case 'BAD_INPUT':
      return ErrorCode.BAD_USER_INPUT;
    case 'UNAUTHENTICATED':
      return ErrorCode.UNAUTHENTICATED;
    case 'FORBIDDEN':
      return ErrorCode.FORBIDDEN;
    case 'NOT_FOUND':
      return ErrorCode.NOT_FOUND;
    case 'RATE_LIMITED':
      return ErrorCode.RATE_LIMITED;
    case 'TOO_COMPLEX':
      return ErrorCode.QUERY_TOO_COMPLEX;
    default:
      return assertUnreachable(e.code);
  }
}

function accountCode(e: AccountError): ErrorCode {
  switch (e.code) {
    case 'INVALID_CREDENTIALS':
      return ErrorCode.INVALID_CREDENTIALS;
    case 'TOTP_REQUIRED':
      return ErrorCode.TOTP_REQUIRED;
    case 'WEAK_PASSWORD':
      return ErrorCode.WEAK_PASSWORD;
    case 'INVALID_RESET_CODE':
      return ErrorCode.INVALID_RESET_CODE;
    case 'LOGIN_TAKEN':
      return ErrorCode.BAD_USER_INPUT;
    default:
      return assertUnreachable(e.code);
  }
}

function deviceCode(e: DeviceError): ErrorCode {
  switch (e.code) {
    case 'INVALID_VERIFICATION_CODE':
      return ErrorCode.INVALID_VERIFICATION_CODE;
    case 'ALREADY_BOUND':
      return ErrorCode.DEVICE_ALREADY_BOUND;
    case 'SERIAL_TAKEN':
      return ErrorCode.BAD_USER_INPUT;
    default:
      return assertUnreachable(e.code);
  }
}

/** Every area's error class: a new area joins here and in the switch below, or the build breaks. */
type AreaError = CommonError | AccountError | DeviceError;

function isAreaError(error: DomainError): error is AreaError {
  return error instanceof CommonError || error instanceof AccountError || error instanceof DeviceError;
}

/** Maps a service error to the contract's ErrorCode; anything that is not an area's error is INTERNAL. */
export function toErrorCode(error: unknown): ErrorCode {
  if (!(error instanceof DomainError) || !isAreaError(error)) return ErrorCode.INTERNAL;
  switch (error.area) {
    case 'common':
      return commonCode(error);
    case 'accounts':
      return accountCode(error);
    case 'devices':
      return deviceCode(error);
    default:
      return assertUnreachable(error);
  }
}
