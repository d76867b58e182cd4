import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { SecAggError, isSecAggError } from '../src/errors.js';
import type { Rng } from '../src/rng.js';
import { P, batchInvert, inv, mul, reduce } from '../src/shamir/field.js';
import {
  DUAL_VECTORS,
  MAX_MISSING,
  dualCheck,
  dualFromSuperset,
  dualVectorsUnchecked,
  lagrangeZeroFromSuperset,
  missingPositions,
  nearUnion,
  newSuperset,
  supersetDualTable,
} from '../src/shamir/dual.js';
import { FIELD_PRIME, LagrangeCache, SHARE_BYTES, combineShares, lagrangeAtZero, reconstructVerified, splitSecret } from '../src/shamir/index.js';

// ---- helpers ---------------------------------------------------------------------------------

/** Deterministic rng: SHA-256 in counter mode over a seed, so failures replay. */
function seededRng(seed: number | string): Rng {
  let counter = 0;
  return (n) => {
    const out = new Uint8Array(n);
    for (let o = 0; o < n; o += 32) {
      const block = createHash('sha256').update(`${seed}/${counter++}`).digest();
      out.set(block.subarray(0, Math.min(32, n - o)), o);
    }
    return out;
  };
}

const Pn = BigInt(P);
const bmod = (a: bigint) => ((a % Pn) + Pn) % Pn;
function bpow(b: bigint, e: bigint): bigint {
  let r = 1n;
  b = bmod(b);
  while (e > 0n) {
    if (e & 1n) r = (r * b) % Pn;
    b = (b * b) % Pn;
    e >>= 1n;
  }
  return r;
}
const binv = (a: bigint) => bpow(a, Pn - 2n); // Fermat: independent of the Euclid in field.ts

/** Lagrange coefficient at 0 straight from the textbook formula, in BigInt. */
function bigLagrangeAtZero(xs: number[]): bigint[] {
  return xs.map((xi, i) => {
    let num = 1n;
    let den = 1n;
    xs.forEach((xj, j) => {
      if (j === i) return;
      num = bmod(num * BigInt(xj));
      den = bmod(den * BigInt(xj - xi));
    });
    return bmod(num * binv(den));
  });
}

/** Interpolates through (xs, ys) and evaluates at z, in BigInt. */
function bigInterpolate(xs: bigint[], ys: bigint[], z: bigint): bigint {
  let acc = 0n;
  for (let i = 0; i < xs.length; i++) {
    let num = 1n;
    let den = 1n;
    for (let j = 0; j < xs.length; j++) {
      if (j === i) continue;
      num = bmod(num * (z - xs[j]!));
      den = bmod(den * (xs[i]! - xs[j]!));
    }
    acc = bmod(acc + ys[i]! * num * binv(den));
  }
  return acc;
}

const readU32 = (b: Uint8Array, c: number) => (b[4 * c]! | (b[4 * c + 1]! << 8) | (b[4 * c + 2]! << 16) | (b[4 * c + 3]! << 24)) >>> 0;
function writeU32(b: Uint8Array, c: number, v: number): void {
  b[4 * c] = v & 0xff;
  b[4 * c + 1] = (v >>> 8) & 0xff;
  b[4 * c + 2] = (v >>> 16) & 0xff;
  b[4 * c + 3] = v >>> 24;
}
/** A copy of `share` with element `chunk` moved by `delta` (mod p): still a well-formed share. */
function corrupt(share: Uint8Array, chunk: number, delta = 12345): Uint8Array {
  const b = new Uint8Array(share);
  writeU32(b, chunk, (readU32(b, chunk) + delta) % P);
  return b;
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const eq = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));
const verifierFor = (secret: Uint8Array) => {
  const v = (s: Uint8Array) => {
    v.calls++;
    return eq(s, secret);
  };
  v.calls = 0;
  return v;
};

// ---- field -----------------------------------------------------------------------------------

test('field prime: prime (BigInt trial division), above every client id, products exact in doubles', () => {
  assert.equal(FIELD_PRIME, P);
  const p = BigInt(P);
  for (let d = 2n; d * d <= p; d++) assert.notEqual(p % d, 0n, `divisible by ${d}`);
  assert.ok(P > 65535 && P < 2 ** 26);
  assert.ok((P - 1) * (P - 1) + (P - 1) <= Number.MAX_SAFE_INTEGER);
});

test('field mul / inv / batchInvert agree with BigInt', () => {
  const elem = fc.oneof(fc.integer({ min: 0, max: P - 1 }), fc.constantFrom(0, 1, 2, P - 2, P - 1));
  fc.assert(
    fc.property(elem, elem, (a, b) => {
      assert.equal(mul(a, b), Number((BigInt(a) * BigInt(b)) % Pn));
      if (a !== 0) assert.equal(inv(a), Number(binv(BigInt(a))));
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: P - 1 }), { minLength: 1, maxLength: 50 }), (vals) => {
      const out = batchInvert(Float64Array.from(vals));
      vals.forEach((v, i) => assert.equal(out[i], Number(binv(BigInt(v)))));
    }),
  );
  // reduce must be exact right up to 2^53, where the reciprocal trick is most likely to be off by one.
  fc.assert(
    fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (v) => {
      assert.equal(reduce(v), Number(BigInt(v) % Pn));
    }),
    { numRuns: 5000 },
  );
  for (const v of [0, P - 1, P, P + 1, 2 * P - 1, 2 * P, Number.MAX_SAFE_INTEGER, (P - 1) * (P - 1)])
    assert.equal(reduce(v), Number(BigInt(v) % Pn), `reduce(${v})`);
  assert.throws(() => inv(0), RangeError);
});

test('lagrangeAtZero matches the BigInt textbook formula', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 65535 }), { minLength: 1, maxLength: 40 }), (xs) => {
      const got = Array.from(lagrangeAtZero(xs));
      assert.deepEqual(got, bigLagrangeAtZero(xs).map(Number));
    }),
  );
});

// ---- split / combine ---------------------------------------------------------------------------

const secretArb = fc.uint8Array({ minLength: 32, maxLength: 32 });

