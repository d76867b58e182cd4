export { RingAccumulator } from './accumulator.js';
export { elementBytes, packVector, unpackVector, plainSum, assertInRing } from './vector.js';
