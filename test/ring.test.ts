/**
 * ring/: the PRG keystream, the accumulator (WebAssembly SIMD kernel and JS fallback), vector
 * packing, and the KDF domain separation the masks depend on.
 *
 * The keystream is checked against computations that share no code with src/: node:crypto over one
 * whole buffer, @noble/ciphers' CTR, and AES-ECB of hand-built big-endian counter blocks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { ctr as nobleCtr } from '@noble/ciphers/aes.js';
import type { CryptoProvider } from '../src/crypto/provider.js';
import { nodeCrypto } from '../src/crypto/node.js';
import * as web from '../src/crypto/web.js';
import { RingAccumulator } from '../src/ring/accumulator.js';
import { createKernel, unsafeAssembleKernel } from '../src/ring/kernel.js';
import { wordsOf } from '../src/crypto/keystream-common.js';
import { assertInRing, elementBytes, packVector, plainSum, unpackVector } from '../src/ring/vector.js';
import { SecAggError, isSecAggError } from '../src/errors.js';
import { clientId, roundId } from '../src/ids.js';
import { pairwiseMaskKey, selfMaskKey, shareKey, shareNonce } from '../src/protocol/derive.js';

// ---------------------------------------------------------------------------------------------
// helpers

const TWO32 = 4294967296;

const PROVIDERS: readonly CryptoProvider[] = [
  nodeCrypto,
  web.webCrypto,
  ...(typeof web.createWebCrypto === 'function' ? [web.createWebCrypto({ useSubtle: false })] : []),
];

function randomWords(n: number): Uint32Array {
  const b = randomBytes(4 * n);
  return new Uint32Array(b.buffer, b.byteOffset, n).slice();
}

/** Little-endian uint32 words of a byte string, read with DataView (no typed-array aliasing). */
function leWords(bytes: Uint8Array, words: number): Uint32Array {
  assert.ok(bytes.length >= 4 * words);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint32Array(words);
  for (let i = 0; i < words; i++) out[i] = dv.getUint32(4 * i, true);
  return out;
}

/** Reference (a): node:crypto AES-128-CTR over one whole zero buffer, zero IV. */
function refNodeWhole(key: Uint8Array, words: number): Uint32Array {
  const c = createCipheriv('aes-128-ctr', key, new Uint8Array(16));
  const out = Buffer.concat([c.update(new Uint8Array(4 * words)), c.final()]);
  return leWords(out, words);
}

/** Reference (b): @noble/ciphers AES-CTR, zero nonce. */
function refNoble(key: Uint8Array, words: number): Uint32Array {
  return leWords(nobleCtr(key, new Uint8Array(16)).encrypt(new Uint8Array(4 * words)), words);
}

/** Reference (c): AES-128-ECB of the 128-bit big-endian counter block `index`. Returns its 4 words. */
function refEcbBlock(key: Uint8Array, index: number): Uint32Array {
  const block = new Uint8Array(16);
  let b = BigInt(index);
  for (let i = 15; i >= 0; i--) {
    block[i] = Number(b & 0xffn);
    b >>= 8n;
  }
  const c = createCipheriv('aes-128-ecb', key, null);
  c.setAutoPadding(false);
  const out = Buffer.concat([c.update(block), c.final()]);
  assert.equal(out.length, 16);
  return leWords(out, 4);
}

/** Collect a provider's keystream, checking the sink contract (in-order, contiguous, exact length). */
async function collect(p: CryptoProvider, key: Uint8Array, words: number): Promise<Uint32Array> {
  const out = new Uint32Array(words);
  let next = 0;
  await p.keystream(key, words, (chunk, offset) => {
    assert.ok(chunk instanceof Uint32Array, `${p.name}: chunk is a Uint32Array`);
    assert.equal(offset, next, `${p.name}: chunk offsets are contiguous`);
    assert.ok(chunk.length > 0 || words === 0, `${p.name}: no empty chunks`);
    assert.ok(offset + chunk.length <= words, `${p.name}: chunk stays within ${words} words`);
    out.set(chunk, offset); // copy now: a chunk is only valid during the call
    next = offset + chunk.length;
  });
  assert.equal(next, words, `${p.name}: delivered exactly ${words} words`);
  return out;
}

