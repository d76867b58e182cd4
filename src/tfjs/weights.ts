/**
 * The weights ↔ one flat Float32Array, and the two FedAvg ends of a secure round — `contribute` on a
 * client, `secureFedAvg` on the server (the fixed-point encoding of encoding/, no noise).
 *
 * The flat vector is TF.js's own weight serialisation: `tf.io.encodeWeights` (which reads every
 * tensor with the asynchronous `tensor.data()`, never the page-blocking `dataSync()`) gives the
 * concatenated little-endian float32 bytes of the tensors, and `tf.io.decodeWeights` turns them
 * back into tensors; the model's tensors come from `model.getWeights(true)` / `getWeights()`.
 */
import { io } from '@tensorflow/tfjs';
import type { DataType, LayersModel, Tensor } from '@tensorflow/tfjs';
import { SecAggError } from '../errors.js';
import type { Rng } from '../rng.js';
import { decodeAverage, encodeUpdate } from '../encoding/codec.js';
import type { ClipReport } from '../encoding/clip.js';
import type { EncodingPlan } from '../encoding/plan.js';

/** A model (its weights, in `model.getWeights()` order) or a list of tensors. */
export type WeightSource = LayersModel | readonly Tensor[];

/**
 * Which of a model's weights are averaged (a tensor list is always taken whole):
 * - `'trainable'`: `model.getWeights(true)` — what the optimiser updates. Non-trainable state, such
 *   as BatchNormalization's moving mean and variance, stays local: the global model keeps its own.
 * - `'all'`: `model.getWeights()` — trainable, then non-trainable weights (`model.weights` order).
 *
 * The default is `'all'`, as in Flower (whose Keras/TF clients exchange `model.get_weights()`) and
 * Keras-style FedAvg generally. With `'trainable'`, the server's global model keeps the moving
 * statistics it was initialised with (mean 0, variance 1) while its gamma/beta are averages
 * learned under the clients' real statistics, so the global model serves (evaluates, predicts)
 * with normalisation that no client ever used; averaging the statistics keeps them consistent with
 * the averaged weights. The cost is a few more elements (two per BatchNorm channel). Pass
 * `'trainable'` on purpose (e.g. FedBN-style local statistics); then a one-time warning says what
 * stays local.
 */
export type WeightSelection = 'trainable' | 'all';

export interface SelectOptions {
  /** Which of a model's weights are averaged; default `'all'` (see WeightSelection for why). */
  weights?: WeightSelection;
  /**
   * Receives the one-time warning given when `'trainable'` leaves a model's non-trainable weights
   * local. Each callback is warned at most once (default `console.warn`, so once per page/process).
   */
  warn?: (message: string) => void;
}

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
  /** The selection the layout was made with (`'all'` for a tensor list). */
  readonly weights: WeightSelection;
}

const DEFAULT_SELECTION: WeightSelection = 'all';
const warned = new WeakSet<(message: string) => void>();

function isModel(source: unknown): source is LayersModel {
  return typeof source === 'object' && source !== null && !Array.isArray(source) && typeof (source as LayersModel).getWeights === 'function';
}

function selection(weights: unknown): WeightSelection {
  if (weights === undefined) return DEFAULT_SELECTION;
  if (weights !== 'trainable' && weights !== 'all') throw new TypeError(`weights must be 'trainable' or 'all', got ${String(weights)}`);
  return weights;
}

/** The source's tensors and their names (the model's own; the caller must not dispose them). */
function tensorsOf(source: WeightSource, options: SelectOptions): { named: { name: string; tensor: Tensor }[]; weights: WeightSelection } {
  if (isModel(source)) {
    const weights = selection(options.weights);
    const vars = weights === 'trainable' ? source.trainableWeights : source.weights;
    if (weights === 'trainable' && source.nonTrainableWeights.length > 0) {
      const warn = options.warn ?? console.warn;
      if (!warned.has(warn)) {
        warned.add(warn);
        const names = source.nonTrainableWeights.map((v) => v.name).join(', ');
        warn(`secagg/tfjs: weights: 'trainable' — ${source.nonTrainableWeights.length} non-trainable weights (${names}) are not averaged and stay local`);
      }
    }
    const values = source.getWeights(weights === 'trainable');
    return { named: values.map((tensor, i) => ({ name: vars[i]?.name ?? `weight_${i}`, tensor })), weights };
  }
  if (!Array.isArray(source)) throw new TypeError('weights must be a tf.LayersModel or an array of tf.Tensor');
  const named = (source as readonly Tensor[]).map((tensor, i) => {
    if (typeof tensor !== 'object' || tensor === null || !Array.isArray(tensor.shape) || typeof tensor.data !== 'function')
      throw new TypeError(`weights[${i}] is not a tf.Tensor`);
    return { name: `tensor_${i}`, tensor };
  });
  return { named, weights: 'all' };
}

