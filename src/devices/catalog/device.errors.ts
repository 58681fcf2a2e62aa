import { DomainError } from '../../lib/domain-error';

/**
 * Device-area failures. Visibility and permission failures use CommonError (NOT_FOUND, FORBIDDEN)
 * like every other area; a wrong step-up password is the accounts area's INVALID_CREDENTIALS.
 * - INVALID_VERIFICATION_CODE: wrong label code or unknown serial (deliberately the same).
 * - ALREADY_BOUND: the device is bound to another account (never says which).
 * - SERIAL_TAKEN: provisioning a serial that exists (the admin endpoint answers 409).
 */
export type DeviceErrorCode = 'INVALID_VERIFICATION_CODE' | 'ALREADY_BOUND' | 'SERIAL_TAKEN';

export class DeviceError extends DomainError<DeviceErrorCode> {
  readonly area = 'devices' as const;
  override name = 'DeviceError';
}
