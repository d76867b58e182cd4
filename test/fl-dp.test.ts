/**
 * DP-FedAvg: secagg/tfjs's contributeDp/dpFedAvg round trip over the ring (exact within the
 * planner's deterministic bound without noise; the planned noise variance with it), and a small
 * run of the example's DP comparison checked against the accountant called here.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { contributeDp, dpFedAvg, flattenWeights } from '../src/tfjs/index.js';
import { accountRounds, calibrateNoiseMultiplier, noiseVariance, planDp } from '../src/dp/index.js';
import { isSecAggError } from '../src/errors.js';
import { unsafeSeededRng } from '../src/rng.js';
import { runDpFederated, dpTable } from '../src/examples/fl/dp.js';
import { renderDpSvg } from '../src/examples/fl/plotDp.js';

before(async () => {
  tf.env().set('PROD', true);
  await tf.setBackend('cpu');
});

/** Σ of ring vectors mod 2^bits, computed here (not by the library). */
function ringSum(vectors: readonly Uint32Array[], bits: number): Uint32Array {
  const R = 2 ** bits;
  const out = new Uint32Array(vectors[0]!.length);
  for (const v of vectors) for (let i = 0; i < v.length; i++) out[i] = (out[i]! + v[i]!) % R;
  return out;
}

/** u · min(1, c/‖u‖₂), in float64, written out here. */
function l2Clip(u: ArrayLike<number>, c: number): Float64Array {
  let sq = 0;
  for (let i = 0; i < u.length; i++) sq += u[i]! ** 2;
  const f = Math.min(1, c / Math.sqrt(sq));
  return Float64Array.from(u, (x) => x * f);
}

