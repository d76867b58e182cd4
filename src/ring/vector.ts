import { SecAggError } from '../errors.js';
import { LITTLE_ENDIAN as LE } from '../bytes.js';

/** Caller bug guard: every ring function takes an integer bit width in [1, 32]. */
export function assertBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 1 || bits > 32) throw new RangeError(`bits must be an integer in [1, 32], got ${bits}`);
}

/** Bytes per element on the wire: the smallest whole number of bytes that holds `bits` bits. */
export function elementBytes(bits: number): number {
  assertBits(bits);
  return Math.ceil(bits / 8);
}

/** Throws RangeError unless every element of `v` is < 2^bits (caller input, checked once). */
export function assertInRing(v: Uint32Array, bits: number, name: string): void {
  if (!(v instanceof Uint32Array)) throw new TypeError(`${name} must be a Uint32Array`);
  assertBits(bits);
  if (bits === 32) return;
  const limit = 2 ** bits;
  for (let i = 0; i < v.length; i++) if (v[i]! >= limit) throw new RangeError(`${name}[${i}] = ${v[i]} is not < 2^${bits}`);
}

/** Little-endian packing at elementBytes(bits) per element, so a 16-bit ring costs 2 bytes per element. */
export function packVector(v: Uint32Array, bits: number): Uint8Array {
  const w = elementBytes(bits);
  if (w === 4) {
    const out = new Uint8Array(4 * v.length);
    const words = new Uint32Array(out.buffer);
    words.set(v);
    if (!LE) {
      const dv = new DataView(out.buffer);
      for (let i = 0; i < v.length; i++) dv.setUint32(4 * i, v[i]!, true);
    }
    return out;
  }
  const out = new Uint8Array(w * v.length);
  for (let i = 0, o = 0; i < v.length; i++) {
    const x = v[i]!;
    out[o++] = x;
    if (w > 1) out[o++] = x >>> 8;
    if (w > 2) out[o++] = x >>> 16;
  }
  return out;
}

/** Reads n little-endian elements of w bytes from `src` into out[0..n). */
export function readPacked(src: Uint8Array, w: number, out: Uint32Array, n: number): void {
  for (let i = 0, o = 0; i < n; i++, o += w) {
    let x = src[o]!;
    if (w > 1) x |= src[o + 1]! << 8;
    if (w > 2) x |= src[o + 2]! << 16;
    if (w > 3) x |= src[o + 3]! << 24;
    out[i] = x;
  }
}

/**
 * Inverse of packVector for untrusted bytes: the length must be exactly m elements and every element
 * must be < 2^bits (a value above the ring would let a client bias the sum's high bits).
 */
export function unpackVector(bytes: Uint8Array, bits: number, m: number): Uint32Array {
  const w = elementBytes(bits);
  if (bytes.length !== w * m) throw new SecAggError('ERR_SIZE', `vector is ${bytes.length} bytes, expected ${w * m}`);
  const out = new Uint32Array(m);
  // One copy on little-endian hosts: view the bytes as words where they are aligned, copy them first only where not.
  if (w === 4 && LE)
    out.set(new Uint32Array(bytes.byteOffset % 4 === 0 ? bytes.buffer : bytes.slice().buffer, bytes.byteOffset % 4 === 0 ? bytes.byteOffset : 0, m));
  else readPacked(bytes, w, out, m);
  if (bits < 32 && bits % 8 !== 0) {
    const limit = 2 ** bits;
    for (let i = 0; i < m; i++) if (out[i]! >= limit) throw new SecAggError('ERR_SIZE', `element ${i} is not < 2^${bits}`);
  }
  return out;
}

/** Σ vectors mod 2^bits, the plaintext reference the tests and the CLI compare against. */
export function plainSum(vectors: readonly Uint32Array[], bits: number, m: number): Uint32Array {
  const out = new Uint32Array(m);
  for (const v of vectors) for (let i = 0; i < m; i++) out[i] = out[i]! + v[i]!;
  if (bits < 32) {
    const mask = 2 ** bits - 1;
    for (let i = 0; i < m; i++) out[i]! &= mask;
  }
  return out;
}
