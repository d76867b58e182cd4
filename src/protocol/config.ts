import { SecAggError } from '../errors.js';
import { MAX_CLIENT_ID, ROUND_ID_BYTES, type ClientId, type RoundId } from '../ids.js';

export type Mode = 'semi-honest' | 'active';
export type Degree = number | 'complete';

/** The public parameters of one round, fixed by the server when the round starts. */
export interface RoundConfig {
  readonly roundId: RoundId;
  /** Ring Z_{2^bits}, 1..32. */
  readonly bits: number;
  /** m, elements per vector. */
  readonly dimension: number;
  /** Shamir threshold t: shares of a secret needed to reconstruct it. */
  readonly threshold: number;
  /** Neighbours per client; 'complete' is SecAgg, a number is SecAgg+'s k-regular graph. */
  readonly degree: Degree;
  readonly mode: Mode;
  /** Ids invited to the round, ascending. */
  readonly cohort: readonly ClientId[];
  /**
   * c, the corruption budget: how many clients colluding with the server any one neighbourhood
   * may contain while every honest client's input stays hidden (default 0). Active mode needs
   * 2t > k + c for every realised neighbourhood size k; semi-honest mode needs t > c (and 2t > k).
   * See docs/protocol.md, "Threat model".
   */
  readonly corruption?: number;
  /**
   * C, the clients colluding with the server in the whole round (default: `corruption`; in a
   * complete graph the two are the same). Active mode needs the survivor set signed by more than
   * (|U1| + C)/2 members of U1, so that two different survivor sets can never both be signed: any
   * two such quorums share an honest client, and an honest client signs one survivor set only.
   */
  readonly colluders?: number;
  /** Differential privacy of the released sum: clients add integer noise inside their masked inputs (docs/privacy.md). */
  readonly dp?: DpRoundConfig;
}

/**
 * A round's distributed-DP noise. Every honest client adds noise of variance
 * `targetVariance / dpMinHonest(config)` per coordinate, so any sum the server can release (at
 * least t masked inputs, at most C of them from colluders) carries at least `targetVariance` of
 * noise from honest clients. With `removable` (Skellam only) the clients reveal, once the survivors
 * U3 are known, the excess over `targetVariance / (|U3| − C)` each, and the server removes it: the
 * released noise is then `targetVariance` exactly when no client colludes.
 */
export interface DpRoundConfig {
  readonly mechanism: 'skellam' | 'dgauss';
  /** σ², per coordinate, in ring units (the integer grid the clients encode on). */
  readonly targetVariance: number;
  readonly removable: boolean;
}

/** Every client of an n-client cohort neighbours every other (SecAgg), whatever U1 turns out to be. */
export function isCompleteGraph(degree: Degree, n: number): boolean {
  return maxNeighbourhood(degree, n) >= n - 1;
}

/** The fewest honest clients whose inputs any released sum contains: t − C. */
export function dpMinHonest(c: Pick<RoundConfig, 'threshold' | 'corruption' | 'colluders'>): number {
  return c.threshold - colludersOf(c);
}

/** The largest per-coordinate noise variance a round may ask for (ring units): beyond it doubles lose integers. */
const MAX_DP_VARIANCE = 2 ** 52;

/** Active mode: signatures on the survivor set needed from members of U1 (|U1| = `advertised`): more than (|U1| + C)/2, and at least t. */
export function consistencyQuorum(config: RoundConfig, advertised: number): number {
  return Math.max(config.threshold, Math.floor((advertised + colludersOf(config)) / 2) + 1);
}

/** C: colluding clients tolerated in the whole round (`colluders`, default `corruption`, default 0). */
export function colludersOf(config: Pick<RoundConfig, 'corruption' | 'colluders'>): number {
  return config.colluders ?? config.corruption ?? 0;
}

/** Limits on what a round may ask for: they bound the memory an untrusted peer can make us spend. */
export interface RoundLimits {
  /** Largest vector length accepted (default 2^26 elements, 256 MiB at 32 bits). */
  readonly maxDimension: number;
  /** Largest cohort accepted (default 65,535). */
  readonly maxClients: number;
}

export const DEFAULT_LIMITS: RoundLimits = { maxDimension: 1 << 26, maxClients: MAX_CLIENT_ID };

/**
 * The largest neighbourhood any client of a round with this cohort size can end up with, whatever
 * subset of the cohort advertises keys: an odd degree over an odd number of advertised clients
 * gives k + 1 neighbours, and U1 may have either parity. Bounds are checked against this, never
 * against the declared degree.
 */
export function maxNeighbourhood(degree: Degree, cohortSize: number): number {
  if (degree === 'complete') return cohortSize - 1;
  return Math.min(degree % 2 === 1 ? degree + 1 : degree, cohortSize - 1);
}

/**
 * The bound that keeps an honest client's two secrets from both being reconstructed, for a
 * realised neighbourhood of `k` clients: in active mode a lying server gets t shares of both kinds
 * only from two disjoint groups of honest neighbours each topped up by the c colluders, which
 * needs 2(t − c) ≤ k − c; so 2t > k + c is required. Semi-honest mode: the c colluders alone must
 * stay below t (t > c), and 2t > k is kept so that a server that lies after all still gains nothing
 * without colluders. Returns why the bound fails, or undefined when it holds.
 */
