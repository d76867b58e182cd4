export { buildGraph, GRAPH_SEED_BYTES, type BuildGraphOptions, type NeighbourGraph } from './harary.js';
export {
  checkParameters,
  defaultThreshold,
  recommendParameters,
  type AdversaryModel,
  type ParameterRecommendation,
  type ParameterRequirements,
} from './params.js';
