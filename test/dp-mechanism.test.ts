/**
 * dp/ mechanism and planner end to end over the ring: encode → modular sum (ring/plainSum) →
 * decode against a float64 reference on the clipped inputs; sums that wrap; the released noise's
 * variance against the planned one (z-tests, |z| < 5: false alarm 5.7e−7 each); the planner's wrap
 * bound against its formula computed here, its refusals, and its reported error against a measured one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  centre,
  decodeDpMean,
  decodeDpSum,
  type DpPlan,
  encodeDp,
  noiseForRound,
  noiseVariance,
  planDp,
  sampleNoise,
  subtractFromRing,
  wrapProbability,
  wrapToRing,
} from '../src/dp/index.js';
import { isSecAggError } from '../src/errors.js';
import * as root from '../src/index.js';
import { plainSum } from '../src/ring/vector.js';
import { unsafeSeededRng } from '../src/rng.js';
import { unsafeFastSeededRng, Z_LIMIT } from './dpStats.js';

const seed = Uint8Array.from({ length: 32 }, (_, i) => 3 * i + 1);

function refused(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isSecAggError(e, 'ERR_INVALID_PARAMETERS'), `expected ERR_INVALID_PARAMETERS, got ${String(e)}`);
    assert.match(e.message, pattern);
    return true;
  });
}

/** Client updates: uniform in [−1, 1]^d scaled to norms spread around the clip (some clipped). */
function updates(n: number, d: number, clip: number, seedN: number): Float64Array[] {
  const b = unsafeSeededRng(seedN)(4 * n * d);
  const w = new Uint32Array(b.buffer, b.byteOffset, n * d);
  return Array.from({ length: n }, (_, k) => {
    const x = Float64Array.from({ length: d }, (_, i) => (w[k * d + i]! / 2 ** 32) * 2 - 1);
    const norm = Math.hypot(...x);
    const target = clip * (0.3 + (1.2 * k) / n); // 0.3c … 1.5c
    return x.map((v) => (v / norm) * target);
  });
}

/** Float64 reference: mean of the L2-clipped inputs. */
function clippedMean(xs: readonly Float64Array[], clip: number): Float64Array {
  const d = xs[0]!.length;
  const out = new Float64Array(d);
  for (const x of xs) {
    const f = Math.min(1, clip / Math.hypot(...x));
    for (let i = 0; i < d; i++) out[i]! += (x[i]! * f) / xs.length;
  }
  return out;
}

function sqDist(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}

function runRound(plan: DpPlan, xs: readonly (Float64Array | readonly Float32Array[])[], rngSeed: number): { sum: Uint32Array; raw: Float64Array } {
  const rng = unsafeFastSeededRng(rngSeed);
  const vectors = xs.map((values) => encodeDp({ values, plan, seed, rng }).vector);
  const raw = new Float64Array(plan.paddedDimension);
  for (const v of vectors) for (let i = 0; i < v.length; i++) raw[i]! += v[i]!;
  return { sum: plainSum(vectors, plan.bits, plan.paddedDimension), raw };
}

test('the root index re-exports the dp API', () => {
  assert.equal(root.planDp, planDp);
  assert.equal(root.encodeDp, encodeDp);
  assert.equal(root.decodeDpMean, decodeDpMean);
});

test('ring conversions: wrapToRing and centre against BigInt arithmetic, including bits = 32 and |q| ≥ 2^31', () => {
  const qs = [0, 1, -1, 2 ** 31, -(2 ** 31), 2 ** 40 + 3, -(2 ** 40) - 3, 2 ** 53 - 1, -(2 ** 53) + 1, 12345, -54321];
  for (const bits of [5, 16, 31, 32]) {
    const R = 1n << BigInt(bits);
    const got = wrapToRing(Float64Array.from(qs), bits);
    qs.forEach((q, i) => assert.equal(BigInt(got[i]!), ((BigInt(q) % R) + R) % R, `q = ${q}, bits = ${bits}`));
    const c = centre(got, bits);
    qs.forEach((_, i) => {
      const want = BigInt(got[i]!) >= R / 2n ? BigInt(got[i]!) - R : BigInt(got[i]!);
      assert.equal(BigInt(c[i]!), want);
    });
  }
  assert.throws(() => wrapToRing(Float64Array.of(0.5), 8), /safe integer/);
  assert.throws(
    () => centre(Uint32Array.of(256), 8),
    (e: unknown) => isSecAggError(e, 'ERR_SIZE'),
  );
});