/** The layout (names, shapes, dtypes, offsets) of a model's selected weights or of a tensor list. */
export function weightLayout(source: WeightSource, options: SelectOptions = {}): WeightLayout {
  return layoutOf(tensorsOf(source, options));
}

function layoutOf({ named, weights }: ReturnType<typeof tensorsOf>): WeightLayout {
  const specs: WeightSpec[] = [];
  let offset = 0;
  for (const { name, tensor } of named) {
    if (tensor.dtype !== 'float32')
      throw new SecAggError('ERR_INVALID_PARAMETERS', `${name} has dtype ${tensor.dtype}; only float32 weights can be aggregated`);
    specs.push(Object.freeze({ name, shape: Object.freeze([...tensor.shape]), dtype: tensor.dtype, size: tensor.size, offset }));
    offset += tensor.size;
  }
  return Object.freeze({ specs: Object.freeze(specs), size: offset, weights });
}

function check(named: readonly { name: string; tensor: Tensor }[], layout: WeightLayout): void {
  if (named.length !== layout.specs.length) throw new SecAggError('ERR_SIZE', `expected ${layout.specs.length} weight tensors, got ${named.length}`);
  named.forEach(({ name, tensor: t }, i) => {
    const s = layout.specs[i]!;
    if (t.dtype !== s.dtype) throw new SecAggError('ERR_INVALID_PARAMETERS', `weight ${i} (${name}) has dtype ${t.dtype}, expected ${s.dtype}`);
    if (t.shape.length !== s.shape.length || t.shape.some((d, j) => d !== s.shape[j]))
      throw new SecAggError('ERR_SIZE', `weight ${i} (${name}) has shape [${t.shape.join(', ')}], expected [${s.shape.join(', ')}]`);
  });
}

/** Throws SecAggError ERR_SIZE / ERR_INVALID_PARAMETERS unless `source` has exactly `layout`'s tensors (in `layout.weights`). */
export function checkLayout(source: WeightSource, layout: WeightLayout, options: Pick<SelectOptions, 'warn'> = {}): void {
  check(tensorsOf(source, { ...options, weights: layout.weights }).named, layout);
}

export interface FlattenOptions extends SelectOptions {
  /** Check the source against this layout (its `weights` selection is used). */
  layout?: WeightLayout;
}

/** Flatten into one Float32Array (bit-exact copy of the float32 values) with `tf.io.encodeWeights`. */
export async function flattenWeights(source: WeightSource, options: FlattenOptions = {}): Promise<{ values: Float32Array; layout: WeightLayout }> {
  const { layout: given, ...select } = options;
  if (given && select.weights !== undefined && select.weights !== given.weights)
    throw new TypeError(`weights '${select.weights}' contradicts the layout's '${given.weights}'`);
  const selected = tensorsOf(source, given ? { ...select, weights: given.weights } : select);
  const layout = given ?? layoutOf(selected);
  const { named } = selected;
  check(named, layout);
  const { data } = await io.encodeWeights(named);
  if (data.byteLength !== 4 * layout.size) throw new SecAggError('ERR_SIZE', `the weights hold ${data.byteLength / 4} values, their shapes say ${layout.size}`);
  return { values: new Float32Array(data), layout };
}

