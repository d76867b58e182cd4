/**
 * node:crypto provider: the fast path on servers and Node clients. Every primitive is OpenSSL via
 * node:crypto; nothing is implemented here beyond key encoding and error mapping.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  sign as nodeSign,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import { SecAggError, abytes, aint } from '../errors.js';
import { aesCtrKeystreamNode } from './keystream-node.js';
import type { CryptoProvider, Ed25519PrivateKey, X25519PrivateKey } from './provider.js';
import { isAllZero } from '../bytes.js';

type OkpCurve = 'X25519' | 'Ed25519';

const b64u = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64url');

/** Node returns pooled Buffers; callers get a private plain Uint8Array so no one sees the pool. */
const plain = (buf: Uint8Array): Uint8Array => new Uint8Array(buf);

// An all-zero public key can never be derived from a clamped X25519 scalar or an Ed25519 seed, so
// if it ever comes back out of the imported key we know Node started trusting the JWK `x`.
const PLACEHOLDER_X = b64u(new Uint8Array(32));

// PKCS#8 prefixes for a raw 32-byte OKP private key (RFC 8410): the slow but always-correct route.
const PKCS8_PREFIX: Record<OkpCurve, Uint8Array> = {
  X25519: Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]),
  Ed25519: Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]),
};

let jwkImportUsable = true;

/**
 * Import a raw private scalar/seed. JWK import (~40 µs) is ~9x faster than PKCS#8 DER (~350 µs),
 * but Node's JWK path insists on an `x` member, which is exactly what we do not have yet. OpenSSL
 * builds the key from `d` alone and recomputes the public key, so we pass a placeholder `x` and read
 * the real public key back out. If a future Node validates or trusts `x`, we notice (throw, or the
 * placeholder comes back) and fall back to DER for good.
 */
function importPrivate(curve: OkpCurve, raw: Uint8Array): { key: KeyObject; publicKey: Uint8Array } {
  if (jwkImportUsable) {
    try {
      const key = createPrivateKey({ key: { kty: 'OKP', crv: curve, d: b64u(raw), x: PLACEHOLDER_X }, format: 'jwk' });
      const x = createPublicKey(key).export({ format: 'jwk' }).x;
      if (typeof x === 'string' && x !== PLACEHOLDER_X) return { key, publicKey: plain(Buffer.from(x, 'base64url')) };
    } catch {
      // fall through to the DER route
    }
    jwkImportUsable = false;
  }
  const der = new Uint8Array(48);
  der.set(PKCS8_PREFIX[curve]);
  der.set(raw, 16);
  const key = createPrivateKey({ key: Buffer.from(der.buffer), format: 'der', type: 'pkcs8' });
  der.fill(0);
  const x = createPublicKey(key).export({ format: 'jwk' }).x;
  if (typeof x !== 'string') throw new SecAggError('ERR_INTERNAL', `node:crypto did not export the ${curve} public key`);
  return { key, publicKey: plain(Buffer.from(x, 'base64url')) };
}

function importPublic(curve: OkpCurve, raw: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: curve, x: b64u(raw) }, format: 'jwk' });
}

class NodeX25519PrivateKey implements X25519PrivateKey {
  readonly publicKey: Uint8Array;
  readonly #key: KeyObject;

  constructor(raw: Uint8Array) {
    const { key, publicKey } = importPrivate('X25519', raw);
    this.#key = key;
    this.publicKey = publicKey;
  }

  async agree(peerPublicKey: Uint8Array): Promise<Uint8Array> {
    return agreeSync(this.#key, peerPublicKey);
  }
}

function agreeSync(privateKey: KeyObject, peerPublicKey: Uint8Array): Uint8Array {
  abytes(peerPublicKey, 'peerPublicKey');
  if (peerPublicKey.length !== 32) throw new SecAggError('ERR_INVALID_KEY', `X25519 public key must be 32 bytes, got ${peerPublicKey.length}`);
  let shared: Uint8Array;
  try {
    shared = diffieHellman({ privateKey, publicKey: importPublic('X25519', peerPublicKey) });
  } catch (cause) {
    // OpenSSL refuses low-order points itself (ERR_OSSL_FAILED_DURING_DERIVATION).
    throw new SecAggError('ERR_INVALID_KEY', 'X25519 peer public key is invalid or of low order', { cause });
  }
  // Defence in depth: never hand out an all-zero secret even if OpenSSL stopped checking.
  if (isAllZero(shared)) throw new SecAggError('ERR_INVALID_KEY', 'X25519 peer public key is of low order');
  return plain(shared);
}

class NodeEd25519PrivateKey implements Ed25519PrivateKey {
  readonly publicKey: Uint8Array;
  readonly #key: KeyObject;

