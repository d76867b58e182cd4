/** Random workloads for the simulator, the CLI and the benchmarks. */
import { cryptoRng, type Rng } from '../rng.js';
import type { Stage } from './simulate.js';

/** m uniformly random elements of Z_{2^bits}. */
export function randomRingVector(m: number, bits: number, rng: Rng = cryptoRng): Uint32Array {
  const v = new Uint32Array(rng(4 * m).buffer);
  if (bits < 32) for (let i = 0; i < m; i++) v[i]! &= 2 ** bits - 1;
  return v;
}

/**
 * `count` distinct clients out of n, picked at random and dealt round-robin over `stages`: the
 * dropout schedule `simulateRound` takes.
 */
export function spreadDropouts(n: number, count: number, stages: readonly Stage[], rng: Rng = cryptoRng): Partial<Record<Stage, number[]>> {
  if (!Number.isInteger(count) || count < 0 || count > n) throw new RangeError(`count must be in [0, ${n}], got ${count}`);
  const order = Array.from({ length: n }, (_, i) => i);
  const r = new DataView(rng(4 * n).buffer);
  for (let i = n - 1; i > 0; i--) {
    const j = r.getUint32(4 * i, true) % (i + 1); // modulo bias ≤ n/2^32: irrelevant for a workload
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const out: Partial<Record<Stage, number[]>> = {};
  for (let d = 0; d < count; d++) (out[stages[d % stages.length]!] ??= []).push(order[d]!);
  return out;
}