/** The inverse of flattenWeights, with `tf.io.decodeWeights`: new tensors (the caller owns and disposes them). */
export function unflattenWeights(values: ArrayLike<number>, layout: WeightLayout): Tensor[] {
  if (values === null || typeof values !== 'object' || typeof values.length !== 'number') throw new TypeError('values must be an array-like of numbers');
  if (values.length !== layout.size) throw new SecAggError('ERR_SIZE', `vector has ${values.length} values, the layout needs ${layout.size}`);
  const flat = Float32Array.from(values); // a copy with its own, exactly sized buffer
  // Positional names: decodeWeights returns a name → tensor map, and nothing forces names to be unique.
  const map = io.decodeWeights(
    flat.buffer,
    layout.specs.map((s, i) => ({ name: String(i), shape: [...s.shape], dtype: 'float32' as const })),
  );
  return layout.specs.map((_, i) => map[String(i)]!);
}

/**
 * Write tensors into a model's selected weights (default `'all'`: `model.setWeights`; `'trainable'`:
 * the trainable variables, non-trainable ones untouched). Shapes and dtypes are checked first.
 */
export function applyWeights(model: LayersModel, weights: readonly Tensor[], options: SelectOptions = {}): void {
  const layout = weightLayout(model, options);
  check(tensorsOf(weights, {}).named, layout);
  if (layout.weights === 'all') model.setWeights([...weights]);
  else model.trainableWeights.forEach((v, i) => v.write(weights[i]!));
}

export interface ContributeOptions extends SelectOptions {
  /**
   * Send the update `source − base` instead of the weights themselves (what FedAvg clients usually
   * do: updates are small, so clipping and the ring are used well; with `weights: 'all'` it also
   * keeps moving variances, which are ~1, inside a small clip). Pair with secureFedAvg's `delta`.
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
export async function contribute(source: WeightSource, weight: number | undefined, plan: EncodingPlan, options: ContributeOptions = {}): Promise<Contribution> {
  const { base: baseSource, rng, ...select } = options;
  const { values, layout } = await flattenWeights(source, select);
  if (plan.dimension !== undefined && plan.dimension !== layout.size)
    throw new SecAggError('ERR_SIZE', `the model has ${layout.size} values to average, the plan is for ${plan.dimension}`);
  let x: Float32Array | Float64Array = values;
  if (baseSource !== undefined) {
    const base =
      baseSource instanceof Float32Array ? baseSource : (await flattenWeights(baseSource, { layout, ...(select.warn ? { warn: select.warn } : {}) })).values;
    if (base.length !== layout.size) throw new SecAggError('ERR_SIZE', `base has ${base.length} values, the model ${layout.size}`);
    const d = new Float64Array(layout.size);
    for (let i = 0; i < d.length; i++) d[i] = values[i]! - base[i]!;
    x = d;
  }
  const enc = encodeUpdate(x, plan, { ...(weight !== undefined ? { weight } : {}), ...(rng ? { rng } : {}) });
  return { vector: enc.vector, report: enc.report, layout, ...(enc.weight !== undefined ? { weight: enc.weight } : {}) };
}

export interface SecureFedAvgOptions extends SelectOptions {
  /** The clients sent updates (contribute with `base`): add the mean update to the template's weights. */
  delta?: boolean;
}

export interface FedAvgResult {
  /** New weights in `layout`; apply with applyWeights(model, weights, { weights: layout.weights }) (caller disposes). */
  weights: Tensor[];
  layout: WeightLayout;
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
 * `delta` — values are used). Use the clients' `weights` selection.
 */
export async function secureFedAvg(
  result: { readonly sum: Uint32Array; readonly included: readonly number[] },
  plan: EncodingPlan,
  template: WeightSource,
  options: SecureFedAvgOptions = {},
): Promise<FedAvgResult> {
  const { delta, ...select } = options;
  const { values: base, layout } = await flattenWeights(template, select);
  if (result.sum.length !== layout.size + plan.extraElements)
    throw new SecAggError('ERR_SIZE', `sum has ${result.sum.length} elements, the template needs ${layout.size + plan.extraElements}`);
  const avg = decodeAverage(result.sum, plan, { clients: result.included.length });
  const next = new Float32Array(layout.size);
  for (let i = 0; i < next.length; i++) next[i] = delta ? base[i]! + avg.mean[i]! : avg.mean[i]!;
  return { weights: unflattenWeights(next, layout), layout, mean: avg.mean, totalWeight: avg.totalWeight, clients: avg.clients, errorBound: avg.errorBound };
}
