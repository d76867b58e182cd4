/**
 * The measuring half of `npm run bench` (bench/run.ts): runs the cases and returns plain data —
 * the rows with their timings, each row's PRG floor (the keystream time of the same work, measured
 * next to it), per-case details, and the keystream-rate calibration of the same run. It prints
 * only progress, through `log`; bench/report.ts formats the result.
 *
 * Rows: c100 (100 clients, complete, m = 100k), c500 (500 clients, complete), c1000 (1,000 clients,
 * SecAgg+ at the recommended degree, 5% dropped over the stages), s101 (server unmasks 101 clients,
 * 10 dropped after sharing), mask1m / mask100k (one client's MaskedInput work alone, m = 2^20 or
 * 100,000, 100 neighbours: the simulated rounds' client rows also carry the GC work of the other
 * clients held in the same process).
 *
 * The floor of a row is the time `nodeCrypto.keystream` takes on this machine to produce the same
 * number of keystream words into a no-op sink. Targets are judged (pass), never thrown.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { nodeCrypto } from '../src/crypto/node.js';
import { simulateRound, STAGES, type Stage, type SimulateResult } from '../src/sim/simulate.js';
import { spreadDropouts } from '../src/sim/random.js';
import { effectiveDegree } from '../src/protocol/config.js';
import { droppedMaskKeys, sequentialUnmasker, type MaskJob, type Unmasker } from '../src/protocol/serverRound.js';
import { createWorkerUnmasker, MIN_PARALLEL_WORDS, type WorkerUnmasker } from '../src/node/workerUnmasker.js';
import { RingAccumulator } from '../src/ring/accumulator.js';
import { plainSum } from '../src/ring/vector.js';
import { buildGraph, defaultThreshold, recommendParameters } from '../src/graph/index.js';
import { clientId, roundId, type ClientId } from '../src/ids.js';
import * as derive from '../src/protocol/derive.js';
import type { Degree } from '../src/protocol/config.js';
import { keystreamMs, keystreamRate, median, sample, timeAsync, timed, timeKeystream, toGBps } from './timing.js';

export const ROW_IDS = ['c100', 'c500', 'c1000', 's101', 'mask1m', 'mask100k'] as const;
export type RowId = (typeof ROW_IDS)[number];

export interface BenchOptions {
  /** Smaller sizes: a smoke run. */
  readonly quick: boolean;
  /** The rows to run (all when empty). */
  readonly only: ReadonlySet<RowId>;
  /** Repetitions of the small measurements, median taken. */
  readonly reps: number;
  /** Worker threads for the server's unmasking (0: in-thread). */
  readonly workers: number;
  /** Progress, one line at a time. */
  readonly log: (line: string) => void;
}

/** The keystream rate of this thread measured before anything else: the run's headline floor. */
export interface Calibration {
  /** Median rate, bytes per ms (= 1e-6 GB/s). */
  readonly bytesPerMs: number;
  readonly samples: readonly number[];
}

/** What one run measured: plain data, formatted by bench/report.ts. */
export interface Measurement {
  readonly node: string;
  readonly quick: boolean;
  readonly cores: number;
  readonly workers: number;
  readonly reps: number;
  /** The accumulator's kernel: WebAssembly SIMD, or plain JS. */
  readonly simd: boolean;
  readonly keystream: Calibration;
  readonly rows: readonly Row[];
  readonly details: Readonly<Record<string, unknown>>;
}

