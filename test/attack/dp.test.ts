/**
 * A malicious server against the clients' differential-privacy noise (RoundConfig.dp). Honest
 * clients are the real state machines; the attacker plays the server (and the colluders):
 *
 * - it inflates the survivor set U3 — with a colluder that adds no noise, or with an honest client
 *   that never sent a masked input — so that the clients remove more noise than the release can
 *   afford. What each client removes is fixed by the U3 it verified and C, never by a declared
 *   count: with the colluder, the r = |U3| − C honest survivors still hold exactly T; with the
 *   honest non-contributor, that client's pairwise masks stay on the sum (its holders reveal its
 *   self mask, never its key), so the sum the thinned noise protects is not released at all;
 * - it asks again for the excess (a second thinning of the same Poisson counts would tell it more):
 *   every later request gets the same bytes;
 * - it announces less noise than a client's policy, another mechanism, or none: refused before
 *   anything is sent.
 *
 * Statistical checks: m = 20,000 excess coordinates per client, the sample variance against the
 * exact one by a z-test at |z| < 5 (false alarm 5.7e−7 each; the fourth moment of the excess
 * R1 − R2, R_i ~ Poisson(λ), is 3·(2λ)² + 2λ, used exactly).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Attack } from './harness.js';
import { unpackVector } from '../../src/ring/vector.js';
import { decodeClientState, encodeClientState } from '../../src/protocol/stateCodec.js';
import type { DpRoundConfig } from '../../src/protocol/config.js';

const all = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
const M = 20_000;

/** Variance of the centred excess against the exact variance 2λ of a Skellam(λ, λ): its z-score. */
function excessZ(bytes: Uint8Array, bits: number, lambda: number): { z: number; variance: number } {
  const x = unpackVector(bytes, bits, bytes.length / Math.ceil(bits / 8));
  const R = 2 ** bits;
  let s2 = 0;
  for (const v of x) {
    const c = v >= R / 2 ? v - R : v;
    s2 += c * c;
  }
  const n = x.length;
  const variance = s2 / n;
  const v = 2 * lambda;
  const m4 = 3 * v * v + v; // Skellam(λ, λ): κ4 = 2λ, so E[X⁴] = 3σ⁴ + 2λ
  return { z: (variance - v) / Math.sqrt((m4 - v * v) / n), variance };
}

/** Semi-honest round run by the attacker up to the masked inputs: every client of `u2` shares and masks. */
async function toMasked(a: Attack, u1: readonly number[], u2: readonly number[]): Promise<void> {
  await a.startAll();
  for (const id of a.honestIds) await a.keysFor(id, u1);
  for (const id of a.honestIds) if (u2.includes(id)) await a.sharesFor(id, u2);
}

