/**
 * tfjs/: exact weight round trips (bit for bit) through tf.io.encodeWeights/decodeWeights, typed
 * refusals of wrong shapes and dtypes, contribute → simulateRound → secureFedAvg against a
 * plaintext weighted average of the tensors, the `weights: 'trainable' | 'all'` choice on a
 * BatchNormalization model (moving statistics averaged, or left local with one warning), and no
 * synchronous tensor reads in src/tfjs. Pure-JS CPU backend only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import {
  applyWeights,
  checkLayout,
  contribute,
  flattenWeights,
  secureFedAvg,
  unflattenWeights,
  weightLayout,
  type Contribution,
  type WeightSelection,
} from '../src/tfjs/index.js';
import { planEncoding } from '../src/encoding/index.js';
import { simulateRound } from '../src/sim/simulate.js';
import { isSecAggError, type SecAggErrorCode } from '../src/errors.js';
import { unsafeSeededRng } from '../src/rng.js';

before(async () => {
  tf.env().set('PROD', true);
  await tf.setBackend('cpu');
});

function model(seed: number): tf.Sequential {
  const init = (s: number) => tf.initializers.randomNormal({ mean: 0, stddev: 0.5, seed: s });
  const m = tf.sequential({
    layers: [
      tf.layers.conv2d({
        inputShape: [6, 6, 2],
        filters: 3,
        kernelSize: 3,
        activation: 'relu',
        kernelInitializer: init(seed),
        biasInitializer: init(seed + 1),
      }),
      tf.layers.batchNormalization(), // has non-trainable moving statistics: must be left alone
      tf.layers.flatten(),
      tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: init(seed + 2), biasInitializer: init(seed + 3) }),
    ],
  });
  return m;
}

function bitsOf(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function code(c: SecAggErrorCode) {
  return (e: unknown) => {
    assert.ok(isSecAggError(e, c), `expected ${c}, got ${String(e)}`);
    return true;
  };
}

/** A warn callback that swallows the one-time warning (tests never reach console.warn). */
const quiet = (): void => {};

async function valuesOf(ts: readonly tf.Tensor[]): Promise<Float32Array[]> {
  return Promise.all(ts.map(async (t) => new Float32Array(await t.data())));
}

