/**
 * Real-valued vectors ↔ ring elements. A client clips, multiplies by its weight (weighted plans),
 * scales by 2^f, rounds stochastically (unbiased: E[q] = v), and reduces mod R = 2^bits in two's
 * complement. The server reads each element of the sum in [−R/2, R/2) and divides by 2^f; the
 * planner guarantees that no sum of ≤ plan.clients such vectors can wrap.
 *
 * Weighted averaging keeps the weight INSIDE the masked vector: element m holds the client's
 * weight w (times 2^f) and elements 0..m−1 hold w·x, so the server learns only Σw·x and Σw.
 */
import { SecAggError } from '../errors.js';
import { cryptoRng, type Rng } from '../rng.js';
import { clipVector, type ClipReport, type FloatVector } from './clip.js';
import type { EncodingPlan } from './plan.js';

export interface EncodeOptions {
  /** Required for weighted plans (0 ≤ weight ≤ plan.maxWeight); refused for unweighted ones. */
  weight?: number;
  /** Randomness for stochastic rounding; default the platform CSPRNG. */
  rng?: Rng;
}

export interface EncodedUpdate {
  /** plan.extraElements longer than the input; every element < 2^plan.bits. Ready for the protocol. */
  vector: Uint32Array;
  report: ClipReport;
  /** The weight actually encoded (rounded to a multiple of 2^−f); undefined for unweighted plans. */
  weight?: number;
}

const CHUNK = 16384;
const TWO32 = 4294967296;

function checkPlan(plan: EncodingPlan): void {
  if (typeof plan !== 'object' || plan === null || plan.version !== 1 || !(plan.scale > 0))
    throw new TypeError('plan must be an EncodingPlan from planEncoding()');
}

/** Signed integer (|q| < 2^31) → ring element mod 2^bits. */
export function toRing(q: number, bits: number): number {
  return (q & (2 ** bits - 1)) >>> 0;
}

/** Ring element → signed integer in [−R/2, R/2). */
export function fromRing(u: number, bits: number): number {
  const R = 2 ** bits;
  return u >= R / 2 ? u - R : u;
}

/**
 * Encode one client's vector for `plan`. Returns the ring vector and the clip report. Throws
 * RangeError for non-finite values, a wrong dimension, or a weight outside [0, plan.maxWeight].
 */
export function encodeUpdate(values: FloatVector, plan: EncodingPlan, options: EncodeOptions = {}): EncodedUpdate {
  checkPlan(plan);
  const rng = options.rng ?? cryptoRng;
  if (plan.dimension !== undefined && values.length !== plan.dimension)
    throw new RangeError(`values has ${values.length} elements, the plan is for ${plan.dimension}`);
  let factor = plan.scale;
  let weightUnits = 0;
  if (plan.weighted) {
    const w = options.weight;
    if (w === undefined) throw new TypeError('a weighted plan needs options.weight');
    if (typeof w !== 'number' || !Number.isFinite(w) || w < 0 || w > plan.maxWeight)
      throw new RangeError(`weight must be a finite number in [0, ${plan.maxWeight}] (plan.maxWeight), got ${w}`);
    weightUnits = Math.round(w * plan.scale);
    factor = weightUnits; // w′·x·2^f with w′ = weightUnits / 2^f: the same w′ the weight element carries
  } else if (options.weight !== undefined) {
    throw new TypeError('weight given for an unweighted plan: the server would have no way to divide by it');
  }
  const { values: clipped, report } = clipVector(values, plan.clip, plan.clipMode);
  const m = clipped.length;
  const out = new Uint32Array(m + plan.extraElements);
  const mask = 2 ** plan.bits - 1;
  const limit = plan.maxAbsElement;
  for (let start = 0; start < m; start += CHUNK) {
    const end = Math.min(m, start + CHUNK);
    const bytes = rng(4 * (end - start));
    if (!(bytes instanceof Uint8Array) || bytes.length !== 4 * (end - start)) throw new TypeError('rng returned the wrong number of bytes');
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    for (let i = start, o = 0; i < end; i++, o += 4) {
      const v = clipped[i]! * factor;
      const fl = Math.floor(v);
      // Round up with probability v − ⌊v⌋, from 32 random bits: E[q] = v (to within 2^−32 of a step).
      const q = fl + (dv.getUint32(o, true) < (v - fl) * TWO32 ? 1 : 0);
      if (q > limit || q < -limit) throw new SecAggError('ERR_INTERNAL', `encoded element ${i} = ${q} exceeds the plan's bound ${limit}`);
      out[i] = (q & mask) >>> 0;
    }
  }
  if (plan.weighted) out[m] = (weightUnits & mask) >>> 0;
  return {
    vector: out,
    report,
    ...(plan.weighted ? { weight: weightUnits / plan.scale } : {}),
  };
}