test('any t shares (random subset, random order) reconstruct the secret; so do more than t', () => {
  fc.assert(
    fc.property(
      secretArb,
      fc.uniqueArray(fc.integer({ min: 1, max: 65535 }), { minLength: 2, maxLength: 40 }),
      fc.integer({ min: 2, max: 40 }),
      fc.integer(),
      fc.integer({ min: 0, max: 10 }),
      (secret, holders, tRaw, seed, extra) => {
        const t = Math.min(tRaw, holders.length);
        const shares = splitSecret({ secret, holders, threshold: t, rng: seededRng(seed) });
        assert.equal(shares.length, holders.length);
        for (const s of shares) {
          assert.equal(s.length, SHARE_BYTES);
          for (let c = 0; c < SHARE_BYTES / 4; c++) assert.ok(readU32(s, c) < P);
        }
        // Shuffle indices with the seed, take t (+ extra) of them.
        const rng = seededRng(`pick${seed}`);
        const idx = holders.map((_, i) => i);
        for (let i = idx.length - 1; i > 0; i--) {
          const j = readU32(rng(4), 0) % (i + 1);
          [idx[i], idx[j]] = [idx[j]!, idx[i]!];
        }
        const take = idx.slice(0, Math.min(holders.length, t + extra));
        const got = combineShares({ holders: take.map((i) => holders[i]!), shares: take.map((i) => shares[i]!) });
        assert.ok(eq(got, secret));
      },
    ),
    { numRuns: 200 },
  );
});

test('t − 1 shares do not reconstruct the secret', () => {
  fc.assert(
    fc.property(secretArb, fc.integer({ min: 3, max: 20 }), fc.integer(), (secret, t, seed) => {
      const holders = range(1, t + 3);
      const shares = splitSecret({ secret, holders, threshold: t, rng: seededRng(seed) });
      let got: Uint8Array | null = null;
      try {
        got = combineShares({ holders: holders.slice(0, t - 1), shares: shares.slice(0, t - 1) });
      } catch (e) {
        assert.ok(isSecAggError(e, 'ERR_RECONSTRUCTION_FAILED'));
      }
      if (got !== null) assert.ok(!eq(got, secret));
    }),
    { numRuns: 100 },
  );
});

test('t − 1 shares are consistent with ANY candidate secret (a forged t-th share explains it)', () => {
  fc.assert(
    fc.property(secretArb, secretArb, fc.integer({ min: 2, max: 12 }), fc.integer(), (secret, candidate, t, seed) => {
      const holders = range(10, 10 + t); // t + 1 holders; the last one is the forged x
      const shares = splitSecret({ secret, holders, threshold: t, rng: seededRng(seed) });
      const known = holders.slice(0, t - 1);
      const forgedX = holders[t]!;
      // Polynomial of degree ≤ t − 1 through (0, candidate chunk) and the t − 1 real shares, per
      // chunk, computed independently in BigInt; its value at forgedX is the forged share.
      const candChunks: bigint[] = [];
      for (let c = 0; c < 10; c++) candChunks.push(BigInt(candidate[3 * c]! | (candidate[3 * c + 1]! << 8) | (candidate[3 * c + 2]! << 16)));
      candChunks.push(BigInt(candidate[30]! | (candidate[31]! << 8)));
      const forged = new Uint8Array(SHARE_BYTES);
      for (let c = 0; c < 11; c++) {
        const xs = [0n, ...known.map(BigInt)];
        const ys = [candChunks[c]!, ...shares.slice(0, t - 1).map((s) => BigInt(readU32(s, c)))];
        writeU32(forged, c, Number(bigInterpolate(xs, ys, BigInt(forgedX))));
      }
      const got = combineShares({ holders: [...known, forgedX], shares: [...shares.slice(0, t - 1), forged] });
      assert.ok(eq(got, candidate));
    }),
    { numRuns: 100 },
  );
});

test('coefficients are rejection-sampled: low 26 bits of each LE word, values ≥ p skipped', () => {
  // Stream: one word that is ≥ p after masking (must be skipped), then words whose masked values
  // are the expected coefficients in order (chunk 0..10 of the x^1 coefficient).
  const expected = range(0, 10).map((c) => (c * 6_000_001 + 7) % P);
  const words = [0xffffffff, 0xfc000000 | (P + 1), ...expected.map((v, i) => (i % 2 === 0 ? v | 0xfc000000 : v))];
  const stream = new Uint8Array(words.length * 4);
  words.forEach((w, i) => writeU32(stream, i, w >>> 0));
  let pos = 0;
  const rng: Rng = (n) => {
    const out = new Uint8Array(n); // zeros past the scripted stream
    out.set(stream.subarray(pos, Math.min(stream.length, pos + n)));
    pos += n;
    return out;
  };
  const secret = new Uint8Array(32).fill(0);
  const [share] = splitSecret({ secret, holders: [1, 2], threshold: 2, rng });
  // With secret 0 and x = 1, the share is exactly the x^1 coefficients.
  for (let c = 0; c < 11; c++) assert.equal(readU32(share!, c), expected[c], `chunk ${c}`);
});

test('n = 65535 holders with a small threshold', () => {
  const holders = range(1, 65535);
  const secret = seededRng('big')(32);
  const shares = splitSecret({ secret, holders, threshold: 3, rng: seededRng(1) });
  assert.equal(shares.length, 65535);
  for (const pick of [
    [0, 1, 2],
    [65534, 32767, 0],
    [65532, 65533, 65534],
  ]) {
    const got = combineShares({ holders: pick.map((i) => holders[i]!), shares: pick.map((i) => shares[i]!) });
    assert.ok(eq(got, secret));
  }
});

