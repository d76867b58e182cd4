/**
 * dp/ rotation and rounding: the Hadamard rotation against an explicit O(D²) matrix built here from
 * SHAKE128 directly (the documented derivation of the signs), orthogonality and exact inversion to
 * float precision, determinism in the seed; conditional rounding's bound (always), its formula, and
 * unbiasedness (z-tests, |z| < 5 per coordinate: false alarm ≤ 64 × 5.7e−7 for the suite of 64).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { shake128 } from '@noble/hashes/sha3.js';
import { conditionalRound, fwht, hadamardSigns, inflatedNormBound, paddedLength, rotate, unrotate } from '../src/dp/index.js';
import { isSecAggError } from '../src/errors.js';
import { unsafeSeededRng } from '../src/rng.js';
import { unsafeFastSeededRng, Z_LIMIT } from './dpStats.js';

const seedA = Uint8Array.from({ length: 32 }, (_, i) => i);
const seedB = Uint8Array.from({ length: 32 }, (_, i) => 255 - i);

function gaussians(n: number, seed: number): Float64Array {
  const b = unsafeSeededRng(seed)(8 * n);
  const w = new Uint32Array(b.buffer, b.byteOffset, 2 * n);
  return Float64Array.from({ length: n }, (_, i) => Math.sqrt(-2 * Math.log((w[2 * i]! + 1) / 2 ** 32)) * Math.cos((2 * Math.PI * w[2 * i + 1]!) / 2 ** 32));
}
const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, x, i) => s + x * b[i]!, 0);
const popcount = (x: number) => {
  let c = 0;
  for (; x; x &= x - 1) c++;
  return c;
};

test('paddedLength: the next power of two', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 1000, 1024, 1025].map(paddedLength), [1, 1, 2, 4, 4, 8, 1024, 1024, 2048]);
  assert.throws(() => paddedLength(-1), RangeError);
  assert.throws(() => paddedLength(2 ** 26 + 1), RangeError);
});

test('fwht equals the product with the Hadamard matrix H_jk = (−1)^popcount(j AND k), exactly on integers', () => {
  for (const d of [1, 2, 4, 8, 16, 64]) {
    const x = Float64Array.from({ length: d }, (_, i) => ((i * 7919) % 23) - 11);
    const want = new Float64Array(d);
    for (let j = 0; j < d; j++) for (let k = 0; k < d; k++) want[j]! += (popcount(j & k) % 2 ? -1 : 1) * x[k]!;
    assert.deepEqual(fwht(Float64Array.from(x)), want, `d = ${d}`);
  }
  assert.throws(() => fwht(new Float64Array(3)), /power of two/);
});

test('the signs are SHAKE128("secagg/dp/hadamard-signs/v1" ‖ seed), LSB first, 1 → −1; deterministic, different across seeds', () => {
  const D = 4096;
  const label = new TextEncoder().encode('secagg/dp/hadamard-signs/v1');
  const bits = shake128(new Uint8Array([...label, ...seedA]), { dkLen: D / 8 });
  const want = Float64Array.from({ length: D }, (_, i) => ((bits[i >> 3]! >> (i % 8)) & 1 ? -1 : 1));
  assert.deepEqual(hadamardSigns({ seed: seedA, length: D }), want);
  assert.deepEqual(hadamardSigns({ seed: seedA, length: D }), hadamardSigns({ seed: Uint8Array.from(seedA), length: D }));
  // A shorter length is a prefix.
  assert.deepEqual(hadamardSigns({ seed: seedA, length: 100 }), want.subarray(0, 100));
  // Another seed: the signs agree in ~half the places. Bin(4096, 1/2) within ±7 sd (false alarm ~1e−12).
  const other = hadamardSigns({ seed: seedB, length: D });
  const agree = other.reduce((s, x, i) => s + (x === want[i] ? 1 : 0), 0);
  assert.ok(Math.abs(agree - D / 2) < 7 * 32, `agree ${agree}`);
  const minus = want.reduce((s, x) => s + (x < 0 ? 1 : 0), 0);
  assert.ok(Math.abs(minus - D / 2) < 7 * 32, `minus ${minus}`);
  assert.throws(() => hadamardSigns({ seed: new Uint8Array(15), length: 8 }), /seed/);
  assert.throws(() => hadamardSigns({ seed: 'abc' as never, length: 8 }), /seed/);
});

test('rotate equals the explicit matrix (1/√D)·H·S, and unrotate its transpose', () => {
  for (const D of [1, 2, 8, 32]) {
    const s = hadamardSigns({ seed: seedA, length: D });
    const x = gaussians(D, D);
    const want = new Float64Array(D);
    for (let j = 0; j < D; j++) for (let k = 0; k < D; k++) want[j]! += ((popcount(j & k) % 2 ? -1 : 1) * s[k]! * x[k]!) / Math.sqrt(D);
    const got = rotate({ values: x, seed: seedA });
    for (let j = 0; j < D; j++) assert.ok(Math.abs(got[j]! - want[j]!) < 1e-13, `D = ${D}, j = ${j}`);
    const back = new Float64Array(D);
    for (let k = 0; k < D; k++) for (let j = 0; j < D; j++) back[k]! += ((popcount(j & k) % 2 ? -1 : 1) * s[k]! * got[j]!) / Math.sqrt(D);
    const inv = unrotate({ values: got, seed: seedA });
    for (let k = 0; k < D; k++) assert.ok(Math.abs(inv[k]! - back[k]!) < 1e-13);
  }
});

test('the rotation is orthogonal: norms and inner products preserved, and it inverts, to float precision', () => {
  for (const D of [1, 2, 16, 1024, 65536]) {
    const x = gaussians(D, 1 + D);
    const y = gaussians(D, 2 + D);
    const rx = rotate({ values: x, seed: seedB });
    const ry = rotate({ values: y, seed: seedB });
    const nx = Math.sqrt(dot(x, x));
    const ny = Math.sqrt(dot(y, y));
    const tol = 1e-14 * (Math.log2(D) + 2) * Math.sqrt(D);
    assert.ok(Math.abs(Math.sqrt(dot(rx, rx)) - nx) <= tol * nx, `norm D = ${D}`);
    assert.ok(Math.abs(dot(rx, ry) - dot(x, y)) <= tol * nx * ny, `inner product D = ${D}`);
    const back = unrotate({ values: rx, seed: seedB });
    let err = 0;
    for (let i = 0; i < D; i++) err = Math.max(err, Math.abs(back[i]! - x[i]!));
    assert.ok(err <= 1e-14 * (Math.log2(D) + 2) * nx, `round trip D = ${D}: ${err}`);
    // A different seed is a different rotation.
    if (D > 1) assert.notDeepEqual(rotate({ values: x, seed: seedA }), rx);
  }
  // The input is not modified.
  const x = gaussians(8, 3);
  const copy = Float64Array.from(x);
  rotate({ values: x, seed: seedA });
  assert.deepEqual(x, copy);
});

test('inflatedNormBound is the KLS formula: min(c + √D, √(c² + D/4 + √(2 ln 1/β)·(c + √D/2)))', () => {
  // c = 1000, D = 1024, β = e^−1/2 (√(2 ln 1/β) = 1): √(10^6 + 256 + 1016) = √1001272.
  assert.ok(Math.abs(inflatedNormBound({ l2Bound: 1000, dimension: 1024 }) - Math.sqrt(1001272)) < 1e-9);
  // β = 0: c + √D.
  assert.equal(inflatedNormBound({ l2Bound: 1000, dimension: 1024, beta: 0 }), 1032);
  // c = 1, D = 10^6, β = e^−2 (√(2 ln e²) = 2): √(1 + 250000 + 2·(1 + 500)) ≈ 501 < c + √D = 1001.
  assert.ok(Math.abs(inflatedNormBound({ l2Bound: 1, dimension: 1e6, beta: Math.exp(-2) }) - Math.sqrt(1 + 250000 + 2 * 501)) < 1e-9);
  assert.equal(inflatedNormBound({ l2Bound: 0.1, dimension: 4, beta: 1e-300 }), 2.1);
  assert.throws(() => inflatedNormBound({ l2Bound: 1, dimension: 4, beta: 1 }), /beta/);
  assert.throws(() => inflatedNormBound({ l2Bound: -1, dimension: 4 }), /l2Bound/);
});

test('conditional rounding: every output is ⌊x⌋ or ⌈x⌉ per coordinate and within the bound (property)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 64 }),
      fc.double({ min: 0.1, max: 1000, noNaN: true }),
      fc.constantFrom(0, Math.exp(-0.5), 0.9, 0.999),
      fc.integer({ min: 0, max: 1e6 }),
      (D, c, beta, seed) => {
        const g = gaussians(D, seed);
        const n = Math.sqrt(dot(g, g)) || 1;
        const x = g.map((v) => (v / n) * c);
        const bound = inflatedNormBound({ l2Bound: c, dimension: D, beta });
        const r = conditionalRound({ values: x, bound, rng: unsafeSeededRng(seed) });
        assert.ok(r.norm <= bound && Math.sqrt(dot(r.values, r.values)) <= bound);
        for (let i = 0; i < D; i++) assert.ok(r.values[i] === Math.floor(x[i]!) || r.values[i] === Math.ceil(x[i]!));
      },
    ),
    { numRuns: 300 },
  );
});

test('conditional rounding redraws: with a tight bound every output is inside it', () => {
  // x = (0.5, …, 0.5) in 16 coordinates; ‖x̃‖² = #ones ~ Bin(16, 1/2); bound 2 accepts ≤ 4 ones (p = 2517/65536).
  const x = new Float64Array(16).fill(0.5);
  let attempts = 0;
  const rng = unsafeFastSeededRng(11);
  for (let k = 0; k < 200; k++) {
    const r = conditionalRound({ values: x, bound: 2, rng });
    assert.ok(r.values.reduce((s, v) => s + v, 0) <= 4);
    attempts += r.attempts;
  }
  // Mean attempts 65536/2517 ≈ 26.0, sd of the mean of 200 geometric ≈ 1.8: within ±5 sd.
  assert.ok(Math.abs(attempts / 200 - 65536 / 2517) < 5 * 1.8, `attempts ${attempts / 200}`);
  // An impossible bound: typed error after maxAttempts.
  assert.throws(
    () => conditionalRound({ values: Float64Array.of(1.5), bound: 0.9, rng, maxAttempts: 50 }),
    (e: unknown) => isSecAggError(e, 'ERR_INTERNAL'),
  );
  assert.throws(() => conditionalRound({ values: Float64Array.of(Number.NaN), bound: 1 }), /values\[0\]/);
  assert.throws(() => conditionalRound({ values: Float64Array.of(1), bound: 0 }), /bound/);
});

test('conditional rounding is unbiased: 20,000 roundings of a vector at the clip norm', () => {
  const D = 64;
  const R = 20000;
  const c = 20;
  const g = gaussians(D, 99);
  const n = Math.sqrt(dot(g, g));
  const x = g.map((v) => (v / n) * c);
  const bound = inflatedNormBound({ l2Bound: c, dimension: D });
  const sum = new Float64Array(D);
  let redraws = 0;
  const rng = unsafeFastSeededRng(12);
  for (let k = 0; k < R; k++) {
    const r = conditionalRound({ values: x, bound, rng });
    redraws += r.attempts - 1;
    for (let i = 0; i < D; i++) sum[i]! += r.values[i]!;
  }
  // Conditioning can shift a coordinate's mean by at most P[reject]/(1 − P[reject]); allow it on top.
  const reject = redraws / (R + redraws);
  for (let i = 0; i < D; i++) {
    const p = x[i]! - Math.floor(x[i]!);
    const sd = Math.sqrt((p * (1 - p)) / R) || 1e-12;
    const bias = Math.abs(sum[i]! / R - x[i]!);
    assert.ok(bias <= Z_LIMIT * sd + reject / (1 - reject) + 1e-9, `coordinate ${i}: bias ${bias}, sd ${sd}, reject ${reject}`);
  }
});
