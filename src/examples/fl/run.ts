/**
 * Federated averaging of a small TF.js classifier, twice on the same data, seeds and dropout
 * schedule: once aggregated by the real SecAgg protocol (keys, encrypted shares, masks, dropouts,
 * unmasking) with the fixed-point encoding, once by plain unmasked FedAvg in float64. The only
 * differences between the two runs are clipping and quantisation.
 *
 * The training/evaluation loop (`federatedLoop`) is shared by both variants of the example; what
 * differs is the `Aggregator` that turns the clients' encoded vectors into a sum: in process
 * (`simulateRound`, here) or over the aggregation service (`network.ts`: createServer + participate).
 *
 * Two tasks share the loop: `synthetic` (generated non-IID data, `data.ts`; the fast default) and
 * `spam` (the SpamAssassin corpus split by recipient mailbox, `spam.ts`; logistic regression on
 * hashed words, scored on held-out mailboxes).
 */
import * as tf from '@tensorflow/tfjs';
import { simulateRound, STAGES, type Stage } from '../../sim/simulate.js';
import { stagesOf } from '../../protocol/stages.js';
import { cryptoRng, type Rng } from '../../rng.js';
import { planEncoding, type EncodingPlan } from '../../encoding/index.js';
import {
  applyWeights,
  contribute,
  flattenWeights,
  secureFedAvg,
  unflattenWeights,
  weightLayout,
  type Contribution,
  type WeightLayout,
} from '../../tfjs/index.js';
import { DEFAULT_SPEC, partition, SeededRandom, type Dataset, type DatasetSpec } from './data.js';
import { DEFAULT_FEATURES, loadCorpus, spamPartition, type CorpusMail, type MailboxSummary } from './spam.js';

/** `synthetic`: generated data (data.ts); `spam`: the SpamAssassin corpus by mailbox (spam.ts). */
export type FlTask = 'synthetic' | 'spam';

export interface SpamTaskOptions {
  /** Hash buckets of the bag of words (the model's input dimension). */
  features: number;
  /** Body characters read per mail. */
  maxBodyChars: number;
  /** Every holdoutEvery-th mailbox by size is held out for the test set (with all mailboxes past the clients). */
  holdoutEvery: number;
}

export interface FlOptions {
  task: FlTask;
  rounds: number;
  clients: number;
  /** Seeds the data, the split, the initial model, the local shuffles and the dropout schedule. */
  seed: number;
  localEpochs: number;
  batchSize: number;
  learningRate: number;
  /** Fraction of the cohort that drops in each round, each at a random stage. */
  dropoutRate: number;
  /** Clipping bound for each element of a client's update (new weights − global weights). */
  clip: number;
  /** Hidden units; 0 = no hidden layer (logistic regression). */
  hidden: number;
  /** Synthetic task: client sizes and test examples per class. */
  minSize: number;
  maxSize: number;
  testPerClass: number;
  spec: DatasetSpec;
  spam: SpamTaskOptions;
  /** Spam task: use this corpus instead of loading the package (e.g. to load it once for several runs). */
  corpus?: readonly CorpusMail[];
  /** Randomness for the protocol and the stochastic rounding; default the CSPRNG. */
  rng?: Rng;
  log?: (line: string) => void;
}

const DEFAULT_OPTIONS: FlOptions = {
  task: 'synthetic',
  rounds: 20,
  clients: 24,
  seed: 7,
  localEpochs: 2,
  batchSize: 16,
  learningRate: 0.1,
  dropoutRate: 0.15,
  clip: 0.2,
  hidden: 32,
  minSize: 40,
  maxSize: 160,
  testPerClass: 250,
  spec: DEFAULT_SPEC,
  spam: { ...DEFAULT_FEATURES, holdoutEvery: 4 },
};

