/**
 * Conditional randomized rounding (Kairouz, Liu and Steinke, "The Distributed Discrete Gaussian
 * Mechanism for Federated Learning with Secure Aggregation", ICML 2021, §4.1 and Theorem 1): each
 * coordinate x_j goes to ⌊x_j⌋ + 1 with probability x_j − ⌊x_j⌋, else ⌊x_j⌋ (unbiased), and the
 * whole vector is drawn again while its L2 norm exceeds the inflated bound
 *
 *   Δ₂ = min( c + √D ,  √( c² + D/4 + √(2 ln(1/β)) · (c + √D/2) ) )      (β > 0; β = 0: c + √D)
 *
 * for an input of norm ≤ c in D coordinates (grid spacing 1, i.e. after scaling). One rounding
 * exceeds the second term with probability ≤ β (KLS Theorem 1), so the expected number of draws
 * is ≤ 1/(1 − β); the first term holds always (each coordinate moves by < 1). Every output has
 * ‖x̃‖₂ ≤ Δ₂, which is the L2 sensitivity the privacy analysis uses, and ‖x̃‖₁ ≤ min(Δ₂², √D·Δ₂)
 * (|k| ≤ k² for integers; Cauchy–Schwarz).
 */
import { SecAggError } from '../errors.js';
import type { Rng } from '../rng.js';
import { RandomSource } from './random.js';

/** exp(−1/2), the β Kairouz–Liu–Steinke and TFF recommend. */
export const DEFAULT_BETA: number = Math.exp(-0.5);
const TWO32 = 4294967296;

export interface InflatedBoundParams {
  /** c: the L2 norm bound of the vector before rounding, in grid units (clip × scale). */
  l2Bound: number;
  /** D: number of coordinates rounded. */
  dimension: number;
  /** β ∈ [0, 1): the bound on one rounding's rejection probability. Default exp(−1/2). */
  beta?: number;
}

function checkBeta(beta: unknown): number {
  if (typeof beta !== 'number' || !(beta >= 0 && beta < 1)) throw new RangeError(`beta must be a number in [0, 1), got ${String(beta)}`);
  return beta;
}

/**
 * Δ₂, the L2 bound every conditionally rounded vector satisfies (formula in the module header).
 *
 * @example
 * ```ts
 * inflatedNormBound({ l2Bound: 1000, dimension: 1024 }); // ≈ 1008.5
 * ```
 */
export function inflatedNormBound(params: InflatedBoundParams): number {
  const { l2Bound: c, dimension: d } = params;
  const beta = checkBeta(params.beta ?? DEFAULT_BETA);
  if (typeof c !== 'number' || !Number.isFinite(c) || c < 0) throw new RangeError(`l2Bound must be a finite number ≥ 0, got ${String(c)}`);
  if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`dimension must be a non-negative integer, got ${String(d)}`);
  const sq = Math.sqrt(d);
  const always = c + sq;
  if (beta === 0) return always;
  return Math.min(always, Math.sqrt(c * c + d / 4 + Math.sqrt(2 * Math.log(1 / beta)) * (c + sq / 2)));
}

export interface ConditionalRoundParams {
  /** The scaled vector (finite values, |x| < 2^52). Not modified. */
  values: Float64Array;
  /** Δ₂: redraw while ‖x̃‖₂ > bound (inflatedNormBound of the input's norm bound). */
  bound: number;
  rng?: Rng;
  /** Give up (SecAggError ERR_INTERNAL) after this many draws. Default 1000. */
  maxAttempts?: number;
}

export interface RoundedVector {
  /** Integers, ‖values‖₂ ≤ bound. */
  values: Float64Array;
  /** Draws it took (1 almost always). */
  attempts: number;
  /** ‖values‖₂. */
  norm: number;
}

/**
 * Unbiased randomized rounding to integers, redrawn until the L2 norm is ≤ bound. Each coordinate
 * rounds up with probability (x − ⌊x⌋) to within 2^−32 (one 32-bit word per coordinate per draw).
 *
 * @example
 * ```ts
 * const { values } = conditionalRound({ values: scaled, bound: inflatedNormBound({ l2Bound: c * s, dimension: scaled.length }) });
 * ```
 */
export function conditionalRound(params: ConditionalRoundParams): RoundedVector {
  const { values, bound } = params;
  if (!(values instanceof Float64Array)) throw new TypeError('values must be a Float64Array');
  if (typeof bound !== 'number' || !(bound > 0) || !Number.isFinite(bound)) throw new RangeError(`bound must be a finite number > 0, got ${String(bound)}`);
  const maxAttempts = params.maxAttempts ?? 1000;
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1) throw new RangeError(`maxAttempts must be a positive integer, got ${String(maxAttempts)}`);
  const n = values.length;
  const floor = new Float64Array(n);
  const frac = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const x = values[i]!;
    if (!Number.isFinite(x) || Math.abs(x) >= 2 ** 52) throw new RangeError(`values[${i}] = ${x} is not a finite number below 2^52 in magnitude`);
    const f = Math.floor(x);
    floor[i] = f;
    frac[i] = (x - f) * TWO32; // exact: x − ⌊x⌋ is exact for |x| < 2^52
  }
  const src = new RandomSource(params.rng);
  const out = new Float64Array(n);
  const b2 = bound * bound;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    let sq = 0;
    for (let i = 0; i < n; i++) {
      const q = floor[i]! + (src.uint32() < frac[i]! ? 1 : 0);
      out[i] = q;
      sq += q * q;
    }
    // sq is exact below 2^53; above, allow for its rounding (relative n·2^−53) on the safe side.
    const ok = sq < 2 ** 53 ? sq <= b2 : sq * (1 + n * 2 ** -52) <= b2;
    if (ok) return { values: out, attempts: attempt, norm: Math.sqrt(sq) };
  }
  throw new SecAggError(
    'ERR_INTERNAL',
    `conditional rounding: no draw within the bound ${bound} in ${maxAttempts} attempts (is the input norm above the bound the plan assumed?)`,
  );
}
