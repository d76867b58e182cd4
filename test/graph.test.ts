import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { sha256 } from '@noble/hashes/sha2.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { chacha20 } from '@noble/ciphers/chacha.js';
import { buildGraph, checkParameters, defaultThreshold, recommendParameters, type NeighbourGraph } from '../src/graph/index.js';
import { seededPermutation } from '../src/graph/harary.js';
import { recommendParametersForAnalysis } from '../src/graph/params.js';
import { isSecAggError } from '../src/errors.js';
import type { ClientId } from '../src/ids.js';

const ids = (xs: readonly number[]): ClientId[] => xs as ClientId[];
const range = (n: number, start = 1): ClientId[] => ids(Array.from({ length: n }, (_, i) => i + start));
const seedOf = (i: number): Uint8Array => sha256(new TextEncoder().encode(`seed ${i}`));

function expectedDegree(n: number, k: number | 'complete'): number {
  if (k === 'complete' || k >= n - 1) return n - 1;
  if (k % 2 === 1 && n % 2 === 1) return Math.min(k + 1, n - 1);
  return k;
}

function assertWellFormed(g: NeighbourGraph, clients: readonly number[], k: number | 'complete'): void {
  const n = clients.length;
  assert.deepEqual(
    [...g.clients],
    [...clients].sort((a, b) => a - b),
  );
  assert.equal(g.degree, expectedDegree(n, k));
  let edgeEnds = 0;
  for (const u of g.clients) {
    const nb = g.neighbours(u);
    assert.equal(nb.length, g.degree, `degree of ${u}`);
    assert.ok(!nb.includes(u), `self loop at ${u}`);
    for (let i = 1; i < nb.length; i++) assert.ok(nb[i - 1]! < nb[i]!, `neighbours of ${u} not strictly ascending`);
    const set = new Set<number>(nb);
    for (const v of g.clients) {
      assert.equal(g.isNeighbour(u, v), set.has(v), `isNeighbour(${u},${v}) disagrees with neighbours()`);
      assert.equal(g.isNeighbour(u, v), g.isNeighbour(v, u), `asymmetric ${u},${v}`);
      if (set.has(v)) assert.ok(g.neighbours(v).includes(u), `${v} lacks ${u}`);
    }
    edgeEnds += nb.length;
  }
  assert.equal(edgeEnds, n * g.degree);
  // Connected: breadth-first search from the first client reaches everyone.
  const first = g.clients[0]!;
  const seen = new Set<number>([first]);
  const queue: ClientId[] = [first];
  while (queue.length > 0) {
    const u = queue.shift()!;
    for (const v of g.neighbours(u)) if (!seen.has(v)) seen.add(v), queue.push(v);
  }
  assert.equal(seen.size, n, 'graph is not connected');
}

