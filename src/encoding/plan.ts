/**
 * The encoding planner: which ring (bits) and which fixed-point scale (2^f) a round of real-valued
 * updates uses, and a refusal for every configuration whose worst-case sum could wrap around the
 * ring. A plan is plain, frozen, JSON-serialisable data: the server can publish it to the cohort.
 */
import { SecAggError } from '../errors.js';

/** 'value': clamp each element to [−clip, clip]. 'l2': scale the whole vector so its L2 norm is ≤ clip. */
export type ClipMode = 'value' | 'l2';

export interface PlanOptions {
  /** Largest number of clients whose vectors may end up in one sum (the cohort size). */
  clients: number;
  /** Clipping bound c > 0 (per element, or on the L2 norm; see clipMode). */
  clip: number;
  /** Default 'value'. Either way every element ends in [−c, c], which is what the overflow check uses. */
  clipMode?: ClipMode;
  /**
   * Wanted resolution: values are rounded to multiples of 2^−f ≤ precision. Give this or
   * fractionalBits; with neither, the planner takes the largest f that fits the ring.
   */
  precision?: number;
  /** f, the number of fractional bits (scale 2^f), 0..52. */
  fractionalBits?: number;
  /** Weighted averaging: each client sends w·x and w, both inside the masked vector. */
  weighted?: boolean;
  /** Required when weighted: the largest weight a client may use (e.g. the most local examples). */
  maxWeight?: number;
  /** Ring size 1..32; default the smallest that holds the worst-case sum. */
  bits?: number;
  /** Length of the real-valued vector (without the weight element), if known: then checked on encode/decode. */
  dimension?: number;
}

export interface EncodingPlan {
  readonly version: 1;
  readonly clients: number;
  readonly clip: number;
  readonly clipMode: ClipMode;
  readonly fractionalBits: number;
  /** 2^fractionalBits. */
  readonly scale: number;
  /** Ring Z_R with R = 2^bits: pass this as `bits` to the protocol. */
  readonly bits: number;
  readonly weighted: boolean;
  /** Largest weight accepted (0 when not weighted). */
  readonly maxWeight: number;
  /** Elements appended to the real-valued vector: 1 (the weight) when weighted, else 0. */
  readonly extraElements: 0 | 1;
  /** Largest |q| any client can put into any element (q is the signed integer before reduction mod R). */
  readonly maxAbsElement: number;
  /** clients · maxAbsElement: always < R/2, which is what makes decoding unambiguous. */
  readonly worstCaseSum: number;
  /** log2(R/2 ÷ worstCaseSum): spare bits before a wrap would become possible. */
  readonly headroomBits: number;
  readonly dimension?: number;
  /**
   * Worst-case absolute error per element of the decoded result, against the exact result computed
   * on the *clipped* inputs (clipping itself is reported per client, never hidden here):
   * - sum: Σ over ≤ `clients` survivors (for weighted plans, the sum of w·x) — clients · 2^−f;
   * - mean: unweighted mean — 2^−f; weighted mean — 2^−f · n′/W for n′ survivors with total weight W,
   *   i.e. 2^−f ÷ (their mean weight): the value given here assumes mean weight ≥ 1 (e.g. example counts).
   *   decodeAverage reports the exact bound of each round.
   */
  readonly errorBound: { readonly sum: number; readonly mean: number };
}

function bad(message: string): never {
  throw new SecAggError('ERR_INVALID_PARAMETERS', `encoding plan refused: ${message}`);
}

/** Largest |q| for a given f (see encodeUpdate: stochastic rounding can round |v| ≤ a up to ceil(a)). */
function maxAbsFor(clip: number, f: number, weighted: boolean, maxWeight: number): { q: number; w: number } {
  const scale = 2 ** f;
  if (!weighted) return { q: Math.ceil(clip * scale), w: 0 };
  const w = Math.round(maxWeight * scale); // weights are rounded to the nearest multiple of 2^−f
  return { q: Math.max(Math.ceil(w * clip), w), w };
}

