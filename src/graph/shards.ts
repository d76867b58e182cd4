/**
 * Splitting one large cohort into shards: independent SecAgg instances whose sums a coordinator
 * adds (docs/protocol.md, "Sharding"). The coordinator learns every shard's sum, so the shard — not
 * the cohort — is the privacy unit: an input is hidden among the other inputs of its shard only.
 * Hence the floor `minShardSize` the operator sets, and the rules below:
 *
 * - every shard has at least `minShardSize` clients;
 * - shard sizes differ by at most one (no shard is left small by the remainder);
 * - as few shards as keep every shard at most `maxShardSize` clients: s = ⌈n / maxShardSize⌉, and
 *   the sizes are ⌊n/s⌋ and ⌈n/s⌉. More shards would only make each smaller (cheaper, but a smaller
 *   privacy unit); fewer would break the cap. If ⌊n/s⌋ < minShardSize no plan exists for this n (a
 *   larger s only shrinks the shards): refused. With maxShardSize ≥ 2·minShardSize − 1 every
 *   n ≥ minShardSize has a plan, since ⌊n/s⌋ ≥ ⌊(maxShardSize + 1)/2⌋ whenever s ≥ 2;
 * - each shard's degree and threshold are recommendParameters' for that shard's size (a SecAgg+
 *   Harary graph), or completeGraphParameters' (plain SecAgg), with the same dropout and corruption
 *   rates and security levels: the rates are fractions, so they carry over to every shard.
 *
 * Pure and browser-safe: plain arithmetic, and an injected Rng for the assignment.
 */
import { SecAggError, isSecAggError } from '../errors.js';
import { MAX_CLIENT_ID, type ClientId } from '../ids.js';
import type { Rng } from '../rng.js';
import { completeGraphParameters, recommendParameters, type ParameterRecommendation, type ParameterRequirements } from './params.js';

/**
 * The default cap on a shard's clients. 1000 keeps one shard's work within one worker process and,
 * in the complete graph, one client's within about a second: each client of a complete-graph shard
 * masks with n − 1 neighbours (~1.25 s at m = 10^6 with 1,000 of them, measured: DESIGN.md), and the
 * worker forwards n(n − 1) encrypted shares (~10^6 of 112 bytes per round). In SecAgg+ k grows
 * slowly with n (48 at n = 1000, δ = 0.1, γ = 0; 90 with γ = 0.05; σ = 40), so clients could afford
 * larger shards; the cap then bounds the worker, whose unmasking (|U3| self-mask expansions of m
 * words) and share forwarding grow with the shard. Bonawitz et al., "Towards Federated Learning at
 * Scale" (SysML 2019), likewise run SecAgg on groups of hundreds of devices, for its quadratic cost.
 * Raise it for larger privacy units (up to 65535, a ClientId); lower it for smaller workers.
 */
export const DEFAULT_MAX_SHARD_SIZE = 1000;

/** What a shard plan is asked for. The rates and security levels are recommendParameters'. */
export interface ShardPlanRequest {
  /** n: clients in the cohort to split (a positive integer). */
  readonly clients: number;
  /**
   * The privacy floor: every shard gets at least this many clients (3..65535). The coordinator
   * learns each shard's sum, so an input is only ever hidden among its shard's inputs.
   */
  readonly minShardSize: number;
  /**
   * The cap on a shard's clients (minShardSize..65535). Default: DEFAULT_MAX_SHARD_SIZE, or
   * 2·minShardSize − 1 if that is larger (at most 65535) — the smallest cap with which every cohort
   * of at least minShardSize clients has a plan.
   */
  readonly maxShardSize?: number;
  /** 'harary': SecAgg+ (recommendParameters per shard); 'complete': SecAgg, degree n − 1 (completeGraphParameters). */
  readonly graph: 'complete' | 'harary';
  /** δ: fraction of a shard's clients that may drop out during the round, in [0, 1). */
  readonly dropoutRate: number;
  /** γ: fraction of a shard's clients that may collude with the server, in [0, 1). */
  readonly corruptionRate: number;
  /** σ: each shard leaks more than its sum with probability ≤ 2^−σ. */
  readonly securityBits: number;
  /** η: a shard fails for lack of shares with probability ≤ 2^−η (default 30). */
  readonly correctnessBits?: number;
}