describe('buildGraph', () => {
  it('is k-regular, symmetric, loop-free and connected for many (n, k), including odd k', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 65535 }), { minLength: 2, maxLength: 60 }),
        fc.integer({ min: 2, max: 70 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        (clients, k, seed) => {
          assertWellFormed(buildGraph({ clients: ids(clients), degree: k, seed }), clients, k);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('handles the parity cases explicitly', () => {
    const seed = seedOf(1);
    // degree 1 is only the complete graph on two clients
    assert.equal(buildGraph({ clients: range(2), degree: 1, seed }).kind, 'complete');
    // odd k, even n: antipode edge
    const g1 = buildGraph({ clients: range(10), degree: 3, seed });
    assert.equal(g1.kind, 'harary');
    assertWellFormed(g1, range(10), 3);
    // odd k, odd n: rounded up to k + 1
    const g2 = buildGraph({ clients: range(11), degree: 3, seed });
    assert.equal(g2.degree, 4);
    assertWellFormed(g2, range(11), 3);
    // odd k, odd n, k + 1 = n − 1: becomes complete
    const g3 = buildGraph({ clients: range(9), degree: 7, seed });
    assert.equal(g3.kind, 'complete');
    assert.equal(g3.degree, 8);
  });

  it('gives the identical graph for the same seed and a different one for another seed', () => {
    const clients = range(200);
    const a = buildGraph({ clients, degree: 6, seed: seedOf(7) });
    const b = buildGraph({ clients, degree: 6, seed: seedOf(7) });
    const c = buildGraph({ clients, degree: 6, seed: seedOf(8) });
    const lists = (g: NeighbourGraph) => g.clients.map((u) => [...g.neighbours(u)]);
    assert.deepEqual(lists(a), lists(b));
    assert.notDeepEqual(lists(a), lists(c));
  });

  it('does not depend on the order the clients are listed in', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 65535 }), { minLength: 3, maxLength: 80 }),
        fc.integer({ min: 2, max: 20 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.integer(),
        (clients, k, seed, salt) => {
          const shuffled = [...clients].sort((x, y) => (((x * 2654435761) ^ salt) % 97) - (((y * 2654435761) ^ salt) % 97));
          const g1 = buildGraph({ clients: ids(clients), degree: k, seed });
          const g2 = buildGraph({ clients: ids(shuffled), degree: k, seed });
          for (const u of g1.clients) assert.deepEqual(g1.neighbours(u), g2.neighbours(u));
        },
      ),
      { numRuns: 100 },
    );
  });

  it('builds the complete graph for "complete" and for k ≥ n − 1, without an n² structure', () => {
    const seed = seedOf(2);
    for (const degree of ['complete', 4, 5, 1000] as const) {
      const g = buildGraph({ clients: range(5, 100), degree, seed });
      assert.equal(g.kind, 'complete');
      assertWellFormed(g, range(5, 100), degree);
    }
    const big = buildGraph({ clients: range(65535), degree: 'complete', seed });
    assert.equal(big.degree, 65534);
    const nb = big.neighbours(32768 as ClientId);
    assert.equal(nb.length, 65534);
    assert.ok(!nb.includes(32768 as ClientId));
    assert.ok(big.isNeighbour(1, 65535));
    assert.ok(!big.isNeighbour(1, 1));
    assert.ok(!big.isNeighbour(1, 65536));
  });

  it('handles n = 65535 sparse and n = 1000, k = 100 quickly', () => {
    let t0 = performance.now();
    const g = buildGraph({ clients: range(1000), degree: 100, seed: seedOf(3) });
    const buildMs = performance.now() - t0;
    assert.ok(buildMs < 50, `n=1000 build took ${buildMs} ms`);
    t0 = performance.now();
    const big = buildGraph({ clients: range(65535), degree: 200, seed: seedOf(3) });
    assert.ok(performance.now() - t0 < 1000);
    for (const u of [1, 2, 40000, 65535] as ClientId[]) {
      const nb = big.neighbours(u);
      assert.equal(nb.length, 200);
      for (const v of nb) assert.ok(big.isNeighbour(v, u));
    }
    assert.equal(g.neighbours(1 as ClientId).length, 100);
  });

  it('places a fixed client uniformly (chi-square over many seeds)', () => {
    const n = 8;
    const trials = 8000;
    const counts = new Array<number>(n).fill(0);
    const perms = new Map<string, number>();
    for (let s = 0; s < trials; s++) {
      const perm = seededPermutation(range(n), seedOf(1000 + s));
      counts[perm.indexOf(1)]!++;
      if (s < 4800) {
        const p4 = seededPermutation(range(4), seedOf(1000 + s)).join(',');
        perms.set(p4, (perms.get(p4) ?? 0) + 1);
      }
    }
    const chi = (obs: number[], expected: number) => obs.reduce((a, o) => a + (o - expected) ** 2 / expected, 0);
    // df = 7: P[χ² > 30] ≈ 1e-4. A stuck or biased shuffle gives thousands.
    assert.ok(chi(counts, trials / n) < 30, `position chi² = ${chi(counts, trials / n)}`);
    // All 24 permutations of 4 appear, df = 23: P[χ² > 60] ≈ 4e-5.
    assert.equal(perms.size, 24);
    assert.ok(chi([...perms.values()], 4800 / 24) < 60);
  });

  it('rejects bad inputs', () => {
    const seed = seedOf(4);
    const bad: Array<[unknown, unknown, unknown]> = [
      [[1], 2, seed],
      [[], 2, seed],
      [[1, 2, 2], 2, seed],
      [[0, 1, 2], 2, seed],
      [[1, 2, 65536], 2, seed],
      [[1, 2, 3.5], 2, seed],
      [[1, 2, '3'], 2, seed],
      ['1,2,3', 2, seed],
      [[1, 2, 3], 0, seed],
      [[1, 2, 3, 4], 1, seed],
      [[1, 2, 3], -2, seed],
      [[1, 2, 3], 1.5, seed],
      [[1, 2, 3], 'sparse', seed],
      [[1, 2, 3], 2, new Uint8Array(31)],
      [[1, 2, 3], 2, 'seed'],
    ];
    for (const [clients, degree, s] of bad) assert.throws(() => buildGraph({ clients, degree, seed: s } as never), /./, JSON.stringify([clients, degree]));
    const g = buildGraph({ clients: range(10), degree: 2, seed });
    assert.throws(() => g.neighbours(11 as ClientId), RangeError);
    assert.equal(g.isNeighbour(1, 11), false);
    assert.equal(g.has(11), false);
  });
});

