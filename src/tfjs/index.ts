/**
 * TensorFlow.js adapter: a model's trainable weights (or a list of tensors) ↔ one flat
 * Float32Array, and the two FedAvg ends of a secure round — `contribute` on a client, `secureFedAvg`
 * on the server. Works with any tfjs backend; the tests and the example use the pure-JS CPU one.
 *
 * This module is a separate entry point: the core package never imports it, so tfjs is only an
 * optional peer dependency. Everything from tfjs is imported as a type except `tensor`, the one
 * factory needed to hand new weights back.
 */
import { tensor } from '@tensorflow/tfjs';
import type { DataType, LayersModel, Tensor } from '@tensorflow/tfjs';
import { SecAggError } from '../errors.js';
import type { Rng } from '../rng.js';
import { decodeAverage, encodeUpdate } from '../encoding/codec.js';
import type { ClipReport } from '../encoding/clip.js';
import type { EncodingPlan } from '../encoding/plan.js';

/** A model (its trainable weights, in `model.trainableWeights` order) or a list of tensors. */
export type WeightSource = LayersModel | readonly Tensor[];

export interface WeightSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: DataType;
  /** Number of elements. */
  readonly size: number;
  /** Offset into the flat vector. */
  readonly offset: number;
}

/** Where each tensor lives in the flat vector; `size` is the total length. */
export interface WeightLayout {
  readonly specs: readonly WeightSpec[];
  readonly size: number;
}

/** Only float32 is flattened: it is the dtype of trainable weights, and it round-trips exactly through a Float32Array. */
const SUPPORTED: ReadonlySet<string> = new Set(['float32']);

function isModel(source: unknown): source is LayersModel {
  return typeof source === 'object' && source !== null && !Array.isArray(source) && 'trainableWeights' in source;
}

interface Entry {
  name: string;
  shape: readonly number[];
  dtype: DataType;
  read: () => Tensor;
}

function entries(source: WeightSource): Entry[] {
  if (isModel(source)) {
    return source.trainableWeights.map((v) => ({ name: v.name, shape: v.shape.map((d) => d ?? -1), dtype: v.dtype, read: () => v.read() }));
  }
  if (!Array.isArray(source)) throw new TypeError('weights must be a tf.LayersModel or an array of tf.Tensor');
  return (source as readonly Tensor[]).map((t, i) => {
    if (typeof t !== 'object' || t === null || !Array.isArray(t.shape) || typeof t.dataSync !== 'function')
      throw new TypeError(`weights[${i}] is not a tf.Tensor`);
    return { name: `tensor_${i}`, shape: t.shape, dtype: t.dtype, read: () => t };
  });
}

function sizeOf(shape: readonly number[], name: string): number {
  let size = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new SecAggError('ERR_SIZE', `${name} has an undefined or invalid dimension in shape [${shape.join(', ')}]`);
    size *= d;
  }
  return size;
}

