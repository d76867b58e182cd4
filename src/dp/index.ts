/**
 * dp/: differential privacy of the sum — the distributed discrete mechanism and the RDP accountant
 * (isomorphic; randomness injected). See docs/privacy.md.
 *
 * @example
 * ```ts
 * const plan = planDp({ clients: 100, minClients: 60, dimension: 10_000, clip: 1, noiseMultiplier: 1, bits: 20 });
 * const { vector } = encodeDp({ values: update, plan, seed: roundSeed }); // each client
 * // ... the protocol sums the vectors mod 2^plan.bits ...
 * const { mean } = decodeDpMean({ sum: result.sum, plan, seed: roundSeed, clients: result.included.length });
 * ```
 *
 * ```ts
 * import { accountRounds, discreteMechanism } from 'secagg';
 * const { mechanism } = discreteMechanism({ kind: 'skellam', noiseMultiplier: 1, l2Clip: 1, dimension: 65536, bits: 16, clients: 100 });
 * const { epsilon, order } = accountRounds({ mechanism, samplingRate: 0.01, rounds: 1000, delta: 1e-5 });
 * ```
 */
export {
  planDp,
  noiseForRound,
  wrapProbability,
  noiseVariance,
  type DpPlan,
  type DpPlanOptions,
  type DpMechanism,
  type DpError,
  type NoiseSpec,
  type NoiseForRoundParams,
  type WrapParams,
} from './plan.js';
export {
  encodeDp,
  decodeDpSum,
  decodeDpMean,
  flattenAndPad,
  sampleNoise,
  wrapToRing,
  centre,
  subtractFromRing,
  type DpInput,
  type EncodeDpParams,
  type EncodedDp,
  type DecodeDpParams,
  type DecodeDpMeanParams,
  type NoiseComponent,
  type SampleNoiseParams,
} from './mechanism.js';
export { rotate, unrotate, fwht, hadamardSigns, paddedLength, type RotateParams, type SignParams } from './rotation.js';
export { conditionalRound, inflatedNormBound, DEFAULT_BETA, type ConditionalRoundParams, type InflatedBoundParams, type RoundedVector } from './rounding.js';
export {
  sampleDiscreteGaussian,
  samplePoisson,
  sampleSkellam,
  sampleBinomial,
  type BinomialParams,
  type DiscreteGaussianParams,
  type PoissonParams,
  type SkellamParams,
} from './samplers.js';
export {
  DEFAULT_RDP_ORDERS,
  sampledGaussianRdp,
  poissonSubsampledRdp,
  distributedDiscreteGaussianTau,
  mechanismRdp,
  epsilonFromRdp,
  deltaFromRdp,
  accountRounds,
  scaleForBits,
  discreteMechanism,
  calibrateNoiseMultiplier,
  type Mechanism,
  type AccountOptions,
  type AccountResult,
  type DiscreteSetup,
  type CalibrateOptions,
} from './accountant.js';
export {
  encodeForRound,
  planForEncoding,
  roundSeed,
  dpPolicyFor,
  dpEncodingProblem,
  type DpEncoding,
  type EncodeForRoundParams,
  type DpPolicyForParams,
} from './encoding.js';
