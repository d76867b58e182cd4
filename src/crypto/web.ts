/**
 * Isomorphic provider for browsers (and any runtime with WebCrypto): no Node-only API.
 *
 * Per primitive, by measured speed for a client's pattern (bench/crypto.ts, Node 20's WebCrypto
 * standing in for a browser's; sequential µs/op):
 * - X25519, Ed25519: WebCrypto when the runtime has it — agree 145 µs vs 1.8 ms in @noble/curves,
 *   sign 54 µs vs 0.6 ms, verify 174 µs vs 1.3 ms. @noble/curves is the fallback. Support is probed
 *   once, lazily, with known-answer tests, so a half-implemented algorithm is never used.
 * - HKDF-SHA256: @noble/hashes (10 µs). It is synchronous; a WebCrypto importKey+deriveBits
 *   round-trip costs 64 µs for a 32-byte output.
 * - SHA-256: @noble/hashes for small inputs (3 µs vs 25 µs at 64 B), WebCrypto from
 *   SUBTLE_SHA256_MIN up, where native hashing outruns the async overhead.
 * - AES-256-GCM: WebCrypto, although @noble/ciphers is 2–5x faster on 100-byte messages (25 µs vs
 *   74–122 µs): noble's AES uses T-tables, which leak key-dependent cache timings, and a browser is
 *   exactly where an attacker's script may share the cache. @noble/ciphers only without WebCrypto.
 */