// --- independent exact check of the parameter bounds (BigInt, no logs, no shared code) -----------

const choose = (() => {
  const memo = new Map<string, bigint>();
  return (a: number, b: number): bigint => {
    if (b < 0 || b > a) return 0n;
    b = Math.min(b, a - b);
    const key = `${a},${b}`;
    let r = memo.get(key);
    if (r === undefined) {
      r = 1n;
      for (let i = 1; i <= b; i++) r = (r * BigInt(a - b + i)) / BigInt(i);
      memo.set(key, r);
    }
    return r;
  };
})();

/** Numerator of P[X ≥ t] over the common denominator C(N, k), X ~ Hypergeometric(N, K, k). */
function tailNumerator(N: number, K: number, k: number, t: number): bigint {
  let s = 0n;
  for (let x = Math.max(t, 0); x <= Math.min(k, K); x++) s += choose(K, x) * choose(N - K, k - x);
  return s;
}

/** Whether (k, t) meets the stated bounds, evaluated exactly. */
function exactlyOk(n: number, A: number, D: number, k: number, t: number, sigma: number, eta: number, malicious: boolean): boolean {
  const N = n - 1;
  const den = choose(N, k);
  const cut = malicious ? 2 * t - k : t;
  const corruptOk = BigInt(n) * tailNumerator(N, A, k, cut) * 2n ** BigInt(sigma + 1) <= den;
  const liveOk = BigInt(n) * tailNumerator(N, D, k, k - t + 1) * 2n ** BigInt(eta) <= den;
  let discOk = true;
  const B = A + D;
  if (k < n - 1 && B >= k && n - k - 1 >= 1) {
    // n(n−k−1)/2 · C(n−k, B−k)/C(n, B) < 2^−(σ+1)
    discOk = BigInt(n) * BigInt(n - k - 1) * choose(n - k, B - k) * 2n ** BigInt(sigma + 1) < 2n * choose(n, B);
  }
  return corruptOk && liveOk && discOk && t >= 2;
}

