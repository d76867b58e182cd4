/**
 * The primitives the protocol needs, as one injectable provider. Two implementations exist:
 * `node.ts` (node:crypto, the fast path on servers and Node clients) and `web.ts` (WebCrypto and
 * @noble, for browsers). Both must give byte-identical results; test/crypto-providers.test.ts
 * proves it. All byte arrays are plain Uint8Array; nothing here is Node-only.
 */
export interface X25519PrivateKey {
  /** 32-byte public key (RFC 7748 u-coordinate). */
  readonly publicKey: Uint8Array;
  /**
   * Raw X25519 shared secret with a peer's 32-byte public key. Rejects a low-order peer key
   * (all-zero output) with SecAggError('ERR_INVALID_KEY').
   */
  agree(peerPublicKey: Uint8Array): Promise<Uint8Array>;
}

export interface Ed25519PrivateKey {
  readonly publicKey: Uint8Array;
  sign(message: Uint8Array): Promise<Uint8Array>;
}

export interface CryptoProvider {
  readonly name: string;
  /** Import a 32-byte X25519 private scalar (RFC 7748 clamping applies). */
  x25519(privateKey: Uint8Array): Promise<X25519PrivateKey>;
  /** Import a 32-byte Ed25519 seed (RFC 8032). */
  ed25519(seed: Uint8Array): Promise<Ed25519PrivateKey>;
  /** Verify an Ed25519 signature; false for any malformed input, never throws on bad data. */
  ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean>;
  /** HKDF-SHA256 (RFC 5869). */
  hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array>;
  sha256(data: Uint8Array): Promise<Uint8Array>;
  /** AES-256-GCM, 12-byte nonce; returns ciphertext‖16-byte tag. */
  aeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** Inverse of aeadSeal; rejects with SecAggError('ERR_AEAD_OPEN_FAILED') when it does not authenticate. */
  aeadOpen(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /**
   * The PRG keystream: AES-128-CTR under `key` (16 bytes), counter block starting at zero and
   * incrementing as a 128-bit big-endian integer, read as little-endian uint32 words. Delivers
   * `words` words to `sink` in cache-sized chunks; a chunk is only valid during the call, so the
   * sink must consume it (add it into an accumulator) before returning. No m-sized temporary.
   */
  keystream(key: Uint8Array, words: number, sink: KeystreamSink): void | Promise<void>;
}

/** Receives one keystream chunk and the word offset where it starts. */
export type KeystreamSink = (chunk: Uint32Array, offset: number) => void;