/** One shard's round parameters. */
export interface ShardParameters {
  /** Clients in the shard: its cohort is the in-shard ids 1..size. */
  readonly size: number;
  /** Neighbours per client (size − 1 when `complete`). RoundConfig.degree takes it as is, or 'complete'. */
  readonly degree: number;
  /** The Shamir threshold t (RoundConfig.threshold). */
  readonly threshold: number;
  /** The corruption budget c the threshold is sized for (RoundConfig.corruption). */
  readonly corruption: number;
  /** True when the shard uses the complete graph (asked for, or recommended because no sparse graph saves 10%). */
  readonly complete: boolean;
}

export interface ShardPlan {
  /** The shards, largest first (sizes differ by at most one). */
  readonly shards: readonly ShardParameters[];
  readonly clients: number;
  readonly minShardSize: number;
  readonly maxShardSize: number;
  readonly graph: 'complete' | 'harary';
}

/**
 * Plan the shards of an n-client cohort: their number, sizes, and each one's degree and threshold
 * (the rules in this file's header). Throws SecAggError ERR_INVALID_PARAMETERS when n is below the
 * floor, when no shard sizes meet both the floor and the cap, or when a shard's size admits no
 * threshold for the rates; RangeError/TypeError for a malformed request.
 *
 * @example
 * ```ts
 * const plan = planShards({ clients: 2500, minShardSize: 200, graph: 'harary', dropoutRate: 0.1, corruptionRate: 0.05, securityBits: 40 });
 * // 3 shards: 834, 833, 833 clients, each with recommendParameters' degree and threshold for its size
 * ```
 */
export function planShards(req: ShardPlanRequest): ShardPlan {
  if (typeof req !== 'object' || req === null) throw new TypeError('the shard plan request must be an object');
  const { clients: n, minShardSize: min, graph } = req;
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`clients must be a positive integer, got ${n}`);
  if (!Number.isSafeInteger(min) || min < 3 || min > MAX_CLIENT_ID)
    throw new RangeError(`minShardSize must be an integer in [3, ${MAX_CLIENT_ID}], got ${min}`);
  const max = req.maxShardSize ?? Math.min(MAX_CLIENT_ID, Math.max(DEFAULT_MAX_SHARD_SIZE, 2 * min - 1));
  if (!Number.isSafeInteger(max) || max < min || max > MAX_CLIENT_ID)
    throw new RangeError(`maxShardSize must be an integer in [minShardSize = ${min}, ${MAX_CLIENT_ID}], got ${max}`);
  if (graph !== 'complete' && graph !== 'harary') throw new RangeError(`graph must be 'complete' or 'harary', got ${String(graph)}`);
  if (n < min)
    throw new SecAggError(
      'ERR_INVALID_PARAMETERS',
      `${n} clients are fewer than the minimum shard size ${min}: a round over them would release a sum of fewer than ${min} inputs`,
    );
  const count = Math.ceil(n / max);
  const small = Math.floor(n / count);
  if (small < min)
    throw new SecAggError(
      'ERR_INVALID_PARAMETERS',
      `${n} clients do not split into shards of ${min}..${max}: ${count} shards (the fewest within ${max}) hold ${small}..${Math.ceil(n / count)}, and more shards only hold fewer (a cap of at least 2·${min} − 1 = ${2 * min - 1} splits every cohort)`,
    );
  const large = n - small * count; // shards that get one more client
  const forSize = new Map<number, ShardParameters>();
  const paramsOf = (size: number): ShardParameters => {
    let p = forSize.get(size);
    if (p === undefined) forSize.set(size, (p = shardParameters(req, size)));
    return p;
  };
  const shards = Array.from({ length: count }, (_, i) => paramsOf(i < large ? small + 1 : small));
  return { shards, clients: n, minShardSize: min, maxShardSize: max, graph };
}

