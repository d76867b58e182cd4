/**
 * What a client app needs to encode its update for a DP round of the service (`secagg serve
 * --dp-…`): the service's DP encoding (the same for every round of a server: its clip, scale,
 * bits, dimension; sent in every DP round's assignment — RoundInfo.dpEncoding — and also
 * published at `GET /dp` on the client port and in `/api/status`) and the round's public rotation
 * seed (the round id every client is told in its assignment). The clients' protocol
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

/** Largest dimension an encoding may name (2^28 elements: already a 2 GiB Float64Array to encode). */
const MAX_ENCODING_DIMENSION = 2 ** 28;

const positiveFinite = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x > 0;

/**
 * Why `value` is not a DpEncoding this library can encode with, or undefined. The encoding is the
 * server's word (GET /dp, RoundAssignment.dp_encoding, RoundInfo.dpEncoding), so every field is
 * checked: version 1; mechanism 'skellam' or 'dgauss'; dimension a power of two ≤ 2^28; bits an
 * integer in [2, 32]; clip, scale and noiseMultiplier finite and > 0; β in [0, 1); and a scale
 * the ring can hold — planDp's wrap bound for one client at probability ½, the plan encodeForRound
 * uses (a clip·scale near 2^(bits−1) would wrap a single update).
 */
export function dpEncodingProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'the encoding is not an object';
  const e = value as Partial<Record<keyof DpEncoding, unknown>>;
  if (e.version !== 1) return `unknown encoding version ${String(e.version)}`;
  if (e.mechanism !== 'skellam' && e.mechanism !== 'dgauss') return `unknown mechanism ${String(e.mechanism)}`;
  const d = e.dimension;
  if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 1 || d > MAX_ENCODING_DIMENSION || (d & (d - 1)) !== 0)
    return `dimension must be a power of two in [1, 2^28], got ${String(d)}`;
  if (typeof e.bits !== 'number' || !Number.isInteger(e.bits) || e.bits < 2 || e.bits > 32) return `bits must be an integer in [2, 32], got ${String(e.bits)}`;
  for (const name of ['clip', 'scale', 'noiseMultiplier'] as const)
    if (!positiveFinite(e[name])) return `${name} must be a finite number > 0, got ${String(e[name])}`;
  if (typeof e.beta !== 'number' || !(e.beta >= 0 && e.beta < 1)) return `beta must be a number in [0, 1), got ${String(e.beta)}`;
  try {
    planOne(value as DpEncoding, 1);
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

/** The encoding, checked (dpEncodingProblem): TypeError when it is no DpEncoding at all, RangeError naming the bad field. */
function checkedEncoding(encoding: unknown): DpEncoding {
  if (typeof encoding !== 'object' || encoding === null || (encoding as { version?: unknown }).version !== 1)
    throw new TypeError('encoding must be a DpEncoding (GET /dp or RoundInfo.dpEncoding)');
  const problem = dpEncodingProblem(encoding);
  if (problem !== undefined) throw new RangeError(`encoding: ${problem}`);
  return encoding as DpEncoding;
}

function planOne(encoding: DpEncoding, clients: number): DpPlan {
  // The server checked the wrap bound for the real cohort; encoding and decoding only need the scale.
  return planWithEncoding(encoding, { clients, minClients: clients, maxWrapProbability: 0.5 });
}

/**
 * The DpPlan an app encodes with, or decodes a sum of `clients` clients with (decodeDpMean checks
 * the count against it). Its noise is not used: the protocol adds the round's.
 */
export function planForEncoding(encoding: DpEncoding, clients = 1): DpPlan {
  return planOne(checkedEncoding(encoding), clients);
}

/** planDp at the encoding's fixed dimension, clip, z, bits, mechanism, β and scale, for a cohort. */
export function planWithEncoding(encoding: DpEncoding, cohort: { clients: number; minClients: number; maxWrapProbability?: number }): DpPlan {
  if (typeof encoding !== 'object' || encoding === null || encoding.version !== 1)
    throw new TypeError('encoding must be a DpEncoding (GET /dp or RoundInfo.dpEncoding)');
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
  /** The service's encoding: the round's (RoundInfo.dpEncoding, from its assignment) or GET /dp's. */
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
 * // The round's own encoding, from its assignment (RoundInfo.dpEncoding), with the noise floor bound to it:
 * await participate({ url, token, WebSocket,
 *   dp: (round) => dpPolicyFor({ encoding: round.dpEncoding, minNoiseMultiplier: 0.8 }), // refuse rounds with less noise than z = 0.8
 *   inputProvider: (round) => encodeForRound({ values: update, encoding: round.dpEncoding!, roundId: round.roundId }).vector });
 * ```
 */
export function encodeForRound(params: EncodeForRoundParams): EncodedDp {
  const plan = planForEncoding(params.encoding); // checks the encoding (dpEncodingProblem)
  const { values, dimension } = flattenAndPad(params.values);
  if (dimension > plan.dimension) throw new RangeError(`values has ${dimension} elements, the service's vectors have ${plan.dimension}`);
  const full = new Float64Array(plan.dimension);
  full.set(values.subarray(0, dimension));
  return encodeDp({ values: full, plan, seed: roundSeed(params.roundId), noise: { mechanism: 'none' } });
}

export interface DpPolicyForParams {
  /**
   * The encoding the app encodes with — the round's (RoundInfo.dpEncoding) or GET /dp's; the
   * server's word either way, and this policy binds the noise to it. Undefined (a round assigned
   * without an encoding) is a TypeError, which participate turns into refusing the round.
   */
  encoding: DpEncoding | undefined;
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
 *
 * The policy keeps the encoding it was made for (`encoding`): participate refuses a round whose
 * assignment carries a different one (ClientError ERR_DP_ENCODING), since the app may encode with
 * either. Pass it as participate's `dp` directly (a GET /dp encoding) or as a function of the round
 * (`(round) => dpPolicyFor({ encoding: round.dpEncoding, … })`), so it binds to each assignment's.
 */
export function dpPolicyFor(params: DpPolicyForParams): {
  readonly minTargetVariance: number;
  readonly required: true;
  readonly mechanisms: readonly DpMechanism[];
  readonly encoding: DpEncoding;
} {
  const { minNoiseMultiplier: z } = params;
  if (typeof z !== 'number' || !(z > 0 && Number.isFinite(z))) throw new RangeError(`minNoiseMultiplier must be a positive number, got ${z}`);
  const encoding = checkedEncoding(params.encoding);
  const sd = z * encoding.clip * encoding.scale;
  return { minTargetVariance: sd * sd, required: true, mechanisms: [encoding.mechanism], encoding: { ...encoding } };
}

/** Whether two encodings are the same (every field). */
export function sameDpEncoding(a: DpEncoding, b: DpEncoding): boolean {
  return (
    a.version === b.version &&
    a.mechanism === b.mechanism &&
    a.dimension === b.dimension &&
    a.bits === b.bits &&
    a.clip === b.clip &&
    a.scale === b.scale &&
    a.beta === b.beta &&
    a.noiseMultiplier === b.noiseMultiplier
  );
}
