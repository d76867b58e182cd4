/**
 * The privacy accountant against values it did not compute: closed forms, the expectations of
 * Google's dp_accounting test suite and a figure of Abadi et al. 2016, and an independent
 * re-computation in Python (test/dp_reference.py: exact binomial sums in 60-digit decimal
 * arithmetic, written from the papers). Nothing here compares the accountant with its own output.
 *
 * dp_accounting values: github.com/google/differential-privacy, commit
 * b5b0286e313b64a692abfc8c528d54ef47d960a0, python/dp_accounting/dp_accounting/rdp/rdp_privacy_accountant_test.py.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  DEFAULT_RDP_ORDERS,
  accountRounds,
  calibrateNoiseMultiplier,
  deltaFromRdp,
  discreteMechanism,
  distributedDiscreteGaussianTau,
  epsilonFromRdp,
  mechanismRdp,
  poissonSubsampledRdp,
  sampledGaussianRdp,
  type Mechanism,
} from '../src/dp/index.js';
import { logErfc } from '../src/dp/accountant.js';

const REFERENCE = fileURLToPath(new URL('../../test/dp_reference.py', import.meta.url));
const PYTHON = spawnSync('python3', ['--version']).status === 0;
const NO_PYTHON = PYTHON ? false : 'python3 is not installed: the independent re-computation cannot run';

/** Ask test/dp_reference.py: one JSON request per line in, one JSON answer per line out. */
function reference<T>(requests: object[]): T[] {
  const r = spawnSync('python3', [REFERENCE], { input: requests.map((q) => JSON.stringify(q)).join('\n') + '\n', encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as T);
}

/** |actual − expected| ≤ rtol·|expected| + atol (atol for values near 0, where doubles carry ~1e-16 absolute). */
function close(actual: number, expected: number, rtol: number, what: string, atol = 0): void {
  assert.ok(Math.abs(actual - expected) <= rtol * Math.abs(expected) + atol, `${what}: ${actual} vs ${expected} (rtol ${rtol}, atol ${atol})`);
}

const INTEGER_DEFAULT_ORDERS = DEFAULT_RDP_ORDERS.filter((a) => Number.isInteger(a));
const gaussian = (z: number): Mechanism => ({ kind: 'gaussian', noiseMultiplier: z });

// ---------------------------------------------------------------------------------------------
// Orders

test('the default orders are exactly dp_accounting DEFAULT_RDP_ORDERS, as Python evaluates its expression', { skip: NO_PYTHON }, () => {
  const [py] = reference<number[]>([{ kind: 'orders' }]);
  assert.deepEqual([...DEFAULT_RDP_ORDERS], py);
  assert.equal(DEFAULT_RDP_ORDERS.length, 99 + 53 + 4);
  assert.deepEqual(DEFAULT_RDP_ORDERS.slice(-5), [63, 128, 256, 512, 1024]);
});

// ---------------------------------------------------------------------------------------------
// Closed forms

test('Gaussian without sampling: RDP is α/(2z²) (Mironov 2017, Prop. 7) at every order', () => {
  for (const z of [0.3, 1, 2.7, 40]) {
    const rdp = sampledGaussianRdp({ noiseMultiplier: z, samplingRate: 1 });
    DEFAULT_RDP_ORDERS.forEach((a, i) => close(rdp[i]!, a / (2 * z * z), 1e-15, `z=${z} α=${a}`));
  }
});

test('sampling rate → 1: the binomial expansion tends to the unsampled Gaussian', () => {
  for (const z of [0.8, 2, 5]) {
    const orders = [2, 3, 7, 20];
    const near = sampledGaussianRdp({ noiseMultiplier: z, samplingRate: 1 - 1e-9, orders });
    orders.forEach((a, i) => close(near[i]!, a / (2 * z * z), 1e-6, `z=${z} α=${a}`));
  }
});

test('sampling rate 0 releases nothing about anyone: ε = 0 (dp_accounting test_zero_poisson_sample)', () => {
  for (const mechanism of [gaussian(1), discreteMechanism({ kind: 'skellam', noiseMultiplier: 1, l2Clip: 1, dimension: 10, bits: 16, clients: 10 }).mechanism])
    assert.equal(accountRounds({ mechanism, samplingRate: 0, rounds: 10, delta: 1e-10 }).epsilon, 0);
});

test('composition is linear in the rounds, and R Gaussian rounds at z are one round at z/√R', () => {
  const one = accountRounds({ mechanism: gaussian(1.3), samplingRate: 0.02, rounds: 1, delta: 1e-5 });
  for (const R of [2, 7, 1000]) {
    const many = accountRounds({ mechanism: gaussian(1.3), samplingRate: 0.02, rounds: R, delta: 1e-5 });
    many.rdp.forEach((r, i) => close(r, R * one.rdp[i]!, 1e-12, `R=${R} order ${many.orders[i]}`));
    // Unsampled: R·α/(2z²) = α/(2(z/√R)²), so the (ε, δ) of R rounds is that of one noisier... lighter round.
    const rounds = accountRounds({ mechanism: gaussian(3), samplingRate: 1, rounds: R, delta: 1e-6 });
    const single = accountRounds({ mechanism: gaussian(3 / Math.sqrt(R)), samplingRate: 1, rounds: 1, delta: 1e-6 });
    close(rounds.epsilon, single.epsilon, 1e-12, `R=${R}`);
  }
});

test('ε is monotone: down in z and δ, up in q and R, for every mechanism', () => {
  const mech = (kind: 'gaussian' | 'skellam' | 'dgauss', z: number): Mechanism =>
    kind === 'gaussian' ? gaussian(z) : discreteMechanism({ kind, noiseMultiplier: z, l2Clip: 1, dimension: 1024, bits: 16, clients: 50 }).mechanism;
  for (const kind of ['gaussian', 'skellam', 'dgauss'] as const) {
    const eps = (z: number, q: number, rounds: number, delta: number) => accountRounds({ mechanism: mech(kind, z), samplingRate: q, rounds, delta }).epsilon;
    const zs = [0.6, 0.8, 1, 1.5, 3];
    for (let i = 1; i < zs.length; i++) assert.ok(eps(zs[i]!, 0.05, 100, 1e-5) < eps(zs[i - 1]!, 0.05, 100, 1e-5), `${kind}: z ${zs[i]}`);
    const qs = [0.001, 0.01, 0.1, 0.5, 1];
    for (let i = 1; i < qs.length; i++) assert.ok(eps(1, qs[i]!, 100, 1e-5) > eps(1, qs[i - 1]!, 100, 1e-5), `${kind}: q ${qs[i]}`);
    const Rs = [1, 10, 100, 1000];
    for (let i = 1; i < Rs.length; i++) assert.ok(eps(1, 0.05, Rs[i]!, 1e-5) > eps(1, 0.05, Rs[i - 1]!, 1e-5), `${kind}: R ${Rs[i]}`);
    const ds = [1e-3, 1e-5, 1e-7, 1e-10];
    for (let i = 1; i < ds.length; i++) assert.ok(eps(1, 0.05, 100, ds[i]!) > eps(1, 0.05, 100, ds[i - 1]!), `${kind}: δ ${ds[i]}`);
  }
});

test('the conversion is never looser than Mironov 2017 Prop. 3 (ε = RDP + log(1/δ)/(α−1)) at any order', () => {
  const { orders, rdp } = accountRounds({ mechanism: gaussian(1), samplingRate: 0.01, rounds: 500, delta: 1e-5 });
  orders.forEach((a, i) => {
    if (a <= 1.01 || !Number.isFinite(rdp[i]!)) return;
    const mine = epsilonFromRdp({ orders: [a], rdp: [rdp[i]!], delta: 1e-5 }).epsilon;
    assert.ok(mine <= rdp[i]! + Math.log(1e5) / (a - 1), `order ${a}`);
  });
});

test('one Gaussian release: the RDP route is sound and close against the exact δ(ε) (Balle & Wang 2018, Thm 8)', { skip: NO_PYTHON }, () => {
  const cases = [0.7, 1, 2, 5].map((z) => ({ z, ...accountRounds({ mechanism: gaussian(z), samplingRate: 1, rounds: 1, delta: 1e-5 }) }));
  const exact = reference<number>(cases.map((c) => ({ kind: 'gauss_delta', z: c.z, eps: c.epsilon })));
  cases.forEach((c, i) => {
    // The exact mechanism at our ε has δ at most the δ we promised (else our ε would be too small)...
    assert.ok(exact[i]! <= 1e-5, `z=${c.z}: exact δ at ε=${c.epsilon} is ${exact[i]}`);
    // ...and not absurdly below it: RDP loses a little, not orders of magnitude.
    assert.ok(exact[i]! > 1e-7, `z=${c.z}: exact δ ${exact[i]}`);
  });
});

// ---------------------------------------------------------------------------------------------
// Published values

test('dp_accounting test_compute_rdp_poisson_sampled_gaussian: q = 0.01, z = 2.5, 50 rounds', () => {
  const orders = [1.5, 2.5, 5, 50, 100];
  const expected = [6.70579741e-4, 1.0854871e-3, 2.18075656e-3, 2.38460375e-2, 1.67416308e2];
  const { rdp } = accountRounds({ mechanism: gaussian(2.5), samplingRate: 0.01, rounds: 50, delta: 1e-5, orders });
  // dp_accounting's tolerance is rtol 1e-4; the values are printed to 9 digits.
  rdp.forEach((r, i) => close(r, expected[i]!, 1e-8, `order ${orders[i]}`));
});

test('dp_accounting test_compute_epsilon_delta_pure_dp: constant RDP 1.1 over orders 2..32', () => {
  const orders = Array.from({ length: 31 }, (_, i) => i + 2);
  const rdp = orders.map(() => 1.1);
  const { epsilon, order } = epsilonFromRdp({ orders, rdp, delta: 1e-5 });
  close(epsilon, 1.32783806176, 1e-10, 'ε');
  assert.equal(order, 32);
  const back = deltaFromRdp({ orders, rdp, epsilon: 1.32783806176 });
  close(back.delta, 1e-5, 1e-9, 'δ');
  assert.equal(back.order, 32);
});

test('dp_accounting test_compute_epsilon_delta_gaussian: z = 4.530877117 is exactly (1, 1e-6)-DP over orders 1.000..99.999', () => {
  const orders = Array.from({ length: 99000 }, (_, i) => 0.001 * (i + 1000));
  const rdp = sampledGaussianRdp({ noiseMultiplier: 4.530877117, samplingRate: 1, orders });
  assert.ok(Math.abs(epsilonFromRdp({ orders, rdp, delta: 1e-6 }).epsilon - 1) < 5e-8);
  assert.ok(Math.abs(deltaFromRdp({ orders, rdp, epsilon: 1 }).delta - 1e-6) < 5e-8);
});

test('the inverse finds dp_accounting’s z = 4.530877117 for (1, 1e-6) over the same orders', () => {
  // The same 0.001 grid, cut to 15..30 around the optimal order (≈ 22) to keep the bisection quick.
  const orders = Array.from({ length: 15000 }, (_, i) => 0.001 * (i + 15000));
  const z = calibrateNoiseMultiplier({ epsilon: 1, delta: 1e-6, samplingRate: 1, rounds: 1, mechanismFor: gaussian, orders, tolerance: 1e-9 });
  close(z, 4.530877117, 1e-7, 'z');
});

test('dp_accounting test_log_a_frac_early_termination: q = 0.1, z = 1 leaves some orders out, ε stays finite', () => {
  const { rdp, epsilon } = accountRounds({ mechanism: gaussian(1), samplingRate: 0.1, rounds: 1, delta: 1e-5 });
  assert.ok(rdp.includes(Infinity));
  assert.ok(Number.isFinite(epsilon) && epsilon > 0);
});

test('dp_accounting test_log_a_frac_positive: q = 0.4, z = 12 around order 59 gives positive, continuous RDP', () => {
  const orders = Array.from({ length: 21 }, (_, i) => 58.5 + i / 20);
  const rdp = sampledGaussianRdp({ noiseMultiplier: 12, samplingRate: 0.4, orders });
  for (const r of rdp) assert.ok(r > 0);
  const at59 = sampledGaussianRdp({ noiseMultiplier: 12, samplingRate: 0.4, orders: [59] })[0]!;
  close(rdp[10]!, at59, 1e-9, 'fractional series at 59 vs binomial expansion');
});

test('the fractional series meets the binomial expansion at integer orders (many q, z)', () => {
  for (const [q, z] of [
    [1e-4, 0.8],
    [0.01, 1.1],
    [0.05, 4],
    [0.3, 0.9],
    [0.9, 2],
  ] as const) {
    for (const a of [2, 5, 12, 40]) {
      const [exact, below, above] = sampledGaussianRdp({ noiseMultiplier: z, samplingRate: q, orders: [a, a - 1e-7, a + 1e-7] });
      if (!Number.isFinite(below!) || !Number.isFinite(above!)) continue; // the series gave up (dp_accounting would too)
      close(below!, exact!, 1e-5, `q=${q} z=${z} α=${a}−`);
      close(above!, exact!, 1e-5, `q=${q} z=${z} α=${a}+`);
    }
  }
});

test('Abadi et al. 2016, Sec. 3.1: q = 0.01, σ = 4, T = 10000, δ = 1e-5 gives ε ≈ 1.26 with the moments accountant', () => {
  // Their accountant: integer moments λ = 1..32 (orders 2..33), δ = min exp(T·α(λ) − λε).
  const orders = Array.from({ length: 32 }, (_, i) => i + 2);
  const { rdp } = accountRounds({ mechanism: gaussian(4), samplingRate: 0.01, rounds: 10000, delta: 1e-5, orders });
  const moments = Math.min(...orders.map((a, i) => rdp[i]! + Math.log(1e5) / (a - 1)));
  assert.ok(Math.abs(moments - 1.26) < 0.005, `moments accountant ε = ${moments}`);
  // The Balle et al. conversion over the default orders can only do better.
  const ours = accountRounds({ mechanism: gaussian(4), samplingRate: 0.01, rounds: 10000, delta: 1e-5 }).epsilon;
  assert.ok(ours < moments);
});

// ---------------------------------------------------------------------------------------------
// Independent re-computation (Python, exact decimal sums)

test('sampled Gaussian RDP at integer orders equals an exact decimal binomial sum', { skip: NO_PYTHON }, () => {
  const cases: [number, number, number][] = [];
  for (const q of [1e-5, 0.001, 0.01, 0.2, 0.75]) for (const z of [0.5, 1, 1.1, 3, 20]) for (const a of [2, 3, 8, 33, 128]) cases.push([q, z, a]);
  const py = reference<number>(cases.map(([q, z, alpha]) => ({ kind: 'sgm', q, z, alpha })));
  cases.forEach(([q, z, a], i) => {
    const mine = sampledGaussianRdp({ noiseMultiplier: z, samplingRate: q, orders: [a] })[0]!;
    // RDP of 1e-13 is log(1 + 1e-13)/(α−1): the log of a double near 1 is exact only to ~1e-16 absolute.
    close(mine, py[i]!, 1e-9, `q=${q} z=${z} α=${a}`, 1e-15);
  });
});

test('fractional orders: the series is an upper bound on A_α by direct numerical integration, and a close one', { skip: NO_PYTHON }, () => {
  // (q, z, α) from dp_accounting's test_compute_log_a_equals_mp (the σ ≥ 1 rows: the integral is
  // then cheap in pure Python) and rows where the erfc tails carry weight (q large, z small).
  const cases: [number, number, number][] = [
    [1e-6, 1, 27],
    [1e-4, 1, 1.5],
    [1e-3, 1, 2],
    [0.01, 10, 20],
    [0.1, 100, 20.5],
    [0.999, 100, 256.1],
    [0.01, 2.5, 1.5],
    [0.01, 2.5, 2.5],
    [0.5, 1, 2.5],
    [0.3, 2, 7.5],
    [0.05, 1.5, 10.3],
  ];
  const py = reference<number>(cases.map(([q, z, alpha]) => ({ kind: 'sgm_integral', q, z, alpha })));
  cases.forEach(([q, z, a], i) => {
    const mine = sampledGaussianRdp({ noiseMultiplier: z, samplingRate: q, orders: [a] })[0]!;
    if (Number.isInteger(a)) close(mine, py[i]!, 1e-7, `q=${q} z=${z} α=${a} (integer: exact)`, 1e-15);
    else {
      // dp_accounting sums the series' terms in absolute value: never below the true value.
      assert.ok(mine >= py[i]! * (1 - 1e-9), `q=${q} z=${z} α=${a}: ${mine} below the integral ${py[i]}`);
      close(mine, py[i]!, 0.05, `q=${q} z=${z} α=${a}`);
    }
  });
});

test('log erfc matches Python’s math.erfc, and its asymptotic series past the underflow', { skip: NO_PYTHON }, () => {
  const xs = [-30, -6, -2.6, -2.5, -2.4, -1, -1e-3, 0, 1e-3, 0.5, 1, 2, 2.4, 2.5, 2.6, 3, 4, 6, 10, 19, 25, 40, 300, 1e5];
  const py = reference<number>(xs.map((x) => ({ kind: 'log_erfc', x })));
  xs.forEach((x, i) => close(logErfc(x), py[i]!, 1e-12, `x=${x}`, 1e-15));
});

test('Zhu–Wang Theorem 5 equals the decimal re-computation, and bounds the exact sampled Gaussian from above', { skip: NO_PYTHON }, () => {
  const cases: [number, number, number][] = [];
  for (const q of [0.001, 0.05, 0.5]) for (const z of [0.7, 1.5, 6]) for (const a of [2, 3, 9, 40]) cases.push([q, z, a]);
  const base = (z: number) => (l: number) => l / (2 * z * z);
  const requests = cases.flatMap(([q, z, alpha]) => [
    { kind: 'zw', q, alpha, eps: Array.from({ length: alpha - 1 }, (_, i) => base(z)(i + 2)) },
    { kind: 'sgm', q, z, alpha },
  ]);
  const py = reference<number>(requests);
  cases.forEach(([q, z, a], i) => {
    const zw = poissonSubsampledRdp({ samplingRate: q, order: a, baseRdp: base(z) });
    close(zw, py[2 * i]!, 1e-9, `ZW q=${q} z=${z} α=${a}`);
    assert.ok(zw >= py[2 * i + 1]! * (1 - 1e-12), `ZW ≥ exact at q=${q} z=${z} α=${a}`);
  });
  // Without sampling it is the mechanism itself; with nothing sampled, nothing is released.
  assert.equal(poissonSubsampledRdp({ samplingRate: 1, order: 7, baseRdp: base(2) }), 7 / 8);
  assert.equal(poissonSubsampledRdp({ samplingRate: 0, order: 7, baseRdp: base(2) }), 0);
});

test('distributed discrete Gaussian (Prop. 14) and Skellam bounds equal the Python re-computation, sampled and not', { skip: NO_PYTHON }, () => {
  const setups = [
    { kind: 'dgauss', noiseMultiplier: 0.9, l2Clip: 0.5, dimension: 4096, bits: 12, clients: 20 },
    { kind: 'dgauss', noiseMultiplier: 0.05, l2Clip: 1, dimension: 16, bits: 10, clients: 3 }, // σ ≈ 0.7: τ matters
    { kind: 'skellam', noiseMultiplier: 1.2, l2Clip: 2, dimension: 100_000, bits: 14, clients: 200 },
    { kind: 'skellam', noiseMultiplier: 0.7, l2Clip: 1, dimension: 8, bits: 8, clients: 2 },
  ] as const;
  const orders = [2, 3, 10, 64];
  for (const setup of setups) {
    const { mechanism: m } = discreteMechanism(setup);
    const base = (alpha: number) =>
      m.kind === 'dgauss'
        ? { kind: 'dgauss', alpha, d: m.dimension, l1: m.l1Sensitivity, l2: m.l2Sensitivity, sigma: m.localStddev, n: m.clients }
        : m.kind === 'skellam'
          ? { kind: 'skellam', alpha, l1: m.l1Sensitivity, l2: m.l2Sensitivity, mu: m.variance }
          : assert.fail('discrete');
    const unsampled = reference<number | { rdp: number; tau: number }>(Array.from({ length: 63 }, (_, i) => base(i + 2)));
    const eps = unsampled.map((u) => (typeof u === 'number' ? u : u.rdp));
    if (m.kind === 'dgauss') close(distributedDiscreteGaussianTau(m), (unsampled[0] as { tau: number }).tau, 1e-12, 'τ');
    const mine = mechanismRdp({ mechanism: m, samplingRate: 1, orders });
    orders.forEach((a, i) => close(mine[i]!, eps[a - 2]!, 1e-12, `${setup.kind} α=${a}`));
    const q = 0.02;
    const zw = reference<number>(orders.map((alpha) => ({ kind: 'zw', q, alpha, eps: eps.slice(0, alpha - 1) })));
    const sampled = mechanismRdp({ mechanism: m, samplingRate: q, orders });
    orders.forEach((a, i) => close(sampled[i]!, Math.min(zw[i]!, eps[a - 2]!), 1e-9, `${setup.kind} q=${q} α=${a}`));
  }
});

test('the conversion equals the Python re-computation on a composed run', { skip: NO_PYTHON }, () => {
  const run = accountRounds({ mechanism: gaussian(0.9), samplingRate: 0.003, rounds: 20_000, delta: 1e-6, orders: INTEGER_DEFAULT_ORDERS });
  const rdp = reference<number>(INTEGER_DEFAULT_ORDERS.map((alpha) => ({ kind: 'sgm', q: 0.003, z: 0.9, alpha }))).map((r) => r * 20_000);
  const [py] = reference<{ epsilon: number; order: number }>([{ kind: 'eps', orders: INTEGER_DEFAULT_ORDERS, rdp, delta: 1e-6 }]);
  close(run.epsilon, py!.epsilon, 1e-9, 'ε');
  assert.equal(run.order, py!.order);
});

// ---------------------------------------------------------------------------------------------
// The discrete mechanisms: hand-checkable cases and the continuous limit

test('Skellam by hand: α=2, Δ₁=Δ₂=1, μ=1 → 1 + min(9/4, 3/2) = 2.5; α=3, Δ₁=Δ₂=2, μ=4 → 1.5 + min(1/2, 3/4) = 2', () => {
  assert.equal(mechanismRdp({ mechanism: { kind: 'skellam', l1Sensitivity: 1, l2Sensitivity: 1, variance: 1 }, orders: [2] })[0], 2.5);
  assert.equal(mechanismRdp({ mechanism: { kind: 'skellam', l1Sensitivity: 2, l2Sensitivity: 2, variance: 4 }, orders: [3] })[0], 2);
});

test('distributed discrete Gaussian by hand: n = 1 is the Gaussian bound, n = 2 adds τ = 10·e^(−π²σ²)', () => {
  // n = 1: τ is an empty sum, the bound is α·Δ₂²/(2σ²) = 4·4/8.
  const one: Mechanism = { kind: 'dgauss', dimension: 3, l2Sensitivity: 2, l1Sensitivity: 4, localStddev: 2, clients: 1 };
  assert.equal(distributedDiscreteGaussianTau(one as { localStddev: number; clients: number }), 0);
  assert.equal(mechanismRdp({ mechanism: one, orders: [4] })[0], 2);
  // n = 2, σ = 1/2: k = 1 gives e^(−2π²σ²/2) = e^(−π²/4). With d = 1, Δ₁ = Δ₂ = 1, α = 2, S = √2/2:
  // α·Δ₂²/(2S²) + τd = 2 + τ beats (α/2)(Δ₂/S + τ)² = (√2 + τ)² = 2 + 2√2τ + τ².
  const tau = 10 * Math.exp(-(Math.PI ** 2) / 4);
  const two: Mechanism = { kind: 'dgauss', dimension: 1, l2Sensitivity: 1, l1Sensitivity: 1, localStddev: 0.5, clients: 2 };
  close(distributedDiscreteGaussianTau({ localStddev: 0.5, clients: 2 }), tau, 1e-15, 'τ');
  close(mechanismRdp({ mechanism: two, orders: [2] })[0]!, 2 + tau, 1e-15, 'n=2');
  // d = 10⁴, σ = 1, Δ₂ = Δ₁ = 1: τ = 10e^(−π²) and the middle term wins: (1/2 + √2τ + 10⁴τ²) at α = 2.
  const t = 10 * Math.exp(-(Math.PI ** 2));
  const wide: Mechanism = { kind: 'dgauss', dimension: 10_000, l2Sensitivity: 1, l1Sensitivity: 1, localStddev: 1, clients: 2 };
  close(mechanismRdp({ mechanism: wide, orders: [2] })[0]!, 0.5 + Math.SQRT2 * t + 1e4 * t * t, 1e-13, 'middle term');
});

test('fine quantisation: as bits grow the discrete mechanisms’ ε tends to the Gaussian’s, from above', () => {
  for (const q of [1, 0.02]) {
    // Gaussian on the same (integer) orders; with q < 1 the discrete ones are amplified by Zhu–Wang
    // Theorem 5, so their limit is that bound applied to the Gaussian.
    const z = 1.1;
    const gauss =
      q === 1
        ? accountRounds({ mechanism: gaussian(z), samplingRate: 1, rounds: 100, delta: 1e-5, orders: INTEGER_DEFAULT_ORDERS }).epsilon
        : epsilonFromRdp({
            orders: INTEGER_DEFAULT_ORDERS,
            rdp: INTEGER_DEFAULT_ORDERS.map(
              (a) => 100 * Math.min(a / (2 * z * z), poissonSubsampledRdp({ samplingRate: q, order: a, baseRdp: (l) => l / (2 * z * z) })),
            ),
            delta: 1e-5,
          }).epsilon;
    for (const kind of ['skellam', 'dgauss'] as const) {
      let last = Infinity;
      for (const bits of [10, 14, 18, 24, 32, 40]) {
        const { mechanism } = discreteMechanism({ kind, noiseMultiplier: z, l2Clip: 1, dimension: 512, bits, clients: 64 });
        const eps = accountRounds({ mechanism, samplingRate: q, rounds: 100, delta: 1e-5 }).epsilon;
        assert.ok(eps >= gauss * (1 - 1e-12), `${kind} q=${q} b=${bits}: ${eps} < Gaussian ${gauss}`);
        assert.ok(eps < last, `${kind} q=${q} b=${bits}: not decreasing`);
        last = eps;
      }
      close(last, gauss, 1e-6, `${kind} q=${q} at 40 bits`);
    }
  }
});

test('the scale from bits is what the stated heuristic gives, and the integer parameters follow it', () => {
  const setup = { kind: 'dgauss', noiseMultiplier: 2, l2Clip: 0.5, dimension: 100, bits: 12, clients: 9 } as const;
  const { mechanism, scale } = discreteMechanism(setup);
  // 2^b = 2k·√(c²n²/d + n/(4s²) + (zc)²)·s with k = 4: check the equation, not the solution formula.
  const lhs = 2 * 4 * Math.sqrt((0.25 * 81) / 100 + 9 / (4 * scale * scale) + 1) * scale;
  close(lhs, 4096, 1e-12, '2^b');
  assert.equal(mechanism.kind, 'dgauss');
  if (mechanism.kind !== 'dgauss') return;
  close(mechanism.l2Sensitivity, scale * 0.5 + 10, 1e-15, 'Δ₂ = s·c + √d');
  close(mechanism.l1Sensitivity, 10 * (scale * 0.5 + 10), 1e-15, 'Δ₁ = √d·Δ₂ (< Δ₂² here)');
  close(mechanism.localStddev * 3, scale * 2 * 0.5, 1e-15, '√n·σ = s·z·c');
});

// ---------------------------------------------------------------------------------------------
// The inverse, and bad input

test('calibration returns a z that meets the target and is minimal (bisection on a monotone ε)', () => {
  for (const [eps, q, R] of [
    [1, 0.01, 1000],
    [8, 0.1, 50],
    [0.5, 1, 1],
  ] as const) {
    const z = calibrateNoiseMultiplier({ epsilon: eps, delta: 1e-5, samplingRate: q, rounds: R, mechanismFor: gaussian });
    const at = (x: number) => accountRounds({ mechanism: gaussian(x), samplingRate: q, rounds: R, delta: 1e-5 }).epsilon;
    assert.ok(at(z) <= eps, `ε(${z}) = ${at(z)} > ${eps}`);
    assert.ok(at(z * (1 - 1e-5)) > eps, `z = ${z} is not minimal`);
  }
  assert.throws(
    () => calibrateNoiseMultiplier({ epsilon: 1e-6, delta: 1e-5, samplingRate: 1, rounds: 1, mechanismFor: gaussian, upper: 10 }),
    /not reached even at noise multiplier 10/,
  );
});

test('bad input is a TypeError or RangeError naming the parameter', () => {
  const cases: [() => unknown, ErrorConstructor, RegExp][] = [
    [() => sampledGaussianRdp({ noiseMultiplier: 0, samplingRate: 0.1 }), RangeError, /noiseMultiplier/],
    [() => sampledGaussianRdp({ noiseMultiplier: 1, samplingRate: 1.5 }), RangeError, /samplingRate/],
    [() => sampledGaussianRdp({ noiseMultiplier: '1' as unknown as number, samplingRate: 0.1 }), TypeError, /noiseMultiplier/],
    [() => sampledGaussianRdp({ noiseMultiplier: 1, samplingRate: 0.1, orders: [0.5] }), RangeError, /orders\[0\]/],
    [() => accountRounds({ mechanism: gaussian(1), samplingRate: 0.1, rounds: 1.5, delta: 1e-5 }), RangeError, /rounds/],
    [() => accountRounds({ mechanism: gaussian(1), samplingRate: 0.1, rounds: 1, delta: 0 }), RangeError, /delta/],
    [() => accountRounds({ mechanism: { kind: 'laplace' } as unknown as Mechanism, samplingRate: 0.1, rounds: 1, delta: 1e-5 }), RangeError, /mechanism\.kind/],
    [
      () => mechanismRdp({ mechanism: { kind: 'dgauss', dimension: 1, l2Sensitivity: 1, l1Sensitivity: 1, localStddev: 0.4, clients: 2 } }),
      RangeError,
      /localStddev must be ≥ 1\/2/,
    ],
    [() => mechanismRdp({ mechanism: { kind: 'skellam', l2Sensitivity: 1, l1Sensitivity: 1, variance: -1 } }), RangeError, /mechanism\.variance/],
    [() => poissonSubsampledRdp({ samplingRate: 0.1, order: 2.5, baseRdp: (l) => l }), RangeError, /order/],
    [() => discreteMechanism({ kind: 'skellam', noiseMultiplier: 1, l2Clip: 1, dimension: 10, bits: 4, clients: 100 }), RangeError, /bits/],
    [() => epsilonFromRdp({ orders: [2, 3], rdp: [1], delta: 1e-5 }), RangeError, /one value per order/],
  ];
  for (const [f, type, message] of cases) assert.throws(f, (e: unknown) => e instanceof type && message.test((e as Error).message), String(message));
});