function firstDiff(a: Uint32Array, b: Uint32Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

function assertWordsEqual(actual: Uint32Array, expected: Uint32Array, what: string): void {
  const d = firstDiff(actual, expected);
  if (d !== -1)
    assert.fail(
      `${what}: first difference at word ${d} of ${expected.length} (got ${actual[d]}, want ${expected[d]}; lengths ${actual.length}/${expected.length})`,
    );
}

const KEYS: readonly Uint8Array[] = [new Uint8Array(16), Uint8Array.from({ length: 16 }, (_, i) => i), new Uint8Array(randomBytes(16))];

const STRADDLE_LENGTHS = [1, 3, 4, 15, 16, 17, 16383, 16384, 16385, 65535, 65536, 65537, 100003];

// ---------------------------------------------------------------------------------------------
// 1. PRG cross-checks

test('reference sanity: AES-128-ECB FIPS-197 C.1 known answer, and (a) = (b) = (c)', () => {
  const key = Uint8Array.from({ length: 16 }, (_, i) => i);
  const pt = Uint8Array.from([0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
  const c = createCipheriv('aes-128-ecb', key, null);
  c.setAutoPadding(false);
  assert.equal(Buffer.concat([c.update(pt), c.final()]).toString('hex'), '69c4e0d86a7b0430d8cdb78070b4c55a');
  // Counter block 0 under the all-zero key is AES_0(0) = 66e94bd4ef8a2c3b884cfa59ca342b2e.
  assert.deepEqual(Array.from(refEcbBlock(new Uint8Array(16), 0)), Array.from(leWords(Buffer.from('66e94bd4ef8a2c3b884cfa59ca342b2e', 'hex'), 4)));
  for (const k of KEYS) {
    const a = refNodeWhole(k, 64),
      b = refNoble(k, 64);
    assertWordsEqual(a, b, 'node whole vs noble');
    for (let blk = 0; blk < 16; blk++) assertWordsEqual(a.subarray(4 * blk, 4 * blk + 4), refEcbBlock(k, blk), `ecb block ${blk}`);
  }
});

test('PRG: every provider equals node:crypto-whole and @noble CTR at chunk-straddling lengths', async () => {
  assert.ok(PROVIDERS.length >= 2);
  for (const key of KEYS) {
    const maxRefA = refNodeWhole(key, 100003);
    const maxRefB = refNoble(key, 100003);
    assertWordsEqual(maxRefA, maxRefB, 'reference (a) vs (b) at 100003 words');
    for (const words of STRADDLE_LENGTHS) {
      // (a) computed independently for each length (not as a prefix), so a length-dependent
      // keystream (e.g. a counter derived from the total) cannot hide.
      const refA = refNodeWhole(key, words);
      assertWordsEqual(refA, maxRefB.subarray(0, words), `(a) vs (b) at ${words}`);
      for (const p of PROVIDERS) {
        const got = await collect(p, key, words);
        assertWordsEqual(got, refA, `${p.name} keystream, ${words} words`);
      }
    }
  }
});

test('PRG: selected counter blocks equal AES-ECB of the big-endian counter (incl. carries and chunk edges)', async () => {
  // 255→256 carries into byte 14; 4095/4096 = node's 16384-word chunk edge; 16383/16384 = the
  // WebCrypto 65536-word chunk edge (and a carry within byte 14); 25000 = last block of 100000 words.
  const blocks = [0, 1, 2, 3, 7, 255, 256, 257, 4095, 4096, 4097, 16383, 16384, 16385, 25000];
  const words = 4 * 25001;
  for (const key of KEYS) {
    for (const p of PROVIDERS) {
      const ks = await collect(p, key, words);
      for (const blk of blocks) assertWordsEqual(ks.subarray(4 * blk, 4 * blk + 4), refEcbBlock(key, blk), `${p.name} block ${blk}`);
    }
  }
});

test('PRG: counter carries into byte 13 (block 65536 = word 262144) match AES-ECB', async () => {
  // Below 2^18 words only the two low counter bytes are ever non-zero; check past that point too.
  const key = new Uint8Array(randomBytes(16));
  const words = 4 * 65540 + 3;
  const ref = refNodeWhole(key, words);
  for (const blk of [65535, 65536, 65537]) assertWordsEqual(ref.subarray(4 * blk, 4 * blk + 4), refEcbBlock(key, blk), `reference block ${blk}`);
  for (const p of PROVIDERS) assertWordsEqual(await collect(p, key, words), ref, `${p.name} at ${words} words`);
});

test('wordsOf: reads little-endian words from aligned and unaligned byte views', () => {
  const backing = new Uint8Array(randomBytes(64 + 8));
  for (const off of [0, 1, 2, 3, 4, 5]) {
    const bytes = backing.subarray(off, off + 64);
    assertWordsEqual(wordsOf(bytes, 16), leWords(bytes, 16), `byteOffset ${off}`);
    assertWordsEqual(wordsOf(bytes, 5), leWords(bytes, 5), `byteOffset ${off}, 5 words`);
  }
});

test('PRG: random keys and lengths agree across providers and with @noble (fast-check)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 70000 }), async (key, words) => {
      const ref = refNoble(key, words);
      for (const p of PROVIDERS) assertWordsEqual(await collect(p, key, words), ref, `${p.name} at ${words}`);
    }),
    { numRuns: 12 },
  );
});

test('PRG: different keys give different streams; bad keys and lengths are rejected', async () => {
  const k1 = new Uint8Array(16),
    k2 = new Uint8Array(16);
  k2[15] = 1;
  for (const p of PROVIDERS) {
    const a = await collect(p, k1, 8),
      b = await collect(p, k2, 8);
    assert.notDeepEqual(a, b, p.name);
    for (const bad of [new Uint8Array(15), new Uint8Array(17), new Uint8Array(32)]) {
      await assert.rejects(async () => p.keystream(bad, 4, () => {}), RangeError, `${p.name}: key of ${bad.length} bytes`);
    }
    for (const badWords of [-1, 1.5, NaN]) {
      await assert.rejects(async () => p.keystream(k1, badWords, () => {}), RangeError, `${p.name}: words = ${badWords}`);
    }
    // Zero words: nothing delivered.
    let calls = 0;
    await p.keystream(k1, 0, (c) => {
      if (c.length > 0) calls++;
    });
    assert.equal(calls, 0);
  }
});

