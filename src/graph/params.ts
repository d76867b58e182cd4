/**
 * Choosing the degree k of the SecAgg+ Harary graph and the Shamir threshold t.
 *
 * Source: Bell, Bonawitz, Gascón, Lepoint, Raykova, "Secure Single-Server Aggregation with
 * (Poly)Logarithmic Overhead", CCS 2020 (ePrint 2020/704): the sparse-graph protocol is secure and
 * correct when the random graph is "good" for the realised corrupt/dropped sets — (1) the honest,
 * surviving clients stay connected, (2) no honest client has t or more corrupt neighbours (in the
 * semi-malicious variant: fewer than 2t − k), (3) every surviving client keeps at least t
 * surviving neighbours. The concrete search below is the one of the paper's authors'
 * implementation (Google federated-compute, fcp/secagg/server/graph_parameter_finder.cc), re-derived
 * and recomputed with exact hypergeometric tails; see docs/parameters.md for what differs.
 *
 * Every probability is over the seeded random permutation of the Harary graph, for corrupt and
 * dropped sets fixed independently of that permutation (static corruption, dropouts that do not
 * depend on the graph). Failure events are combined by union bounds:
 *   P[insecure]  ≤ P[(1) fails] + n · P[C ≥ t_sec]          each term ≤ 2^−(σ+1), total ≤ 2^−σ
 *   P[incorrect] ≤ n · P[L < t]                               ≤ 2^−η
 * with C ~ Hypergeometric(n−1, A, k) the corrupt neighbours of an honest client and
 * L = k − Hypergeometric(n−1, D, k) the live neighbours of a surviving client.
 */
import { SecAggError } from '../errors.js';
import { MAX_CLIENT_ID } from '../ids.js';

export type AdversaryModel = 'semi-honest' | 'semi-malicious';

export interface ParameterRequirements {
  /** Number of clients n expected in U1 (2..65535). */
  readonly clients: number;
  /** δ: fraction of the n clients that may drop out during the round, in [0, 1). */
  readonly dropoutRate: number;
  /** γ: fraction of the n clients the adversary may corrupt (collude with the server), in [0, 1). */
  readonly corruptionRate: number;
  /** σ: the protocol leaks more than it should with probability ≤ 2^−σ. */
  readonly securityBits: number;
  /** η: the round fails for lack of shares with probability ≤ 2^−η. Default 30. */
  readonly correctnessBits?: number;
  /**
   * 'semi-malicious' (default): the server may tell different clients different dropout sets,
   * which needs 2t > k + (corrupt neighbours) so it can never gather t shares of both kinds. This
   * is the default because the protocol layer refuses any t ≤ k/2 in every mode (see
   * protocol/config.ts). 'semi-honest': the server follows the protocol; its smaller thresholds
   * are for analysis and comparison with other implementations.
   */
  readonly model?: AdversaryModel;
}

export interface ParameterRecommendation {
  /** Number of neighbours per client. n − 1 means the complete graph (plain SecAgg). */
  readonly degree: number;
  /** Shamir threshold: the smallest value in `thresholdRange` (cheapest reconstruction). */
  readonly threshold: number;
  /** True when no sparse graph with k ≤ 0.9·(n − 1) meets the bounds (then k = n − 1). */
  readonly complete: boolean;
  /** Every t in [min, max] meets the same bounds; larger t trades correctness for security margin. */
  readonly thresholdRange: { readonly min: number; readonly max: number };
  readonly clients: number;
  /** A = ⌈γ·n⌉ corrupt clients assumed. */
  readonly corruptClients: number;
  /** D = ⌈δ·n⌉ dropped clients assumed. */
  readonly droppedClients: number;
  /**
   * The corruption budget c to put in the round's config (RoundConfig.corruption): the most
   * corrupt neighbours any honest client has except with probability ≤ 2^−(σ+1). `threshold`
   * meets the protocol's bound for it (2t > k + c, or t > c for 'semi-honest').
   */
  readonly corruption: number;
  /** log2 of the bound on P[honest surviving subgraph disconnected]; −Infinity when impossible. */
  readonly log2Disconnected: number;
  /** log2 of n · P[an honest client has too many corrupt neighbours for `threshold`]. */
  readonly log2TooManyCorrupt: number;
  /** log2 of n · P[a surviving client has fewer than `threshold` live neighbours]. */
  readonly log2TooFewLive: number;
  readonly securityBits: number;
  readonly correctnessBits: number;
  readonly model: AdversaryModel;
}

