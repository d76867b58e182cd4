export * from './codec.js';
export * from './gen/secagg/v1/secagg_pb.js';