function shardParameters(req: ShardPlanRequest, size: number): ShardParameters {
  const requirements: ParameterRequirements = {
    clients: size,
    dropoutRate: req.dropoutRate,
    corruptionRate: req.corruptionRate,
    securityBits: req.securityBits,
    ...(req.correctnessBits !== undefined ? { correctnessBits: req.correctnessBits } : {}),
  };
  let rec: ParameterRecommendation;
  try {
    rec = req.graph === 'complete' ? completeGraphParameters(requirements) : recommendParameters(requirements);
  } catch (e) {
    if (isSecAggError(e)) throw new SecAggError(e.code, `a shard of ${size} clients: ${e.message}`, { cause: e });
    throw e;
  }
  return { size, degree: rec.degree, threshold: rec.threshold, corruption: rec.corruption, complete: rec.complete };
}

/** A client placed in a shard. */
export interface ShardMember<K> {
  /** The caller's key for the client (a connection id, an identity). */
  readonly key: K;
  /** Index into the plan's shards. */
  readonly shard: number;
  /** The client's id inside its shard, 1..size: its ClientId in that shard's round. */
  readonly id: ClientId;
}

export interface ShardAssignment<K> {
  /** Per shard, in the plan's order: its members by in-shard id (members[i].id === i + 1). */
  readonly shards: readonly (readonly ShardMember<K>[])[];
}

/**
 * Deal the cohort's clients into the plan's shards in a uniformly random order (Fisher–Yates with
 * rejection sampling on uint32 words from `rng`, so every permutation is equally likely), and give
 * each its in-shard ClientId 1..size. The keys must be distinct and as many as the plan's clients
 * (RangeError otherwise). Use the platform CSPRNG (cryptoRng) in production: whoever can predict
 * the draw can choose whom a client shares a shard with.
 *
 * @example
 * ```ts
 * const { shards } = assignToShards(connectionIds, plan, cryptoRng);
 * for (const [s, members] of shards.entries()) for (const { key, id } of members) route(key, s, id);
 * ```
 */
export function assignToShards<K>(clientKeys: readonly K[], plan: ShardPlan, rng: Rng): ShardAssignment<K> {
  if (!Array.isArray(clientKeys)) throw new TypeError('clientKeys must be an array');
  if (typeof rng !== 'function') throw new TypeError('rng must be a function');
  const n = clientKeys.length;
  const total = plan.shards.reduce((a, s) => a + s.size, 0);
  if (n !== total) throw new RangeError(`clientKeys has ${n} clients, the plan places ${total}`);
  if (new Set(clientKeys).size !== n) throw new RangeError('clientKeys must be distinct');
  const order = clientKeys.slice();
  const draw = uniformIndices(rng);
  for (let i = n - 1; i > 0; i--) {
    const j = draw(i + 1);
    const x = order[i]!;
    order[i] = order[j]!;
    order[j] = x;
  }
  let at = 0;
  const shards = plan.shards.map((s, shard) => {
    const members: ShardMember<K>[] = [];
    for (let i = 0; i < s.size; i++) members.push({ key: order[at++]!, shard, id: (i + 1) as ClientId });
    return members;
  });
  return { shards };
}

/** Uniform integers in [0, bound) for bound ≤ 2^32, by rejection on little-endian uint32 words drawn from `rng` in batches. */
function uniformIndices(rng: Rng): (bound: number) => number {
  const BATCH = 1024;
  let words = new Uint32Array(0);
  let pos = 0;
  const next = (): number => {
    if (pos === words.length) {
      const bytes = rng(4 * BATCH);
      if (!(bytes instanceof Uint8Array) || bytes.length !== 4 * BATCH) throw new TypeError(`rng(${4 * BATCH}) must return ${4 * BATCH} bytes`);
      words = new Uint32Array(BATCH);
      for (let i = 0; i < BATCH; i++) words[i] = (bytes[4 * i]! | (bytes[4 * i + 1]! << 8) | (bytes[4 * i + 2]! << 16) | (bytes[4 * i + 3]! << 24)) >>> 0;
      pos = 0;
    }
    return words[pos++]!;
  };
  return (bound) => {
    // The largest multiple of bound that fits in 2^32: words at or above it would favour small results.
    const limit = 2 ** 32 - (2 ** 32 % bound);
    for (;;) {
      const w = next();
      if (w < limit) return w % bound;
    }
  };
}
