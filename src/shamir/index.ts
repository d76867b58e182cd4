export {
  SHARE_BYTES,
  SHARE_CHUNKS,
  FIELD_PRIME,
  splitSecret,
  lagrangeAtZero,
  LagrangeCache,
  combineShares,
  reconstructVerified,
} from './shamir.js';
