export { openDb, migrationsFolder, type Db, type DbHandle, type OpenDbOptions } from './client';
export * as tables from './schema/index';
export { sqlState, isUniqueViolation, isForeignKeyViolation, isSerializationFailure } from './pg-errors';
