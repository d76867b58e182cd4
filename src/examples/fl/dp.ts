/**
 * DP-FedAvg in the federated-learning example (`--dp`): the same data, initial model, local
 * training and dropout schedule, trained
 *
 * - once per noise multiplier z with **distributed DP**: each client's update (local − global) is
 *   L2-clipped, rotated, scaled, rounded and noised by the client (`contributeDp` of secagg/tfjs over
 *   dp/'s encodeDp), the noisy vectors are summed by the real SecAgg protocol (simulateRound, with
 *   clients dropping at random stages), and the server decodes the mean (`dpFedAvg`);
 * - once per z with **central DP** at the same ε: the server clips the same way, averages in
 *   float64 and adds Gaussian noise N(0, (z_c·c)²) per coordinate to the sum, z_c calibrated with the
 *   accountant's Gaussian to the distributed run's final ε after the same number of rounds;
 * - once as **plain FedAvg**: no clipping, no noise.
 *
 * All three average unweighted (DP-FedAvg's choice: weighting by example counts would raise one
 * client's sensitivity).
 *
 * Privacy accounting. Neighbouring runs differ by one client (its whole data). Every client of the
 * population is in every round's cohort (no sampling: q = 1, so no amplification, and the
 * population is the cohort). The protocol's threshold t is n − k − 1 for the k clients the schedule
 * drops in every round (the shares of a survivor's mask that the other survivors hold); no sum of fewer than t clients can be released, so the plan's minClients
 * is t and each client adds 1/t of the target variance (z·c·s)² — a released sum of m ≥ t clients
 * carries m/t times the target. ε after r rounds is accountRounds of the plan's mechanism (Skellam
 * or distributed discrete Gaussian, with the plan's l2Sensitivity, l1Sensitivity and released
 * noise), q = 1, r rounds, at δ (default 1e-5).
 */
import * as tf from '@tensorflow/tfjs';
import { simulateRound, type Stage } from '../../sim/simulate.js';
import { cryptoRng, unsafeSeededRng } from '../../rng.js';
import { clipVector } from '../../encoding/clip.js';
import { accountRounds, calibrateNoiseMultiplier, noiseVariance, planDp, type DpMechanism, type DpPlan, type Mechanism } from '../../dp/index.js';
import { contributeDp, dpFedAvg, flattenWeights, weightLayout, type WeightLayout } from '../../tfjs/index.js';
import { SeededRandom } from './data.js';
import {
  buildModel,
  defaultsFor,
  dropCount,
  dropSchedule,
  evaluate,
  expectedIncluded,
  loadTask,
  majorityBaseline,
  pct,
  setFlat,
  toTensors,
  type DataSummary,
  type FlOptions,
  type FlTask,
  type Metrics,
  type TestSet,
} from './run.js';

export interface DpFlOptions extends FlOptions {
  /** The noise multipliers z (> 0) to train with: one distributed-DP run and one central-DP run each. */
  noiseMultipliers: readonly number[];
  /** L2 clip c of each client's update (local − global weights). */
  l2Clip: number;
  /** Bits of the ring the protocol sums in (the plan's `bits`). */
  bits: number;
  /** δ of the reported (ε, δ). */
  delta: number;
  mechanism: DpMechanism;
}

/**
 * The DP defaults, on top of the task's (defaultsFor): 50 clients, because with every client in
 * every round (q = 1) the noise of the mean update is z·c/m per coordinate — with the base
 * example's 24 the noise drowns the update already at z = 1; c = 1, about the median norm of the
 * synthetic task's updates (1.0–1.4 after two local epochs: DP-FedAvg clips near the median); a
 * 16-bit ring; δ = 1e-5 (below 1/population for any population up to 10^5).
 */
export function dpDefaultsFor(task: FlTask = 'synthetic'): DpFlOptions {
  return {
    ...defaultsFor(task),
    clients: 50,
    noiseMultipliers: [0.5, 1, 2, 4],
    l2Clip: task === 'spam' ? 2 : 1,
    bits: 16,
    delta: 1e-5,
    mechanism: 'skellam',
  };
}