test("layout: 'all' (the default) is model.getWeights() order, 'trainable' is getWeights(true)", () => {
  const m = model(1);
  const trainable = weightLayout(m, { weights: 'trainable', warn: quiet });
  assert.equal(trainable.weights, 'trainable');
  assert.deepEqual(
    trainable.specs.map((s) => [s.shape, s.size, s.offset]),
    [
      [[3, 3, 2, 3], 54, 0],
      [[3], 3, 54],
      [[3], 3, 57], // batchnorm gamma
      [[3], 3, 60], // batchnorm beta
      [[48, 4], 192, 63],
      [[4], 4, 255],
    ],
  );
  assert.equal(trainable.size, 259);
  const all = weightLayout(m);
  assert.equal(all.weights, 'all');
  assert.deepEqual(
    all.specs.slice(6).map((s) => [s.name.replace(/.*\//, ''), s.shape, s.offset]),
    [
      ['moving_mean', [3], 259],
      ['moving_variance', [3], 262],
    ],
  );
  assert.equal(all.size, 265);
  assert.deepEqual(
    all.specs.map((s) => s.name),
    m.weights.map((v) => v.name),
  );
  assert.throws(() => weightLayout(m, { weights: 'some' as never }), TypeError);
  m.dispose();
});

test("a model's weights round-trip exactly (bit for bit) through encodeWeights/decodeWeights", async () => {
  const a = model(1);
  const b = model(2);
  // Flattening is the plain concatenation of getWeights()' values, read independently here.
  const { values, layout } = await flattenWeights(a);
  const independent = (await valuesOf(a.getWeights())).flatMap((v) => [...v]);
  assert.deepEqual(bitsOf(values), bitsOf(Float32Array.from(independent)));
  // Decoding gives back the original tensors, shapes and bits.
  const decoded = unflattenWeights(values, layout);
  assert.deepEqual(
    decoded.map((t) => t.shape),
    a.getWeights().map((t) => t.shape),
  );
  const [got, want] = [await valuesOf(decoded), await valuesOf(a.getWeights())];
  got.forEach((g, i) => assert.deepEqual(bitsOf(g), bitsOf(want[i]!), `tensor ${i}`));
  tf.dispose(decoded);
  // Include awkward float32 values: −0, subnormals, the largest float32.
  values[0] = -0;
  values[1] = 1.4e-45;
  values[2] = 3.4028234663852886e38;
  values[3] = Math.fround(Math.PI);
  const ts = unflattenWeights(values, layout);
  applyWeights(b, ts);
  tf.dispose(ts);
  const back = (await flattenWeights(b, { layout })).values;
  assert.deepEqual(bitsOf(back), bitsOf(values));
  // The model actually uses them: identical predictions to a model given the same weights.
  const c = model(3);
  const ts2 = unflattenWeights(
    values.map((v, i) => (i < 3 ? 0.01 : v)),
    layout,
  );
  applyWeights(c, ts2);
  applyWeights(b, ts2);
  tf.dispose(ts2);
  const x = tf.randomNormal([2, 6, 6, 2], 0, 1, 'float32', 9);
  const pb = await (b.predict(x) as tf.Tensor).data();
  const pc = await (c.predict(x) as tf.Tensor).data();
  assert.deepEqual(pb, pc);
  // With 'trainable', applyWeights leaves the non-trainable weights (moving statistics) alone.
  const nonTrainable = async () => (await valuesOf(b.nonTrainableWeights.map((w) => w.read()))).map((v) => [...v]);
  const statsBefore = await nonTrainable();
  assert.ok(statsBefore.length > 0, 'the model has non-trainable weights');
  const tl = weightLayout(c, { weights: 'trainable', warn: quiet });
  const ts3 = unflattenWeights(new Float32Array(tl.size).fill(0.25), tl);
  applyWeights(b, ts3, { weights: 'trainable', warn: quiet });
  tf.dispose(ts3);
  assert.deepEqual(await nonTrainable(), statsBefore);
  assert.ok((await flattenWeights(b, { layout: tl, warn: quiet })).values.every((v) => v === 0.25));
  await assert.rejects(flattenWeights(b, { layout: tl, weights: 'all' }), TypeError);
  tf.dispose([a, b, c].flatMap((m) => m.getWeights()));
});

test('a tensor list round-trips exactly, and mismatches are typed errors', async () => {
  const list = [
    tf.tensor([
      [1.5, -2],
      [3, 4],
    ]),
    tf.tensor([0.1]),
    tf.tensor([[[7]]]),
  ];
  const { values, layout } = await flattenWeights(list);
  assert.deepEqual([...values], [1.5, -2, 3, 4, Math.fround(0.1), 7]);
  const back = unflattenWeights(values, layout);
  assert.deepEqual(
    back.map((t) => t.shape),
    [[2, 2], [1], [1, 1, 1]],
  );
  assert.deepEqual(
    back.map((t) => t.dtype),
    ['float32', 'float32', 'float32'],
  );
  assert.deepEqual(bitsOf((await flattenWeights(back, { layout })).values), bitsOf(values));
  // Wrong vector length.
  assert.throws(() => unflattenWeights(values.subarray(1), layout), code('ERR_SIZE'));
  // Wrong shape, wrong count, wrong dtype.
  await assert.rejects(flattenWeights([tf.tensor([[1.5, -2, 3, 4]]), list[1]!, list[2]!], { layout }), code('ERR_SIZE'));
  assert.throws(() => checkLayout(list.slice(0, 2), layout), code('ERR_SIZE'));
  assert.throws(() => weightLayout([tf.tensor([1, 2], [2], 'int32')]), code('ERR_INVALID_PARAMETERS'));
  assert.throws(() => checkLayout([list[0]!, tf.tensor([1], [1], 'int32'), list[2]!], layout), code('ERR_INVALID_PARAMETERS'));
  // Applying a list of the wrong shapes to a model is refused before anything is written.
  const m = model(4);
  const before = (await flattenWeights(m)).values;
  assert.throws(() => applyWeights(m, back), code('ERR_SIZE'));
  assert.deepEqual(bitsOf((await flattenWeights(m)).values), bitsOf(before));
  await assert.rejects(flattenWeights({} as never), TypeError);
  tf.dispose([...list, ...back]);
});

test('contribute → simulateRound → secureFedAvg equals the plaintext weighted average within the bound (all weights)', async () => {
  const n = 6;
  const global = model(10);
  const locals = Array.from({ length: n }, (_, k) => model(20 + k));
  const layout = weightLayout(global);
  const weights = [3, 10, 1, 7, 25, 4];
  for (const delta of [false, true]) {
    const clip = delta ? 1 : 0.9;
    const plan = planEncoding({ clients: n, clip, precision: 1e-5, weighted: true, maxWeight: 25, dimension: layout.size });
    const rng = unsafeSeededRng(delta ? 31 : 30);
    const cs: Contribution[] = [];
    for (const [k, m] of locals.entries()) cs.push(await contribute(m, weights[k]!, plan, { rng, ...(delta ? { base: global } : {}) }));
    for (const c of cs) assert.equal(c.vector.length, layout.size + 1);
    assert.ok(
      cs.some((c) => c.report.clipped > 0),
      'some values are clipped, and reported',
    );
    const result = await simulateRound({ inputs: cs.map((c) => c.vector), bits: plan.bits, dropouts: { masked: [1] }, rng });
    assert.deepEqual(result.included, [0, 2, 3, 4, 5]);
    const out = await secureFedAvg(result, plan, global, { delta });
    // Plaintext reference: float64 weighted average of the clipped (updates of the) local weights.
    const g = (await flattenWeights(global)).values;
    const ls = await Promise.all(locals.map(async (m) => (await flattenWeights(m)).values));
    const W = result.included.reduce((a, k) => a + weights[k]!, 0);
    assert.equal(out.totalWeight, W);
    const expected = new Float64Array(layout.size);
    for (const k of result.included)
      for (let i = 0; i < layout.size; i++) {
        const x = delta ? ls[k]![i]! - g[i]! : ls[k]![i]!;
        expected[i] = expected[i]! + (weights[k]! * Math.max(-clip, Math.min(clip, x))) / W;
      }
    const got = (await flattenWeights(out.weights, { layout })).values;
    let err = 0;
    for (let i = 0; i < layout.size; i++) {
      const want = delta ? g[i]! + expected[i]! : expected[i]!;
      // The bound of the mean, plus float32 rounding of the result.
      err = Math.max(err, Math.abs(got[i]! - want) - 2 ** -23 * Math.abs(want));
    }
    assert.ok(err < out.errorBound, `delta=${delta}: error ${err} ≥ bound ${out.errorBound}`);
    assert.ok(out.errorBound <= 1e-5);
    assert.deepEqual(
      out.weights.map((t) => t.shape),
      layout.specs.map((s) => [...s.shape]),
    );
    // The weighted mean differs from the unweighted one (weights are honoured).
    let diff = 0;
    for (let i = 0; i < layout.size; i++) {
      const x = result.included.map((k) => Math.max(-clip, Math.min(clip, delta ? ls[k]![i]! - g[i]! : ls[k]![i]!)));
      diff = Math.max(diff, Math.abs(x.reduce((a, v) => a + v, 0) / x.length - out.mean[i]!));
    }
    assert.ok(diff > 1e-3);
    applyWeights(global, out.weights);
    tf.dispose(out.weights);
  }
  // A plan for another model size is refused.
  const wrong = planEncoding({ clients: n, clip: 1, weighted: true, maxWeight: 25, dimension: 10 });
  await assert.rejects(contribute(locals[0]!, 1, wrong), code('ERR_SIZE'));
  await assert.rejects(secureFedAvg({ sum: new Uint32Array(11), included: [0, 1, 2] }, wrong, global), code('ERR_SIZE'));
});

/** Dense → BatchNormalization → Dense; every instance starts from the same weights. */
function bnModel(): tf.Sequential {
  const init = (seed: number) => tf.initializers.randomNormal({ mean: 0, stddev: 0.5, seed });
  const m = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [4], units: 3, kernelInitializer: init(1), biasInitializer: 'zeros' }),
      tf.layers.batchNormalization({ momentum: 0.5 }), // moves fast: a few batches give each client its own statistics
      tf.layers.dense({ units: 2, kernelInitializer: init(2) }),
    ],
  });
  m.compile({ optimizer: tf.train.sgd(0.05), loss: 'meanSquaredError' });
  return m;
}

