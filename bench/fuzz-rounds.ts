/**
 * Fuzz the protocol state machines' handlers (handleServerMessage, handleServerDeadline,
 * handleClientMessage) on states captured from real rounds, and print the summary table
 * (test/fuzz/roundCorpus.ts has the corpus, the mutations and the checks).
 *
 *   node dist/bench/fuzz-rounds.js [--inputs N] [--seed S] [--workers W] [--batch B]
 *
 * N inputs (default 1,000,000) over W worker threads (default 2: this machine's cores); S (default
 * 1) makes the run reproducible; --batch B replays batch B of that run alone and prints every
 * failure of it in full. Exit code 1 if any handler threw, returned an untyped error, changed the
 * server state on a refusal or broke another contract.
 */
import { countFlag } from './args.js';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { badCount, buildRoundCorpus, emptyReport, formatRoundReport, mergeReports, runRoundFuzz, type RoundFuzzReport } from '../test/fuzz/roundCorpus.js';

interface Job {
  readonly inputs: number;
  readonly seed: number;
  readonly worker: number;
  readonly workers: number;
}

type FromWorker = { readonly progress: number } | { readonly report: RoundFuzzReport };

/** Unhandled rejections from a handler are crashes too: note them, and fail the run. */
let unhandled = 0;
process.on('unhandledRejection', (e) => {
  unhandled++;
  console.error('unhandled rejection:', e instanceof Error ? e.stack : e);
});

async function workerMain(job: Job): Promise<void> {
  const corpus = await buildRoundCorpus();
  let last = 0;
  const report = await runRoundFuzz({
    inputs: job.inputs,
    seed: job.seed,
    corpus,
    batches: (b) => b % job.workers === job.worker,
    onProgress: (done) => {
      if (done - last >= 10_000) {
        parentPort!.postMessage({ progress: done - last } satisfies FromWorker);
        last = done;
      }
    },
  });
  if (unhandled > 0) report.failureCounts['unhandled-rejection'] = unhandled;
  parentPort!.postMessage({ report } satisfies FromWorker);
}

async function main(): Promise<void> {
  const inputs = countFlag('inputs') ?? 1_000_000;
  const seed = countFlag('seed') ?? 1;
  const workers = Math.max(1, countFlag('workers') ?? 2);
  const batch = countFlag('batch');
  const started = Date.now();
  let report: RoundFuzzReport;
  if (batch !== undefined) {
    report = await runRoundFuzz({ inputs, seed, batches: (b) => b === batch, keep: 1000 });
  } else {
    // A watchdog: a handler whose promise never settles stops the run with the progress so far.
    let done = 0;
    let seen = -1;
    const watchdog = setInterval(() => {
      process.stderr.write(`  ${done} inputs, ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
      if (done === seen) {
        console.error('no progress for 60 s: a handler hangs');
        process.exit(3);
      }
      seen = done;
    }, 60_000);
    const reports = await Promise.all(
      Array.from({ length: workers }, (_, worker) => {
        const w = new Worker(new URL(import.meta.url), { workerData: { inputs, seed, worker, workers } satisfies Job });
        return new Promise<RoundFuzzReport>((resolve, reject) => {
          w.on('message', (m: FromWorker) => {
            if ('progress' in m) done += m.progress;
            else resolve(m.report);
          });
          w.on('error', reject);
          w.on('exit', (code) => {
            if (code !== 0) reject(new Error(`worker ${worker} exited with ${code}`));
          });
        });
      }),
    );
    clearInterval(watchdog);
    report = reports.reduce((a, b) => mergeReports(a, b), emptyReport(seed));
    report.ms = Date.now() - started;
  }
  console.log(`node dist/bench/fuzz-rounds.js --inputs ${inputs} --seed ${seed}${batch !== undefined ? ` --batch ${batch}` : ` --workers ${workers}`}\n`);
  console.log(formatRoundReport(report));
  const bad = badCount(report);
  const rejections = unhandled + (report.failureCounts['unhandled-rejection'] ?? 0);
  console.log(
    `\ncrashes ${bad.crashes}, untyped errors ${bad.untyped}, state changes on refusal ${bad.stateChanges}, other violations ${bad.violations}, unhandled rejections ${rejections}; ${(report.inputs / (report.ms / 1000)).toFixed(0)} inputs/s`,
  );
  process.exit(bad.crashes + bad.untyped + bad.stateChanges + bad.violations + rejections === 0 ? 0 : 1);
}

if (isMainThread) await main();
else await workerMain(workerData as Job);
