/**
 * DP-FedAvg over secure aggregation (McMahan, Ramage, Talwar, Zhang 2018, "Learning differentially
 * private recurrent language models": clip each client's update in L2, average unweighted, add
 * noise), with the noise added by the clients inside their masked vectors — the distributed
 * discrete mechanism of dp/ (docs/privacy.md "The mechanism").
 *
 * Client, `contributeDp`: flatten (TF.js's serialisation, as `contribute`), subtract the global
 * weights, then dp/'s `encodeDp`: pad, L2 clip to plan.clip, rotate with the round's public seed,
 * scale, round conditionally, add this round's integer noise, wrap into Z_{2^plan.bits}. Server,
 * `dpFedAvg`: dp/'s `decodeDpMean` on the protocol's modular sum (centre, unscale, inverse rotation,
 * unpad, ÷ the number of clients in the sum), added to the global model's weights.
 *
 * Where a deployment gets the two inputs:
 * - **the plan** (`planDp`) is part of the server's configuration: the operator fixes the cohort n,
 *   the protocol threshold (= the plan's minClients: no sum of fewer clients is ever released, so
 *   the noise is calibrated to it), the model's dimension, the L2 clip, the noise multiplier and the
 *   ring bits. `planDp` is deterministic, so the server may send either those options (each client
 *   calls `planDp` itself) or the plan object (plain JSON-safe data); clients must use the plan the
 *   server accounts with — its `bits` are the protocol's, and `noise` is what each client adds (or
 *   `noiseForRound` once a round's cohort and threshold are known).
 * - **the rotation seed** (≥ 16 bytes) is fresh for every round and public: the server draws it
 *   and sends it with the round's parameters, before any client encodes (it must not depend on the
 *   updates). It needs no secrecy — the privacy comes from the noise — only agreement: every client
 *   and the decoder must use the same seed for the same round.
 *
 * The ε a run spends is the accountant's (`accountRounds` with the plan's `l2Sensitivity`,
 * `l1Sensitivity` and `releasedVariance`; docs/privacy.md "Privacy accounting").
 */
import type { Tensor } from '@tensorflow/tfjs';
import { SecAggError } from '../errors.js';
import type { Rng } from '../rng.js';
import type { ClipReport } from '../encoding/clip.js';
import { decodeDpMean, encodeDp, noiseVariance, type DpPlan, type NoiseComponent, type NoiseSpec } from '../dp/index.js';
import { flattenWeights, unflattenWeights, type SelectOptions, type WeightLayout, type WeightSource } from './weights.js';

/** A model, its tensors, or an already flat vector (plan.dimension values, in flattenWeights order). */
type Flat = Float32Array | Float64Array;

function isFlat(x: unknown): x is Flat {
  return x instanceof Float32Array || x instanceof Float64Array;
}

export interface ContributeDpParams extends SelectOptions {
  /**
   * After local training: the client's model (or its tensors, or their flat vector). With `base`,
   * the update sent is `source − base`; without it, `source` is the update itself.
   */
  source: WeightSource | Flat;
  /** The global weights the client started from (model, tensors or flat vector). */
  base?: WeightSource | Flat;
  /** The round's plan (from the server's configuration; see the module header). */
  plan: DpPlan;
  /** The round's public rotation seed (≥ 16 bytes), the same for every client and the server. */
  seed: Uint8Array;
  /** This round's noise per client (`noiseForRound`); default plan.noise. */
  noise?: NoiseSpec;
  /** Removable noise components, each from its own rng (dp/'s add-then-remove hook). */
  extraNoise?: readonly NoiseComponent[];
  /** Randomness for the rounding and the noise; default the platform CSPRNG. */
  rng?: Rng;
}

export interface DpContribution {
  /** plan.paddedDimension elements < 2^plan.bits: the input to the protocol (bits = plan.bits). */
  vector: Uint32Array;
  /** The L2 clip of the update (never silent): its norm before clipping and the factor applied. */
  clip: ClipReport;
  /** ‖rounded vector‖₂ in grid units (≤ plan.l2Sensitivity). */
  roundedNorm: number;
  /** Draws the conditional rounding took. */
  roundingAttempts: number;
  /** The weights' layout, when `source` or `base` was a model or tensors. */
  layout?: WeightLayout;
}

/**
 * Client side of DP-FedAvg: the update (source − base), L2-clipped to plan.clip and encoded with
 * the distributed discrete noise into the ring vector the protocol sums.
 *
 * @example
 * ```ts
 * // each round: the server sends the plan (or its options) and a fresh public seed
 * await model.fit(xs, ys, { epochs: 1 });
 * const { vector } = await contributeDp({ source: model, base: globalWeights, plan, seed });
 * // vector is this client's input to the protocol, with bits = plan.bits
 * ```
 */
