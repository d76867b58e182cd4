/**
 * dp/: differential privacy of the released sum (isomorphic: no Node-only APIs).
 *
 * @example
 * ```ts
 * import { accountRounds, discreteMechanism } from 'secagg';
 * const { mechanism } = discreteMechanism({ kind: 'skellam', noiseMultiplier: 1, l2Clip: 1, dimension: 65536, bits: 16, clients: 100 });
 * const { epsilon, order } = accountRounds({ mechanism, samplingRate: 0.01, rounds: 1000, delta: 1e-5 });
 * ```
 */
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
