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
}

/** Limits on what a round may ask for: they bound the memory an untrusted peer can make us spend. */
export interface RoundLimits {
  /** Largest vector length accepted (default 2^26 elements, 256 MiB at 32 bits). */
  readonly maxDimension: number;
  /** Largest cohort accepted (default 65,535). */
  readonly maxClients: number;
}

export const DEFAULT_LIMITS: RoundLimits = { maxDimension: 1 << 26, maxClients: MAX_CLIENT_ID };

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
  const k = effectiveDegree(c.degree, n);
  if (!Number.isInteger(c.threshold) || c.threshold < 2 || c.threshold > k)
    bad(`threshold must be in [2, ${k}] (the neighbourhood size), got ${c.threshold}`);
  // t ≤ k/2 would let the server collect both kinds of shares of one client from two disjoint
  // halves of its neighbourhood without any client cheating.
  if (2 * c.threshold <= k) bad(`threshold ${c.threshold} must be more than half the neighbourhood (${k})`);
}
