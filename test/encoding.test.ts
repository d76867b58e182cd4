/**
 * encoding/: planner refusals at the exact wrap boundary, encode → sum → decode round trips within
 * the stated bound, unbiased stochastic rounding, clip reports, and the secure weighted average
 * through the real protocol (simulateRound) against a float64 plaintext computation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { planEncoding, encodeUpdate, decodeSum, decodeAverage, clipVector, toRing, fromRing, type EncodingPlan } from '../src/encoding/index.js';
import * as root from '../src/index.js';
import { plainSum } from '../src/ring/vector.js';
import { simulateRound } from '../src/sim/simulate.js';
import { isSecAggError } from '../src/errors.js';
import { unsafeSeededRng } from '../src/rng.js';

function refused(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isSecAggError(e, 'ERR_INVALID_PARAMETERS'), `expected ERR_INVALID_PARAMETERS, got ${String(e)}`);
    assert.match(e.message, pattern);
    return true;
  });
}

/** Deterministic floats in [−a, a] from a seed (independent of the code under test). */
function floats(m: number, a: number, seed: number): Float64Array {
  const b = unsafeSeededRng(seed)(4 * m);
  const w = new Uint32Array(b.buffer, b.byteOffset, m);
  return Float64Array.from(w, (u) => (u / 2 ** 32) * 2 * a - a);
}