describe('recommendParameters', () => {
  const grid: Array<[number, number, number]> = [];
  for (const n of [100, 300]) for (const d of [0.05, 0.1, 0.3]) for (const g of [0, 0.1, 1 / 3]) grid.push([n, d, g]);

  for (const model of ['semi-honest', 'semi-malicious'] as const) {
    it(`${model}: (k, t) meets its own bounds exactly, and k − 2 meets them for no t`, () => {
      for (const [n, d, g] of grid) {
        const r = recommendParameters({ clients: n, dropoutRate: d, corruptionRate: g, securityBits: 40, correctnessBits: 30, model });
        const A = Math.ceil(g * n - 1e-9);
        const D = Math.ceil(d * n - 1e-9);
        assert.equal(r.corruptClients, A);
        assert.equal(r.droppedClients, D);
        const mal = model === 'semi-malicious';
        const label = `n=${n} δ=${d} γ=${g}: k=${r.degree} t=${r.threshold}`;
        for (let t = r.thresholdRange.min; t <= r.thresholdRange.max; t++) assert.ok(exactlyOk(n, A, D, r.degree, t, 40, 30, mal), `${label} fails at t=${t}`);
        if (r.thresholdRange.min > 2) assert.ok(!exactlyOk(n, A, D, r.degree, r.thresholdRange.min - 1, 40, 30, mal), `${label}: t_min not minimal`);
        assert.ok(!exactlyOk(n, A, D, r.degree, r.thresholdRange.max + 1, 40, 30, mal) || r.thresholdRange.max === r.degree, `${label}: t_max not maximal`);
        assert.ok(r.log2TooManyCorrupt <= -41 + 1e-9 && r.log2TooFewLive <= -30 + 1e-9 && r.log2Disconnected < -41, label);
        if (!r.complete && r.degree > 2) {
          for (let t = 1; t <= r.degree - 2; t++) assert.ok(!exactlyOk(n, A, D, r.degree - 2, t, 40, 30, mal), `${label}: k−2 would do with t=${t}`);
        }
        if (r.complete) assert.equal(r.degree, n - 1);
        assert.ok(
          checkParameters({
            clients: n,
            dropoutRate: d,
            corruptionRate: g,
            securityBits: 40,
            correctnessBits: 30,
            model,
            degree: r.degree,
            threshold: r.threshold,
          }).ok,
        );
      }
    });
  }

  it('grows k with the dropout rate and with the corruption rate', () => {
    for (const n of [200, 1000, 5000]) {
      for (const model of ['semi-honest', 'semi-malicious'] as const) {
        let prev = 0;
        for (const d of [0, 0.02, 0.05, 0.1, 0.2, 0.3]) {
          const k = recommendParameters({ clients: n, dropoutRate: d, corruptionRate: 0.1, securityBits: 40, model }).degree;
          assert.ok(k >= prev, `n=${n} ${model} δ=${d}: k=${k} < ${prev}`);
          prev = k;
        }
        prev = 0;
        for (const g of [0, 0.02, 0.05, 0.1, 0.2, 0.3]) {
          const k = recommendParameters({ clients: n, dropoutRate: 0.1, corruptionRate: g, securityBits: 40, model }).degree;
          assert.ok(k >= prev, `n=${n} ${model} γ=${g}: k=${k} < ${prev}`);
          prev = k;
        }
      }
      const lo = recommendParameters({ clients: n, dropoutRate: 0.05, corruptionRate: 0.05, securityBits: 40 }).degree;
      const hi = recommendParameters({ clients: n, dropoutRate: 0.3, corruptionRate: 0.3, securityBits: 40 }).degree;
      assert.ok(hi > lo, 'k must actually grow, not stay constant');
    }
  });

  it('matches the published values of the authors’ implementation (Google FCP, σ=40, η=20)', () => {
    // graph_parameter_finder_test.cc: (n, γ, δ, model) → degree, threshold upper bound.
    const cases: Array<[number, number, number, 'semi-honest' | 'semi-malicious', number, number]> = [
      [100, 0.33, 0.33, 'semi-honest', 68, 34],
      [1000, 0.33, 0.33, 'semi-honest', 286, 150],
      [10000, 0.33, 0.33, 'semi-honest', 422, 221],
      [1000, 0.05, 0.33, 'semi-honest', 72, 24],
      [10000, 0.05, 0.33, 'semi-honest', 86, 29],
      [1000, 0.33, 0.05, 'semi-honest', 78, 60],
      [1000, 0.3, 0.3, 'semi-malicious', 872, 584],
      [10000, 0.05, 0.33, 'semi-malicious', 746, 420],
      [10000, 0.33, 0.05, 'semi-malicious', 178, 146],
    ];
    for (const [n, g, d, model, k, t] of cases) {
      const r = recommendParameters({ clients: n, corruptionRate: g, dropoutRate: d, securityBits: 40, correctnessBits: 20, model });
      assert.equal(r.degree, k, `n=${n} γ=${g} δ=${d} ${model}`);
      assert.equal(r.threshold, t, `n=${n} γ=${g} δ=${d} ${model}`);
    }
    // Ours counts the n − 1 others (FCP: n), so it may only be more conservative, by a step.
    const r = recommendParametersForAnalysis({
      clients: 100000,
      corruptionRate: 0.45,
      dropoutRate: 0.45,
      securityBits: 40,
      correctnessBits: 20,
      model: 'semi-honest',
    });
    assert.ok(r.degree >= 5508 && r.degree <= 5512, `${r.degree}`);
  });

  it('recommends the complete graph when a sparse one does not pay', () => {
    const r = recommendParameters({ clients: 100, dropoutRate: 0.3, corruptionRate: 1 / 3, securityBits: 40, model: 'semi-malicious' });
    assert.equal(r.complete, true);
    assert.equal(r.degree, 99);
    assert.ok(r.threshold > (99 + 34) / 2 && r.threshold <= 99 - 30);
  });

  it('n = 65535 completes in reasonable time', () => {
    const t0 = performance.now();
    const r = recommendParameters({ clients: 65535, dropoutRate: 0.1, corruptionRate: 0.1, securityBits: 40 });
    assert.ok(r.degree < 200 && performance.now() - t0 < 2000);
  });

  it('rejects bad inputs and impossible requirements', () => {
    const ok = { clients: 100, dropoutRate: 0.1, corruptionRate: 0.1, securityBits: 40 };
    const bad: object[] = [
      { ...ok, clients: 1 },
      { ...ok, clients: 65536 },
      { ...ok, clients: 10.5 },
      { ...ok, dropoutRate: 1 },
      { ...ok, dropoutRate: -0.01 },
      { ...ok, dropoutRate: Number.NaN },
      { ...ok, corruptionRate: 1 },
      { ...ok, corruptionRate: '0.1' },
      { ...ok, securityBits: 0 },
      { ...ok, correctnessBits: 0 },
      { ...ok, model: 'malicious' },
    ];
    for (const b of bad) assert.throws(() => recommendParameters(b as never), RangeError, JSON.stringify(b));
    assert.throws(
      () => recommendParameters({ clients: 100, dropoutRate: 0.5, corruptionRate: 0.49, securityBits: 40 }),
      (e: unknown) => isSecAggError(e, 'ERR_INVALID_PARAMETERS'),
    );
  });
});