export interface DpRoundLog {
  round: number;
  metrics: Metrics;
  /** ε of the run after this round at `delta` (plain: Infinity). */
  epsilon: number;
  /** Clients whose update is in this round's sum. */
  included: number;
  /** Of them, clients whose update the L2 clip scaled down. */
  clipped: number;
  /** Median ‖update‖₂ of the included clients before clipping. */
  medianNorm: number;
  /** ‖mean update used − exact mean of the clipped updates‖² (DP runs). */
  squaredError?: number;
  /** Its expectation: distributed, the plan's noise + rounding bound for this count; central, d·σ²/m². */
  expectedSquaredError?: number;
}

export interface DpRun {
  kind: 'distributed' | 'central' | 'plain';
  label: string;
  /** The noise multiplier: distributed, the plan's z; central, the calibrated z_c; plain, 0. */
  noiseMultiplier: number;
  /** Distributed: the plan (scale, sensitivities, noise, wrap bound). */
  plan?: DpPlan;
  /** Central: the ε it was calibrated to (the distributed run's final ε for the same z). */
  targetEpsilon?: number;
  /** Central: σ = z_c·c of the Gaussian added to each coordinate of the sum. */
  noiseStd?: number;
  /** Central: the standard deviation of all the noise actually drawn, and how many draws. */
  measuredNoiseStd?: number;
  noiseDraws?: number;
  rounds: DpRoundLog[];
  final: Metrics;
  /** ε after the last round (plain: Infinity). */
  epsilon: number;
  seconds: number;
}

export interface DpFlResult {
  options: Omit<DpFlOptions, 'log' | 'rng' | 'corpus'>;
  data: DataSummary;
  parameters: number;
  /** The population = the cohort of every round. */
  population: number;
  /** Poisson sampling rate of the cohort from the population: 1 (everyone, every round). */
  samplingRate: number;
  /** The protocol's threshold and the plans' minClients: the fewest clients a released sum can hold. */
  threshold: number;
  delta: number;
  initial: Metrics;
  distributed: DpRun[];
  central: DpRun[];
  plain: DpRun;
}