/**
 * What the spam task changes: logistic regression (no hidden layer) on 2,048 hashed words; a large
 * step, because the inputs have unit norm (~100 non-zeros of ~0.1), so gradients are small; one
 * local epoch in batches of 32 (a mailbox of 736 mails already takes 23 steps; TF.js's CPU backend
 * costs about 1 ms per mail and epoch here); and clip 1, above all but a few dozen of the 4,098
 * update elements (max |update| is 2–4 in the first rounds, most are < 0.1).
 */
const SPAM_DEFAULTS: Partial<FlOptions> = { task: 'spam', hidden: 0, learningRate: 5, localEpochs: 1, batchSize: 32, clip: 1 };

/** The defaults for a task (one place: the example's flags and federatedLoop both use it). */
export function defaultsFor(task: FlTask = 'synthetic'): FlOptions {
  return { ...DEFAULT_OPTIONS, ...(task === 'spam' ? SPAM_DEFAULTS : {}) };
}

export interface Metrics {
  accuracy: number;
  loss: number;
  /** Two-class tasks: precision, recall and F1 of class 1 (spam). */
  precision?: number;
  recall?: number;
  f1?: number;
}

export interface RoundLog {
  round: number;
  secure: Metrics;
  plain: Metrics;
  /** Clients whose update is in this round's sum. */
  included: number[];
  /** Clients that dropped, by the stage at which they fell silent. */
  dropped: Partial<Record<Stage, number[]>>;
  /** Values clipped over all contributions of the round (of clippedOf). */
  clipped: number;
  clippedOf: number;
  /** Largest |update element| any client had before clipping. */
  maxAbsUpdate: number;
  /** Per-element error bound of the decoded mean update (vs the exact mean of the clipped updates). */
  errorBound: number;
  /**
   * max |decoded mean update − exact float64 weighted mean of the same included clients' clipped
   * updates|: what the protocol and the fixed point cost (≤ errorBound unless something is wrong).
   */
  aggregationError: number;
  /** max |secure global − plain global| over all weights after this round. */
  maxWeightGap: number;
  /** In process: the protocol's time; over the network: the service round, start to result (includes local training). */
  secureMs: number;
  /** Over the network: the service's record of the round that produced this sum. */
  service?: ServiceRoundLog;
}

/** What the service said about one round (network variant). */
export interface ServiceRoundLog {
  /** The service's round number and 16-byte round id (hex), as in its history. */
  id: number;
  roundId: string;
  cohort: number;
  /** Clients whose message each stage accepted. */
  stages: Record<string, number>;
  /** SHA-256 (hex) of the published sum's bytes. */
  sumSha256: string;
}

export type AggregationKind = 'in-process' | 'network';

/** The data the run trained and tested on. */
export interface DataSummary {
  task: FlTask;
  features: number;
  classes: number;
  /** Examples per training client. */
  clientSizes: number[];
  /** Share of class 1 (spam) per training client (two-class tasks). */
  clientPositiveRates?: number[];
  testExamples: number;
  /** The class most frequent in the training data, and its accuracy on the test set (always predicting it). */
  majorityClass: number;
  baseline: Metrics;
  /** Spam task: the training mailboxes and the held-out ones (the test set). */
  mailboxes?: MailboxSummary[];
  heldOut?: { mailboxes: number; mails: number; spam: number; largest: MailboxSummary[] };
}

export interface FlResult {
  options: Omit<FlOptions, 'log' | 'rng' | 'corpus'>;
  data: DataSummary;
  /** How the secure sums were computed: simulateRound in process, or the service over WebSockets. */
  aggregation: AggregationKind;
  plan: EncodingPlan;
  parameters: number;
  initial: Metrics;
  rounds: RoundLog[];
  /** Network variant: where the service listened and its history (newest first, without sums). */
  service?: { url: string; history: Array<{ id: number; roundId: string; outcome: string; included: number; cohort: number }> };
}

/** One round's secure sum, from whichever aggregator. */
export interface SecureRound {
  /** Σ encoded vectors mod 2^plan.bits over `included`. */
  sum: Uint32Array;
  /** Indices (0-based) of the clients whose vector is in the sum, ascending. */
  included: number[];
  ms: number;
  service?: ServiceRoundLog;
}

