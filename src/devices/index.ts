// The devices area: the catalog (provisioning, binding, shares, transfer, who may see a device),
// the connection registry (device WebSocket door, heartbeats, commands) and the ISAPI alarm door.
export * from './catalog/index';
export { createDeviceRegistry, type DeviceRegistry } from './registry/device-registry';
export { createDeviceWsServer } from './registry/device-ws';
export { pruneCommands as pruneDeviceCommands } from './registry/registry.store';
export { isapiIngest } from './isapi/isapi-ingest';