// ---------------------------------------------------------------------------------------------
// 2. RingAccumulator

const MODES = [
  { label: 'simd', opts: {} },
  { label: 'js', opts: { simd: false } },
] as const;

test('RingAccumulator: SIMD kernel is in use on Node 20 by default; {simd:false} is the JS path', () => {
  assert.equal(new RingAccumulator(10).simd, true);
  assert.equal(new RingAccumulator(10, { simd: false }).simd, false);
});

test('RingAccumulator: constructor and range checks', () => {
  for (const bad of [0, -1, 1.5, NaN, 2 ** 28 + 1]) assert.throws(() => new RingAccumulator(bad), RangeError, `length ${bad}`);
  for (const { opts } of MODES) {
    const acc = new RingAccumulator(100, opts);
    assert.throws(() => acc.addChunk(new Uint32Array(10), 91, 1), RangeError);
    assert.throws(() => acc.addChunk(new Uint32Array(80), 21, 1), RangeError); // SIMD-sized chunk
    assert.throws(() => acc.addChunk(new Uint32Array(1), -1, 1), RangeError);
    assert.throws(() => acc.addVector(new Uint32Array(99), 1), RangeError);
    assert.throws(() => acc.addVector(new Uint32Array(101), 1), RangeError);
    assert.deepEqual(acc.view(), new Uint32Array(100), 'failed calls changed nothing');
  }
});

test('RingAccumulator: addPrg with sign +1 equals start + keystream, then −1 returns to the start', async () => {
  for (const { label, opts } of MODES) {
    for (const m of [1, 5, 63, 64, 65, 16385, 100003]) {
      const start = randomWords(m);
      const key = new Uint8Array(randomBytes(16));
      const ks = refNoble(key, m);
      const expected = new Uint32Array(m);
      for (let i = 0; i < m; i++) expected[i] = (start[i]! + ks[i]!) % TWO32;
      for (const p of PROVIDERS) {
        const acc = new RingAccumulator(m, opts);
        acc.addVector(start, 1);
        await acc.addPrg(p, key, 1);
        assertWordsEqual(acc.view(), expected, `${label}/${p.name} m=${m} after +PRG`);
        await acc.addPrg(p, key, -1);
        assertWordsEqual(acc.view(), start, `${label}/${p.name} m=${m} after −PRG`);
      }
    }
  }
});

/** BigInt reference for one addChunk. */
function refAddChunk(ref: bigint[], chunk: Uint32Array, offset: number, sign: 1 | -1): void {
  const M = 1n << 32n;
  for (let i = 0; i < chunk.length; i++) {
    const v = ref[offset + i]! + BigInt(sign) * BigInt(chunk[i]!);
    ref[offset + i] = ((v % M) + M) % M;
  }
}

function assertMatchesRef(acc: RingAccumulator, ref: readonly bigint[], what: string): void {
  const v = acc.view();
  assert.equal(v.length, ref.length, what);
  for (let i = 0; i < ref.length; i++) if (BigInt(v[i]!) !== ref[i]) assert.fail(`${what}: word ${i} is ${v[i]}, want ${ref[i]}`);
}

test('RingAccumulator: addChunk at unaligned offsets with tails equals a BigInt reference (both paths)', () => {
  const m = 50000;
  // Offsets not multiples of 16; lengths below 64 (JS path even with SIMD), with 16-word tails,
  // spanning several 16384-word scratch blocks, and reaching the very end of the vector.
  const cases: [number, number][] = [
    [1, 1],
    [3, 63],
    [5, 64],
    [7, 65],
    [13, 79],
    [17, 100],
    [31, 16383],
    [33, 16384],
    [35, 16385],
    [37, 16399],
    [9, 40000],
    [49999, 1],
    [m - 100, 100],
    [m - 16387, 16387],
    [1, m - 1],
    [0, m],
  ];
  for (const { label, opts } of MODES) {
    const acc = new RingAccumulator(m, opts);
    const ref: bigint[] = Array.from({ length: m }, () => 0n);
    // Start from wrap-prone values.
    const init = randomWords(m);
    for (let i = 0; i < m; i += 7) init[i] = 0xffffffff;
    acc.addVector(init, 1);
    refAddChunk(ref, init, 0, 1);
    let sign: 1 | -1 = 1;
    for (const [offset, len] of cases) {
      const chunk = randomWords(len);
      if (len > 2) chunk[len - 1] = 0xffffffff;
      acc.addChunk(chunk, offset, sign);
      refAddChunk(ref, chunk, offset, sign);
      assertMatchesRef(acc, ref, `${label}: addChunk(offset ${offset}, len ${len}, sign ${sign})`);
      sign = sign === 1 ? -1 : 1;
    }
    const vec = randomWords(m);
    acc.addVector(vec, -1);
    refAddChunk(ref, vec, 0, -1);
    assertMatchesRef(acc, ref, `${label}: addVector −1`);
  }
});

