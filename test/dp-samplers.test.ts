/**
 * dp/ samplers against their exact distributions: for each parameter, 10^6 draws; the mean and the
 * variance by z-tests against the exact values (|z| < 5: false alarm 5.7e−7 each), and Pearson's
 * chi-square against the exact pmf, computed independently in test/dpStats.ts (bins of expected
 * count ≥ 50, reject at p < 1e−6). Seeds are fixed, so CI is deterministic.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sampleBinomial, sampleDiscreteGaussian, samplePoisson, sampleSkellam } from '../src/dp/index.js';
import { unsafeSeededRng } from '../src/rng.js';
import {
  binomialPmf,
  chiSquareSurvival,
  chiSquareTest,
  dgaussPmf,
  moments,
  P_LIMIT,
  type Pmf,
  poissonPmf,
  skellamPmf,
  unsafeFastSeededRng,
  Z_LIMIT,
} from './dpStats.js';

const N = 1_000_000;

function check(t: { diagnostic: (s: string) => void }, name: string, x: Float64Array, pmf: Pmf, exactMean: number): void {
  const { m2, m4 } = moments(pmf, exactMean);
  let s = 0;
  let s2 = 0;
  for (const v of x) {
    assert.ok(Number.isInteger(v), `${name}: ${v} is not an integer`);
    s += v - exactMean;
    s2 += (v - exactMean) ** 2;
  }
  const mean = s / x.length;
  const v2 = s2 / x.length;
  const zMean = mean / Math.sqrt(m2 / x.length);
  const zVar = (v2 - m2) / Math.sqrt((m4 - m2 * m2) / x.length);
  const chi = chiSquareTest(x, pmf);
  t.diagnostic(
    `${name}: mean ${(exactMean + mean).toPrecision(7)} (exact ${exactMean}, z ${zMean.toFixed(2)}); variance ${v2.toPrecision(7)} (exact ${m2.toPrecision(7)}, z ${zVar.toFixed(2)}); χ² ${chi.stat.toFixed(1)} on ${chi.df} df, p ${chi.pValue.toPrecision(3)}`,
  );
  assert.ok(Math.abs(zMean) < Z_LIMIT, `${name}: mean z = ${zMean}`);
  assert.ok(Math.abs(zVar) < Z_LIMIT, `${name}: variance z = ${zVar}`);
  assert.ok(chi.pValue > P_LIMIT, `${name}: chi-square p = ${chi.pValue} (χ² ${chi.stat} on ${chi.df} df)`);
}

test('the reference chi-square tail matches published table values', () => {
  // Upper 5% and 0.1% points (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.4).
  assert.ok(Math.abs(chiSquareSurvival(3.841, 1) - 0.05) < 1e-4);
  assert.ok(Math.abs(chiSquareSurvival(18.307, 10) - 0.05) < 1e-4);
  assert.ok(Math.abs(chiSquareSurvival(29.588, 10) - 0.001) < 1e-5);
  assert.ok(Math.abs(chiSquareSurvival(124.342, 100) - 0.05) < 1e-4);
});

// 10.1 is not dyadic: its double is p/2^k with a 50-bit k, exercising the exact BigInt comparisons.
for (const sigma2 of [0.25, 1, 2.25, 10.1, 1e4, 1e6 + 0.5]) {
  test(`discrete Gaussian σ² = ${sigma2}: ${N} draws against the exact pmf`, (t) => {
    const x = sampleDiscreteGaussian({ sigma2, length: N, rng: unsafeFastSeededRng(sigma2) });
    check(t, `N_Z(0, ${sigma2})`, x, dgaussPmf(sigma2), 0);
  });
}

test('the chi-square test has power: a rounded continuous Gaussian is not N_Z(0, 0.25)', () => {
  const rng = unsafeFastSeededRng(7);
  const bytes = rng(8 * N);
  const w = new Uint32Array(bytes.buffer, bytes.byteOffset, 2 * N);
  const x = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    const u1 = (w[2 * i]! + 1) / 2 ** 32;
    const u2 = w[2 * i + 1]! / 2 ** 32;
    x[i] = Math.round(0.5 * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2));
  }
  assert.ok(chiSquareTest(x, dgaussPmf(0.25)).pValue < 1e-100);
});

for (const mean of [0.3, 3, 9.99, 10, 47.5, 1e4, 1e6]) {
  test(`Poisson λ = ${mean}: ${N} draws against the exact pmf`, (t) => {
    const x = samplePoisson({ mean, length: N, rng: unsafeFastSeededRng(mean + 0.125) });
    check(t, `Poisson(${mean})`, x, poissonPmf(mean), mean);
  });
}

for (const variance of [0.5, 3, 20, 1e4]) {
  test(`Skellam variance ${variance}: ${N} draws against the convolution of two Poisson(${variance / 2}) pmfs`, (t) => {
    const x = sampleSkellam({ variance, length: N, rng: unsafeFastSeededRng(variance + 0.25) });
    check(t, `Skellam(${variance})`, x, skellamPmf(variance), 0);
  });
}

// Inversion (n·q < 10: the first three), BTRS (the next three), and p > 1/2 (drawn as n − Binomial(n, 1 − p)).
for (const [n, p] of [
  [20, 0.3],
  [1000, 0.005],
  [2 ** 40, 2 ** -38],
  [100, 0.4],
  [1e6, 0.25],
  [2 ** 40, 0.125],
  [50, 0.9],
  [1e5, 0.75],
] as const) {
  test(`Binomial n = ${n}, p = ${p}: ${N} draws against the exact pmf`, (t) => {
    const x = sampleBinomial({ trials: n, probability: p, length: N, rng: unsafeFastSeededRng(n + p) });
    check(t, `Binomial(${n}, ${p})`, x, binomialPmf(n, p), n * p);
  });
}

test(`Poisson thinning: K = P − Binomial(P, 1 − k/r) is Poisson(λ·k/r), independent of the part removed (${N} draws)`, (t) => {
  // What removable noise relies on: P ~ Poisson(λ), R | P ~ Binomial(P, ρ) gives R ~ Poisson(λρ)
  // and K = P − R ~ Poisson(λ(1 − ρ)), independent. Checked: each marginal against its exact pmf,
  // and the correlation of K and R (z-test: √N·corr is ~N(0, 1) under independence).
  const lambda = 60;
  const rho = 1 - 4 / 7;
  const P = samplePoisson({ mean: lambda, length: N, rng: unsafeFastSeededRng(101) });
  const R = sampleBinomial({ trials: P, probability: rho, rng: unsafeFastSeededRng(102) });
  const K = P.map((p, i) => p - R[i]!);
  check(t, 'kept K', K, poissonPmf(lambda * (1 - rho)), lambda * (1 - rho));
  check(t, 'removed R', R, poissonPmf(lambda * rho), lambda * rho);
  let sk = 0;
  let sr = 0;
  let skr = 0;
  for (let i = 0; i < N; i++) {
    const k = K[i]! - lambda * (1 - rho);
    const r = R[i]! - lambda * rho;
    sk += k * k;
    sr += r * r;
    skr += k * r;
  }
  const z = (skr / Math.sqrt(sk * sr)) * Math.sqrt(N);
  t.diagnostic(`corr(K, R)·√N = ${z.toFixed(2)}`);
  assert.ok(Math.abs(z) < Z_LIMIT, `K and R correlate: z = ${z}`);
});

test('sampleBinomial refuses bad parameters with RangeError and handles p = 0, p = 1, n = 0', () => {
  assert.throws(() => sampleBinomial({ trials: 1.5, probability: 0.5, length: 1 }), RangeError);
  assert.throws(() => sampleBinomial({ trials: -1, probability: 0.5, length: 1 }), RangeError);
  assert.throws(() => sampleBinomial({ trials: 10, probability: 1.5, length: 1 }), RangeError);
  assert.throws(() => sampleBinomial({ trials: Float64Array.of(3, 0.5), probability: 0.5 }), RangeError);
  assert.deepEqual([...sampleBinomial({ trials: Float64Array.of(0, 7, 9), probability: 1 })], [0, 7, 9]);
  assert.deepEqual([...sampleBinomial({ trials: Float64Array.of(0, 7, 9), probability: 0 })], [0, 0, 0]);
});

test('samplers are deterministic in the rng and work over the project Rng (unsafeSeededRng)', () => {
  const a = sampleDiscreteGaussian({ sigma2: 3, length: 1000, rng: unsafeSeededRng(5) });
  const b = sampleDiscreteGaussian({ sigma2: 3, length: 1000, rng: unsafeSeededRng(5) });
  assert.deepEqual(a, b);
  const c = sampleDiscreteGaussian({ sigma2: 3, length: 1000, rng: unsafeSeededRng(6) });
  assert.notDeepEqual(a, c);
  assert.deepEqual(sampleSkellam({ variance: 0, length: 5 }), new Float64Array(5));
  assert.deepEqual(sampleDiscreteGaussian({ sigma2: 0, length: 5 }), new Float64Array(5));
  assert.deepEqual(samplePoisson({ mean: 0, length: 5 }), new Float64Array(5));
  // Default randomness: the platform CSPRNG.
  assert.equal(sampleSkellam({ variance: 100, length: 10 }).length, 10);
});

test('samplers refuse bad parameters with errors naming them', () => {
  assert.throws(() => sampleDiscreteGaussian({ sigma2: -1, length: 1 }), /sigma2/);
  assert.throws(() => sampleDiscreteGaussian({ sigma2: Number.NaN, length: 1 }), RangeError);
  assert.throws(() => sampleDiscreteGaussian({ sigma2: 2 ** 53, length: 1 }), /sigma2/);
  assert.throws(() => samplePoisson({ mean: Number.POSITIVE_INFINITY, length: 1 }), /mean/);
  assert.throws(() => sampleSkellam({ variance: -2, length: 1 }), /variance/);
  assert.throws(() => sampleSkellam({ variance: 1, length: -1 }), /length/);
  assert.throws(() => sampleSkellam({ variance: 1, length: 1.5 }), /length/);
  assert.throws(() => sampleSkellam({ variance: 1, length: 1, rng: (() => new Uint8Array(3)) as never }), /rng/);
});