/** Gaussian draws from a seeded stream (test data only). */
function normals(seed: number, n: number): Float64Array {
  const rng = unsafeSeededRng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const b = rng(8);
    const u = (b[0]! * 2 ** 16 + b[1]! * 2 ** 8 + b[2]! + 1) / (2 ** 24 + 1);
    const v = (b[3]! * 2 ** 16 + b[4]! * 2 ** 8 + b[5]!) / 2 ** 24;
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

const SHAPES: number[][] = [[6, 5], [5]]; // a dense layer's kernel and bias: d = 35, padded D = 64
const D_MODEL = 35;
const seed = Uint8Array.from({ length: 16 }, (_, i) => 3 * i + 1);

function tensors(values: Float64Array): tf.Tensor[] {
  const k = tf.tensor(Float32Array.from(values.subarray(0, 30)), SHAPES[0]);
  const b = tf.tensor(Float32Array.from(values.subarray(30)), SHAPES[1]);
  return [k, b];
}

test('contributeDp → ring sum → dpFedAvg, noise off: the mean of the clipped updates within the deterministic bound √D/s, with a client missing', async () => {
  const clip = 1;
  const plan = planDp({ clients: 6, minClients: 4, dimension: D_MODEL, clip, noiseMultiplier: 0, bits: 16 });
  assert.equal(plan.noise.mechanism, 'none');
  const global = normals(1, D_MODEL);
  const globalT = tensors(global);
  // Updates of different norms: some far above the clip (scaled down), some below (unchanged).
  const updates = [0.2, 3, 0.7, 5, 1.5].map((scale, k) => normals(10 + k, D_MODEL).map((x) => x * (scale / Math.sqrt(D_MODEL))));
  const vectors: Uint32Array[] = [];
  const f32 = (x: number) => Math.fround(x);
  const exactUpdates: Float64Array[] = [];
  for (const [k, u] of updates.entries()) {
    const localT = tensors(global.map((g, i) => g + u[i]!));
    const c = await contributeDp({ source: localT, base: globalT, plan, seed, rng: unsafeSeededRng(100 + k) });
    assert.equal(c.vector.length, plan.paddedDimension);
    assert.ok(c.vector.every((x) => x < 2 ** plan.bits));
    assert.equal(c.layout?.size, D_MODEL);
    vectors.push(c.vector);
    // What the client actually sent: float32 weights minus float32 weights, then clipped.
    exactUpdates.push(
      l2Clip(
        Float64Array.from(u, (x, i) => f32(global[i]! + x) - f32(global[i]!)),
        clip,
      ),
    );
    tf.dispose(localT);
  }
  const sum = ringSum(vectors, plan.bits);
  const agg = await dpFedAvg({ result: { sum, included: [0, 1, 2, 4, 5] }, plan, seed, template: globalT });
  assert.equal(agg.clients, 5);
  const expected = new Float64Array(D_MODEL);
  for (const u of exactUpdates) for (let i = 0; i < D_MODEL; i++) expected[i] = expected[i]! + u[i]! / 5;
  let err = 0;
  let norm = 0;
  for (let i = 0; i < D_MODEL; i++) {
    err += (agg.update[i]! - expected[i]!) ** 2;
    norm += expected[i]! ** 2;
  }
  const bound = Math.sqrt(plan.paddedDimension) / plan.scale; // each client's rounding moves each grid coordinate by < 1
  assert.ok(Math.sqrt(err) < bound, `‖error‖ ${Math.sqrt(err)} vs bound ${bound}`);
  assert.ok(Math.sqrt(norm) > 100 * bound, 'the bound is far below the signal, so the check is not vacuous');
  // The new weights are the global weights plus the mean update (float32).
  const flat = (await flattenWeights(agg.weights)).values;
  for (let i = 0; i < D_MODEL; i++) assert.equal(flat[i], f32(f32(global[i]!) + agg.update[i]!));
  tf.dispose([...agg.weights, ...globalT]);
});

test('contributeDp → ring sum → dpFedAvg, noise on: the decoded error has the planned variance (400 rounds, |z| < 5)', async () => {
  // A released sum of m = 5 of n = 6 clients, calibrated to minClients = 4: noise variance 5·v per
  // coordinate in grid units, i.e. d·5v/(5s)² in ‖error‖² of the mean, plus at most d/(4·5·s²) from rounding.
  const clip = 1;
  const plan = planDp({ clients: 6, minClients: 4, dimension: D_MODEL, clip, noiseMultiplier: 1, bits: 20 });
  const m = 5;
  const v = noiseVariance(plan.noise);
  assert.ok(Math.abs(v - (1 * clip * plan.scale) ** 2 / 4) <= 1e-9 * v, 'each client adds (z·c·s)²/minClients');
  const planned = (D_MODEL * m * v) / (m * plan.scale) ** 2;
  const roundingMax = D_MODEL / (4 * m * plan.scale ** 2);
  const updates = Array.from({ length: m }, (_, k) => normals(20 + k, D_MODEL).map((x) => x * (2 / Math.sqrt(D_MODEL))));
  const exact = new Float64Array(D_MODEL);
  for (const u of updates) {
    const c = l2Clip(u, clip);
    for (let i = 0; i < D_MODEL; i++) exact[i] = exact[i]! + c[i]! / m;
  }
  const template = [tf.zeros(SHAPES[0]!), tf.zeros(SHAPES[1]!)];
  const T = 400;
  const totals: number[] = [];
  for (let t = 0; t < T; t++) {
    const vectors = await Promise.all(updates.map((u, k) => contributeDp({ source: u, plan, seed, rng: unsafeSeededRng(1000 * t + k) }).then((c) => c.vector)));
    const agg = await dpFedAvg({ result: { sum: ringSum(vectors, plan.bits), included: [0, 1, 2, 3, 4] }, plan, seed, template });
    tf.dispose(agg.weights);
    let sq = 0;
    for (let i = 0; i < D_MODEL; i++) sq += (agg.update[i]! - exact[i]!) ** 2;
    totals.push(sq);
    if (t === 0) assert.ok(Math.abs(agg.expectedSquaredError.noise - planned) <= 1e-9 * planned, 'dpFedAvg reports the planned noise');
  }
  tf.dispose(template);
  const mean = totals.reduce((a, x) => a + x, 0) / T;
  const sd = Math.sqrt(totals.reduce((a, x) => a + (x - mean) ** 2, 0) / (T - 1));
  const se = sd / Math.sqrt(T);
  // Two-sided 5-standard-error test on the mean of 400 i.i.d. totals (CLT): false alarm ≈ 5.7e−7.
  assert.ok(
    mean > planned - 5 * se && mean < planned + roundingMax + 5 * se,
    `mean ‖error‖² ${mean} vs planned ${planned} (+ rounding ≤ ${roundingMax}), se ${se}`,
  );
  // The test can tell a wrong calibration apart: n instead of minClients would give 2/3 of the variance.
  assert.ok(5 * se < planned / 6, `se ${se} is small enough to detect a 1/3 error in the variance`);
});

test('contributeDp and dpFedAvg name the bad parameter', async () => {
  const plan = planDp({ clients: 6, minClients: 4, dimension: D_MODEL, clip: 1, noiseMultiplier: 1, bits: 20 });
  await assert.rejects(
    contributeDp({ source: new Float64Array(D_MODEL + 1), plan, seed }),
    (e: unknown) => isSecAggError(e) && e.code === 'ERR_SIZE' && /source/.test(e.message),
  );
  await assert.rejects(
    contributeDp({ source: new Float64Array(D_MODEL), plan: {} as never, seed }),
    (e: unknown) => e instanceof TypeError && /plan/.test(e.message),
  );
  const template = [tf.zeros(SHAPES[0]!), tf.zeros(SHAPES[1]!)];
  await assert.rejects(
    dpFedAvg({ result: { sum: new Uint32Array(plan.paddedDimension), included: [0, 1, 2] }, plan, seed, template }),
    (e: unknown) => isSecAggError(e) && e.code === 'ERR_INVALID_PARAMETERS' && /3 clients/.test(e.message),
    'a sum of fewer than minClients carries less noise than planned: refused',
  );
  await assert.rejects(
    dpFedAvg({ result: { sum: new Uint32Array(plan.paddedDimension), included: [0, 1, 2, 3] }, plan, seed, template: [tf.zeros([3])] }),
    (e: unknown) => isSecAggError(e) && e.code === 'ERR_SIZE' && /template/.test(e.message),
  );
  tf.dispose(template);
});

test('small DP example run: ε per round from the accountant, falling with z; central DP at the calibrated σ; small noise learns', async () => {
  const lines: string[] = [];
  const zs = [0.3, 1.5];
  const clients = 16;
  const r = await runDpFederated({
    rounds: 3,
    clients,
    seed: 5,
    dropoutRate: 0.2,
    minSize: 40,
    maxSize: 80,
    testPerClass: 60,
    hidden: 16,
    noiseMultipliers: zs,
    rng: unsafeSeededRng(9),
    log: (l) => lines.push(l),
  });
  const delta = 1e-5;
  assert.equal(r.delta, delta);
  assert.equal(r.samplingRate, 1);
  assert.equal(r.distributed.length, 2);
  assert.equal(r.central.length, 2);
  for (const [k, d] of r.distributed.entries()) {
    // The plan the example used is planDp of its stated parameters, and no released sum had fewer clients than it is calibrated to.
    const plan = planDp({ clients, minClients: r.threshold, dimension: r.parameters, clip: r.options.l2Clip, noiseMultiplier: zs[k]!, bits: r.options.bits });
    assert.deepEqual(d.plan, plan);
    assert.ok(d.rounds.every((x) => x.included >= plan.minClients));
    assert.ok(
      d.rounds.some((x) => x.included < clients),
      'clients dropped out',
    );
    assert.equal(d.rounds.length, 3);
    for (const x of d.rounds) {
      const { epsilon } = accountRounds({
        mechanism: { kind: 'skellam', l2Sensitivity: plan.l2Sensitivity, l1Sensitivity: plan.l1Sensitivity, variance: plan.releasedVariance },
        samplingRate: 1,
        rounds: x.round,
        delta,
      });
      assert.equal(x.epsilon, epsilon, `z ${zs[k]} round ${x.round}`);
    }
    for (let i = 1; i < d.rounds.length; i++) assert.ok(d.rounds[i]!.epsilon > d.rounds[i - 1]!.epsilon, 'ε grows with the rounds');
  }
  for (let i = 0; i < 3; i++) assert.ok(r.distributed[1]!.rounds[i]!.epsilon < r.distributed[0]!.rounds[i]!.epsilon, 'more noise, smaller ε');

  for (const [k, c] of r.central.entries()) {
    const target = r.distributed[k]!.epsilon;
    const zc = calibrateNoiseMultiplier({
      epsilon: target,
      delta,
      samplingRate: 1,
      rounds: 3,
      mechanismFor: (z) => ({ kind: 'gaussian', noiseMultiplier: z }),
      lower: 1e-3,
    });
    assert.equal(c.targetEpsilon, target);
    assert.equal(c.noiseStd, zc * r.options.l2Clip, 'σ = calibrated z_c × the L2 clip');
    assert.ok(c.epsilon <= target && c.epsilon > target * 0.999, `central ε ${c.epsilon} vs target ${target}`);
    // The noise actually drawn: N draws of N(0, σ²); the sample std's relative standard error is ≈ 1/√(2N).
    const rel = 1 / Math.sqrt(2 * c.noiseDraws!);
    assert.equal(c.noiseDraws, 3 * r.parameters);
    assert.ok(
      Math.abs(c.measuredNoiseStd! / c.noiseStd! - 1) < 5 * rel,
      `measured σ ${c.measuredNoiseStd} vs ${c.noiseStd} (5 standard errors: false alarm ≈ 5.7e−7)`,
    );
  }

  // Small noise learns: above chance (1/8) by more than 5 binomial standard deviations of the test set.
  const n = r.data.testExamples;
  const chance = 1 / r.data.classes;
  const margin = 5 * Math.sqrt((chance * (1 - chance)) / n);
  assert.ok(r.distributed[0]!.final.accuracy > chance + margin, `z = ${zs[0]}: accuracy ${r.distributed[0]!.final.accuracy} vs chance ${chance} + ${margin}`);
  assert.ok(r.plain.final.accuracy > chance + margin);
  assert.equal(r.plain.epsilon, Number.POSITIVE_INFINITY);

  // The printed table and the plot carry every run.
  const table = dpTable(r).join('\n');
  for (const d of r.distributed) assert.ok(table.includes(d.epsilon.toPrecision(4)));
  const svg = renderDpSvg(r);
  assert.equal((svg.match(/<circle /g) ?? []).length, zs.length, 'one point per z');
  assert.ok(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>'));
  assert.equal(lines.filter((l) => /round +\d/.test(l)).length, 3 * (2 * zs.length + 1), 'one line per round and run');
});