export function planEncoding(options: PlanOptions): EncodingPlan {
  if (typeof options !== 'object' || options === null) throw new TypeError('planEncoding needs an options object');
  const { clients, clip } = options;
  const clipMode = options.clipMode ?? 'value';
  const weighted = options.weighted ?? false;
  if (!Number.isSafeInteger(clients) || clients < 1) bad(`clients must be a positive integer, got ${clients}`);
  if (typeof clip !== 'number' || !Number.isFinite(clip) || clip <= 0) bad(`clip must be a finite number > 0, got ${clip}`);
  if (clipMode !== 'value' && clipMode !== 'l2') bad(`clipMode must be 'value' or 'l2', got ${String(clipMode)}`);
  let maxWeight = 0;
  if (weighted) {
    if (options.maxWeight === undefined) bad('a weighted plan needs maxWeight (the largest weight a client may send)');
    maxWeight = options.maxWeight;
    if (typeof maxWeight !== 'number' || !Number.isFinite(maxWeight) || maxWeight <= 0) bad(`maxWeight must be a finite number > 0, got ${maxWeight}`);
  } else if (options.maxWeight !== undefined) bad('maxWeight given for an unweighted plan (set weighted: true)');
  if (options.precision !== undefined && options.fractionalBits !== undefined) bad('give precision or fractionalBits, not both');
  if (options.bits !== undefined && (!Number.isInteger(options.bits) || options.bits < 1 || options.bits > 32))
    bad(`bits must be an integer in [1, 32], got ${options.bits}`);
  if (options.dimension !== undefined && (!Number.isSafeInteger(options.dimension) || options.dimension < 0))
    bad(`dimension must be a non-negative integer, got ${options.dimension}`);
  const maxBits = options.bits ?? 32;
  const half = 2 ** (maxBits - 1);
  const fits = (f: number) => clients * maxAbsFor(clip, f, weighted, maxWeight).q < half;

  let f: number;
  if (options.fractionalBits !== undefined) {
    f = options.fractionalBits;
    if (!Number.isInteger(f) || f < 0 || f > 52) bad(`fractionalBits must be an integer in [0, 52], got ${f}`);
  } else if (options.precision !== undefined) {
    const p = options.precision;
    if (typeof p !== 'number' || !Number.isFinite(p) || p <= 0) bad(`precision must be a finite number > 0, got ${p}`);
    f = Math.max(0, Math.ceil(-Math.log2(p)));
    if (f > 52) bad(`precision ${p} needs ${f} fractional bits; at most 52 are supported`);
  } else {
    f = -1;
    for (let g = 52; g >= 0; g--)
      if (fits(g)) {
        f = g;
        break;
      }
    if (f < 0) bad(overflowMessage(clients, clip, weighted, maxWeight, 0, maxBits, options.bits !== undefined));
  }
  if (weighted && Math.round(maxWeight * 2 ** f) < 1)
    bad(`maxWeight ${maxWeight} rounds to 0 at resolution 2^-${f}: weights are encoded as multiples of 2^-${f}; use more fractional bits or larger weights`);
  if (!fits(f)) bad(overflowMessage(clients, clip, weighted, maxWeight, f, maxBits, options.bits !== undefined));

  const { q } = maxAbsFor(clip, f, weighted, maxWeight);
  const worst = clients * q;
  let bits = options.bits ?? 1;
  if (options.bits === undefined) while (worst >= 2 ** (bits - 1)) bits++;
  const step = 2 ** -f;
  const plan: EncodingPlan = {
    version: 1,
    clients,
    clip,
    clipMode,
    fractionalBits: f,
    scale: 2 ** f,
    bits,
    weighted,
    maxWeight,
    extraElements: weighted ? 1 : 0,
    maxAbsElement: q,
    worstCaseSum: worst,
    headroomBits: worst === 0 ? bits - 1 : bits - 1 - Math.log2(worst),
    ...(options.dimension !== undefined ? { dimension: options.dimension } : {}),
    errorBound: Object.freeze({ sum: clients * step, mean: step }),
  };
  return Object.freeze(plan);
}

function overflowMessage(n: number, clip: number, weighted: boolean, maxWeight: number, f: number, bits: number, bitsGiven: boolean): string {
  const { q } = maxAbsFor(clip, f, weighted, maxWeight);
  const what = weighted ? `clip ${clip} × maxWeight ${maxWeight} (the weight is inside the masked vector)` : `clip ${clip}`;
  let best = -1;
  for (let g = 52; g >= 0; g--)
    if (n * maxAbsFor(clip, g, weighted, maxWeight).q < 2 ** (bits - 1)) {
      best = g;
      break;
    }
  const hint =
    best >= 0
      ? `use at most ${best} fractional bits (resolution 2^-${best}), or lower clip${weighted ? '/maxWeight' : ''}/clients`
      : `lower clip${weighted ? ', maxWeight' : ''} or clients: even integer encoding (f = 0) can wrap`;
  return (
    `the worst-case sum can wrap: ${n} clients × max |q| ${q} (${what} at scale 2^${f}) = ${n * q} ≥ R/2 = 2^${bits - 1}` +
    ` with bits = ${bits}${bitsGiven ? '' : ' (the largest ring)'}; ${hint}`
  );
}
