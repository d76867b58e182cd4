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
 *  - q is reused for every secret reconstructed from the same holder set (and, via a superset,
 *    across related holder sets — see below). An adversary who learns, after each attempt, whether
 *    it was named learns only that its error was caught; over A adaptive attempts it evades even
 *    once with probability ≤ A/p² (union bound, argued below) — about 2^-42 for A = 1000 secrets
 *    per round.
 *  - What evasion buys: nothing about the secret. `reconstructVerified` only runs this test after a
 *    t-subset already produced a secret that passed the caller's binding `verify`, so the secret is
 *    right regardless. The test only decides whether to *name* bad holders: a missed detection means
 *    a misbehaving holder goes unnamed for that secret. One vector (2^-26 per attempt) would already
 *    make that unprofitable, but the second costs only another O(k·C) and pushes it out of reach.
 *  - When the test fails, the caller falls back to the exact per-share check, so a detected
 *    inconsistency always names exactly the inconsistent holders.
 *
 * Supersets: O(k·|R|) dual vectors for S = U \ R (the server's complete-graph case).
 *
 * In a complete graph every owner v's shares are held by U \ {v} (U = the responders), so each
 * owner has its own holder set and a per-set cache misses every time: O(k²) weights plus O(k·(k−t))
 * for q, O(n³) for the round. But all those sets are U minus one or two points, and
 *     w^S_i = 1/Π_{l∈S, l≠i}(x_i − x_l) = w^U_i · Π_{r∈R}(x_i − x_r)      for S = U \ R, i ∈ S,
 * because the factors (x_i − x_r), r ∈ R, are exactly the ones w^U_i has and w^S_i lacks. So once
 * w^U and the values of q at U's points are known, d^S_i = w^S_i·q(x_i) costs O(|R|) per point.
 *
 * Which q. The check for S is full-strength iff q ranges over ALL polynomials of degree
 * < |S| − t = (|U| − t) − |R|, with uniform coefficients (then Σ d^S_i e_i = Σ_j q_j σ_j(e) is
 * uniform for every inconsistent e, as above). So per superset and threshold we draw q with
 * m = |U| − t uniform coefficients c_0..c_{m−1} and serve |R| = j with its truncation
 *     q_{<m−j}(x) = Σ_{l<m−j} c_l x^l,
 * whose coefficients are again independent and uniform: the degree is exactly the largest the dual
 * of S allows, so the derived vector is distributed exactly like a directly computed one, and the
 * 1/p per vector bound holds unchanged — no "lower-degree q" weakening. (A single q of degree
 * |U| − t − 2 for both S = U and S = U \ {r} would check S = U only against the code of degree ≤ t
 * polynomials, and an error equal on the spares to c·Π_{j∈canonical}(x − x_j) and 0 on the
 * canonical subset would pass for EVERY q — colluding spares could go unnamed deterministically.)
 * The values q_{<m−j}(x_i) for j = 0..MAX_MISSING come from one Horner pass for q plus
 * q_{<m−j}(x) = q_{<m−j+1}(x) − c_{m−j}·x^{m−j}: O(k·m) once per (superset, t), and a table of
 * DUAL_VECTORS·(MAX_MISSING + 1)·|U| entries w^U_i·q_{<m−j}(x_i).
 *
 * Reuse across holder sets. The vectors of different subsets of one superset are correlated (they
 * share c), unlike the independent draws per set. That does not weaken the bound: an adaptive
 * adversary's A attempts, along the branch where every earlier attempt was caught, are fixed
 * errors e_a with fixed holder sets; attempt a passes only if, for both independent q, a fixed
 * nonzero linear form in c vanishes (probability 1/p each). A union bound gives ≤ A/p² for ANY
 * attempt ever passing, whatever the correlation — and the same holds for the per-set draws (it
 * is slightly sharper than the conditioning argument above, which it replaces).
 *
 * The same identity gives the Lagrange coefficients at 0 of S = U \ R in O(k·|R|):
 *     λ^S_i = Π_{l∈S}(−x_l) · w^S_i / (−x_i)
 *           = [Π_{l∈U}(−x_l) / Π_{r∈R}(−x_r)] · [w^U_i / (−x_i)] · Π_{r∈R}(x_i − x_r),
 * with one field inversion per set. In a complete graph the canonical t-subsets of the first t
 * owners are {first t + 1 responders} minus the owner: one superset serves them all.
 */
import { P, SLICE_WORK, barycentricWeights, barycentricWeightsInSlices, batchInvert, inv, reduce } from './field.js';

/** Number of independent random dual vectors. */
export const DUAL_VECTORS = 2;

const INV_P = 1 / P;

/**
 * DUAL_VECTORS dual vectors for distinct xs (k points in [1, 65535]) and threshold t < k, row-major:
 * row v is d^(v)_i = w_i·q_v(x_i), i = 0..k−1. `fillUniform` fills its argument with independent
 * uniform elements of Z_p (the coefficients of the q_v; it must be a CSPRNG in production).
 */
export function dualVectorsUnchecked(xs: ArrayLike<number>, threshold: number, fillUniform: (out: Float64Array) => void): Float64Array {
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

// ---------------------------------------------------------------------------------------------
// Supersets (see the header): dual vectors and Lagrange coefficients of S = U \ R in O(k·|R|)

/** Largest |U \ S| served from a superset U; larger gaps are computed directly. */
export const MAX_MISSING = 4;

/** A point set U with its barycentric weights and lazily built per-use tables. Internal state of a cache. */
export interface Superset {
  /** Strictly ascending, distinct ids in [1, 65535]. */
  readonly xs: readonly number[];
  /** w^U_i (O(|U|²), once). */
  readonly weights: Float64Array;
  /** Per threshold: DUAL_VECTORS·(MAX_MISSING + 1) rows of |U| entries w^U_i·q_{<m−j}(x_i). */
  readonly duals: Map<number, Float64Array>;
  /** w^U_i/(−x_i) and Π_{l∈U}(−x_l), for Lagrange coefficients at 0 (O(|U|), on first use). */
  zero: { readonly base: Float64Array; readonly ell: number } | undefined;
}

export function newSuperset(sortedXs: readonly number[]): Superset {
  return { xs: sortedXs.slice(), weights: barycentricWeights(sortedXs), duals: new Map(), zero: undefined };
}

/** newSuperset in slices, awaiting `yieldToEventLoop` between them. */
export async function newSupersetInSlices(sortedXs: readonly number[], yieldToEventLoop: () => Promise<void>): Promise<Superset> {
  return { xs: sortedXs.slice(), weights: await barycentricWeightsInSlices(sortedXs, yieldToEventLoop), duals: new Map(), zero: undefined };
}

/**
 * Positions in `superXs` of the points missing from `subXs`, when subXs ⊆ superXs with at most
 * `maxMissing` missing; otherwise null. Both strictly ascending. O(|superXs|), early exits.
 */
export function missingPositions(subXs: readonly number[], superXs: readonly number[], maxMissing: number): number[] | null {
  const gap = superXs.length - subXs.length;
  if (gap < 0 || gap > maxMissing) return null;
  const missing: number[] = [];
  let i = 0;
  for (let u = 0; u < superXs.length; u++) {
    if (i < subXs.length && subXs[i] === superXs[u]) i++;
    else if (i < subXs.length && subXs[i]! < superXs[u]!)
      return null; // subXs[i] ∉ superXs
    else {
      missing.push(u);
      if (missing.length > gap) return null;
    }
  }
  return i === subXs.length && missing.length === gap ? missing : null;
}

/**
 * The union of two strictly ascending sets when each lacks at most `maxMissing` points of the
 * other (both are then subsets of it with a gap ≤ maxMissing); otherwise null.
 */
export function nearUnion(a: readonly number[], b: readonly number[], maxMissing: number): number[] | null {
  if (Math.abs(a.length - b.length) > maxMissing) return null;
  const out: number[] = [];
  let i = 0;
  let j = 0;
  let onlyA = 0;
  let onlyB = 0;
  while (i < a.length || j < b.length) {
    const x = i < a.length ? a[i]! : Infinity;
    const y = j < b.length ? b[j]! : Infinity;
    if (x === y) {
      out.push(x);
      i++;
      j++;
    } else if (x < y) {
      out.push(x);
      i++;
      if (++onlyA > maxMissing) return null;
    } else {
      out.push(y);
      j++;
      if (++onlyB > maxMissing) return null;
    }
  }
  return out;
}

/** Π_{r∈R}(x_i − x_r) for every i of U not in R (aligned with S = U \ R), plus S's positions in U. */
function gapFactors(xs: readonly number[], missing: readonly number[]): { pos: Int32Array; f: Float64Array } {
  const k = xs.length - missing.length;
  const pos = new Int32Array(k);
  const f = new Float64Array(k);
  let s = 0;
  let mi = 0;
  for (let u = 0; u < xs.length; u++) {
    if (mi < missing.length && missing[mi] === u) {
      mi++;
      continue;
    }
    const x = xs[u]!;
    let prod = 1;
    // |x − x_r| < 2^16, prod < 2^26: exact.
    for (let r = 0; r < missing.length; r++) {
      const d = x - xs[missing[r]!]!;
      prod = reduce(prod * (d < 0 ? d + P : d));
    }
    pos[s] = u;
    f[s++] = prod;
  }
  return { pos, f };
}

/**
 * The superset's dual table for threshold t (built on first use, cached in `sup.duals`): rows
 * (v, j), v < DUAL_VECTORS, j ≤ MAX_MISSING, of w^U_i·q^(v)_{<m−j}(x_i), m = |U| − t; rows with
 * m − j < 1 (no S = U \ R with |R| = j has more than t points) are left 0 and never used.
 */
export function supersetDualTable(sup: Superset, threshold: number, fillUniform: (out: Float64Array) => void): Float64Array {
  const hit = sup.duals.get(threshold);
  if (hit !== undefined) return hit;
  const b = dualTableBuild(sup, threshold, fillUniform);
  b.fill(0, sup.xs.length);
  return b.done();
}

/** supersetDualTable in slices of about SLICE_WORK field operations, awaiting `yieldToEventLoop` between them. */
export async function supersetDualTableInSlices(
  sup: Superset,
  threshold: number,
  fillUniform: (out: Float64Array) => void,
  yieldToEventLoop: () => Promise<void>,
): Promise<Float64Array> {
  const hit = sup.duals.get(threshold);
  if (hit !== undefined) return hit;
  const b = dualTableBuild(sup, threshold, fillUniform);
  const K = sup.xs.length;
  const points = Math.max(1, Math.floor(SLICE_WORK / (DUAL_VECTORS * (K - threshold + MAX_MISSING))));
  for (let from = 0; from < K; from += points) {
    b.fill(from, Math.min(K, from + points));
    await yieldToEventLoop();
  }
  return sup.duals.get(threshold) ?? b.done(); // a concurrent caller may have finished first
}

/** The table for (sup, t), filled point by point: `fill(from, to)` for every point, then `done()`. */
function dualTableBuild(
  sup: Superset,
  threshold: number,
  fillUniform: (out: Float64Array) => void,
): { fill: (from: number, to: number) => void; done: () => Float64Array } {
  const xs = sup.xs;
  const K = xs.length;
  const m = K - threshold;
  if (!(m >= 1)) throw new RangeError(`dual vectors need more points than the threshold: k = ${K}, t = ${threshold}`);
  const J = Math.min(MAX_MISSING, m - 1);
  const rowsPer = MAX_MISSING + 1;
  const q = new Float64Array(DUAL_VECTORS * m);
  fillUniform(q);
  const tab = new Float64Array(DUAL_VECTORS * rowsPer * K);
  const pows = new Float64Array(J + 1); // pows[j] = x^{m−j}, j = 1..J
  const fill = (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const x = xs[i]!;
      if (J >= 1) {
        let pw = powMod(x, m - J);
        for (let j = J; j >= 1; j--) {
          pows[j] = pw;
          pw = reduce(pw * x);
        }
      }
      const w = sup.weights[i]!;
      for (let v = 0; v < DUAL_VECTORS; v++) {
        const qb = v * m;
        // Horner: acc < p, acc·x + q < 2^53, exact.
        let acc = q[qb + m - 1]!;
        for (let j = m - 2; j >= 0; j--) acc = reduce(acc * x + q[qb + j]!);
        const rb = v * rowsPer;
        tab[rb * K + i] = reduce(w * acc);
        for (let j = 1; j <= J; j++) {
          // Drop the top remaining term: q_{<m−j} = q_{<m−j+1} − c_{m−j}·x^{m−j}.
          acc = acc - reduce(q[qb + m - j]! * pows[j]!);
          if (acc < 0) acc += P;
          tab[(rb + j) * K + i] = reduce(w * acc);
        }
      }
    }
  };
  const done = () => {
    q.fill(0);
    sup.duals.set(threshold, tab);
    return tab;
  };
  return { fill, done };
}

/**
 * Dual vectors (the dualVectorsUnchecked layout) for S = U \ R, R = the superset positions in
 * `missing` (|R| ≤ MAX_MISSING, |S| > t), from the superset's table for t. O(|S|·|R|).
 */
export function dualFromSuperset(sup: Superset, table: Float64Array, threshold: number, missing: readonly number[]): Float64Array {
  const K = sup.xs.length;
  const j = missing.length;
  if (!(j <= MAX_MISSING && K - j > threshold)) throw new RangeError(`superset dual vectors need |R| ≤ ${MAX_MISSING} and more points than the threshold`);
  const { pos, f } = gapFactors(sup.xs, missing);
  const k = K - j;
  const out = new Float64Array(DUAL_VECTORS * k);
  for (let v = 0; v < DUAL_VECTORS; v++) {
    const row = (v * (MAX_MISSING + 1) + j) * K;
    for (let s = 0; s < k; s++) out[v * k + s] = reduce(table[row + pos[s]!]! * f[s]!);
  }
  return out;
}

/** Lagrange coefficients at 0 for S = U \ R (aligned with S, ascending), O(|S|·|R|) + one inversion. */
export function lagrangeZeroFromSuperset(sup: Superset, missing: readonly number[]): Float64Array {
  let zero = sup.zero;
  if (zero === undefined) {
    const base = batchInvert(Float64Array.from(sup.xs, (x) => P - x)); // 1/(−x_i)
    let ell = 1;
    for (let i = 0; i < base.length; i++) {
      base[i] = reduce(base[i]! * sup.weights[i]!);
      ell = reduce(ell * (P - sup.xs[i]!));
    }
    zero = sup.zero = { base, ell };
  }
  let drop = 1; // Π_{r∈R}(−x_r)
  for (const r of missing) drop = reduce(drop * (P - sup.xs[r]!));
  const scale = reduce(zero.ell * inv(drop));
  const { pos, f } = gapFactors(sup.xs, missing);
  for (let s = 0; s < f.length; s++) f[s] = reduce(reduce(scale * zero.base[pos[s]!]!) * f[s]!);
  return f;
}

/** x^e mod p, e ≥ 0. */
function powMod(x: number, e: number): number {
  let r = 1;
  let b = x;
  while (e > 0) {
    if (e & 1) r = reduce(r * b);
    b = reduce(b * b);
    e >>>= 1;
  }
  return r;
}