/** Exact reference: per-element clip then Σ (weights) · x in float64. */
function clippedWeightedSum(xs: readonly ArrayLike<number>[], ws: readonly number[], c: number): Float64Array {
  const m = xs[0]!.length;
  const out = new Float64Array(m);
  xs.forEach((x, k) => {
    for (let i = 0; i < m; i++) out[i] = out[i]! + ws[k]! * Math.max(-c, Math.min(c, x[i]!));
  });
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

test('the root index re-exports the encoding API', () => {
  assert.equal(root.planEncoding, planEncoding);
  assert.equal(root.encodeUpdate, encodeUpdate);
  assert.equal(root.decodeAverage, decodeAverage);
});

test("two's complement: toRing / fromRing", () => {
  assert.equal(toRing(-1, 8), 255);
  assert.equal(toRing(-128, 8), 128);
  assert.equal(toRing(127, 8), 127);
  assert.equal(toRing(-1, 32), 2 ** 32 - 1);
  assert.equal(toRing(-(2 ** 31), 32), 2 ** 31);
  assert.equal(fromRing(255, 8), -1);
  assert.equal(fromRing(128, 8), -128);
  assert.equal(fromRing(127, 8), 127);
  assert.equal(fromRing(2 ** 31, 32), -(2 ** 31));
  assert.equal(fromRing(2 ** 31 - 1, 32), 2 ** 31 - 1);
  for (const q of [-5000, -1, 0, 1, 4999]) assert.equal(fromRing(toRing(q, 16), 16), q);
});

test('planner: picks the smallest ring that holds the worst case, and refuses exactly at n·max|q| = R/2', () => {
  // f = 0, clip 63, 2 clients: worst case 126 < 128 = R/2 for bits 8.
  const ok = planEncoding({ clients: 2, clip: 63, fractionalBits: 0 });
  assert.equal(ok.bits, 8);
  assert.equal(ok.maxAbsElement, 63);
  assert.equal(ok.worstCaseSum, 126);
  assert.equal(planEncoding({ clients: 2, clip: 63, fractionalBits: 0, bits: 8 }).bits, 8);
  // 2 × 64 = 128 = R/2 at bits 8: refused when the ring is forced, the next ring when not.
  refused(() => planEncoding({ clients: 2, clip: 64, fractionalBits: 0, bits: 8 }), /wrap.*128 ≥ R\/2 = 2\^7/);
  assert.equal(planEncoding({ clients: 2, clip: 64, fractionalBits: 0 }).bits, 9);
  // A non-integer clip: ceil(clip · 2^f) is what a stochastic rounding can reach.
  assert.equal(planEncoding({ clients: 1, clip: 1.01, fractionalBits: 2 }).maxAbsElement, 5);
  // The largest ring: 2^16 clients × 2^15 = 2^31 = R/2 for bits 32 is refused, one client fewer is not.
  refused(() => planEncoding({ clients: 2 ** 16, clip: 1, fractionalBits: 15 }), /can wrap.*at most 14 fractional bits/);
  assert.equal(planEncoding({ clients: 2 ** 16 - 1, clip: 1, fractionalBits: 15 }).bits, 32);
  // Even integers can wrap: then the message says so.
  refused(() => planEncoding({ clients: 1000, clip: 2 ** 22, fractionalBits: 0 }), /even integer encoding/);
});

test('planner: the weight inside the vector counts towards the overflow check', () => {
  const unweighted = planEncoding({ clients: 100, clip: 1, fractionalBits: 16 });
  assert.equal(unweighted.bits, 24); // 100 · 2^16 = 6,553,600 < 2^23
  // With weights up to 1000 the clients send w·x: 100 · 1000 · 2^16 ≥ 2^31.
  refused(() => planEncoding({ clients: 100, clip: 1, fractionalBits: 16, weighted: true, maxWeight: 1000 }), /maxWeight 1000/);
  const w = planEncoding({ clients: 100, clip: 1, fractionalBits: 14, weighted: true, maxWeight: 1000 });
  assert.equal(w.extraElements, 1);
  assert.equal(w.maxAbsElement, 1000 * 2 ** 14);
  assert.ok(w.worstCaseSum < 2 ** (w.bits - 1));
  // With clip < 1 the weight element itself is the largest: clip 0.01, maxWeight 2^20 (f = 10): 2^30 per client.
  const small = planEncoding({ clients: 1, clip: 0.01, fractionalBits: 10, weighted: true, maxWeight: 2 ** 20 });
  assert.equal(small.maxAbsElement, 2 ** 30);
  refused(() => planEncoding({ clients: 2, clip: 0.01, fractionalBits: 10, weighted: true, maxWeight: 2 ** 20 }), /wrap/);
});

test('planner: argument refusals and the automatic choice of scale', () => {
  refused(() => planEncoding({ clients: 0, clip: 1 }), /clients/);
  refused(() => planEncoding({ clients: 3, clip: 0 }), /clip/);
  refused(() => planEncoding({ clients: 3, clip: Number.NaN }), /clip/);
  refused(() => planEncoding({ clients: 3, clip: 1, weighted: true }), /maxWeight/);
  refused(() => planEncoding({ clients: 3, clip: 1, maxWeight: 5 }), /unweighted/);
  refused(() => planEncoding({ clients: 3, clip: 1, precision: 0.1, fractionalBits: 3 }), /not both/);
  refused(() => planEncoding({ clients: 3, clip: 1, bits: 33 }), /bits/);
  refused(() => planEncoding({ clients: 3, clip: 1, weighted: true, maxWeight: 0.1, fractionalBits: 2 }), /rounds to 0/);
  // precision → f = ceil(−log2 p): 1e-3 → 10 fractional bits.
  const p = planEncoding({ clients: 10, clip: 2, precision: 1e-3 });
  assert.equal(p.fractionalBits, 10);
  assert.equal(p.errorBound.mean, 2 ** -10);
  assert.equal(p.errorBound.sum, 10 * 2 ** -10);
  assert.ok(2 ** -p.fractionalBits <= 1e-3 && 2 ** -(p.fractionalBits - 1) > 1e-3);
  // Neither: the finest scale that fits 32 bits (the next finer one would not).
  const auto = planEncoding({ clients: 10, clip: 2 });
  assert.equal(auto.bits, 32);
  assert.ok(10 * Math.ceil(2 * auto.scale) < 2 ** 31);
  assert.ok(10 * Math.ceil(2 * 2 * auto.scale) >= 2 ** 31);
  assert.ok(Object.isFrozen(auto));
  assert.deepEqual(JSON.parse(JSON.stringify(auto)), auto, 'a plan is plain data (can be published to the cohort)');
});

test('the worst case at the boundary decodes exactly; one more unit would have wrapped', () => {
  const plan = planEncoding({ clients: 5, clip: 3, fractionalBits: 2, bits: 7 }); // 5 · 12 = 60 < 64
  const pos = Array.from({ length: 5 }, () => encodeUpdate([3, -3, 100, -100], plan).vector);
  const { values } = decodeSum(plainSum(pos, plan.bits, 4), plan);
  assert.deepEqual([...values], [15, -15, 15, -15]);
  // The refused neighbour (16 units per client → 80 ≥ 64) really wraps: Σ of +16·5 read back in [−64, 64) is negative.
  assert.ok(fromRing(toRing(5 * 16, 7), 7) < 0);
  refused(() => planEncoding({ clients: 5, clip: 4, fractionalBits: 2, bits: 7 }), /wrap/);
});

test('encode → sum → decode is within the stated bound (random plans and data)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 12 }), // clients
      fc.integer({ min: 1, max: 40 }), // dimension
      fc.double({ min: 0.01, max: 50, noNaN: true }), // clip
      fc.integer({ min: 0, max: 30 }), // fractional bits
      fc.integer({ min: 0, max: 2 ** 30 }), // seed
      (n, m, clip, f, seed) => {
        let plan: EncodingPlan;
        try {
          plan = planEncoding({ clients: n, clip, fractionalBits: f });
        } catch (e) {
          assert.ok(isSecAggError(e, 'ERR_INVALID_PARAMETERS'));
          assert.ok(n * Math.ceil(clip * 2 ** f) >= 2 ** 31, 'refused only when it could wrap');
          return;
        }
        assert.ok(plan.worstCaseSum < 2 ** (plan.bits - 1), 'cannot wrap');
        assert.ok(plan.bits === 1 || plan.worstCaseSum >= 2 ** (plan.bits - 2), 'the smallest such ring');
        const rng = unsafeSeededRng(seed);
        const xs = Array.from({ length: n }, (_, k) => floats(m, clip * 1.5, seed + k));
        const vs = xs.map((x) => encodeUpdate(x, plan, { rng }).vector);
        for (const v of vs) for (const u of v) assert.ok(u < 2 ** plan.bits);
        const dec = decodeSum(plainSum(vs, plan.bits, m), plan, { clients: n });
        const exact = clippedWeightedSum(xs, new Array(n).fill(1), clip);
        assert.equal(dec.errorBound, n * 2 ** -f);
        assert.ok(maxAbsDiff(dec.values, exact) < dec.errorBound * (1 + 1e-9), `error ${maxAbsDiff(dec.values, exact)} ≥ bound ${dec.errorBound}`);
        const avg = decodeAverage(plainSum(vs, plan.bits, m), plan, { clients: n });
        assert.ok(
          maxAbsDiff(
            avg.mean,
            exact.map((s) => s / n),
          ) <
            plan.errorBound.mean * (1 + 1e-9),
        );
      },
    ),
    { numRuns: 150 },
  );
});

