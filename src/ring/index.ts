export { RingAccumulator } from './accumulator.js';
export { packVector, unpackVector, plainSum } from './vector.js';
