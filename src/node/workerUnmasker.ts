/**
 * Spreads the server's unmasking (one PRG expansion per survivor's self mask and per pairwise mask
 * of a dropped client) over worker threads. Each worker sums its share of the masks into one
 * m-word partial, so memory is O(workers · m) and the main thread adds W partials at the end.
 */
import { Worker } from 'node:worker_threads';
import type { MaskJob, Unmasker } from '../protocol/serverRound.js';

export interface WorkerUnmasker {
  readonly unmask: Unmasker;
  close(): Promise<void>;
}

/** Below this many words of keystream in total, the hand-off costs more than it saves. */
const MIN_PARALLEL_WORDS = 1 << 20;

export function createWorkerUnmasker(options: { workers: number }): WorkerUnmasker {
  const count = Math.max(1, Math.floor(options.workers));
  let pool: Worker[] | null = null;
  let nextId = 0;
  const pending = new Map<number, (partial: Uint32Array) => void>();
  const start = (): Worker[] => {
    if (pool) return pool;
    pool = Array.from({ length: count }, () => {
      const w = new Worker(new URL('./unmaskWorker.js', import.meta.url));
      w.on('message', (m: { id: number; partial: Uint32Array }) => {
        pending.get(m.id)?.(m.partial);
        pending.delete(m.id);
      });
      return w;
    });
    return pool;
  };
  const run = (w: Worker, length: number, jobs: readonly MaskJob[]): Promise<Uint32Array> => {
    const keys = new Uint8Array(16 * jobs.length);
    const signs = new Int8Array(jobs.length);
    jobs.forEach((j, i) => {
      keys.set(j.key, 16 * i);
      signs[i] = j.sign;
    });
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, resolve);
      w.once('error', reject);
      w.postMessage({ id, length, keys, signs });
    });
  };
  const unmask: Unmasker = async (sum, jobs, crypto) => {
    if (jobs.length < 2 || jobs.length * sum.length < MIN_PARALLEL_WORDS) {
      for (const job of jobs) await sum.addPrg(crypto, job.key, job.sign);
      return;
    }
    const workers = start();
    const per = Math.ceil(jobs.length / workers.length);
    const partials = await Promise.all(
      workers.map((w, i) => run(w, sum.length, jobs.slice(i * per, (i + 1) * per))).filter((_, i) => i * per < jobs.length),
    );
    for (const p of partials) sum.addVector(p, 1);
  };
  return {
    unmask,
    async close() {
      if (pool) await Promise.all(pool.map((w) => w.terminate()));
      pool = null;
    },
  };
}
