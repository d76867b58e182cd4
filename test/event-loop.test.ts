/**
 * The server lets other work run during its long steps: the O(k²) set-up of a large unmasking,
 * the in-thread unmasker, and the stage changes that fan O(n·k) entries out to a cohort. These
 * tests count yields and check the work done around them; how long a block lasts is measured by
 * the benchmarks (bench/run.ts, "server longest event-loop block"), never asserted here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LagrangeCache, reconstructVerified, splitSecret } from '../src/shamir/shamir.js';
import { sequentialUnmasker, type MaskJob, type UnmaskPlan } from '../src/protocol/serverRound.js';
import { RingAccumulator } from '../src/ring/accumulator.js';
import { nodeCrypto } from '../src/crypto/node.js';
import { unsafeSeededRng } from '../src/rng.js';
import { Driver } from './driver.js';
import { expectedSum, range } from './helpers.js';

test('prepareUniverse builds the superset and its dual table in slices, and they serve U \\ {r} exactly as setUniverse does', async () => {
  const U = range(1200).map((i) => 3 * i + 5);
  const t = 600;
  let yields = 0;
  const sliced = new LagrangeCache();
  await sliced.prepareUniverse(U.slice().reverse(), t, async () => void yields++);
  // 1200² multiplications for the weights and 2·(1200 − 600 + 4)·1200 for the table, 2^18 a slice.
  assert.ok(yields >= 10, `${yields} yields for ~2.9·10^6 field operations`);
  const whole = new LagrangeCache();
  whole.setUniverse(U);
  const rng = unsafeSeededRng(41);
  for (const r of [0, 17, 1199]) {
    const S = U.filter((_, i) => i !== r);
    assert.deepEqual(sliced.get(S), whole.get(S), `Lagrange coefficients for U \\ {${U[r]}}`);
    const secret = rng(32);
    const shares = splitSecret({ secret, holders: S, threshold: t, rng });
    const ok = await reconstructVerified({ holders: S, shares, threshold: t, cache: sliced, verify: async (s) => s.every((b, i) => b === secret[i]) });
    assert.deepEqual(ok.badHolders, []);
    const bad = shares.map((s) => s.slice());
    bad[5]![0] = (bad[5]![0]! + 1) & 0xff; // chunk 0 moves by 1: still a valid field element
    const caught = await reconstructVerified({ holders: S, shares: bad, threshold: t, cache: sliced, verify: async (s) => s.every((b, i) => b === secret[i]) });
    assert.deepEqual(caught.secret, secret);
    assert.deepEqual(caught.badHolders, [S[5]]);
  }
  const before = { yields, weights: sliced.weightComputations };
  await sliced.prepareUniverse(U, t, async () => void yields++);
  assert.equal(yields, before.yields, 'a prepared universe is not built again');
  assert.equal(sliced.weightComputations, before.weights);
});

test('the in-thread unmasker yields about every 2^20 keystream words when the plan carries the server yield, and runs one round’s batches in order', async () => {
  const m = 1 << 16;
  const rng = unsafeSeededRng(9);
  const jobs: MaskJob[] = Array.from({ length: 40 }, (_, i) => ({ key: rng(16), sign: i % 2 ? 1 : -1 }));
  const expected = new RingAccumulator(m);
  await sequentialUnmasker(expected, jobs, nodeCrypto);

  let yields = 0;
  const plan: UnmaskPlan = { words: jobs.length * m, yieldToEventLoop: async () => void yields++ };
  const got = new RingAccumulator(m);
  const finished: string[] = [];
  // Started together, as the server starts them: a long batch, then a short one.
  const long = sequentialUnmasker(got, jobs.slice(0, 36), nodeCrypto, plan).then(() => finished.push('long'));
  const short = sequentialUnmasker(got, jobs.slice(36), nodeCrypto, plan).then(() => finished.push('short'));
  await Promise.all([long, short]);
  assert.deepEqual(got.view(), expected.view());
  assert.deepEqual(finished, ['long', 'short'], 'the batches of one round do not interleave');
  // Each batch counts its own work: the long one (36 · 2^16 words) yields after 16 and 32 jobs.
  assert.equal(yields, 2);
  // Without a yield in the plan (a worker thread): no yields at all.
  const quiet = new RingAccumulator(m);
  await sequentialUnmasker(quiet, jobs, nodeCrypto, { words: jobs.length * m });
  assert.deepEqual(quiet.view(), expected.view());
});

test('stage changes yield while fanning out keys and ciphertexts to a large cohort, and the round still sums right', async () => {
  const n = 120;
  const marks: string[] = [];
  let d: Driver | undefined;
  const yieldToEventLoop = async () => void marks.push(d!.server.stage);
  d = await new Driver({ n, m: 8, server: { yieldToEventLoop } }).start();
  await d.finish();
  assert.equal(d.server.stage, 'done', d.server.abortError?.message);
  assert.deepEqual(d.server.result!.sum, expectedSum(d.inputs, range(n), d.config.bits));
  const count = (stage: string) => marks.filter((s) => s === stage).length;
  // n·(n − 1) = 14,280 entries each time, 2^12 per yield: keys sent at the end of 'advertise',
  // the peel and the routing of ciphertexts at the end of 'share', the holder check at the end of 'masked'.
  assert.ok(count('advertise') >= 3, `${count('advertise')} yields sending keys`);
  assert.ok(count('share') >= 6, `${count('share')} yields peeling and routing`);
  assert.ok(count('masked') >= 3, `${count('masked')} yields checking holders`);
  assert.ok(count('unmask') >= 4, `${count('unmask')} yields unmasking`);
});