test('RingAccumulator: addChunk accepts chunks that are views into a larger buffer at odd offsets', () => {
  for (const { label, opts } of MODES) {
    const m = 300;
    const backing = randomWords(1000);
    const chunk = backing.subarray(3, 3 + 203); // byteOffset 12: not 16-byte aligned
    const acc = new RingAccumulator(m, opts);
    acc.addChunk(chunk, 5, 1);
    const ref: bigint[] = Array.from({ length: m }, () => 0n);
    refAddChunk(ref, chunk, 5, 1);
    assertMatchesRef(acc, ref, label);
  }
});

type Op =
  | { kind: 'chunk'; offset: number; data: Uint32Array; sign: 1 | -1 }
  | { kind: 'vector'; data: Uint32Array; sign: 1 | -1 }
  | { kind: 'toVector'; bits: number };

function opArb(m: number): fc.Arbitrary<Op> {
  const sign = fc.constantFrom<1 | -1>(1, -1);
  const word = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0, 1, 0x7fffffff, 0x80000000, 0xffffffff));
  const chunk = fc.integer({ min: 0, max: m - 1 }).chain((offset) =>
    fc.record({
      kind: fc.constant('chunk' as const),
      offset: fc.constant(offset),
      data: fc.array(word, { minLength: 0, maxLength: m - offset }).map((a) => Uint32Array.from(a)),
      sign,
    }),
  );
  const vector = fc.record({
    kind: fc.constant('vector' as const),
    data: fc.array(word, { minLength: m, maxLength: m }).map((a) => Uint32Array.from(a)),
    sign,
  });
  const toVector = fc.record({ kind: fc.constant('toVector' as const), bits: fc.integer({ min: 1, max: 32 }) });
  return fc.oneof(chunk, vector, toVector);
}

function apply(acc: RingAccumulator, op: Op): Uint32Array | undefined {
  if (op.kind === 'chunk') acc.addChunk(op.data, op.offset, op.sign);
  else if (op.kind === 'vector') acc.addVector(op.data, op.sign);
  else return acc.toVector(op.bits);
  return undefined;
}

test('RingAccumulator: SIMD and JS paths agree bit for bit, and with a BigInt reference (fast-check)', () => {
  const mArb = fc.oneof(fc.integer({ min: 1, max: 70 }), fc.integer({ min: 60, max: 400 }));
  fc.assert(
    fc.property(
      mArb.chain((m) => fc.tuple(fc.constant(m), fc.array(opArb(m), { minLength: 1, maxLength: 12 }))),
      ([m, ops]) => {
        const simd = new RingAccumulator(m);
        const js = new RingAccumulator(m, { simd: false });
        assert.equal(simd.simd, true);
        const ref: bigint[] = Array.from({ length: m }, () => 0n);
        for (const op of ops) {
          const a = apply(simd, op),
            b = apply(js, op);
          if (op.kind === 'chunk') refAddChunk(ref, op.data, op.offset, op.sign);
          else if (op.kind === 'vector') refAddChunk(ref, op.data, 0, op.sign);
          else {
            const mask = (1n << BigInt(op.bits)) - 1n;
            assert.deepEqual(a, b);
            assert.deepEqual(
              Array.from(a!, BigInt),
              ref.map((x) => x & mask),
            );
          }
          assert.deepEqual(simd.view(), js.view());
        }
        assertMatchesRef(simd, ref, 'simd');
      },
    ),
    { numRuns: 300 },
  );
});

test('RingAccumulator: toVector(bits) reduces mod 2^bits for bits 1..32 and returns a fresh copy', () => {
  for (const { label, opts } of MODES) {
    for (let m = 1; m <= 70; m++) {
      const acc = new RingAccumulator(m, opts);
      const v = randomWords(m);
      v[0] = 0xffffffff;
      if (m > 1) v[1] = 0x80000000;
      acc.addVector(v, 1);
      for (let bits = 1; bits <= 32; bits++) {
        const out = acc.toVector(bits);
        assert.equal(out.length, m);
        for (let i = 0; i < m; i++) {
          const want = Number(BigInt(v[i]!) % (1n << BigInt(bits)));
          if (out[i] !== want) assert.fail(`${label} m=${m} bits=${bits} [${i}]: ${out[i]} != ${want}`);
        }
        out.fill(12345);
        assertWordsEqual(acc.view(), v, `${label}: toVector output is not aliased`);
      }
    }
  }
});