test('stochastic rounding is unbiased (deterministic rounding would not be) and draws from the injected rng', () => {
  const plan = planEncoding({ clients: 1, clip: 1, fractionalBits: 0, bits: 8 });
  const x = new Float64Array(20000).fill(0.3);
  const v = encodeUpdate(x, plan, { rng: unsafeSeededRng(1) }).vector;
  let ones = 0;
  for (const u of v) {
    assert.ok(u === 0 || u === 1);
    ones += u;
  }
  // Binomial(20000, 0.3): mean 6000, sd ≈ 65. Nearest rounding would give 0 ones.
  assert.ok(Math.abs(ones - 6000) < 400, `${ones} ones`);
  const neg = encodeUpdate(new Float64Array(20000).fill(-0.3), plan, { rng: unsafeSeededRng(2) }).vector;
  let sum = 0;
  for (const u of neg) sum += fromRing(u, 8);
  assert.ok(Math.abs(sum + 6000) < 400, `negative values: sum ${sum}`);
  // Same seed → same vector; another seed → another one.
  assert.deepEqual(encodeUpdate(x, plan, { rng: unsafeSeededRng(1) }).vector, v);
  assert.notDeepEqual(encodeUpdate(x, plan, { rng: unsafeSeededRng(3) }).vector, v);
  // The default is the CSPRNG: two calls differ.
  assert.notDeepEqual(encodeUpdate(x, plan).vector, encodeUpdate(x, plan).vector);
});

