export * from './accounts';
export * from './devices';
export * from './alarms';
export * from './claims';
