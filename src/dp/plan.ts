/**
 * The DP planner: from the round's shape (clients n, the fewest clients n_min a released sum can
 * hold, dimension d, L2 clip c, noise multiplier z, ring bits b) to the scale s, the rounding bound,
 * each client's local noise, the probability bound of a modular wrap, and the accuracy cost.
 *
 * Noise. The target is a released sum whose noise has standard deviation ≥ z·c per coordinate (in
 * the original units), whoever drops out, as long as ≥ n_min clients are in it. So each client adds
 * integer noise of variance v = (z·c·s)² / n_min in grid units: m ≥ n_min clients give m·v ≥ (z·c·s)².
 *
 * Wrap (modular clipping). A coordinate j of the ring sum of m ≤ n clients is, in grid units,
 * S_j = G_j + R_j + N_j: the rotated scaled signal G_j = (1/√D)Σ_k ±X_k with X = s·Σ_i x_i, ‖X‖ ≤ n·c·s,
 * a Rademacher sum over the public random signs (sub-Gaussian, variance proxy (n·c·s)²/D, Hoeffding);
 * the rounding errors R_j, a sum of n independent zero-mean variables each in an interval of length 1
 * (proxy n/4, Hoeffding's lemma); the noise N_j, n·v in total: a discrete Gaussian is sub-Gaussian
 * with proxy its σ² (Canonne–Kamath–Steinke 2020, their sub-Gaussianity result; a sum: n·v), a Skellam of variance V
 * has log-MGF V(cosh t − 1). The Chernoff bound with P = (n·c·s)²/D + n/4 is
 *
 *   Pr[|S_j| ≥ 2^(b−1)] ≤ 2·exp( min_{t>0} [ t²P/2 + ψ(t) − t·2^(b−1) ] ),  ψ(t) = t²·n·v/2 (dgauss) or n·v·(cosh t − 1) (Skellam)
 *
 * and the union over the D coordinates gives wrapProbability = D × that. The planner refuses a plan
 * whose bound exceeds maxWrapProbability (default 1e−6), and otherwise takes the largest scale s
 * within it. (TFF's distributed-DP aggregator instead solves 2^b = 2k·√(ρ(cn)²/D + (γ²/4 + σ²)n)/γ
 * for the grid step γ = 1/s, with k = √2·erfcinv(p) standard deviations for a per-coordinate
 * modclip_prob p, default 1e−4, ρ = 1 — a Gaussian heuristic for one coordinate; ours bounds the
 * whole vector, and for Skellam uses its own tail instead of a Gaussian one.) Caveat, as in TFF and
 * KLS: R_j is modelled by the unconditioned rounding; conditioning on ‖x̃‖ ≤ Δ₂ (probability ≥ 1 − β,
 * in practice ≈ 1) can change it by at most that factor per client.
 *
 * Accuracy. The rotation is orthogonal and every entry of it has magnitude 1/√D, so after the inverse
 * rotation and unpadding, the decoded mean of m clients has expected squared error (in the original
 * units, summed over the d coordinates) of
 *   noise:    d·v / (m·s²)                 (exact: U preserves an i.i.d. covariance)
 *   rounding: ≤ d / (4·m·s²)               (each rounded coordinate has variance p(1−p) ≤ 1/4)
 * against the mean of the clipped inputs.
 */
import { SecAggError } from '../errors.js';
import { inflatedNormBound, DEFAULT_BETA } from './rounding.js';
import { paddedLength } from './rotation.js';

export type DpMechanism = 'skellam' | 'dgauss';

/** The integer noise one client adds to every coordinate. */
export type NoiseSpec =
  | { readonly mechanism: 'skellam'; readonly variance: number }
  | { readonly mechanism: 'dgauss'; readonly sigma2: number }
  | { readonly mechanism: 'none' };

