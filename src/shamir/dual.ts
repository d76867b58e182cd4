/**
 * A fast probabilistic test that k shares lie on one polynomial of degree < t.
 *
 * Background. Let x_1..x_k be distinct, w_i = 1/Π_{l≠i}(x_i − x_l) their barycentric weights. For
 * every polynomial h of degree ≤ k − 2, Σ_i w_i·h(x_i) = 0 (it is the leading coefficient of the
 * degree-(k−1) interpolant of h, which is h itself). Hence for deg f < t and deg q < k − t,
 *     Σ_i w_i·q(x_i)·f(x_i) = 0,
 * and conversely the vectors (w_i·q(x_i))_i span the whole dual of the code {(f(x_i))_i : deg f < t}
 * (dimension k − t). So shares s lie on a polynomial of degree < t iff the syndrome
 * σ_j = Σ_i w_i·x_i^j·s_i is 0 for j = 0..k−t−1.
 *
 * Instead of all k − t syndromes we test one random combination: d_i = w_i·q(x_i) with q's k − t
 * coefficients uniform in Z_p, and check Σ_i d_i·s_i = Σ_j q_j·σ_j = 0. Consistent shares always
 * pass; for an inconsistent chunk σ ≠ 0, and a uniform q makes Σ q_j σ_j uniform, so it passes with
 * probability exactly 1/p. We use DUAL_VECTORS = 2 independent q, so an inconsistent share set
 * (inconsistent in any number of chunks — it suffices that one chunk is caught) slips through with
 * probability ≤ 1/p² ≈ 2^-52 per reconstruction. Cost: O(k²) once per (point set, t) for the
 * weights and O(k·(k − t)) for evaluating q, then O(k·C) per secret.
 *
 * Security model and trade-off.
 *  - q must be unpredictable to share holders: whoever knows q can pick a nonzero error vector in
 *    its kernel. It is drawn from the platform CSPRNG when a cache entry is created (never from an
 *    injectable or fixed-seed rng) and never leaves the server.
 *  - q is reused for every secret reconstructed from the same holder set. An adversary who learns,
 *    after each attempt, whether it was named learns only that its error was caught; conditioning
 *    on A − 1 caught attempts raises the evasion chance of the next to at most 1/(p² − A), so
 *    over A adaptive attempts it evades even once with probability ≤ A/(p² − A) — about 2^-42 for
 *    A = 1000 secrets per round.
 *  - What evasion buys: nothing about the secret. `reconstructVerified` only runs this test after a
 *    t-subset already produced a secret that passed the caller's binding `verify`, so the secret is
 *    right regardless. The test only decides whether to *name* bad holders: a missed detection means
 *    a misbehaving holder goes unnamed for that secret. One vector (2^-26 per attempt) would already
 *    make that unprofitable, but the second costs only another O(k·C) and pushes it out of reach.
 *  - When the test fails, the caller falls back to the exact per-share check, so a detected
 *    inconsistency always names exactly the inconsistent holders.
 */
import { P, barycentricWeights, reduce } from './field.js';

/** Number of independent random dual vectors. */
export const DUAL_VECTORS = 2;

const INV_P = 1 / P;

/**
 * DUAL_VECTORS dual vectors for distinct xs (k points in [1, 65535]) and threshold t < k, row-major:
 * row v is d^(v)_i = w_i·q_v(x_i), i = 0..k−1. `fillUniform` fills its argument with independent
 * uniform elements of Z_p (the coefficients of the q_v; it must be a CSPRNG in production).
 */
export function dualVectorsUnchecked(
  xs: ArrayLike<number>,
  threshold: number,
  fillUniform: (out: Float64Array) => void,
): Float64Array {
  const k = xs.length;
  const m = k - threshold; // number of parity checks = dimension of the dual code
  if (!(m >= 1)) throw new RangeError(`dual vectors need more points than the threshold: k = ${k}, t = ${threshold}`);
  const weights = barycentricWeights(xs);
  const q = new Float64Array(DUAL_VECTORS * m);
  fillUniform(q);
  const out = new Float64Array(DUAL_VECTORS * k);
  for (let v = 0; v < DUAL_VECTORS; v++) {
    const qb = v * m;
    const ob = v * k;
    for (let i = 0; i < k; i++) {
      const x = xs[i]!;
      // Horner: acc < p, acc·x + q < 2^26·2^16 + 2^26 < 2^53, exact.
      let acc = q[qb + m - 1]!;
      for (let j = m - 2; j >= 0; j--) acc = reduce(acc * x + q[qb + j]!);
      out[ob + i] = reduce(weights[i]! * acc);
    }
  }
  q.fill(0);
  return out;
}

/**
 * True when Σ_i d^(v)_i · rows[i*C + c] = 0 for every dual vector v and every chunk c, i.e. (with
 * overwhelming probability) all k rows lie on polynomials of degree < t. `rows` holds k rows of C
 * field elements, aligned with the xs the dual vectors were built for.
 */
export function dualCheck(duals: Float64Array, rows: Float64Array, k: number, C: number): boolean {
  const acc = new Float64Array(DUAL_VECTORS * C);
  for (let i = 0; i < k; i++) {
    const base = i * C;
    for (let v = 0; v < DUAL_VECTORS; v++) {
      const d = duals[v * k + i]!;
      const ab = v * C;
      // d·y < 2^52 and acc ∈ [−p, 2p): exact; lazy branch-free reduction keeps acc in [−p, 2p).
      for (let c = 0; c < C; c++) {
        const s = acc[ab + c]! + d * rows[base + c]!;
        acc[ab + c] = s - Math.floor(s * INV_P) * P;
      }
    }
  }
  for (let j = 0; j < acc.length; j++) if (reduce(acc[j]! + P) !== 0) return false;
  return true;
}