export async function contributeDp(params: ContributeDpParams): Promise<DpContribution> {
  if (typeof params !== 'object' || params === null) throw new TypeError('contributeDp needs a params object');
  const { source, base, plan, seed, noise, extraNoise, rng, weights, warn } = params;
  if (typeof plan !== 'object' || plan === null || plan.version !== 1) throw new TypeError('plan must be a DpPlan from planDp()');
  const select: SelectOptions = { ...(weights !== undefined ? { weights } : {}), ...(warn ? { warn } : {}) };
  let layout: WeightLayout | undefined;
  const flat = async (x: WeightSource | Flat, name: string): Promise<Flat> => {
    if (isFlat(x)) {
      if (x.length !== plan.dimension) throw new SecAggError('ERR_SIZE', `${name} has ${x.length} values, the plan is for ${plan.dimension}`);
      return x;
    }
    const f = await flattenWeights(x, layout ? { layout, ...(warn ? { warn } : {}) } : select);
    layout = f.layout;
    if (f.layout.size !== plan.dimension)
      throw new SecAggError('ERR_SIZE', `${name} has ${f.layout.size} values to average, the plan is for ${plan.dimension}`);
    return f.values;
  };
  const x = await flat(source, 'source');
  let update: Flat = x;
  if (base !== undefined) {
    const b = await flat(base, 'base');
    const d = new Float64Array(plan.dimension);
    for (let i = 0; i < d.length; i++) d[i] = x[i]! - b[i]!;
    update = d;
  }
  const enc = encodeDp({
    values: update,
    plan,
    seed,
    ...(noise !== undefined ? { noise } : {}),
    ...(extraNoise !== undefined ? { extraNoise } : {}),
    ...(rng !== undefined ? { rng } : {}),
  });
  return { vector: enc.vector, clip: enc.clip, roundedNorm: enc.roundedNorm, roundingAttempts: enc.roundingAttempts, ...(layout ? { layout } : {}) };
}

export interface DpFedAvgParams extends SelectOptions {
  /** The protocol's result: the modular sum and the (0-based) clients in it. */
  result: { readonly sum: Uint32Array; readonly included: readonly number[] };
  plan: DpPlan;
  /** The round's rotation seed (the one the clients used). */
  seed: Uint8Array;
  /** The global model (or its tensors) the round's clients started from: the mean update is added to its weights. */
  template: WeightSource;
  /** The per-client noise of this round, when it was not plan.noise (only the reported error uses it). */
  noise?: NoiseSpec;
}

export interface DpFedAvgResult {
  /** template + mean update, in `layout`; apply with applyWeights (the caller disposes them). */
  weights: Tensor[];
  layout: WeightLayout;
  /** The decoded (noisy) mean update: ≈ the unweighted mean of the clients' clipped updates. */
  update: Float64Array;
  /** Clients in the sum (the divisor). */
  clients: number;
  /**
   * E‖update − mean of the clipped updates‖² for this many clients (planner formulas): the noise
   * part exactly, the rounding part an upper bound.
   */
  expectedSquaredError: { noise: number; rounding: number; total: number };
}

/**
 * Server side of DP-FedAvg: decode the secure sum (decodeDpMean ÷ the number of clients in it,
 * refused outside [plan.minClients, plan.clients]) into the mean update, and add it to the global
 * weights.
 *
 * @example
 * ```ts
 * const result = await round; // the protocol's { sum, included }, bits = plan.bits
 * const { weights } = await dpFedAvg({ result, plan, seed, template: globalModel });
 * applyWeights(globalModel, weights);
 * tf.dispose(weights);
 * ```
 */
export async function dpFedAvg(params: DpFedAvgParams): Promise<DpFedAvgResult> {
  if (typeof params !== 'object' || params === null) throw new TypeError('dpFedAvg needs a params object');
  const { result, plan, seed, template, noise, ...select } = params;
  if (typeof result !== 'object' || result === null || !(result.sum instanceof Uint32Array) || !Array.isArray(result.included))
    throw new TypeError('result must be { sum: Uint32Array, included: number[] }');
  if (typeof plan !== 'object' || plan === null || plan.version !== 1) throw new TypeError('plan must be a DpPlan from planDp()');
  const { values: global, layout } = await flattenWeights(template, select);
  if (layout.size !== plan.dimension) throw new SecAggError('ERR_SIZE', `template has ${layout.size} values, the plan is for ${plan.dimension}`);
  const clients = result.included.length;
  const { mean } = decodeDpMean({ sum: result.sum, plan, seed, clients });
  const next = new Float32Array(layout.size);
  for (let i = 0; i < next.length; i++) next[i] = global[i]! + mean[i]!;
  const v = noiseVariance(noise ?? plan.noise);
  const s2 = plan.scale * plan.scale;
  const noiseErr = (plan.dimension * v) / (clients * s2);
  const rounding = plan.dimension / (4 * clients * s2);
  return {
    weights: unflattenWeights(next, layout),
    layout,
    update: mean,
    clients,
    expectedSquaredError: { noise: noiseErr, rounding, total: noiseErr + rounding },
  };
}
