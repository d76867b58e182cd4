/**
 * Reference statistics for the dp/ tests (no tests registered here): exact pmfs computed
 * independently of the samplers, a deterministic fast test Rng, and the chi-square upper tail.
 */
import { createCipheriv } from 'node:crypto';
import type { Rng } from '../src/rng.js';

/**
 * A deterministic Rng for tests only: the AES-128-CTR keystream of a key derived from `seed`
 * (node:crypto, GB/s — the samplers' statistical tests draw hundreds of MB).
 */
export function unsafeFastSeededRng(seed: number): Rng {
  const key = Buffer.alloc(16);
  key.writeDoubleLE(seed, 0);
  key.write('dp-test!', 8);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return (length) => new Uint8Array(cipher.update(Buffer.alloc(length)));
}

/** A pmf on the integers lo..lo+p.length−1 (normalised). */
export interface Pmf {
  lo: number;
  p: Float64Array;
}

function normalise(lo: number, w: Float64Array): Pmf {
  let s = 0;
  for (const x of w) s += x;
  for (let i = 0; i < w.length; i++) w[i] = w[i]! / s;
  return { lo, p: w };
}

/** N_Z(0, σ²): exp(−x²/2σ²) normalised over |x| ≤ 40σ + 10 (the mass beyond is < e^−800). */
export function dgaussPmf(sigma2: number): Pmf {
  const r = Math.ceil(40 * Math.sqrt(sigma2) + 10);
  const w = new Float64Array(2 * r + 1);
  for (let x = -r; x <= r; x++) w[x + r] = Math.exp(-(x * x) / (2 * sigma2));
  return normalise(-r, w);
}

/** Poisson(λ) by the recurrence p(k+1) = p(k)·λ/(k+1) from the mode, over mode ± (15√λ + 30), normalised. */
export function poissonPmf(lambda: number): Pmf {
  const mode = Math.floor(lambda);
  const r = Math.ceil(15 * Math.sqrt(lambda) + 30);
  const lo = Math.max(0, mode - r);
  const hi = mode + r;
  const w = new Float64Array(hi - lo + 1);
  w[mode - lo] = 1;
  for (let k = mode; k < hi; k++) w[k + 1 - lo] = (w[k - lo]! * lambda) / (k + 1);
  for (let k = mode; k > lo; k--) w[k - 1 - lo] = (w[k - lo]! * k) / lambda;
  return normalise(lo, w);
}

/** Binomial(n, p) by the recurrence f(k+1) = f(k)·(n − k)/(k + 1)·p/(1 − p) from the mode, over mode ± (15σ + 30) ∩ [0, n], normalised. */
export function binomialPmf(n: number, p: number): Pmf {
  const mode = Math.min(n, Math.floor((n + 1) * p));
  const r = Math.ceil(15 * Math.sqrt(n * p * (1 - p)) + 30);
  const lo = Math.max(0, mode - r);
  const hi = Math.min(n, mode + r);
  const w = new Float64Array(hi - lo + 1);
  w[mode - lo] = 1;
  const odds = p / (1 - p);
  for (let k = mode; k < hi; k++) w[k + 1 - lo] = (w[k - lo]! * (n - k) * odds) / (k + 1);
  for (let k = mode; k > lo; k--) w[k - 1 - lo] = (w[k - lo]! * k) / ((n - k + 1) * odds);
  return normalise(lo, w);
}

/** Skellam of variance v: the pmf of P1 − P2 for P1, P2 ~ Poisson(v/2), by convolving the two pmfs. */
export function skellamPmf(variance: number): Pmf {
  const pois = poissonPmf(variance / 2);
  const n = pois.p.length;
  const w = new Float64Array(2 * n - 1); // differences −(n−1)..(n−1)
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) w[i - j + n - 1]! += pois.p[i]! * pois.p[j]!;
  return normalise(-(n - 1), w);
}

export function moments(pmf: Pmf, centre: number): { m2: number; m4: number; mean: number } {
  let mean = 0;
  let m2 = 0;
  let m4 = 0;
  for (let i = 0; i < pmf.p.length; i++) {
    const x = pmf.lo + i;
    const p = pmf.p[i]!;
    mean += x * p;
    const y = (x - centre) ** 2;
    m2 += y * p;
    m4 += y * y * p;
  }
  return { mean, m2, m4 };
}

/** ln Γ(x) by the Lanczos approximation (g = 7, 9 terms; relative error ~1e−15). */
function lnGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012,
    9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  const y = x - 1;
  let a = c[0]!;
  const t = y + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (y + i);
  return 0.5 * Math.log(2 * Math.PI) + (y + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Q(a, x) = Γ(a, x)/Γ(a), the regularised upper incomplete gamma (series below a+1, continued fraction above). */
function gammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  const lg = lnGamma(a);
  if (x < a + 1) {
    let sum = 1 / a;
    let term = sum;
    for (let n = 1; n < 100000; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-16) break;
    }
    return 1 - sum * Math.exp(-x + a * Math.log(x) - lg);
  }
  // Lentz's continued fraction.
  let b = x + 1 - a;
  let c = 1 / 1e-300;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 100000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (Math.abs(c) < 1e-300) c = 1e-300;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return Math.exp(-x + a * Math.log(x) - lg) * h;
}

/** P[χ²_df ≥ x]. */
export function chiSquareSurvival(x: number, df: number): number {
  return gammaQ(df / 2, x / 2);
}

/**
 * Pearson's chi-square of integer samples against a pmf, with adjacent values merged left to right
 * into bins of expected count ≥ minExpected (the tails included in the end bins).
 */
export function chiSquareTest(samples: Float64Array, pmf: Pmf, minExpected = 50): { stat: number; df: number; pValue: number } {
  const n = samples.length;
  const counts = new Float64Array(pmf.p.length);
  for (let i = 0; i < n; i++) {
    const k = samples[i]! - pmf.lo;
    if (!Number.isInteger(k)) throw new Error(`sample ${samples[i]} is not an integer`);
    counts[Math.max(0, Math.min(pmf.p.length - 1, k))]!++;
  }
  const bins: { o: number; e: number }[] = [];
  let o = 0;
  let e = 0;
  for (let i = 0; i < pmf.p.length; i++) {
    o += counts[i]!;
    e += pmf.p[i]! * n;
    if (e >= minExpected) {
      bins.push({ o, e });
      o = 0;
      e = 0;
    }
  }
  const last = bins[bins.length - 1]!;
  last.o += o;
  last.e += e;
  let stat = 0;
  for (const b of bins) stat += ((b.o - b.e) * (b.o - b.e)) / b.e;
  const df = bins.length - 1;
  return { stat, df, pValue: chiSquareSurvival(stat, df) };
}

/** Two-sided normal tail at |z| = 5: 5.7e−7. Each z-test below uses this threshold. */
export const Z_LIMIT = 5;
/** Chi-square tests reject at p < 1e−6. */
export const P_LIMIT = 1e-6;
