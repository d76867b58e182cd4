/**
 * Worker for bench/run.ts: produces `words` keystream words with nodeCrypto.keystream into a no-op
 * sink and reports the elapsed ms. Several of these at once measure the parallel PRG floor.
 */
import { parentPort } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { nodeCrypto } from '../src/crypto/node.js';

const noop = (): void => {};
parentPort!.on('message', (msg: { words: number }) => {
  const key = randomBytes(16);
  const t = performance.now();
  void nodeCrypto.keystream(key, msg.words, noop);
  parentPort!.postMessage(performance.now() - t);
});
