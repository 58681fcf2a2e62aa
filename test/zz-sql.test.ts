import { test } from 'node:test';
import { sql, eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/pglite';
import { tables } from '../src/db/index';
test('sql', () => {
  const db = drizzle.mock({ casing: 'snake_case' });
  const { devices, deviceCommands } = tables;
  const q = db.update(devices).set({ online: true }).where(eq(devices.id, 'x')).returning({ c: sql<boolean>`exists (select 1 from ${deviceCommands} where ${deviceCommands.deviceId} = ${devices.id})` });
  console.log(q.toSQL().sql);
});