/** Run the selected cases, each next to its own floor measurement. */
export async function measure(options: BenchOptions): Promise<Measurement> {
  const run: Run = { ...options, rows: [], details: {} };
  const wanted = (id: RowId): boolean => options.only.size === 0 || options.only.has(id);
  run.log(`secagg bench${run.quick ? ' (quick)' : ''}: measuring the keystream rate`);
  const keystream = keystreamRate(run.quick ? 1 << 20 : 1 << 22, run.quick ? 7 : 25);
  const simd = new RingAccumulator(64).simd;
  const pool = run.workers > 0 ? createWorkerUnmasker({ workers: run.workers }) : undefined;
  try {
    if (pool) {
      // Start the pool before timing anything: a server keeps its workers across rounds.
      // One batch per worker at once, so every worker has run (and compiled) the code once.
      const warm = new RingAccumulator(MIN_PARALLEL_WORDS);
      await Promise.all(Array.from({ length: run.workers }, () => pool.unmask(warm, [{ key: randomBytes(16), sign: 1 as const }], nodeCrypto)));
    }
    for (const spec of specs(run)) if (wanted(spec.id)) await benchRound(run, spec, pool);
    if (wanted('mask1m')) await benchMask(run, 'mask1m');
    if (wanted('mask100k')) await benchMask(run, 'mask100k');
  } finally {
    await pool?.close();
    await closeKeystreamWorkers();
  }
  const { quick, reps, workers } = options;
  return { node: process.version, quick, cores: availableParallelism(), workers, reps, simd, keystream, rows: run.rows, details: run.details };
}

/** One run in progress: its options, and the rows and details measured so far. */
interface Run extends BenchOptions {
  readonly rows: Row[];
  readonly details: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Floors

/** The PRG floor of a row: keystream rate measured now (median of a few short runs). */
function measureFloorRate(run: Run): number {
  return keystreamRate(run.quick ? 1 << 20 : 1 << 22, run.quick ? 5 : 11).bytesPerMs;
}

/** W threads producing keystream at once: aggregate bytes per ms (median of `reps`), the achievable parallel floor. */
let ksWorkers: Worker[] = [];
async function parallelKeystreamRate(threads: number, wordsPerThread: number, reps: number): Promise<number> {
  if (threads < 1) return NaN;
  while (ksWorkers.length < threads) ksWorkers.push(new Worker(new URL('./keystreamWorker.js', import.meta.url)));
  const once = (w: Worker, words: number): Promise<number> =>
    new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
      w.postMessage({ words });
    });
  await Promise.all(ksWorkers.slice(0, threads).map((w) => once(w, 1 << 16))); // warm-up
  const { samples } = await sample(() => Promise.all(ksWorkers.slice(0, threads).map((w) => once(w, wordsPerThread))), reps);
  return median(samples.map((ms) => (4 * wordsPerThread * threads) / ms));
}
async function closeKeystreamWorkers(): Promise<void> {
  await Promise.all(ksWorkers.map((w) => w.terminate()));
  ksWorkers = [];
}

// ---------------------------------------------------------------------------------------------
// Rows

/** One line of the table: a timing, the PRG floor of the same work, and a target when it has one. */
export interface Row {
  row: RowId;
  scenario: string;
  measure: string;
  meanMs: number | null;
  maxMs: number | null;
  /** Keystream words the measured work expands (mean client for client rows). */
  prgWords: number | null;
  /** Time this machine takes to produce prgWords of keystream, one thread, no-op sink. */
  floorMs: number | null;
  /** Threads the work ran on (server unmasking on worker threads). */
  threads: number | null;
  /** floorMs / threads. */
  floorPerThreadMs: number | null;
  /**
   * The timing as a ratio to its floor, where a target is judged on it (pass) or the measurement
   * pairs each timing with its own floor; elsewhere bench/report.ts derives meanMs / (floorPerThreadMs ?? floorMs).
   */
  ratio: number | null;
  target: string | null;
  pass: boolean | null;
  note?: string;
}

function row(run: Run, r: Partial<Row> & Pick<Row, 'row' | 'scenario' | 'measure'>): void {
  const full: Row = {
    meanMs: null,
    maxMs: null,
    prgWords: null,
    floorMs: null,
    threads: null,
    floorPerThreadMs: null,
    ratio: null,
    target: null,
    pass: null,
    ...r,
  };
  run.rows.push(full);
}

// ---------------------------------------------------------------------------------------------
// Simulated rounds