describe('defaultThreshold and checkParameters', () => {
  it('defaultThreshold is a strict majority of the neighbourhood', () => {
    for (const k of [1, 2, 3, 10, 11, 99, 100, 65534]) {
      const t = defaultThreshold(k);
      assert.ok(2 * t > k && 2 * (t - 1) <= k, `k=${k} t=${t}`);
    }
    assert.throws(() => defaultThreshold(0), RangeError);
    assert.throws(() => defaultThreshold(2.5), RangeError);
  });

  it('checkParameters flags thresholds outside the safe range', () => {
    const req = { clients: 1000, dropoutRate: 0.1, corruptionRate: 0.1, securityBits: 40 };
    const r = recommendParameters(req);
    assert.equal(checkParameters({ ...req, degree: r.degree, threshold: r.threshold }).ok, true);
    assert.equal(checkParameters({ ...req, degree: r.degree, threshold: r.thresholdRange.min - 1 }).ok, false);
    assert.equal(checkParameters({ ...req, degree: r.degree, threshold: r.thresholdRange.max + 1 }).ok, false);
    assert.equal(checkParameters({ ...req, degree: r.degree - 2, threshold: r.threshold }).ok, false);
    assert.throws(
      () => checkParameters({ ...req, degree: 5, threshold: 3 }),
      (e: unknown) => isSecAggError(e, 'ERR_INVALID_PARAMETERS'),
    );
  });
});

describe('the graph permutation follows its specification (so every version builds the same graph)', () => {
  // Written from the spec in harary.ts, not from its code: key = HKDF-SHA256(seed, no salt,
  // "secagg/v1/graph/harary-permutation", 32); ChaCha20 with a zero nonce from block 0, generated
  // here in one piece (the module refills in 4 KiB chunks); little-endian uint32 words; Fisher–Yates
  // from the top, j uniform in [0, i] by rejecting words ≥ the largest multiple of i + 1 below 2^32.
  function specPermutation(sorted: readonly number[], seed: Uint8Array): number[] {
    const key = hkdf(sha256, seed, undefined, new TextEncoder().encode('secagg/v1/graph/harary-permutation'), 32);
    const bytes = chacha20(key, new Uint8Array(12), new Uint8Array(4 * 8 * sorted.length + 4096));
    const words = new DataView(bytes.buffer);
    let w = 0;
    const perm = sorted.slice();
    for (let i = perm.length - 1; i > 0; i--) {
      const m = i + 1;
      const limit = 2 ** 32 - (2 ** 32 % m);
      let x: number;
      do x = words.getUint32(4 * w++, true);
      while (x >= limit);
      const j = x % m;
      [perm[i], perm[j]] = [perm[j]!, perm[i]!];
    }
    return perm;
  }

  it('equals an independent computation for n = 5, 100, 2000', () => {
    for (const [n, s] of [
      [5, 1],
      [100, 2],
      [2000, 3],
    ] as const) {
      const sorted = range(n);
      assert.deepEqual(Array.from(seededPermutation(sorted, seedOf(s))), specPermutation(sorted, seedOf(s)), `n = ${n}`);
    }
  });

  it('neighbours are the ring positions ±1..±k/2 of that permutation', () => {
    const sorted = range(50);
    const perm = specPermutation(sorted, seedOf(9));
    const g = buildGraph({ clients: sorted, degree: 6, seed: seedOf(9) });
    for (let p = 0; p < perm.length; p++) {
      const want = [1, 2, 3].flatMap((d) => [perm[(p + d) % 50]!, perm[(p - d + 50) % 50]!]).sort((a, b) => a - b);
      assert.deepEqual([...g.neighbours(perm[p]! as ClientId)], want);
    }
  });
});