test('input validation: caller bugs are TypeError/RangeError, bad share bytes are SecAggError', () => {
  const secret = new Uint8Array(32).fill(7);
  const rng = seededRng(2);
  const split = (o: Partial<{ secret: unknown; holders: unknown; threshold: unknown; rng: unknown }>) =>
    splitSecret({ secret, holders: [1, 2, 3], threshold: 2, rng, ...o } as never);
  assert.throws(() => split({ secret: new Uint8Array(31) }), RangeError);
  assert.throws(() => split({ secret: 'x' }), TypeError);
  assert.throws(() => split({ holders: [0, 1] }), /holders\[0\]/);
  assert.throws(() => split({ holders: [1, 65536] }), /holders\[1\]/);
  assert.throws(() => split({ holders: [1, 2.5] }), TypeError);
  assert.throws(() => split({ holders: [3, 1, 3] }), /distinct/);
  assert.throws(() => split({ holders: [1, 2, 2] }), /distinct/);
  assert.throws(() => split({ threshold: 1 }), /threshold/);
  assert.throws(() => split({ threshold: 4 }), /threshold/);
  assert.throws(() => split({ rng: () => new Uint8Array(3) }), /rng output/);

  const shares = split({});
  assert.throws(() => combineShares({ holders: [1, 2], shares: shares.slice(0, 1) }), RangeError);
  assert.throws(() => combineShares({ holders: [1, 2], shares: [shares[0]!, 'x' as never] }), TypeError);
  const short = shares[1]!.subarray(0, SHARE_BYTES - 1);
  assert.throws(
    () => combineShares({ holders: [1, 2], shares: [shares[0]!, short] }),
    (e: unknown) => e instanceof SecAggError && e.code === 'ERR_SIZE' && e.clients.join() === '2',
  );
  const long = new Uint8Array(SHARE_BYTES + 1);
  assert.throws(
    () => combineShares({ holders: [1, 2], shares: [long, shares[1]!] }),
    (e: unknown) => isSecAggError(e, 'ERR_SIZE'),
  );
  const notField = new Uint8Array(shares[0]!);
  writeU32(notField, 5, P); // first value that is not a field element
  assert.throws(
    () => combineShares({ holders: [1, 2], shares: [notField, shares[1]!] }),
    (e: unknown) => e instanceof SecAggError && e.code === 'ERR_DECODE' && e.clients.join() === '1',
  );
  const okEdge = new Uint8Array(shares[0]!);
  writeU32(okEdge, 5, P - 1); // the largest field element decodes fine (the result is just wrong)
  assert.doesNotThrow(() => {
    try {
      combineShares({ holders: [1, 2], shares: [okEdge, shares[1]!] });
    } catch (e) {
      if (!isSecAggError(e, 'ERR_RECONSTRUCTION_FAILED')) throw e;
    }
  });
});

test('combineShares rejects a corrupted share via the chunk-width check', () => {
  const secret = seededRng('w')(32);
  const holders = range(1, 8);
  const shares = splitSecret({ secret, holders, threshold: 5, rng: seededRng(3) });
  const bad = shares.slice(0, 5);
  // Every element moved by a random δ: each chunk stays in range with probability ≈ 1/4 (the last
  // ≈ 2^-10), so all of them with ≈ 2^-30. (A *small* δ is not caught: λ_i·δ can stay small for
  // small holder ids — e.g. λ = 10 here — which is why reconstructVerified exists.)
  const b = new Uint8Array(bad[2]!);
  const r = seededRng('delta')(44);
  for (let c = 0; c < 11; c++) writeU32(b, c, (readU32(b, c) + 1 + (readU32(r, c) % (P - 1))) % P);
  bad[2] = b;
  assert.throws(
    () => combineShares({ holders: holders.slice(0, 5), shares: bad }),
    (e: unknown) => isSecAggError(e, 'ERR_RECONSTRUCTION_FAILED'),
  );
});

test('chunk width check is exact at the boundary of every chunk', () => {
  // Adding a constant d to every share's element c shifts that chunk's polynomial by d, so the
  // reconstructed chunk becomes exactly secretChunk + d: put it just inside and just outside.
  const holders = [4, 9, 16];
  const secret = new Uint8Array(32); // all chunks 0
  const shares = splitSecret({ secret, holders, threshold: 3, rng: seededRng(11) });
  for (let c = 0; c < 11; c++) {
    const limit = c === 10 ? 1 << 16 : 1 << 24;
    const shifted = (d: number) =>
      shares.map((s) => {
        const b = new Uint8Array(s);
        writeU32(b, c, (readU32(b, c) + d) % P);
        return b;
      });
    const inside = combineShares({ holders, shares: shifted(limit - 1) });
    const expect = new Uint8Array(32);
    if (c === 10) expect.set([0xff, 0xff], 30);
    else expect.set([0xff, 0xff, 0xff], 3 * c);
    assert.ok(eq(inside, expect), `chunk ${c}`);
    assert.throws(
      () => combineShares({ holders, shares: shifted(limit) }),
      (e: unknown) => isSecAggError(e, 'ERR_RECONSTRUCTION_FAILED'),
    );
  }
});

// ---- Lagrange cache -------------------------------------------------------------------------

test('LagrangeCache computes once per holder set, in any order, and evicts LRU', () => {
  const cache = new LagrangeCache({ maxEntries: 2 });
  const holders = [5, 9, 17, 33, 40];
  const secrets = range(0, 9).map((i) => seededRng(`s${i}`)(32));
  const all = secrets.map((s, i) => splitSecret({ secret: s, holders, threshold: 3, rng: seededRng(i) }));
  for (let i = 0; i < secrets.length; i++) {
    const got = combineShares({ holders: holders.slice(0, 3), shares: all[i]!.slice(0, 3), cache });
    assert.ok(eq(got, secrets[i]!));
  }
  assert.equal(cache.computations, 1);
  // Same set, permuted: a hit, and the coefficients are re-aligned correctly.
  const perm = [2, 0, 1];
  const got = combineShares({ holders: perm.map((i) => holders[i]!), shares: perm.map((i) => all[0]![i]!), cache });
  assert.ok(eq(got, secrets[0]!));
  assert.equal(cache.computations, 1);
  assert.deepEqual(Array.from(cache.get([17, 5, 9])), bigLagrangeAtZero([17, 5, 9]).map(Number));
  assert.equal(cache.computations, 1);
  // get() hands out a copy: scribbling on it must not poison later reconstructions.
  cache.get([5, 9, 17]).fill(0);
  assert.ok(eq(combineShares({ holders: [5, 9, 17], shares: all[1]!.slice(0, 3), cache }), secrets[1]!));
  // A new set computes; a third evicts the least recently used one.
  combineShares({ holders: [9, 17, 33], shares: all[0]!.slice(1, 4), cache });
  assert.equal(cache.computations, 2);
  combineShares({ holders: [5, 9, 17], shares: all[0]!.slice(0, 3), cache }); // refresh
  combineShares({ holders: [17, 33, 40], shares: all[0]!.slice(2, 5), cache }); // evicts {9,17,33}
  assert.equal(cache.computations, 3);
  assert.equal(cache.size, 2);
  combineShares({ holders: [5, 9, 17], shares: all[0]!.slice(0, 3), cache });
  assert.equal(cache.computations, 3);
  combineShares({ holders: [9, 17, 33], shares: all[0]!.slice(1, 4), cache });
  assert.equal(cache.computations, 4);
});