test('RingAccumulator: large vector (1<<20) with addVector and addPrg matches a Number reference', async () => {
  const m = 1 << 20;
  const key = new Uint8Array(randomBytes(16));
  const x = randomWords(m),
    y = randomWords(m);
  const ks = refNodeWhole(key, m);
  const want = new Uint32Array(m);
  // (x − y + ks) mod 2^32 with exact Number arithmetic.
  for (let i = 0; i < m; i++) want[i] = (((x[i]! - y[i]! + ks[i]!) % TWO32) + TWO32) % TWO32;
  for (const { label, opts } of MODES) {
    const acc = new RingAccumulator(m, opts);
    acc.addVector(x, 1);
    acc.addVector(y, -1);
    await acc.addPrg(nodeCrypto, key, 1);
    assertWordsEqual(acc.view(), want, `${label} 1<<20`);
    const r = acc.toVector(13);
    for (let i = 0; i < m; i += 4099) assert.equal(r[i], want[i]! % 8192, `${label} toVector(13)[${i}]`);
  }
});

test('RingAccumulator: separate SIMD accumulators do not share memory', () => {
  const a = new RingAccumulator(200),
    b = new RingAccumulator(200);
  const v = randomWords(200);
  a.addVector(v, 1);
  assertWordsEqual(b.view(), new Uint32Array(200), 'b untouched');
  b.addVector(v, -1);
  assertWordsEqual(a.view(), v, 'a untouched by b');
});

// ---------------------------------------------------------------------------------------------
// 3. The WebAssembly kernel

test('kernel: the assembled module validates and computes wrapping i32x4 add/sub', () => {
  const bytes = unsafeAssembleKernel();
  assert.equal(WebAssembly.validate(bytes), true);
  const k = createKernel();
  assert.ok(k, 'kernel available on Node 20');
  const mem = new Uint32Array(k.memory.buffer);
  const n = 48; // 3 × 64 bytes
  const dst = randomWords(n),
    src = randomWords(n);
  dst[0] = 0xffffffff;
  src[0] = 1; // wraps to 0
  dst[1] = 0;
  src[1] = 1; // sub wraps to 0xffffffff
  mem.set(dst, 16); // byte offset 64
  mem.set(src, 128); // byte offset 512
  mem[16 + n] = 0xdeadbeef; // guard word after the region
  k.add(64, 512, 4 * n);
  for (let i = 0; i < n; i++) assert.equal(mem[16 + i], (dst[i]! + src[i]!) % TWO32, `add [${i}]`);
  assert.equal(mem[16 + n], 0xdeadbeef, 'add wrote past nbytes');
  k.sub(64, 512, 4 * n);
  k.sub(64, 512, 4 * n);
  for (let i = 0; i < n; i++) assert.equal(mem[16 + i], (dst[i]! - src[i]! + TWO32) % TWO32, `sub [${i}]`);
  assert.equal(mem[16 + n], 0xdeadbeef, 'sub wrote past nbytes');
  k.add(64, 512, 0); // zero bytes: a no-op that terminates
  assert.equal(mem[16], (dst[0]! - src[0]! + TWO32) % TWO32);
});

// ---------------------------------------------------------------------------------------------
// 4. Vector packing

function randomInRing(m: number, bits: number): Uint32Array {
  const v = randomWords(m);
  if (bits < 32) for (let i = 0; i < m; i++) v[i] = v[i]! % 2 ** bits;
  if (m > 0) v[0] = bits === 32 ? 0xffffffff : 2 ** bits - 1; // the largest element
  if (m > 1) v[1] = 0;
  return v;
}

function expectCode(fn: () => unknown, code: string, what: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SecAggError, `${what}: SecAggError, got ${String(e)}`);
    assert.equal(e.code, code, what);
    return true;
  });
}

test('packVector/unpackVector: round trip for every bits in 1..32, little-endian at elementBytes(bits)', () => {
  for (let bits = 1; bits <= 32; bits++) {
    const w = elementBytes(bits);
    assert.equal(w, Math.ceil(bits / 8));
    for (const m of [0, 1, 2, 7, 1000]) {
      const v = randomInRing(m, bits);
      const packed = packVector(v, bits);
      assert.equal(packed.length, w * m, `bits=${bits} m=${m} packed length`);
      // Independent byte-level check of the layout.
      for (let i = 0; i < m; i++) for (let j = 0; j < w; j++) assert.equal(packed[w * i + j], (v[i]! >>> (8 * j)) & 0xff, `bits=${bits} byte ${w * i + j}`);
      assertWordsEqual(unpackVector(packed, bits, m), v, `bits=${bits} m=${m} round trip`);
      // From an unaligned view into a larger buffer.
      const big = new Uint8Array(packed.length + 3);
      big.set(packed, 1);
      assertWordsEqual(unpackVector(big.subarray(1, 1 + packed.length), bits, m), v, `bits=${bits} m=${m} unaligned`);
    }
  }
  assert.deepEqual(Array.from(packVector(Uint32Array.of(0x04030201), 32)), [1, 2, 3, 4]);
  assert.deepEqual(Array.from(packVector(Uint32Array.of(0x030201), 20)), [1, 2, 3]);
  assert.deepEqual(Array.from(packVector(Uint32Array.of(0x0201, 0x0403), 16)), [1, 2, 3, 4]);
});

