/**
 * Per-kind byte limits (protocol/limits.ts): the largest honest message of every kind fits its
 * kind's limit, for complete and Harary graphs, odd and even degrees and cohorts, bits 1..32 and
 * both modes — and no limit is far above that message (a loose limit is an amplification budget).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Degree, Mode } from '../src/protocol/config.js';
import {
  MAX_ABORT_REASON_BYTES,
  clampAbortReason,
  clientKindForStage,
  clientMessageLimits,
  entryCaps,
  maxClientMessageBytes,
  maxClientMessageBytesForStage,
  maxRoundStartBytes,
  maxServerMessageBytes,
  serverMessageLimits,
  serverMessageLimitsBeforeStart,
} from '../src/protocol/limits.js';
import { decodeClientMessageChecked, decodeServerMessageChecked, encodeServerMessage } from '../src/wire/codec.js';
import { clientKinds, serverKinds } from '../src/wire/peek.js';
import { configOf, encodeClientBodies, encodeServerBodies, largestClientBodies, largestServerBodies, type RoundShape } from './fuzz/corpus.js';
import { Prng } from './fuzz/mutate.js';
import { STAGES } from '../src/protocol/stages.js';

const shapes: RoundShape[] = [];
for (const [clients, degree] of [
  [3, 'complete'],
  [8, 'complete'],
  [31, 'complete'],
  [10, 3],
  [11, 3],
  [12, 4],
  [13, 4],
  [40, 7],
  [41, 8],
  [200, 9],
] as [number, Degree][])
  for (const bits of [1, 7, 8, 9, 16, 17, 24, 32])
    for (const mode of ['semi-honest', 'active'] as Mode[])
      for (const ids of ['low', 'high'] as const) shapes.push({ clients, degree, bits, dimension: 1 + ((clients * bits) % 97), mode, ids });
// DP rounds: RoundStart carries DpParameters; with removable noise (complete graph only) an unmask
// response carries the excess, m packed elements.
for (const [clients, degree] of [
  [3, 'complete'],
  [8, 'complete'],
  [31, 'complete'],
  [12, 4],
  [41, 8],
] as [number, Degree][])
  for (const bits of [7, 16, 24, 32])
    for (const mode of ['semi-honest', 'active'] as Mode[])
      for (const ids of ['low', 'high'] as const)
        shapes.push({
          clients,
          degree,
          bits,
          dimension: 1 + ((clients * bits) % 97),
          mode,
          ids,
          dp:
            degree === 'complete'
              ? { mechanism: 'skellam', targetVariance: 1e9 / 7, removable: true }
              : { mechanism: 'dgauss', targetVariance: 12345.678, removable: false },
        });

/** How far above the largest honest message a limit may be: a quarter more, plus a few entries' framing. */
const notFarAbove = (limit: number, honest: number): boolean => limit <= 1.5 * honest + 256;

test('every kind: the largest honest message fits its limit, and the limit is not far above it', () => {
  const rng = new Prng(7);
  let checked = 0;
  for (const shape of shapes) {
    const c = configOf(shape, rng);
    const cl = clientMessageLimits(c);
    const sl = serverMessageLimits(c);
    const caps = entryCaps(c);
    for (const { kind, bytes } of encodeClientBodies(c, largestClientBodies(c, rng))) {
      const what = `${kind} in ${JSON.stringify(shape)}: ${bytes.length} bytes, limit ${cl[kind]}`;
      assert.ok(bytes.length <= cl[kind], what);
      if (shape.ids === 'high') assert.ok(notFarAbove(cl[kind], bytes.length), what);
      // And the checked decoder takes it, with this round's caps and the kind allowed.
      assert.equal(decodeClientMessageChecked(bytes, { maxBytes: cl, allowed: (k) => k === kind, ...caps }).body.case, kind);
      checked++;
    }
    for (const { kind, bytes } of encodeServerBodies(c, largestServerBodies(c, rng))) {
      const what = `${kind} in ${JSON.stringify(shape)}: ${bytes.length} bytes, limit ${sl[kind]}`;
      assert.ok(bytes.length <= sl[kind], what);
      if (shape.ids === 'high') assert.ok(notFarAbove(sl[kind], bytes.length), what);
      assert.equal(decodeServerMessageChecked(bytes, { maxBytes: sl, allowed: (k) => k === kind, ...caps }).body.case, kind);
      checked++;
    }
  }
  assert.equal(checked, shapes.length * (clientKinds.length + serverKinds.length));
});

