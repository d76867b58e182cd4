/**
 * `npm run bench`: end-to-end timings of whole simulated rounds and of the client's masking work,
 * each also as a ratio to this machine's PRG floor measured in the same run (DESIGN.md,
 * "Performance model"). Prints a table and writes the same rows as JSON to
 * test-output/bench/results.json.
 *
 *   node dist/bench/run.js [--quick] [--only <row>[,<row>…]] [--reps N] [--workers W] [--out FILE]
 *
 * Rows: c100 (100 clients, complete, m = 100k), c500 (500 clients, complete), c1000 (1,000 clients,
 * SecAgg+ at the recommended degree, 5% dropped over the stages), s101 (server unmasks 101 clients,
 * 10 dropped after sharing), mask1m / mask100k (one client's MaskedInput work alone, m = 2^20 or
 * 100,000, 100 neighbours: the simulated rounds' client rows also carry the GC work of the other
 * clients held in the same process).
 *
 * The floor of a row is the time `nodeCrypto.keystream` takes on this machine to produce the same
 * number of keystream words into a no-op sink. Targets are reported (PASS/FAIL), never thrown.
 */
import { availableParallelism } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
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

// ---------------------------------------------------------------------------------------------
// Arguments

const ROW_IDS = ['c100', 'c500', 'c1000', 's101', 'mask1m', 'mask100k'] as const;
type RowId = (typeof ROW_IDS)[number];

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    only: { type: 'string', multiple: true },
    reps: { type: 'string' },
    workers: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});
if (args.help) {
  process.stdout.write(
    `Usage: node dist/bench/run.js [--quick] [--only ${ROW_IDS.join('|')}[,…]] [--reps N] [--workers W] [--out FILE]\n` +
      `  --quick     smaller sizes, a smoke run (targets are still printed but mean little)\n` +
      `  --only      run only these rows (repeatable or comma-separated)\n` +
      `  --reps      repetitions of the small measurements, median taken (default 3, quick 1)\n` +
      `  --workers   worker threads for the server's unmasking (default: available cores)\n` +
      `  --out       JSON output (default test-output/bench/results.json)\n`,
  );
  process.exit(0);
}
const QUICK = args.quick === true;
const only = new Set<string>((args.only ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean));
for (const o of only) if (!(ROW_IDS as readonly string[]).includes(o)) {
  process.stderr.write(`unknown row '${o}'; rows: ${ROW_IDS.join(', ')}\n`);
  process.exit(2);
}
const wanted = (id: RowId): boolean => only.size === 0 || only.has(id);
const REPS = args.reps !== undefined ? Math.max(1, Number.parseInt(args.reps, 10) || 1) : QUICK ? 1 : 3;
const CORES = availableParallelism();
const WORKERS = args.workers !== undefined ? Math.max(0, Number.parseInt(args.workers, 10) || 0) : CORES;
const OUT = args.out ?? 'test-output/bench/results.json';

// ---------------------------------------------------------------------------------------------
// Helpers

const log = (s: string): void => void process.stderr.write(s + '\n');
const t0Global = performance.now();
const stamp = (): string => `[${((performance.now() - t0Global) / 1000).toFixed(1).padStart(6)}s]`;

/** The PRG floor of a row: keystream rate measured now (median of a few short runs). */
function measureFloorRate(): number {
  return keystreamRate(QUICK ? 1 << 20 : 1 << 22, QUICK ? 5 : 11).bytesPerMs;
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

interface Row {
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
  /** meanMs / (floorPerThreadMs ?? floorMs). */
  ratio: number | null;
  target: string | null;
  pass: boolean | null;
  note?: string;
}

const rows: Row[] = [];
const extra: Record<string, unknown> = {};

function row(r: Partial<Row> & Pick<Row, 'row' | 'scenario' | 'measure'>): Row {
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
  if (full.meanMs !== null && full.floorMs !== null && full.ratio === null) {
    full.ratio = full.meanMs / (full.floorPerThreadMs ?? full.floorMs);
  }
  rows.push(full);
  return full;
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
function threadsUsed(workerBatches: number): number {
  return workerBatches === 0 ? 1 : Math.min(WORKERS, workerBatches);
}

async function runRoundOnce(spec: RoundSpec, pool: WorkerUnmasker | undefined, label: string): Promise<RoundOutcome> {
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
      log(`${stamp()}   ${label} ${stage}: ${delivered}/${expectedPerStage} clients (${((performance.now() - t0) / 1000).toFixed(1)}s into the round)`);
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
        log(`${stamp()}   ${label} ${e.stage === 'done' ? 'unmasked' : e.stage + ' done'}: ${e.clientsDone}/${e.clientsTotal} clients`);
    },
  });
  const expected = plainSum(result.included.map((i) => inputs[i]!), 32, m);
  const ok = expected.length === result.sum.length && expected.every((v, i) => v === result.sum[i]);
  rec.workerBatches = (pool?.batches.worker ?? 0) - workerBatchesBefore;
  rec.threads = threadsUsed(rec.workerBatches);
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

