import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWorkerUnmasker } from '../src/node/workerUnmasker.js';
import { sequentialUnmasker, type MaskJob } from '../src/protocol/serverRound.js';
import { RingAccumulator } from '../src/ring/accumulator.js';
import { nodeCrypto } from '../src/crypto/node.js';
import { unsafeSeededRng } from '../src/rng.js';
import { simulateRound } from '../src/sim/simulate.js';
import { expectedSum, randomInputs } from './helpers.js';

test('worker-thread unmasking gives the same sum as in-thread unmasking, for concurrent batches', async () => {
  const m = 1 << 16;
  const rng = unsafeSeededRng(77);
  const jobs: MaskJob[] = Array.from({ length: 48 }, (_, i) => ({ key: rng(16), sign: i % 3 === 0 ? -1 : 1 }));
  const start = new Uint32Array(rng(4 * m).buffer);
  const expected = new RingAccumulator(m);
  expected.addVector(start, 1);
  await sequentialUnmasker(expected, jobs, nodeCrypto);
  const pool = createWorkerUnmasker({ workers: 2 });
  try {
    const got = new RingAccumulator(m);
    got.addVector(start, 1);
    // Three batches in flight at once, as the server sends them.
    await Promise.all([pool.unmask(got, jobs.slice(0, 20), nodeCrypto), pool.unmask(got, jobs.slice(20, 40), nodeCrypto), pool.unmask(got, jobs.slice(40), nodeCrypto)]);
    assert.deepEqual(got.view(), expected.view());
    assert.notDeepEqual(got.view(), start, 'the masks changed the vector');
  } finally {
    await pool.close();
  }
});

test('a round unmasked on worker threads sums correctly with dropped clients', async () => {
  const inputs = randomInputs(12, 1 << 17, 24, 8);
  const pool = createWorkerUnmasker({ workers: 2 });
  try {
    const r = await simulateRound({ inputs, bits: 24, degree: 6, dropouts: { masked: [3, 7] }, unmasker: pool.unmask });
    assert.deepEqual(r.sum, expectedSum(inputs, r.included, 24));
    assert.equal(r.included.length, 10);
  } finally {
    await pool.close();
  }
});