test('reconstructVerified uses the cache across secrets from the same holders', async () => {
  const cache = new LagrangeCache();
  const holders = range(100, 120);
  for (let i = 0; i < 5; i++) {
    const secret = seededRng(`c${i}`)(32);
    const shares = splitSecret({ secret, holders, threshold: 11, rng: seededRng(i) });
    // Different share order each time: the canonical subset is the same set.
    const order = holders.map((_, j) => (i % 2 === 0 ? j + 5 * i : holders.length - 1 - j) % holders.length);
    assert.equal(new Set(order).size, holders.length);
    const r = await reconstructVerified({
      holders: order.map((j) => holders[j]!),
      shares: order.map((j) => shares[j]!),
      threshold: 11,
      verify: verifierFor(secret),
      cache,
    });
    assert.ok(eq(r.secret, secret));
    assert.deepEqual(r.badHolders, []);
  }
  assert.equal(cache.computations, 1);
});

// ---- verified reconstruction ----------------------------------------------------------------

test('reconstructVerified: one bad share, corrupted in one chunk, at every canonical position', async () => {
  const holders = range(1, 9); // k = 9, t = 6
  const t = 6;
  const secret = seededRng('one')(32);
  const shares = splitSecret({ secret, holders, threshold: t, rng: seededRng(4) });
  for (let pos = 0; pos < holders.length; pos++) {
    for (const chunk of [0, 7, 10]) {
      const bad = shares.slice();
      bad[pos] = corrupt(bad[pos]!, chunk, 1 + pos);
      const verify = verifierFor(secret);
      const r = await reconstructVerified({ holders, shares: bad, threshold: t, verify });
      assert.ok(eq(r.secret, secret), `pos ${pos} chunk ${chunk}`);
      assert.deepEqual(r.badHolders, [holders[pos]]);
      assert.ok(verify.calls <= 1 + t * (holders.length - t), `verify calls ${verify.calls}`);
    }
  }
});

test('reconstructVerified: k = t + 1 (only the swap-in phase can help) fixes a bad share at any position', async () => {
  const t = 7;
  const holders = [2, 3, 5, 7, 11, 13, 17, 19];
  const secret = seededRng('swap')(32);
  const shares = splitSecret({ secret, holders, threshold: t, rng: seededRng(9) });
  for (let pos = 0; pos < holders.length; pos++) {
    const bad = shares.slice();
    bad[pos] = corrupt(bad[pos]!, pos % 11, 77);
    const verify = verifierFor(secret);
    const r = await reconstructVerified({ holders, shares: bad, threshold: t, verify });
    assert.ok(eq(r.secret, secret), `pos ${pos}`);
    assert.deepEqual(r.badHolders, [holders[pos]]);
    assert.ok(verify.calls <= 1 + t, `verify calls ${verify.calls}`);
  }
});

test('reconstructVerified: several bad shares (inside and outside the canonical subset) are all named', async () => {
  const t = 5;
  const holders = [3, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987];
  const secret = seededRng('several')(32);
  const shares = splitSecret({ secret, holders, threshold: t, rng: seededRng(5) });
  const cases: number[][] = [
    [0, 3], // two bad in the canonical subset: needs the random phase
    [1, 2, 4], // three of the five canonical
    [0, 6, 11], // one canonical, two spares
    [7, 8, 9, 10, 11], // all bad ones are spares
  ];
  for (const badIdx of cases) {
    const bad = shares.slice();
    badIdx.forEach((i, n) => (bad[i] = corrupt(bad[i]!, (i * 3) % 11, 999 + n)));
    const r = await reconstructVerified({ holders, shares: bad, threshold: t, verify: verifierFor(secret) });
    assert.ok(eq(r.secret, secret), `bad ${badIdx}`);
    assert.deepEqual(
      r.badHolders,
      badIdx.map((i) => holders[i]!).sort((a, b) => a - b),
    );
  }
});

test('reconstructVerified: malformed shares are named and skipped; async verify works', async () => {
  const holders = range(1, 7);
  const secret = seededRng('mal')(32);
  const shares = splitSecret({ secret, holders, threshold: 4, rng: seededRng(6) });
  const bad = shares.slice();
  bad[0] = new Uint8Array(3);
  const nf = new Uint8Array(shares[4]!);
  writeU32(nf, 0, 0xffffffff);
  bad[4] = nf;
  bad[2] = corrupt(bad[2]!, 10);
  const r = await reconstructVerified({
    holders,
    shares: bad,
    threshold: 4,
    verify: async (s) => {
      await new Promise((res) => setImmediate(res));
      return eq(s, secret);
    },
  });
  assert.ok(eq(r.secret, secret));
  assert.deepEqual(r.badHolders, [1, 3, 5]);
});

