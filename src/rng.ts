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
