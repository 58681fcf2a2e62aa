import type { ApiKeyService } from './accounts/api-key.service';
import type { AuthService } from './accounts/auth.service';
import type { PasswordResetService } from './accounts/password-reset.service';
import type { TotpService } from './accounts/totp.service';
import type { ClaimService } from './devices/catalog/claim.service';
import type { DeviceService } from './devices/catalog/device.service';
import type { AlarmService } from './streams/alarms/alarm.service';
import type { LiveService } from './streams/live/live.service';

/**
 * Every service the API reaches, built once per app in src/app.ts (the composition root) and
 * handed to resolvers through the context.
 */
export interface Services {
  auth: AuthService;
  totp: TotpService;
  apiKeys: ApiKeyService;
  passwordReset: PasswordResetService;
  devices: DeviceService;
  /** Reclaiming second-hand devices (deviceClaims, claimDevice, cancelClaim). */
  claims: ClaimService;
  alarms: AlarmService;
  /** The deviceStatus and alarms subscriptions. */
  live: LiveService;
}