/**
 * Runs the secure aggregation of each round. `input(i)` trains client i locally from the current
 * secure global model and returns its encoded vector (the loop serialises the training, so it may
 * be called concurrently); an aggregator calls it for the clients that send an input, and makes the
 * clients in `dropped` fall silent at their stage.
 */
export interface Aggregator {
  readonly kind: AggregationKind;
  round(round: number, dropped: Partial<Record<Stage, number[]>>, input: (client: number) => Promise<Uint32Array>): Promise<SecureRound>;
  /** After the last round (or a failure): release everything; may return a summary for the result. */
  close(failed: boolean): Promise<FlResult['service'] | undefined>;
}

export interface AggregatorContext {
  clients: number;
  rounds: number;
  plan: EncodingPlan;
  /** Elements per encoded vector (parameters + plan.extraElements). */
  dimension: number;
  rng: Rng;
}

export function buildModel(features: number, hidden: number, classes: number, seed: number, lr: number): tf.Sequential {
  const out = (inputShape?: number[]) =>
    tf.layers.dense({
      units: classes,
      activation: 'softmax',
      kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 1 }),
      ...(inputShape ? { inputShape } : {}),
    });
  const model = tf.sequential({
    layers:
      hidden > 0
        ? [tf.layers.dense({ units: hidden, activation: 'relu', inputShape: [features], kernelInitializer: tf.initializers.glorotUniform({ seed }) }), out()]
        : [out([features])],
  });
  model.compile({ optimizer: tf.train.sgd(lr), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  return model;
}

export function toTensors(data: Dataset, order?: readonly number[]): { xs: tf.Tensor2D; ys: tf.Tensor2D } {
  const n = data.y.length;
  const d = data.features;
  const x = new Float32Array(n * d);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const j = order ? order[i]! : i;
    x.set(data.x.subarray(j * d, (j + 1) * d), i * d);
    labels[i] = data.y[j]!;
  }
  return tf.tidy(() => ({ xs: tf.tensor2d(x, [n, d]), ys: tf.oneHot(tf.tensor1d(labels, 'int32'), data.classes).toFloat() as tf.Tensor2D }));
}

export function setFlat(model: tf.LayersModel, values: Float32Array, layout: WeightLayout): void {
  const ts = unflattenWeights(values, layout);
  applyWeights(model, ts);
  tf.dispose(ts);
}

export interface TestSet {
  xs: tf.Tensor2D;
  ys: tf.Tensor2D;
  labels: Int32Array;
  classes: number;
}

/** Precision, recall and F1 of class 1 from predicted and true labels (0 when undefined). */
function binaryScores(predicted: ArrayLike<number>, labels: ArrayLike<number>): Required<Pick<Metrics, 'precision' | 'recall' | 'f1'>> {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < labels.length; i++) {
    if (predicted[i] === 1 && labels[i] === 1) tp++;
    else if (predicted[i] === 1) fp++;
    else if (labels[i] === 1) fn++;
  }
  const precision = tp + fp === 0 ? 0 : tp / (tp + fp);
  const recall = tp + fn === 0 ? 0 : tp / (tp + fn);
  return { precision, recall, f1: precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall) };
}

export async function evaluate(model: tf.LayersModel, test: TestSet): Promise<Metrics> {
  const out = model.evaluate(test.xs, test.ys, { batchSize: 1024 }) as tf.Scalar[];
  const [loss, acc] = await Promise.all(out.map((t) => t.data()));
  tf.dispose(out);
  const metrics: Metrics = { loss: loss![0]!, accuracy: acc![0]! };
  if (test.classes !== 2) return metrics;
  const predicted = tf.tidy(() => (model.predict(test.xs, { batchSize: 1024 }) as tf.Tensor2D).argMax(1));
  const p = await predicted.data();
  predicted.dispose();
  return { ...metrics, ...binaryScores(p, test.labels) };
}

