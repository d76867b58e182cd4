/**
 * t-of-n Shamir secret sharing of 32-byte secrets over Z_p, p = 2^26 − 5 (see field.ts).
 *
 * A secret is cut into 11 little-endian chunks (ten of 24 bits, one of 16 bits); every chunk is the
 * constant term of its own polynomial of degree t − 1 with independent uniform coefficients, and
 * all 11 polynomials are evaluated at the holder's client id in one Horner pass. A share is the 11
 * evaluations as little-endian uint32 (SHARE_BYTES = 44).
 *
 * Why chunks narrower than the field: a reconstructed chunk must fit its width, so a corrupted share
 * makes a chunk land outside [0, 2^24) with probability ≈ 3/4 per affected chunk — a free
 * integrity check before the (more expensive) caller-supplied verification.
 */
import { SecAggError, abytes, aint } from '../errors.js';
import { cryptoRng, type Rng } from '../rng.js';
import { MAX_CLIENT_ID } from '../ids.js';
import { workPacer } from '../pace.js';
import { P, barycentricWeights, batchInvert, lagrangeAt, sub, lagrangeAtZeroUnchecked, reduce } from './field.js';
import {
  MAX_MISSING,
  dualCheck,
  dualFromSuperset,
  dualVectorsUnchecked,
  lagrangeZeroFromSuperset,
  missingPositions,
  nearUnion,
  newSuperset,
  supersetDualTable,
  supersetDualTableInSlices,
  newSupersetInSlices,
  type Superset,
} from './dual.js';

const SECRET_BYTES = 32;
/** Field elements per share (one per secret chunk). */
export const SHARE_CHUNKS = 11;
export const SHARE_BYTES = SHARE_CHUNKS * 4;
export const FIELD_PRIME = P;
const MAX_HOLDERS = MAX_CLIENT_ID;
/** Default number of extra t-subsets `reconstructVerified` may try after the canonical one. */
const DEFAULT_MAX_ATTEMPTS = 1000;

const C = SHARE_CHUNKS;
const INV_P = 1 / P;
const FULL_CHUNK_LIMIT = 1 << 24;
const LAST_CHUNK_LIMIT = 1 << 16;

// ---------------------------------------------------------------------------------------------
// Validation

/** Validates holder ids; returns whether they are already strictly ascending. */
function checkHolders(holders: readonly number[], name: string, minLength: number): boolean {
  if (!Array.isArray(holders)) throw new TypeError(`${name} must be an array of client ids`);
  if (holders.length < minLength) throw new RangeError(`${name} must have at least ${minLength} entries, got ${holders.length}`);
  if (holders.length > MAX_HOLDERS) throw new RangeError(`${name} must have at most ${MAX_HOLDERS} entries`);
  let ascending = true;
  let prev = 0;
  for (let i = 0; i < holders.length; i++) {
    const x: unknown = holders[i];
    // The message string is only built on failure: this runs once per share on the hot path.
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1 || x > MAX_CLIENT_ID) aint(x, `${name}[${i}]`, 1, MAX_CLIENT_ID);
    if (x <= prev) ascending = false;
    prev = x;
  }
  if (!ascending && new Set(holders).size !== holders.length) throw new RangeError(`${name} must be distinct`);
  return ascending;
}

function isAscending(holders: readonly number[]): boolean {
  for (let i = 1; i < holders.length; i++) if (holders[i]! <= holders[i - 1]!) return false;
  return true;
}

function checkShares(shares: unknown, holders: readonly number[]): asserts shares is readonly Uint8Array[] {
  if (!Array.isArray(shares)) throw new TypeError('shares must be an array of Uint8Array');
  if (shares.length !== holders.length) throw new RangeError(`shares must have one entry per holder: ${holders.length} holders, ${shares.length} shares`);
  for (let i = 0; i < shares.length; i++) if (!(shares[i] instanceof Uint8Array)) abytes(shares[i], `shares[${i}]`);
}

// ---------------------------------------------------------------------------------------------
// Encoding

function secretToChunks(secret: Uint8Array, out: Float64Array): void {
  for (let c = 0; c < C - 1; c++) {
    const o = 3 * c;
    out[c] = secret[o]! | (secret[o + 1]! << 8) | (secret[o + 2]! << 16);
  }
  out[C - 1] = secret[30]! | (secret[31]! << 8);
}