/** What the accountant needs of a plan: the released sum's noise and one client's sensitivities, in grid units. */
function planMechanism(plan: DpPlan): Mechanism {
  if (plan.mechanism === 'skellam')
    return { kind: 'skellam', l2Sensitivity: plan.l2Sensitivity, l1Sensitivity: plan.l1Sensitivity, variance: plan.releasedVariance };
  return {
    kind: 'dgauss',
    dimension: plan.paddedDimension,
    l2Sensitivity: plan.l2Sensitivity,
    l1Sensitivity: plan.l1Sensitivity,
    localStddev: Math.sqrt(noiseVariance(plan.noise)),
    clients: plan.minClients,
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

interface RoundSchedule {
  dropped: Partial<Record<Stage, number[]>>;
  included: number[];
  orders: number[][];
  /** The round's public rotation seed. */
  seed: Uint8Array;
}

/** What a run's server does with the round's included clients: the mean update it applies. */
interface Variant {
  kind: DpRun['kind'];
  label: string;
  /** Client i has trained (the model holds its local weights); returns what it sends (distributed: its ring vector). */
  client?: (i: number, model: tf.LayersModel, global: Float32Array, round: RoundSchedule) => Promise<Uint32Array>;
  /** The mean update from the round's clipped (and raw) updates, or from the clients' vectors. */
  server: (args: {
    round: number;
    /** Holds the global weights. */
    model: tf.LayersModel;
    schedule: RoundSchedule;
    global: Float32Array;
    raw: Map<number, Float64Array>;
    clipped: Map<number, Float64Array>;
    vectors: Map<number, Uint32Array>;
  }) => Promise<{ update: Float64Array; expectedSquaredError?: number }>;
  epsilonAfter: (rounds: number) => number;
}

/**
 * The DP comparison: for each z a distributed-DP run and a central-DP run at the same ε, and plain
 * FedAvg, on the same data and dropout schedule. Logs one line per round and run.
 */
export async function runDpFederated(partial: Partial<DpFlOptions> = {}): Promise<DpFlResult> {
  const o: DpFlOptions = { ...dpDefaultsFor(partial.task), ...partial };
  const log = o.log ?? (() => {});
  const rng = o.rng ?? cryptoRng;
  if (!Array.isArray(o.noiseMultipliers) || o.noiseMultipliers.length === 0 || o.noiseMultipliers.some((z) => !(z > 0 && Number.isFinite(z))))
    throw new RangeError(`noiseMultipliers must be a non-empty list of finite numbers > 0, got ${JSON.stringify(o.noiseMultipliers)}`);
  if (!(o.l2Clip > 0 && Number.isFinite(o.l2Clip))) throw new RangeError(`l2Clip must be a finite number > 0, got ${o.l2Clip}`);
  if (!(o.delta > 0 && o.delta < 1)) throw new RangeError(`delta must be in (0, 1), got ${o.delta}`);
  if (!Number.isInteger(o.rounds) || o.rounds < 1) throw new RangeError(`rounds must be an integer ≥ 1, got ${o.rounds}`);
  if (!Number.isInteger(o.clients) || o.clients < 3) throw new RangeError(`clients must be an integer ≥ 3, got ${o.clients}`);
  const n = o.clients;
  // k clients drop in every round, so n − k answer every stage; a client's own mask is rebuilt from
  // the shares the *other* survivors hold, n − k − 1 of them: the highest threshold every round meets.
  const threshold = n - dropCount(n, o.dropoutRate) - 1;

  const data = await loadTask(o);
  const { features, classes } = data.summary;
  const summary: DataSummary = { ...data.summary, ...majorityBaseline(data.clients, data.test) };
  const test: TestSet = { ...toTensors(data.test), labels: data.test.y, classes };
  const sizes = data.clients.map((c) => c.y.length);

  // One schedule for every run: who drops (and when), the local data order, the public rotation seed.
  const rnd = new SeededRandom(o.seed + 2);
  const seeds = unsafeSeededRng(o.seed + 3);
  const schedule: RoundSchedule[] = [];
  for (let r = 1; r <= o.rounds; r++) {
    const dropped = dropSchedule(rnd, n, o.dropoutRate);
    schedule.push({
      dropped,
      included: expectedIncluded(n, dropped),
      orders: sizes.map((k) => rnd.shuffle(Array.from({ length: k }, (_, i) => i))),
      seed: seeds(16),
    });
  }

  const run = async (v: Variant): Promise<DpRun & { initial: Metrics }> => {
    const t0 = performance.now();
    const model = buildModel(features, o.hidden, classes, o.seed, o.learningRate);
    try {
      const layout: WeightLayout = weightLayout(model);
      let global = (await flattenWeights(model, { layout })).values;
      const initial = await evaluate(model, test);
      const rounds: DpRoundLog[] = [];
      for (let r = 1; r <= o.rounds; r++) {
        const s = schedule[r - 1]!;
        const raw = new Map<number, Float64Array>();
        const clipped = new Map<number, Float64Array>();
        const vectors = new Map<number, Uint32Array>();
        let clippedCount = 0;
        for (const i of s.included) {
          setFlat(model, global, layout);
          const { xs, ys } = toTensors(data.clients[i]!, s.orders[i]);
          await model.fit(xs, ys, { epochs: o.localEpochs, batchSize: o.batchSize, shuffle: false, verbose: 0 });
          tf.dispose([xs, ys]);
          const local = (await flattenWeights(model, { layout })).values;
          const u = new Float64Array(layout.size);
          for (let j = 0; j < u.length; j++) u[j] = local[j]! - global[j]!;
          raw.set(i, u);
          const c = clipVector(u, o.l2Clip, 'l2');
          if (c.report.scale < 1) clippedCount++;
          clipped.set(i, c.values);
          if (v.client) vectors.set(i, await v.client(i, model, global, s));
        }
        setFlat(model, global, layout);
        const { update, expectedSquaredError } = await v.server({ round: r, model, schedule: s, global, raw, clipped, vectors });
        const m = s.included.length;
        let squaredError: number | undefined;
        if (v.kind !== 'plain') {
          squaredError = 0;
          for (let j = 0; j < layout.size; j++) {
            let exact = 0;
            for (const i of s.included) exact += clipped.get(i)![j]!;
            squaredError += (update[j]! - exact / m) ** 2;
          }
        }
        const next = new Float32Array(layout.size);
        for (let j = 0; j < next.length; j++) next[j] = global[j]! + update[j]!;
        global = next;
        setFlat(model, global, layout);
        const metrics = await evaluate(model, test);
        const epsilon = v.epsilonAfter(r);
        const entry: DpRoundLog = {
          round: r,
          metrics,
          epsilon,
          included: m,
          clipped: clippedCount,
          medianNorm: median([...raw.values()].map((u) => Math.hypot(...u))),
          ...(squaredError !== undefined ? { squaredError } : {}),
          ...(expectedSquaredError !== undefined ? { expectedSquaredError } : {}),
        };
        rounds.push(entry);
        log(
          `${v.label.padEnd(24)} round ${String(r).padStart(2)}  ${pct(metrics)}  ε ${Number.isFinite(epsilon) ? epsilon.toPrecision(4) : '∞'}  ` +
            `${m}/${n} in sum, clipped ${clippedCount}, median ‖update‖ ${entry.medianNorm.toFixed(3)}` +
            (squaredError !== undefined ? `, ‖error‖² ${squaredError.toExponential(2)} (expected ${expectedSquaredError?.toExponential(2) ?? '?'})` : ''),
        );
      }
      return {
        kind: v.kind,
        label: v.label,
        noiseMultiplier: 0,
        initial,
        rounds,
        final: rounds.at(-1)!.metrics,
        epsilon: rounds.at(-1)!.epsilon,
        seconds: (performance.now() - t0) / 1000,
      };
    } finally {
      model.dispose();
    }
  };

  try {
    // Distributed DP, one run per z.
    const distributed: DpRun[] = [];
    let initial: Metrics | undefined;
    let parameters = 0;
    for (const z of o.noiseMultipliers) {
      const probe = buildModel(features, o.hidden, classes, o.seed, o.learningRate);
      parameters = weightLayout(probe).size;
      probe.dispose();
      const plan = planDp({
        clients: n,
        minClients: threshold,
        dimension: parameters,
        clip: o.l2Clip,
        noiseMultiplier: z,
        bits: o.bits,
        mechanism: o.mechanism,
      });
      const mechanism = planMechanism(plan);
      log(
        `distributed DP z = ${z}: ${parameters} parameters (padded ${plan.paddedDimension}), ring 2^${plan.bits}, scale ${plan.scale.toPrecision(4)}, ` +
          `Δ₂ ${plan.l2Sensitivity.toPrecision(5)} (c·s ${(plan.clip * plan.scale).toPrecision(5)}), ${plan.mechanism} noise ${noiseVariance(plan.noise).toPrecision(4)} per client, ` +
          `released ≥ ${plan.releasedVariance.toPrecision(4)} (effective z ${plan.effectiveNoiseMultiplier.toFixed(4)}), wrap ≤ ${plan.wrapProbability.toExponential(1)}`,
      );
      const r = await run({
        kind: 'distributed',
        label: `distributed z=${z}`,
        // The model holds the client's local weights; base = the global weights it started from.
        client: async (_i, model, global, s) => (await contributeDp({ source: model, base: global, plan, seed: s.seed, rng })).vector,
        server: async ({ model, schedule: s, vectors }) => {
          const zero = new Uint32Array(plan.paddedDimension); // clients silent before MaskedInput never send theirs
          const inputs = Array.from({ length: n }, (_, i) => vectors.get(i) ?? zero);
          const result = await simulateRound({ inputs, bits: plan.bits, dropouts: s.dropped, threshold, rng });
          if (result.included.join() !== s.included.join())
            throw new Error(`the protocol included [${result.included}] but the schedule predicts [${s.included}]`);
          const agg = await dpFedAvg({ result, plan, seed: s.seed, template: model });
          tf.dispose(agg.weights);
          return { update: agg.update, expectedSquaredError: agg.expectedSquaredError.total };
        },
        epsilonAfter: (rounds) => accountRounds({ mechanism, samplingRate: 1, rounds, delta: o.delta }).epsilon,
      });
      initial ??= r.initial;
      const { initial: _i, ...rest } = r;
      distributed.push({ ...rest, noiseMultiplier: z, plan });
    }

    // Central DP at each distributed run's ε: Gaussian noise on the clipped sum, in floating point.
    const central: DpRun[] = [];
    for (const [k, d] of distributed.entries()) {
      const zc = calibrateNoiseMultiplier({
        epsilon: d.epsilon,
        delta: o.delta,
        samplingRate: 1,
        rounds: o.rounds,
        mechanismFor: (z) => ({ kind: 'gaussian', noiseMultiplier: z }),
        lower: 1e-3,
      });
      const sigma = zc * o.l2Clip;
      const gauss = new SeededRandom(o.seed + 1000 + k);
      let ss = 0;
      let draws = 0;
      log(
        `central DP at ε ${d.epsilon.toPrecision(4)} (of distributed z = ${d.noiseMultiplier}): Gaussian z_c = ${zc.toPrecision(5)}, σ = z_c·c = ${sigma.toPrecision(5)}`,
      );
      const r = await run({
        kind: 'central',
        label: `central ε=${d.epsilon.toPrecision(3)}`,
        server: async ({ schedule: s, clipped }) => {
          const m = s.included.length;
          const update = new Float64Array(parameters);
          for (let j = 0; j < parameters; j++) {
            let sum = 0;
            for (const i of s.included) sum += clipped.get(i)![j]!;
            const e = sigma * gauss.normal();
            ss += e * e;
            draws++;
            update[j] = (sum + e) / m;
          }
          return { update, expectedSquaredError: (parameters * sigma * sigma) / (m * m) };
        },
        epsilonAfter: (rounds) => accountRounds({ mechanism: { kind: 'gaussian', noiseMultiplier: zc }, samplingRate: 1, rounds, delta: o.delta }).epsilon,
      });
      const { initial: _i, ...rest } = r;
      central.push({ ...rest, noiseMultiplier: zc, targetEpsilon: d.epsilon, noiseStd: sigma, measuredNoiseStd: Math.sqrt(ss / draws), noiseDraws: draws });
    }

    // Plain FedAvg: the unclipped mean update.
    const p = await run({
      kind: 'plain',
      label: 'plain FedAvg',
      server: async ({ schedule: s, raw }) => {
        const update = new Float64Array(parameters);
        for (const i of s.included) {
          const u = raw.get(i)!;
          for (let j = 0; j < parameters; j++) update[j] = update[j]! + u[j]!;
        }
        for (let j = 0; j < parameters; j++) update[j] = update[j]! / s.included.length;
        return { update };
      },
      epsilonAfter: () => Number.POSITIVE_INFINITY,
    });
    const { initial: _i, ...plain } = p;
    const { log: _l, rng: _r, corpus: _c, ...rest } = o;
    return {
      options: rest,
      data: summary,
      parameters,
      population: n,
      samplingRate: 1,
      threshold,
      delta: o.delta,
      initial: initial ?? p.initial,
      distributed,
      central,
      plain,
    };
  } finally {
    tf.dispose([test.xs, test.ys]);
  }
}

/** The result as a table: for each z, ε after the last round and the final accuracy of both DP runs; then plain FedAvg. */
export function dpTable(result: DpFlResult): string[] {
  const a = (m: Metrics) => `${(100 * m.accuracy).toFixed(2)}%`;
  const rows = result.distributed.map((d, k) => {
    const c = result.central[k]!;
    return (
      `  ${String(d.noiseMultiplier).padStart(5)}  ${d.epsilon.toPrecision(4).padStart(9)}  ${a(d.final).padStart(16)}  ` +
      `${a(c.final).padStart(12)} (z_c ${c.noiseMultiplier.toPrecision(4)}, ε ${c.epsilon.toPrecision(4)})`
    );
  });
  const mech = result.options.mechanism === 'skellam' ? 'Skellam' : 'discrete Gaussian';
  return [
    `final test accuracy vs ε after ${result.options.rounds} rounds (δ = ${result.delta}, sampling rate ${result.samplingRate}: all ${result.population} clients every round, ` +
      `threshold ${result.threshold}; ${result.options.dropoutRate * 100}% dropouts per round)`,
    `      z          ε  distributed DP*  central DP**`,
    ...rows,
    `  plain FedAvg (no clipping, no noise): ${a(result.plain.final)}; initial ${a(result.initial)}; chance ${(100 / result.data.classes).toFixed(1)}%, majority class ${a(result.data.baseline)}`,
    `  * ${mech} noise added by the clients inside the masked vectors, summed by SecAgg (ring 2^${result.options.bits}), L2 clip ${result.options.l2Clip}`,
    `  ** Gaussian noise added by the server to the clipped float64 sum, z_c calibrated to the same ε after ${result.options.rounds} rounds`,
  ];
}