/** One secure FedAvg round (updates, no dropouts) of 4 clients trained on differently shifted data. */
async function bnRound(weights: WeightSelection, warn: (m: string) => void) {
  const n = 4;
  const global = bnModel();
  const initialMean = [...(await global.layers[1]!.getWeights()[2]!.data())];
  const locals: tf.LayersModel[] = [];
  for (let k = 0; k < n; k++) {
    const m = bnModel();
    const xs = tf.randomNormal([32, 4], 2 * k - 3, 1 + k, 'float32', 100 + k);
    const ys = tf.randomNormal([32, 2], 0, 1, 'float32', 200 + k);
    await m.fit(xs, ys, { epochs: 1, batchSize: 8, shuffle: false, verbose: 0 });
    tf.dispose([xs, ys]);
    locals.push(m);
  }
  const dimension = weightLayout(global, { weights, warn }).size;
  const plan = planEncoding({ clients: n, clip: 64, precision: 1e-6, dimension });
  const rng = unsafeSeededRng(77);
  const cs: Contribution[] = [];
  for (const m of locals) cs.push(await contribute(m, undefined, plan, { base: global, rng, weights, warn }));
  assert.ok(
    cs.every((c) => c.report.clipped === 0),
    'nothing clipped',
  );
  const result = await simulateRound({ inputs: cs.map((c) => c.vector), bits: plan.bits, rng });
  assert.deepEqual(result.included, [0, 1, 2, 3]);
  const out = await secureFedAvg(result, plan, global, { delta: true, weights, warn });
  assert.equal(out.layout.weights, weights);
  applyWeights(global, out.weights, { weights, warn });
  tf.dispose(out.weights);
  // Read independently of the adapter: each BatchNorm layer's [gamma, beta, movingMean, movingVariance].
  const bn = async (m: tf.LayersModel) => Promise.all(m.layers[1]!.getWeights().map(async (t) => [...(await t.data())]));
  const clients = await Promise.all(locals.map(bn));
  const after = await bn(global);
  const average = (j: number) => after[j]!.map((_, c) => clients.reduce((a, s) => a + s[j]![c]!, 0) / n);
  return { initialMean, clients, after, average, errorBound: out.errorBound, dimension };
}