const DEFAULT_CORRECTNESS_BITS = 30;
/** Below this fraction of neighbours saved, recommend the complete graph instead. */
const SPARSE_MIN_SAVING = 0.1;
const LN2 = Math.LN2;

/**
 * Smallest even k (and the smallest compatible t) meeting the bounds in this module's header, or
 * the complete graph when no k ≤ 0.9·(n − 1) does. Throws ERR_INVALID_PARAMETERS when not even the
 * complete graph can meet them (e.g. corrupt + dropped ≥ n − 1).
 *
 * @example
 * ```ts
 * const { degree, threshold } = recommendParameters({ clients: 1000, dropoutRate: 0.1, corruptionRate: 0, securityBits: 40 });
 * // degree 48, threshold 25: each client talks to 48 others instead of 999
 * ```
 */
export function recommendParameters(req: ParameterRequirements): ParameterRecommendation {
  validate(req, MAX_CLIENT_ID);
  return search(req);
}

/**
 * The complete graph's (k = n − 1, t) under the same bounds: what recommendParameters falls back to
 * when no sparse graph saves 10% of the neighbours, asked for directly (plain SecAgg by choice).
 * With k = n − 1 the corrupt neighbours (A) and the live ones (n − 1 − D) are certain, so the bounds
 * reduce to t = max(2, ⌊(n − 1 + A)/2⌋ + 1) — protocol/config.ts's minimumThreshold('active',
 * 'complete', n, A) — and t ≤ n − 1 − D. Throws ERR_INVALID_PARAMETERS when that range is empty.
 *
 * @example
 * ```ts
 * const { degree, threshold, corruption } = completeGraphParameters({ clients: 100, dropoutRate: 0.1, corruptionRate: 0.05, securityBits: 40 });
 * // degree 99, threshold 53, corruption 5
 * ```
 */
export function completeGraphParameters(req: ParameterRequirements): ParameterRecommendation {
  validate(req, MAX_CLIENT_ID);
  const ctx = context(req);
  const { n, A, D } = ctx;
  if (A + D >= n - 1) throw invalid(`${A} corrupt + ${D} dropped clients leave no honest surviving neighbour among ${n - 1}; no threshold can work`);
  const full = tryDegree(ctx, n - 1, true, {});
  if (full === undefined)
    throw invalid(
      `the complete graph over n=${n} has no threshold for γ=${req.corruptionRate}, δ=${req.dropoutRate}: it needs t ≥ ${Math.max(2, Math.floor((n - 1 + A) / 2) + 1)} and t ≤ ${n - 1 - D}`,
    );
  return recommendationFrom(req, ctx, full);
}

/**
 * @internal Same as recommendParameters without the 65535-client cap of ClientId, for analysis
 * (the docs table goes to n = 100 000). Not exported from the barrel.
 */
export function recommendParametersForAnalysis(req: ParameterRequirements): ParameterRecommendation {
  validate(req, Number.MAX_SAFE_INTEGER);
  return search(req);
}

/**
 * Evaluates the bounds for a given (k, t), e.g. one configured by hand. `ok` says whether both
 * the security and the correctness budget are met.
 */
export function checkParameters(
  req: ParameterRequirements & { readonly degree: number; readonly threshold: number },
): ParameterRecommendation & { readonly ok: boolean } {
  validate(req, MAX_CLIENT_ID);
  const n = req.clients;
  const k = req.degree;
  const t = req.threshold;
  if (!Number.isSafeInteger(k) || k < 1 || k > n - 1) throw invalid(`degree must be an integer in [1, ${n - 1}], got ${k}`);
  if (!Number.isSafeInteger(t) || t < 1 || t > k) throw invalid(`threshold must be an integer in [1, ${k}], got ${t}`);
  const ctx = context(req);
  const complete = k === n - 1;
  if (!complete && k % 2 === 1) throw invalid('the bounds are implemented for even degrees and the complete graph only');
  const disc = complete ? -Infinity : logDisconnected(n, k, ctx.A + ctx.D);
  const corrupt = Math.log(n) + logUpperTail(n - 1, ctx.A, k, corruptCutoff(t, k, ctx.model));
  const live = Math.log(n) + logUpperTail(n - 1, ctx.D, k, k - t + 1);
  const ok = disc < ctx.logQsec && corrupt <= ctx.logQsec && live <= ctx.logQcor && t >= 2;
  return {
    // The budget this (k, t) supports: the most colluding neighbours the bound tolerates.
    ...recommendation(req, ctx, k, t, t, complete, disc, corrupt, live, ctx.model === 'semi-honest' ? t - 1 : 2 * t - k - 1),
    ok,
  };
}

