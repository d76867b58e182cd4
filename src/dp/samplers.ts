/**
 * Integer noise samplers (isomorphic; randomness from an injected `Rng`, the platform CSPRNG by
 * default — never Math.random).
 *
 * - Discrete Gaussian N_Z(0, σ²), P[X = x] ∝ exp(−x²/2σ²): EXACT, the rejection sampler of
 *   Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020),
 *   Algorithms 1–3: Bernoulli(exp(−γ)) by Forsythe–von Neumann trials, a discrete Laplace of integer
 *   scale t = ⌊σ⌋ + 1 as proposal, and acceptance with probability exp(−(|Y| − σ²/t)²/2σ²). σ² is
 *   the double it is given, taken as the exact rational p/2^e it denotes. Every probability compared
 *   against is a ratio of integers: small ones with exact integer draws, the acceptance exponent
 *   with one 32-bit word against its floating-point value (relative error < 2^−50, with a margin of
 *   2^−44) and, in the ~2^−31 of cases that word cannot decide, exact BigInt comparison with as many
 *   further words as it takes. So the output distribution is exactly N_Z(0, σ²), not a rounding.
 * - Poisson(λ): inversion by sequential search for λ < 10 (one uniform per draw); Hörmann's PTRS
 *   (transformed rejection with squeeze, "The transformed rejection method for generating Poisson
 *   random variables", Insurance: Mathematics and Economics 12, 1993) for λ ≥ 10, O(1) per draw at
 *   any λ. Both in double precision (like numpy's and TensorFlow's Poisson samplers): probabilities
 *   are off by floating-point rounding (relative ~1e−15), which the Skellam analysis tolerates.
 * - Skellam of variance v: Poisson(v/2) − Poisson(v/2), mean 0, variance v. (Agarwal, Kairouz and
 *   Liu, "The Skellam Mechanism for Differentially Private Federated Learning", NeurIPS 2021, write
 *   Sk(μ) = Pois(μ) − Pois(μ) of variance 2μ; here the parameter is the variance itself.)
 * - Binomial(n, p), one n per coordinate (the Poisson thinning of removable noise): with
 *   q = min(p, 1 − p) (a draw for 1 − p is n minus a draw for p), inversion by sequential search
 *   from 0 for n·q < 10 (one uniform per draw, the recurrence f(k+1) = f(k)·(n − k)/(k + 1)·q/(1 − q)
 *   from f(0) = (1 − q)^n ≥ e^−10.6); Hörmann's BTRS (transformed rejection with squeeze, "The
 *   generation of binomial random variates", J. Statist. Comput. Simul. 46, 1993) for n·q ≥ 10, O(1)
 *   per draw at any n. Double precision, like the Poisson sampler.
 */
import { aint } from '../errors.js';
import type { Rng } from '../rng.js';
import { RandomSource, YES } from './random.js';

const MAX_LENGTH = 2 ** 31;
/** σ² up to 2^52 (σ ≈ 6.7·10^7): t² and |Y|·t stay exact in doubles where the sampler needs them. */
const MAX_DGAUSS_VARIANCE: number = 2 ** 52;
/** Poisson means up to 2^50 (draws stay far inside the safe integers). */
const MAX_POISSON_MEAN: number = 2 ** 50;
const TWO26 = 67108864;

function checkLength(length: unknown): number {
  aint(length, 'length', 0, MAX_LENGTH);
  return length;
}

function source(rng: Rng | undefined): RandomSource {
  return new RandomSource(rng);
}

// ---------------------------------------------------------------- Bernoulli(exp(−γ)) pieces

/** Bernoulli(exp(−a/b)) for integers 0 ≤ a ≤ b (CKS Algorithm 1: K is odd w.p. exp(−a/b)). */
function bernoulliExpRatio(src: RandomSource, a: number, b: number): boolean {
  let k = 1;
  for (;;) {
    let hit: boolean;
    if (k < TWO26) hit = src.bernoulli(a, b * k);
    else {
      const w = src.decide(a / b / k);
      hit = w < 0 ? w === YES : src.resolve(w, BigInt(a), BigInt(b) * BigInt(k));
    }
    if (!hit) break;
    k++;
  }
  return (k & 1) === 1;
}

/** Bernoulli(exp(−1)). */
function bernoulliExpMinusOne(src: RandomSource): boolean {
  // Trial k succeeds w.p. 1/k: the first always, the second on a fair coin.
  if (src.bit() === 0) return false; // k = 2
  let k = 3;
  while (src.bernoulli(1, k)) k++;
  return (k & 1) === 1;
}

