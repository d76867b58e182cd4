/**
 * TensorFlow.js adapter: a model's weights (or a list of tensors) ↔ one flat Float32Array, and the
 * two FedAvg ends of a secure round — `contribute` on a client, `secureFedAvg` on the server
 * (weights.ts) — and of a differentially private one, DP-FedAvg with distributed discrete noise:
 * `contributeDp` and `dpFedAvg` (dp.ts). Works with any tfjs backend; the tests and the example use
 * the pure-JS CPU one.
 *
 * This module is a separate entry point: the core package never imports it, so tfjs is only an
 * optional peer dependency.
 *
 * @example
 * ```ts
 * import { contribute, secureFedAvg } from 'secagg/tfjs';
 * const { vector } = await contribute(model, examples, plan, { base: globalModel }); // client
 * const { weights } = await secureFedAvg(result, plan, globalModel, { delta: true }); // server
 * ```
 */
export {
  weightLayout,
  checkLayout,
  flattenWeights,
  unflattenWeights,
  applyWeights,
  contribute,
  secureFedAvg,
  type WeightSource,
  type WeightSelection,
  type SelectOptions,
  type WeightSpec,
  type WeightLayout,
  type FlattenOptions,
  type ContributeOptions,
  type Contribution,
  type SecureFedAvgOptions,
  type FedAvgResult,
} from './weights.js';
export { contributeDp, dpFedAvg, type ContributeDpParams, type DpContribution, type DpFedAvgParams, type DpFedAvgResult } from './dp.js';