async function benchRound(spec: RoundSpec, pool: WorkerUnmasker | undefined): Promise<void> {
  log(`${stamp()} ${spec.id}: ${spec.scenario} — ${spec.reps} round(s)`);
  const outcomes: RoundOutcome[] = [];
  const rates: number[] = [];
  rates.push(measureFloorRate());
  for (let r = 0; r < spec.reps; r++) {
    outcomes.push(await runRoundOnce(spec, pool, `${spec.id}#${r + 1}`));
    if (!spec.bracketFloor && r + 1 < spec.reps) rates.push(measureFloorRate());
  }
  rates.push(measureFloorRate());
  const rate = median(rates);
  const seqMs = await replaySequential(last0(outcomes).unmask.jobsCopy, spec.m);
  const agreement = await replayKeyAgreement(last0(outcomes).unmask.jobsCopy);
  const seqOutcomes: RoundOutcome[] = [];
  if (pool && spec.compareSequential) {
    for (let r = 0; r < spec.reps; r++) seqOutcomes.push(await runRoundOnce(spec, undefined, `${spec.id}-inthread#${r + 1}`));
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
      row({
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
    } else row({ row: id, scenario: scen, measure: `client ${st}`, meanMs: mean, maxMs: max });
  }
  {
    const mean = med((o) => o.stats.clientMs.mean);
    const max = med((o) => o.stats.clientMs.max);
    const k = med((o) => o.maskNeighbours.mean);
    const words = (k + 1) * spec.m;
    const f = keystreamMs(words, rate);
    row({
      row: id,
      scenario: scen,
      measure: 'client, all stages',
      meanMs: mean,
      maxMs: max,
      prgWords: words,
      floorMs: f,
      threads: 1,
      ...(spec.clientTotalTargetMs !== undefined
        ? { target: `mean < ${spec.clientTotalTargetMs} ms`, pass: mean < spec.clientTotalTargetMs }
        : {}),
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
    row({
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
      row({ row: id, scenario: scen, measure: 'server unmask (total)', meanMs: total, target: `< ${spec.serverTargetMs} ms`, pass: total < spec.serverTargetMs });
    row({
      row: id,
      scenario: scen,
      measure: '  main thread until last batch handed off',
      meanMs: main,
      note: 'message handling + Shamir reconstruction + X25519/HKDF of dropped pairs (PRG overlaps)',
    });
    row({ row: id, scenario: scen, measure: '  PRG tail after the last hand-off', meanMs: tail });
    row({
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
      const parRate = await parallelKeystreamRate(threads, QUICK ? 1 << 20 : 1 << 23, QUICK ? 3 : 5);
      const parFloor = keystreamMs(words, parRate);
      row({
        row: id,
        scenario: scen,
        measure: `  PRG floor measured on ${threads} threads`,
        meanMs: parFloor,
        prgWords: words,
        threads,
        note: `${toGBps(parRate).toFixed(2)} GB/s aggregate = ${(parRate / rate).toFixed(2)}× one thread (other load on the machine shows here)`,
      });
      extra[`${id}.parallelKeystreamGBps`] = toGBps(parRate);
    }
    row({
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
      row({
        row: id,
        scenario: scen,
        measure: `  X25519+HKDF of ${agreement.pairs} dropped pairs alone (1 thread)`,
        meanMs: agreement.ms,
        note: `${((agreement.ms / agreement.pairs) * 1000).toFixed(1)} µs a pair = ${(agreement.ms / f).toFixed(2)}× this row's keystream floor; the floor leaves it out`,
      });
      row({
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
      row({
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
  row({
    row: id,
    scenario: scen,
    measure: 'server, other stages',
    meanMs: med((o) => STAGES.filter((x) => x !== 'unmask').reduce((a, x) => a + o.stats.stages[x].serverMs, 0)),
    note: `advertise/share/masked: ${STAGES.filter((x) => x !== 'unmask' && x !== 'consistency').map((x) => s.stages[x].serverMs.toFixed(0)).join('/')} ms; round wall ${(s.wallMs / 1000).toFixed(1)} s`,
  });
  {
    const blocks = STAGES.map((x) => [x, Math.max(...outcomes.map((o) => o.stats.stages[x].serverLongestBlockMs))] as const);
    const worst = blocks.reduce((a, b) => (b[1] > a[1] ? b : a));
    row({
      row: id,
      scenario: scen,
      measure: 'server longest event-loop block',
      maxMs: worst[1],
      note: `per stage, max over rounds: ${blocks.filter(([x]) => s.stages[x].clients > 0 || x === 'unmask').map(([x, v]) => `${x} ${v.toFixed(1)}`).join(', ')} ms (includes GC pauses)`,
    });
  }
  extra[id] = {
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
  if (!allOk) log(`${stamp()} ${id}: WARNING — the protocol's sum differs from the plaintext sum`);
  log(`${stamp()} ${id}: done (sum ${allOk ? 'correct' : 'WRONG'}, floor ${toGBps(rate).toFixed(2)} GB/s)`);
}

// ---------------------------------------------------------------------------------------------
// (b) One client's MaskedInput work alone, 100 neighbours, m = 2^20 (mask1m) or 100,000 (mask100k)

async function benchMask1m(id: 'mask1m' | 'mask100k' = 'mask1m'): Promise<void> {
  const m = QUICK ? 1 << 16 : id === 'mask1m' ? 1 << 20 : 100_000;
  const k = QUICK ? 20 : 100;
  const reps = Math.max(REPS, QUICK ? 1 : 7);
  const scen = `one client masks, m=${m}, ${k} neighbours`;
  log(`${stamp()} ${id}: ${scen} — ${reps} reps`);
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
  row({
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
  row({
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
  row({
    row: id,
    scenario: scen,
    measure: `  key derivation, done at ShareKeys: ${k}× X25519+HKDF`,
    meanMs: median(keysMs),
    maxMs: Math.max(...keysMs),
    note: `${((median(keysMs) / k) * 1000).toFixed(1)} µs per neighbour`,
  });
  extra[id] = { m, neighbours: k, reps, wholeMs: whole, prgMs, keysMs, floorMs: timedFloors, floorRateGBps: toGBps(rate) };
  log(`${stamp()} ${id}: done`);
}

// ---------------------------------------------------------------------------------------------
// Scenarios

function specs(): RoundSpec[] {
  const M = QUICK ? 10_000 : 100_000;
  const n100 = QUICK ? 20 : 100;
  const n500 = QUICK ? 50 : 500;
  const n1000 = QUICK ? 100 : 1000;
  const n101 = QUICK ? 21 : 101;
  const semiHonestStages = STAGES.filter((s) => s !== 'consistency');
  const rec = recommendParameters({ clients: n1000, dropoutRate: 0.05, corruptionRate: 0, securityBits: 40 });
  const k1000 = Math.min(rec.degree, n1000 - 1);
  const t1000 = Math.max(rec.threshold, defaultThreshold(k1000));
  const drop1000 = Math.round(0.05 * n1000);
  const drop101 = QUICK ? 2 : 10;
  const out: RoundSpec[] = [
    {
      id: 'c100',
      scenario: `${n100} clients, complete, m=${M}`,
      clients: n100,
      m: M,
      degree: 'complete',
      dropouts: {},
      reps: REPS,
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
      reps: REPS,
      serverTargetMs: 1000,
      bracketFloor: false,
      compareSequential: true,
    },
  ];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Output

function fmtMs(x: number | null): string {
  if (x === null) return '';
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function fmtWords(x: number | null): string {
  if (x === null) return '';
  return x >= 1e6 ? `${(x / 1e6).toFixed(1)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(0)}k` : String(x);
}

function printTable(header: string[]): void {
  const cols: Array<{ title: string; get: (r: Row) => string; right?: boolean }> = [
    { title: 'row', get: (r) => r.row },
    { title: 'measure', get: (r) => r.measure },
    { title: 'mean ms', get: (r) => fmtMs(r.meanMs), right: true },
    { title: 'max ms', get: (r) => fmtMs(r.maxMs), right: true },
    { title: 'PRG words', get: (r) => fmtWords(r.prgWords), right: true },
    { title: 'floor ms', get: (r) => fmtMs(r.floorMs), right: true },
    { title: 'thr', get: (r) => (r.threads === null ? '' : String(r.threads)), right: true },
    { title: 'floor/thr', get: (r) => fmtMs(r.floorPerThreadMs), right: true },
    { title: 'ratio', get: (r) => (r.ratio === null ? '' : `${r.ratio.toFixed(2)}×`), right: true },
    { title: 'target', get: (r) => r.target ?? '' },
    { title: 'result', get: (r) => (r.pass === null ? '' : r.pass ? 'PASS' : 'FAIL') },
    { title: 'note', get: (r) => r.note ?? '' },
  ];
  const cells = rows.map((r) => cols.map((c) => c.get(r)));
  const widths = cols.map((c, i) => Math.max(c.title.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) =>
    '| ' + vals.map((v, i) => (cols[i]!.right ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join(' | ') + ' |';
  const out: string[] = [...header, ''];
  out.push(line(cols.map((c) => c.title)));
  out.push('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  let lastScenario = '';
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (r.scenario !== lastScenario) {
      out.push(line(cols.map((_, j) => (j === 1 ? `— ${r.scenario} —` : ''))));
      lastScenario = r.scenario;
    }
    out.push(line(cells[i]!));
  }
  process.stdout.write(out.join('\n') + '\n');
}

// ---------------------------------------------------------------------------------------------
// Main

const header: string[] = [];
log(`${stamp()} secagg bench${QUICK ? ' (quick)' : ''}: measuring the keystream rate`);
const headerRate = keystreamRate(QUICK ? 1 << 20 : 1 << 22, QUICK ? 7 : 25);
const probe = new RingAccumulator(64);
header.push(
  `secagg bench${QUICK ? ' (QUICK: smaller sizes, targets not meaningful)' : ''} — node ${process.version}, ${CORES} cores, ` +
    `${WORKERS} unmask worker threads, accumulator ${probe.simd ? 'WASM SIMD' : 'plain JS'}, reps ${REPS} (median)`,
  `PRG floor: nodeCrypto.keystream (AES-128-CTR) into a no-op sink: ${toGBps(headerRate.bytesPerMs).toFixed(2)} GB/s ` +
    `(${((1e6 * 4) / headerRate.bytesPerMs).toFixed(2)} ns/word; ` +
    `samples ${Math.min(...headerRate.samples.map(toGBps)).toFixed(2)}–${Math.max(...headerRate.samples.map(toGBps)).toFixed(2)} GB/s). ` +
    `Each row's floor is re-measured next to it.`,
  `ratio = mean / floor (client rows) or mean / (floor / threads) (server rows). Client rows: mean and max over clients.`,
);

const pool = WORKERS > 0 ? createWorkerUnmasker({ workers: WORKERS }) : undefined;
try {
  if (pool) {
    // Start the pool before timing anything: a server keeps its workers across rounds.
    // One batch per worker at once, so every worker has run (and compiled) the code once.
    const warm = new RingAccumulator(MIN_PARALLEL_WORDS);
    await Promise.all(
      Array.from({ length: WORKERS }, () => pool.unmask(warm, [{ key: randomBytes(16), sign: 1 as const }], nodeCrypto)),
    );
  }
  for (const spec of specs()) if (wanted(spec.id)) await benchRound(spec, pool);
  if (wanted('mask1m')) await benchMask1m();
  if (wanted('mask100k')) await benchMask1m('mask100k');
} finally {
  await pool?.close();
  await closeKeystreamWorkers();
}

printTable(header);
const misses = rows.filter((r) => r.pass === false);
process.stdout.write(
  `\n${rows.filter((r) => r.pass !== null).length - misses.length} PASS, ${misses.length} FAIL` +
    (misses.length ? `: ${misses.map((r) => `${r.row} ${r.measure.trim()} (${r.target})`).join('; ')}` : '') +
    '\n',
);
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(
  OUT,
  JSON.stringify(
    {
      node: process.version,
      quick: QUICK,
      cores: CORES,
      workers: WORKERS,
      reps: REPS,
      keystreamGBps: toGBps(headerRate.bytesPerMs),
      keystreamSamplesGBps: headerRate.samples.map(toGBps),
      rows,
      details: extra,
    },
    null,
    1,
  ) + '\n',
);
log(`${stamp()} wrote ${OUT}`);
