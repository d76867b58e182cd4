export {
  SECRET_BYTES,
  SHARE_BYTES,
  SHARE_CHUNKS,
  FIELD_PRIME,
  MAX_HOLDERS,
  DEFAULT_MAX_ATTEMPTS,
  splitSecret,
  lagrangeAtZero,
  LagrangeCache,
  combineShares,
  reconstructVerified,
} from './shamir.js';
export type { SplitParams, CombineParams, ReconstructParams, ReconstructResult } from './shamir.js';