interface RoundSpec {
  id: RowId;
  scenario: string;
  clients: number;
  m: number;
  degree: Degree;
  threshold?: number;
  dropouts: Partial<Record<Stage, number[]>>;
  reps: number;
  clientTotalTargetMs?: number;
  serverTargetMs?: number;
  /** Floor measured right before and after the round (big rounds), instead of just before. */
  bracketFloor: boolean;
  /** Also run the round with the in-thread unmasker, to show whether the workers pay. */
  compareSequential?: boolean;
}

interface UnmaskRecord {
  /** Server unmask stage start (onProgress 'unmask'), first and last unmasker call, last batch done. */
  tStage: number;
  tFirst: number;
  tLast: number;
  tDone: number;
  batches: number;
  /** Batches that ran on a worker thread (small rounds and batches stay on the main thread). */
  workerBatches: number;
  threads: number;
  jobsCopy: MaskJob[];
}

interface RoundOutcome {
  stats: SimulateResult['stats'];
  ok: boolean;
  unmask: UnmaskRecord;
  /** |N(u) ∩ U2| over the clients that computed a masked input. */
  maskNeighbours: { mean: number; max: number };
}

/** Which clients compute a masked input, and how many pairwise masks each adds (mirrors the server's U2 peel). */
function maskNeighbourCounts(spec: RoundSpec, seed: Uint8Array, threshold: number): { mean: number; max: number } {
  const dropAt = new Map<number, Stage>();
  for (const st of STAGES) for (const i of spec.dropouts[st] ?? []) if (!dropAt.has(i)) dropAt.set(i, st);
  const ids = Array.from({ length: spec.clients }, (_, i) => i);
  const u1 = ids.filter((i) => dropAt.get(i) !== 'advertise').map((i) => clientId(i + 1));
  const graph = buildGraph({ clients: u1, degree: spec.degree, seed });
  const u2 = new Set<number>(u1.filter((u) => dropAt.get(u - 1) !== 'share'));
  for (let changed = true; changed; ) {
    changed = false;
    for (const u of u2) {
      let live = 0;
      for (const v of graph.neighbours(u as ClientId)) if (u2.has(v)) live++;
      if (live < threshold) {
        u2.delete(u);
        changed = true;
      }
    }
  }
  let sum = 0;
  let max = 0;
  let count = 0;
  for (const u of u2) {
    if (dropAt.get(u - 1) === 'masked') continue;
    let k = 0;
    for (const v of graph.neighbours(u as ClientId)) if (u2.has(v)) k++;
    sum += k;
    max = Math.max(max, k);
    count++;
  }
  return { mean: count ? sum / count : 0, max };
}

/** The pool runs each batch whole on one worker (small rounds stay on the main thread): threads used, at most the workers. */
function threadsUsed(run: Run, workerBatches: number): number {
  return workerBatches === 0 ? 1 : Math.min(run.workers, workerBatches);
}

