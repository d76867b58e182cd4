import { test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import assert from 'node:assert/strict';
import { MIN_PARALLEL_ROUND_WORDS, createWorkerUnmasker } from '../src/node/workerUnmasker.js';
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
    await Promise.all([
      pool.unmask(got, jobs.slice(0, 20), nodeCrypto),
      pool.unmask(got, jobs.slice(20, 40), nodeCrypto),
      pool.unmask(got, jobs.slice(40), nodeCrypto),
    ]);
    assert.deepEqual(got.view(), expected.view());
    assert.notDeepEqual(got.view(), start, 'the masks changed the vector');
  } finally {
    await pool.close();
  }
});

test('a round unmasked on worker threads sums correctly with dropped clients', async () => {
  const inputs = randomInputs(12, 1 << 17, 24, 8);
  const pool = createWorkerUnmasker({ workers: 2, minRoundWords: 0 }); // this round is small: force the workers
  try {
    const r = await simulateRound({ inputs, bits: 24, degree: 6, dropouts: { masked: [3, 7] }, unmasker: pool.unmask });
    assert.deepEqual(r.sum, expectedSum(inputs, r.included, 24));
    assert.equal(r.included.length, 10);
    assert.ok(pool.batches.worker > 0, 'batches went to the workers');
  } finally {
    await pool.close();
  }
});

test('many more batches than workers: each runs exactly once, spread over both workers', async () => {
  const m = 1 << 18; // 2^18 words × 4 jobs ≥ MIN_PARALLEL_WORDS: every batch goes to the pool
  const rng = unsafeSeededRng(78);
  const batches: MaskJob[][] = Array.from({ length: 9 }, (_, b) => Array.from({ length: 4 }, (_, i) => ({ key: rng(16), sign: (b + i) % 2 === 0 ? 1 : -1 })));
  const expected = new RingAccumulator(m);
  for (const b of batches) await sequentialUnmasker(expected, b, nodeCrypto);
  const pool = createWorkerUnmasker({ workers: 2 });
  try {
    const got = new RingAccumulator(m);
    await Promise.all(batches.map((b) => pool.unmask(got, b, nodeCrypto)));
    assert.deepEqual(got.view(), expected.view());
    assert.deepEqual(pool.batches, { worker: batches.length, main: 0 }, 'each batch ran exactly once, on a worker');
  } finally {
    await pool.close();
  }
});

test('closing the pool rejects batches still running, and later calls', async () => {
  const m = 1 << 18;
  const rng = unsafeSeededRng(79);
  const pool = createWorkerUnmasker({ workers: 1 });
  const acc = new RingAccumulator(m);
  const pending = Array.from({ length: 4 }, () =>
    pool.unmask(
      acc,
      Array.from({ length: 8 }, () => ({ key: rng(16), sign: 1 as const })),
      nodeCrypto,
    ),
  );
  const settled = Promise.allSettled(pending);
  await pool.close();
  const outcomes = await settled;
  assert.ok(
    outcomes.some((o) => o.status === 'rejected'),
    'batches still running are rejected',
  );
  await assert.rejects(pool.unmask(acc, [{ key: rng(16), sign: 1 }], nodeCrypto), /closed/);
});

test('a round with little keystream stays on the calling thread; a large one goes to the workers', async () => {
  const pool = createWorkerUnmasker({ workers: 2 });
  const m = 1 << 18;
  const rng = unsafeSeededRng(80);
  const jobs = (): MaskJob[] => Array.from({ length: 4 }, () => ({ key: rng(16), sign: 1 as const }));
  try {
    const acc = new RingAccumulator(m);
    await pool.unmask(acc, jobs(), nodeCrypto, { words: 8 * m }); // a small round
    assert.deepEqual(pool.batches, { worker: 0, main: 1 });
    await pool.unmask(acc, jobs(), nodeCrypto, { words: MIN_PARALLEL_ROUND_WORDS });
    assert.deepEqual(pool.batches, { worker: 1, main: 1 });
  } finally {
    await pool.close();
  }
});

test('a dead worker gets no more batches, and the batches it held run again on the main thread', async () => {
  const m = 1 << 18;
  const rng = unsafeSeededRng(81);
  const jobs = (): MaskJob[] => Array.from({ length: 4 }, () => ({ key: rng(16), sign: 1 as const }));
  for (const when of ['before', 'during'] as const) {
    const workers: Worker[] = [];
    const pool = createWorkerUnmasker({ workers: 2, onWorker: (w) => workers.push(w) });
    try {
      assert.equal(workers.length, 2);
      const batches = Array.from({ length: 6 }, jobs);
      const expected = new RingAccumulator(m);
      for (const b of batches) await sequentialUnmasker(expected, b, nodeCrypto);
      const got = new RingAccumulator(m);
      if (when === 'before') await workers[0]!.terminate();
      const all = Promise.all(batches.map((b) => pool.unmask(got, b, nodeCrypto)));
      if (when === 'during') void workers[0]!.terminate();
      await all;
      assert.deepEqual(got.view(), expected.view(), `worker killed ${when} the batches: each added exactly once`);
      if (when === 'before') assert.deepEqual(pool.batches, { worker: 6, main: 0 }, 'all went to the live worker');
      // Killed right after its batches were posted (milliseconds of work each), it cannot have answered them all.
      else assert.ok(pool.batches.main > 0, "the dead worker's batches ran again on the main thread");
    } finally {
      await pool.close();
    }
  }
});