test('clipping is reported, never silent: value and L2 modes', () => {
  const r = clipVector([0.5, -2, 3, -0.25, 1], 1, 'value');
  assert.deepEqual([...r.values], [0.5, -1, 1, -0.25, 1]);
  assert.equal(r.report.clipped, 2);
  assert.equal(r.report.maxAbs, 3);
  assert.equal(r.report.scale, 1);
  assert.ok(Math.abs(r.report.l2Norm - Math.sqrt(0.25 + 4 + 9 + 0.0625 + 1)) < 1e-12);
  const l2 = clipVector([3, 0, -4], 1, 'l2');
  assert.ok(Math.abs(l2.report.scale - 0.2) < 1e-15);
  assert.equal(l2.report.l2Norm, 5);
  assert.equal(l2.report.clipped, 2);
  assert.ok(maxAbsDiff(l2.values, [0.6, 0, -0.8]) < 1e-15);
  const none = clipVector([0.3, 0.4], 1, 'l2');
  assert.equal(none.report.scale, 1);
  assert.equal(none.report.clipped, 0);
  // Through the encoder, L2 mode clips the whole vector and says by how much.
  const plan = planEncoding({ clients: 3, clip: 1, clipMode: 'l2', fractionalBits: 12 });
  const enc = encodeUpdate([3, 0, -4], plan, { rng: unsafeSeededRng(4) });
  assert.ok(Math.abs(enc.report.scale - 0.2) < 1e-15);
  const dec = decodeSum(enc.vector, plan, { clients: 1 });
  assert.ok(maxAbsDiff(dec.values, [0.6, 0, -0.8]) < 2 ** -12);
  // Non-finite inputs are refused.
  assert.throws(() => encodeUpdate([1, Number.NaN], plan), RangeError);
  assert.throws(() => encodeUpdate([Infinity], plan), RangeError);
});

test('weighted encoding: w·x and w inside one vector; weight and dimension checks', () => {
  const plan = planEncoding({ clients: 4, clip: 1, fractionalBits: 8, weighted: true, maxWeight: 10, dimension: 3 });
  const { vector, weight } = encodeUpdate([0.5, -0.25, 2], plan, { weight: 4, rng: unsafeSeededRng(5) });
  assert.equal(vector.length, 4);
  assert.equal(weight, 4);
  // 4 · 0.5 · 256 = 512, 4 · −0.25 · 256 = −256, 4 · 1 (clipped) · 256 = 1024; weight element 4 · 256.
  assert.deepEqual(
    [...vector].map((u) => fromRing(u, plan.bits)),
    [512, -256, 1024, 1024],
  );
  // Fractional weights are rounded to the 2^−f grid, and the rounded weight is used for both parts.
  const frac = encodeUpdate([1, 0, 0], plan, { weight: 1 / 3, rng: unsafeSeededRng(6) });
  assert.equal(frac.weight, Math.round(256 / 3) / 256);
  assert.equal(fromRing(frac.vector[0]!, plan.bits), fromRing(frac.vector[3]!, plan.bits));
  assert.throws(() => encodeUpdate([0, 0, 0], plan), TypeError);
  assert.throws(() => encodeUpdate([0, 0, 0], plan, { weight: 11 }), RangeError);
  assert.throws(() => encodeUpdate([0, 0, 0], plan, { weight: -1 }), RangeError);
  assert.throws(() => encodeUpdate([0, 0], plan, { weight: 1 }), RangeError);
  assert.throws(() => encodeUpdate([0, 0, 0], planEncoding({ clients: 3, clip: 1 }), { weight: 1 }), TypeError);
  // Decoding checks the sum against the plan.
  assert.throws(
    () => decodeSum(new Uint32Array(3), plan),
    (e: unknown) => isSecAggError(e, 'ERR_SIZE'),
  );
  assert.throws(
    () => decodeAverage(new Uint32Array(4), plan, { clients: 5 }),
    (e: unknown) => isSecAggError(e, 'ERR_INVALID_PARAMETERS'),
  );
  assert.throws(() => decodeAverage(new Uint32Array(4), plan, { clients: 2 }), /total weight/);
});