test('reconstructVerified: exactly t shares with one bad → ERR_RECONSTRUCTION_FAILED', async () => {
  const holders = range(1, 5);
  const secret = seededRng('exact')(32);
  const shares = splitSecret({ secret, holders, threshold: 5, rng: seededRng(7) });
  for (const chunk of [0, 10]) {
    const bad = shares.slice();
    bad[3] = corrupt(bad[3]!, chunk, 1);
    const verify = verifierFor(secret);
    await assert.rejects(reconstructVerified({ holders, shares: bad, threshold: 5, verify }), (e: unknown) => isSecAggError(e, 'ERR_RECONSTRUCTION_FAILED'));
    assert.ok(verify.calls <= 1);
  }
  // Too few well-formed shares: fails and names the malformed one.
  const bad = shares.slice();
  bad[1] = new Uint8Array(SHARE_BYTES + 4);
  await assert.rejects(
    reconstructVerified({ holders, shares: bad, threshold: 5, verify: verifierFor(secret) }),
    (e: unknown) => e instanceof SecAggError && e.code === 'ERR_RECONSTRUCTION_FAILED' && e.clients.join() === '2',
  );
  // And the honest shares alone succeed (the verifier is not the reason).
  const ok = await reconstructVerified({ holders, shares, threshold: 5, verify: verifierFor(secret) });
  assert.ok(eq(ok.secret, secret));
});

test('reconstructVerified: the search respects maxAttempts and never returns an unverified secret', async () => {
  const holders = range(1, 10);
  const secret = seededRng('budget')(32);
  const shares = splitSecret({ secret, holders, threshold: 5, rng: seededRng(8) });
  const bad = shares.slice();
  bad[0] = corrupt(bad[0]!, 4);
  await assert.rejects(reconstructVerified({ holders, shares: bad, threshold: 5, verify: verifierFor(secret), maxAttempts: 0 }), (e: unknown) =>
    isSecAggError(e, 'ERR_RECONSTRUCTION_FAILED'),
  );
  const verify = verifierFor(secret);
  const r = await reconstructVerified({ holders, shares: bad, threshold: 5, verify, maxAttempts: 50 });
  assert.deepEqual(r.badHolders, [1]);
  // A verifier that rejects everything: must fail, within budget, never return.
  let calls = 0;
  await assert.rejects(reconstructVerified({ holders, shares, threshold: 5, verify: () => (calls++, false), maxAttempts: 30 }), (e: unknown) =>
    isSecAggError(e, 'ERR_RECONSTRUCTION_FAILED'),
  );
  assert.ok(calls >= 1 && calls <= 31, `calls ${calls}`);
  // Bad data from the network must not be mistaken for caller bugs, and vice versa.
  await assert.rejects(reconstructVerified({ holders, shares, threshold: 1, verify: () => true }), RangeError);
  await assert.rejects(reconstructVerified({ holders, shares, threshold: 5, verify: 'no' as never }), TypeError);
});

// ---- fast consistency check (dual vectors) ------------------------------------------------------

/** Barycentric weights w_i = 1/Π_{l≠i}(x_i − x_l) straight from the definition, in BigInt. */
const bigWeights = (xs: number[]) => xs.map((xi, i) => binv(xs.reduce((acc, xl, l) => (l === i ? acc : bmod(acc * BigInt(xi - xl))), 1n)));

test('dual vectors: d_i = w_i·q(x_i) exactly (BigInt), orthogonal to every degree < t polynomial', () => {
  const xs = [3, 7, 10, 22, 31, 40, 51, 65535];
  const t = 3;
  const k = xs.length;
  const m = k - t;
  const w = bigWeights(xs);
  // The background fact: Σ w_i x_i^j = 0 for j = 0..k−2, and not for j = k−1 (it is 1).
  for (let j = 0; j < k; j++) {
    const sum = bmod(xs.reduce((acc, x, i) => acc + w[i]! * bpow(BigInt(x), BigInt(j)), 0n));
    assert.equal(sum, j === k - 1 ? 1n : 0n, `j = ${j}`);
  }
  // With known q coefficients, every entry matches the BigInt w_i·q(x_i).
  const q = Array.from({ length: DUAL_VECTORS * m }, (_, i) => (i === 0 ? P - 1 : (i * 7919 + 12345) % P));
  const d = dualVectorsUnchecked(xs, t, (out) => out.set(q));
  assert.equal(d.length, DUAL_VECTORS * k);
  for (let v = 0; v < DUAL_VECTORS; v++) {
    xs.forEach((x, i) => {
      const qx = bmod(q.slice(v * m, (v + 1) * m).reduce((acc, c, j) => acc + BigInt(c) * bpow(BigInt(x), BigInt(j)), 0n));
      assert.equal(BigInt(d[v * k + i]!), bmod(w[i]! * qx), `v ${v} i ${i}`);
    });
  }
  // The cache's CSPRNG-drawn vectors: in the dual code (Σ d_i x_i^j = 0 for j < t), d_i/w_i is a
  // polynomial of degree < k − t, nonzero, and different per vector and per cache (not a fixed seed).
  const cache = new LagrangeCache();
  const cd = cache.dualLookup(xs, t);
  assert.equal(cache.dualComputations, 1);
  assert.equal(cache.dualLookup(xs, t), cd, 'second lookup is a hit');
  assert.equal(cache.dualComputations, 1);
  for (let v = 0; v < DUAL_VECTORS; v++) {
    const row = Array.from(cd.subarray(v * k, (v + 1) * k), BigInt);
    for (let j = 0; j < t; j++) assert.equal(bmod(row.reduce((acc, di, i) => acc + di * bpow(BigInt(xs[i]!), BigInt(j)), 0n)), 0n, `v ${v} j ${j}`);
    const r = row.map((di, i) => bmod(di * binv(w[i]!)));
    const bx = xs.map(BigInt);
    for (let i = m; i < k; i++) assert.equal(bigInterpolate(bx.slice(0, m), r.slice(0, m), bx[i]!), r[i], `degree < m at ${i}`);
    assert.ok(row.some((di) => di !== 0n));
  }
  assert.notDeepEqual(Array.from(cd.subarray(0, k)), Array.from(cd.subarray(k, 2 * k)));
  assert.notDeepEqual(Array.from(new LagrangeCache().dualLookup(xs, t)), Array.from(cd));
  // Keyed by threshold too: another t is another entry.
  cache.dualLookup(xs, t + 1);
  assert.equal(cache.dualComputations, 2);
  assert.throws(() => dualVectorsUnchecked(xs, k, () => {}), RangeError);
});