export interface DecodedSum {
  /** Σ x (unweighted plans) or Σ w·x (weighted plans) over the clients in the sum, per element. */
  values: Float64Array;
  /** Σ w over the clients in the sum (weighted plans only). */
  totalWeight?: number;
  /** Per-element error bound of `values` vs the same sum computed on the clipped inputs. */
  errorBound: number;
}

export interface DecodedAverage {
  /** The (weighted) mean per element. */
  mean: Float64Array;
  /** Σ w (weighted) or the number of clients (unweighted). */
  totalWeight: number;
  /** Clients in the sum. */
  clients: number;
  /** Per-element error bound of `mean` vs the exact (weighted) mean of the clipped inputs. */
  errorBound: number;
}

function checkSum(sum: Uint32Array, plan: EncodingPlan): number {
  if (!(sum instanceof Uint32Array)) throw new TypeError('sum must be a Uint32Array');
  const m = sum.length - plan.extraElements;
  if (m < 0) throw new SecAggError('ERR_SIZE', `sum has ${sum.length} elements; a weighted plan needs at least the weight element`);
  if (plan.dimension !== undefined && m !== plan.dimension)
    throw new SecAggError('ERR_SIZE', `sum has ${sum.length} elements, the plan expects ${plan.dimension + plan.extraElements}`);
  if (plan.bits < 32) {
    const R = 2 ** plan.bits;
    for (let i = 0; i < sum.length; i++) if (sum[i]! >= R) throw new SecAggError('ERR_SIZE', `sum[${i}] = ${sum[i]} is not < 2^${plan.bits}`);
  }
  return m;
}

function checkClients(clients: number | undefined, plan: EncodingPlan): number {
  if (clients === undefined) return plan.clients;
  if (!Number.isSafeInteger(clients) || clients < 1) throw new RangeError(`clients must be a positive integer, got ${clients}`);
  if (clients > plan.clients)
    throw new SecAggError(
      'ERR_INVALID_PARAMETERS',
      `${clients} clients in the sum but the plan was made for at most ${plan.clients}: the sum may have wrapped`,
    );
  return clients;
}

/**
 * Decode a round's sum. `clients` (the number of inputs in the sum, e.g. result.included.length)
 * tightens the error bound and is checked against the plan.
 */
export function decodeSum(sum: Uint32Array, plan: EncodingPlan, options: { clients?: number } = {}): DecodedSum {
  checkPlan(plan);
  const m = checkSum(sum, plan);
  const n = checkClients(options.clients, plan);
  const out = new Float64Array(m);
  const R = 2 ** plan.bits;
  const half = R / 2;
  const inv = 1 / plan.scale; // a power of two: exact
  for (let i = 0; i < m; i++) {
    const u = sum[i]!;
    out[i] = (u >= half ? u - R : u) * inv;
  }
  const errorBound = n / plan.scale;
  if (!plan.weighted) return { values: out, errorBound };
  const wu = sum[m]!;
  return { values: out, totalWeight: (wu >= half ? wu - R : wu) * inv, errorBound };
}

/**
 * The (weighted) mean of a round: Σw·x ÷ Σw for weighted plans (both read from the masked sum),
 * Σx ÷ clients for unweighted ones. Throws SecAggError ERR_INVALID_PARAMETERS when the total
 * weight is not positive (nothing to average).
 */
export function decodeAverage(sum: Uint32Array, plan: EncodingPlan, options: { clients: number }): DecodedAverage {
  if (typeof options !== 'object' || options === null) throw new TypeError('decodeAverage needs { clients }');
  const n = checkClients(options.clients, plan);
  const { values, totalWeight } = decodeSum(sum, plan, { clients: n });
  const W = plan.weighted ? totalWeight! : n;
  if (!(W > 0)) throw new SecAggError('ERR_INVALID_PARAMETERS', `total weight of the round is ${W}: nothing to average`);
  const mean = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) mean[i] = values[i]! / W;
  // Each client's element is off by < 1 unit (2^−f) after stochastic rounding; weights are exact.
  return { mean, totalWeight: W, clients: n, errorBound: n / plan.scale / W };
}