test('secure weighted average through the real protocol (with dropouts) equals the plaintext weighted average within the bound', async () => {
  const n = 8;
  const m = 300;
  const clip = 2;
  const maxWeight = 50;
  for (const [seed, clipMode] of [
    [11, 'value'],
    [12, 'l2'],
  ] as const) {
    const plan = planEncoding({ clients: n, clip, clipMode, precision: 1e-4, weighted: true, maxWeight, dimension: m });
    const data = unsafeSeededRng(seed);
    const xs = Array.from({ length: n }, (_, k) => floats(m, 3, seed * 100 + k)); // some values beyond the clip
    const ws = Array.from(data(n), (b) => 1 + (b % maxWeight)); // integer weights in [1, 50]
    const encs = xs.map((x, k) => encodeUpdate(x, plan, { weight: ws[k]!, rng: data }));
    if (clipMode === 'value')
      assert.ok(
        encs.some((e) => e.report.clipped > 0),
        'the data exercises clipping',
      );
    const result = await simulateRound({
      inputs: encs.map((e) => e.vector),
      bits: plan.bits,
      dropouts: { share: [2], masked: [5], unmask: [7] },
      rng: unsafeSeededRng(seed + 1),
    });
    assert.deepEqual(result.included, [0, 1, 3, 4, 6, 7]);
    const avg = decodeAverage(result.sum, plan, { clients: result.included.length });
    // Plaintext reference in float64 from the raw inputs (clip per the plan's mode, independently).
    const clipped = xs.map((x) => {
      if (clipMode === 'value') return x.map((v) => Math.max(-clip, Math.min(clip, v)));
      const norm = Math.hypot(...x);
      return norm > clip ? x.map((v) => (v * clip) / norm) : x;
    });
    const inc = result.included;
    const W = inc.reduce((a, k) => a + ws[k]!, 0);
    const exact = clippedWeightedSum(
      inc.map((k) => clipped[k]!),
      inc.map((k) => ws[k]!),
      Infinity,
    ).map((s) => s / W);
    assert.equal(avg.totalWeight, W, 'the total weight comes out of the masked vector exactly');
    assert.equal(avg.errorBound, (inc.length * 2 ** -plan.fractionalBits) / W);
    const err = maxAbsDiff(avg.mean, exact);
    assert.ok(err < avg.errorBound, `${clipMode}: error ${err} ≥ bound ${avg.errorBound}`);
    // The unweighted average would be visibly different: the weights matter.
    const unweighted = clippedWeightedSum(
      inc.map((k) => clipped[k]!),
      inc.map(() => 1),
      Infinity,
    ).map((s) => s / inc.length);
    assert.ok(maxAbsDiff(avg.mean, unweighted) > 100 * avg.errorBound);
  }
});
