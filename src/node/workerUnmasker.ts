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
  /** Batches run so far on a worker thread, and on the calling thread (too small, or taken from the queue while idle). */
  readonly batches: { readonly worker: number; readonly main: number };
  close(): Promise<void>;
}

/** Below this many words of keystream in a batch, the hand-off costs more than it saves. */
export const MIN_PARALLEL_WORDS = 1 << 20;
/**
 * Below this many words in a whole round, it stays on the main thread: measured on 2 cores, a
 * 100-client round (10^7 words) unmasked in 34 ms in-thread and 42–66 ms on the pool, while
 * rounds of 10^8 words gained up to 1.26× from it.
 */
export const MIN_PARALLEL_ROUND_WORDS = 1 << 25;

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
  /** The thread died (crashed or was killed): it gets no more batches; the rest, or the main thread, carry on. */
  dead: boolean;
}

export interface WorkerUnmaskerOptions {
  readonly workers: number;
  /** Rounds expanding fewer keystream words stay on the calling thread (default MIN_PARALLEL_ROUND_WORDS). */
  readonly minRoundWords?: number;
  /** Sees each worker thread as it starts (monitoring; tests use it to kill one). */
  readonly onWorker?: (worker: Worker) => void;
}

export function createWorkerUnmasker(options: WorkerUnmaskerOptions): WorkerUnmasker {
  const count = Math.max(1, Math.floor(options.workers));
  const minRoundWords = options.minRoundWords ?? MIN_PARALLEL_ROUND_WORDS;
  const batches = { worker: 0, main: 0 };
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
    const slot: Slot = { worker: new Worker(new URL('./unmaskWorker.js', import.meta.url)), busy: null, dead: false };
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
    slot.worker.on('error', (e) => {
      slot.dead = true;
      fail(slot, e);
    });
    slot.worker.on('exit', () => {
      slot.dead = true;
      if (slot.busy) fail(slot, new Error('unmask worker exited'));
    });
    options.onWorker?.(slot.worker);
    return slot;
  });

  function pump(): void {
    for (const slot of slots) {
      if (queue.length === 0) return;
      if (slot.busy !== null || slot.dead) continue;
      const b = queue.shift()!;
      slot.busy = b;
      batches.worker++;
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
    batches.main++;
    try {
      await sequentialUnmasker(b.sum, b.jobs, b.crypto);
      b.resolve();
    } catch (e) {
      b.reject(e);
    }
    pump(); // one batch at a time, so finished workers get the next batch before the main thread does
  }

  const unmask: Unmasker = (sum, jobs, crypto, round) => {
    if (closed) return Promise.reject(new Error('worker unmasker is closed'));
    if ((round !== undefined && round.words < minRoundWords) || jobs.reduce((n, j) => n + jobExpansions(j), 0) * sum.length < MIN_PARALLEL_WORDS) {
      batches.main++;
      return sequentialUnmasker(sum, jobs, crypto);
    }
    return new Promise<void>((resolve, reject) => {
      queue.push({ sum, jobs, crypto, resolve, reject });
      pump();
    });
  };
  return {
    unmask,
    batches,
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
