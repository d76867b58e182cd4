/**
 * Long-term Ed25519 identities for active mode over the service. Browser-safe (WebCrypto / @noble
 * through the injected CryptoProvider); the client and the server both import it, so it
 * lives in its own layer below both.
 *
 * - An identity is a 32-byte Ed25519 seed; its public key is what tokens, directories and
 *   certificates name.
 * - At hello the client proves it holds the key: it signs `helloTranscript(challenge, token, key)`.
 * - An identity certificate `sc1.<payload>.<signature>` is an issuer's Ed25519 signature on
 *   `{ clientId, identityKey, expiresAt }`; clients that pin the issuer's public key check every
 *   peer's certificate, so the aggregation server cannot substitute identity keys.
 */
import { defaultCrypto } from '#crypto-default';
import type { CryptoProvider } from '../crypto/provider.js';
import { cryptoRng } from '../rng.js';
import { unhex } from '../bytes.js';

export const IDENTITY_KEY_BYTES = 32;
const IDENTITY_SEED_BYTES = 32;
export const NONCE_BYTES = 32;
const SIGNATURE_BYTES = 64;
const CERT_PREFIX = 'sc1';
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/** A fresh 32-byte Ed25519 identity seed from the platform CSPRNG. Keep it secret. */
export function generateIdentity(): Uint8Array {
  return cryptoRng(IDENTITY_SEED_BYTES);
}

/** The Ed25519 public key (32 bytes) of an identity seed. */
export async function identityPublicKey(seed: Uint8Array, crypto: CryptoProvider = defaultCrypto): Promise<Uint8Array> {
  if (!(seed instanceof Uint8Array) || seed.length !== IDENTITY_SEED_BYTES) throw new RangeError('identity must be a 32-byte Ed25519 seed');
  return (await crypto.ed25519(seed)).publicKey;
}

/**
 * The bytes a client signs at hello:
 * "secagg/v1 hello\0" ‖ u32be(version) ‖ nonce ‖ u16be(len(serverId)) ‖ serverId ‖ SHA-256(token) ‖ identityKey.
 * Binding the server's fresh nonce makes a recorded hello useless; binding the token and the key
 * ties the proof to this credential.
 */
export async function helloTranscript(
  args: { version: number; nonce: Uint8Array; serverId: string; token: string; identityKey: Uint8Array },
  crypto: CryptoProvider = defaultCrypto,
): Promise<Uint8Array> {
  const label = enc.encode('secagg/v1 hello\0');
  const sid = enc.encode(args.serverId);
  if (sid.length > 0xffff) throw new RangeError('serverId is too long');
  const tokenHash = await crypto.sha256(enc.encode(args.token));
  const out = new Uint8Array(label.length + 4 + args.nonce.length + 2 + sid.length + tokenHash.length + args.identityKey.length);
  const view = new DataView(out.buffer);
  let o = 0;
  out.set(label, o);
  o += label.length;
  view.setUint32(o, args.version >>> 0);
  o += 4;
  out.set(args.nonce, o);
  o += args.nonce.length;
  view.setUint16(o, sid.length);
  o += 2;
  out.set(sid, o);
  o += sid.length;
  out.set(tokenHash, o);
  o += tokenHash.length;
  out.set(args.identityKey, o);
  return out;
}

export interface CertificateClaims {
  /** The identity's name (the same string as the token's clientId). */
  readonly clientId: string;
  /** Ed25519 public key, 32 bytes. */
  readonly identityKey: Uint8Array;
  /** Expiry, ms since the epoch. */
  readonly expiresAt: number;
}

const certMessage = (payload: string): Uint8Array => enc.encode(`secagg/v1 identity-certificate\0${payload}`);

/**
 * Certify that `clientId` owns `identityKey`, signed with the issuer's Ed25519 seed. Clients pin the
 * issuer's public key (`identityPublicKey(issuerSeed)`) and pass it as `participate({ issuerKey })`.
 *
 * @example
 * ```ts
 * const cert = await issueCertificate({ clientId: 'phone-17', identityKey, expiresAt: Date.now() + 86_400_000 }, issuerSeed);
 * ```
 */
