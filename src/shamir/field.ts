/**
 * Arithmetic in Z_p for p = 2^26 − 5, in plain JavaScript Numbers.
 *
 * Why this prime: every product of two field elements is < 2^52, so a·b + c < 2^53 is exact in a
 * double and needs no BigInt (which is ~100× slower) and no 16-bit limb splitting (which 2^31−1
 * would need for exact products). 2^26 − 5 is the largest prime below 2^26; it is > 65,535, so all
 * client ids are distinct nonzero x-coordinates. Primality is checked independently in the tests.
 *
 * Nothing here validates its inputs: callers pass integers already in [0, p). The public, validating
 * API is in shamir.ts.
 */
export const P = 67108859; // 2^26 − 5

// Reduction by multiply-with-reciprocal instead of `%`: V8 lowers `%` on non-int32 doubles to a
// libm fmod call, which is several times slower than this in the Horner and Lagrange loops.
// For 0 ≤ v < 2^53 the rounded quotient is off by at most one, and q·P < 2^53 is exact, so one
// conditional correction gives the exact remainder.
const INV_P = 1 / P;

/** v mod P for an integer 0 ≤ v < 2^53. */
export function reduce(v: number): number {
  const r = v - Math.floor(v * INV_P) * P;
  return r < 0 ? r + P : r >= P ? r - P : r;
}

export function sub(a: number, b: number): number {
  const s = a - b;
  return s < 0 ? s + P : s;
}

export function mul(a: number, b: number): number {
  return reduce(a * b);
}

/** Multiplicative inverse by the extended Euclidean algorithm (all intermediates stay < 2^27). */
export function inv(a: number): number {
  if (a === 0) throw new RangeError('0 has no inverse');
  let r0 = P;
  let r1 = a;
  let s0 = 0;
  let s1 = 1;
  while (r1 !== 0) {
    const q = Math.floor(r0 / r1);
    const r2 = r0 - q * r1;
    r0 = r1;
    r1 = r2;
    // |s| ≤ P throughout, q·s1 < 2^52: exact.
    const s2 = s0 - q * s1;
    s0 = s1;
    s1 = s2;
  }
  return s0 < 0 ? s0 + P : s0;
}

/**
 * Inverts every element of `values` in place with one field inversion (Montgomery's trick):
 * prefix products, invert the total, then walk back. All values must be nonzero.
 */
export function batchInvert(values: Float64Array): Float64Array {
  const n = values.length;
  if (n === 0) return values;
  const prefix = new Float64Array(n);
  let acc = 1;
  for (let i = 0; i < n; i++) {
    prefix[i] = acc;
    acc = reduce(acc * values[i]!);
  }
  let invAcc = inv(acc);
  for (let i = n - 1; i >= 0; i--) {
    const v = values[i]!;
    values[i] = reduce(invAcc * prefix[i]!);
    invAcc = reduce(invAcc * v);
  }
  return values;
}

/** x mod P as a field element, for a (possibly negative) integer with |x| < P. */
function fe(x: number): number {
  return x < 0 ? x + P : x;
}

/**
 * Barycentric weights w_i = 1 / Π_{j≠i} (x_i − x_j) for distinct xs in [1, 65535].
 * O(k²) multiplications and one inversion; everything else about interpolation on this point set
 * is O(k) per evaluation point once these are known.
 */
export function barycentricWeights(xs: ArrayLike<number>): Float64Array {
  const d = new Float64Array(xs.length);
  weightDenominators(xs, d, 0, xs.length);
  return batchInvert(d);
}

/**
 * barycentricWeights in slices of about SLICE_WORK field multiplications, awaiting
 * `yieldToEventLoop` between them, so an O(k²) set-up never holds the thread for long.
 */
export async function barycentricWeightsInSlices(xs: ArrayLike<number>, yieldToEventLoop: () => Promise<void>): Promise<Float64Array> {
  const k = xs.length;
  const d = new Float64Array(k);
  const rows = Math.max(1, Math.floor(SLICE_WORK / Math.max(1, k)));
  for (let from = 0; from < k; from += rows) {
    weightDenominators(xs, d, from, Math.min(k, from + rows));
    await yieldToEventLoop();
  }
  return batchInvert(d);
}

/** Field multiplications per slice of a sliced O(k²) computation: a millisecond or two. */
export const SLICE_WORK = 1 << 18;

/** d[i] = Π_{j≠i}(x_i − x_j) for i in [from, to). */
function weightDenominators(xs: ArrayLike<number>, d: Float64Array, from: number, to: number): void {
  const k = xs.length;
  for (let i = from; i < to; i++) {
    const xi = xs[i]!;
    let prod = 1;
    // |x_i − x_j| < 2^16 and prod < 2^26: the product stays < 2^42, exact.
    for (let j = 0; j < k; j++) if (j !== i) prod = reduce(prod * fe(xi - xs[j]!));
    d[i] = prod;
  }
}

/**
 * Lagrange basis values L_i(z) = Π_{j≠i} (z − x_j)/(x_i − x_j) for the point set xs, given its
 * barycentric weights. z must be an integer in (−P, P); z ∉ xs (mod P).
 */
export function lagrangeAt(xs: ArrayLike<number>, weights: Float64Array, z: number): Float64Array {
  const k = xs.length;
  const t = new Float64Array(k);
  let ell = 1; // ℓ(z) = Π_j (z − x_j)
  for (let i = 0; i < k; i++) {
    const diff = fe(reduceSigned(z - xs[i]!));
    t[i] = diff;
    ell = reduce(ell * diff);
  }
  batchInvert(t); // 1/(z − x_i)
  for (let i = 0; i < k; i++) t[i] = reduce(reduce(ell * weights[i]!) * t[i]!);
  return t;
}

function reduceSigned(v: number): number {
  // z − x with z ∈ (−P, P) and x ∈ [1, 65535]: |v| < P + 2^16, bring it into (−P, P).
  return v >= P ? v - P : v <= -P ? v + P : v;
}

/** Lagrange coefficients at 0 for distinct nonzero xs: the weights λ_i with f(0) = Σ λ_i f(x_i). */
export function lagrangeAtZeroUnchecked(xs: ArrayLike<number>): Float64Array {
  return lagrangeAt(xs, barycentricWeights(xs), 0);
}
