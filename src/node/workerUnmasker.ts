/**
 * Spreads the server's unmasking (one PRG expansion per survivor's self mask and per pairwise mask
 * of a dropped client) over worker threads. Each worker sums a batch of masks into one m-word
 * partial, so memory is O(workers · m) and the main thread adds one partial per batch.
 *
 * Each batch is posted at once to the worker with the least keystream outstanding. Posting at
 * once matters: the server hands batches over while it is still reconstructing secrets on the
 * main thread, and a worker that had to wait for the main thread to give it its next batch sat
 * idle for the whole reconstruction. Least-outstanding (not round-robin) because a batch of a
 * dropped client's pairwise masks carries key agreements and costs more than one of self masks.
 */
import { Worker } from 'node:worker_threads';
import { jobExpansions, sequentialUnmasker, type MaskJob, type Unmasker } from '../protocol/serverRound.js';
import type { RingAccumulator } from '../ring/accumulator.js';
import type { CryptoProvider } from '../crypto/provider.js';
import { SecAggError, isSecAggError } from '../errors.js';

/** Every failure reaches the server typed: a plain Error from a thread or an addition becomes ERR_INTERNAL, cause kept. */
const typed = (e: unknown): SecAggError => (isSecAggError(e) ? e : new SecAggError('ERR_INTERNAL', 'unmasking failed', { cause: e }));

export interface WorkerUnmasker {
  readonly unmask: Unmasker;
  /** Batches run so far on a worker thread, and on the calling thread (small rounds or batches, or a dead worker's). */
  readonly batches: { readonly worker: number; readonly main: number };
  close(): Promise<void>;
}

export interface WorkerUnmaskerOptions {
  readonly workers: number;
  /** Rounds expanding fewer keystream words stay on the calling thread (default MIN_PARALLEL_ROUND_WORDS). */
  readonly minRoundWords?: number;
  /** Sees each worker thread as it starts (monitoring; tests use it to kill one). */
  readonly onWorker?: (worker: Worker) => void;
}

/** Below this many words of keystream in a batch, the hand-off costs more than it saves. */
export const MIN_PARALLEL_WORDS = 1 << 20;
/**
 * Below this many words in a whole round, it stays on the main thread: measured on 2 cores, a
 * 100-client round (10^7 words) unmasked in 34–39 ms in-thread and 42–66 ms on the pool, while
 * rounds of 10^8 words gained up to 1.26× from it.
 */
export const MIN_PARALLEL_ROUND_WORDS = 1 << 25;

interface Batch {
  readonly id: number;
  readonly sum: RingAccumulator;
  readonly jobs: readonly MaskJob[];
  readonly crypto: CryptoProvider;
  readonly words: number;
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
}

interface Slot {
  readonly worker: Worker;
  readonly pending: Map<number, Batch>;
  outstanding: number; // keystream words posted and not yet answered
  dead: boolean;
}

export function createWorkerUnmasker(options: WorkerUnmaskerOptions): WorkerUnmasker {
  const count = Math.max(1, Math.floor(options.workers));
  const minRoundWords = options.minRoundWords ?? MIN_PARALLEL_ROUND_WORDS;
  const batches = { worker: 0, main: 0 };
  let nextId = 0;
  let closed = false;

  const runOnMain = async (b: Batch): Promise<void> => {
    batches.main++;
    try {
      await sequentialUnmasker(b.sum, b.jobs, b.crypto);
      b.resolve();
    } catch (e) {
      b.reject(typed(e));
    }
  };
  // A dead worker never answers: its batches have not touched the sum yet, so they run again here.
  const bury = (slot: Slot): void => {
    if (slot.dead) return;
    slot.dead = true;
    const orphans = [...slot.pending.values()];
    slot.pending.clear();
    slot.outstanding = 0;
    for (const b of orphans) {
      if (closed) b.reject(new SecAggError('ERR_INTERNAL', 'worker unmasker is closed'));
      else void runOnMain(b);
    }
  };

  // Started at once: a server keeps its pool, so thread start-up is not paid inside a round.
  const slots: Slot[] = Array.from({ length: count }, () => {
    const slot: Slot = { worker: new Worker(new URL('./unmaskWorker.js', import.meta.url)), pending: new Map(), outstanding: 0, dead: false };
    slot.worker.on('message', (m: { id: number; partial?: Uint32Array; error?: string }) => {
      const b = slot.pending.get(m.id);
      if (!b) return;
      slot.pending.delete(m.id);
      slot.outstanding -= b.words;
      if (!m.partial) return b.reject(new SecAggError('ERR_INTERNAL', `unmask worker failed: ${m.error}`));
      try {
        b.sum.addVector(m.partial, 1);
        b.resolve();
      } catch (e) {
        b.reject(typed(e));
      }
    });
    slot.worker.on('error', () => bury(slot));
    slot.worker.on('exit', () => bury(slot));
    options.onWorker?.(slot.worker);
    return slot;
  });

  const unmask: Unmasker = (sum, jobs, crypto, round) => {
    if (closed) return Promise.reject(new SecAggError('ERR_INTERNAL', 'worker unmasker is closed'));
    const words = jobs.reduce((n, j) => n + jobExpansions(j), 0) * sum.length;
    let slot: Slot | undefined;
    if ((round === undefined || round.words >= minRoundWords) && words >= MIN_PARALLEL_WORDS)
      for (const s of slots) if (!s.dead && (slot === undefined || s.outstanding < slot.outstanding)) slot = s;
    if (slot === undefined) {
      batches.main++;
      return sequentialUnmasker(sum, jobs, crypto, round);
    }
    const target = slot;
    return new Promise<void>((resolve, reject) => {
      const b: Batch = { id: nextId++, sum, jobs, crypto, words, resolve, reject };
      target.pending.set(b.id, b);
      target.outstanding += words;
      batches.worker++;
      target.worker.postMessage({ id: b.id, length: sum.length, jobs });
    });
  };
  return {
    unmask,
    batches,
    async close() {
      if (closed) return;
      closed = true;
      const e = new SecAggError('ERR_INTERNAL', 'worker unmasker is closed');
      for (const s of slots) {
        for (const b of s.pending.values()) b.reject(e);
        s.pending.clear();
      }
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}