import { ed25519 as nobleEd25519, x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import { hkdf as nobleHkdf } from '@noble/hashes/hkdf.js';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { ctr as nobleCtr, gcm as nobleGcm } from '@noble/ciphers/aes.js';
import { SecAggError, abytes, aint } from '../errors.js';
import { checkKeystreamArgs, wordsOf } from './keystream-common.js';
import { aesCtrKeystreamWeb } from './keystream-web.js';
import type { CryptoProvider, Ed25519PrivateKey, KeystreamSink, X25519PrivateKey } from './provider.js';
import { bytesEqual, isAllZero } from '../bytes.js';

/**
 * Inputs at least this long are hashed by WebCrypto. noble hashes at ~7 ns/byte; WebCrypto's async
 * round-trip costs 25–45 µs depending on load, so break-even moves between 4 and 8 KiB (two runs:
 * 4 KiB 30 vs 51 µs and 51 vs 28 µs; 8 KiB 28 vs 77 µs and 52 vs 55 µs). 8 KiB never loses.
 */
export const SUBTLE_SHA256_MIN = 8192;

const TAG_BYTES = 16;

/**
 * WebCrypto wants ArrayBuffer-backed views (it rejects SharedArrayBuffer), and TypeScript's DOM
 * types say so too; copy only when the caller's bytes live elsewhere.
 */
function bs(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

function hex(s: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function fromBase64Url(s: string): Uint8Array {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// WebCrypto imports raw private keys only as PKCS#8 (or JWK, which needs the public key we do not
// have yet, and which Node validates). RFC 8410 prefixes for a 32-byte OKP private key:
const PKCS8_X25519 = hex('302e020100300506032b656e04220420');
const PKCS8_ED25519 = hex('302e020100300506032b657004220420');

function pkcs8(prefix: Uint8Array, raw: Uint8Array): Uint8Array<ArrayBuffer> {
  const der = new Uint8Array(48);
  der.set(prefix);
  der.set(raw, 16);
  return der;
}

function subtleOrUndefined(): SubtleCrypto | undefined {
  // Absent outside secure contexts (plain http:) and in some embedded runtimes.
  return (globalThis as { crypto?: { subtle?: SubtleCrypto } }).crypto?.subtle;
}

interface Support {
  subtle: SubtleCrypto | undefined;
  x25519: boolean;
  ed25519: boolean;
}

// Known-answer probes: a runtime that has the algorithm name but computes something else (or only
// half-implements it) must not be used. RFC 7748 §6.1 and RFC 8032 §7.1 test 1.
async function probeX25519(subtle: SubtleCrypto): Promise<boolean> {
  const alice = await subtle.importKey(
    'pkcs8',
    pkcs8(PKCS8_X25519, hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')),
    { name: 'X25519' },
    false,
    ['deriveBits'],
  );
  const bob = await subtle.importKey('raw', hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f'), { name: 'X25519' }, false, []);
  const k = new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: bob }, alice, 256));
  return bytesEqual(k, hex('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'));
}

async function probeEd25519(subtle: SubtleCrypto): Promise<boolean> {
  const key = await subtle.importKey(
    'pkcs8',
    pkcs8(PKCS8_ED25519, hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60')),
    { name: 'Ed25519' },
    false,
    ['sign'],
  );
  const sig = new Uint8Array(await subtle.sign({ name: 'Ed25519' }, key, new Uint8Array(0)));
  return bytesEqual(
    sig,
    hex('e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'),
  );
}

async function probe(subtle: SubtleCrypto | undefined): Promise<Support> {
  if (subtle === undefined) return { subtle, x25519: false, ed25519: false };
  const [x25519, ed25519] = await Promise.all([probeX25519(subtle).catch(() => false), probeEd25519(subtle).catch(() => false)]);
  return { subtle, x25519, ed25519 };
}

async function exportedPublicKey(subtle: SubtleCrypto, key: CryptoKey): Promise<Uint8Array | undefined> {
  try {
    const jwk = await subtle.exportKey('jwk', key);
    if (typeof jwk.x !== 'string') return undefined;
    const x = fromBase64Url(jwk.x);
    return x.length === 32 ? x : undefined;
  } catch {
    return undefined;
  }
}

function checkPeerKey(peerPublicKey: Uint8Array): void {
  abytes(peerPublicKey, 'peerPublicKey');
  if (peerPublicKey.length !== 32) throw new SecAggError('ERR_INVALID_KEY', `X25519 public key must be 32 bytes, got ${peerPublicKey.length}`);
}

const lowOrder = (cause?: unknown): SecAggError =>
  new SecAggError('ERR_INVALID_KEY', 'X25519 peer public key is invalid or of low order', cause === undefined ? {} : { cause });

class SubtleX25519PrivateKey implements X25519PrivateKey {
  readonly #subtle: SubtleCrypto;
  readonly #key: CryptoKey;
  constructor(
    subtle: SubtleCrypto,
    key: CryptoKey,
    readonly publicKey: Uint8Array,
  ) {
    this.#subtle = subtle;
    this.#key = key;
  }

  async agree(peerPublicKey: Uint8Array): Promise<Uint8Array> {
    checkPeerKey(peerPublicKey);
    let shared: Uint8Array;
    try {
      const peer = await this.#subtle.importKey('raw', bs(peerPublicKey), { name: 'X25519' }, false, []);
      shared = new Uint8Array(await this.#subtle.deriveBits({ name: 'X25519', public: peer }, this.#key, 256));
    } catch (cause) {
      throw lowOrder(cause); // WebCrypto fails the derivation itself on low-order points
    }
    if (isAllZero(shared)) throw lowOrder(); // some engines return zeros instead
    return shared;
  }
}

class NobleX25519PrivateKey implements X25519PrivateKey {
  readonly publicKey: Uint8Array;
  readonly #scalar: Uint8Array;
  constructor(scalar: Uint8Array) {
    this.#scalar = Uint8Array.from(scalar); // the caller may wipe or reuse its buffer
    this.publicKey = nobleX25519.getPublicKey(this.#scalar);
  }

  async agree(peerPublicKey: Uint8Array): Promise<Uint8Array> {
    checkPeerKey(peerPublicKey);
    let shared: Uint8Array;
    try {
      shared = nobleX25519.getSharedSecret(this.#scalar, peerPublicKey);
    } catch (cause) {
      throw lowOrder(cause); // noble throws on an all-zero result
    }
    if (isAllZero(shared)) throw lowOrder();
    return shared;
  }
}

class SubtleEd25519PrivateKey implements Ed25519PrivateKey {
  readonly #subtle: SubtleCrypto;
  readonly #key: CryptoKey;
  constructor(
    subtle: SubtleCrypto,
    key: CryptoKey,
    readonly publicKey: Uint8Array,
  ) {
    this.#subtle = subtle;
    this.#key = key;
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    abytes(message, 'message');
    return new Uint8Array(await this.#subtle.sign({ name: 'Ed25519' }, this.#key, bs(message)));
  }
}

class NobleEd25519PrivateKey implements Ed25519PrivateKey {
  readonly publicKey: Uint8Array;
  readonly #seed: Uint8Array;
  constructor(seed: Uint8Array) {
    this.#seed = Uint8Array.from(seed);
    this.publicKey = nobleEd25519.getPublicKey(this.#seed);
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    abytes(message, 'message');
    return nobleEd25519.sign(message, this.#seed);
  }
}

async function importX25519(detect: () => Promise<Support>, privateKey: Uint8Array): Promise<X25519PrivateKey> {
  abytes(privateKey, 'privateKey', 32);
  const { subtle, x25519 } = await detect();
  if (subtle !== undefined && x25519) {
    const der = pkcs8(PKCS8_X25519, privateKey);
    // Extractable only so that we can read the public key back out (one scalar multiplication in
    // native code instead of ~0.4 ms in noble); we already hold the raw scalar anyway.
    const key = await subtle.importKey('pkcs8', der, { name: 'X25519' }, true, ['deriveBits']);
    der.fill(0);
    const publicKey = (await exportedPublicKey(subtle, key)) ?? nobleX25519.getPublicKey(privateKey);
    return new SubtleX25519PrivateKey(subtle, key, publicKey);
  }
  return new NobleX25519PrivateKey(privateKey);
}

async function importEd25519(detect: () => Promise<Support>, seed: Uint8Array): Promise<Ed25519PrivateKey> {
  abytes(seed, 'seed', 32);
  const { subtle, ed25519 } = await detect();
  if (subtle !== undefined && ed25519) {
    const der = pkcs8(PKCS8_ED25519, seed);
    const key = await subtle.importKey('pkcs8', der, { name: 'Ed25519' }, true, ['sign']);
    der.fill(0);
    const publicKey = (await exportedPublicKey(subtle, key)) ?? nobleEd25519.getPublicKey(seed);
    return new SubtleEd25519PrivateKey(subtle, key, publicKey);
  }
  return new NobleEd25519PrivateKey(seed);
}

async function ed25519Verify(detect: () => Promise<Support>, publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (!(publicKey instanceof Uint8Array) || !(message instanceof Uint8Array) || !(signature instanceof Uint8Array)) return false;
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    const { subtle, ed25519 } = await detect();
    if (subtle !== undefined && ed25519) {
      const key = await subtle.importKey('raw', bs(publicKey), { name: 'Ed25519' }, false, ['verify']);
      return await subtle.verify({ name: 'Ed25519' }, key, bs(signature), bs(message));
    }
    // zip215: false = strict RFC 8032 rules, the ones OpenSSL (node provider) applies.
    return nobleEd25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false; // a public key that does not decode to a curve point
  }
}

function checkAeadArgs(key: Uint8Array, nonce: Uint8Array, data: Uint8Array, aad: Uint8Array, dataName: string): void {
  abytes(key, 'key', 32);
  abytes(nonce, 'nonce', 12);
  abytes(data, dataName);
  abytes(aad, 'aad');
}

async function aeadSeal(detect: () => Promise<Support>, key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
  checkAeadArgs(key, nonce, plaintext, aad, 'plaintext');
  const { subtle } = await detect();
  if (subtle === undefined) return nobleGcm(key, nonce, aad).encrypt(plaintext);
  const k = await subtle.importKey('raw', bs(key), { name: 'AES-GCM' }, false, ['encrypt']);
  const params: AesGcmParams = { name: 'AES-GCM', iv: bs(nonce), additionalData: bs(aad), tagLength: 128 };
  return new Uint8Array(await subtle.encrypt(params, k, bs(plaintext)));
}

async function aeadOpen(detect: () => Promise<Support>, key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
  checkAeadArgs(key, nonce, ciphertext, aad, 'ciphertext');
  if (ciphertext.length < TAG_BYTES) throw new SecAggError('ERR_AEAD_OPEN_FAILED', 'ciphertext shorter than the tag');
  const { subtle } = await detect();
  try {
    if (subtle === undefined) return nobleGcm(key, nonce, aad).decrypt(ciphertext);
    const k = await subtle.importKey('raw', bs(key), { name: 'AES-GCM' }, false, ['decrypt']);
    const params: AesGcmParams = { name: 'AES-GCM', iv: bs(nonce), additionalData: bs(aad), tagLength: 128 };
    return new Uint8Array(await subtle.decrypt(params, k, bs(ciphertext)));
  } catch (cause) {
    throw new SecAggError('ERR_AEAD_OPEN_FAILED', 'AEAD ciphertext did not authenticate', { cause });
  }
}

async function sha256(subtle: SubtleCrypto | undefined, data: Uint8Array): Promise<Uint8Array> {
  abytes(data, 'data');
  if (subtle !== undefined && data.length >= SUBTLE_SHA256_MIN) return new Uint8Array(await subtle.digest('SHA-256', bs(data)));
  return nobleSha256(data);
}

const NOBLE_CHUNK_WORDS = 16384;

/**
 * Only for runtimes without WebCrypto: noble's table-based AES in JS runs at a small fraction of
 * native speed, but gives the same bytes as the other keystreams.
 */
function nobleKeystream(key: Uint8Array, words: number, sink: KeystreamSink): void {
  checkKeystreamArgs(key, words);
  const buf = new Uint8Array(4 * NOBLE_CHUNK_WORDS);
  for (let offset = 0; offset < words; offset += NOBLE_CHUNK_WORDS) {
    const n = Math.min(NOBLE_CHUNK_WORDS, words - offset);
    // Counter block for this chunk: 128-bit big-endian block index (4 words per block).
    const counter = new Uint8Array(16);
    for (let i = 15, b = offset / 4; i >= 8 && b > 0; i--, b = Math.floor(b / 256)) counter[i] = b % 256;
    const zeros = new Uint8Array(4 * n);
    const out = nobleCtr(key, counter).encrypt(zeros, buf.subarray(0, 4 * n));
    sink(wordsOf(out, n), offset);
  }
}

export interface WebCryptoOptions {
  /**
   * false = never touch WebCrypto, use @noble/* for everything (what a runtime without
   * crypto.subtle gets anyway). Lets tests check the fallbacks against the same vectors.
   */
  readonly useSubtle?: boolean;
}

export function createWebCrypto(options: WebCryptoOptions = {}): CryptoProvider {
  const useSubtle = options.useSubtle ?? true;
  let support: Promise<Support> | undefined;
  // Probed on first use, not at import: importing the library must not start crypto work.
  const detect = (): Promise<Support> => (support ??= probe(useSubtle ? subtleOrUndefined() : undefined));

  return {
    name: useSubtle ? 'web' : 'web-noble',
    x25519: (privateKey) => importX25519(detect, privateKey),
    ed25519: (seed) => importEd25519(detect, seed),
    ed25519Verify: (publicKey, message, signature) => ed25519Verify(detect, publicKey, message, signature),

    hkdf: async (ikm, salt, info, length) => {
      abytes(ikm, 'ikm');
      abytes(salt, 'salt');
      abytes(info, 'info');
      aint(length, 'length', 1, 255 * 32);
      return nobleHkdf(nobleSha256, ikm, salt, info, length);
    },

    sha256: async (data) => sha256((await detect()).subtle, data),
    aeadSeal: (key, nonce, plaintext, aad) => aeadSeal(detect, key, nonce, plaintext, aad),
    aeadOpen: (key, nonce, ciphertext, aad) => aeadOpen(detect, key, nonce, ciphertext, aad),

    keystream: async (key, words, sink) => {
      const { subtle } = await detect();
      if (subtle !== undefined) await aesCtrKeystreamWeb(key, words, sink);
      else nobleKeystream(key, words, sink);
    },
  };
}

export const webCrypto: CryptoProvider = createWebCrypto();

export const defaultCrypto: CryptoProvider = webCrypto;

/**
 * Whether `defaultCrypto` has to fall back to @noble for everything, AES included, because this
 * runtime has no `crypto.subtle` — in browsers, a page that is not a secure context (plain http://
 * on a host other than localhost). participate() warns about it or refuses (`requireWebCrypto`).
 */
export function defaultCryptoLacksSubtle(): boolean {
  return subtleOrUndefined() === undefined;
}