/** The secret whose chunks are `chunks`, or null when a chunk is wider than its slot. */
function chunksToSecret(chunks: Float64Array): Uint8Array | null {
  for (let c = 0; c < C - 1; c++) if (chunks[c]! >= FULL_CHUNK_LIMIT) return null;
  if (chunks[C - 1]! >= LAST_CHUNK_LIMIT) return null;
  const out = new Uint8Array(SECRET_BYTES);
  for (let c = 0; c < C - 1; c++) {
    const v = chunks[c]!;
    const o = 3 * c;
    out[o] = v & 0xff;
    out[o + 1] = (v >>> 8) & 0xff;
    out[o + 2] = v >>> 16;
  }
  const last = chunks[C - 1]!;
  out[30] = last & 0xff;
  out[31] = last >>> 8;
  return out;
}

/** Decodes a share into rows[row*C ..]; the message says why it is malformed, or null if fine. */
function decodeShare(share: Uint8Array, rows: Float64Array, row: number): string | null {
  if (share.length !== SHARE_BYTES) return `share is ${share.length} bytes, expected ${SHARE_BYTES}`;
  const base = row * C;
  for (let c = 0, o = 0; c < C; c++, o += 4) {
    const v = (share[o]! | (share[o + 1]! << 8) | (share[o + 2]! << 16) | (share[o + 3]! << 24)) >>> 0;
    if (v >= P) return `share element ${c} is not a field element`;
    rows[base + c] = v;
  }
  return null;
}