async function runRoundOnce(run: Run, spec: RoundSpec, pool: WorkerUnmasker | undefined, label: string): Promise<RoundOutcome> {
  const { clients: n, m } = spec;
  // A few distinct random vectors reused round-robin: realistic values, bounded memory at n = 1000.
  const distinct = Math.min(n, 8);
  const pool_ = Array.from({ length: distinct }, () => new Uint32Array(randomBytes(4 * m).buffer));
  const inputs = Array.from({ length: n }, (_, i) => pool_[i % distinct]!);
  const seed = randomBytes(32);
  const k = effectiveDegree(spec.degree, n);
  const threshold = spec.threshold ?? defaultThreshold(k);
  const maskNeighbours = maskNeighbourCounts(spec, seed, threshold);

  const base: Unmasker = pool ? pool.unmask : sequentialUnmasker;
  const rec: UnmaskRecord = { tStage: NaN, tFirst: NaN, tLast: NaN, tDone: NaN, batches: 0, workerBatches: 0, threads: 1, jobsCopy: [] };
  const workerBatchesBefore = pool?.batches.worker ?? 0;
  const unmasker: Unmasker = async (sum, jobs, crypto, round) => {
    const t = performance.now();
    if (rec.batches === 0) rec.tFirst = t;
    rec.tLast = t;
    rec.batches++;
    rec.jobsCopy.push(...jobs);
    await base(sum, jobs, crypto, round);
    rec.tDone = Math.max(Number.isNaN(rec.tDone) ? 0 : rec.tDone, performance.now());
  };

  // Progress: interceptServer sees each delivery just before the client handles it.
  const t0 = performance.now();
  let lastStage: Stage | undefined;
  let delivered = 0;
  let nextMark = 0;
  const expectedPerStage = n;
  const showProgress = n >= 200;
  const interceptServer = (_to: ClientId, bytes: Uint8Array, stage: Stage): Uint8Array => {
    if (stage !== lastStage) {
      lastStage = stage;
      delivered = 0;
      nextMark = 0.25;
    }
    delivered++;
    if (showProgress && delivered / expectedPerStage >= nextMark) {
      run.log(`  ${label} ${stage}: ${delivered}/${expectedPerStage} clients (${((performance.now() - t0) / 1000).toFixed(1)}s into the round)`);
      nextMark += 0.25;
    }
    return bytes;
  };

  const result = await simulateRound({
    inputs,
    bits: 32,
    degree: spec.degree,
    ...(spec.threshold !== undefined ? { threshold: spec.threshold } : {}),
    dropouts: spec.dropouts,
    unmasker,
    graphSeed: seed,
    interceptServer,
    onProgress: (e) => {
      if (e.stage === 'unmask') rec.tStage = performance.now();
      if (showProgress || e.stage === 'done')
        run.log(`  ${label} ${e.stage === 'done' ? 'unmasked' : e.stage + ' done'}: ${e.clientsDone}/${e.clientsTotal} clients`);
    },
  });
  const expected = plainSum(
    result.included.map((i) => inputs[i]!),
    32,
    m,
  );
  const ok = expected.length === result.sum.length && expected.every((v, i) => v === result.sum[i]);
  rec.workerBatches = (pool?.batches.worker ?? 0) - workerBatchesBefore;
  rec.threads = threadsUsed(run, rec.workerBatches);
  return { stats: result.stats, ok, unmask: rec, maskNeighbours };
}

/** Replay the round's unmask jobs on one thread, on a fresh accumulator: does the worker pool pay? */
async function replaySequential(jobs: readonly MaskJob[], m: number): Promise<number> {
  const acc = new RingAccumulator(m);
  return timeAsync(() => sequentialUnmasker(acc, jobs, nodeCrypto));
}

/**
 * The non-keystream work the protocol itself requires of the server's mask jobs: one X25519
 * agreement and one HKDF per (dropped client, surviving neighbour) pair. The keystream floor does
 * not contain it, so it is measured alone (one thread) to show how much of a row's gap it explains.
 */
async function replayKeyAgreement(jobs: readonly MaskJob[]): Promise<{ ms: number; pairs: number }> {
  let pairs = 0;
  const ms = await timeAsync(async () => {
    for (const job of jobs) if (!('key' in job)) for await (const _ of droppedMaskKeys(job.dropped, nodeCrypto)) pairs++;
  });
  return { ms, pairs };
}

const last0 = <T>(xs: readonly T[]): T => xs[xs.length - 1]!;