test('packVector/unpackVector: round trip on arbitrary in-ring vectors (fast-check)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 32 }).chain((bits) => fc.tuple(fc.constant(bits), fc.array(fc.integer({ min: 0, max: 2 ** bits - 1 }), { maxLength: 50 }))),
      ([bits, arr]) => {
        const v = Uint32Array.from(arr);
        assert.deepEqual(unpackVector(packVector(v, bits), bits, v.length), v);
      },
    ),
    { numRuns: 500 },
  );
});

test('unpackVector: rejects wrong lengths with ERR_SIZE', () => {
  for (let bits = 1; bits <= 32; bits++) {
    const w = elementBytes(bits);
    for (const m of [1, 5, 64]) {
      for (const len of [0, w * m - 1, w * m + 1, w * (m + 1), w * (m - 1)]) {
        if (len === w * m || len < 0) continue;
        expectCode(() => unpackVector(new Uint8Array(len), bits, m), 'ERR_SIZE', `bits=${bits} m=${m} len=${len}`);
      }
    }
  }
});

test('unpackVector: rejects any element ≥ 2^bits when bits is not a multiple of 8', () => {
  for (let bits = 1; bits <= 32; bits++) {
    const w = elementBytes(bits);
    const m = 9;
    const maxStorable = 2 ** (8 * w) - 1;
    if (bits % 8 === 0) {
      // Every storable value is in the ring: all-ones bytes must decode.
      const out = unpackVector(new Uint8Array(w * m).fill(0xff), bits, m);
      assert.ok(
        out.every((x) => x === maxStorable),
        `bits=${bits}`,
      );
      continue;
    }
    for (const bad of [2 ** bits, 2 ** bits + 1, maxStorable, 2 ** (bits + 1) - 1]) {
      if (bad > maxStorable) continue;
      for (const at of [0, 4, m - 1]) {
        const v = randomInRing(m, bits);
        const bytes = packVector(v, bits);
        for (let j = 0; j < w; j++) bytes[w * at + j] = Math.floor(bad / 2 ** (8 * j)) & 0xff;
        expectCode(() => unpackVector(bytes, bits, m), 'ERR_SIZE', `bits=${bits} value ${bad} at ${at}`);
      }
    }
    // The largest in-ring value is still accepted.
    const ok = new Uint32Array(m).fill(2 ** bits - 1);
    assertWordsEqual(unpackVector(packVector(ok, bits), bits, m), ok, `bits=${bits} max value accepted`);
  }
});

test('RingAccumulator.addPacked equals addVector(unpackVector(...)) for every bits, unaligned bytes, both signs and both paths', () => {
  for (const simd of [true, false])
    for (let bits = 1; bits <= 32; bits++) {
      const m = bits % 5 === 0 ? 40_000 : 1 + ((bits * 37) % 300); // some cross the 16,384-word chunks
      const v = new Uint32Array(m);
      const mask = bits === 32 ? 0xffffffff : 2 ** bits - 1;
      const rnd = new Uint32Array(randomBytes(4 * m).buffer);
      for (let i = 0; i < m; i++) v[i] = rnd[i]! & mask;
      const packed = packVector(v, bits);
      const framed = new Uint8Array(packed.length + 3); // the field sits at an odd offset, as inside a message
      framed.set(packed, 3);
      const view = framed.subarray(3);
      const start = new Uint32Array(randomBytes(4 * m).buffer);
      for (const sign of [1, -1] as const) {
        const a = new RingAccumulator(m, { simd });
        a.addVector(start, 1);
        a.addPacked(view, bits, sign);
        const b = new RingAccumulator(m, { simd });
        b.addVector(start, 1);
        b.addVector(unpackVector(packed, bits, m), sign);
        assert.deepEqual(a.view(), b.view(), `bits ${bits}, sign ${sign}, simd ${simd}`);
      }
    }
});

test('RingAccumulator.addPacked refuses wrong lengths and out-of-ring elements with ERR_SIZE, leaving the words untouched', () => {
  for (const bits of [5, 12, 20, 27]) {
    const m = 20_000;
    const w = Math.ceil(bits / 8);
    const bytes = packVector(new Uint32Array(m).fill(1), bits);
    bytes[w * (m - 1) + w - 1] = 0xff; // the last element's top byte: out of the ring
    const acc = new RingAccumulator(m);
    acc.addVector(new Uint32Array(m).fill(9), 1);
    assert.throws(
      () => acc.addPacked(bytes, bits, 1),
      (e: unknown) => isSecAggError(e) && e.code === 'ERR_SIZE',
    );
    assert.ok(
      acc.view().every((x) => x === 9),
      'nothing was added before the refusal',
    );
    assert.throws(
      () => acc.addPacked(bytes.subarray(1), bits, 1),
      (e: unknown) => isSecAggError(e) && e.code === 'ERR_SIZE',
    );
  }
});