test('dualCheck: passes consistent rows, catches a change in any single row and chunk', () => {
  const holders = [2, 5, 9, 14, 20, 27, 35, 44, 54];
  const t = 4;
  const k = holders.length;
  const secret = seededRng('dualcheck')(32);
  const shares = splitSecret({ secret, holders, threshold: t, rng: seededRng(11) });
  const rows = new Float64Array(k * 11);
  shares.forEach((sh, i) => {
    for (let c = 0; c < 11; c++) rows[i * 11 + c] = readU32(sh, c);
  });
  const duals = new LagrangeCache().dualLookup(holders, t);
  assert.equal(dualCheck(duals, rows, k, 11), true);
  // Exhaustive over rows × chunks × a few deltas (false pass probability 2^-52 each).
  for (let i = 0; i < k; i++)
    for (let c = 0; c < 11; c++)
      for (const delta of [1, P - 1, 1 << 24]) {
        const bad = rows.slice();
        bad[i * 11 + c] = (bad[i * 11 + c]! + delta) % P;
        assert.equal(dualCheck(duals, bad, k, 11), false, `row ${i} chunk ${c} delta ${delta}`);
      }
  // Adding a polynomial of degree < t to every row keeps them consistent: still passes.
  const shifted = rows.slice();
  holders.forEach((x, i) => (shifted[i * 11 + 3] = (shifted[i * 11 + 3]! + mul(x, mul(x, x)) + 17) % P));
  assert.equal(dualCheck(duals, shifted, k, 11), true);
});

test('reconstructVerified fast path: consistent sets skip the exact check; dual vectors computed once', async () => {
  for (const [n, t] of [
    [2, 2],
    [3, 2],
    [20, 11],
    [60, 7],
    [101, 100],
  ] as const) {
    const cache = new LagrangeCache();
    const holders = range(1, n).map((i) => i * 37 + 1);
    for (let s = 0; s < 4; s++) {
      const secret = seededRng(`fast${n}/${s}`)(32);
      const shares = splitSecret({ secret, holders, threshold: t, rng: seededRng(`${n}/${s}`) });
      const order = holders.map((_, j) => (j * 7 + s) % n);
      const perm = new Set(order).size === n ? order : holders.map((_, j) => j);
      const r = await reconstructVerified({
        holders: perm.map((j) => holders[j]!),
        shares: perm.map((j) => shares[j]!),
        threshold: t,
        verify: verifierFor(secret),
        cache,
      });
      assert.ok(eq(r.secret, secret));
      assert.deepEqual(r.badHolders, []);
    }
    assert.equal(cache.exactChecks, 0, `n ${n} t ${t}`);
    assert.equal(cache.dualComputations, n > t ? 1 : 0, `n ${n} t ${t}`);
    assert.equal(cache.computations, 1);
  }
  // A malformed share only changes the point set: still the fast path, and it is named.
  const cache = new LagrangeCache();
  const holders = range(1, 12);
  const secret = seededRng('fastmal')(32);
  const shares = splitSecret({ secret, holders, threshold: 5, rng: seededRng(12) });
  const bad = shares.slice();
  bad[8] = new Uint8Array(7);
  const r = await reconstructVerified({ holders, shares: bad, threshold: 5, verify: verifierFor(secret), cache });
  assert.deepEqual(r.badHolders, [9]);
  assert.equal(cache.exactChecks, 0);
  assert.equal(cache.dualComputations, 1);
});

test('reconstructVerified: a single spare corrupted in one chunk is detected and named (fallback)', async () => {
  const t = 6;
  const holders = range(10, 21); // k = 12: spares at positions 6..11
  const secret = seededRng('spare')(32);
  const shares = splitSecret({ secret, holders, threshold: t, rng: seededRng(13) });
  const cache = new LagrangeCache();
  let expectedExact = 0;
  for (let pos = t; pos < holders.length; pos++) {
    for (const chunk of [0, 5, 10]) {
      for (const withCache of [true, false]) {
        const bad = shares.slice();
        bad[pos] = corrupt(bad[pos]!, chunk, 1 + pos * chunk);
        const verify = verifierFor(secret);
        const r = await reconstructVerified({ holders, shares: bad, threshold: t, verify, ...(withCache ? { cache } : {}) });
        assert.ok(eq(r.secret, secret));
        assert.deepEqual(r.badHolders, [holders[pos]], `pos ${pos} chunk ${chunk}`);
        assert.equal(verify.calls, 1, 'the canonical subset verified');
        if (withCache) assert.equal(cache.exactChecks, ++expectedExact);
      }
    }
  }
  assert.equal(cache.dualComputations, 1);
  // Honest shares after all that: fast path again.
  await reconstructVerified({ holders, shares, threshold: t, verify: verifierFor(secret), cache });
  assert.equal(cache.exactChecks, expectedExact);
});

test('reconstructVerified: random single-chunk corruption of random spares is always named', async () => {
  const t = 5;
  const holders = range(1, 16);
  const secret = seededRng('fcspare')(32);
  const shares = splitSecret({ secret, holders, threshold: t, rng: seededRng(14) });
  const cache = new LagrangeCache();
  await fc.assert(
    fc.asyncProperty(
      fc.uniqueArray(fc.integer({ min: t, max: holders.length - 1 }), { minLength: 1, maxLength: 4 }),
      fc.integer({ min: 0, max: 10 }),
      fc.integer({ min: 1, max: P - 1 }),
      async (positions, chunk, delta) => {
        const bad = shares.slice();
        for (const p of positions) bad[p] = corrupt(bad[p]!, chunk, delta);
        const r = await reconstructVerified({ holders, shares: bad, threshold: t, verify: verifierFor(secret), cache });
        assert.deepEqual(
          r.badHolders,
          positions.map((p) => holders[p]!).sort((a, b) => a - b),
        );
      },
    ),
    { numRuns: 100 },
  );
  assert.equal(cache.dualComputations, 1);
});

