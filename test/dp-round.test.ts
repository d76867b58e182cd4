/**
 * A DP round releases exactly the planned noise, with dropouts (issue #12 part 3).
 *
 * Repeated simulated rounds on ZERO inputs: the released sum is the noise alone. Its coordinates
 * (m per round, independent within and across rounds) have empirical variance S = Σx²/N; under the
 * planned variance V, N·S/V is χ²_N (the noise sums are near-Gaussian: a Skellam or discrete
 * Gaussian sum of variance V has excess kurtosis ≈ 1/V ≤ 0.003 here, which widens the interval by
 * the factor √(1 + κ/2), included). We accept when S lies in the two-sided χ² interval of false-alarm
 * rate 1e−6 per check (Wilson–Hilferty quantiles, z = 4.89). The planned V is computed here from
 * t, C and |U3| alone — not read from the result — and compared with result.noise too.
 *
 * Plus: a non-zero input round gives exactly Σx + the noise (the same round re-run with the same
 * seed on zero inputs draws the same noise, since inputs take no randomness); a wrong-length
 * excess is refused with a typed error; the limits fit the largest honest UnmaskResponse.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { simulateRound, type SimulateOptions } from '../src/sim/simulate.js';
import { unsafeSeededRng } from '../src/rng.js';
import { minimumThreshold, type DpRoundConfig } from '../src/protocol/config.js';
import { clientMessageLimits } from '../src/protocol/limits.js';
import { fromBinary } from '@bufbuild/protobuf';
import { Driver } from './driver.js';
import { encodeClientMessage } from '../src/wire/codec.js';
import { ClientMessageSchema } from '../src/wire/gen/secagg/v1/secagg_pb.js';

const N_CLIENTS = 10;
const M = 4000;
const ROUNDS = 8;
const BITS = 24;
const Z = 4.89; // two-sided 1e−6

function chiSquareInterval(n: number, kurtosis: number): [number, number] {
  // Wilson–Hilferty: χ²_n quantile ≈ n(1 − 2/9n + z√(2/9n))³.
  const q = (z: number) => n * (1 - 2 / (9 * n) + z * Math.sqrt(2 / (9 * n))) ** 3;
  const widen = Math.sqrt(1 + kurtosis / 2);
  const lo = 1 - (1 - q(-Z) / n) * widen;
  const hi = 1 + (q(Z) / n - 1) * widen;
  return [lo, hi];
}

function centred(x: number): number {
  return x >= 2 ** (BITS - 1) ? x - 2 ** BITS : x;
}

async function measure(o: Omit<SimulateOptions, 'inputs' | 'bits' | 'rng'>, seed: number) {
  let s2 = 0;
  let n = 0;
  let noise;
  for (let k = 0; k < ROUNDS; k++) {
    const inputs = Array.from({ length: N_CLIENTS }, () => new Uint32Array(M));
    const r = await simulateRound({ ...o, inputs, bits: BITS, rng: unsafeSeededRng(seed * 1000 + k) });
    noise = r.noise;
    for (const x of r.sum) {
      const c = centred(x);
      s2 += c * c;
      n++;
    }
  }
  return { variance: s2 / n, n, noise: noise! };
}

const T = 600;
const t = minimumThreshold('semi-honest', 'complete', N_CLIENTS, 0);
const drops = { share: [9], masked: [8] }; // U3 = clients 0..7: |U3| = 8

interface Case {
  readonly name: string;
  readonly dp: DpRoundConfig;
  readonly colluders?: number;
  readonly unmaskDrops?: number[];
  /** The guaranteed (honest) released variance, planned from t, C, |U3|. */
  readonly planned: number;
  /** The variance really in the sum here (every simulated client is honest). */
  readonly actual: number;
}

const u3 = 8;
const CASES: readonly Case[] = [
  {
    name: 'removable Skellam, C = 0, every survivor answers: exactly T',
    dp: { mechanism: 'skellam', targetVariance: T, removable: true },
    planned: T,
    actual: T,
  },
  {
    name: 'removable Skellam, C = 0, one survivor silent at unmask: it keeps v0, the other 7 keep T/8',
    dp: { mechanism: 'skellam', targetVariance: T, removable: true },
    unmaskDrops: [7],
    planned: 7 * (T / u3) + T / t,
    actual: 7 * (T / u3) + T / t,
  },
  {
    name: 'removable Skellam, C = 1: r = |U3| − 1 honest keep T; all 8 thinned to T/7 here',
    dp: { mechanism: 'skellam', targetVariance: T, removable: true },
    colluders: 1,
    planned: T,
    actual: (u3 * T) / (u3 - 1),
  },
  { name: 'non-removable Skellam: |U3|·v0', dp: { mechanism: 'skellam', targetVariance: T, removable: false }, planned: (u3 * T) / t, actual: (u3 * T) / t },
  { name: 'discrete Gaussian: |U3|·v0', dp: { mechanism: 'dgauss', targetVariance: T, removable: false }, planned: (u3 * T) / t, actual: (u3 * T) / t },
];