async function benchRound(run: Run, spec: RoundSpec, pool: WorkerUnmasker | undefined): Promise<void> {
  run.log(`${spec.id}: ${spec.scenario} — ${spec.reps} round(s)`);
  const outcomes: RoundOutcome[] = [];
  const rates: number[] = [];
  rates.push(measureFloorRate(run));
  for (let r = 0; r < spec.reps; r++) {
    outcomes.push(await runRoundOnce(run, spec, pool, `${spec.id}#${r + 1}`));
    if (!spec.bracketFloor && r + 1 < spec.reps) rates.push(measureFloorRate(run));
  }
  rates.push(measureFloorRate(run));
  const rate = median(rates);
  const seqMs = await replaySequential(last0(outcomes).unmask.jobsCopy, spec.m);
  const agreement = await replayKeyAgreement(last0(outcomes).unmask.jobsCopy);
  const seqOutcomes: RoundOutcome[] = [];
  if (pool && spec.compareSequential) {
    for (let r = 0; r < spec.reps; r++) seqOutcomes.push(await runRoundOnce(run, spec, undefined, `${spec.id}-inthread#${r + 1}`));
  }
  const last = last0(outcomes);
  const s = last.stats;
  const med = (f: (o: RoundOutcome) => number): number => median(outcomes.map(f));
  const allOk = outcomes.every((o) => o.ok);
  const scen = spec.scenario;
  const id = spec.id;

  for (const st of STAGES) {
    if (st === 'consistency') continue; // semi-honest rounds
    const mean = med((o) => {
      const x = o.stats.stages[st];
      return x.clients > 0 ? x.clientMsTotal / x.clients : 0;
    });
    const max = med((o) => o.stats.stages[st].clientMsMax);
    if (st === 'masked') {
      const k = med((o) => o.maskNeighbours.mean);
      const words = (k + 1) * spec.m;
      const f = keystreamMs(words, rate);
      const ratio = mean / f;
      row(run, {
        row: id,
        scenario: scen,
        measure: `client ${st} (k=${Number.isInteger(k) ? k : k.toFixed(1)})`,
        meanMs: mean,
        maxMs: max,
        prgWords: words,
        floorMs: f,
        threads: 1,
        ratio,
        target: '≤ 1.5× floor',
        pass: ratio <= 1.5,
      });
    } else row(run, { row: id, scenario: scen, measure: `client ${st}`, meanMs: mean, maxMs: max });
  }
  {
    const mean = med((o) => o.stats.clientMs.mean);
    const max = med((o) => o.stats.clientMs.max);
    const k = med((o) => o.maskNeighbours.mean);
    const words = (k + 1) * spec.m;
    const f = keystreamMs(words, rate);
    row(run, {
      row: id,
      scenario: scen,
      measure: 'client, all stages',
      meanMs: mean,
      maxMs: max,
      prgWords: words,
      floorMs: f,
      threads: 1,
      ...(spec.clientTotalTargetMs !== undefined ? { target: `mean < ${spec.clientTotalTargetMs} ms`, pass: mean < spec.clientTotalTargetMs } : {}),
    });
  }
  {
    const total = med((o) => o.stats.stages.unmask.serverMs);
    const main = med((o) => o.unmask.tLast - o.unmask.tStage);
    const tail = med((o) => o.unmask.tDone - o.unmask.tLast);
    const span = med((o) => o.unmask.tDone - o.unmask.tFirst);
    const exps = s.serverMaskExpansions;
    const threads = last.unmask.threads;
    const words = exps * spec.m;
    const f = keystreamMs(words, rate);
    const fPer = f / threads;
    const ratio = total / fPer;
    row(run, {
      row: id,
      scenario: scen,
      measure: 'server unmask (total)',
      meanMs: total,
      prgWords: words,
      floorMs: f,
      threads,
      floorPerThreadMs: fPer,
      ratio,
      target: '≤ 1.5× floor/threads',
      pass: ratio <= 1.5,
      note: `${exps} PRG expansions in ${last.unmask.batches} batches, ${threads === 1 ? 'on the main thread' : `${last.unmask.workerBatches} on ${threads} worker threads`}`,
    });
    if (spec.serverTargetMs !== undefined)
      row(run, {
        row: id,
        scenario: scen,
        measure: 'server unmask (total)',
        meanMs: total,
        target: `< ${spec.serverTargetMs} ms`,
        pass: total < spec.serverTargetMs,
      });
    row(run, {
      row: id,
      scenario: scen,
      measure: '  main thread until last batch handed off',
      meanMs: main,
      note: 'message handling + Shamir reconstruction + X25519/HKDF of dropped pairs (PRG overlaps)',
    });
    row(run, { row: id, scenario: scen, measure: '  PRG tail after the last hand-off', meanMs: tail });
    row(run, {
      row: id,
      scenario: scen,
      measure: '  unmasker span (first batch → last done)',
      meanMs: span,
      prgWords: words,
      floorMs: f,
      threads,
      floorPerThreadMs: fPer,
    });
    if (threads > 1) {
      const parRate = await parallelKeystreamRate(threads, run.quick ? 1 << 20 : 1 << 23, run.quick ? 3 : 5);
      const parFloor = keystreamMs(words, parRate);
      row(run, {
        row: id,
        scenario: scen,
        measure: `  PRG floor measured on ${threads} threads`,
        meanMs: parFloor,
        prgWords: words,
        threads,
        note: `${toGBps(parRate).toFixed(2)} GB/s aggregate = ${(parRate / rate).toFixed(2)}× one thread (other load on the machine shows here)`,
      });
      run.details[`${id}.parallelKeystreamGBps`] = toGBps(parRate);
    }
    row(run, {
      row: id,
      scenario: scen,
      measure: '  jobs replayed on 1 thread (X25519+PRG)',
      meanMs: seqMs,
      prgWords: words,
      floorMs: f,
      threads: 1,
    });
    if (agreement.pairs > 0) {
      const withKa = f + agreement.ms;
      row(run, {
        row: id,
        scenario: scen,
        measure: `  X25519+HKDF of ${agreement.pairs} dropped pairs alone (1 thread)`,
        meanMs: agreement.ms,
        note: `${((agreement.ms / agreement.pairs) * 1000).toFixed(1)} µs a pair = ${(agreement.ms / f).toFixed(2)}× this row's keystream floor; the floor leaves it out`,
      });
      row(run, {
        row: id,
        scenario: scen,
        measure: '  server unmask vs (floor + that) / threads',
        meanMs: total,
        floorMs: withKa,
        threads,
        floorPerThreadMs: withKa / threads,
        note: 'the protocol cannot avoid the key agreement: the least a server can do here',
      });
    }
    if (seqOutcomes.length > 0) {
      const seqTotal = median(seqOutcomes.map((o) => o.stats.stages.unmask.serverMs));
      row(run, {
        row: id,
        scenario: scen,
        measure: 'server unmask, in-thread unmasker',
        meanMs: seqTotal,
        prgWords: words,
        floorMs: f,
        threads: 1,
        note:
          threads === 1
            ? 'no batch reached the worker threshold: same path'
            : `same round without workers: workers ${seqTotal > total ? 'pay' : 'do not pay'} (${(seqTotal / total).toFixed(2)}× faster with them)`,
      });
    }
  }
  row(run, {
    row: id,
    scenario: scen,
    measure: 'server, other stages',
    meanMs: med((o) => STAGES.filter((x) => x !== 'unmask').reduce((a, x) => a + o.stats.stages[x].serverMs, 0)),
    note: `advertise/share/masked: ${STAGES.filter((x) => x !== 'unmask' && x !== 'consistency')
      .map((x) => s.stages[x].serverMs.toFixed(0))
      .join('/')} ms; round wall ${(s.wallMs / 1000).toFixed(1)} s`,
  });
  {
    const blocks = STAGES.map((x) => [x, Math.max(...outcomes.map((o) => o.stats.stages[x].serverLongestBlockMs))] as const);
    const worst = blocks.reduce((a, b) => (b[1] > a[1] ? b : a));
    row(run, {
      row: id,
      scenario: scen,
      measure: 'server longest event-loop block',
      maxMs: worst[1],
      note: `per stage, max over rounds: ${blocks
        .filter(([x]) => s.stages[x].clients > 0 || x === 'unmask')
        .map(([x, v]) => `${x} ${v.toFixed(1)}`)
        .join(', ')} ms (includes GC pauses)`,
    });
  }
  run.details[id] = {
    scenario: scen,
    clients: spec.clients,
    m: spec.m,
    degree: s.degree,
    threshold: s.threshold,
    dropouts: Object.fromEntries(Object.entries(spec.dropouts).map(([k, v]) => [k, v!.length])),
    included: outcomes.map((o) => o.stats.stages.masked.clients),
    sumCorrect: allOk,
    keystreamGBps: rates.map(toGBps),
    floorRateGBps: toGBps(rate),
    stats: outcomes.map((o) => o.stats),
  };
  if (!allOk) run.log(`${id}: WARNING — the protocol's sum differs from the plaintext sum`);
  run.log(`${id}: done (sum ${allOk ? 'correct' : 'WRONG'}, floor ${toGBps(rate).toFixed(2)} GB/s)`);
}