/** Discrete Laplace with integer scale t ≥ 1: P[X = x] ∝ exp(−|x|/t) (CKS Algorithm 2). */
function discreteLaplace(src: RandomSource, t: number): number {
  for (;;) {
    const u = src.below(t);
    if (!bernoulliExpRatio(src, u, t)) continue;
    let v = 0;
    while (bernoulliExpMinusOne(src)) v++;
    const x = u + t * v;
    const negative = src.bit() === 1;
    if (negative && x === 0) continue;
    return negative ? -x : x;
  }
}

/** σ² = p / q exactly, with q a power of two. */
function exactRational(x: number): { p: bigint; q: bigint } {
  let e = 0;
  let y = x;
  while (!Number.isInteger(y)) {
    y *= 2; // exact: a power-of-two scaling of a double
    e++;
  }
  return { p: BigInt(y), q: 1n << BigInt(e) };
}

/** Precomputed constants of N_Z(0, σ²) for one σ². */
interface DGauss {
  readonly sigma2: number;
  readonly t: number;
  readonly p: bigint;
  readonly q: bigint;
  readonly tBig: bigint;
  /** 2·p·q·t²: the denominator of the acceptance exponent (M² / this, M = q·t·|Y| − p). */
  readonly den: bigint;
  /** 2σ²t² in floating point. */
  readonly denF: number;
}

function dgaussConstants(sigma2: number): DGauss {
  let t = Math.floor(Math.sqrt(sigma2));
  while ((t + 1) * (t + 1) <= sigma2) t++;
  while (t * t > sigma2) t--;
  t += 1; // t = ⌊σ⌋ + 1, exactly
  const { p, q } = exactRational(sigma2);
  const tBig = BigInt(t);
  return { sigma2, t, p, q, tBig, den: 2n * p * q * tBig * tBig, denF: 2 * sigma2 * t * t };
}

/** One draw of N_Z(0, σ²) (CKS Algorithm 3). */
function discreteGaussian(src: RandomSource, g: DGauss): number {
  for (;;) {
    const y = discreteLaplace(src, g.t);
    const ay = Math.abs(y);
    // γ = (|y| − σ²/t)² / 2σ² = (|y|·t − σ²)² / (2σ²t²) = M² / (2pqt²) with M = q·t·|y| − p.
    const diff = ay * g.t - g.sigma2; // rel. error ≤ 2^−53 (see the header; no cancellation of inexact terms)
    if (diff === 0 && ay * g.t <= Number.MAX_SAFE_INTEGER) return y; // γ = 0 exactly: accept
    const gamma = (diff * diff) / g.denF;
    // exp(−γ) = Π_{i<m} exp(−γ/m) with each γ/m ≤ 1, so Algorithm 1 applies to each piece.
    const m = Math.max(1, Math.ceil(gamma * (1 + 2 ** -40)));
    let m2 = -1n;
    let accept = true;
    for (let i = 0; i < m && accept; i++) {
      let k = 1;
      for (;;) {
        const w = src.decide(gamma / (m * k));
        let hit = w === YES;
        if (w >= 0) {
          if (m2 < 0n) {
            const big = g.q * g.tBig * BigInt(ay) - g.p;
            m2 = big * big;
          }
          hit = src.resolve(w, m2, g.den * BigInt(m) * BigInt(k));
        }
        if (!hit) break;
        k++;
      }
      accept = (k & 1) === 1;
    }
    if (accept) return y;
  }
}

export interface DiscreteGaussianParams {
  /** σ² ≥ 0 (0 gives zeros), at most MAX_DGAUSS_VARIANCE. Taken as the exact rational the double denotes. */
  sigma2: number;
  length: number;
  /** Default: the platform CSPRNG. */
  rng?: Rng;
}

/**
 * `length` independent draws of the discrete Gaussian N_Z(0, σ²), exactly.
 *
 * @example
 * ```ts
 * const noise = sampleDiscreteGaussian({ sigma2: 2.25, length: 1024 }); // Float64Array of integers
 * ```
 */
export function sampleDiscreteGaussian(params: DiscreteGaussianParams): Float64Array {
  if (typeof params !== 'object' || params === null) throw new TypeError('sampleDiscreteGaussian needs a params object');
  const { sigma2 } = params;
  if (typeof sigma2 !== 'number' || !Number.isFinite(sigma2) || sigma2 < 0 || sigma2 > MAX_DGAUSS_VARIANCE)
    throw new RangeError(`sigma2 must be a finite number in [0, 2^52], got ${String(sigma2)}`);
  const out = new Float64Array(checkLength(params.length));
  if (sigma2 === 0) return out;
  const src = source(params.rng);
  const g = dgaussConstants(sigma2);
  for (let i = 0; i < out.length; i++) out[i] = discreteGaussian(src, g);
  return out;
}