test('zero noise: decode(mod-2^16 sum of 20 encodings) is the mean of the clipped inputs within the rounding bound, though the ring sum wraps', () => {
  const n = 20;
  const d = 1000;
  const clip = 2;
  const plan = planDp({ clients: n, dimension: d, clip, noiseMultiplier: 0, bits: 16 });
  assert.equal(plan.noise.mechanism, 'none');
  const xs = updates(n, d, clip, 1);
  // Mixed input shapes: odd clients give their update as two Float32Array parts (the reference uses those float32 values).
  const inputs = xs.map((x, k) => (k % 2 ? [Float32Array.from(x.subarray(0, 300)), Float32Array.from(x.subarray(300))] : x));
  const asF64 = inputs.map((v) => (Array.isArray(v) ? Float64Array.from([...v[0]!, ...v[1]!]) : (v as Float64Array)));
  const { sum, raw } = runRound(plan, inputs, 2);
  assert.ok(
    raw.some((r) => r >= 2 ** 16),
    'the plain sum of ring elements exceeds the ring (it wraps)',
  );
  const { mean, divisor } = decodeDpMean({ sum, plan, seed, clients: n });
  assert.equal(divisor, n);
  const want = clippedMean(asF64, clip);
  const err2 = sqDist(mean, want);
  // Deterministic: each client's rounding moves its rotated vector by < √D in L2, so ‖error of the mean‖ < √D/s.
  assert.ok(Math.sqrt(err2) < Math.sqrt(plan.paddedDimension) / plan.scale, `L2 error ${Math.sqrt(err2)}`);
  // In expectation ≤ d/(4·n·s²) (plan.error.expected.rounding); the realised value over 1000 coordinates concentrates (sd ≈ 5%).
  assert.ok(err2 <= plan.error.expected.rounding, `squared error ${err2} vs bound ${plan.error.expected.rounding}`);
  assert.equal(plan.error.expected.noise, 0);
});

for (const mechanism of ['skellam', 'dgauss'] as const) {
  test(`${mechanism}: the noise released in sums of minClients and of all clients has the planned variance (zero inputs, 40 rounds)`, () => {
    const n = 10;
    const nMin = 6;
    const d = 256;
    const z = 1.3;
    const clip = 0.5;
    const plan = planDp({ clients: n, minClients: nMin, dimension: d, clip, noiseMultiplier: z, bits: 20, mechanism });
    assert.equal(plan.noise.mechanism, mechanism);
    // The target: a sum of minClients carries variance (z·c)² in the original units.
    assert.ok(Math.abs(plan.releasedVariance / plan.scale ** 2 - (z * clip) ** 2) < 1e-12);
    for (const m of [nMin, n]) {
      const rounds = 40;
      let s2 = 0;
      let k = 0;
      for (let r = 0; r < rounds; r++) {
        const { sum } = runRound(
          plan,
          Array.from({ length: m }, () => new Float64Array(d)),
          1000 * m + r,
        );
        for (const v of decodeDpSum({ sum, plan, seed })) {
          s2 += v * v;
          k++;
        }
      }
      const want = (m / nMin) * (z * clip) ** 2;
      const got = s2 / k;
      // Near-Gaussian noise (excess kurtosis 1/(m·v) ≈ 0): the variance estimate has sd ≈ want·√(2/k).
      const zs = (got - want) / (want * Math.sqrt(2 / k));
      assert.ok(Math.abs(zs) < Z_LIMIT, `m = ${m}: variance ${got} vs planned ${want} (z ${zs.toFixed(2)})`);
    }
  });
}