export interface DpPlanOptions {
  /** n: the most clients whose vectors can be in one sum (the cohort); the wrap bound is for n. */
  clients: number;
  /** n_min: the fewest clients in any released sum (the protocol's threshold). Default `clients`. */
  minClients?: number;
  /** d: length of the real-valued update. */
  dimension: number;
  /** c: L2 clip of each client's update. */
  clip: number;
  /** z: the released sum's noise std relative to c (≥ 0; 0 means no noise). */
  noiseMultiplier: number;
  /** Ring Z_{2^bits}, 2..32: pass it as `bits` to the protocol. */
  bits: number;
  /** Default 'skellam'. */
  mechanism?: DpMechanism;
  /** Conditional rounding's β ∈ [0, 1); default exp(−1/2). */
  beta?: number;
  /** Refuse plans whose wrap probability bound is above this; default 1e−6. */
  maxWrapProbability?: number;
  /** Force the scale s instead of choosing the largest that fits (still checked). */
  scale?: number;
}

export interface DpError {
  /** Clients in the sum. */
  readonly clients: number;
  /** Expected ‖decoded mean − mean of the clipped inputs‖², from the noise. */
  readonly noise: number;
  /** Upper bound on the same from rounding. */
  readonly rounding: number;
  /** noise + rounding. */
  readonly total: number;
}

export interface DpPlan {
  readonly version: 1;
  readonly mechanism: DpMechanism;
  readonly clients: number;
  readonly minClients: number;
  readonly dimension: number;
  /** D = the power of two the rotation works on. */
  readonly paddedDimension: number;
  readonly clip: number;
  readonly noiseMultiplier: number;
  readonly bits: number;
  /** s: values are multiplied by s before rounding to integers (the grid step is 1/s). */
  readonly scale: number;
  readonly beta: number;
  /** Δ₂ in grid units: every client's rounded vector has L2 norm ≤ this (its L2 sensitivity). */
  readonly l2Sensitivity: number;
  /** Δ₁ ≤ min(Δ₂², √D·Δ₂) in grid units (for the Skellam accountant). */
  readonly l1Sensitivity: number;
  /** Each client's noise (per coordinate, grid units); a round may replace it (noiseForRound). */
  readonly noise: NoiseSpec;
  /** Noise variance of a sum of minClients clients, grid units: ≥ (z·c·s)². */
  readonly releasedVariance: number;
  /** √(releasedVariance)/Δ₂: the noise multiplier against the inflated sensitivity (≤ z). */
  readonly effectiveNoiseMultiplier: number;
  /** The bound on Pr[any coordinate of a sum of `clients` clients wraps] (formula in the header). */
  readonly wrapProbability: number;
  readonly maxWrapProbability: number;
  /** Accuracy of the decoded mean of `clients` and of `minClients` clients. */
  readonly error: { readonly expected: DpError; readonly worst: DpError };
}

function bad(message: string): never {
  throw new SecAggError('ERR_INVALID_PARAMETERS', `DP plan refused: ${message}`);
}

function positiveInt(x: unknown, name: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 1) bad(`${name} must be a positive integer, got ${String(x)}`);
  return x;
}

function finite(x: unknown, name: string, min: number, strict: boolean): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x < min || (strict && x === min))
    bad(`${name} must be a finite number ${strict ? '>' : '≥'} ${min}, got ${String(x)}`);
  return x;
}

export interface WrapParams {
  mechanism: DpMechanism | 'none';
  /** Clients in the sum. */
  clients: number;
  /** D. */
  paddedDimension: number;
  /** c·s: each client's scaled L2 bound before rounding. */
  scaledClip: number;
  /** Total noise variance in the sum (grid units): clients × each client's variance. */
  noiseVariance: number;
  bits: number;
}

/** ln of the one-sided Chernoff bound exp(min_t [t²P/2 + ψ(t) − t·a]). */
function logTail(P: number, V: number, a: number, skellam: boolean): number {
  if (!skellam || V === 0) return -(a * a) / (2 * (P + V));
  // f'(t) = tP + V·sinh t − a is increasing; its root lies in (0, min(a/P, asinh(a/V))].
  let lo = 0;
  let hi = Math.min(P > 0 ? a / P : Number.POSITIVE_INFINITY, Math.asinh(a / V));
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (mid * P + V * Math.sinh(mid) - a > 0) hi = mid;
    else lo = mid;
  }
  const t = (lo + hi) / 2;
  return (t * t * P) / 2 + V * (Math.cosh(t) - 1) - t * a;
}

