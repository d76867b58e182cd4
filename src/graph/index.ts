export { buildGraph, GRAPH_SEED_BYTES, type BuildGraphOptions, type NeighbourGraph } from './harary.js';
export {
  checkParameters,
  completeGraphParameters,
  defaultThreshold,
  recommendParameters,
  type AdversaryModel,
  type ParameterRecommendation,
  type ParameterRequirements,
} from './params.js';
export {
  assignToShards,
  planShards,
  DEFAULT_MAX_SHARD_SIZE,
  type ShardAssignment,
  type ShardMember,
  type ShardParameters,
  type ShardPlan,
  type ShardPlanRequest,
} from './shards.js';
