/**
 * Spreads the server's unmasking (one PRG expansion per survivor's self mask and per pairwise mask
 * of a dropped client) over worker threads. Each worker sums its share of the masks into one
 * m-word partial, so memory is O(workers · m) and the main thread adds W partials at the end.
 */
import { Worker } from 'node:worker_threads';
import { jobExpansions, sequentialUnmasker, type MaskJob, type Unmasker } from '../protocol/serverRound.js';

export interface WorkerUnmasker {
  readonly unmask: Unmasker;
  close(): Promise<void>;
}

/** Below this many words of keystream in a batch, the hand-off costs more than it saves. */
export const MIN_PARALLEL_WORDS = 1 << 20;

export function createWorkerUnmasker(options: { workers: number }): WorkerUnmasker {
  const count = Math.max(1, Math.floor(options.workers));
  let nextId = 0;
  let nextWorker = 0;
  const pending = new Map<number, { resolve: (partial: Uint32Array) => void; reject: (e: unknown) => void }>();
  // Started at once: a server keeps its pool, so thread start-up is not paid inside a round.
  let pool: Worker[] | null = Array.from({ length: count }, () => {
    const w = new Worker(new URL('./unmaskWorker.js', import.meta.url));
    w.on('message', (m: { id: number; partial?: Uint32Array; error?: string }) => {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.partial) p?.resolve(m.partial);
      else p?.reject(new Error(`unmask worker failed: ${m.error}`));
    });
    w.on('error', (e) => {
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    });
    return w;
  });
  const run = (w: Worker, length: number, jobs: readonly MaskJob[]): Promise<Uint32Array> => {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      w.postMessage({ id, length, jobs });
    });
  };
  // Each batch goes whole to the next worker (one partial sum back per batch); the server sends
  // batches without waiting, so all workers stay busy.
  const unmask: Unmasker = async (sum, jobs, crypto) => {
    if (pool === null) throw new Error('worker unmasker is closed');
    if (jobs.reduce((n, j) => n + jobExpansions(j), 0) * sum.length < MIN_PARALLEL_WORDS) return sequentialUnmasker(sum, jobs, crypto);
    const w = pool[nextWorker++ % pool.length]!;
    sum.addVector(await run(w, sum.length, jobs), 1);
  };
  return {
    unmask,
    async close() {
      const p = pool;
      pool = null;
      if (p) await Promise.all(p.map((w) => w.terminate()));
    },
  };
}
