/** Worker thread body for createWorkerUnmasker: runs a batch of mask jobs into one partial sum. */
import { parentPort } from 'node:worker_threads';
import { RingAccumulator } from '../ring/accumulator.js';
import { nodeCrypto } from '../crypto/node.js';
import { applyMaskJob, type MaskJob } from '../protocol/serverRound.js';

interface Batch {
  readonly id: number;
  readonly length: number;
  readonly jobs: readonly MaskJob[];
}

parentPort!.on('message', (batch: Batch) => {
  void (async () => {
    const acc = new RingAccumulator(batch.length);
    for (const job of batch.jobs) await applyMaskJob(acc, job, nodeCrypto);
    const partial = acc.toVector(32);
    parentPort!.postMessage({ id: batch.id, partial }, [partial.buffer as ArrayBuffer]);
  })().catch((e: unknown) => parentPort!.postMessage({ id: batch.id, error: e instanceof Error ? e.message : String(e) }));
});
