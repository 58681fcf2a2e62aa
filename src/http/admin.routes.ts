import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { DeviceError } from '../devices/catalog/device.errors';
import type { ProvisioningService } from '../devices/catalog/provisioning';
import { CommonError } from '../lib/domain-error';
import type { LimiterFactory } from '../lib/rate-limit';
import { safeEqual, sha256 } from '../lib/secrets';

export interface AdminRoutesDeps {
  token: string;
  provisioning: ProvisioningService;
  limiters: LimiterFactory;
  log: Logger;
}

/** Wrong admin tokens allowed per client IP per 15 minutes; after that even the right one waits. */
export const ADMIN_AUTH_FAILURES = 10;

const send = (reply: FastifyReply, status: number, error: string, message: string) =>
  reply.code(status).header('cache-control', 'no-store').send({ error, message });

/**
 * The operator endpoint (DEVICES.md §1): `POST /admin/devices` with `Authorization: Bearer <admin
 * token>` provisions a device. 201 with its secrets (shown once), 400 on a bad body, 401 without
 * a valid token (checked before the body is read), 409 on a repeated serial, 429 after
 * ADMIN_AUTH_FAILURES wrong tokens from one IP in 15 minutes.
 */
export function registerAdminRoutes(fastify: FastifyInstance, deps: AdminRoutesDeps) {
  const expected = sha256(deps.token);
  const failures = deps.limiters.create('admin-auth-ip', ADMIN_AUTH_FAILURES, 15 * 60);
  const log = deps.log.child({ component: 'admin' });

  async function authenticate(request: FastifyRequest, reply: FastifyReply) {
    const wait = await failures.blockedFor(request.ip);
    if (wait) {
      reply.header('retry-after', String(wait));
      return send(reply, 429, 'rate_limited', `Too many failed attempts; retry in ${wait} s`);
    }
    const header = request.headers.authorization;
    const bearer = typeof header === 'string' ? /^Bearer\s+(\S{1,512})$/i.exec(header.trim())?.[1] : undefined;
    // Hashing both sides gives equal lengths, so the comparison is constant-time whatever was sent.
    if (!bearer || !safeEqual(sha256(bearer), expected)) {
      await failures.consume(request.ip);
      log.warn({ ip: request.ip, withToken: !!bearer }, 'admin request with a missing or wrong token');
      reply.header('www-authenticate', 'Bearer');
      return send(reply, 401, 'unauthorized', 'A valid admin token is required (Authorization: Bearer <token>)');
    }
  }

  fastify.post('/admin/devices', { onRequest: authenticate, bodyLimit: 16 * 1024 }, async (request, reply) => {
    try {
      const device = await deps.provisioning.provision(request.body ?? {});
      log.info({ serial: device.serial }, 'device provisioned');
      return reply.code(201).header('cache-control', 'no-store').send(device);
    } catch (e) {
      if (e instanceof DeviceError && e.code === 'SERIAL_TAKEN') return send(reply, 409, 'serial_taken', e.message);
      if (e instanceof CommonError && e.code === 'BAD_INPUT') return send(reply, 400, 'bad_request', e.message);
      throw e;
    }
  });
}
