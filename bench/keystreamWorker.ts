/**
 * Worker for bench/run.ts: produces `words` keystream words with nodeCrypto.keystream into a no-op
 * sink and reports the elapsed ms. Several of these at once measure the parallel PRG floor.
 */
import { parentPort } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import { timeKeystream } from './timing.js';

parentPort!.on('message', (msg: { words: number }) => parentPort!.postMessage(timeKeystream(randomBytes(16), msg.words)));