  constructor(seed: Uint8Array) {
    const { key, publicKey } = importPrivate('Ed25519', seed);
    this.#key = key;
    this.publicKey = publicKey;
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    abytes(message, 'message');
    return plain(nodeSign(null, message, this.#key));
  }
}

function ed25519VerifySync(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || !(message instanceof Uint8Array) || !(signature instanceof Uint8Array)) return false;
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    return nodeVerify(null, message, importPublic('Ed25519', publicKey), signature);
  } catch {
    return false; // a public key that does not decode to a curve point
  }
}

const TAG_BYTES = 16;

function aeadSealSync(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  abytes(key, 'key', 32);
  abytes(nonce, 'nonce', 12);
  abytes(plaintext, 'plaintext');
  abytes(aad, 'aad');
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const out = new Uint8Array(plaintext.length + TAG_BYTES);
  const body = cipher.update(plaintext);
  out.set(body, 0);
  const rest = cipher.final(); // empty for GCM, kept for correctness
  out.set(rest, body.length);
  out.set(cipher.getAuthTag(), body.length + rest.length);
  return out;
}

function aeadOpenSync(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array {
  abytes(key, 'key', 32);
  abytes(nonce, 'nonce', 12);
  abytes(ciphertext, 'ciphertext');
  abytes(aad, 'aad');
  if (ciphertext.length < TAG_BYTES) throw new SecAggError('ERR_AEAD_OPEN_FAILED', 'ciphertext shorter than the tag');
  const split = ciphertext.length - TAG_BYTES;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(ciphertext.subarray(split));
    const out = new Uint8Array(split);
    const body = decipher.update(ciphertext.subarray(0, split));
    const rest = decipher.final(); // throws when the tag does not verify
    out.set(body, 0);
    out.set(rest, body.length);
    return out;
  } catch (cause) {
    throw new SecAggError('ERR_AEAD_OPEN_FAILED', 'AEAD ciphertext did not authenticate', { cause });
  }
}

export const nodeCrypto: CryptoProvider = {
  name: 'node',

  // `async` so argument errors surface as rejections, like every other failure.
  x25519: async (privateKey) => {
    abytes(privateKey, 'privateKey', 32);
    return new NodeX25519PrivateKey(privateKey);
  },

  ed25519: async (seed) => {
    abytes(seed, 'seed', 32);
    return new NodeEd25519PrivateKey(seed);
  },

  ed25519Verify: async (publicKey, message, signature) => ed25519VerifySync(publicKey, message, signature),

  hkdf: async (ikm, salt, info, length) => {
    abytes(ikm, 'ikm');
    abytes(salt, 'salt');
    abytes(info, 'info');
    aint(length, 'length', 1, 255 * 32);
    return new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
  },

  sha256: async (data) => {
    abytes(data, 'data');
    return plain(createHash('sha256').update(data).digest());
  },

  aeadSeal: async (key, nonce, plaintext, aad) => aeadSealSync(key, nonce, plaintext, aad),

  aeadOpen: async (key, nonce, ciphertext, aad) => aeadOpenSync(key, nonce, ciphertext, aad),

  // Synchronous on purpose: the hot loop should not pay a microtask per call.
  keystream: aesCtrKeystreamNode,
};

export const defaultCrypto: CryptoProvider = nodeCrypto;

/** node:crypto needs no WebCrypto (the web provider's function of the same name checks for it). */
export function defaultCryptoLacksSubtle(): boolean {
  return false;
}
