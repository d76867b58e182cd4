/**
 * Security review of distributed DP (RoundConfig.dp, the excess noise, the service ledger).
 *
 * Convention of this file: a test whose name starts with "FINDING" is a SUCCESSFUL ATTACK today.
 * Its body asserts the secure behaviour, so it FAILS until the flaw is fixed. Every other test is
 * an attack the code defeats and must pass.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Attack } from './harness.js';
import { buildGraph, seededPermutation } from '../../src/graph/harary.js';
import type { ClientId } from '../../src/ids.js';
import type { DpRoundConfig } from '../../src/protocol/config.js';
import { consistencyQuorum, validateConfig, type RoundConfig } from '../../src/protocol/config.js';
import { isSecAggError } from '../../src/errors.js';
import { roundId } from '../../src/ids.js';
import { fromBinary } from '@bufbuild/protobuf';
import { Driver } from '../driver.js';
import { expectedSum, range } from '../helpers.js';
import { ClientMessageSchema } from '../../src/wire/gen/secagg/v1/secagg_pb.js';
import { encodeClientMessage } from '../../src/wire/codec.js';
import { DpLedger, resolveDp } from '../../src/server/dp.js';
import { DEFAULT_RDP_ORDERS } from '../../src/dp/accountant.js';
import type { DpEncoding } from '../../src/dp/encoding.js';

const all = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe('DP review: phantom survivors in active SecAgg+', () => {
  test('removable noise on a SecAgg+ graph is refused by every client at round start (the phantom-survivor attack below needs it)', async () => {
    // validateConfig is what a client runs on RoundStart (and the server when it creates the round).
    const config: RoundConfig = {
      roundId: roundId(new Uint8Array(16)),
      bits: 24,
      dimension: 16,
      threshold: 6,
      degree: 10,
      mode: 'active',
      cohort: all(60) as ClientId[],
      corruption: 1,
      colluders: 2,
      dp: { mechanism: 'skellam', targetVariance: 600, removable: true },
    };
    assert.throws(
      () => validateConfig(config),
      (e: unknown) => isSecAggError(e) && e.code === 'ERR_INVALID_PARAMETERS' && /complete graph/.test(e.message),
    );
    validateConfig({ ...config, dp: { ...config.dp!, removable: false } });
    validateConfig({ ...config, degree: 'complete', threshold: 31, dp: config.dp! });
  });

  test('phantom survivors: U3 padded with honest clients the attacker cut off (no masked input, no neighbour in the sum) — without removal the sum it unmasks still keeps at least T', async () => {
    // Active mode, SecAgg+: n = 60, k = 10, corruption c = 1, t = 6 (2t = 12 > k + c), C = 2
    // colluders (ids 59, 60; U3 never names them, so C is pure slack for the guarantee).
    // Today: |S| = 32, 18 phantoms, |U3| = 50, r = 48: 32·T/48 = 400 = 2T/3 of honest noise.
    // The graph is a ring lattice on a random permutation (the attacker cannot choose it, but it
    // knows it once the view is fixed). The attacker picks a gap (L, R) in ring order:
    //  - S = the honest clients outside the gap: they get their shares and send masked inputs;
    //  - B = the honest clients in the gap at ring distance > k/2 from every member of S: never
    //    given their shares (no masked input), but LISTED IN U3 ("phantoms");
    //  - everyone else in the gap: left out (their masked inputs ignored / never requested).
    // No member of S is a neighbour of a phantom, so every check of checkSurvivors passes (phantoms
    // are in U1; the shared-keys check only looks at a client's own neighbours). The boundary
    // members of S have only k/2 = 5 neighbours in S, but a colluding neighbour holds (and hands
    // over) the 6th share of b_u — the colluders used for that sit outside U3. S is a quorum, so
    // U3 = S ∪ B is signed; each member of S thins for r = |U3| − C and keeps T/r. The attacker
    // unmasks Σ_S x_u + noise of variance |S|·T/(|S| + |B| − C) < T as soon as |B| > C.
    const n = 60;
    const k = 10;
    const t = 6;
    const T = 600;
    const colluders = [59, 60];
    const C = colluders.length;
    // Found in review with removable: true (each member of S thinned for |U3| − C and the sum kept
    // 2T/3); removal is now refused on SecAgg+ graphs, and without it each honest input keeps T/(t − C).
    const dp: DpRoundConfig = { mechanism: 'skellam', targetVariance: T, removable: false };
    const opts = { n, degree: k, threshold: t, corruption: 1, colludersBudget: C, colluders, mode: 'active' as const, dp, m: 16 };
    // Dry run: the same deterministic clients give the same reveals, hence the same graph.
    const dry = await new Attack(opts).setUp();
    await dry.startAll();
    for (const id of dry.honestIds) await dry.view(id, all(n));
    const seed = await dry.seedFor(all(n));
    const graph = buildGraph({ clients: all(n) as ClientId[], degree: k, seed });
    const ring = Array.from(seededPermutation(all(n) as ClientId[], seed)) as number[];
    for (let i = 0; i < n; i++) assert.ok(graph.isNeighbour(ring[i]!, ring[(i + 1) % n]!), 'ring order recovered');
    const N = (u: number) => graph.neighbours(u as ClientId) as readonly number[];
    const K = new Set(colluders);
    const quorum = consistencyQuorum(dry.config, n);
    let best: { S: number[]; B: number[] } | undefined;
    for (let L = 0; L < n; L++)
      for (let len = 12; len < n; len++) {
        const gap = new Set(Array.from({ length: len }, (_, j) => ring[(L + 1 + j) % n]!));
        const S = all(n).filter((u) => !gap.has(u) && !K.has(u));
        if (S.length < quorum) break;
        const inS = new Set(S);
        const B = Array.from({ length: len - 2 * (k / 2) }, (_, j) => ring[(L + 1 + k / 2 + j) % n]!).filter((u) => !K.has(u));
        if (B.some((b) => N(b).some((w) => inS.has(w)))) continue;
        if (!S.every((u) => N(u).filter((w) => inS.has(w) || K.has(w)).length >= t)) continue;
        if (!best || B.length > best.B.length) best = { S, B };
      }
    assert.ok(best && best.B.length > C, `a gap with more phantoms than colluders exists (best ${best?.B.length})`);
    const { S, B } = best;
    const u3 = [...S, ...B].sort((x, y) => x - y);

    const a = await new Attack(opts).setUp();
    await a.startAll();
    for (const id of a.honestIds) await a.view(id, all(n));
    for (const id of a.honestIds) await a.keysFor(id, all(n));
    for (const id of S) await a.sharesFor(id, S);
    for (const id of S) assert.ok(a.masked.has(id), `client ${id} masked (${a.errors.get(id)?.message})`);
    for (const id of S) await a.consistencyFor(id, u3);
    const shown = new Map(S.map((id) => [id, u3] as const));
    for (const id of S) await a.unmaskFor(id, u3, await a.signaturesOver(id, u3, shown));
    for (const id of S) assert.equal(a.stage(id), 'done', `client ${id}: ${a.errors.get(id)?.message}`);

    // The attacker can unmask Σ_S: t self shares of each, and every mask partner of each is in S
    // (masks cancel) or a colluder (it knows the pairwise key).
    const inSum = new Set(S);
    const computable = S.every((u) => a.stolen(u).self >= t && (a.partners.get(u) ?? []).every((p) => inSum.has(p) || a.isColluder(p)));
    assert.ok(computable, 'the attacker can unmask the sum over S');
    const v0 = T / (t - C);
    const kept = S.reduce((s, u) => s + (a.excess.get(u)![0]!.length > 0 ? T / (u3.length - C) : v0), 0);
    assert.ok(
      kept >= T - 1e-9,
      `the sum over |S| = ${S.length} honest inputs the attacker unmasks carries ${kept.toFixed(1)} of honest noise, below T = ${T} (|U3| = ${u3.length} with ${B.length} phantoms, C = ${C})`,
    );
  });
});

describe('DP review: a bad client sending excess noise (the server refuses, keeps serving, the sum stays exact)', () => {
  test('an excess in a round without DP is ERR_SIZE, a second (honest) response is ERR_DUPLICATE_SENDER; the sum is exactly Σx over U3', async () => {
    const d = await new Driver({ n: 6, m: 64, bits: 20 }).start();
    await d.until('unmask');
    const replies = await d.collectReplies();
    const { from, bytes } = replies[0]!;
    const m = fromBinary(ClientMessageSchema, bytes);
    assert.ok(m.body.case === 'unmaskResponse');
    const value = m.body.value;
    assert.equal(value.excessNoise.length, 0);
    for (const len of [3, 3 * 64]) {
      const bad = encodeClientMessage(d.config.roundId, from, { case: 'unmaskResponse', value: { ...value, excessNoise: new Uint8Array(len).fill(1) } });
      // A short one is decoded and refused (ERR_SIZE); a long one is over the message limit of a round without DP (ERR_TOO_BIG, unread).
      assert.equal((await d.toServer(from, bad))?.code, len === 3 ? 'ERR_SIZE' : 'ERR_TOO_BIG', `an excess of ${len} bytes in a round without DP`);
    }
    assert.equal(await d.toServer(from, bytes), undefined);
    // The same client again, also with a different excess: refused before anything is subtracted.
    const again = encodeClientMessage(d.config.roundId, from, { case: 'unmaskResponse', value: { ...value, excessNoise: new Uint8Array(0) } });
    assert.equal((await d.toServer(from, again))?.code, 'ERR_DUPLICATE_SENDER');
    assert.equal((await d.toServer(from, bytes))?.code, 'ERR_DUPLICATE_SENDER');
    for (const r of replies.slice(1)) assert.equal(await d.toServer(r.from, r.bytes), undefined);
    await d.deadline();
    assert.equal(d.server.stage, 'done', d.server.abortError?.message);
    assert.deepEqual(d.server.result!.sum, expectedSum(d.inputs, range(6), d.config.bits));
    assert.equal(d.server.result!.noise, undefined);
  });
});

describe('DP review: the ledger never forgets what was spent', () => {
  test('a history whose cumulative RDP has another number of orders (or a damaged entry) continues as spent, not as zero', () => {
    const dp = resolveDp({ noiseMultiplier: 1, l2Clip: 1, budget: { epsilon: 10 } });
    const encoding = {} as DpEncoding;
    const fresh = new DpLedger(dp, encoding);
    assert.equal(fresh.spent(), 0);
    const other = new DpLedger(dp, encoding, { cumulativeRdp: [1, 2, 3], rounds: 7 });
    assert.equal(other.spent(), Infinity, 'RDP at unknown orders: everything spent');
    const damaged = new DpLedger(dp, encoding, { cumulativeRdp: DEFAULT_RDP_ORDERS.map((_, i) => (i === 3 ? -1 : 0.5)), rounds: 7 });
    assert.ok(damaged.spent() > 0, `a negative RDP entry does not lower ε: ${damaged.spent()}`);
  });
});