// ---------------------------------------------------------------------------------------------
// (b) One client's MaskedInput work alone, 100 neighbours, m = 2^20 (mask1m) or 100,000 (mask100k)

async function benchMask(run: Run, id: 'mask1m' | 'mask100k'): Promise<void> {
  const m = run.quick ? 1 << 16 : id === 'mask1m' ? 1 << 20 : 100_000;
  const k = run.quick ? 20 : 100;
  const reps = Math.max(run.reps, run.quick ? 1 : 7);
  const scen = `one client masks, m=${m}, ${k} neighbours`;
  run.log(`${id}: ${scen} — ${reps} reps`);
  const c = nodeCrypto;
  const round = roundId(randomBytes(16));
  const me = clientId(Math.floor(k / 2) + 1);
  const masking = await c.x25519(randomBytes(32));
  const peers = await Promise.all(
    Array.from({ length: k + 1 }, async (_, i) => ({ id: clientId(i + 1), pk: (await c.x25519(randomBytes(32))).publicKey })),
  ).then((ps) => ps.filter((p) => p.id !== me).slice(0, k));
  const selfSeed = randomBytes(32);
  const input = new Uint32Array(randomBytes(4 * m).buffer);

  const whole: number[] = [];
  const keysMs: number[] = [];
  const prgMs: number[] = [];
  const floorTimes: number[] = [];
  const floorKey = randomBytes(16);
  let simd = false;
  // One warm-up pass, then `reps` timed passes; the floor is measured next to every pass.
  for (let r = -1; r < reps; r++) {
    // Paired floor: the same number of keystream words, into a no-op sink, right before this pass.
    let floor = 0;
    for (let j = 0; j <= k; j++) floor += timeKeystream(floorKey, m);
    floorTimes.push(floor);
    // The client derives its pairwise mask keys at ShareKeys (clientRound.ts onKeys); the
    // MaskedInput stage is then the accumulator, the input, k + 1 expansions and the reduction.
    const keys: Array<{ key: Uint8Array; sign: 1 | -1 }> = [];
    const { value: selfKey, ms: tKeys } = await timed(async () => {
      const selfKey = await derive.selfMaskKey(c, selfSeed, round, me);
      for (const p of peers) {
        const shared = await masking.agree(p.pk);
        keys.push({ key: await derive.pairwiseMaskKey(c, shared, round, me, p.id), sign: p.id > me ? 1 : -1 });
      }
      return selfKey;
    });
    let tPrg = 0;
    const { value: out, ms: total } = await timed(async () => {
      const acc = new RingAccumulator(m);
      simd = acc.simd;
      acc.addVector(input, 1);
      tPrg = await timeAsync(async () => {
        await acc.addPrg(c, selfKey, 1);
        for (const { key, sign } of keys) await acc.addPrg(c, key, sign);
      });
      return acc.toVector(32);
    });
    if (out.length !== m) throw new Error('unreachable');
    if (r >= 0) {
      whole.push(total);
      keysMs.push(tKeys);
      prgMs.push(tPrg);
    }
  }
  const words = (k + 1) * m;
  const timedFloors = floorTimes.slice(1); // drop the warm-up pass
  const f = median(timedFloors);
  const rate = (4 * words) / f;
  const wMed = median(whole);
  const pMed = median(prgMs);
  const pairedWhole = median(whole.map((x, i) => x / timedFloors[i]!));
  const pairedPrg = median(prgMs.map((x, i) => x / timedFloors[i]!));
  row(run, {
    row: id,
    scenario: scen,
    measure: 'MaskedInput stage work (PRG+add)',
    meanMs: wMed,
    maxMs: Math.max(...whole),
    prgWords: words,
    floorMs: f,
    threads: 1,
    ratio: pairedWhole,
    target: '≤ 1.5× floor',
    pass: pairedWhole <= 1.5,
    note: `accumulator ${simd ? 'WASM SIMD' : 'plain JS'}; new accumulator, input add, ${k + 1} expansions, toVector`,
  });
  row(run, {
    row: id,
    scenario: scen,
    measure: `  of which ${k + 1}× addPrg`,
    meanMs: pMed,
    maxMs: Math.max(...prgMs),
    prgWords: words,
    floorMs: f,
    threads: 1,
    ratio: pairedPrg,
    target: '≤ 1.5× floor',
    pass: pairedPrg <= 1.5,
    note: 'ratio: median of per-pass ratios to a floor measured right before each pass',
  });
  row(run, {
    row: id,
    scenario: scen,
    measure: `  key derivation, done at ShareKeys: ${k}× X25519+HKDF`,
    meanMs: median(keysMs),
    maxMs: Math.max(...keysMs),
    note: `${((median(keysMs) / k) * 1000).toFixed(1)} µs per neighbour`,
  });
  run.details[id] = { m, neighbours: k, reps, wholeMs: whole, prgMs, keysMs, floorMs: timedFloors, floorRateGBps: toGBps(rate) };
  run.log(`${id}: done`);
}