function assertClose(got: readonly number[], want: readonly number[], bound: number, what: string): void {
  got.forEach((g, c) => assert.ok(Math.abs(g - want[c]!) <= bound + 2 ** -22 * Math.abs(want[c]!), `${what}[${c}]: ${g} vs ${want[c]}`));
}

test("weights: 'all' — the global moving mean and variance become the plain average of the clients'", async () => {
  const warnings: string[] = [];
  const r = await bnRound('all', (m) => warnings.push(m));
  assert.equal(r.dimension, 4 * 3 + 3 + 4 * 3 + 3 * 2 + 2); // dense, BatchNorm (gamma, beta, mean, variance), dense
  const [, , mean, variance] = [0, 1, 2, 3].map(r.average);
  // The clients' statistics really differ from the initial ones and from each other.
  assert.ok(Math.max(...mean!.map((v, c) => Math.abs(v - r.initialMean[c]!))) > 0.1, `mean ${mean}`);
  assert.ok(Math.abs(r.clients[0]![2]![0]! - r.clients[3]![2]![0]!) > 0.1);
  assertClose(r.after[2]!, mean!, r.errorBound, 'moving mean');
  assertClose(r.after[3]!, variance!, r.errorBound, 'moving variance');
  assertClose(r.after[0]!, r.average(0), r.errorBound, 'gamma');
  assert.deepEqual(warnings, [], 'nothing stays local: no warning');
});

test("weights: 'trainable' — the global moving statistics keep their initial value, and one warning says so", async () => {
  const warnings: string[] = [];
  const r = await bnRound('trainable', (m) => warnings.push(m));
  assert.equal(r.dimension, 4 * 3 + 3 + 2 * 3 + 3 * 2 + 2); // dense, BatchNorm (gamma, beta), dense
  assert.deepEqual(r.after[2], r.initialMean, 'moving mean untouched');
  assert.deepEqual(r.after[3], [1, 1, 1], 'moving variance untouched');
  assert.ok(Math.max(...r.average(2).map((v, c) => Math.abs(v - r.initialMean[c]!))) > 0.1, 'the clients did move theirs');
  assertClose(r.after[1]!, r.average(1), r.errorBound, 'beta'); // the trainable ones are averaged
  assert.equal(warnings.length, 1, `one warning for ${4 * 2 + 3} calls that select 'trainable': ${warnings.join(' | ')}`);
  assert.match(warnings[0]!, /moving_mean/);
  assert.match(warnings[0]!, /stay local/);
});

test('src/tfjs never reads a tensor synchronously (dataSync/arraySync/bufferSync block the page on WebGL)', () => {
  const dir = fileURLToPath(new URL('../../src/tfjs/', import.meta.url));
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  assert.deepEqual(files.sort(), ['dp.ts', 'index.ts', 'weights.ts']);
  for (const f of files) assert.doesNotMatch(readFileSync(dir + f, 'utf8'), /\.(dataSync|arraySync|bufferSync)\s*\(/, f);
  const weights = readFileSync(dir + 'weights.ts', 'utf8');
  assert.match(weights, /io\.encodeWeights\(/);
  assert.match(weights, /io\.decodeWeights\(/);
});