function decodeSharesOrThrow(holders: readonly number[], shares: readonly Uint8Array[]): Float64Array {
  const rows = new Float64Array(shares.length * C);
  for (let i = 0; i < shares.length; i++) {
    const why = decodeShare(shares[i]!, rows, i);
    if (why !== null)
      throw new SecAggError(shares[i]!.length !== SHARE_BYTES ? 'ERR_SIZE' : 'ERR_DECODE', `holder ${holders[i]}: ${why}`, {
        clients: [holders[i]!],
      });
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Split

/**
 * Fills `out` with independent uniform elements of Z_p. Each draws 4 rng bytes, keeps the low 26
 * bits of the little-endian word and rejects values ≥ p (probability 5/2^26), so the result is
 * exactly uniform — reducing mod p instead would bias small values.
 */
function sampleUniform(out: Float64Array, offset: number, rng: Rng): void {
  let filled = offset;
  while (filled < out.length) {
    const need = (out.length - filled) * 4;
    const bytes = rng(need);
    abytes(bytes, 'rng output', need);
    for (let o = 0; o < need; o += 4) {
      const v = bytes[o]! | (bytes[o + 1]! << 8) | (bytes[o + 2]! << 16) | ((bytes[o + 3]! & 0x03) << 24);
      if (v < P) out[filled++] = v;
    }
    bytes.fill(0);
  }
}

export interface SplitParams {
  /** The 32-byte secret. */
  readonly secret: Uint8Array;
  /** Client ids receiving shares (distinct, 1..65535); they are the x-coordinates. */
  readonly holders: readonly number[];
  /** Number of shares needed to reconstruct, 2 ≤ threshold ≤ holders.length. */
  readonly threshold: number;
  readonly rng: Rng;
}

/** Splits `secret` into one SHARE_BYTES share per holder, in the order of `holders`. */
export function splitSecret(params: SplitParams): Uint8Array[] {
  const { secret, holders, threshold, rng } = params;
  abytes(secret, 'secret', SECRET_BYTES);
  checkHolders(holders, 'holders', 2);
  aint(threshold, 'threshold', 2, holders.length);
  if (typeof rng !== 'function') throw new TypeError('rng must be a function');

  // coeffs[j*C + c] is the coefficient of x^j of chunk c's polynomial; j = 0 is the secret chunk.
  const coeffs = new Float64Array(threshold * C);
  secretToChunks(secret, coeffs);
  sampleUniform(coeffs, C, rng);

  const top = (threshold - 1) * C;
  const acc = new Float64Array(C);
  const out: Uint8Array[] = new Array<Uint8Array>(holders.length);
  for (let h = 0; h < holders.length; h++) {
    const x = holders[h]!;
    for (let c = 0; c < C; c++) acc[c] = coeffs[top + c]!;
    // Horner for all chunks at once. Lazy reduction: v − ⌊v/p⌋·p without the final correction
    // leaves acc in [−p, 2p), so acc·x + a stays below 2^27·2^16 + 2^26 < 2^53 — exact — and the
    // loop has no branches; one full reduction at the end.
    for (let j = top - C; j >= 0; j -= C) {
      for (let c = 0; c < C; c++) {
        const v = acc[c]! * x + coeffs[j + c]!;
        acc[c] = v - Math.floor(v * INV_P) * P;
      }
    }
    for (let c = 0; c < C; c++) acc[c] = reduce(acc[c]! < 0 ? acc[c]! + P : acc[c]!);
    // A separate buffer per share: shares for different holders must never share an ArrayBuffer
    // (sending `share.buffer` by mistake would otherwise leak everyone's share).
    const share = new Uint8Array(SHARE_BYTES);
    for (let c = 0, o = 0; c < C; c++, o += 4) {
      const v = acc[c]!;
      share[o] = v & 0xff;
      share[o + 1] = (v >>> 8) & 0xff;
      share[o + 2] = (v >>> 16) & 0xff;
      share[o + 3] = v >>> 24;
    }
    out[h] = share;
  }
  // Best-effort hygiene: JS gives no guarantee, but do not leave the polynomial lying around.
  coeffs.fill(0);
  acc.fill(0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Lagrange coefficients

/** Coefficients λ_i with f(0) = Σ λ_i f(holders[i]), aligned with `holders`. */
export function lagrangeAtZero(holders: readonly number[]): Float64Array {
  checkHolders(holders, 'holders', 1);
  return lagrangeAtZeroUnchecked(holders);
}

function keyOf(sortedHolders: ArrayLike<number>): string {
  // Ids are ≤ 65535, so one UTF-16 code unit each: a compact, collision-free key.
  let key = '';
  for (let i = 0; i < sortedHolders.length; i += 4096) {
    const end = Math.min(sortedHolders.length, i + 4096);
    key += String.fromCharCode.apply(null, Array.prototype.slice.call(sortedHolders, i, end) as number[]);
  }
  return key;
}

/** Moves an existing key to the most-recent end of a Map and evicts beyond `max` (LRU). */
function lruSet<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) {
    const oldest = map.keys().next();
    if (oldest.done !== true) map.delete(oldest.value);
  }
}

/**
 * Lagrange coefficients at 0, computed once per set of holders and reused. A server reconstructs
 * many secrets (one per surviving or dropped client) from shares held by the same clients, so the
 * O(t²) coefficient computation is paid once and each reconstruction is an O(t) dot product.
 * Keyed by the set, not the order: a permutation of a cached set is a hit. Least recently used
 * entries are evicted beyond `maxEntries`.
 *
 * It also caches, per (well-formed holder set, threshold), the random dual vectors that let
 * `reconstructVerified` confirm in O(k·C) that all k shares lie on one polynomial (see dual.ts).
 * Those live in a separate LRU map of the same capacity and are drawn from the platform CSPRNG:
 * they are server-secret state and must not be predictable to share holders.
 *
 * Supersets (dual.ts): a miss for a set S = U \ R with U a known superset and |R| ≤ MAX_MISSING
 * costs O(|S|·|R|) instead of O(|S|²), for both kinds of entry. Supersets come from
 * `setUniverse(holders)` or automatically: when a directly computed miss S' and a new miss S each
 * lack at most MAX_MISSING points of the other, S ∪ S' becomes a superset. So in a complete graph,
 * where owner v's holders are U \ {v}, the O(k²) work is done a constant number of times per
 * round instead of once per owner. At most MAX_SUPERSETS supersets are kept (least recently used
 * evicted); each holds O(|U|) numbers plus, per threshold, a secret dual table.
 */
export class LagrangeCache {
  readonly #map = new Map<string, Float64Array>();
  readonly #duals = new Map<string, Float64Array>();
  readonly #maxEntries: number;
  readonly #useSupersets: boolean;
  /** Most recently used first. */
  #supersets: Superset[] = [];
  /** Recent directly computed sets (most recent first): candidates for an automatic superset. */
  #recent: (readonly number[])[] = [];
  #computations = 0;
  #dualComputations = 0;
  #derivations = 0;
  #weightComputations = 0;
  #exactChecks = 0;

  /**
   * `maxEntries` bounds each LRU map (default 64). `supersets: false` turns the superset path off
   * (every miss is computed directly, as before it existed) — for benchmarks and tests.
   */
  constructor(options: { readonly maxEntries?: number; readonly supersets?: boolean } = {}) {
    const maxEntries = options.maxEntries ?? 64;
    aint(maxEntries, 'maxEntries', 1, 1 << 20);
    this.#maxEntries = maxEntries;
    this.#useSupersets = options.supersets ?? true;
  }

  /** How many coefficient sets were produced (cache misses, computed directly or from a superset). */
  get computations(): number {
    return this.#computations;
  }

  /** How many dual (consistency-check) vector sets were produced (cache misses, either way). */
  get dualComputations(): number {
    return this.#dualComputations;
  }

  /** How many of the misses (coefficients or dual vectors) were served from a superset in O(k·|R|). */
  get derivations(): number {
    return this.#derivations;
  }

  /**
   * How many times O(k²) barycentric weights were computed: direct misses of either kind plus
   * superset set-ups. Constant per round in a complete graph.
   */
  get weightComputations(): number {
    return this.#weightComputations;
  }

  /** Number of supersets currently held. */
  get supersetCount(): number {
    return this.#supersets.length;
  }

  /**
   * Declares `holders` (any order, distinct ids) as a superset: later holder sets that are it minus
   * at most MAX_MISSING ids get their Lagrange coefficients and dual vectors in O(k·|R|). Costs one
   * O(k²) weight computation now. Optional — near-identical misses create supersets on their own —
   * but it saves the first owners' direct computations. A no-op with `supersets: false`, or when
   * this exact set is already a superset.
   */
  setUniverse(holders: readonly number[]): void {
    const xs = this.#universeToAdd(holders);
    if (xs === undefined) return;
    this.#addSuperset(newSuperset(xs));
    this.#weightComputations++;
  }

  /**
   * `setUniverse` plus the superset's dual table for `threshold` and its Lagrange base, computed in
   * slices with `yieldToEventLoop` awaited between them (each a millisecond or two), so the
   * O(k²) set-up of a large complete-graph round does not hold the server's thread.
   */
  async prepareUniverse(holders: readonly number[], threshold: number, yieldToEventLoop: () => Promise<void>): Promise<void> {
    aint(threshold, 'threshold', 1, 65535);
    const xs = this.#universeToAdd(holders);
    if (!this.#useSupersets) return;
    let sup = this.#supersets[0]!; // this set, just made the most recently used, unless it is new
    if (xs !== undefined) {
      sup = await newSupersetInSlices(xs, yieldToEventLoop);
      this.#addSuperset(sup);
      this.#weightComputations++;
    }
    if (sup.xs.length > threshold) await supersetDualTableInSlices(sup, threshold, newDualSeed, yieldToEventLoop);
  }

  /**
   * `holders` sorted, when they should become a new superset; undefined when supersets are off or
   * this set is one already (then it becomes the most recently used).
   */
  #universeToAdd(holders: readonly number[]): number[] | undefined {
    checkHolders(holders, 'holders', 1);
    if (!this.#useSupersets) return undefined;
    const xs = isAscending(holders) ? holders.slice() : holders.slice().sort((a, b) => a - b);
    const existing = this.#supersets.findIndex((u) => u.xs.length === xs.length && missingPositions(xs, u.xs, 0) !== null);
    if (existing < 0) return xs;
    this.#touchSuperset(existing);
    return undefined;
  }

  /**
   * How many times `reconstructVerified` (with this cache) had to fall back to the exact,
   * O((k − t)·t·C) per-share consistency check — i.e. the fast dual check did not clear the shares.
   */
  get exactChecks(): number {
    return this.#exactChecks;
  }

  /** Number of cached coefficient sets (dual vectors are held separately, with the same bound). */
  get size(): number {
    return this.#map.size;
  }

  clear(): void {
    this.#map.clear();
    this.#duals.clear();
    this.#supersets = [];
    this.#recent = [];
  }

  /** Coefficients aligned with `holders` (a fresh copy: the cached array stays untouched). */
  get(holders: readonly number[]): Float64Array {
    checkHolders(holders, 'holders', 1);
    return this.lookup(holders).slice();
  }

  /** @internal Unvalidated lookup; the result may be the cached array and must not be modified. */
  lookup(holders: readonly number[]): Float64Array {
    if (isAscending(holders)) return this.#sorted(holders);
    const order = holders.map((_, i) => i).sort((a, b) => holders[a]! - holders[b]!);
    const sortedCoeffs = this.#sorted(order.map((i) => holders[i]!));
    const out = new Float64Array(holders.length);
    for (let r = 0; r < order.length; r++) out[order[r]!] = sortedCoeffs[r]!;
    return out;
  }

  /**
   * @internal Dual vectors for strictly ascending, validated `sortedXs` (k points) and threshold t,
   * t < k: DUAL_VECTORS rows of k entries, row-major. The result is the cached array — do not
   * modify it, and do not hand it to share holders (its secrecy is what makes the check sound).
   */
  dualLookup(sortedXs: readonly number[], threshold: number): Float64Array {
    // '\0' cannot start a holder key (ids are ≥ 1) and t ≤ 65535 is one code unit.
    const key = keyOf(sortedXs) + '\0' + String.fromCharCode(threshold);
    const hit = this.#duals.get(key);
    if (hit !== undefined) {
      lruSet(this.#duals, key, hit, this.#maxEntries);
      return hit;
    }
    if (!(sortedXs.length > threshold)) throw new RangeError(`dual vectors need more points than the threshold: k = ${sortedXs.length}, t = ${threshold}`);
    let d: Float64Array;
    const found = this.#fromSuperset(sortedXs);
    if (found !== null) {
      d = dualFromSuperset(found.sup, supersetDualTable(found.sup, threshold, newDualSeed), threshold, found.missing);
      this.#derivations++;
    } else {
      d = dualVectorsUnchecked(sortedXs, threshold, newDualSeed);
      this.#weightComputations++;
      this.#remember(sortedXs);
    }
    this.#dualComputations++;
    lruSet(this.#duals, key, d, this.#maxEntries);
    return d;
  }

  /** @internal Counts a fallback to the exact per-share check (for tests and monitoring). */
  noteExactCheck(): void {
    this.#exactChecks++;
  }

  #sorted(sortedHolders: readonly number[]): Float64Array {
    const key = keyOf(sortedHolders);
    const hit = this.#map.get(key);
    if (hit !== undefined) {
      // Refresh recency (Map iterates in insertion order; the first key is the eviction victim).
      lruSet(this.#map, key, hit, this.#maxEntries);
      return hit;
    }
    let coeffs: Float64Array;
    const found = this.#fromSuperset(sortedHolders);
    if (found !== null) {
      coeffs = lagrangeZeroFromSuperset(found.sup, found.missing);
      this.#derivations++;
    } else {
      coeffs = lagrangeAtZeroUnchecked(sortedHolders);
      this.#weightComputations++;
      this.#remember(sortedHolders);
    }
    this.#computations++;
    lruSet(this.#map, key, coeffs, this.#maxEntries);
    return coeffs;
  }

  /**
   * A superset U ⊇ sortedXs with |U \ sortedXs| ≤ MAX_MISSING and the missing positions, or null.
   * Tries the held supersets, then forms one from a recent direct miss that is a near-twin of
   * sortedXs (each lacks ≤ MAX_MISSING points of the other) — one O(k²) set-up, the same as the
   * direct miss it replaces. O(k) per candidate otherwise, with early exits.
   */
  #fromSuperset(sortedXs: readonly number[]): { sup: Superset; missing: number[] } | null {
    if (!this.#useSupersets) return null;
    for (let u = 0; u < this.#supersets.length; u++) {
      const sup = this.#supersets[u]!;
      const missing = missingPositions(sortedXs, sup.xs, MAX_MISSING);
      if (missing !== null) {
        this.#touchSuperset(u);
        return { sup, missing };
      }
    }
    for (let r = 0; r < this.#recent.length; r++) {
      const union = nearUnion(sortedXs, this.#recent[r]!, MAX_MISSING);
      if (union === null) continue;
      this.#recent.splice(r, 1);
      const sup = newSuperset(union);
      this.#weightComputations++;
      this.#addSuperset(sup);
      return { sup, missing: missingPositions(sortedXs, sup.xs, MAX_MISSING)! };
    }
    return null;
  }

  #remember(sortedXs: readonly number[]): void {
    if (!this.#useSupersets) return;
    this.#recent.unshift(sortedXs.slice());
    if (this.#recent.length > MAX_RECENT) this.#recent.pop();
  }

  #addSuperset(sup: Superset): void {
    this.#supersets.unshift(sup);
    if (this.#supersets.length > MAX_SUPERSETS) this.#supersets.pop();
  }

  #touchSuperset(u: number): void {
    if (u === 0) return;
    const [sup] = this.#supersets.splice(u, 1);
    this.#supersets.unshift(sup!);
  }
}

/** Supersets a LagrangeCache keeps (least recently used evicted). */
const MAX_SUPERSETS = 4;
/** Recent direct misses a LagrangeCache compares new misses against for an automatic superset. */
const MAX_RECENT = 4;

/** Uniform coefficients for the random dual polynomials, from the platform CSPRNG (never injected). */
function newDualSeed(out: Float64Array): void {
  sampleUniform(out, 0, cryptoRng);
}

// ---------------------------------------------------------------------------------------------
// Combine

/** Σ λ_i · rows[idx[i]] per chunk; null when a chunk does not fit its width. */
function combineRows(lambdas: ArrayLike<number>, rows: Float64Array, idx: ArrayLike<number> | null): Uint8Array | null {
  const acc = new Float64Array(C);
  for (let i = 0; i < lambdas.length; i++) {
    const l = lambdas[i]!;
    const base = (idx === null ? i : idx[i]!) * C;
    // λ·y < 2^52 and |acc| < 2^27: exact. Lazy, branch-free reduction keeps acc in [−p, 2p).
    for (let c = 0; c < C; c++) {
      const v = acc[c]! + l * rows[base + c]!;
      acc[c] = v - Math.floor(v * INV_P) * P;
    }
  }
  for (let c = 0; c < C; c++) acc[c] = reduce(acc[c]! + P);
  return chunksToSecret(acc);
}

export interface CombineParams {
  /** Client ids of the shares' holders, aligned with `shares`. */
  readonly holders: readonly number[];
  /** The shares to combine — all of them are used; the caller supplies at least the threshold. */
  readonly shares: readonly Uint8Array[];
  readonly cache?: LagrangeCache;
}

/**
 * Interpolates the secret from exactly the given shares. Throws SecAggError ERR_SIZE / ERR_DECODE
 * for a malformed share (naming its holder) and ERR_RECONSTRUCTION_FAILED when the result is not a
 * valid secret encoding — which catches most, not all, corrupted shares; use reconstructVerified
 * when a share may be wrong.
 */
export function combineShares(params: CombineParams): Uint8Array {
  const { holders, shares, cache } = params;
  checkHolders(holders, 'holders', 1);
  checkShares(shares, holders);
  const rows = decodeSharesOrThrow(holders, shares);
  const lambdas = cache !== undefined ? cache.lookup(holders) : lagrangeAtZeroUnchecked(holders);
  const secret = combineRows(lambdas, rows, null);
  if (secret === null) throw new SecAggError('ERR_RECONSTRUCTION_FAILED', 'shares do not interpolate to a valid secret (at least one share is corrupt)');
  return secret;
}

// ---------------------------------------------------------------------------------------------
// Verified reconstruction with bad-share identification

export interface ReconstructParams {
  readonly holders: readonly number[];
  readonly shares: readonly Uint8Array[];
  readonly threshold: number;
  /**
   * The caller's check of a candidate secret (e.g. it derives the advertised public key, or hashes
   * to the commitment). Must be binding: recovery is only as trustworthy as this check.
   */
  readonly verify: (secret: Uint8Array) => boolean | Promise<boolean>;
  readonly cache?: LagrangeCache;
  /** Extra t-subsets to try after the canonical one fails (default DEFAULT_MAX_ATTEMPTS). */
  readonly maxAttempts?: number;
  /**
   * Awaited every few hundred thousand field operations of the slow paths (the exact per-share
   * check and the subset search), so a server reconstructing inconsistent shares keeps serving
   * others. Default: none (runs to the end).
   */
  readonly yieldToEventLoop?: () => Promise<void>;
}

/** Field operations (≈ t·C each for a checked share or a tried subset) between two yields: well under a millisecond. */
const OPS_PER_YIELD = 1 << 15;
/** What one `verify` call (a hash or an X25519 derivation, 5–50 µs) counts for. */
const VERIFY_OPS = 1 << 14;

export interface ReconstructResult {
  readonly secret: Uint8Array;
  /** Holders whose share is malformed or disagrees with the verified polynomial, ascending. */
  readonly badHolders: number[];
}

/** Deterministic 32-bit generator (mulberry32) for the subset search: reproducible, no Math.random. */
function searchPrng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let z = a;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (z ^ (z >>> 14)) >>> 0;
  };
}

/**
 * Reconstructs a secret from shares some of which may be wrong (a malicious or buggy client),
 * accepting only a secret that passes `verify`, and names every holder whose share is wrong.
 *
 * Algorithm:
 *  1. Malformed shares (wrong size, element ≥ p) are bad outright.
 *  2. Canonical attempt: the first t well-formed shares by ascending holder id — canonical so that
 *     many secrets held by the same clients hit the LagrangeCache.
 *  3. If that fails and spares exist: swap-in — replace each member of the canonical subset by each
 *     spare in turn (spares in ascending id order); O(t·C) per spare plus O(C) per position.
 *  4. Then pseudo-random t-subsets from a fixed-seed PRNG (reproducible runs), O(t²) each.
 *  Steps 3–4 share the budget `maxAttempts` (default 1000): one unit per spare set up in step 3,
 *  per `verify` call, and per random subset — so the search costs at most ≈ maxAttempts·O(t²)
 *  field operations plus maxAttempts `verify` calls. A candidate whose interpolation is not a
 *  valid secret encoding is rejected without calling `verify`.
 *  On success, every remaining share is checked against the interpolated polynomials at its x in
 *  all chunks, so `badHolders` is exactly the set of inconsistent holders. Fast path: when the
 *  canonical subset verified, one random dual check (dual.ts) first tests all k well-formed shares
 *  at once in O(k·C), with dual vectors cached per (holder set, t) in `cache`; it always passes
 *  consistent shares and lets an inconsistent set through with probability ≤ 1/p² ≈ 2^-52. Only if
 *  it fails does the exact O((k − t)·t·C) per-spare check run to name the bad holders. That
 *  residual error can only leave a bad holder unnamed — never change the (verified) secret.
 *
 * Guarantees — stated honestly:
 *  - Never returns a secret that fails `verify`. With a binding `verify`, the returned secret is the
 *    dealer's and the verified subset is all-good: a wrong share in a subset always moves the
 *    secret, because every λ_i(0) ≠ 0. So `badHolders` is exact, not a guess.
 *  - Recovery is certain when the canonical t shares are good, and (budget permitting) when exactly
 *    one of them is bad and at least one spare is good.
 *  - Otherwise it is a randomised search: each random subset is all-good with probability
 *    C(g, t)/C(k, t) for g good of k shares. This succeeds quickly when bad shares are few and
 *    spares are many, but NOT in general: with k = t + 2e shares of which e are bad, unique
 *    decoding is information-theoretically possible (Berlekamp–Welch / Gao decoding would find it
 *    in polynomial time) while this search may exhaust its budget. Then it throws
 *    ERR_RECONSTRUCTION_FAILED; the caller should treat the round as failed, which is safe.
 *  - With exactly t well-formed shares nothing can be corrected: one bad share means failure, and
 *    the culprit is unknowable (any t points fit a polynomial of degree t − 1).
 */
export async function reconstructVerified(params: ReconstructParams): Promise<ReconstructResult> {
  const { holders, shares, threshold, verify, cache } = params;
  const ascending = checkHolders(holders, 'holders', 1);
  checkShares(shares, holders);
  aint(threshold, 'threshold', 2, MAX_HOLDERS);
  if (typeof verify !== 'function') throw new TypeError('verify must be a function');
  const maxAttempts = params.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  aint(maxAttempts, 'maxAttempts', 0, Number.MAX_SAFE_INTEGER);
  /** Counts `n` field operations and yields once enough have run since the last yield. */
  const work = workPacer(OPS_PER_YIELD, params.yieldToEventLoop);

  // Well-formed shares in ascending holder order; xs[i] is the holder of rows[i*C ..]. The server
  // passes holders sorted already: sorting them again cost ~10% of a reconstruction.
  const order = holders.map((_, i) => i);
  if (!ascending) order.sort((a, b) => holders[a]! - holders[b]!);
  const rows = new Float64Array(holders.length * C);
  const xs: number[] = [];
  const malformed: number[] = [];
  for (const i of order) {
    if (decodeShare(shares[i]!, rows, xs.length) === null) xs.push(holders[i]!);
    else malformed.push(holders[i]!);
  }
  const k = xs.length;
  if (k < threshold) throw new SecAggError('ERR_RECONSTRUCTION_FAILED', `only ${k} well-formed shares for threshold ${threshold}`, { clients: malformed });

  // Dual check of all k well-formed shares (dual.ts): O(k·C) with cached vectors. Without a cache
  // the vectors are one-offs: O(k²), still cheaper than the exact check's O((k − t)·t·C).
  const allConsistent = (): boolean => {
    const duals = cache !== undefined ? cache.dualLookup(xs, threshold) : dualVectorsUnchecked(xs, threshold, newDualSeed);
    return dualCheck(duals, rows, k, C);
  };
  // `canonicalVerified`: the canonical subset verified, so in the common case (every share honest)
  // the dual check clears all k shares at once. If it fails — or another subset verified, which
  // means a canonical share is bad and the dual check would fail anyway — the exact check names
  // the culprits.
  const finish = async (subset: number[], secret: Uint8Array, canonicalVerified: boolean): Promise<ReconstructResult> => {
    let inconsistent: number[] = [];
    if (k > threshold && !(canonicalVerified && allConsistent())) {
      cache?.noteExactCheck();
      inconsistent = await inconsistentHolders(xs, rows, subset, work);
    }
    const bad = malformed.concat(inconsistent);
    bad.sort((a, b) => a - b);
    return { secret, badHolders: bad };
  };

  // Canonical subset: indices 0..t-1 (xs is ascending).
  const canonical = Array.from({ length: threshold }, (_, i) => i);
  const canonicalXs = xs.slice(0, threshold);
  const lambdas0 = cache !== undefined ? cache.lookup(canonicalXs) : lagrangeAtZeroUnchecked(canonicalXs);
  const secret0 = combineRows(lambdas0, rows, null);
  if (secret0 !== null && (await verify(secret0))) return finish(canonical, secret0, true);

  let attempts = 0;
  const tryIndices = async (idx: number[]): Promise<Uint8Array | null> => {
    attempts++;
    await work(threshold * threshold + VERIFY_OPS);
    // Not via the cache: search subsets are one-offs and would evict the sets worth keeping.
    const lambdas = lagrangeAtZeroUnchecked(idx.map((i) => xs[i]!));
    const secret = combineRows(lambdas, rows, idx);
    return secret !== null && (await verify(secret)) ? secret : null;
  };

  // Swap-in: fixes a canonical subset with one bad member as soon as a good spare comes up.
  // Why it is cheap: replacing s_i by a spare y changes the coefficients to
  //   λ'_j = λ_j · y/(y − s_j) · (s_i − s_j)/s_i   (j ≠ i),   λ'_y = Q · (s_i − y)/s_i,
  // with Q = Π_m s_m/(s_m − y). So, per chunk, the candidate secret is U − V/s_i + λ'_y·f(y) with
  // U = Σ_j λ_j·y/(y − s_j)·f(s_j) and V = Σ_j λ_j·y/(y − s_j)·s_j·f(s_j) (the j = i term vanishes
  // on its own). One O(t·C) setup per spare, then O(C) per position instead of O(t²).
  {
    const t = threshold;
    const invS = batchInvert(Float64Array.from(canonicalXs));
    const a = new Float64Array(t);
    const u = new Float64Array(C);
    const v = new Float64Array(C);
    const cand = new Float64Array(C);
    for (let r = t; r < k && attempts < maxAttempts; r++) {
      attempts++; // the O(t·C) setup
      await work(t * C);
      const y = xs[r]!;
      for (let j = 0; j < t; j++) a[j] = sub(y, canonicalXs[j]!);
      batchInvert(a); // 1/(y − s_j)
      let q = 1;
      u.fill(0);
      v.fill(0);
      for (let j = 0; j < t; j++) {
        const sj = canonicalXs[j]!;
        q = reduce(q * reduce(sj * (P - a[j]!))); // s_j / (s_j − y)
        const coef = reduce(lambdas0[j]! * reduce(y * a[j]!));
        const coefS = reduce(coef * sj);
        const base = j * C;
        for (let c = 0; c < C; c++) {
          const f = rows[base + c]!;
          u[c] = reduce(u[c]! + coef * f);
          v[c] = reduce(v[c]! + coefS * f);
        }
      }
      const rb = r * C;
      for (let pos = 0; pos < t && attempts < maxAttempts; pos++) {
        const si = canonicalXs[pos]!;
        const siInv = invS[pos]!;
        const ly = reduce(q * reduce(sub(si, y) * siInv));
        for (let c = 0; c < C; c++) cand[c] = reduce(sub(u[c]!, reduce(v[c]! * siInv)) + ly * rows[rb + c]!);
        const secret = chunksToSecret(cand);
        if (secret === null) continue; // not a valid encoding: no need to ask verify
        attempts++;
        await work(VERIFY_OPS);
        if (await verify(secret)) {
          const idx = canonical.slice();
          idx[pos] = r;
          return finish(idx, secret, false);
        }
      }
    }
  }

  // Random t-subsets (partial Fisher–Yates), only worth it when the swap phase could not cover
  // everything — with k = t + 1 it already tried every t-subset.
  if (k > threshold + 1) {
    const next = searchPrng(0x5eca99);
    const pool = Array.from({ length: k }, (_, i) => i);
    while (attempts < maxAttempts) {
      for (let i = 0; i < threshold; i++) {
        const j = i + (next() % (k - i));
        const tmp = pool[i]!;
        pool[i] = pool[j]!;
        pool[j] = tmp;
      }
      const idx = pool.slice(0, threshold);
      const s = await tryIndices(idx);
      if (s !== null) return finish(idx, s, false);
    }
  }

  throw new SecAggError(
    'ERR_RECONSTRUCTION_FAILED',
    k === threshold
      ? `the ${k} well-formed shares (exactly the threshold) do not reconstruct a verified secret`
      : `no verified secret found from ${k} well-formed shares (threshold ${threshold}) within ${attempts} extra attempts`,
    { clients: malformed },
  );
}

/**
 * Holders (not in `subset`) whose share disagrees, in any chunk, with the polynomials interpolated
 * through `subset`. Barycentric form: O(t²) once for the weights, then O(t·C) per checked share.
 */
async function inconsistentHolders(
  xs: readonly number[],
  rows: Float64Array,
  subset: readonly number[],
  work: (ops: number) => Promise<void>,
): Promise<number[]> {
  const inSubset = new Set(subset);
  const others: number[] = [];
  for (let i = 0; i < xs.length; i++) if (!inSubset.has(i)) others.push(i);
  if (others.length === 0) return [];
  const sx = subset.map((i) => xs[i]!);
  const weights = barycentricWeights(sx);
  const bad: number[] = [];
  const acc = new Float64Array(C);
  for (const r of others) {
    await work(subset.length * (C + 2));
    const basis = lagrangeAt(sx, weights, xs[r]!);
    acc.fill(0);
    for (let i = 0; i < subset.length; i++) {
      const l = basis[i]!;
      const base = subset[i]! * C;
      for (let c = 0; c < C; c++) acc[c] = reduce(acc[c]! + l * rows[base + c]!);
    }
    const rb = r * C;
    for (let c = 0; c < C; c++) {
      if (acc[c] !== rows[rb + c]) {
        bad.push(xs[r]!);
        break;
      }
    }
  }
  return bad;
}