test("the planner's reported error of the mean matches the measured one", () => {
  const n = 16;
  const d = 500;
  const clip = 1;
  const plan = planDp({ clients: n, dimension: d, clip, noiseMultiplier: 0.8, bits: 14 });
  const xs = updates(n, d, clip, 5);
  const want = clippedMean(xs, clip);
  const trials = 30;
  let err = 0;
  for (let t = 0; t < trials; t++) err += sqDist(decodeDpMean({ sum: runRound(plan, xs, 77 + t).sum, plan, seed, clients: n }).mean, want);
  err /= trials;
  const e = plan.error.expected;
  assert.ok(Math.abs(e.total - (e.noise + e.rounding)) < 1e-15);
  assert.ok(Math.abs(e.noise - (d * noiseVariance(plan.noise)) / (n * plan.scale ** 2)) < 1e-15);
  // Noise part exact, rounding part an upper bound; relative sd of the estimate ≈ √(2/(d·trials)) ≈ 1.2%.
  const rel = Math.sqrt(2 / (d * trials));
  assert.ok(
    err >= e.noise * (1 - Z_LIMIT * rel) && err <= e.total * (1 + Z_LIMIT * rel),
    `measured ${err}, reported noise ${e.noise} + rounding ≤ ${e.rounding}`,
  );
});

test('wrapProbability is the stated Chernoff/union bound (closed form for dgauss, brute-force minimum for Skellam)', () => {
  const args = { clients: 50, paddedDimension: 4096, scaledClip: 3000, noiseVariance: 5e6, bits: 16 };
  const P = (50 * 3000) ** 2 / 4096 + 50 / 4;
  const a = 2 ** 15;
  const dg = wrapProbability({ mechanism: 'dgauss', ...args });
  assert.ok(Math.abs(dg / (2 * 4096 * Math.exp(-(a * a) / (2 * (P + 5e6)))) - 1) < 1e-9);
  let best = Number.POSITIVE_INFINITY;
  for (let t = 1e-7; t < 1e-2; t *= 1.0005) best = Math.min(best, (t * t * P) / 2 + 5e6 * (Math.cosh(t) - 1) - t * a);
  const sk = wrapProbability({ mechanism: 'skellam', ...args });
  // Ours is the minimum: at or below the grid's, and within the grid's resolution of it.
  const grid = Math.log(2 * 4096) + best;
  assert.ok(Math.log(sk) <= grid + 1e-12 && Math.log(sk) >= grid - 1e-5, `${Math.log(sk)} vs ${grid}`);
  assert.ok(sk >= dg, 'the Skellam tail bound is never below the Gaussian one');
});

test('the planner takes the largest scale within maxWrapProbability, and refuses one step beyond', () => {
  const opts = { clients: 100, minClients: 70, dimension: 5000, clip: 1, noiseMultiplier: 1, bits: 18 };
  const plan = planDp(opts);
  assert.ok(plan.wrapProbability <= 1e-6 && plan.wrapProbability > 0.5e-6, `wrap ${plan.wrapProbability}`);
  assert.equal(planDp({ ...opts, scale: plan.scale }).scale, plan.scale);
  refused(() => planDp({ ...opts, scale: plan.scale * 1.001 }), /wrap probability bound .* exceeds/);
  // More bits: a larger scale, a smaller error.
  const more = planDp({ ...opts, bits: 20 });
  assert.ok(more.scale > 3 * plan.scale && more.error.expected.total < plan.error.expected.total);
  // Reports for the accountant.
  assert.equal(plan.paddedDimension, 8192);
  assert.ok(plan.effectiveNoiseMultiplier <= 1 && plan.effectiveNoiseMultiplier > 0.9);
  assert.ok(plan.l1Sensitivity <= Math.sqrt(8192) * plan.l2Sensitivity + 1e-9);
  assert.ok(Object.isFrozen(plan));
});

