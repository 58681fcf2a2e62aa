import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { hkdfSync, randomUUID } from 'node:crypto';
import { Lru } from '../lib/lru';
import { isUuid } from '../lib/validate';
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  importPKCS8,
  jwtVerify,
  SignJWT,
  type CryptoKey,
  type JWK,
  type KeyObject,
} from 'jose';

export const TOKEN_ISSUER = 'vigil';
export const TOKEN_AUDIENCE = 'vigil-api';

export interface AccessClaims {
  readonly userId: string;
  readonly sessionId: string;
  readonly jti: string;
}

export interface AccessTokenSigner {
  sign(userId: string, sessionId: string): Promise<{ token: string; expiresAt: Date }>;
  /** Returns the claims of a valid token, or null for anything else (bad signature, alg, exp, iss, aud). */
  verify(token: string): Promise<AccessClaims | null>;
  kid: string;
}

type Key = CryptoKey | KeyObject;

export interface SigningKey {
  privateKey: Key;
  publicKey: Key;
  kid: string;
  /** The Ed25519 private seed; only for deriving other keys (deriveSecretKey). */
  seed: Buffer;
}

/**
 * Ed25519 key from `JWT_PRIVATE_KEY` (JWK JSON or PKCS8 PEM), else from `<dataDir>/jwt-key.json`,
 * generated (mode 0600) on first start. A ':memory:' data dir gets a throwaway key.
 */
export async function loadSigningKey(configured: string | undefined, dataDir: string): Promise<SigningKey> {
  let jwk: JWK;
  if (configured) {
    if (configured.trim().startsWith('{')) {
      jwk = JSON.parse(configured) as JWK;
    } else {
      const key = await importPKCS8(configured, 'EdDSA', { extractable: true });
      jwk = await exportJWK(key);
    }
  } else {
    const file = dataDir === ':memory:' ? undefined : path.join(dataDir, 'jwt-key.json');
    if (file && existsSync(file)) {
      jwk = JSON.parse(readFileSync(file, 'utf8')) as JWK;
    } else {
      const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
      jwk = await exportJWK(pair.privateKey);
      if (file) {
        mkdirSync(dataDir, { recursive: true });
        writeFileSync(file, JSON.stringify(jwk), { mode: 0o600 });
        chmodSync(file, 0o600);
      }
    }
  }
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || !jwk.d) throw new Error('JWT_PRIVATE_KEY must be an Ed25519 private key');
  const { d: _d, ...publicJwk } = jwk;
  const privateKey = await importJWK({ ...jwk, alg: 'EdDSA' }, 'EdDSA');
  const publicKey = await importJWK({ ...publicJwk, alg: 'EdDSA' }, 'EdDSA');
  const kid = await calculateJwkThumbprint(publicJwk);
  return { privateKey: privateKey as Key, publicKey: publicKey as Key, kid, seed: Buffer.from(jwk.d, 'base64url') };
}

/**
 * A 256-bit key for `purpose` (e.g. encrypting TOTP secrets), derived with HKDF-SHA256 from the
 * signing key's private seed. Every node that shares JWT_PRIVATE_KEY (as a cluster must) derives
 * the same key; replacing the signing key replaces every derived key too.
 */
export function deriveSecretKey(key: Pick<SigningKey, 'seed'>, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', key.seed, 'vigil-derived-keys', purpose, 32));
}

/** Verified tokens remembered by default: enough for every busy caller of one node, a few MB at most. */
export const VERIFIED_TOKENS_CACHED = 4096;

interface VerifiedToken {
  claims: AccessClaims;
  /** `exp` and `nbf` in seconds, as jose compares them. */
  exp: number;
  nbf: number | undefined;
}

/**
 * `verifiedCacheSize` bounds a memory of tokens whose signature and claims already checked out
 * (keyed by the whole token string, so any other string verifies afresh). It skips only the
 * signature check: the lifetime is compared with the clock on every hit, and whether the session
 * is still open is the caller's check (auth.service reads the session row on every request), so
 * a revoked session is refused at once however long its token is remembered. 0 turns it off.
 */
export function accessTokenSigner(
  key: { privateKey: Key; publicKey: Key; kid: string },
  ttlSeconds: number,
  now: () => Date,
  options: { verifiedCacheSize?: number } = {},
): AccessTokenSigner {
  const cacheSize = options.verifiedCacheSize ?? VERIFIED_TOKENS_CACHED;
  const verified = cacheSize > 0 ? new Lru<VerifiedToken>(cacheSize) : null;
  return {
    kid: key.kid,
    async sign(userId, sessionId) {
      const iat = Math.floor(now().getTime() / 1000);
      const exp = iat + ttlSeconds;
      const token = await new SignJWT({ sid: sessionId })
        .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'JWT' })
        .setIssuer(TOKEN_ISSUER)
        .setAudience(TOKEN_AUDIENCE)
        .setSubject(userId)
        .setJti(randomUUID())
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(key.privateKey);
      return { token, expiresAt: new Date(exp * 1000) };
    },
    async verify(token) {
      const hit = verified?.get(token);
      if (hit) {
        // jose's own comparisons (no clock tolerance): valid while exp > now >= nbf.
        const nowS = Math.floor(now().getTime() / 1000);
        if (hit.exp > nowS && (hit.nbf === undefined || hit.nbf <= nowS)) return hit.claims;
        return null;
      }
      try {
        const { payload, protectedHeader } = await jwtVerify(token, key.publicKey, {
          algorithms: ['EdDSA'],
          issuer: TOKEN_ISSUER,
          audience: TOKEN_AUDIENCE,
          currentDate: now(),
          requiredClaims: ['sub', 'exp', 'jti', 'sid'],
        });
        if (protectedHeader.kid !== key.kid) return null;
        // Claims are read as ids: anything but UUIDs does not check out (and never reaches the database).
        if (typeof payload.sid !== 'string' || !isUuid(payload.sid) || !payload.sub || !isUuid(payload.sub) || !payload.jti) return null;
        const claims: AccessClaims = Object.freeze({ userId: payload.sub, sessionId: payload.sid, jti: payload.jti });
        verified?.set(token, { claims, exp: payload.exp!, nbf: payload.nbf });
        return claims;
      } catch {
        return null;
      }
    },
  };
}