describe(`released noise over ${ROUNDS} rounds × ${M} coordinates, n = ${N_CLIENTS}, t = ${t}, dropouts at share and masked (|U3| = ${u3})`, () => {
  CASES.forEach((c, i) => {
    test(c.name, async (tc) => {
      const dropouts = { ...drops, ...(c.unmaskDrops ? { unmask: c.unmaskDrops } : {}) };
      const { variance, n, noise } = await measure({ dp: c.dp, dropouts, ...(c.colluders !== undefined ? { colluders: c.colluders } : {}) }, i + 1);
      const [lo, hi] = chiSquareInterval(n, 1 / c.actual);
      tc.diagnostic(
        `measured ${variance.toFixed(2)} over ${n} coordinates; planned release ${c.planned.toFixed(2)} (result.noise.releasedVariance ${noise.releasedVariance.toFixed(2)}), in the sum ${c.actual.toFixed(2)}; 1e−6 interval [${(lo * c.actual).toFixed(2)}, ${(hi * c.actual).toFixed(2)}]`,
      );
      assert.equal(noise.survivors, u3);
      assert.ok(Math.abs(noise.releasedVariance - c.planned) < 1e-9 * c.planned, `releasedVariance ${noise.releasedVariance}, planned ${c.planned}`);
      assert.ok(Math.abs(noise.totalVariance - c.actual) < 1e-9 * c.actual);
      assert.ok(noise.releasedVariance >= T * (1 - 1e-12), 'never less than the target');
      assert.ok(variance >= lo * c.actual && variance <= hi * c.actual, `measured ${variance}, want ${c.actual} within [${lo}, ${hi}]×`);
      // Power: calibrating to |U3| without removal (the TFF-style count) would be far outside.
      if (c.dp.removable) assert.ok(variance < lo * ((u3 * T) / t), 'distinguishable from no removal');
    });
  });
});

describe('a DP round with inputs', () => {
  test('gives exactly Σx + the noise: the same seeded round on zero inputs draws the same noise', async () => {
    const dp: DpRoundConfig = { mechanism: 'skellam', targetVariance: 900, removable: true };
    const inputs = Array.from({ length: 6 }, (_, u) => new Uint32Array(500).map((_, i) => (u * 7919 + i * 31) % 4096));
    const zeros = inputs.map((x) => new Uint32Array(x.length));
    const o = { bits: BITS, dp, dropouts: { masked: [5], unmask: [4] } };
    const a = await simulateRound({ ...o, inputs, rng: unsafeSeededRng(77) });
    const b = await simulateRound({ ...o, inputs: zeros, rng: unsafeSeededRng(77) });
    assert.deepEqual(a.included, [0, 1, 2, 3, 4]);
    assert.deepEqual(a.noise, b.noise);
    let differs = 0;
    for (let i = 0; i < 500; i++) {
      let want = 0;
      for (const u of a.included) want += inputs[u]![i]!;
      assert.equal((a.sum[i]! - b.sum[i]! + 2 ** BITS) % 2 ** BITS, want % 2 ** BITS, `coordinate ${i}`);
      if (b.sum[i] !== 0) differs++;
    }
    assert.ok(differs > 400, 'the noise is there');
  });
});

describe('the excess on the wire', () => {
  test('the limit fits the largest honest UnmaskResponse of a removable round, and a wrong-length excess is refused with ERR_SIZE', async () => {
    const d = await new Driver({ n: 6, m: 300, bits: 20, dp: { mechanism: 'skellam', targetVariance: 100, removable: true } }).start();
    await d.until('unmask');
    const replies = await d.collectReplies();
    const limit = clientMessageLimits(d.config).unmaskResponse;
    for (const r of replies) assert.ok(r.bytes.length <= limit, `${r.bytes.length} bytes > limit ${limit}`);
    const { from, bytes } = replies[0]!;
    const m = fromBinary(ClientMessageSchema, bytes);
    assert.ok(m.body.case === 'unmaskResponse');
    const value = m.body.value;
    assert.equal(value.excessNoise.length, 3 * 300, '300 elements of 3 bytes');
    for (const len of [0, 3 * 300 - 1, 3 * 300 + 3]) {
      const bad = encodeClientMessage(d.config.roundId, from, { case: 'unmaskResponse', value: { ...value, excessNoise: new Uint8Array(len) } });
      const e = await d.toServer(from, bad);
      assert.ok(e?.code === 'ERR_SIZE', `an excess of ${len} bytes: ${e?.code}`);
    }
    // An element outside the ring (2^20 in a 20-bit round) is refused too, and the honest reply still goes in.
    const outside = value.excessNoise.slice();
    outside.set([0, 0, 0x10], 0);
    assert.equal(
      (await d.toServer(from, encodeClientMessage(d.config.roundId, from, { case: 'unmaskResponse', value: { ...value, excessNoise: outside } })))?.code,
      'ERR_SIZE',
    );
    for (const r of replies) assert.equal(await d.toServer(r.from, r.bytes), undefined);
    await d.deadline();
    assert.equal(d.server.stage, 'done');
  });

  test('without removable noise the limit is what it was', () => {
    const base = {
      roundId: new Uint8Array(16) as never,
      bits: 16,
      dimension: 1000,
      threshold: 3,
      degree: 'complete' as const,
      mode: 'semi-honest' as const,
      cohort: [1, 2, 3, 4] as never,
    };
    const off = clientMessageLimits(base).unmaskResponse;
    assert.equal(clientMessageLimits({ ...base, dp: { mechanism: 'skellam', targetVariance: 10, removable: false } }).unmaskResponse, off);
    assert.equal(clientMessageLimits({ ...base, dp: { mechanism: 'skellam', targetVariance: 10, removable: true } }).unmaskResponse, off + 2 * 1000 + 16);
  });
});