export function pct(m: Metrics): string {
  return `acc ${(100 * m.accuracy).toFixed(2)}%` + (m.f1 !== undefined ? ` F1 ${(100 * m.f1).toFixed(1)}` : '') + `  loss ${m.loss.toFixed(4)}`;
}

export interface TaskData {
  clients: Dataset[];
  test: Dataset;
  summary: Omit<DataSummary, 'baseline' | 'majorityClass'>;
}

export async function loadTask(o: FlOptions): Promise<TaskData> {
  if (o.task === 'synthetic') {
    const data = partition({ seed: o.seed, clients: o.clients, minSize: o.minSize, maxSize: o.maxSize, testPerClass: o.testPerClass, spec: o.spec });
    return {
      ...data,
      summary: {
        task: o.task,
        features: o.spec.features,
        classes: o.spec.classes,
        clientSizes: data.clients.map((c) => c.y.length),
        testExamples: data.test.y.length,
      },
    };
  }
  if (o.task !== 'spam') throw new RangeError(`task must be 'synthetic' or 'spam', got ${JSON.stringify(o.task)}`);
  const corpus = o.corpus ?? (await loadCorpus());
  const { holdoutEvery, ...spec } = o.spam;
  const p = spamPartition(corpus, { clients: o.clients, holdoutEvery, spec });
  return {
    clients: p.clients,
    test: p.test,
    summary: {
      task: o.task,
      features: spec.features,
      classes: 2,
      clientSizes: p.clients.map((c) => c.y.length),
      clientPositiveRates: p.mailboxes.map((m) => m.spam / m.mails),
      testExamples: p.test.y.length,
      mailboxes: p.mailboxes,
      heldOut: p.heldOut,
    },
  };
}

/** Per-client size and spam rate, their spread, the held-out set and the baseline: the spam task's data, in lines. */
function describeSpamData(d: DataSummary): string[] {
  const rates = d.clientPositiveRates ?? [];
  const mean = rates.reduce((a, r) => a + r, 0) / rates.length;
  const sd = Math.sqrt(rates.reduce((a, r) => a + (r - mean) ** 2, 0) / rates.length);
  const total = d.clientSizes.reduce((a, n) => a + n, 0);
  const p = (x: number) => `${(100 * x).toFixed(1)}%`;
  const held = d.heldOut!;
  return [
    `data: SpamAssassin corpus, ${d.clientSizes.length} training mailboxes, ${total} mails (${Math.min(...d.clientSizes)}–${Math.max(...d.clientSizes)} per mailbox); ` +
      `spam rate per mailbox ${p(Math.min(...rates))}–${p(Math.max(...rates))} (mean ${p(mean)}, sd ${p(sd)}); ${d.features} hashed features`,
    ...d.mailboxes!.map(
      (m, i) =>
        `  client ${String(i).padStart(2)}  ${String(m.mails).padStart(4)} mails  ${p(m.spam / m.mails).padStart(6)} spam  ${m.mailbox} (rank ${m.rank})`,
    ),
    `test: ${held.mails} mails of ${held.mailboxes} held-out mailboxes (${p(held.spam / held.mails)} spam; largest: ${held.largest
      .slice(0, 4)
      .map((m) => `${m.mailbox} ${m.mails}`)
      .join(', ')})`,
    `baseline: always '${d.majorityClass === 1 ? 'spam' : 'ham'}' (the training majority) ${pct(d.baseline)}`,
  ];
}

/** Always predicting the training data's most frequent class, scored on the test set (loss: that class at probability 1 − 1e-7). */
export function majorityBaseline(clients: readonly Dataset[], test: Dataset): { majorityClass: number; baseline: Metrics } {
  const counts = new Array<number>(test.classes).fill(0);
  for (const c of clients) for (const y of c.y) counts[y]!++;
  const majorityClass = counts.indexOf(Math.max(...counts));
  const hits = test.y.filter((y) => y === majorityClass).length;
  const eps = 1e-7; // tfjs's epsilon in categoricalCrossentropy
  const loss = (-hits * Math.log(1 - eps) - (test.y.length - hits) * Math.log(eps / (test.classes - 1))) / test.y.length;
  const baseline: Metrics = { accuracy: hits / test.y.length, loss };
  return {
    majorityClass,
    baseline: test.classes === 2 ? { ...baseline, ...binaryScores(new Array<number>(test.y.length).fill(majorityClass), test.y) } : baseline,
  };
}

