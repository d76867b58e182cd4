import { LITTLE_ENDIAN } from '../bytes.js';

export function checkKeystreamArgs(key: Uint8Array, words: number): void {
  if (!(key instanceof Uint8Array) || key.length !== 16) throw new RangeError('PRG key must be 16 bytes');
  if (!Number.isSafeInteger(words) || words < 0) throw new RangeError(`words must be a non-negative integer, got ${words}`);
}

/** View `bytes` as little-endian uint32 words, copying only when unaligned or on a big-endian host. */
export function wordsOf(bytes: Uint8Array, words: number): Uint32Array {
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, words);
  const out = new Uint32Array(words);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < words; i++) out[i] = dv.getUint32(4 * i, true);
  return out;
}
