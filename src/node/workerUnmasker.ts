/**
 * Spreads the server's unmasking (one PRG expansion per survivor's self mask and per pairwise mask
 * of a dropped client) over worker threads. Each worker sums a batch of masks into one m-word
 * partial, so memory is O(workers · m) and the main thread adds one partial per batch.
 *
 * Batches wait in one queue and go to whichever worker is free: a batch with dropped clients'
 * key agreements costs more than one of self masks, so round-robin left workers idle behind a
 * busy one. The main thread takes queued batches too, but only once it has yielded to the event
 * loop — i.e. when the server has reconstructed every secret and is waiting for the masks — so it
 * helps with the tail instead of idling, and never delays its own reconstruction work.
 */
import { Worker } from 'node:worker_threads';
import { jobExpansions, sequentialUnmasker, type MaskJob, type Unmasker } from '../protocol/serverRound.js';
import type { RingAccumulator } from '../ring/accumulator.js';
import type { CryptoProvider } from '../crypto/provider.js';

export interface WorkerUnmasker {
  readonly unmask: Unmasker;
  close(): Promise<void>;
}

/** Below this many words of keystream in a batch, the hand-off costs more than it saves. */
export const MIN_PARALLEL_WORDS = 1 << 20;

interface Batch {
  readonly sum: RingAccumulator;
  readonly jobs: readonly MaskJob[];
  readonly crypto: CryptoProvider;
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
}

interface Slot {
  readonly worker: Worker;
  busy: Batch | null;
}

export function createWorkerUnmasker(options: { workers: number }): WorkerUnmasker {
  const count = Math.max(1, Math.floor(options.workers));
  const queue: Batch[] = [];
  let closed = false;
  let mainScheduled = false;

  const fail = (slot: Slot, e: unknown) => {
    const b = slot.busy;
    slot.busy = null;
    b?.reject(e);
    pump();
  };
  // Started at once: a server keeps its pool, so thread start-up is not paid inside a round.
  const slots: Slot[] = Array.from({ length: count }, () => {
    const slot: Slot = { worker: new Worker(new URL('./unmaskWorker.js', import.meta.url)), busy: null };
    slot.worker.on('message', (m: { partial?: Uint32Array; error?: string }) => {
      const b = slot.busy;
      if (!b) return;
      if (!m.partial) return fail(slot, new Error(`unmask worker failed: ${m.error}`));
      slot.busy = null;
      try {
        b.sum.addVector(m.partial, 1);
        b.resolve();
      } catch (e) {
        b.reject(e);
      }
      pump();
    });
    slot.worker.on('error', (e) => fail(slot, e));
    return slot;
  });

  function pump(): void {
    for (const slot of slots) {
      if (queue.length === 0) return;
      if (slot.busy !== null) continue;
      const b = queue.shift()!;
      slot.busy = b;
      slot.worker.postMessage({ length: b.sum.length, jobs: b.jobs });
    }
    if (queue.length > 0 && !mainScheduled) {
      mainScheduled = true;
      // setImmediate runs only after the caller's synchronous work and microtasks: the main thread is idle.
      setImmediate(runOneOnMain);
    }
  }

  async function runOneOnMain(): Promise<void> {
    mainScheduled = false;
    const b = queue.shift();
    if (!b) return;
    try {
      await sequentialUnmasker(b.sum, b.jobs, b.crypto);
      b.resolve();
    } catch (e) {
      b.reject(e);
    }
    pump(); // one batch at a time, so finished workers get the next batch before the main thread does
  }

  const unmask: Unmasker = (sum, jobs, crypto) => {
    if (closed) return Promise.reject(new Error('worker unmasker is closed'));
    if (jobs.reduce((n, j) => n + jobExpansions(j), 0) * sum.length < MIN_PARALLEL_WORDS) return sequentialUnmasker(sum, jobs, crypto);
    return new Promise<void>((resolve, reject) => {
      queue.push({ sum, jobs, crypto, resolve, reject });
      pump();
    });
  };
  return {
    unmask,
    async close() {
      if (closed) return;
      closed = true;
      const e = new Error('worker unmasker is closed');
      for (const b of queue.splice(0)) b.reject(e);
      for (const s of slots) if (s.busy) fail(s, e);
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}
