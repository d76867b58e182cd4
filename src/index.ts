/**
 * secagg: secure aggregation (SecAgg / SecAgg+) for TypeScript.
 *
 * @example
 * ```ts
 * import { simulateRound } from 'secagg';
 * const inputs = [new Uint32Array([1, 2]), new Uint32Array([3, 4]), new Uint32Array([5, 6]), new Uint32Array([7, 8])];
 * const { sum } = await simulateRound({ inputs, bits: 16 });
 * // sum = [16, 20]
 * ```
 */
export { simulateRound, STAGES, type SimulateOptions, type SimulateResult, type RoundStats, type StageStats, type Stage } from './sim/simulate.js';
export { SecAggError, isSecAggError, ERROR_CODES, type SecAggErrorCode } from './errors.js';
export { clientId, roundId, type ClientId, type RoundId } from './ids.js';
export { cryptoRng, unsafeSeededRng, type Rng } from './rng.js';
export {
  buildGraph,
  recommendParameters,
  defaultThreshold,
  completeGraphParameters,
  planShards,
  assignToShards,
  DEFAULT_MAX_SHARD_SIZE,
  type ShardPlanRequest,
  type ShardPlan,
  type ShardParameters,
  type ShardAssignment,
  type ShardMember,
  type NeighbourGraph,
  type BuildGraphOptions,
  type AdversaryModel,
  type ParameterRequirements,
  type ParameterRecommendation,
} from './graph/index.js';
export {
  validateConfig,
  effectiveDegree,
  dpMinHonest,
  type RoundConfig,
  type DpRoundConfig,
  type Mode,
  type Degree,
  type RoundLimits,
} from './protocol/config.js';
export { clientNoiseVariance, excessProbability, noiseReport, type NoiseReport } from './protocol/noise.js';
export {
  createClient,
  handleClientMessage,
  clientContext,
  DEFAULT_FLOORS,
  type ClientState,
  type ClientStep,
  type ClientOptions,
  type ClientStage,
  type ClientContext,
  type ClientContextOptions,
  type ClientFloors,
  type ClientDpPolicy,
  type RemovableNoise,
  type InputProvider,
} from './protocol/clientRound.js';
export { encodeServerState, decodeServerState, encodeClientState, decodeClientState, STATE_FORMAT_VERSION } from './protocol/stateCodec.js';
export { stagesOf, CLIENT_KIND_STAGE, CLIENT_STAGE_ACCEPTS } from './protocol/stages.js';
export {
  startServerRound,
  handleServerMessage,
  handleServerDeadline,
  handleServerPartialSum,
  type PartialSum,
  serverContext,
  stageInstance,
  type ServerContext,
  sequentialUnmasker,
  type ServerState,
  type ServerStep,
  type ServerOptions,
  type ServerStage,
  type RoundResult,
  type Outgoing,
  type Unmasker,
  type UnmaskPlan,
  type MaskJob,
} from './protocol/serverRound.js';
export { createPartialSum, maskedInputVector, type PartialSumBuilder } from './protocol/partialSum.js';
export { createRoundRunner, type RoundRunner, type RoundRunnerOptions, type RoundEnd, type MessageHooks } from './protocol/runner.js';
export { realClock, manualClock, type Clock, type ManualClock, type TimerHandle } from './clock.js';
export { RingAccumulator, packVector, unpackVector, plainSum } from './ring/index.js';
export type { CryptoProvider, X25519PrivateKey, Ed25519PrivateKey } from './crypto/index.js';
export { PROTOCOL_VERSION } from './wire/codec.js';
export * from './encoding/index.js';
export * from './dp/index.js';