/** The layout (names, shapes, dtypes, offsets) of a model's trainable weights or of a tensor list. */
export function weightLayout(source: WeightSource): WeightLayout {
  const specs: WeightSpec[] = [];
  let offset = 0;
  for (const e of entries(source)) {
    if (!SUPPORTED.has(e.dtype)) throw new SecAggError('ERR_INVALID_PARAMETERS', `${e.name} has dtype ${e.dtype}; only float32 weights can be aggregated`);
    const size = sizeOf(e.shape, e.name);
    specs.push(Object.freeze({ name: e.name, shape: Object.freeze([...e.shape]), dtype: e.dtype, size, offset }));
    offset += size;
  }
  return Object.freeze({ specs: Object.freeze(specs), size: offset });
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Throws SecAggError ERR_SIZE / ERR_INVALID_PARAMETERS unless `source` has exactly `layout`'s tensors. */
export function checkLayout(source: WeightSource, layout: WeightLayout): void {
  const got = entries(source);
  if (got.length !== layout.specs.length) throw new SecAggError('ERR_SIZE', `expected ${layout.specs.length} weight tensors, got ${got.length}`);
  got.forEach((e, i) => {
    const s = layout.specs[i]!;
    if (e.dtype !== s.dtype) throw new SecAggError('ERR_INVALID_PARAMETERS', `weight ${i} (${e.name}) has dtype ${e.dtype}, expected ${s.dtype}`);
    if (!sameShape(e.shape, s.shape))
      throw new SecAggError('ERR_SIZE', `weight ${i} (${e.name}) has shape [${e.shape.join(', ')}], expected [${s.shape.join(', ')}]`);
  });
}

/**
 * Flatten into one Float32Array (bit-exact copy of the float32 values), checking against `layout`
 * when given.
 */
export function flattenWeights(source: WeightSource, layout?: WeightLayout): { values: Float32Array; layout: WeightLayout } {
  const lay = layout ?? weightLayout(source);
  if (layout) checkLayout(source, layout);
  const out = new Float32Array(lay.size);
  entries(source).forEach((e, i) => {
    const s = lay.specs[i]!;
    const data = e.read().dataSync();
    if (data.length !== s.size) throw new SecAggError('ERR_SIZE', `${e.name} holds ${data.length} values, its shape says ${s.size}`);
    out.set(data, s.offset);
  });
  return { values: out, layout: lay };
}

/** The inverse of flattenWeights: new tensors (the caller owns and disposes them). */
export function unflattenWeights(values: ArrayLike<number>, layout: WeightLayout): Tensor[] {
  if (values === null || typeof values !== 'object' || typeof values.length !== 'number') throw new TypeError('values must be an array-like of numbers');
  if (values.length !== layout.size) throw new SecAggError('ERR_SIZE', `vector has ${values.length} values, the layout needs ${layout.size}`);
  const flat = values instanceof Float32Array ? values : Float32Array.from(values);
  return layout.specs.map((s) => tensor(flat.slice(s.offset, s.offset + s.size), [...s.shape], s.dtype));
}

/** Write tensors into a model's trainable weights (shapes and dtypes checked first). */
export function applyWeights(model: LayersModel, weights: readonly Tensor[]): void {
  const layout = weightLayout(model);
  checkLayout(weights, { specs: layout.specs, size: layout.size });
  model.trainableWeights.forEach((v, i) => v.write(weights[i]!));
}

export interface ContributeOptions {
  /**
   * Send the update `source − base` instead of the weights themselves (what FedAvg clients usually
   * do: updates are small, so clipping and the ring are used well). Pair with secureFedAvg's `delta`.
   */
  base?: WeightSource | Float32Array;
  /** Randomness for stochastic rounding; default the platform CSPRNG. */
  rng?: Rng;
}

export interface Contribution {
  /** Ready for the protocol with bits = plan.bits (layout.size + plan.extraElements elements). */
  vector: Uint32Array;
  /** Clipping is never silent: how many values were clipped, and the L2 scale factor. */
  report: ClipReport;
  layout: WeightLayout;
  /** The weight actually encoded (weighted plans). */
  weight?: number;
}

/**
 * Client side: flatten, optionally subtract `base`, clip, weight, encode. `weight` (e.g. the number
 * of local examples) goes inside the masked vector for weighted plans; pass undefined for
 * unweighted ones.
 */
export function contribute(source: WeightSource, weight: number | undefined, plan: EncodingPlan, options: ContributeOptions = {}): Contribution {
  const { values, layout } = flattenWeights(source);
  if (plan.dimension !== undefined && plan.dimension !== layout.size)
    throw new SecAggError('ERR_SIZE', `the model has ${layout.size} trainable values, the plan is for ${plan.dimension}`);
  let x: Float32Array | Float64Array = values;
  if (options.base !== undefined) {
    const base = options.base instanceof Float32Array ? options.base : flattenWeights(options.base, layout).values;
    if (base.length !== layout.size) throw new SecAggError('ERR_SIZE', `base has ${base.length} values, the model ${layout.size}`);
    const d = new Float64Array(layout.size);
    for (let i = 0; i < d.length; i++) d[i] = values[i]! - base[i]!;
    x = d;
  }
  const enc = encodeUpdate(x, plan, {
    ...(weight !== undefined ? { weight } : {}),
    ...(options.rng ? { rng: options.rng } : {}),
  });
  return { vector: enc.vector, report: enc.report, layout, ...(enc.weight !== undefined ? { weight: enc.weight } : {}) };
}

export interface SecureFedAvgOptions {
  /** The clients sent updates (contribute with `base`): add the mean update to the template's weights. */
  delta?: boolean;
}

export interface FedAvgResult {
  /** New weights in the template's layout; apply with applyWeights(model, weights) (caller disposes). */
  weights: Tensor[];
  /** The flat (weighted) mean the tensors were built from (the mean update when `delta`). */
  mean: Float64Array;
  totalWeight: number;
  clients: number;
  /** Per-element error bound of the mean vs the exact mean of the clipped contributions. */
  errorBound: number;
}

/**
 * Server side: a round's result (its sum and who is in it) → the (weighted) average, as new
 * weights shaped like `template` (a model or tensors: only their shapes, dtypes and — with
 * `delta` — values are used).
 */
export function secureFedAvg(
  result: { readonly sum: Uint32Array; readonly included: readonly number[] },
  plan: EncodingPlan,
  template: WeightSource,
  options: SecureFedAvgOptions = {},
): FedAvgResult {
  const { values: base, layout } = flattenWeights(template);
  if (result.sum.length !== layout.size + plan.extraElements)
    throw new SecAggError('ERR_SIZE', `sum has ${result.sum.length} elements, the template needs ${layout.size + plan.extraElements}`);
  const avg = decodeAverage(result.sum, plan, { clients: result.included.length });
  const next = new Float32Array(layout.size);
  for (let i = 0; i < next.length; i++) next[i] = options.delta ? base[i]! + avg.mean[i]! : avg.mean[i]!;
  return { weights: unflattenWeights(next, layout), mean: avg.mean, totalWeight: avg.totalWeight, clients: avg.clients, errorBound: avg.errorBound };
}