// ---------------------------------------------------------------------------------------------
// Scenarios

function specs(run: Run): RoundSpec[] {
  const M = run.quick ? 10_000 : 100_000;
  const n100 = run.quick ? 20 : 100;
  const n500 = run.quick ? 50 : 500;
  const n1000 = run.quick ? 100 : 1000;
  const n101 = run.quick ? 21 : 101;
  const semiHonestStages = STAGES.filter((s) => s !== 'consistency');
  const rec = recommendParameters({ clients: n1000, dropoutRate: 0.05, corruptionRate: 0, securityBits: 40 });
  const k1000 = Math.min(rec.degree, n1000 - 1);
  const t1000 = Math.max(rec.threshold, defaultThreshold(k1000));
  const drop1000 = Math.round(0.05 * n1000);
  const drop101 = run.quick ? 2 : 10;
  const out: RoundSpec[] = [
    {
      id: 'c100',
      scenario: `${n100} clients, complete, m=${M}`,
      clients: n100,
      m: M,
      degree: 'complete',
      dropouts: {},
      reps: run.reps,
      clientTotalTargetMs: 50,
      bracketFloor: false,
      compareSequential: true,
    },
    {
      id: 'c500',
      scenario: `${n500} clients, complete, m=${M}`,
      clients: n500,
      m: M,
      degree: 'complete',
      dropouts: {},
      reps: 1,
      clientTotalTargetMs: 300,
      bracketFloor: true,
    },
    {
      id: 'c1000',
      scenario: `${n1000} clients, SecAgg+ k=${rec.degree} t=${t1000}, m=${M}, ${drop1000} dropped`,
      clients: n1000,
      m: M,
      degree: rec.complete ? 'complete' : rec.degree,
      threshold: t1000,
      dropouts: spreadDropouts(n1000, drop1000, semiHonestStages),
      reps: 1,
      bracketFloor: true,
    },
    {
      id: 's101',
      scenario: `${n101} clients, complete, m=${M}, ${drop101} dropped after sharing`,
      clients: n101,
      m: M,
      degree: 'complete',
      dropouts: { masked: spreadDropouts(n101, drop101, ['masked']).masked ?? [] },
      reps: run.reps,
      serverTargetMs: 1000,
      bracketFloor: false,
      compareSequential: true,
    },
  ];
  return out;
}
