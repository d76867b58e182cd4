/**
 * Federated averaging of a small TF.js classifier, twice on the same data, seeds and dropout
 * schedule: once aggregated by the real SecAgg protocol (keys, encrypted shares, masks, dropouts,
 * unmasking) with the fixed-point encoding, once by plain unmasked FedAvg in float64. The only
 * differences between the two runs are clipping and quantisation.
 *
 * The training/evaluation loop (`federatedLoop`) is shared by both variants of the example; what
 * differs is the `Aggregator` that turns the clients' encoded vectors into a sum: in process
 * (`simulateRound`, here) or over the aggregation service (`network.ts`: createServer + participate).
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

export interface FlOptions {
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
  hidden: number;
  minSize: number;
  maxSize: number;
  testPerClass: number;
  spec: DatasetSpec;
  /** Randomness for the protocol and the stochastic rounding; default the CSPRNG. */
  rng?: Rng;
  log?: (line: string) => void;
}

export const DEFAULT_OPTIONS: FlOptions = {
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
};

export interface Metrics {
  accuracy: number;
  loss: number;
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

export interface FlResult {
  options: Omit<FlOptions, 'log' | 'rng'>;
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

function buildModel(features: number, hidden: number, classes: number, seed: number, lr: number): tf.Sequential {
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ units: hidden, activation: 'relu', inputShape: [features], kernelInitializer: tf.initializers.glorotUniform({ seed }) }),
      tf.layers.dense({ units: classes, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 1 }) }),
    ],
  });
  model.compile({ optimizer: tf.train.sgd(lr), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  return model;
}

function toTensors(data: Dataset, order?: readonly number[]): { xs: tf.Tensor2D; ys: tf.Tensor2D } {
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

function setFlat(model: tf.LayersModel, values: Float32Array, layout: WeightLayout): void {
  const ts = unflattenWeights(values, layout);
  applyWeights(model, ts);
  tf.dispose(ts);
}

async function evaluate(model: tf.LayersModel, test: { xs: tf.Tensor2D; ys: tf.Tensor2D }): Promise<Metrics> {
  const out = model.evaluate(test.xs, test.ys, { batchSize: 1024 }) as tf.Scalar[];
  const [loss, acc] = await Promise.all(out.map((t) => t.data()));
  tf.dispose(out);
  return { loss: loss![0]!, accuracy: acc![0]! };
}

/** This round's dropouts: ⌈rate·n⌉ clients (at most n − threshold), each at a random stage. */
function dropSchedule(rnd: SeededRandom, n: number, rate: number): Partial<Record<Stage, number[]>> {
  const maxDrops = n - (Math.floor(n / 2) + 1); // keep the default threshold (a majority) reachable
  const k = Math.min(maxDrops, Math.round(rate * n));
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
function expectedIncluded(n: number, dropped: Partial<Record<Stage, number[]>>): number[] {
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
  const o: FlOptions = { ...DEFAULT_OPTIONS, ...partial };
  const log = o.log ?? (() => {});
  const rng = o.rng ?? cryptoRng;
  if (o.clients < 3) throw new RangeError('at least 3 clients are needed');
  const data = partition({ seed: o.seed, clients: o.clients, minSize: o.minSize, maxSize: o.maxSize, testPerClass: o.testPerClass, spec: o.spec });
  const { features, classes } = o.spec;
  const model = buildModel(features, o.hidden, classes, o.seed, o.learningRate);
  const layout = weightLayout(model);
  const initial = (await flattenWeights(model, { layout })).values;
  const test = toTensors(data.test);
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
    log(
      `round  0  secure acc ${(100 * initialMetrics.accuracy).toFixed(2)}%  loss ${initialMetrics.loss.toFixed(4)}  | plain acc ${(100 * initialMetrics.accuracy).toFixed(2)}%  loss ${initialMetrics.loss.toFixed(4)}`,
    );
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
      const base = secureGlobal;
      const input = (i: number): Promise<Uint32Array> =>
        serially(async () => {
          if (!Number.isInteger(i) || i < 0 || i >= o.clients) throw new RangeError(`no client ${i}`);
          await trainLocal(base, i, orders[i]!);
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
        `round ${String(r).padStart(2)}  secure acc ${(100 * secure.accuracy).toFixed(2)}%  loss ${secure.loss.toFixed(4)}  | ` +
          `plain acc ${(100 * plain.accuracy).toFixed(2)}%  loss ${plain.loss.toFixed(4)}  | ${included.length}/${o.clients} in sum, ` +
          `dropped ${drops}, clipped ${clipped}/${clippedOf} (max |update| ${maxAbsUpdate.toFixed(2)}), max |Δw| ${gap.toExponential(1)}, ${where}`,
      );
    }
    failed = false;
    const service = await aggregator.close(false);
    const { log: _l, rng: _r, ...rest } = o;
    return { options: rest, aggregation: aggregator.kind, plan, parameters: layout.size, initial: initialMetrics, rounds, ...(service ? { service } : {}) };
  } finally {
    if (failed) await aggregator.close(true).catch(() => {});
    tf.dispose([test.xs, test.ys]);
    model.dispose();
  }
}