/** How many of n clients dropSchedule drops in every round: ⌈rate·n⌋, at most n − (⌊n/2⌋ + 1). */
export function dropCount(n: number, rate: number): number {
  const maxDrops = n - (Math.floor(n / 2) + 1); // keep the default threshold (a majority) reachable
  return Math.min(maxDrops, Math.round(rate * n));
}

/** This round's dropouts: ⌈rate·n⌉ clients (at most n − threshold), each at a random stage. */
export function dropSchedule(rnd: SeededRandom, n: number, rate: number): Partial<Record<Stage, number[]>> {
  const k = dropCount(n, rate);
  const who = rnd.shuffle(Array.from({ length: n }, (_, i) => i)).slice(0, k);
  const stages = stagesOf('semi-honest');
  const out: Partial<Record<Stage, number[]>> = {};
  for (const i of who) {
    const s = stages[rnd.int(stages.length)]!;
    (out[s] ??= []).push(i);
  }
  for (const s of STAGES) out[s]?.sort((a, b) => a - b);
  return out;
}

/** Clients whose masked input reaches the sum: all but those silent before sending it. */
export function expectedIncluded(n: number, dropped: Partial<Record<Stage, number[]>>): number[] {
  const gone = new Set([...(dropped.advertise ?? []), ...(dropped.share ?? []), ...(dropped.masked ?? [])]);
  return Array.from({ length: n }, (_, i) => i).filter((i) => !gone.has(i));
}

/** The in-process aggregator: the real protocol between simulated clients (simulateRound). */
function inProcessAggregator(ctx: AggregatorContext): Aggregator {
  return {
    kind: 'in-process',
    async round(_r, dropped, input) {
      const zero = new Uint32Array(ctx.dimension); // clients silent before MaskedInput never send theirs
      const inputs: Uint32Array[] = new Array<Uint32Array>(ctx.clients).fill(zero);
      for (const i of expectedIncluded(ctx.clients, dropped)) inputs[i] = await input(i);
      const t0 = performance.now();
      const result = await simulateRound({ inputs, bits: ctx.plan.bits, dropouts: dropped, rng: ctx.rng });
      return { sum: result.sum, included: result.included, ms: performance.now() - t0 };
    },
    async close() {
      return undefined;
    },
  };
}

/** FedAvg with the in-process protocol (the original example). */
export function runFederated(partial: Partial<FlOptions> = {}): Promise<FlResult> {
  return federatedLoop(partial, async (ctx) => inProcessAggregator(ctx));
}

/**
 * The shared training/evaluation loop: each round, the clients train from the secure global model
 * and their encoded updates are summed by the aggregator; `secureFedAvg` turns the sum into the new
 * secure global model. The plain run trains the same included clients from the plain global model
 * and averages in float64.
 */