// ---------------------------------------------------------------- Poisson and Skellam

const LOG_FACTORIAL = (() => {
  const t = new Float64Array(256);
  for (let k = 2; k < 256; k++) t[k] = t[k - 1]! + Math.log(k);
  return t;
})();
const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

/** ln k! : a table below 256, Stirling's series (error < 1/(1680 k^7)) above. */
function logFactorial(k: number): number {
  if (k < 256) return LOG_FACTORIAL[k]!;
  const r = 1 / k;
  const r2 = r * r;
  return (k + 0.5) * Math.log(k) - k + HALF_LOG_2PI + r * (1 / 12 - r2 * (1 / 360 - r2 / 1260));
}

/** Sampler for one mean: constants computed once per vector. */
function poissonSampler(mean: number): (src: RandomSource) => number {
  if (mean === 0) return () => 0;
  if (mean < 10) {
    const e = Math.exp(-mean);
    // Beyond this the remaining tail mass is < 1e−300: a floating-point sum that stops short of u restarts.
    const cap = Math.ceil(mean + 40 * Math.sqrt(mean) + 60);
    return (src) => {
      for (;;) {
        const u = src.uniform();
        let k = 0;
        let p = e;
        let s = p;
        while (u >= s && k < cap) {
          k++;
          p = (p * mean) / k;
          s += p;
        }
        if (u < s) return k;
      }
    };
  }
  // PTRS (Hörmann 1993), the constants of the paper.
  const smu = Math.sqrt(mean);
  const b = 0.931 + 2.53 * smu;
  const a = -0.059 + 0.02483 * b;
  const logInvAlpha = Math.log(1.1239 + 1.1328 / (b - 3.4));
  const vr = 0.9277 - 3.6224 / (b - 2);
  const logMean = Math.log(mean);
  return (src) => {
    for (;;) {
      const u = src.uniform() - 0.5;
      const v = src.uniform();
      const us = 0.5 - Math.abs(u);
      if (us === 0) continue;
      const k = Math.floor(((2 * a) / us + b) * u + mean + 0.43);
      if (us >= 0.07 && v <= vr) return k; // the squeeze: accepted without the density
      if (k < 0 || (us < 0.013 && v > us)) continue;
      if (Math.log(v) + logInvAlpha - Math.log(a / (us * us) + b) <= -mean + k * logMean - logFactorial(k)) return k;
    }
  };
}

function checkMean(mean: unknown, name: string, max: number): number {
  if (typeof mean !== 'number' || !Number.isFinite(mean) || mean < 0 || mean > max)
    throw new RangeError(`${name} must be a finite number in [0, ${max}], got ${String(mean)}`);
  return mean;
}

export interface PoissonParams {
  /** λ ≥ 0, at most MAX_POISSON_MEAN. */
  mean: number;
  length: number;
  rng?: Rng;
}

/**
 * `length` independent Poisson(λ) draws.
 *
 * @example
 * ```ts
 * const counts = samplePoisson({ mean: 3.5, length: 100 });
 * ```
 */
export function samplePoisson(params: PoissonParams): Float64Array {
  if (typeof params !== 'object' || params === null) throw new TypeError('samplePoisson needs a params object');
  const mean = checkMean(params.mean, 'mean', MAX_POISSON_MEAN);
  const out = new Float64Array(checkLength(params.length));
  const draw = poissonSampler(mean);
  const src = source(params.rng);
  for (let i = 0; i < out.length; i++) out[i] = draw(src);
  return out;
}

export interface SkellamParams {
  /** The variance v ≥ 0 of each draw (each is Poisson(v/2) − Poisson(v/2)), at most 2·MAX_POISSON_MEAN. */
  variance: number;
  length: number;
  rng?: Rng;
}

/**
 * `length` independent symmetric Skellam draws of variance v: Poisson(v/2) − Poisson(v/2).
 *
 * @example
 * ```ts
 * const noise = sampleSkellam({ variance: 400, length: 1024 });
 * ```
 */