/**
 * The union bound on a wrap in any coordinate of a ring sum (formula in the module header).
 *
 * @example
 * ```ts
 * wrapProbability({ mechanism: 'skellam', clients: 100, paddedDimension: 1024, scaledClip: 500, noiseVariance: 1e6, bits: 16 });
 * ```
 */
export function wrapProbability(params: WrapParams): number {
  const { clients: n, paddedDimension: D, scaledClip: cs, noiseVariance: V, bits } = params;
  const P = (n * cs) ** 2 / D + n / 4;
  const a = 2 ** (bits - 1);
  const log = Math.log(2 * D) + logTail(P, V, a, params.mechanism === 'skellam');
  return Math.min(1, Math.exp(log));
}

function localNoise(mechanism: DpMechanism, variance: number): NoiseSpec {
  if (variance === 0) return { mechanism: 'none' };
  return mechanism === 'skellam' ? { mechanism, variance } : { mechanism, sigma2: variance };
}

/** Per-client variance (grid units) of a NoiseSpec. */
export function noiseVariance(noise: NoiseSpec): number {
  return noise.mechanism === 'skellam' ? noise.variance : noise.mechanism === 'dgauss' ? noise.sigma2 : 0;
}

function errorFor(d: number, s: number, v: number, m: number): DpError {
  const noise = (d * v) / (m * s * s);
  const rounding = d / (4 * m * s * s);
  return { clients: m, noise, rounding, total: noise + rounding };
}

/**
 * Plan a DP round. Throws SecAggError ERR_INVALID_PARAMETERS, naming the parameter, for bad input
 * and for every configuration whose wrap bound exceeds maxWrapProbability at any scale.
 *
 * @example
 * ```ts
 * const plan = planDp({ clients: 100, minClients: 60, dimension: 10_000, clip: 1, noiseMultiplier: 1, bits: 18 });
 * plan.scale; plan.noise; plan.wrapProbability; plan.error.expected.total;
 * ```
 */
export function planDp(options: DpPlanOptions): DpPlan {
  if (typeof options !== 'object' || options === null) throw new TypeError('planDp needs an options object');
  const n = positiveInt(options.clients, 'clients');
  const nMin = positiveInt(options.minClients ?? n, 'minClients');
  if (nMin > n) bad(`minClients (${nMin}) must be ≤ clients (${n})`);
  const d = positiveInt(options.dimension, 'dimension');
  const c = finite(options.clip, 'clip', 0, true);
  const z = finite(options.noiseMultiplier, 'noiseMultiplier', 0, false);
  const bits = options.bits;
  if (typeof bits !== 'number' || !Number.isInteger(bits) || bits < 2 || bits > 32) bad(`bits must be an integer in [2, 32], got ${String(bits)}`);
  const mechanism = options.mechanism ?? 'skellam';
  if (mechanism !== 'skellam' && mechanism !== 'dgauss') bad(`mechanism must be 'skellam' or 'dgauss', got ${String(mechanism)}`);
  const beta = options.beta ?? DEFAULT_BETA;
  if (typeof beta !== 'number' || !(beta >= 0 && beta < 1)) bad(`beta must be a number in [0, 1), got ${String(beta)}`);
  const pMax = finite(options.maxWrapProbability ?? 1e-6, 'maxWrapProbability', 0, true);
  if (pMax >= 1) bad(`maxWrapProbability must be < 1, got ${pMax}`);
  let D: number;
  try {
    D = paddedLength(d);
  } catch (e) {
    bad(`dimension ${d}: ${(e as Error).message}`);
  }

  const varianceAt = (s: number) => (z * c * s) ** 2 / nMin;
  const wrapAt = (s: number) => wrapProbability({ mechanism, clients: n, paddedDimension: D, scaledClip: c * s, noiseVariance: n * varianceAt(s), bits });

  let s: number;
  if (options.scale !== undefined) {
    s = finite(options.scale, 'scale', 0, true);
    const w = wrapAt(s);
    if (w > pMax) bad(`scale ${s}: the wrap probability bound ${w.toExponential(3)} exceeds maxWrapProbability ${pMax}; use a smaller scale or more bits`);
  } else {
    // The bound grows with s (P and n·v grow as s²): bisect on log s for the largest s within pMax.
    const floor = wrapAt(0);
    if (floor > pMax)
      bad(
        `bits = ${bits} cannot hold a sum of ${n} clients at any scale: the rounding alone gives a wrap probability bound of ${floor.toExponential(3)} > maxWrapProbability ${pMax} (need 2^(bits−1) well above √(n/4)·√(2 ln(2D/p)))`,
      );
    // Keep scaled values far inside the safe integers (|scaled coordinate| ≤ c·s ≤ 2^40).
    const sMax = 2 ** 40 / c;
    let lo = 0;
    let hi = sMax;
    if (wrapAt(hi) <= pMax) lo = hi;
    else {
      // Find a bracket in log space, then bisect.
      let probe = 1 / c;
      while (wrapAt(probe) <= pMax && probe < sMax) probe *= 2;
      while (wrapAt(probe) > pMax && probe > 2 ** -60) probe /= 2;
      lo = probe;
      hi = Math.min(sMax, probe * 2);
      for (let i = 0; i < 80; i++) {
        const mid = Math.sqrt(lo * hi);
        if (wrapAt(mid) <= pMax) lo = mid;
        else hi = mid;
      }
    }
    s = lo;
    if (!(s > 0) || wrapAt(s) > pMax) bad(`no scale keeps the wrap probability bound below ${pMax} with bits = ${bits}`);
  }

  const v = varianceAt(s);
  const noise = localNoise(mechanism, v);
  const l2 = inflatedNormBound({ l2Bound: c * s, dimension: D, beta });
  const released = nMin * v;
  const plan: DpPlan = {
    version: 1,
    mechanism,
    clients: n,
    minClients: nMin,
    dimension: d,
    paddedDimension: D,
    clip: c,
    noiseMultiplier: z,
    bits,
    scale: s,
    beta,
    l2Sensitivity: l2,
    l1Sensitivity: Math.min(l2 * l2, Math.sqrt(D) * l2),
    noise: Object.freeze(noise),
    releasedVariance: released,
    effectiveNoiseMultiplier: Math.sqrt(released) / l2,
    wrapProbability: wrapAt(s),
    maxWrapProbability: pMax,
    error: Object.freeze({ expected: Object.freeze(errorFor(d, s, v, n)), worst: Object.freeze(errorFor(d, s, v, nMin)) }),
  };
  return Object.freeze(plan);
}