/**
 * A safe default threshold for a graph of degree k when no threat model is given: a strict
 * majority of the neighbourhood, ⌊k/2⌋ + 1. It is the smallest t with 2t > k, which is what stops
 * a server that lies about who dropped from collecting t shares of both kinds for one client
 * (the two groups it would need are disjoint subsets of the k neighbours). It tolerates
 * ⌈k/2⌉ − 1 dropped neighbours. With colluding clients this is not enough on its own; use
 * recommendParameters.
 */
export function defaultThreshold(degree: number): number {
  if (!Number.isSafeInteger(degree) || degree < 1) throw new RangeError(`degree must be a positive integer, got ${degree}`);
  return Math.floor(degree / 2) + 1;
}

// ---------------------------------------------------------------------------------------------

interface Context {
  readonly n: number;
  readonly A: number;
  readonly D: number;
  readonly sigma: number;
  readonly eta: number;
  readonly model: AdversaryModel;
  /** ln of the per-event security budget 2^−(σ+1). */
  readonly logQsec: number;
  /** ln of the correctness budget 2^−η. */
  readonly logQcor: number;
}

function context(req: ParameterRequirements): Context {
  const n = req.clients;
  const sigma = req.securityBits;
  const eta = req.correctnessBits ?? DEFAULT_CORRECTNESS_BITS;
  // Rounded up so a rate like 0.1 never assumes fewer bad clients than it says; the epsilon
  // keeps 0.3 · 100 = 30.000000000000004 from becoming 31.
  const A = Math.ceil(req.corruptionRate * n - 1e-9);
  const D = Math.ceil(req.dropoutRate * n - 1e-9);
  return {
    n,
    A,
    D,
    sigma,
    eta,
    model: req.model ?? 'semi-malicious',
    logQsec: -(sigma + 1) * LN2,
    logQcor: -eta * LN2,
  };
}

function search(req: ParameterRequirements): ParameterRecommendation {
  const ctx = context(req);
  const { n, A, D } = ctx;
  if (A + D >= n - 1) throw invalid(`${A} corrupt + ${D} dropped clients leave no honest surviving neighbour among ${n - 1}; no threshold can work`);
  const full = tryDegree(ctx, n - 1, true, {});
  const hints: Hints = {};
  for (let k = 2; k < n - 1; k += 2) {
    // A sparse graph that saves under 10% of the neighbours is not worth its failure probability
    // and its sensitivity to the assumed rates: the complete graph has neither.
    if (full !== undefined && k > (1 - SPARSE_MIN_SAVING) * (n - 1)) break;
    const r = tryDegree(ctx, k, false, hints);
    if (r !== undefined) return recommendationFrom(req, ctx, r);
  }
  if (full !== undefined) return recommendationFrom(req, ctx, full);
  throw invalid(`no (degree, threshold) meets σ=${ctx.sigma}, η=${ctx.eta} for n=${n}, γ=${req.corruptionRate}, δ=${req.dropoutRate}`);
}

interface Trial {
  k: number;
  /** Smallest c with n · P[corrupt neighbours ≥ c] within budget: c* − 1 is the corruption budget. */
  cStar: number;
  tMin: number;
  tMax: number;
  complete: boolean;
  disc: number;
}

/** The previous degree's cut-offs, to start the next degree's search next to its answer. */
interface Hints {
  c?: number;
  d?: number;
}

