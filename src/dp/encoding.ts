/**
 * What a client app needs to encode its update for a DP round of the service (`secagg serve
 * --dp-…`): the service's DP encoding (the same for every round of a server: its clip, scale,
 * bits, dimension; published at `GET /dp` on the client port and in `/api/status`) and the round's
 * public rotation seed (the round id every client is told in its assignment). The clients' protocol
 * adds the round's integer noise itself (RoundConfig.dp), so the app's vector carries none.
 */
import { encodeDp, flattenAndPad, type DpInput, type EncodedDp } from './mechanism.js';
import { planDp, type DpMechanism, type DpPlan } from './plan.js';

/** The service's DP encoding: every round of one server encodes with these (docs/service.md, "Differential privacy"). */
export interface DpEncoding {
  readonly version: 1;
  readonly mechanism: DpMechanism;
  /** Elements of each client's vector (a power of two: the rotation's length). */
  readonly dimension: number;
  readonly bits: number;
  /** c: every update is clipped to this L2 norm. */
  readonly clip: number;
  /** s: grid units per unit of the update. */
  readonly scale: number;
  /** Conditional rounding's β. */
  readonly beta: number;
  /** z: the released sum's noise std per coordinate is ≥ z·c (in the update's units). */
  readonly noiseMultiplier: number;
}

/**
 * The DpPlan an app encodes with, or decodes a sum of `clients` clients with (decodeDpMean checks
 * the count against it). Its noise is not used: the protocol adds the round's.
 */
export function planForEncoding(encoding: DpEncoding, clients = 1): DpPlan {
  // The server checked the wrap bound for the real cohort; encoding and decoding only need the scale.
  return planWithEncoding(encoding, { clients, minClients: clients, maxWrapProbability: 0.5 });
}

/** planDp at the encoding's fixed dimension, clip, z, bits, mechanism, β and scale, for a cohort. */
export function planWithEncoding(encoding: DpEncoding, cohort: { clients: number; minClients: number; maxWrapProbability?: number }): DpPlan {
  if (typeof encoding !== 'object' || encoding === null || encoding.version !== 1) throw new TypeError('encoding must be a DpEncoding (GET /dp)');
  return planDp({
    ...cohort,
    dimension: encoding.dimension,
    clip: encoding.clip,
    noiseMultiplier: encoding.noiseMultiplier,
    bits: encoding.bits,
    mechanism: encoding.mechanism,
    beta: encoding.beta,
    scale: encoding.scale,
  });
}

/** The 16-byte round id, from the hex RoundInfo.roundId. */
export function roundSeed(roundId: string): Uint8Array {
  if (typeof roundId !== 'string' || !/^([0-9a-f]{2}){16,}$/i.test(roundId)) throw new TypeError('roundId must be the round id in hex (RoundInfo.roundId)');
  return Uint8Array.from(roundId.match(/../g)!.map((h) => parseInt(h, 16)));
}

export interface EncodeForRoundParams {
  /** The update: up to encoding.dimension numbers (or parts); shorter updates are padded with zeros. */
  values: DpInput;
  encoding: DpEncoding;
  /** RoundInfo.roundId (hex): the public rotation seed. */
  roundId: string;
}

/**
 * Encode a float update for a DP round: clip, rotate (seed = the round id), scale, round, wrap — no
 * noise (the client protocol adds the round's share). Use it as participate's inputProvider.
 *
 * @example
 * ```ts
 * const encoding = await (await fetch('http://server:8080/dp')).json();
 * await participate({ url, token, WebSocket,
 *   dp: dpPolicyFor({ encoding, minNoiseMultiplier: 0.8 }), // refuse rounds with less noise than z = 0.8 for this encoding
 *   inputProvider: (round) => encodeForRound({ values: update, encoding, roundId: round.roundId }).vector });
 * ```
 */
export function encodeForRound(params: EncodeForRoundParams): EncodedDp {
  const plan = planForEncoding(params.encoding);
  const { values, dimension } = flattenAndPad(params.values);
  if (dimension > plan.dimension) throw new RangeError(`values has ${dimension} elements, the service's vectors have ${plan.dimension}`);
  const full = new Float64Array(plan.dimension);
  full.set(values.subarray(0, dimension));
  return encodeDp({ values: full, plan, seed: roundSeed(params.roundId), noise: { mechanism: 'none' } });
}

export interface DpPolicyForParams {
  /** The encoding the app encodes with (from GET /dp: the server's word — this policy binds the noise to it). */
  encoding: DpEncoding;
  /** The least noise multiplier z the app accepts: released noise std ≥ z · clip in the update's units. */
  minNoiseMultiplier: number;
}

/**
 * The protocol-level DP policy that makes a client refuse, before sending anything, a round whose
 * noise is below `minNoiseMultiplier` FOR THE ENCODING IT USES. The round's noise is announced in
 * ring units (RoundConfig.dp.targetVariance); what protects the update is that variance relative
 * to the update's sensitivity in ring units, clip · scale — both of which come from the server's
 * GET /dp. Checking a ring-unit variance alone would let a server that publishes a larger scale
 * (or clip) shrink the noise relative to the update; this policy asks for
 * targetVariance ≥ (z · clip · scale)², so a larger scale or clip demands proportionally more noise.
 */
export function dpPolicyFor(params: DpPolicyForParams): {
  readonly minTargetVariance: number;
  readonly required: true;
  readonly mechanisms: readonly DpMechanism[];
} {
  const { encoding, minNoiseMultiplier: z } = params;
  if (typeof encoding !== 'object' || encoding === null || encoding.version !== 1) throw new TypeError('encoding must be a DpEncoding (GET /dp)');
  if (!(z > 0 && Number.isFinite(z))) throw new RangeError(`minNoiseMultiplier must be a positive number, got ${z}`);
  if (!(encoding.clip > 0 && Number.isFinite(encoding.clip))) throw new RangeError(`encoding.clip must be a positive number, got ${encoding.clip}`);
  if (!(encoding.scale > 0 && Number.isFinite(encoding.scale))) throw new RangeError(`encoding.scale must be a positive number, got ${encoding.scale}`);
  const sd = z * encoding.clip * encoding.scale;
  return { minTargetVariance: sd * sd, required: true, mechanisms: [encoding.mechanism] };
}
