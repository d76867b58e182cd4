export * from './codec.js';
export {
  peekClientBody,
  peekServerBody,
  clientKinds,
  serverKinds,
  type ClientKind,
  type ServerKind,
  type EntryCaps,
  type PeekedBody,
} from './peek.js';
export * from './gen/secagg/v1/secagg_pb.js';