function tryDegree(ctx: Context, k: number, complete: boolean, hints: Hints): Trial | undefined {
  const { n, A, D } = ctx;
  const disc = complete ? -Infinity : logDisconnected(n, k, A + D);
  if (!(disc < ctx.logQsec)) return undefined;
  // c*: smallest c with n · P[C ≥ c] ≤ 2^−(σ+1), so any honest client has < c* corrupt neighbours.
  const cStar = smallestTailBelow(n - 1, A, k, ctx.logQsec - Math.log(n), hints.c);
  hints.c = cStar;
  // d*: smallest d with n · P[dropped neighbours ≥ d] ≤ 2^−η; then live ≥ k − d* + 1 =: tMax.
  const dStar = smallestTailBelow(n - 1, D, k, ctx.logQcor - Math.log(n), hints.d);
  hints.d = dStar;
  const tMax = k + 1 - dStar;
  // Semi-honest: t ≥ c*. Semi-malicious: the corrupt c plus two disjoint groups of honest
  // neighbours must not both reach t, i.e. 2t − k > c for all likely c: 2t − k ≥ c*.
  const secure = ctx.model === 'semi-honest' ? cStar : Math.ceil((k + cStar) / 2);
  // t = 1 would make every share the secret itself; Shamir needs a polynomial of degree ≥ 1.
  const tMin = Math.max(secure, 2);
  if (tMin > tMax) return undefined;
  return { k, cStar, tMin, tMax, complete, disc };
}

function recommendationFrom(req: ParameterRequirements, ctx: Context, r: Trial): ParameterRecommendation {
  const corrupt = Math.log(ctx.n) + logUpperTail(ctx.n - 1, ctx.A, r.k, corruptCutoff(r.tMin, r.k, ctx.model));
  const live = Math.log(ctx.n) + logUpperTail(ctx.n - 1, ctx.D, r.k, r.k - r.tMin + 1);
  return recommendation(req, ctx, r.k, r.tMin, r.tMax, r.complete, r.disc, corrupt, live, r.cStar - 1);
}

function recommendation(
  req: ParameterRequirements,
  ctx: Context,
  k: number,
  t: number,
  tMax: number,
  complete: boolean,
  disc: number,
  corrupt: number,
  live: number,
  corruption: number,
): ParameterRecommendation {
  return {
    degree: k,
    threshold: t,
    complete,
    thresholdRange: { min: t, max: tMax },
    clients: ctx.n,
    corruptClients: ctx.A,
    droppedClients: ctx.D,
    corruption: Math.max(0, corruption),
    log2Disconnected: disc / LN2,
    log2TooManyCorrupt: corrupt / LN2,
    log2TooFewLive: live / LN2,
    securityBits: ctx.sigma,
    correctnessBits: ctx.eta,
    model: req.model ?? 'semi-malicious',
  };
}

/** The number of corrupt neighbours at which threshold t stops protecting an honest client. */
function corruptCutoff(t: number, k: number, model: AdversaryModel): number {
  return model === 'semi-honest' ? t : 2 * t - k;
}

/**
 * ln of the union bound on the honest surviving clients being disconnected in H(k, n), k even,
 * under a random placement of B = A + D bad (corrupt or dropped) clients. Removing vertices from
 * H(k, n) disconnects it only if two disjoint runs of k/2 consecutive positions, each with a
 * remaining vertex on both sides, are all removed: n·(n−k−1)/2 such pairs of runs, each all-bad
 * with probability C(n−k, B−k)/C(n, B) = B!(n−k)! / (n!(B−k)!).
 */
function logDisconnected(n: number, k: number, B: number): number {
  if (B < k || n - k - 1 < 1) return -Infinity;
  const pairs = Math.log(n) + Math.log(n - k - 1) - LN2;
  return pairs + logFactorial(B) + logFactorial(n - k) - logFactorial(n) - logFactorial(B - k);
}

function invalid(message: string): SecAggError {
  return new SecAggError('ERR_INVALID_PARAMETERS', message);
}