test('assertInRing: throws RangeError naming the index; accepts in-ring vectors', () => {
  for (let bits = 1; bits < 32; bits++) {
    const v = randomInRing(20, bits);
    assertInRing(v, bits, 'x');
    v[7] = 2 ** bits;
    assert.throws(
      () => assertInRing(v, bits, 'x'),
      (e: unknown) => e instanceof RangeError && /x\[7\]/.test(e.message),
    );
    v[7] = 0xffffffff;
    v[3] = 2 ** bits + 5;
    assert.throws(
      () => assertInRing(v, bits, 'update'),
      (e: unknown) => e instanceof RangeError && /update\[3\]/.test(e.message),
    );
  }
  assertInRing(Uint32Array.of(0xffffffff, 0), 32, 'x');
  assert.throws(() => assertInRing([1, 2] as unknown as Uint32Array, 8, 'x'), TypeError);
});

test('plainSum: equals a BigInt reference mod 2^bits', () => {
  for (const bits of [1, 7, 8, 16, 31, 32]) {
    const m = 33;
    const vs = Array.from({ length: 5 }, () => randomInRing(m, bits));
    const got = plainSum(vs, bits, m);
    for (let i = 0; i < m; i++) {
      let s = 0n;
      for (const v of vs) s += BigInt(v[i]!);
      assert.equal(BigInt(got[i]!), s % (1n << BigInt(bits)), `bits=${bits} [${i}]`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// 5. Statistics

/** ln Γ(x), Lanczos (g = 7, n = 9). */
function lnGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012,
    9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  x -= 1;
  let a = c[0]!;
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Regularised upper incomplete gamma Q(a, x) (Numerical Recipes gammq). */
function gammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  const gln = lnGamma(a);
  if (x < a + 1) {
    let sum = 1 / a,
      del = sum,
      ap = a;
    for (let n = 0; n < 1000; n++) {
      ap += 1;
      del *= x / ap;
      sum += del;
      if (Math.abs(del) < Math.abs(sum) * 1e-15) break;
    }
    return 1 - sum * Math.exp(-x + a * Math.log(x) - gln);
  }
  const FPMIN = 1e-300;
  let b = x + 1 - a,
    c = 1 / FPMIN,
    d = 1 / b,
    h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < FPMIN) d = FPMIN;
    c = b + an / c;
    if (Math.abs(c) < FPMIN) c = FPMIN;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return Math.exp(-x + a * Math.log(x) - gln) * h;
}

/** p-value of the chi-square goodness-of-fit test for uniformity of `values` over `buckets`. */
function uniformityP(values: Uint32Array, buckets: number, bucketOf: (x: number) => number): number {
  const counts = new Float64Array(buckets);
  for (let i = 0; i < values.length; i++) counts[bucketOf(values[i]!)]!++;
  const e = values.length / buckets;
  let chi2 = 0;
  for (const c of counts) chi2 += ((c - e) * (c - e)) / e;
  return gammaQ((buckets - 1) / 2, chi2 / 2);
}

const P_FAIL = 1e-6;

test('statistics: the chi-square p-value function is right (sanity)', () => {
  // Known quantiles: chi2(df=255) upper 5% ≈ 293.25; chi2(df=15) upper 1e-6 ≈ 55.0 (tables).
  assert.ok(Math.abs(gammaQ(255 / 2, 293.2478 / 2) - 0.05) < 1e-3);
  assert.ok(Math.abs(gammaQ(15 / 2, 24.9958 / 2) - 0.05) < 1e-3);
  assert.ok(Math.abs(gammaQ(1 / 2, 3.841459 / 2) - 0.05) < 1e-4);
  assert.ok(gammaQ(15 / 2, 70 / 2) < 1e-6);
});

test('statistics: keystream reduced to bits is uniform (low byte: 256 buckets; bits=4: 16 buckets)', async () => {
  const m = 1 << 18;
  for (const p of PROVIDERS.slice(0, 2)) {
    const key = new Uint8Array(randomBytes(16));
    const acc = new RingAccumulator(m);
    await acc.addPrg(p, key, 1);
    const v8 = acc.toVector(8);
    const pLow = uniformityP(v8, 256, (x) => x);
    assert.ok(pLow > P_FAIL, `${p.name}: low byte p = ${pLow}`);
    const v4 = acc.toVector(4);
    const p4 = uniformityP(v4, 16, (x) => x);
    assert.ok(p4 > P_FAIL, `${p.name}: bits=4 p = ${p4}`);
    // The top byte of the full word too (all 32 bits are used when bits = 32).
    const v32 = acc.toVector(32);
    const pHigh = uniformityP(v32, 256, (x) => x >>> 24);
    assert.ok(pHigh > P_FAIL, `${p.name}: high byte p = ${pHigh}`);
    // And the top byte of a 20-bit ring.
    const pTop20 = uniformityP(acc.toVector(20), 256, (x) => x >>> 12);
    assert.ok(pTop20 > P_FAIL, `${p.name}: bits=20 top byte p = ${pTop20}`);
  }
});

test('statistics: a structured x fails the test, x + PRG(k) mod 2^bits passes it', async () => {
  const m = 1 << 17;
  const structured: [string, Uint32Array][] = [
    ['zeros', new Uint32Array(m)],
    ['constant', new Uint32Array(m).fill(0x12345678)],
    ['ramp mod 3', Uint32Array.from({ length: m }, (_, i) => i % 3)],
  ];
  for (const [name, x] of structured) {
    for (const bits of [4, 8, 12, 32]) {
      const buckets = bits === 4 ? 16 : 256;
      const xr = new Uint32Array(m);
      for (let i = 0; i < m; i++) xr[i] = bits === 32 ? x[i]! : x[i]! % 2 ** bits;
      // Sanity: the test can fail.
      const px = uniformityP(xr, buckets, (v) => v & (buckets - 1));
      assert.ok(px < P_FAIL, `${name} bits=${bits}: unmasked x should fail, p = ${px}`);
      const acc = new RingAccumulator(m);
      acc.addVector(xr, 1);
      await acc.addPrg(nodeCrypto, new Uint8Array(randomBytes(16)), 1);
      const y = acc.toVector(bits);
      const py = uniformityP(y, buckets, (v) => v & (buckets - 1));
      assert.ok(py > P_FAIL, `${name} bits=${bits}: masked y p = ${py}`);
      assert.ok(
        y.every((v) => bits === 32 || v < 2 ** bits),
        'masked y in ring',
      );
    }
  }
});

// ---------------------------------------------------------------------------------------------
// 6. Domain separation

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('derive: pairwiseMaskKey is symmetric, 16 bytes, and separated by round, pair and purpose', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.uniqueArray(fc.integer({ min: 1, max: 65535 }), { minLength: 3, maxLength: 3 }),
      async (secret, r1Bytes, r2Bytes, [a, b, c]) => {
        fc.pre(hex(r1Bytes) !== hex(r2Bytes));
        const u = clientId(a!),
          v = clientId(b!),
          w = clientId(c!);
        const r1 = roundId(r1Bytes),
          r2 = roundId(r2Bytes);
        for (const p of [nodeCrypto, web.webCrypto]) {
          const kuv = await pairwiseMaskKey(p, secret, r1, u, v);
          assert.equal(kuv.length, 16);
          assert.equal(hex(await pairwiseMaskKey(p, secret, r1, v, u)), hex(kuv), 'symmetric');
          const others = [
            await pairwiseMaskKey(p, secret, r2, u, v), // other round
            await pairwiseMaskKey(p, secret, r1, u, w), // other pair
            await pairwiseMaskKey(p, secret, r1, v, w),
            await selfMaskKey(p, secret, r1, u), // self mask from the same secret
            await selfMaskKey(p, secret, r1, v),
            (await shareKey(p, secret, r1, u, v)).subarray(0, 16), // share AEAD key
          ];
          for (const [i, o] of others.entries()) assert.notEqual(hex(o), hex(kuv), `collision with derivation #${i}`);
          const s1 = await selfMaskKey(p, secret, r1, u);
          assert.equal(s1.length, 16);
          assert.notEqual(hex(await selfMaskKey(p, secret, r2, u)), hex(s1), 'self mask differs across rounds');
          assert.notEqual(hex(await selfMaskKey(p, secret, r1, v)), hex(s1), 'self mask differs across clients');
        }
      },
    ),
    { numRuns: 30 },
  );
});