// ---- supersets: S = U \ R in O(k·|R|) -------------------------------------------------------

test('superset path: derived dual vectors and Lagrange coefficients equal direct ones (BigInt), |R| = 0..MAX_MISSING', () => {
  const U = [3, 7, 10, 22, 31, 40, 51, 60, 77, 1000, 65535];
  const t = 4;
  const K = U.length;
  const m = K - t;
  // Known coefficients c^(v)_0..c^(v)_{m−1}: the superset serves |R| = j with the truncation to
  // degree < m − j, which is exactly what dualVectorsUnchecked draws for a set of K − j points.
  const c = Array.from({ length: DUAL_VECTORS * m }, (_, i) => (i === 0 ? P - 1 : (i * 104729 + 777) % P));
  const sup = newSuperset(U);
  const table = supersetDualTable(sup, t, (out) => out.set(c));
  assert.equal(
    supersetDualTable(sup, t, () => assert.fail('drawn twice')),
    table,
    'cached per threshold',
  );
  const removals: number[][] = [[], ...U.map((_, r) => [r]), [0, 5], [3, 10], [1, 2, 9], [0, 4, 6, 8]];
  for (const R of removals) {
    const S = U.filter((_, i) => !R.includes(i));
    const k = S.length;
    const mS = k - t;
    const d = dualFromSuperset(sup, table, t, R);
    const direct = dualVectorsUnchecked(S, t, (out) => {
      for (let v = 0; v < DUAL_VECTORS; v++) out.set(c.slice(v * m, v * m + mS), v * mS);
    });
    assert.deepEqual(Array.from(d), Array.from(direct), `R = ${R}`);
    const w = bigWeights(S);
    for (let v = 0; v < DUAL_VECTORS; v++)
      S.forEach((x, i) => {
        const qx = bmod(c.slice(v * m, v * m + mS).reduce((acc, ci, j) => acc + BigInt(ci) * bpow(BigInt(x), BigInt(j)), 0n));
        assert.equal(BigInt(d[v * k + i]!), bmod(w[i]! * qx), `R ${R} v ${v} i ${i}`);
      });
    assert.deepEqual(Array.from(lagrangeZeroFromSuperset(sup, R)), bigLagrangeAtZero(S).map(Number), `λ, R = ${R}`);
  }
  // |S| must stay above t.
  assert.throws(() => dualFromSuperset(sup, table, t, range(0, MAX_MISSING)), RangeError);
  assert.throws(() => supersetDualTable(newSuperset([1, 2, 3]), 3, () => {}), RangeError);
});

test('superset helpers: missingPositions and nearUnion', () => {
  assert.deepEqual(missingPositions([2, 4], [1, 2, 3, 4], 4), [0, 2]);
  assert.deepEqual(missingPositions([1, 2, 3, 4], [1, 2, 3, 4], 0), []);
  assert.equal(missingPositions([1, 5], [1, 2, 3, 4], 4), null, 'not a subset');
  assert.equal(missingPositions([0, 1], [1, 2, 3], 4), null, 'not a subset');
  assert.equal(missingPositions([4], [1, 2, 3, 4], 2), null, 'gap too large');
  assert.equal(missingPositions([1, 2, 3], [1, 2], 4), null, 'larger than the superset');
  assert.deepEqual(nearUnion([1, 2, 4], [2, 3, 4], 1), [1, 2, 3, 4]);
  assert.deepEqual(nearUnion([1, 2], [1, 2], 0), [1, 2]);
  assert.deepEqual(nearUnion([1, 2, 3], [2], 2), [1, 2, 3]);
  assert.equal(nearUnion([1, 2, 3], [2], 1), null);
  assert.equal(nearUnion([1, 2, 5, 6], [3, 4, 5, 6], 1), null);
});

test('superset path via the cache: setUniverse(U) serves every U \\ {r} with the full dual code, catching any single change', () => {
  const U = range(1, 14).map((i) => i * 11 + 2);
  const t = 5;
  const cache = new LagrangeCache();
  cache.setUniverse(U.slice().reverse()); // any order
  cache.setUniverse(U); // same set: no-op
  assert.equal(cache.weightComputations, 1);
  assert.equal(cache.supersetCount, 1);
  for (let r = 0; r < U.length; r++) {
    const S = U.filter((_, i) => i !== r);
    const k = S.length;
    const d = cache.dualLookup(S, t);
    assert.equal(cache.dualLookup(S, t), d, 'then a plain hit');
    const w = bigWeights(S);
    for (let v = 0; v < DUAL_VECTORS; v++) {
      const row = Array.from(d.subarray(v * k, (v + 1) * k), BigInt);
      // In the dual code: orthogonal to x^j for j < t.
      for (let j = 0; j < t; j++) assert.equal(bmod(row.reduce((acc, di, i) => acc + di * bpow(BigInt(S[i]!), BigInt(j)), 0n)), 0n, `r ${r} v ${v} j ${j}`);
      // d_i / w^S_i is a polynomial of degree < k − t (interpolate through the first k − t points).
      const q = row.map((di, i) => bmod(di * binv(w[i]!)));
      const bx = S.map(BigInt);
      for (let i = k - t; i < k; i++) assert.equal(bigInterpolate(bx.slice(0, k - t), q.slice(0, k - t), bx[i]!), q[i]);
    }
    // Every single-row, single-chunk change is caught (false pass 2^-52 each).
    const secret = seededRng(`u${r}`)(32);
    const shares = splitSecret({ secret, holders: S, threshold: t, rng: seededRng(`u${r}`) });
    const rows = new Float64Array(k * 11);
    shares.forEach((sh, i) => {
      for (let ch = 0; ch < 11; ch++) rows[i * 11 + ch] = readU32(sh, ch);
    });
    assert.equal(dualCheck(d, rows, k, 11), true);
    for (let i = 0; i < k; i++)
      for (const ch of [0, 7, 10]) {
        const bad = rows.slice();
        bad[i * 11 + ch] = (bad[i * 11 + ch]! + 1 + i) % P;
        assert.equal(dualCheck(d, bad, k, 11), false, `r ${r} row ${i} chunk ${ch}`);
      }
  }
  assert.equal(cache.weightComputations, 1, 'no O(k²) work beyond the superset');
  assert.equal(cache.dualComputations, U.length);
  assert.equal(cache.derivations, U.length);
  // The superset itself and U minus two: also derived.
  cache.dualLookup(U, t);
  cache.dualLookup(U.slice(2), t);
  assert.equal(cache.weightComputations, 1);
  // Too far from U: computed directly.
  cache.dualLookup(U.slice(MAX_MISSING + 1), t);
  assert.equal(cache.weightComputations, 2);
  assert.throws(() => cache.dualLookup(U.slice(0, t), t), RangeError);
  assert.throws(() => cache.setUniverse([1, 1]), RangeError);
});