export async function federatedLoop(partial: Partial<FlOptions>, makeAggregator: (ctx: AggregatorContext) => Promise<Aggregator>): Promise<FlResult> {
  const o: FlOptions = { ...defaultsFor(partial.task), ...partial };
  const log = o.log ?? (() => {});
  const rng = o.rng ?? cryptoRng;
  if (o.clients < 3) throw new RangeError('at least 3 clients are needed');
  const data = await loadTask(o);
  const { features, classes } = data.summary;
  const summary: DataSummary = { ...data.summary, ...majorityBaseline(data.clients, data.test) };
  if (summary.mailboxes && summary.heldOut) for (const line of describeSpamData(summary)) log(line);
  const model = buildModel(features, o.hidden, classes, o.seed, o.learningRate);
  const layout = weightLayout(model);
  const initial = (await flattenWeights(model, { layout })).values;
  const test: TestSet = { ...toTensors(data.test), labels: data.test.y, classes };
  const sizes = data.clients.map((c) => c.y.length);
  const maxWeight = Math.max(...sizes);

  // Weighted FedAvg: weight = local examples, carried inside the masked vector. No precision is
  // asked for: the planner takes the finest scale that cannot wrap with this cohort.
  const plan = planEncoding({ clients: o.clients, clip: o.clip, weighted: true, maxWeight, dimension: layout.size });
  log(
    `plan: ${layout.size} parameters + 1 weight element, ring 2^${plan.bits}, scale 2^${plan.fractionalBits}, ` +
      `clip ±${plan.clip}, maxWeight ${maxWeight}, headroom ${plan.headroomBits.toFixed(2)} bits, mean error ≤ ${plan.errorBound.mean.toExponential(2)}/(mean weight)`,
  );

  const aggregator = await makeAggregator({ clients: o.clients, rounds: o.rounds, plan, dimension: layout.size + plan.extraElements, rng });
  let failed = true;
  try {
    let secureGlobal: Float32Array = initial.slice();
    let plainGlobal: Float32Array = initial.slice();
    const initialMetrics = await evaluate(model, test);
    log(`round  0  secure ${pct(initialMetrics)}  | plain ${pct(initialMetrics)}`);
    const schedule = new SeededRandom(o.seed + 2);
    const rounds: RoundLog[] = [];

    /** Load `global` into the model and train it on one client's data (its weights are then the local model). */
    const trainLocal = async (global: Float32Array, client: number, order: readonly number[]): Promise<void> => {
      setFlat(model, global, layout);
      const { xs, ys } = toTensors(data.clients[client]!, order);
      await model.fit(xs, ys, { epochs: o.localEpochs, batchSize: o.batchSize, shuffle: false, verbose: 0 });
      tf.dispose([xs, ys]);
    };
    // One model serves every client in turn, so local training runs one client at a time.
    let idle: Promise<unknown> = Promise.resolve();
    const serially = <T>(f: () => Promise<T>): Promise<T> => {
      const p = idle.then(f);
      idle = p.catch(() => {});
      return p;
    };

    for (let r = 1; r <= o.rounds; r++) {
      const dropped = dropSchedule(schedule, o.clients, o.dropoutRate);
      const included = expectedIncluded(o.clients, dropped);
      const orders = sizes.map((n) => schedule.shuffle(Array.from({ length: n }, (_, i) => i)));

      // Secure run: clients train from the secure global model and contribute encoded updates
      // (local − global, clipped, times their example count, plus the count itself as the last element).
      const reports = new Map<number, Contribution['report']>();
      // Each client's clipped update in float64, for the exact mean the decoded one is checked against.
      const clippedUpdates = new Map<number, Float64Array>();
      const base = secureGlobal;
      const input = (i: number): Promise<Uint32Array> =>
        serially(async () => {
          if (!Number.isInteger(i) || i < 0 || i >= o.clients) throw new RangeError(`no client ${i}`);
          await trainLocal(base, i, orders[i]!);
          const local = (await flattenWeights(model, { layout })).values;
          const u = new Float64Array(layout.size);
          for (let j = 0; j < u.length; j++) u[j] = Math.min(plan.clip, Math.max(-plan.clip, local[j]! - base[j]!));
          clippedUpdates.set(i, u);
          const c = await contribute(model, sizes[i]!, plan, { base, rng });
          reports.set(i, c.report);
          return c.vector;
        });
      const result = await aggregator.round(r, dropped, input);
      await idle;
      if (result.included.join() !== included.join())
        throw new Error(`round ${r}: the protocol included [${result.included}] but the schedule predicts [${included}]`);
      let clipped = 0;
      let clippedOf = 0;
      let maxAbsUpdate = 0;
      for (const i of included) {
        const report = reports.get(i);
        if (!report) throw new Error(`round ${r}: client ${i} is in the sum but never trained`);
        clipped += report.clipped;
        clippedOf += report.elements;
        maxAbsUpdate = Math.max(maxAbsUpdate, report.maxAbs);
      }
      setFlat(model, secureGlobal, layout); // the template: secureFedAvg adds the mean update to it
      const agg = await secureFedAvg(result, plan, model, { delta: true });
      const exact = new Float64Array(layout.size);
      let exactWeight = 0;
      for (const i of included) {
        const u = clippedUpdates.get(i)!;
        for (let j = 0; j < u.length; j++) exact[j] = exact[j]! + sizes[i]! * u[j]!;
        exactWeight += sizes[i]!;
      }
      let aggregationError = 0;
      for (let j = 0; j < exact.length; j++) aggregationError = Math.max(aggregationError, Math.abs(agg.mean[j]! - exact[j]! / exactWeight));
      applyWeights(model, agg.weights);
      tf.dispose(agg.weights);
      secureGlobal = (await flattenWeights(model, { layout })).values;
      const secure = await evaluate(model, test);

      // Plain run: the same clients, data order and weights; exact float64 FedAvg of the updates.
      const sumUpdate = new Float64Array(layout.size);
      let totalWeight = 0;
      for (const i of included) {
        await trainLocal(plainGlobal, i, orders[i]!);
        const local = (await flattenWeights(model, { layout })).values;
        const w = sizes[i]!;
        for (let j = 0; j < local.length; j++) sumUpdate[j] = sumUpdate[j]! + w * (local[j]! - plainGlobal[j]!);
        totalWeight += w;
      }
      const nextPlain = new Float32Array(layout.size);
      for (let j = 0; j < nextPlain.length; j++) nextPlain[j] = plainGlobal[j]! + sumUpdate[j]! / totalWeight;
      plainGlobal = nextPlain;
      setFlat(model, plainGlobal, layout);
      const plain = await evaluate(model, test);

      let gap = 0;
      for (let j = 0; j < layout.size; j++) gap = Math.max(gap, Math.abs(secureGlobal[j]! - plainGlobal[j]!));
      const entry: RoundLog = {
        round: r,
        secure,
        plain,
        included,
        dropped,
        clipped,
        clippedOf,
        maxAbsUpdate,
        errorBound: agg.errorBound,
        aggregationError,
        maxWeightGap: gap,
        secureMs: result.ms,
        ...(result.service ? { service: result.service } : {}),
      };
      rounds.push(entry);
      const drops =
        STAGES.filter((s) => dropped[s]?.length)
          .map((s) => `${s}:${dropped[s]!.length}`)
          .join(' ') || 'none';
      const where = result.service ? `service round #${result.service.id} ${result.ms.toFixed(0)} ms` : `protocol ${result.ms.toFixed(0)} ms`;
      log(
        `round ${String(r).padStart(2)}  secure ${pct(secure)}  | plain ${pct(plain)}  | ${included.length}/${o.clients} in sum, ` +
          `dropped ${drops}, clipped ${clipped}/${clippedOf} (max |update| ${maxAbsUpdate.toFixed(2)}), ` +
          `aggregation error ${aggregationError.toExponential(1)} (bound ${agg.errorBound.toExponential(1)}), max |Δw| ${gap.toExponential(1)}, ${where}`,
      );
    }
    failed = false;
    const service = await aggregator.close(false);
    const { log: _l, rng: _r, corpus: _c, ...rest } = o;
    return {
      options: rest,
      data: summary,
      aggregation: aggregator.kind,
      plan,
      parameters: layout.size,
      initial: initialMetrics,
      rounds,
      ...(service ? { service } : {}),
    };
  } finally {
    if (failed) await aggregator.close(true).catch(() => {});
    tf.dispose([test.xs, test.ys]);
    model.dispose();
  }
}
