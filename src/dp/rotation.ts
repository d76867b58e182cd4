/**
 * The randomized Hadamard rotation U = (1/√D)·H·S: S is a ±1 diagonal drawn from a per-round PUBLIC
 * seed, H the D×D Walsh–Hadamard matrix (H_jk = (−1)^popcount(j AND k)), D a power of two. U is
 * orthogonal (HᵀH = D·I), so it keeps L2 norms and inner products; its inverse is Uᵀ = (1/√D)·S·H.
 * After it, each coordinate of a fixed vector x is a Rademacher sum (1/√D)·Σ_k ±x_k, sub-Gaussian
 * with variance proxy ‖x‖²/D (Hoeffding): the mass is spread evenly, which is what lets a small ring
 * hold the sum (see plan.ts).
 *
 * The signs are SHAKE128("secagg/dp/hadamard-signs/v1" ‖ seed) read bit by bit (LSB first; 1 → −1),
 * so every client and the server derive the same S, and a longer D extends a shorter one.
 */
import { shake128 } from '@noble/hashes/sha3.js';
import { abytes } from '../errors.js';

const LABEL = new TextEncoder().encode('secagg/dp/hadamard-signs/v1');
/** Largest padded length (2^26 elements: 512 MiB of Float64). */
const MAX_PADDED_LENGTH: number = 2 ** 26;

/** The smallest power of two ≥ max(d, 1): the length the rotation works on. */
export function paddedLength(d: number): number {
  if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`d must be a non-negative integer, got ${d}`);
  let n = 1;
  while (n < d) n *= 2;
  if (n > MAX_PADDED_LENGTH) throw new RangeError(`d = ${d} pads to ${n} > 2^26 elements`);
  return n;
}

function checkPowerOfTwo(n: number, name: string): void {
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_PADDED_LENGTH || (n & (n - 1)) !== 0)
    throw new RangeError(`${name} must be a power of two in [1, 2^26], got ${n}`);
}

export interface SignParams {
  /** The round's public rotation seed, at least 16 bytes. */
  seed: Uint8Array;
  /** Number of signs (the padded length D). */
  length: number;
}

/**
 * The sign diagonal S as a Float64Array of ±1, deterministic in the seed.
 *
 * @example
 * ```ts
 * const s = hadamardSigns({ seed: roundSeed, length: 1024 });
 * ```
 */
export function hadamardSigns(params: SignParams): Float64Array {
  const { seed, length } = params;
  abytes(seed, 'seed');
  if (seed.length < 16) throw new RangeError(`seed must be at least 16 bytes, got ${seed.length}`);
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_PADDED_LENGTH) throw new RangeError(`length must be an integer in [0, 2^26], got ${length}`);
  const input = new Uint8Array(LABEL.length + seed.length);
  input.set(LABEL);
  input.set(seed, LABEL.length);
  const bits = shake128(input, { dkLen: Math.max(1, Math.ceil(length / 8)) });
  const out = new Float64Array(length);
  for (let i = 0; i < length; i++) out[i] = (bits[i >>> 3]! >>> (i & 7)) & 1 ? -1 : 1;
  return out;
}

/**
 * In-place fast Walsh–Hadamard transform, UNNORMALISED: x ← H·x with H_jk = (−1)^popcount(j AND k)
 * (Sylvester order), D·log2(D) additions. x.length must be a power of two.
 */
export function fwht(x: Float64Array): Float64Array {
  if (!(x instanceof Float64Array)) throw new TypeError('x must be a Float64Array');
  checkPowerOfTwo(x.length, 'x.length');
  const n = x.length;
  for (let h = 1; h < n; h *= 2) {
    for (let i = 0; i < n; i += 2 * h) {
      for (let j = i; j < i + h; j++) {
        const a = x[j]!;
        const b = x[j + h]!;
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  return x;
}

export interface RotateParams {
  /** A vector of length D, a power of two (pad first: see flattenAndPad). Not modified. */
  values: Float64Array;
  /** The round's public rotation seed (≥ 16 bytes). */
  seed: Uint8Array;
}

/**
 * y = (1/√D)·H·S·x, a fresh array.
 *
 * @example
 * ```ts
 * const y = rotate({ values: padded, seed });
 * const x = unrotate({ values: y, seed }); // x ≈ padded to float precision
 * ```
 */
export function rotate(params: RotateParams): Float64Array {
  const { values, seed } = params;
  if (!(values instanceof Float64Array)) throw new TypeError('values must be a Float64Array');
  checkPowerOfTwo(values.length, 'values.length');
  const s = hadamardSigns({ seed, length: values.length });
  const y = new Float64Array(values.length);
  for (let i = 0; i < y.length; i++) y[i] = values[i]! * s[i]!;
  fwht(y);
  const k = 1 / Math.sqrt(y.length);
  for (let i = 0; i < y.length; i++) y[i] = y[i]! * k;
  return y;
}

/** x = (1/√D)·S·H·y, the inverse (and transpose) of rotate, a fresh array. */
export function unrotate(params: RotateParams): Float64Array {
  const { values, seed } = params;
  if (!(values instanceof Float64Array)) throw new TypeError('values must be a Float64Array');
  checkPowerOfTwo(values.length, 'values.length');
  const s = hadamardSigns({ seed, length: values.length });
  const x = Float64Array.from(values);
  fwht(x);
  const k = 1 / Math.sqrt(x.length);
  for (let i = 0; i < x.length; i++) x[i] = x[i]! * k * s[i]!;
  return x;
}