export function sampleSkellam(params: SkellamParams): Float64Array {
  if (typeof params !== 'object' || params === null) throw new TypeError('sampleSkellam needs a params object');
  const variance = checkMean(params.variance, 'variance', 2 * MAX_POISSON_MEAN);
  const out = new Float64Array(checkLength(params.length));
  const draw = poissonSampler(variance / 2);
  const src = source(params.rng);
  for (let i = 0; i < out.length; i++) out[i] = draw(src) - draw(src);
  return out;
}

// ---------------------------------------------------------------- Binomial

/** n up to 2^52: every count and k·log term stays exact enough in doubles. */
const MAX_BINOMIAL_TRIALS = 2 ** 52;

/** One Binomial(n, q) draw for q ≤ 1/2 (the caller flips for q > 1/2). */
function binomialDraw(src: RandomSource, n: number, q: number): number {
  if (n === 0 || q === 0) return 0;
  const nq = n * q;
  if (nq < 10) {
    // Inversion: f(0) = (1 − q)^n = exp(n·log1p(−q)) ≥ exp(−10.6) for q ≤ 1/2, so no underflow.
    const f0 = Math.exp(n * Math.log1p(-q));
    const s = q / (1 - q);
    // Beyond this the tail mass is < 1e−300 (as for the Poisson inversion): a sum that stops short restarts.
    const cap = Math.min(n, Math.ceil(nq + 40 * Math.sqrt(nq) + 60));
    for (;;) {
      const u = src.uniform();
      let k = 0;
      let f = f0;
      let acc = f;
      while (u >= acc && k < cap) {
        f = (f * (n - k) * s) / (k + 1);
        k++;
        acc += f;
      }
      if (u < acc) return k;
    }
  }
  // BTRS (Hörmann 1993), the constants of the paper (as in numpy's and TensorFlow's samplers).
  const spq = Math.sqrt(nq * (1 - q));
  const b = 1.15 + 2.53 * spq;
  const a = -0.0873 + 0.0248 * b + 0.01 * q;
  const c = nq + 0.5;
  const vr = 0.92 - 4.2 / b;
  const alpha = (2.83 + 5.1 / b) * spq;
  const lpq = Math.log(q / (1 - q));
  const m = Math.floor((n + 1) * q);
  const h = logFactorial(m) + logFactorial(n - m);
  for (;;) {
    const u = src.uniform() - 0.5;
    const v = src.uniform();
    const us = 0.5 - Math.abs(u);
    if (us === 0) continue;
    const k = Math.floor(((2 * a) / us + b) * u + c);
    if (k < 0 || k > n) continue;
    if (us >= 0.07 && v <= vr) return k; // the squeeze
    if (v === 0) continue;
    const lhs = Math.log((v * alpha) / (a / (us * us) + b));
    if (lhs <= h - logFactorial(k) - logFactorial(n - k) + (k - m) * lpq) return k;
  }
}

export interface BinomialParams {
  /** n per draw: one non-negative integer (≤ 2^52) for every draw, or a vector of them (one draw each). */
  trials: number | Float64Array;
  /** p in [0, 1]. */
  probability: number;
  /** Draws when `trials` is a number; ignored (the vector's length) otherwise. */
  length?: number;
  rng?: Rng;
}

/**
 * Independent Binomial(n_i, p) draws. With `trials` a vector (the Poisson counts of removable
 * Skellam noise), draw i is Binomial(trials[i], p): the Poisson thinning of docs/privacy.md.
 *
 * @example
 * ```ts
 * const removed = sampleBinomial({ trials: samplePoisson({ mean: 50, length: 8 }), probability: 0.25 });
 * ```
 */
export function sampleBinomial(params: BinomialParams): Float64Array {
  if (typeof params !== 'object' || params === null) throw new TypeError('sampleBinomial needs a params object');
  const { trials, probability: p } = params;
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new RangeError(`probability must be in [0, 1], got ${String(p)}`);
  const checkTrials = (n: unknown, what: string): number => {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_BINOMIAL_TRIALS)
      throw new RangeError(`${what} must be an integer in [0, 2^52], got ${String(n)}`);
    return n;
  };
  const vector = trials instanceof Float64Array;
  if (!vector) checkTrials(trials, 'trials');
  const length = vector ? trials.length : checkLength(params.length);
  const out = new Float64Array(length);
  const flip = p > 0.5;
  const q = flip ? 1 - p : p;
  const src = source(params.rng);
  for (let i = 0; i < length; i++) {
    const n = vector ? checkTrials(trials[i], `trials[${i}]`) : (trials as number);
    if (p === 1) out[i] = n;
    else {
      const k = binomialDraw(src, n, q);
      out[i] = flip ? n - k : k;
    }
  }
  return out;
}
