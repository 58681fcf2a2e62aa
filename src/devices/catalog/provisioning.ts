import { z } from 'zod';
import { hashPassword, verifyPassword } from '../../accounts/password';
import type { Db } from '../../db/index';
import { parseInput } from '../../lib/validate';
import { randomLetters, randomToken, sha256 } from '../../lib/secrets';
import { DeviceError } from './device.errors';
import { insertDevice } from './device.store';

/** Serials as printed on labels: 1..64 of letters, digits, `-`, `_` and `.`. Case is kept and significant. */
export const serialSchema = z
  .string()
  .trim()
  .min(1, 'required')
  .max(64, 'at most 64 characters')
  .regex(/^[A-Za-z0-9._-]+$/, 'only letters, digits, "-", "_" and "."');

const provisionInput = z.strictObject({
  serial: serialSchema,
  model: z.string().trim().min(1, 'must not be empty').max(64, 'at most 64 characters').nullish(),
  channels: z.number().int('must be an integer').min(1, 'at least 1').max(256, 'at most 256').default(1),
});

export interface ProvisionedDevice {
  serial: string;
  /** 6 upper-case letters, printed on the label; needed to bind the device. */
  verificationCode: string;
  /** The device's secret for the WebSocket channel (`hello.key`). */
  deviceKey: string;
  /** `/isapi/events/<ingestToken>`: the HTTP alarm host path for ISAPI devices. */
  ingestPath: string;
}

/** Hashes of the device secrets, as stored: the only form in which the cloud keeps them. */
export const deviceKeyHash = (deviceKey: string) => sha256(deviceKey);
export const ingestTokenHash = (ingestToken: string) => sha256(ingestToken);

/**
 * The label code is low-entropy (26^6 ≈ 3·10^8), so it gets argon2id like a password: a leaked
 * table does not give the codes away. The device key and the ingest token are 256-bit random
 * strings, for which SHA-256 is enough. Through the server's one bounded hasher, like passwords;
 * throws RATE_LIMITED when its queue is full.
 */
export const hashLabelCode = (code: string) => hashPassword(code);

/**
 * Checks a label code against its hash, or against a dummy hash when `hash` is null (unknown
 * serial), so both cost the same argon2 work. Throws only RATE_LIMITED, when the hash queue is full.
 */
export const verifyLabelCode = (hash: string | null, code: string) => verifyPassword(hash, code);

export interface ProvisioningDeps {
  db: Db;
  clock: () => Date;
}

/** The factory side: registers units before they ship (POST /admin/devices, `vigil devices provision`). */
export function createProvisioningService(deps: ProvisioningDeps) {
  return {
    /**
     * Registers a device and returns its secrets, shown this once. Throws BAD_INPUT for a bad body
     * and SERIAL_TAKEN when the serial exists (never an overwrite).
     */
    async provision(body: unknown): Promise<ProvisionedDevice> {
      const v = parseInput(provisionInput, body);
      const verificationCode = randomLetters(6);
      const deviceKey = randomToken(32);
      const ingestToken = randomToken(32);
      const row = await insertDevice(deps.db, {
        serial: v.serial,
        model: v.model ?? null,
        channels: v.channels,
        verificationCodeHash: await hashLabelCode(verificationCode),
        deviceKeyHash: deviceKeyHash(deviceKey),
        ingestTokenHash: ingestTokenHash(ingestToken),
        provisionedAt: deps.clock(),
      });
      if (!row) throw new DeviceError('SERIAL_TAKEN', `Serial ${v.serial} is already provisioned`);
      return { serial: v.serial, verificationCode, deviceKey, ingestPath: `/isapi/events/${ingestToken}` };
    },
  };
}

export type ProvisioningService = ReturnType<typeof createProvisioningService>;
