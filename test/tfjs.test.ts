/**
 * tfjs/: exact weight round trips (bit for bit), typed refusals of wrong shapes and dtypes, and
 * contribute → simulateRound → secureFedAvg against a plaintext weighted average of the tensors.
 * Pure-JS CPU backend only.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { applyWeights, contribute, flattenWeights, secureFedAvg, unflattenWeights, weightLayout, checkLayout } from '../src/tfjs/index.js';
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

test('layout: trainable weights only, in order, with shapes and offsets', () => {
  const m = model(1);
  const layout = weightLayout(m);
  assert.deepEqual(
    layout.specs.map((s) => [s.shape, s.size, s.offset]),
    [
      [[3, 3, 2, 3], 54, 0],
      [[3], 3, 54],
      [[3], 3, 57], // batchnorm gamma
      [[3], 3, 60], // batchnorm beta
      [[48, 4], 192, 63],
      [[4], 4, 255],
    ],
  );
  assert.equal(layout.size, 259);
  assert.equal(
    layout.size,
    m.trainableWeights.reduce((a, v) => a + v.shape.reduce((x: number, d) => x * (d ?? 0), 1), 0),
  );
  m.dispose();
});

test("a model's weights round-trip exactly (bit for bit) through the flat vector", () => {
  const a = model(1);
  const b = model(2);
  const { values, layout } = flattenWeights(a);
  // Include awkward float32 values: −0, subnormals, the largest float32.
  values[0] = -0;
  values[1] = 1.4e-45;
  values[2] = 3.4028234663852886e38;
  values[3] = Math.fround(Math.PI);
  const nonTrainable = () => b.nonTrainableWeights.map((w) => Array.from(w.read().dataSync()));
  const statsBefore = nonTrainable();
  const ts = unflattenWeights(values, layout);
  applyWeights(b, ts);
  tf.dispose(ts);
  const back = flattenWeights(b, layout).values;
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
  const pb = (b.predict(x) as tf.Tensor).dataSync();
  const pc = (c.predict(x) as tf.Tensor).dataSync();
  assert.deepEqual(pb, pc);
  // Non-trainable weights (moving statistics) are untouched by applyWeights.
  assert.ok(statsBefore.length > 0, 'the model has non-trainable weights');
  assert.deepEqual(nonTrainable(), statsBefore);
  tf.dispose([a, b, c].flatMap((m) => m.getWeights()));
});

test('a tensor list round-trips exactly, and mismatches are typed errors', () => {
  const list = [
    tf.tensor([
      [1.5, -2],
      [3, 4],
    ]),
    tf.tensor([0.1]),
    tf.tensor([[[7]]]),
  ];
  const { values, layout } = flattenWeights(list);
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
  assert.deepEqual(bitsOf(flattenWeights(back, layout).values), bitsOf(values));
  // Wrong vector length.
  assert.throws(() => unflattenWeights(values.subarray(1), layout), code('ERR_SIZE'));
  // Wrong shape, wrong count, wrong dtype.
  assert.throws(() => flattenWeights([tf.tensor([[1.5, -2, 3, 4]]), list[1]!, list[2]!], layout), code('ERR_SIZE'));
  assert.throws(() => checkLayout(list.slice(0, 2), layout), code('ERR_SIZE'));
  assert.throws(() => weightLayout([tf.tensor([1, 2], [2], 'int32')]), code('ERR_INVALID_PARAMETERS'));
  assert.throws(() => checkLayout([list[0]!, tf.tensor([1], [1], 'int32'), list[2]!], layout), code('ERR_INVALID_PARAMETERS'));
  // Applying a list of the wrong shapes to a model is refused before anything is written.
  const m = model(4);
  const before = flattenWeights(m).values;
  assert.throws(() => applyWeights(m, back), code('ERR_SIZE'));
  assert.deepEqual(bitsOf(flattenWeights(m).values), bitsOf(before));
  assert.throws(() => flattenWeights({} as never), TypeError);
  tf.dispose([...list, ...back]);
});

test('contribute → simulateRound → secureFedAvg equals the plaintext weighted average within the bound', async () => {
  const n = 6;
  const global = model(10);
  const locals = Array.from({ length: n }, (_, k) => model(20 + k));
  const layout = weightLayout(global);
  const weights = [3, 10, 1, 7, 25, 4];
  for (const delta of [false, true]) {
    const clip = delta ? 1 : 0.9;
    const plan = planEncoding({ clients: n, clip, precision: 1e-5, weighted: true, maxWeight: 25, dimension: layout.size });
    const rng = unsafeSeededRng(delta ? 31 : 30);
    const cs = locals.map((m, k) => contribute(m, weights[k]!, plan, { rng, ...(delta ? { base: global } : {}) }));
    for (const c of cs) assert.equal(c.vector.length, layout.size + 1);
    assert.ok(
      cs.some((c) => c.report.clipped > 0),
      'some values are clipped, and reported',
    );
    const result = await simulateRound({ inputs: cs.map((c) => c.vector), bits: plan.bits, dropouts: { masked: [1] }, rng });
    assert.deepEqual(result.included, [0, 2, 3, 4, 5]);
    const out = secureFedAvg(result, plan, global, { delta });
    // Plaintext reference: float64 weighted average of the clipped (updates of the) local weights.
    const g = flattenWeights(global).values;
    const ls = locals.map((m) => flattenWeights(m).values);
    const W = result.included.reduce((a, k) => a + weights[k]!, 0);
    assert.equal(out.totalWeight, W);
    const expected = new Float64Array(layout.size);
    for (const k of result.included)
      for (let i = 0; i < layout.size; i++) {
        const x = delta ? ls[k]![i]! - g[i]! : ls[k]![i]!;
        expected[i] = expected[i]! + (weights[k]! * Math.max(-clip, Math.min(clip, x))) / W;
      }
    const got = flattenWeights(out.weights, layout).values;
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
  assert.throws(() => contribute(locals[0]!, 1, wrong), code('ERR_SIZE'));
  assert.throws(() => secureFedAvg({ sum: new Uint32Array(11), included: [0, 1, 2] }, wrong, global), code('ERR_SIZE'));
});