test('complete graph: reconstructing for every owner v from U \\ {v} does the O(k²) work a constant number of times', async () => {
  for (const [n, t] of [
    [30, 16],
    [61, 31],
  ] as const) {
    const U = range(1, n).map((i) => i * 3 + 1);
    const owners = U.map((v, i) => {
      const secret = seededRng(`cg${n}/${i}`)(32);
      const holders = U.filter((u) => u !== v);
      return { holders, secret, shares: splitSecret({ secret, holders, threshold: t, rng: seededRng(`cg${n}/${i}`) }) };
    });
    const round = async (options: { supersets?: boolean }, universe: boolean) => {
      const cache = new LagrangeCache(options);
      if (universe) cache.setUniverse(U);
      for (const o of owners) {
        const r = await reconstructVerified({ holders: o.holders, shares: o.shares, threshold: t, verify: verifierFor(o.secret), cache });
        assert.ok(eq(r.secret, o.secret));
        assert.deepEqual(r.badHolders, []);
      }
      assert.equal(cache.exactChecks, 0);
      assert.equal(cache.dualComputations, n, 'one dual-vector set per owner');
      // Canonical subsets: the first t holders of U \ {v} — a different set for each of the first t
      // owners, then {first t of U} for all the rest.
      assert.equal(cache.computations, t + 1);
      return cache;
    };
    // Before supersets: every owner paid O(k²) for its dual vectors, the first t also for λ.
    const off = await round({ supersets: false }, false);
    assert.equal(off.weightComputations, n + t + 1);
    assert.equal(off.derivations, 0);
    // With an explicit universe: U once (all dual vectors), plus 2 for the canonical subsets (the
    // first owner's, then the union of it with the second's, which serves the rest).
    const univ = await round({}, true);
    assert.equal(univ.weightComputations, 3, `n ${n}`);
    assert.equal(univ.derivations, n + t, "every miss but the first owner's canonical subset");
    // Automatic: the first owner's two sets are computed directly, the second owner's form the
    // two supersets.
    const auto = await round({}, false);
    assert.equal(auto.weightComputations, 4, `n ${n}`);
    assert.equal(auto.supersetCount, 2);
  }
});

test('complete graph: a corrupted spare (and a malformed share) is still detected and named via the superset path', async () => {
  const n = 14;
  const t = 6;
  const U = range(1, n).map((i) => i * 5);
  const owners = U.map((v, i) => {
    const secret = seededRng(`cgbad/${i}`)(32);
    const holders = U.filter((u) => u !== v);
    return { holders, secret, shares: splitSecret({ secret, holders, threshold: t, rng: seededRng(`cgbad/${i}`) }) };
  });
  const cache = new LagrangeCache();
  cache.setUniverse(U);
  let exact = 0;
  for (const [i, o] of owners.entries()) {
    const k = o.holders.length;
    // Every spare position (k − t of them) in some chunk, one at a time.
    for (let pos = t; pos < k; pos++) {
      const bad = o.shares.slice();
      bad[pos] = corrupt(bad[pos]!, (i + pos) % 11, 1 + pos);
      const verify = verifierFor(o.secret);
      const r = await reconstructVerified({ holders: o.holders, shares: bad, threshold: t, verify, cache });
      assert.ok(eq(r.secret, o.secret));
      assert.deepEqual(r.badHolders, [o.holders[pos]], `owner ${i} pos ${pos}`);
      assert.equal(verify.calls, 1, 'canonical subset verified: the dual check decided');
      assert.equal(cache.exactChecks, ++exact);
    }
    // A malformed share: S = U \ {v, h}, |R| = 2 — still derived, fast path, named.
    const mal = o.shares.slice();
    mal[k - 1] = new Uint8Array(3);
    const r = await reconstructVerified({ holders: o.holders, shares: mal, threshold: t, verify: verifierFor(o.secret), cache });
    assert.deepEqual(r.badHolders, [o.holders[k - 1]]);
    assert.equal(cache.exactChecks, exact);
  }
  // All dual vectors came from U; only the canonical-subset Lagrange sets cost O(k²) (2 of them).
  // Dual sets: U \ {v} per owner, and U \ {v, h} — the last two owners share that one.
  assert.equal(cache.weightComputations, 3);
  assert.equal(cache.dualComputations, 2 * n - 1);
});

test('supersets: at most MAX_SUPERSETS are kept, least recently used evicted; clear() drops them', () => {
  const cache = new LagrangeCache();
  const sets = range(0, 4).map((s) => range(1, 12).map((i) => i + 100 * s));
  for (const S of sets) cache.setUniverse(S);
  assert.equal(cache.supersetCount, 4);
  assert.equal(cache.weightComputations, 5);
  // sets[0] was evicted: its subsets are computed directly; sets[1] is still there.
  cache.dualLookup(sets[1]!.slice(1), 3);
  assert.equal(cache.weightComputations, 5);
  cache.dualLookup(sets[0]!.slice(1), 3);
  assert.equal(cache.weightComputations, 6);
  cache.clear();
  assert.equal(cache.supersetCount, 0);
  cache.dualLookup(sets[1]!.slice(2), 3);
  assert.equal(cache.weightComputations, 7);
});
