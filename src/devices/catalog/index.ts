export { DeviceError, type DeviceErrorCode } from './device.errors';
export {
  DEVICE_ROLES,
  DEVICE_STATUSES,
  PERMISSIONS,
  statusOf,
  type DeviceRole,
  type DeviceStatus,
  type DeviceView,
  type GranteeView,
  type Permission,
  type ShareView,
  type UnbindOutcome,
} from './device.model';
export {
  createDeviceService,
  noDeviceCommands,
  MAX_BULK_UNBIND,
  type BindingHooks,
  type DeviceCommands,
  type DeviceConnection,
  type DeviceEdge,
  type DeviceService,
  type DeviceServiceDeps,
} from './device.service';
export { createDeviceLoaders, createSharedDeviceReads, type DeviceLoaders, type DeviceLoaderOptions, type SharedDeviceReads } from './device-loaders';
export { createProvisioningService, deviceKeyHash, ingestTokenHash, serialSchema, type ProvisionedDevice, type ProvisioningService } from './provisioning';
export { createClaimService, type ClaimService, type ClaimServiceDeps } from './claim.service';
export { CLAIM_STATUSES, type ClaimStatus, type ClaimView } from './claim.model';