export async function issueCertificate(claims: CertificateClaims, issuerSeed: Uint8Array, crypto: CryptoProvider = defaultCrypto): Promise<string> {
  if (typeof claims.clientId !== 'string' || claims.clientId.length === 0 || claims.clientId.length > 200)
    throw new RangeError('clientId must be a string of 1..200 characters');
  if (!(claims.identityKey instanceof Uint8Array) || claims.identityKey.length !== IDENTITY_KEY_BYTES) throw new RangeError('identityKey must be 32 bytes');
  if (!Number.isFinite(claims.expiresAt)) throw new TypeError('expiresAt must be a number (ms since the epoch)');
  const payload = toBase64url(
    enc.encode(JSON.stringify({ clientId: claims.clientId, identityKey: toBase64url(claims.identityKey), expiresAt: claims.expiresAt })),
  );
  const issuer = await crypto.ed25519(issuerSeed);
  const signature = await issuer.sign(certMessage(payload));
  return `${CERT_PREFIX}.${payload}.${toBase64url(signature)}`;
}

export type CertificateCheck = { readonly ok: true; readonly claims: CertificateClaims } | { readonly ok: false; readonly reason: 'invalid' | 'expired' };

/** Check a certificate against the pinned issuer key; never throws on bad input. */
export async function verifyCertificate(
  certificate: string,
  issuerKey: Uint8Array,
  options: { crypto?: CryptoProvider; now?: number } = {},
): Promise<CertificateCheck> {
  const crypto = options.crypto ?? defaultCrypto;
  if (typeof certificate !== 'string' || certificate.length > 2048) return { ok: false, reason: 'invalid' };
  const parts = certificate.split('.');
  if (parts.length !== 3 || parts[0] !== CERT_PREFIX) return { ok: false, reason: 'invalid' };
  const signature = fromBase64url(parts[2]!);
  if (signature === undefined || signature.length !== SIGNATURE_BYTES) return { ok: false, reason: 'invalid' };
  if (!(await crypto.ed25519Verify(issuerKey, certMessage(parts[1]!), signature))) return { ok: false, reason: 'invalid' };
  let c: { clientId?: unknown; identityKey?: unknown; expiresAt?: unknown };
  try {
    const raw = fromBase64url(parts[1]!);
    if (raw === undefined) return { ok: false, reason: 'invalid' };
    c = JSON.parse(dec.decode(raw)) as typeof c;
  } catch {
    return { ok: false, reason: 'invalid' };
  }
  const key = typeof c.identityKey === 'string' ? fromBase64url(c.identityKey) : undefined;
  if (typeof c.clientId !== 'string' || typeof c.expiresAt !== 'number' || key === undefined || key.length !== IDENTITY_KEY_BYTES)
    return { ok: false, reason: 'invalid' };
  if (c.expiresAt <= (options.now ?? Date.now())) return { ok: false, reason: 'expired' };
  return { ok: true, claims: { clientId: c.clientId, identityKey: key, expiresAt: c.expiresAt } };
}

// ---- encodings (no Buffer: browsers) ----

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

export function toBase64url(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = i + 2 < bytes.length ? 4 : i + 1 < bytes.length ? 3 : 2;
    for (let j = 0; j < chars; j++) s += B64[(n >> (18 - 6 * j)) & 63];
  }
  return s;
}

export function fromBase64url(s: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(s) || s.length % 4 === 1) return undefined;
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (const ch of s) {
    acc = (acc << 6) | B64.indexOf(ch);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

export { bytesEqual, hex as toHex } from '../bytes.js';

/** A 32-byte key from hex (64 characters) or base64url (43 characters). */
export function parseKey(s: string, what = 'key'): Uint8Array {
  const t = s.trim();
  let out: Uint8Array | undefined;
  if (t.length === 64) out = unhex(t);
  else if (t.length === 43) out = fromBase64url(t);
  if (out === undefined || out.length !== 32) throw new RangeError(`${what} must be 32 bytes as hex (64 characters) or base64url (43 characters)`);
  return out;
}