test('the planner refuses impossible configurations and bad parameters with errors naming them', () => {
  const ok = { clients: 1000, dimension: 1000, clip: 1, noiseMultiplier: 1, bits: 16 };
  refused(() => planDp({ ...ok, bits: 6 }), /bits = 6 cannot hold a sum of 1000 clients at any scale/);
  refused(() => planDp({ ...ok, clients: 0 }), /clients/);
  refused(() => planDp({ ...ok, minClients: 1001 }), /minClients/);
  refused(() => planDp({ ...ok, noiseMultiplier: -1 }), /noiseMultiplier/);
  refused(() => planDp({ ...ok, clip: 0 }), /clip/);
  refused(() => planDp({ ...ok, bits: 33 }), /bits/);
  refused(() => planDp({ ...ok, mechanism: 'laplace' as never }), /mechanism/);
  refused(() => planDp({ ...ok, beta: 1 }), /beta/);
  refused(() => planDp({ ...ok, maxWrapProbability: 0 }), /maxWrapProbability/);
  refused(() => planDp({ ...ok, dimension: 2 ** 27 }), /dimension/);
});

test('noiseForRound: noise set per round once the cohort is known; refused when it would break the wrap bound', () => {
  // Plan for the fewest survivors the service may accept; a round whose cohort allows more needs less noise each.
  const plan = planDp({ clients: 50, minClients: 30, dimension: 100, clip: 1, noiseMultiplier: 2, bits: 16, mechanism: 'dgauss' });
  const base = (2 * plan.scale) ** 2;
  assert.ok(Math.abs(noiseVariance(plan.noise) - base / 30) < 1e-9 * base);
  const n40 = noiseForRound({ plan, minClients: 40 });
  assert.equal(n40.mechanism, 'dgauss');
  assert.ok(Math.abs(noiseVariance(n40) - base / 40) < 1e-9 * base);
  assert.deepEqual(noiseForRound({ plan, minClients: 30 }), plan.noise);
  // The plan took the largest scale for minClients = 30; far more noise per client must be refused.
  refused(() => noiseForRound({ plan, minClients: 5 }), /wrap probability/);
  refused(() => noiseForRound({ plan, minClients: 60 }), /minClients/);
  refused(() => noiseForRound({ plan, minClients: 10, clients: 51 }), /clients/);
});

test('the removable-noise hook: an extra component from its own rng, regenerated and subtracted, leaves exactly the encoding without it', () => {
  const plan = planDp({ clients: 5, dimension: 50, clip: 1, noiseMultiplier: 1, bits: 20 });
  const x = updates(1, 50, 1, 9)[0]!;
  const extra = { mechanism: 'skellam', variance: 1000 } as const;
  const withExtra = encodeDp({ values: x, plan, seed, rng: unsafeSeededRng(1), extraNoise: [{ noise: extra, rng: unsafeSeededRng(2) }] }).vector;
  const without = encodeDp({ values: x, plan, seed, rng: unsafeSeededRng(1) }).vector;
  assert.notDeepEqual(withExtra, without);
  const regenerated = sampleNoise({ noise: extra, length: plan.paddedDimension, rng: unsafeSeededRng(2) });
  assert.deepEqual(subtractFromRing(withExtra, regenerated, plan.bits), without);
});

test('encode/decode refuse wrong shapes and counts', () => {
  const plan = planDp({ clients: 5, minClients: 3, dimension: 10, clip: 1, noiseMultiplier: 1, bits: 16 });
  assert.throws(() => encodeDp({ values: new Float64Array(11), plan, seed }), /11 elements/);
  assert.throws(() => encodeDp({ values: new Float64Array(10), plan, seed: new Uint8Array(8) }), /seed/);
  assert.throws(() => encodeDp({ values: Float64Array.of(Number.NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0), plan, seed }), /not a finite number/);
  const sum = new Uint32Array(plan.paddedDimension);
  assert.throws(
    () => decodeDpSum({ sum: new Uint32Array(10), plan, seed }),
    (e: unknown) => isSecAggError(e, 'ERR_SIZE'),
  );
  refused(() => decodeDpMean({ sum, plan, seed, clients: 2 }), /between 3 and 5/);
  refused(() => decodeDpMean({ sum, plan, seed, clients: 6 }), /between 3 and 5/);
  assert.throws(() => decodeDpMean({ sum, plan, seed, clients: 4, totalWeight: 0 }), /totalWeight/);
  assert.deepEqual(decodeDpMean({ sum, plan, seed, clients: 4, totalWeight: 8 }).divisor, 8);
});
