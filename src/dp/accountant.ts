/**
 * The privacy accountant: Rényi DP (RDP) of one release of the noisy sum, for the three noises a
 * round can carry, amplified by Poisson subsampling of the cohort, composed over rounds, and turned
 * into (ε, δ). Plain arithmetic only (no Node API, no I/O): it runs wherever the library runs.
 *
 * Neighbouring datasets differ by adding or removing one client (the unit the service protects);
 * a client's contribution is its clipped, scaled, rounded vector, so the sensitivities below are
 * the norms of one client's vector. docs/privacy.md gives every formula with its source.
 *
 * @example
 * ```ts
 * import { accountRounds } from 'secagg';
 * const { epsilon, order } = accountRounds({
 *   mechanism: { kind: 'gaussian', noiseMultiplier: 1.1 },
 *   samplingRate: 0.01, rounds: 1000, delta: 1e-5,
 * });
 * ```
 */

// ---------------------------------------------------------------------------------------------
// Orders

/**
 * Google dp_accounting's DEFAULT_RDP_ORDERS, so that results can be compared with it: 1.1 to 10.9
 * in steps of 0.1, the integers 11 to 63, then 128, 256, 512 and 1024. Computed as 1 + i/10 (not
 * by adding 0.1 repeatedly), which gives the same floating-point numbers as dp_accounting's
 * `1 + x / 10.0`.
 */
export const DEFAULT_RDP_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10),
  ...Array.from({ length: 53 }, (_, i) => 11 + i),
  128,
  256,
  512,
  1024,
]);

// ---------------------------------------------------------------------------------------------
// Argument checks (caller bugs: TypeError / RangeError naming the parameter)

function aNumber(value: unknown, name: string): number {
  if (typeof value !== 'number' || Number.isNaN(value)) throw new TypeError(`${name} must be a number, got ${String(value)}`);
  return value;
}

function aPositive(value: unknown, name: string): number {
  const v = aNumber(value, name);
  if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`${name} must be a finite number > 0, got ${v}`);
  return v;
}

function aRate(value: unknown, name: string): number {
  const v = aNumber(value, name);
  if (!(v >= 0 && v <= 1)) throw new RangeError(`${name} must be in [0, 1], got ${v}`);
  return v;
}

