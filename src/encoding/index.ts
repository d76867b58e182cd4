/**
 * encoding/: real-valued updates → ring elements and back (isomorphic: no Node-only APIs).
 *
 * @example
 * ```ts
 * const plan = planEncoding({ clients: 100, clip: 1, precision: 1e-4, weighted: true, maxWeight: 500 });
 * const { vector, report } = encodeUpdate(update, plan, { weight: localExamples });
 * // ... vectors go through the protocol with bits = plan.bits ...
 * const { mean, errorBound } = decodeAverage(result.sum, plan, { clients: result.included.length });
 * ```
 */
export { planEncoding, type PlanOptions, type EncodingPlan, type ClipMode } from './plan.js';
export { clipVector, type ClipReport, type FloatVector } from './clip.js';
export {
  encodeUpdate,
  decodeSum,
  decodeAverage,
  toRing,
  fromRing,
  type EncodeOptions,
  type EncodedUpdate,
  type DecodedSum,
  type DecodedAverage,
} from './codec.js';
