import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createEventBus } from '../src/streams/bus/event-bus';
import { waitFor } from './helpers/harness';

test('listen hands every event of its topic to the handler in order, survives a handler that throws, and stops when told', async () => {
  const bus = createEventBus();
  const got: string[] = [];
  const warnings: string[] = [];
  const stop = bus.listen(
    'device.command',
    (p) => {
      if (p.deviceId === 'boom') throw new Error('handler failed');
      got.push(p.deviceId);
    },
    (_fields, message) => warnings.push(message),
  );
  const other: string[] = [];
  const stopOther = bus.listen('device.replaced', (p) => other.push(p.connectionId));
  for (const deviceId of ['a', 'boom', 'b']) bus.publish('device.command', { deviceId });
  bus.publish('device.replaced', { deviceId: 'x', connectionId: 'c1' });
  await waitFor(() => got.length === 2 && other.length === 1, 2000, 'the events');
  assert.deepEqual(got, ['a', 'b']);
  assert.deepEqual(warnings, ['bus handler failed']);
  assert.deepEqual(other, ['c1']);

  await stop();
  await stop(); // idempotent
  bus.publish('device.command', { deviceId: 'late' });
  bus.publish('device.replaced', { deviceId: 'x', connectionId: 'c2' });
  await waitFor(() => other.length === 2, 2000, 'the other listener still running');
  assert.deepEqual(got, ['a', 'b'], 'nothing after stop');
  await stopOther();
});