export interface NoiseForRoundParams {
  plan: DpPlan;
  /** The fewest clients that can be in this round's released sum, known once the cohort is (e.g. the threshold). */
  minClients: number;
  /** Clients in this round's cohort (≤ plan.clients); default plan.clients. */
  clients?: number;
}

/**
 * Each client's noise for one round whose cohort is known: variance (z·c·s)²/minClients, so any
 * released sum of ≥ minClients clients carries ≥ (z·c·s)². Refused when the larger noise would break
 * the plan's wrap bound.
 *
 * @example
 * ```ts
 * const noise = noiseForRound({ plan, minClients: threshold, clients: cohort.length });
 * encodeDp({ values, plan, seed, noise });
 * ```
 */
export function noiseForRound(params: NoiseForRoundParams): NoiseSpec {
  const { plan } = params;
  if (typeof plan !== 'object' || plan === null || plan.version !== 1) throw new TypeError('plan must be a DpPlan from planDp()');
  const n = positiveInt(params.clients ?? plan.clients, 'clients');
  if (n > plan.clients) bad(`clients (${n}) exceeds the plan's ${plan.clients}`);
  const nMin = positiveInt(params.minClients, 'minClients');
  if (nMin > n) bad(`minClients (${nMin}) must be ≤ clients (${n})`);
  const v = (plan.noiseMultiplier * plan.clip * plan.scale) ** 2 / nMin;
  const w = wrapProbability({
    mechanism: plan.mechanism,
    clients: n,
    paddedDimension: plan.paddedDimension,
    scaledClip: plan.clip * plan.scale,
    noiseVariance: n * v,
    bits: plan.bits,
  });
  if (w > plan.maxWrapProbability)
    bad(
      `minClients ${nMin}: each client's noise ${v.toPrecision(6)} gives a wrap probability bound ${w.toExponential(3)} > ${plan.maxWrapProbability}; plan with this minClients`,
    );
  return Object.freeze(localNoise(plan.mechanism, v));
}
