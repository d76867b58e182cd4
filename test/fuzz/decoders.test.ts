/**
 * A short run of the decoder fuzzer (test/fuzz/harness.ts; the long one is `node dist/bench/fuzz.js`):
 * every decoder of untrusted bytes accepts or refuses with a typed error, and the checked decoders'
 * two paths agree, on 20,000 seeded inputs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCorpus } from './corpus.js';
import { decoders, formatReport, inputAt, runFuzz } from './harness.js';
import { MUTATIONS } from './mutate.js';

test('decoder fuzz, 20,000 inputs: no untyped errors, no violations', () => {
  const r = runFuzz({ inputs: 20_000, seed: 20260101 });
  const untyped = r.stats.reduce((a, s) => a + s.untyped, 0);
  const violations = r.stats.reduce((a, s) => a + s.violations, 0);
  assert.equal(untyped + violations, 0, formatReport(r));
  // The run reached past the framing: every decoder accepted some inputs and refused others, and
  // every mutation was applied.
  for (const s of r.stats) {
    assert.equal(s.tried, 20_000);
    if (!s.name.startsWith('scanBody')) assert.ok(s.accepted > 0, `${s.name} accepted nothing`);
    assert.ok(s.refused.size > 0, `${s.name} refused nothing`);
  }
  for (const m of MUTATIONS) assert.ok((r.mutations.get(m) ?? 0) > 100, `${m}: ${r.mutations.get(m) ?? 0}`);
  const sizeRefusals = r.stats.find((s) => s.name === 'decodeClientMessageChecked fast = protobuf-es')!.refused.get('ERR_SIZE') ?? 0;
  assert.ok(sizeRefusals > 20, `caps exercised: ${sizeRefusals}`);
});

test('decoder fuzz: inputs are reproducible from (seed, index)', () => {
  const corpus = buildCorpus(1);
  for (const i of [0, 1, 999, 123_456]) assert.deepEqual(inputAt(corpus, 5, i), inputAt(corpus, 5, i));
  assert.notDeepEqual(inputAt(corpus, 5, 7).bytes, inputAt(corpus, 6, 7).bytes);
  assert.ok(decoders(corpus).length >= 15);
});