export function neighbourhoodBoundViolation(mode: Mode, k: number, threshold: number, corruption: number): string | undefined {
  if (mode === 'active') {
    if (2 * threshold <= k + corruption)
      return `threshold ${threshold} with ${corruption} colluders tolerated needs 2t > k + c for a neighbourhood of ${k} (t ≥ ${Math.floor((k + corruption) / 2) + 1})`;
    return undefined;
  }
  if (threshold <= corruption) return `threshold ${threshold} must exceed the ${corruption} colluders tolerated`;
  if (2 * threshold <= k) return `threshold ${threshold} must be more than half the neighbourhood (${k})`;
  return undefined;
}

/** Neighbours per client over `n` advertised clients; mirrors buildGraph's rounding (odd k·n is impossible). */
export function effectiveDegree(degree: Degree, n: number): number {
  let k = degree === 'complete' ? n - 1 : Math.min(degree, n - 1);
  if (k % 2 === 1 && n % 2 === 1) k += 1;
  return k;
}

/** Validates a config received from the network or built by a caller; throws ERR_INVALID_PARAMETERS. */
export function validateConfig(c: RoundConfig, limits: RoundLimits = DEFAULT_LIMITS): void {
  const bad = (why: string): never => {
    throw new SecAggError('ERR_INVALID_PARAMETERS', why);
  };
  if (!(c.roundId instanceof Uint8Array) || c.roundId.length !== ROUND_ID_BYTES) bad(`round id must be ${ROUND_ID_BYTES} bytes`);
  if (!Number.isInteger(c.bits) || c.bits < 1 || c.bits > 32) bad(`bits must be in [1, 32], got ${c.bits}`);
  if (!Number.isInteger(c.dimension) || c.dimension < 1 || c.dimension > limits.maxDimension)
    bad(`dimension must be in [1, ${limits.maxDimension}], got ${c.dimension}`);
  if (c.mode !== 'semi-honest' && c.mode !== 'active') bad(`unknown mode ${String(c.mode)}`);
  const n = c.cohort.length;
  if (n < 3 || n > limits.maxClients) bad(`cohort must have 3..${limits.maxClients} clients, got ${n}`);
  for (let i = 0; i < n; i++) {
    const id = c.cohort[i]!;
    if (!Number.isInteger(id) || id < 1 || id > MAX_CLIENT_ID) bad(`cohort id ${id} is out of range`);
    if (i > 0 && id <= c.cohort[i - 1]!) bad('cohort must be strictly ascending');
  }
  if (c.degree !== 'complete' && (!Number.isInteger(c.degree) || c.degree < 2)) bad(`degree must be 'complete' or an integer ≥ 2, got ${c.degree}`);
  const k = maxNeighbourhood(c.degree, n);
  if (!Number.isInteger(c.threshold) || c.threshold < 2 || c.threshold > k) bad(`threshold must be in [2, ${k}] (the neighbourhood size), got ${c.threshold}`);
  const corruption = c.corruption ?? 0;
  if (!Number.isInteger(corruption) || corruption < 0 || corruption >= k) bad(`corruption budget must be in [0, ${k - 1}], got ${corruption}`);
  // Against the largest neighbourhood any U1 of this cohort can give; every client checks its own
  // realised neighbourhood again (clientRound.ts), and the server the graph it built (serverRound.ts).
  const why = neighbourhoodBoundViolation(c.mode, k, c.threshold, corruption);
  if (why !== undefined) bad(why);
  const colluders = colludersOf(c);
  if (!Number.isInteger(colluders) || colluders < corruption || colluders >= n)
    bad(`colluders must be in [corruption = ${corruption}, ${n - 1}], got ${colluders}`);
  if (c.dp !== undefined) {
    const { mechanism, targetVariance, removable } = c.dp;
    if (mechanism !== 'skellam' && mechanism !== 'dgauss') bad(`unknown DP mechanism ${String(mechanism)}`);
    if (!(targetVariance > 0 && targetVariance <= MAX_DP_VARIANCE)) bad(`DP target variance must be in (0, 2^52], got ${targetVariance}`);
    if (typeof removable !== 'boolean') bad('DP removable must be a boolean');
    if (removable && mechanism !== 'skellam')
      bad('removable DP noise needs the Skellam mechanism (Poisson thinning); the discrete Gaussian cannot be split exactly');
    // On a SecAgg+ graph a client checks only its own neighbours: a server could list in U3 clients
    // that sent nothing and neighbour no one in the sum it unmasks, and each client would thin for
    // them (test/attack/dp-review.test.ts). In the complete graph every U3 member is everyone's
    // neighbour, and a listed non-contributor leaves its pairwise masks on every sum.
    if (removable && k < n - 1)
      bad('removable DP noise needs the complete graph (SecAgg): on a SecAgg+ graph a server could list survivors no client can check');
    if (dpMinHonest(c) < 1) bad(`DP needs at least one honest client in every released sum: threshold ${c.threshold} must exceed the colluders ${colluders}`);
  }
}

/** The smallest threshold that meets the neighbourhood bound for every U1 of this cohort. */
export function minimumThreshold(mode: Mode, degree: Degree, cohortSize: number, corruption = 0): number {
  const k = maxNeighbourhood(degree, cohortSize);
  return Math.max(2, mode === 'active' ? Math.floor((k + corruption) / 2) + 1 : Math.max(corruption + 1, Math.floor(k / 2) + 1));
}
