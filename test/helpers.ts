import assert from 'node:assert/strict';
import { unsafeSeededRng } from '../src/rng.js';
import { randomRingVector } from '../src/sim/random.js';
import { buildGraph } from '../src/graph/index.js';
import { simulateRound, type SimulateOptions, type SimulateResult } from '../src/sim/simulate.js';
import { isSecAggError, type SecAggErrorCode } from '../src/errors.js';
import type { ClientId } from '../src/ids.js';

/** n random vectors of m elements < 2^bits, reproducible from `seed`. */
export function randomInputs(n: number, m: number, bits: number, seed = 1): Uint32Array[] {
  const rng = unsafeSeededRng(seed);
  return Array.from({ length: n }, () => randomRingVector(m, bits, rng));
}

/**
 * Σ vectors mod 2^bits, written here without the library (not even its plainSum), so a sum the
 * protocol gets wrong cannot agree with it by sharing a bug.
 */
export function plaintextSum(vectors: readonly Uint32Array[], m: number, bits: number): Uint32Array {
  const out = new Uint32Array(m);
  const mod = 2 ** bits;
  for (const x of vectors) for (let i = 0; i < m; i++) out[i] = (out[i]! + x[i]!) % mod;
  return out;
}

/** The plaintext sum over the given client indices. */
export function expectedSum(inputs: readonly Uint32Array[], included: readonly number[], bits: number): Uint32Array {
  return plaintextSum(
    included.map((i) => inputs[i]!),
    inputs[0]!.length,
    bits,
  );
}

export async function runOk(options: SimulateOptions, expectIncluded: readonly number[]): Promise<SimulateResult> {
  const r = await simulateRound(options);
  assert.deepEqual(
    r.included,
    [...expectIncluded].sort((a, b) => a - b),
    'included clients',
  );
  assert.deepEqual(r.sum, expectedSum(options.inputs, r.included, options.bits), 'sum equals the plaintext sum of the included clients');
  return r;
}

export async function runAborts(options: SimulateOptions, code: SecAggErrorCode): Promise<void> {
  await assert.rejects(simulateRound(options), (e: unknown) => {
    assert.ok(isSecAggError(e), `expected a SecAggError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

export const GRAPH_SEED = new Uint8Array(32).fill(7);

/** The SecAgg+ graph the server will build from GRAPH_SEED over `clients` (ids). */
export function graphFor(clients: readonly number[], degree: number) {
  return buildGraph({ clients: clients as ClientId[], degree, seed: GRAPH_SEED });
}

export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