describe('a server that inflates U3 cannot make honest clients remove more noise than |U3| − C honest survivors allow', () => {
  const dp: DpRoundConfig = { mechanism: 'skellam', targetVariance: 560, removable: true };

  test('a colluder that adds no noise listed as a survivor: each honest client thins for r = |U3| − C = 7, so the 7 honest survivors keep T', async () => {
    // n = 8, t = 5, C = 1: h = t − C = 4, v0 = T/4 = 140. Client 8 colludes (the attacker's; it
    // adds nothing). U3 = all 8: r = 8 − 1 = 7, each keeps T/7 = 80 and reveals v0 − T/7 = 60.
    const a = await new Attack({ n: 8, degree: 'complete', threshold: 5, mode: 'semi-honest', colluders: [8], colludersBudget: 1, dp, m: M }).setUp();
    const u = all(8);
    await toMasked(a, u, u);
    for (const id of a.honestIds) assert.equal(a.stage(id), 'awaiting-unmask');
    for (const id of a.honestIds) await a.unmaskFor(id, u);
    const v0 = 560 / 4;
    for (const id of a.honestIds) {
      assert.equal(a.stage(id), 'done');
      const [excess] = a.excess.get(id)!;
      assert.equal(excess!.length, 2 * M, 'the excess is m packed elements');
      // Thinning for r = 7 (the verified |U3| minus C) removes variance v0·(1 − 4/7) = 60; a client
      // that trusted |U3| = 8 without C would remove v0·(1 − 4/8) = 70.
      const { z, variance } = excessZ(excess!, 16, (v0 * (1 - 4 / 7)) / 2);
      assert.ok(Math.abs(z) < 5, `client ${id}: excess variance ${variance}, want 60 (z = ${z})`);
      assert.ok(Math.abs(excessZ(excess!, 16, (v0 * (1 - 4 / 8)) / 2).z) > 5, 'distinguishable from thinning for r = 8');
    }
    // What the 7 honest survivors keep: 7 · (v0 − 60) = 7 · 80 = 560 = T.
  });

  test('an honest client that never sent its masked input listed as a survivor: the others thin for it, but its masks stay on the sum', async () => {
    // n = 8, t = 5, C = 0. Client 8 shares its keys and then drops before its masked input; the
    // attacker still lists it in U3. Clients 1..7 cannot tell (it did share keys with them), so
    // they thin for r = 8 (keep T/8 each, 7T/8 in all) — but they reveal shares of b_8, never of
    // s_8^SK, so the pairwise masks 1..7 added with client 8 cannot come off: no sum is released.
    const a = await new Attack({ n: 8, degree: 'complete', threshold: 5, mode: 'semi-honest', dp, m: 64 }).setUp();
    const u = all(8);
    await a.startAll();
    for (const id of a.honestIds) await a.keysFor(id, u);
    for (const id of a.honestIds) if (id !== 8) await a.sharesFor(id, u);
    assert.ok(!a.masked.has(8), 'client 8 sent no masked input');
    for (const id of all(7)) await a.unmaskFor(id, u);
    for (const id of all(7)) {
      assert.equal(a.stage(id), 'done');
      assert.equal(a.excess.get(id)![0]!.length, 2 * 64, 'thinned for the U3 it verified');
    }
    const s = a.stolen(8);
    assert.ok(s.key < a.t, `the attacker holds ${s.key} key shares of client 8: its pairwise masks stay on every sum it can form`);
    assert.deepEqual(a.anyCompromised(), []);
  });

  test('asked again, a client sends the same excess bytes (no second thinning), also after its state is written down and read back', async () => {
    const a = await new Attack({ n: 6, degree: 'complete', threshold: 4, mode: 'semi-honest', dp, m: 256 }).setUp();
    const u = all(6);
    await toMasked(a, u, u);
    await a.unmaskFor(1, u);
    a.honest.set(1, decodeClientState(encodeClientState(a.honest.get(1)!)));
    await a.unmaskFor(1, u);
    await a.unmaskFor(1, u);
    const got = a.excess.get(1)!;
    assert.equal(got.length, 3);
    assert.ok(got[0]!.length === 2 * 256);
    assert.deepEqual(got[1], got[0]);
    assert.deepEqual(got[2], got[0]);
    const state = a.honest.get(1)!;
    assert.ok(state.stage === 'done' && state.dpNoise !== undefined && state.dpNoise.p1.length === 0, 'P1 and P2 are dropped once the excess is drawn');
  });

  test('U3 at the threshold (r = t − C): nothing is removable and the excess is empty', async () => {
    const a = await new Attack({ n: 6, degree: 'complete', threshold: 4, mode: 'semi-honest', dp, m: 32 }).setUp();
    // Clients 5 and 6 drop after sharing: U3 = {1..4} = t.
    const u = all(6);
    await toMasked(a, u, u);
    for (const id of all(4)) await a.unmaskFor(id, all(4));
    for (const id of all(4)) assert.equal(a.excess.get(id)![0]!.length, 0);
  });
});

describe("a client's DP policy: a round that asks for less is refused before anything is sent", () => {
  const policy = { minTargetVariance: 400, required: true, mechanisms: ['skellam'] as const };
  for (const [name, dp] of [
    ['too little variance', { mechanism: 'skellam', targetVariance: 399, removable: true }],
    ['another mechanism', { mechanism: 'dgauss', targetVariance: 10_000, removable: false }],
    ['no DP at all', undefined],
  ] as const) {
    test(name, async () => {
      const a = await new Attack({ n: 6, degree: 'complete', threshold: 4, mode: 'semi-honest', ...(dp ? { dp } : {}), dpPolicy: policy }).setUp();
      for (const id of a.honestIds) {
        const reply = await a.roundStart(id);
        assert.equal(a.stage(id), 'aborted');
        assert.equal(a.errors.get(id)?.code, 'ERR_INVALID_PARAMETERS');
        assert.equal(reply, undefined, 'nothing is sent (a client aborting at RoundStart has not joined the round)');
        assert.equal(a.keys.has(id), false, 'no keys advertised');
      }
    });
  }

  test('the same policy joins a round that asks for at least as much', async () => {
    const a = await new Attack({
      n: 6,
      degree: 'complete',
      threshold: 4,
      mode: 'semi-honest',
      dp: { mechanism: 'skellam', targetVariance: 400, removable: false },
      dpPolicy: policy,
    }).setUp();
    for (const id of a.honestIds) assert.equal((await a.roundStart(id))?.body.case, 'advertiseKeys');
  });
});