function aCount(value: unknown, name: string, min: number): number {
  const v = aNumber(value, name);
  if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be an integer ≥ ${min}, got ${v}`);
  return v;
}

function aDelta(value: unknown, name: string): number {
  const v = aNumber(value, name);
  if (!(v > 0 && v < 1)) throw new RangeError(`${name} must be in (0, 1), got ${v}`);
  return v;
}

function anOrderList(value: unknown, name: string): readonly number[] {
  if (!Array.isArray(value) || value.length === 0) throw new TypeError(`${name} must be a non-empty array of numbers`);
  value.forEach((a, i) => {
    const v = aNumber(a, `${name}[${i}]`);
    if (!(v >= 1) || !Number.isFinite(v)) throw new RangeError(`${name}[${i}] must be a finite order ≥ 1, got ${v}`);
  });
  return value as readonly number[];
}

// ---------------------------------------------------------------------------------------------
// Log-space arithmetic

/** log(e^a + e^b) without overflow; −∞ is the log of 0. */
function logAdd(a: number, b: number): number {
  const hi = Math.max(a, b);
  const lo = Math.min(a, b);
  if (lo === -Infinity) return hi;
  if (hi === Infinity) return Infinity;
  return hi + Math.log1p(Math.exp(lo - hi));
}

/**
 * log |C(α, i)| for i = 0..count−1 and real α ≥ 0, by the recurrence C(α, i) = C(α, i−1)·(α−i+1)/i
 * (no gamma function needed). For integer α the entries past α are −∞ (the coefficient is 0); for
 * fractional α the coefficients change sign past α and this is the log of their absolute value.
 */
function logAbsBinomials(alpha: number, count: number): Float64Array {
  const out = new Float64Array(count);
  for (let i = 1; i < count; i++) out[i] = out[i - 1]! + Math.log(Math.abs(alpha - i + 1)) - Math.log(i);
  return out;
}

const LOG_SQRT_PI = 0.5 * Math.log(Math.PI);

/** erf(x) for 0 ≤ x < 2.5: 2/√π·e^(−x²)·Σ 2ⁿx^(2n+1)/(1·3·…·(2n+1)), a series of positive terms. */
function erfSmall(x: number): number {
  let term = x;
  let sum = x;
  const x2 = 2 * x * x;
  for (let n = 1; n < 500 && term > 1e-17 * sum; n++) {
    term *= x2 / (2 * n + 1);
    sum += term;
  }
  return Math.exp(-x * x - LOG_SQRT_PI) * 2 * sum;
}

/**
 * log(e^(x²)·√π·erfc(x)) for x ≥ 2.5, from the continued fraction
 * √π·e^(x²)·erfc(x) = 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))), evaluated by Lentz's method.
 */
function logScaledErfcLarge(x: number): number {
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let k = 1; k < 5000; k++) {
    const a = k / 2;
    d = x + a * d;
    d = Math.abs(d) < tiny ? 1 / tiny : 1 / d;
    c = x + a / c;
    if (Math.abs(c) < tiny) c = tiny;
    const step = c * d;
    f *= step;
    if (Math.abs(step - 1) < 1e-16) break;
  }
  return -Math.log(f);
}

/**
 * log(erfc(x)) for any real x, accurate far into the tail (where erfc(x) underflows). Used by the
 * fractional-order series; exported for its test, not part of the dp/ barrel.
 */
export function logErfc(x: number): number {
  if (x >= 2.5) return -x * x - LOG_SQRT_PI + logScaledErfcLarge(x);
  if (x >= 0) return Math.log1p(-erfSmall(x));
  const y = -x;
  if (y < 2.5) return Math.log1p(erfSmall(y));
  return Math.log(2 - Math.exp(-y * y - LOG_SQRT_PI + logScaledErfcLarge(y)));
}

// ---------------------------------------------------------------------------------------------
// Gaussian and Poisson-sampled Gaussian (Mironov 2017; Mironov, Talwar, Zhang 2019)

/**
 * log A_α for integer α ≥ 2 and 0 < q < 1 (Mironov, Talwar, Zhang 2019, Sec. 3.1): the binomial
 * expansion A_α = Σ_{k=0}^{α} C(α,k)·(1−q)^(α−k)·q^k·exp((k²−k)/(2z²)), summed in log space.
 */
function logAInteger(q: number, z: number, alpha: number): number {
  const logC = logAbsBinomials(alpha, alpha + 1);
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  let acc = -Infinity;
  for (let k = 0; k <= alpha; k++) acc = logAdd(acc, logC[k]! + k * logQ + (alpha - k) * log1mQ + (k * k - k) / (2 * z * z));
  return acc;
}

/** dp_accounting gives up on the fractional series after this many pairs of terms; so do we. */
const FRACTIONAL_SERIES_MAX_TERMS = 1000;

/**
 * log A_α for fractional α > 1 and 0 < q < 1: the two-sided series of Mironov, Talwar, Zhang 2019,
 * Sec. 3.3, split at z₀ = z²·log(1/q − 1) + 1/2, as Google's dp_accounting evaluates it (terms
 * taken in absolute value, which can only make the sum larger: an upper bound). Stops when both
 * halves decrease and the newest terms are below e^(−30) of the total; +∞ if that never happens
 * within FRACTIONAL_SERIES_MAX_TERMS terms (the order is then left out, as dp_accounting does).
 */
function logAFractional(q: number, z: number, alpha: number): number {
  const logC = logAbsBinomials(alpha, FRACTIONAL_SERIES_MAX_TERMS);
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const z0 = z * z * Math.log(1 / q - 1) + 0.5;
  const twoZ2 = 2 * z * z;
  const sqrt2z = Math.SQRT2 * z;
  let a0 = -Infinity;
  let a1 = -Infinity;
  let last0 = -Infinity;
  let last1 = -Infinity;
  for (let i = 0; i < FRACTIONAL_SERIES_MAX_TERMS; i++) {
    const j = alpha - i;
    const s0 = logC[i]! + i * logQ + j * log1mQ + (i * i - i) / twoZ2 + Math.log(0.5) + logErfc((i - z0) / sqrt2z);
    const s1 = logC[i]! + j * logQ + i * log1mQ + (j * j - j) / twoZ2 + Math.log(0.5) + logErfc((z0 - j) / sqrt2z);
    a0 = logAdd(a0, s0);
    a1 = logAdd(a1, s1);
    const total = logAdd(a0, a1);
    if (s0 < last0 && s1 < last1 && Math.max(s0, s1) < total - 30) return total;
    last0 = s0;
    last1 = s1;
  }
  return Infinity;
}

/**
 * RDP of one release of the Gaussian mechanism with noise multiplier z = σ/Δ₂, the cohort drawn
 * by Poisson sampling at rate q, at each order:
 * - q = 1: α/(2z²) (Mironov 2017, Proposition 7);
 * - 0 < q < 1: log(A_α)/(α − 1) (Mironov, Talwar, Zhang 2019), exactly by the binomial expansion at
 *   integer orders and by their series at fractional ones (+∞ where that series does not converge);
 * - q = 0: 0.
 *
 * @example
 * ```ts
 * sampledGaussianRdp({ noiseMultiplier: 2.5, samplingRate: 0.01, orders: [2, 5] });
 * ```
 */
export function sampledGaussianRdp(params: { noiseMultiplier: number; samplingRate: number; orders?: readonly number[] }): number[] {
  const z = aPositive(params.noiseMultiplier, 'noiseMultiplier');
  const q = aRate(params.samplingRate, 'samplingRate');
  const orders = anOrderList(params.orders ?? DEFAULT_RDP_ORDERS, 'orders');
  return orders.map((alpha) => {
    if (q === 0) return 0;
    if (q === 1) return alpha / (2 * z * z);
    // Order 1 (the KL divergence) is a limit the series does not reach: report the value at 1.01,
    // an upper bound (RDP is non-decreasing in the order). The conversion uses orders ≤ 1.01 only
    // through √(1 − e^(−RDP)), for which an upper bound is safe.
    const a = alpha === 1 ? 1.01 : alpha;
    const logA = Number.isInteger(a) ? logAInteger(q, z, a) : logAFractional(q, z, a);
    return Math.max(0, logA / (a - 1));
  });
}

// ---------------------------------------------------------------------------------------------
// Poisson subsampling of any mechanism at integer orders (Zhu & Wang 2019)

/**
 * Zhu & Wang 2019 ("Poisson Subsampled Rényi Differential Privacy", ICML), Theorem 5: if M is
 * (l, ε(l))-RDP for l = 2..α, then M applied to a Poisson sample at rate γ is (α, ε′)-RDP for the
 * integer order α ≥ 2 with
 *
 *   ε′ = 1/(α−1) · log( (1−γ)^(α−1)·(αγ − γ + 1) + C(α,2)·γ²·(1−γ)^(α−2)·e^(ε(2))
 *                       + 3·Σ_{l=3}^{α} C(α,l)·(1−γ)^(α−l)·γ^l·e^((l−1)·ε(l)) ).
 *
 * Valid for any mechanism (the factor 3 is what generality costs); summed in log space.
 * `baseRdp(l)` is ε(l). Throws RangeError for a non-integer order or a rate outside [0, 1].
 *
 * @example
 * ```ts
 * poissonSubsampledRdp({ samplingRate: 0.01, order: 8, baseRdp: (l) => l / 2 });
 * ```
 */
export function poissonSubsampledRdp(params: { samplingRate: number; order: number; baseRdp: (order: number) => number }): number {
  const g = aRate(params.samplingRate, 'samplingRate');
  const alpha = aCount(params.order, 'order', 2);
  if (typeof params.baseRdp !== 'function') throw new TypeError('baseRdp must be a function of the order');
  if (g === 0) return 0;
  if (g === 1) return params.baseRdp(alpha);
  const logG = Math.log(g);
  const log1mG = Math.log1p(-g);
  const logC = logAbsBinomials(alpha, alpha + 1);
  let acc = Math.log1p((alpha - 1) * g); // (1−γ)^(α−1)(αγ−γ+1), in log space below
  acc += (alpha - 1) * log1mG;
  acc = logAdd(acc, logC[2]! + 2 * logG + (alpha - 2) * log1mG + params.baseRdp(2));
  const log3 = Math.log(3);
  for (let l = 3; l <= alpha; l++) acc = logAdd(acc, log3 + logC[l]! + l * logG + (alpha - l) * log1mG + (l - 1) * params.baseRdp(l));
  return Math.max(0, acc / (alpha - 1));
}

// ---------------------------------------------------------------------------------------------
// The discrete mechanisms

/**
 * What one round releases: the sum of the clients' vectors plus the noise in it.
 *
 * - `gaussian`: continuous Gaussian noise of standard deviation z·Δ₂ (z = `noiseMultiplier`).
 * - `dgauss`: the distributed discrete Gaussian (Kairouz, Liu, Steinke 2021): each of `clients`
 *   clients adds independent discrete Gaussian noise N_Z(0, σ²) per coordinate, σ = `localStddev`
 *   (≥ 1/2), to an integer vector of `dimension` coordinates; `l2Sensitivity` and `l1Sensitivity`
 *   bound the l2 and l1 norms of one client's integer vector. All in integer (scaled) units.
 * - `skellam`: Skellam noise (Agarwal, Kairouz, Liu 2021) whose total variance per coordinate, in
 *   the released sum, is `variance` (μ; Skellam is closed under sums, so n clients adding variance
 *   μ/n each give exactly this); sensitivities in integer units.
 */
export type Mechanism =
  | { readonly kind: 'gaussian'; readonly noiseMultiplier: number }
  | {
      readonly kind: 'dgauss';
      readonly dimension: number;
      readonly l2Sensitivity: number;
      readonly l1Sensitivity: number;
      readonly localStddev: number;
      readonly clients: number;
    }
  | { readonly kind: 'skellam'; readonly l2Sensitivity: number; readonly l1Sensitivity: number; readonly variance: number };

/**
 * τ of Kairouz, Liu, Steinke 2021 for n clients each adding N_Z(0, σ²): 10·Σ_{k=1}^{n−1} e^(−2π²σ²·k/(k+1)).
 * The terms decrease towards e^(−2π²σ²), so past the point where a term no longer changes the sum
 * the rest is the last term times the number left (an upper bound: each is smaller).
 */
export function distributedDiscreteGaussianTau(params: { localStddev: number; clients: number }): number {
  const sigma = aPositive(params.localStddev, 'localStddev');
  const n = aCount(params.clients, 'clients', 1);
  const c = 2 * Math.PI * Math.PI * sigma * sigma;
  let sum = 0;
  for (let k = 1; k < n; k++) {
    const term = Math.exp((-c * k) / (k + 1));
    if (k > 1000 && term * (n - 1 - k) < 1e-17 * sum) break;
    sum += term;
  }
  return 10 * sum;
}

/**
 * RDP at order α of the released sum under the distributed discrete Gaussian: Kairouz, Liu, Steinke
 * 2021 (arXiv 2102.06387), Proposition 14 — with S = √n·σ,
 *   min{ α·Δ₂²/(2S²) + τ·d,  (α/2)·(Δ₂²/S² + 2·Δ₁·τ/S + τ²·d),  (α/2)·(Δ₂/S + τ·√d)² }.
 */
function dgaussRdp(m: Extract<Mechanism, { kind: 'dgauss' }>, alpha: number, tau: number): number {
  const s = Math.sqrt(m.clients) * m.localStddev;
  const d = m.dimension;
  const l2 = m.l2Sensitivity / s;
  const t1 = (alpha * l2 * l2) / 2 + tau * d;
  const t2 = (alpha / 2) * (l2 * l2 + (2 * m.l1Sensitivity * tau) / s + tau * tau * d);
  const t3 = (alpha / 2) * (l2 + tau * Math.sqrt(d)) ** 2;
  return Math.min(t1, t2, t3);
}

/**
 * RDP at integer order α > 1 of the Skellam mechanism with total variance μ per coordinate
 * (Agarwal, Kairouz, Liu 2021, arXiv 2110.04995, the multi-dimensional Skellam bound):
 *   α·Δ₂²/(2μ) + min{ ((2α − 1)·Δ₂² + 6·Δ₁)/(4μ²),  3·Δ₁/(2μ) }.
 */
function skellamRdp(m: Extract<Mechanism, { kind: 'skellam' }>, alpha: number): number {
  const mu = m.variance;
  const l2sq = m.l2Sensitivity * m.l2Sensitivity;
  return (alpha * l2sq) / (2 * mu) + Math.min(((2 * alpha - 1) * l2sq + 6 * m.l1Sensitivity) / (4 * mu * mu), (3 * m.l1Sensitivity) / (2 * mu));
}

function checkMechanism(m: Mechanism): Mechanism {
  if (m === null || typeof m !== 'object') throw new TypeError('mechanism must be an object with a kind');
  switch (m.kind) {
    case 'gaussian':
      aPositive(m.noiseMultiplier, 'mechanism.noiseMultiplier');
      return m;
    case 'dgauss': {
      aCount(m.dimension, 'mechanism.dimension', 1);
      aCount(m.clients, 'mechanism.clients', 1);
      aPositive(m.l2Sensitivity, 'mechanism.l2Sensitivity');
      aPositive(m.l1Sensitivity, 'mechanism.l1Sensitivity');
      const sigma = aPositive(m.localStddev, 'mechanism.localStddev');
      // Proposition 14 is stated for σ ≥ 1/2.
      if (sigma < 0.5) throw new RangeError(`mechanism.localStddev must be ≥ 1/2 (Kairouz et al. 2021, Prop. 14), got ${sigma}`);
      return m;
    }
    case 'skellam':
      aPositive(m.l2Sensitivity, 'mechanism.l2Sensitivity');
      aPositive(m.l1Sensitivity, 'mechanism.l1Sensitivity');
      aPositive(m.variance, 'mechanism.variance');
      return m;
    default:
      throw new RangeError(`mechanism.kind must be 'gaussian', 'dgauss' or 'skellam', got ${String((m as { kind: unknown }).kind)}`);
  }
}

/**
 * RDP of one round (one release) of `mechanism` with the cohort Poisson-sampled at `samplingRate`,
 * at each of `orders` (default DEFAULT_RDP_ORDERS).
 *
 * The discrete mechanisms' bounds are used at integer orders only (a fractional order gets +∞ and
 * so never wins the conversion): Skellam's bound is stated for integer orders, and amplification
 * by subsampling (Zhu & Wang 2019, Theorem 5) needs integer orders. With q < 1 their RDP is
 * min(subsampled bound, unsampled bound), both valid.
 *
 * @example
 * ```ts
 * mechanismRdp({ mechanism: { kind: 'skellam', l2Sensitivity: 1000, l1Sensitivity: 30000, variance: 1e6 }, samplingRate: 1 });
 * ```
 */
export function mechanismRdp(params: { mechanism: Mechanism; samplingRate?: number; orders?: readonly number[] }): number[] {
  const m = checkMechanism(params.mechanism);
  const q = aRate(params.samplingRate ?? 1, 'samplingRate');
  const orders = anOrderList(params.orders ?? DEFAULT_RDP_ORDERS, 'orders');
  if (m.kind === 'gaussian') return sampledGaussianRdp({ noiseMultiplier: m.noiseMultiplier, samplingRate: q, orders });
  const tau = m.kind === 'dgauss' ? distributedDiscreteGaussianTau(m) : 0;
  const base = (alpha: number): number => (m.kind === 'dgauss' ? dgaussRdp(m, alpha, tau) : skellamRdp(m, alpha));
  return orders.map((alpha) => {
    if (!Number.isInteger(alpha) || alpha < 2) return Infinity;
    if (q === 0) return 0;
    const unsampled = base(alpha);
    return q === 1 ? unsampled : Math.min(unsampled, poissonSubsampledRdp({ samplingRate: q, order: alpha, baseRdp: base }));
  });
}

// ---------------------------------------------------------------------------------------------
// Conversion to (ε, δ) (Balle et al. 2020), and back

/**
 * (ε, δ)-DP from RDP: for each order α > 1.01, ε(α) = RDP(α) + log((α−1)/α) − (log δ + log α)/(α−1)
 * (Balle, Barthe, Gaboardi, Hsu, Sato 2020, "Hypothesis testing interpretations and Rényi
 * differential privacy", Theorem 21), minimised over the orders; ε = 0 where δ ≥ √(1 − e^(−RDP(α)))
 * (the total-variation bound via the KL divergence, which RDP at any order ≥ 1 bounds). This is
 * the conversion of Google's dp_accounting (`compute_epsilon`). Returns ε and the order that gave it.
 *
 * @example
 * ```ts
 * epsilonFromRdp({ orders: [2, 4, 8], rdp: [0.1, 0.2, 0.4], delta: 1e-5 });
 * ```
 */
export function epsilonFromRdp(params: { orders: readonly number[]; rdp: readonly number[]; delta: number }): { epsilon: number; order: number } {
  const orders = anOrderList(params.orders, 'orders');
  const delta = aDelta(params.delta, 'delta');
  if (!Array.isArray(params.rdp) || params.rdp.length !== orders.length) throw new RangeError('rdp must have one value per order');
  let best = Infinity;
  let bestOrder = orders[0]!;
  orders.forEach((alpha, i) => {
    const r = aNumber(params.rdp[i], `rdp[${i}]`);
    let eps: number;
    if (r <= 0 || delta * delta + Math.expm1(-r) > 0) eps = 0;
    else if (alpha > 1.01 && Number.isFinite(r)) eps = r + Math.log1p(-1 / alpha) - Math.log(delta * alpha) / (alpha - 1);
    else eps = Infinity;
    if (eps < best) {
      best = eps;
      bestOrder = alpha;
    }
  });
  return { epsilon: Math.max(0, best), order: bestOrder };
}

/**
 * The inverse conversion: the smallest δ the same bound gives for a target ε, with its order
 * (log δ(α) = (α−1)·(RDP(α) − ε + log(1 − 1/α)) − log α, and δ ≤ √(1 − e^(−RDP(α)))); at most 1.
 *
 * @example
 * ```ts
 * deltaFromRdp({ orders: [2, 4, 8], rdp: [0.1, 0.2, 0.4], epsilon: 1 });
 * ```
 */
export function deltaFromRdp(params: { orders: readonly number[]; rdp: readonly number[]; epsilon: number }): { delta: number; order: number } {
  const orders = anOrderList(params.orders, 'orders');
  const epsilon = aNumber(params.epsilon, 'epsilon');
  if (!(epsilon >= 0)) throw new RangeError(`epsilon must be ≥ 0, got ${epsilon}`);
  if (!Array.isArray(params.rdp) || params.rdp.length !== orders.length) throw new RangeError('rdp must have one value per order');
  let best = Infinity;
  let bestOrder = orders[0]!;
  orders.forEach((alpha, i) => {
    const r = aNumber(params.rdp[i], `rdp[${i}]`);
    let logDelta = r <= 0 ? -Infinity : 0.5 * Math.log1p(-Math.exp(-r));
    if (alpha > 1.01) logDelta = Math.min(logDelta, (alpha - 1) * (r - epsilon + Math.log1p(-1 / alpha)) - Math.log(alpha));
    if (logDelta < best) {
      best = logDelta;
      bestOrder = alpha;
    }
  });
  return { delta: Math.min(1, Math.exp(best)), order: bestOrder };
}

// ---------------------------------------------------------------------------------------------
// Rounds

export interface AccountOptions {
  /** The noise in each round's released sum. */
  mechanism: Mechanism;
  /** Poisson sampling rate q of the cohort from its population, in [0, 1] (1: no sampling). */
  samplingRate: number;
  /** Rounds, each an independent release with the same parameters (RDP adds up over them). */
  rounds: number;
  /** δ in (0, 1). */
  delta: number;
  /** RDP orders to optimise over; default DEFAULT_RDP_ORDERS. */
  orders?: readonly number[];
}

export interface AccountResult {
  /** ε of the whole run at the given δ. */
  readonly epsilon: number;
  /** The RDP order at which ε is attained. */
  readonly order: number;
  readonly orders: readonly number[];
  /** RDP of the whole run (rounds × one round's) at each order. */
  readonly rdp: readonly number[];
}

/**
 * (ε, δ) of `rounds` releases: one round's RDP (mechanismRdp) times the number of rounds
 * (composition of RDP, Mironov 2017, Proposition 1), converted by epsilonFromRdp.
 *
 * @example
 * ```ts
 * const { epsilon } = accountRounds({ mechanism: { kind: 'gaussian', noiseMultiplier: 1 }, samplingRate: 0.01, rounds: 100, delta: 1e-5 });
 * ```
 */
export function accountRounds(options: AccountOptions): AccountResult {
  const rounds = aCount(options.rounds, 'rounds', 0);
  const delta = aDelta(options.delta, 'delta');
  const orders = anOrderList(options.orders ?? DEFAULT_RDP_ORDERS, 'orders');
  const one = mechanismRdp({ mechanism: options.mechanism, samplingRate: options.samplingRate, orders });
  const rdp = one.map((r) => (rounds === 0 ? 0 : r * rounds));
  const { epsilon, order } = epsilonFromRdp({ orders, rdp, delta });
  return { epsilon, order, orders, rdp };
}

// ---------------------------------------------------------------------------------------------
// From (noise multiplier, clip, bits) to the discrete mechanisms' integer parameters

export interface DiscreteSetup {
  kind: 'dgauss' | 'skellam';
  /**
   * z: the standard deviation of the noise in the released sum, per coordinate, divided by the
   * l2 clip c (both in the real units of the update), as for the Gaussian mechanism.
   */
  noiseMultiplier: number;
  /** c > 0: every client's vector is clipped to l2 norm c before scaling. */
  l2Clip: number;
  /** d: coordinates of the (padded, rotated) vector each client sends. */
  dimension: number;
  /** b: bits per coordinate of the ring the sum is taken in (Z mod 2^b). */
  bits: number;
  /** n: clients whose noise is in the released sum (the fewest that can be in a released sum). */
  clients: number;
  /**
   * k: the scale is chosen so that k standard deviations of one coordinate of the noisy sum fit in
   * the ring (default 4).
   */
  kStddevs?: number;
}

/**
 * The scale s (integer units per real unit) a b-bit ring allows, by the heuristic of Kairouz, Liu,
 * Steinke 2021 (Sec. 4.2/4.4, as in TensorFlow Federated's distributed-DP aggregator) with a flat
 * rotation (ρ = 1) and the worst-case growth of the sum's norm (n·c): solve
 *   2^b = 2k·√(c²n²/d + n·(1/(4s²)) + σ²) · s
 * for s, where σ = z·c is the standard deviation of the total noise per coordinate in real units
 * (n·1/(4s²) is the variance of rounding n values):
 *   s = √(2^(2b) − n·k²) / (2k·√(c²n²/d + σ²)).
 * Throws RangeError when 2^(2b) ≤ n·k² (the ring cannot hold the rounding noise alone).
 */
export function scaleForBits(setup: DiscreteSetup): number {
  const z = aPositive(setup.noiseMultiplier, 'noiseMultiplier');
  const c = aPositive(setup.l2Clip, 'l2Clip');
  const d = aCount(setup.dimension, 'dimension', 1);
  const b = aCount(setup.bits, 'bits', 1);
  if (b > 52) throw new RangeError(`bits must be at most 52, got ${b}`);
  const n = aCount(setup.clients, 'clients', 1);
  const k = aPositive(setup.kStddevs ?? 4, 'kStddevs');
  const room = 2 ** (2 * b) - n * k * k;
  if (!(room > 0)) throw new RangeError(`bits: a ${b}-bit ring cannot hold the rounding of ${n} clients at ${k} standard deviations`);
  const sigma = z * c;
  return Math.sqrt(room) / (2 * k * Math.sqrt((c * c * n * n) / d + sigma * sigma));
}

/**
 * The discrete mechanism a round with these real-valued parameters releases, in integer units:
 * scale s = scaleForBits(setup); one client's integer vector has l2 norm at most s·c + √d (rounding
 * each coordinate to an adjacent integer moves it by less than 1, whatever rounding is used) and l1
 * norm at most min(√d·Δ₂, Δ₂²) (an integer vector's l1 norm is at most its squared l2 norm); the
 * total noise has standard deviation s·z·c per coordinate, so
 * - dgauss: each of the n clients adds N_Z(0, σ²) with σ = s·z·c/√n;
 * - skellam: the total variance is μ = (s·z·c)².
 *
 * @example
 * ```ts
 * const { mechanism, scale } = discreteMechanism({ kind: 'skellam', noiseMultiplier: 1, l2Clip: 1, dimension: 65536, bits: 16, clients: 100 });
 * ```
 */
export function discreteMechanism(setup: DiscreteSetup): { mechanism: Mechanism; scale: number } {
  if (setup.kind !== 'dgauss' && setup.kind !== 'skellam') throw new RangeError(`kind must be 'dgauss' or 'skellam', got ${String(setup.kind)}`);
  const scale = scaleForBits(setup);
  const d = setup.dimension;
  const l2Sensitivity = scale * setup.l2Clip + Math.sqrt(d);
  const l1Sensitivity = Math.min(Math.sqrt(d) * l2Sensitivity, l2Sensitivity * l2Sensitivity);
  const totalStddev = scale * setup.noiseMultiplier * setup.l2Clip;
  const mechanism: Mechanism =
    setup.kind === 'dgauss'
      ? { kind: 'dgauss', dimension: d, l2Sensitivity, l1Sensitivity, localStddev: totalStddev / Math.sqrt(setup.clients), clients: setup.clients }
      : { kind: 'skellam', l2Sensitivity, l1Sensitivity, variance: totalStddev * totalStddev };
  return { mechanism, scale };
}

// ---------------------------------------------------------------------------------------------
// The inverse a planner needs

export interface CalibrateOptions {
  /** Target ε (> 0) of the whole run. */
  epsilon: number;
  delta: number;
  samplingRate: number;
  rounds: number;
  /** The mechanism at noise multiplier z, e.g. z => ({ kind: 'gaussian', noiseMultiplier: z }). */
  mechanismFor: (noiseMultiplier: number) => Mechanism;
  orders?: readonly number[];
  /** Search range for z (default [0.05, 1000]) and the relative width to stop at (default 1e-6). */
  lower?: number;
  upper?: number;
  tolerance?: number;
}

/**
 * The noise multiplier a run needs for a target ε: bisection (on log z) over [lower, upper]. The
 * answer always meets the target — it is the upper end of the final bracket, whose ε was checked
 * to be ≤ the target — and is the smallest such z to within `tolerance` when ε decreases with z
 * (as it does for the Gaussian: each order's RDP decreases in z). Throws RangeError when even
 * `upper` does not reach the target (or a mechanism cannot be built there).
 *
 * @example
 * ```ts
 * const z = calibrateNoiseMultiplier({ epsilon: 2, delta: 1e-5, samplingRate: 0.01, rounds: 1000,
 *   mechanismFor: (z) => ({ kind: 'gaussian', noiseMultiplier: z }) });
 * ```
 */
export function calibrateNoiseMultiplier(options: CalibrateOptions): number {
  const target = aPositive(options.epsilon, 'epsilon');
  let lo = aPositive(options.lower ?? 0.05, 'lower');
  let hi = aPositive(options.upper ?? 1000, 'upper');
  const tol = aPositive(options.tolerance ?? 1e-6, 'tolerance');
  if (!(lo < hi)) throw new RangeError(`lower must be below upper, got [${lo}, ${hi}]`);
  if (typeof options.mechanismFor !== 'function') throw new TypeError('mechanismFor must be a function of the noise multiplier');
  const eps = (z: number): number =>
    accountRounds({
      mechanism: options.mechanismFor(z),
      samplingRate: options.samplingRate,
      rounds: options.rounds,
      delta: options.delta,
      ...(options.orders ? { orders: options.orders } : {}),
    }).epsilon;
  if (!(eps(hi) <= target)) throw new RangeError(`epsilon ${target} is not reached even at noise multiplier ${hi}`);
  if (eps(lo) <= target) return lo;
  while (hi / lo > 1 + tol) {
    const mid = Math.sqrt(lo * hi);
    if (eps(mid) <= target) hi = mid;
    else lo = mid;
  }
  return hi;
}