function validate(req: ParameterRequirements, maxClients: number): void {
  if (typeof req !== 'object' || req === null) throw new TypeError('requirements must be an object');
  const { clients, dropoutRate, corruptionRate, securityBits, correctnessBits, model } = req;
  if (!Number.isSafeInteger(clients) || clients < 2 || clients > maxClients)
    throw new RangeError(`clients must be an integer in [2, ${maxClients}], got ${clients}`);
  for (const [name, v] of [
    ['dropoutRate', dropoutRate],
    ['corruptionRate', corruptionRate],
  ] as const) {
    if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new RangeError(`${name} must be in [0, 1), got ${v}`);
  }
  if (typeof securityBits !== 'number' || !(securityBits >= 1 && securityBits <= 256))
    throw new RangeError(`securityBits must be in [1, 256], got ${securityBits}`);
  if (correctnessBits !== undefined && (typeof correctnessBits !== 'number' || !(correctnessBits >= 1 && correctnessBits <= 256)))
    throw new RangeError(`correctnessBits must be in [1, 256], got ${correctnessBits}`);
  if (model !== undefined && model !== 'semi-honest' && model !== 'semi-malicious')
    throw new RangeError(`model must be 'semi-honest' or 'semi-malicious', got ${String(model)}`);
}

// --- exact hypergeometric tails in log space --------------------------------------------------

const SMALL = 256;
const LOG_FACT_TABLE = (() => {
  const t = new Float64Array(SMALL);
  for (let i = 2; i < SMALL; i++) t[i] = t[i - 1]! + Math.log(i);
  return t;
})();

/** ln(x!) for integer x ≥ 0: a table below 256, Stirling's series (error < 1/(1680·x^7)) above. */
function logFactorial(x: number): number {
  if (x < SMALL) return LOG_FACT_TABLE[x]!;
  const inv = 1 / x;
  const inv2 = inv * inv;
  return x * Math.log(x) - x + 0.5 * Math.log(2 * Math.PI * x) + inv * (1 / 12 - inv2 * (1 / 360 - inv2 / 1260));
}

function logChoose(a: number, b: number): number {
  if (b < 0 || b > a) return -Infinity;
  return logFactorial(a) - logFactorial(b) - logFactorial(a - b);
}

/** ln P[X = x] for X ~ Hypergeometric(population N, K marked, k drawn). */
function hypergeometricLogPmf(N: number, K: number, k: number, x: number): number {
  return logChoose(K, x) + logChoose(N - K, k - x) - logChoose(N, k);
}

/**
 * ln P[X ≥ t], summed exactly term by term from t upwards. Past the mode the terms shrink
 * geometrically, so the sum stops once they fall 2^−72 below the running total.
 */
function logUpperTail(N: number, K: number, k: number, t: number): number {
  const lo = Math.max(0, k - (N - K));
  const hi = Math.min(k, K);
  if (t > hi) return -Infinity;
  if (t <= lo) return 0;
  const mode = Math.floor(((k + 1) * (K + 1)) / (N + 2));
  // First term exactly, the rest by the pmf ratio p(x+1)/p(x) = (K−x)(k−x) / ((x+1)(N−K−k+x+1)):
  // one log per term instead of nine log-factorials.
  let term = hypergeometricLogPmf(N, K, k, t);
  let acc = term;
  for (let x = t; x < hi; x++) {
    term += Math.log(((K - x) * (k - x)) / ((x + 1) * (N - K - k + x + 1)));
    acc = logAddExp(acc, term);
    if (x + 1 > mode && term < acc - 50) break;
  }
  return Math.min(acc, 0);
}

function logAddExp(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  return a > b ? a + Math.log1p(Math.exp(b - a)) : b + Math.log1p(Math.exp(a - b));
}

/**
 * Smallest c with ln P[X ≥ c] ≤ logQ (a tail that small lies above the median, where tails are
 * decreasing). Starts from `hint` (the answer for the previous degree, which moves by a step or
 * two per degree) or, without one, from Hoeffding's bound P[X ≥ mean + s] ≤ e^{−2s²/k}, and walks.
 */
function smallestTailBelow(N: number, K: number, k: number, logQ: number, hint?: number): number {
  const supportLo = Math.max(0, k - (N - K));
  const supportHi = Math.min(k, K);
  const mean = (k * K) / N;
  const ok = (c: number): boolean => logUpperTail(N, K, k, c) <= logQ;
  let c = hint ?? Math.ceil(mean + Math.sqrt((-logQ * k) / 2));
  c = Math.min(Math.max(c, supportLo), supportHi + 1);
  if (ok(c)) {
    while (c > supportLo && ok(c - 1)) c--;
  } else {
    while (!ok(c)) c++; // terminates: the tail above the support is −∞
  }
  return c;
}