test('per-stage client limit: the stage kind or an abort, the abort limit elsewhere', () => {
  const c = configOf({ clients: 20, degree: 6, bits: 16, dimension: 1000, mode: 'active' });
  const l = clientMessageLimits(c);
  const stages = [...STAGES];
  for (const s of stages) {
    const kind = clientKindForStage(s)!;
    assert.ok(kind !== undefined, s);
    assert.equal(maxClientMessageBytesForStage(c, s), Math.max(l[kind], l.abort), s);
  }
  assert.deepEqual(stages.map(clientKindForStage), ['advertiseKeys', 'viewSignature', 'shareKeys', 'maskedInput', 'consistencySignature', 'unmaskResponse']);
  for (const s of ['done', 'aborted', 'nonsense', 'constructor', '__proto__', 'toString']) {
    assert.equal(clientKindForStage(s), undefined, s);
    assert.equal(maxClientMessageBytesForStage(c, s), l.abort, s);
  }
  // The masked stage's limit is the vector's; the others are far below it.
  assert.ok(maxClientMessageBytesForStage(c, 'masked') >= 2000);
  assert.ok(maxClientMessageBytesForStage(c, 'advertise') < 400);
});

test('per-kind limits are never above the old whole-round limits where those were right', () => {
  // maxClientMessageBytes / maxServerMessageBytes assumed the cohort's own parity (effectiveDegree);
  // with an even degree the two agree on k, and the per-kind maximum must not exceed them by more
  // than the fields added since (seed commitments, view proof).
  const c = configOf({ clients: 30, degree: 6, bits: 16, dimension: 50, mode: 'semi-honest' });
  assert.ok(Math.max(...Object.values(clientMessageLimits(c))) <= maxClientMessageBytes(c) + 64);
  assert.ok(Math.max(...Object.values(serverMessageLimits(c))) <= maxServerMessageBytes(c) + 64);
});

test('before RoundStart only roundStart and aborted have a limit', () => {
  const l = serverMessageLimitsBeforeStart(1000);
  assert.equal(l.roundStart, maxRoundStartBytes(1000));
  for (const k of serverKinds) if (k !== 'roundStart' && k !== 'aborted') assert.equal(l[k], 0, k);
  const c = configOf({ clients: 1000, degree: 10, bits: 32, dimension: 2 ** 26, mode: 'active' });
  const bodies = largestServerBodies(c);
  const start = encodeServerMessage(c.roundId, bodies.roundStart);
  assert.ok(start.length <= l.roundStart);
  assert.ok(encodeServerMessage(c.roundId, bodies.aborted).length <= l.aborted);
});

test('clampAbortReason: at most MAX_ABORT_REASON_BYTES of UTF-8, cut between code points', () => {
  const enc = new TextEncoder();
  assert.equal(clampAbortReason('short'), 'short');
  for (const ch of ['a', 'é', '€', '𝄞']) {
    const r = clampAbortReason(ch.repeat(3000));
    const n = enc.encode(r).length;
    assert.ok(n <= MAX_ABORT_REASON_BYTES && n > MAX_ABORT_REASON_BYTES - 4, `${ch}: ${n}`);
    assert.ok(!r.includes('\uFFFD'), 'no broken code point');
    assert.ok(ch.repeat(3000).startsWith(r));
  }
});
