import { chacha20 } from '@noble/ciphers/chacha.js';
/**
 * Randomness is injected so a test can replay a whole round byte for byte. Production code uses
 * `cryptoRng`, which draws from the platform CSPRNG (WebCrypto getRandomValues in Node and browsers).
 */
export type Rng = (length: number) => Uint8Array;

export const cryptoRng: Rng = (length) => {
  const out = new Uint8Array(length);
  // getRandomValues is limited to 65,536 bytes per call.
  for (let i = 0; i < length; i += 65536) globalThis.crypto.getRandomValues(out.subarray(i, Math.min(length, i + 65536)));
  return out;
};

/**
 * A deterministic Rng for tests and replays: the ChaCha20 keystream of a 32-byte seed. Never use it
 * for a real round — its output is predictable by anyone who knows the seed.
 */
export function unsafeSeededRng(seed: Uint8Array | number): Rng {
  const key = new Uint8Array(32);
  if (typeof seed === 'number') new DataView(key.buffer).setFloat64(0, seed);
  else key.set(seed.subarray(0, 32));
  let counter = 0;
  let buffer = new Uint8Array(0);
  let pos = 0;
  return (length) => {
    const out = new Uint8Array(length);
    let o = 0;
    while (o < length) {
      if (pos === buffer.length) {
        buffer = chacha20(key, new Uint8Array(12), new Uint8Array(4096), undefined, counter);
        counter += 4096 / 64;
        pos = 0;
      }
      const n = Math.min(length - o, buffer.length - pos);
      out.set(buffer.subarray(pos, pos + n), o);
      o += n;
      pos += n;
    }
    return out;
  };
}
