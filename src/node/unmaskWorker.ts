/** Worker thread body for createWorkerUnmasker: expands a batch of masks into one partial sum. */
import { parentPort } from 'node:worker_threads';
import { RingAccumulator } from '../ring/accumulator.js';
import { nodeCrypto } from '../crypto/node.js';

interface Batch {
  readonly id: number;
  readonly length: number;
  readonly keys: Uint8Array; // 16 bytes per job
  readonly signs: Int8Array;
}

parentPort!.on('message', (batch: Batch) => {
  const acc = new RingAccumulator(batch.length);
  for (let j = 0; j < batch.signs.length; j++) {
    // nodeCrypto's keystream is synchronous, so this returns void
    void acc.addPrg(nodeCrypto, batch.keys.subarray(16 * j, 16 * j + 16), batch.signs[j] === 1 ? 1 : -1);
  }
  const partial = acc.toVector(32);
  parentPort!.postMessage({ id: batch.id, partial }, [partial.buffer as ArrayBuffer]);
});