test('derive: pairwise and self mask keys are HKDF-SHA256 with the documented labels (interop pin)', async () => {
  const secret = new Uint8Array(randomBytes(32));
  const round = roundId(new Uint8Array(randomBytes(16)));
  const be = (...xs: number[]) => {
    const out = Buffer.alloc(4 * xs.length);
    xs.forEach((x, i) => out.writeUInt32BE(x, 4 * i));
    return out;
  };
  const u = clientId(700),
    v = clientId(3);
  const wantPair = new Uint8Array(hkdfSync('sha256', secret, round, Buffer.concat([Buffer.from('secagg/v1/pairwise-mask'), be(3, 700)]), 16));
  const wantSelf = new Uint8Array(hkdfSync('sha256', secret, round, Buffer.concat([Buffer.from('secagg/v1/self-mask'), be(700)]), 16));
  for (const p of PROVIDERS) {
    assert.equal(hex(await pairwiseMaskKey(p, secret, round, u, v)), hex(wantPair), p.name);
    assert.equal(hex(await selfMaskKey(p, secret, round, u)), hex(wantSelf), p.name);
  }
});

test('derive: shareNonce is 12 bytes and differs per direction and per pair', () => {
  const seen = new Set<string>();
  const ids = [1, 2, 3, 255, 256, 65535];
  for (const s of ids)
    for (const r of ids) {
      if (s === r) continue;
      const n = shareNonce(clientId(s), clientId(r));
      assert.equal(n.length, 12);
      const h = hex(n);
      assert.ok(!seen.has(h), `nonce for ${s}→${r} repeats`);
      seen.add(h);
    }
  assert.notEqual(hex(shareNonce(clientId(1), clientId(2))), hex(shareNonce(clientId(2), clientId(1))));
});

test('errors: SecAggError codes are recognised by isSecAggError', () => {
  try {
    unpackVector(new Uint8Array(3), 8, 4);
    assert.fail('should throw');
  } catch (e) {
    assert.ok(isSecAggError(e, 'ERR_SIZE'));
  }
});
