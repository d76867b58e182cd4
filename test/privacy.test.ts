/**
 * Privacy invariants, checked on real rounds: the server never holds both kinds of share of one
 * client, and what it receives from a client (the masked input) looks uniform on its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fromBinary } from '@bufbuild/protobuf';
import { ClientMessageSchema } from '../src/wire/gen/secagg/v1/secagg_pb.js';
import { unsafeRevealedOwners } from '../src/protocol/serverRound.js';
import { unpackVector } from '../src/ring/vector.js';
import { isSecAggError } from '../src/errors.js';
import { Driver } from './driver.js';
import { expectedSum } from './helpers.js';

/** Chi-square statistic of `values` over `buckets` equal buckets. */
function chiSquare(values: ArrayLike<number>, buckets: number): number {
  const counts = new Float64Array(buckets);
  for (let i = 0; i < values.length; i++) counts[values[i]! % buckets]!++;
  const e = values.length / buckets;
  let x = 0;
  for (const c of counts) x += ((c - e) * (c - e)) / e;
  return x;
}
// For 255 degrees of freedom, P[χ² > 380] < 1e-6: a uniform source essentially never exceeds it.
const CHI2_255_LIMIT = 380;

test('the server never holds both a self-mask share and a key share of one client (random dropout patterns)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom<'semi-honest' | 'active'>('semi-honest', 'active'),
      fc.constantFrom<'complete' | 4>('complete', 4),
      fc.uniqueArray(fc.integer({ min: 1, max: 9 }), { maxLength: 4 }),
      fc.uniqueArray(fc.integer({ min: 1, max: 9 }), { maxLength: 3 }),
      fc.integer({ min: 1, max: 1000 }),
      async (mode, degree, dropAtMasked, dropAtUnmask, seed) => {
        const d = await new Driver({ n: 9, degree, mode, seed }).start();
        await d.until('masked');
        await d.toClients(dropAtMasked);
        await d.flush();
        while (d.server.stage !== 'done' && d.server.stage !== 'aborted') {
          await d.toClients(dropAtUnmask);
          await d.flush();
        }
        const owners = unsafeRevealedOwners(d.server);
        const self = new Set(owners.self);
        for (const v of owners.key) assert.ok(!self.has(v), `both kinds of share of client ${v}`);
        if (d.server.stage === 'done') {
          const r = d.server.result!;
          // Self-mask shares only of the included clients, key shares only of the dropped ones.
          for (const v of owners.self) assert.ok(r.included.includes(v as never));
          for (const v of owners.key) assert.ok(dropAtMasked.includes(v) && !r.included.includes(v as never));
          assert.deepEqual(r.sum, expectedSum(d.inputs, r.included.map((id) => id - 1), d.config.bits));
        } else {
          assert.ok(isSecAggError(d.server.abortError, 'ERR_BELOW_THRESHOLD'), d.server.abortError?.message);
        }
      },
    ),
    { numRuns: 25 },
  );
});

test('a masked input on its own is indistinguishable from uniform, even for an all-zero input', async () => {
  const m = 8192;
  const d = await new Driver({ n: 5, m, bits: 8, seed: 11 }).start();
  d.inputs[0]!.fill(0); // the most structured input there is (the driver's clients hold views of these arrays)
  await d.until('masked');
  await d.toClients();
  const reply = d.replies.find((r) => r.from === 1)!;
  const msg = fromBinary(ClientMessageSchema, reply.bytes);
  assert.equal(msg.body.case, 'maskedInput');
  if (msg.body.case !== 'maskedInput') return;
  const y = unpackVector(msg.body.value.vector, 8, m);
  assert.ok(chiSquare(d.inputs[0]!, 256) > CHI2_255_LIMIT, 'sanity: the raw input is far from uniform');
  const x2 = chiSquare(y, 256);
  assert.ok(x2 < CHI2_255_LIMIT, `masked input χ² = ${x2.toFixed(1)}`);
  // And the round still sums correctly with that input.
  await d.flush();
  await d.finish();
  assert.deepEqual(d.server.result!.sum, expectedSum(d.inputs, [0, 1, 2, 3, 4], 8));
});

test('a masked input with the self mask removed is still masked by the pairwise masks', async () => {
  // The server learns b_u of survivors; y_u − PRG(b_u) must still look uniform (pairwise masks).
  // Checked indirectly: two clients with identical inputs send unrelated masked vectors.
  const m = 4096;
  const d = await new Driver({ n: 4, m, bits: 8, seed: 12 }).start();
  d.inputs[0]!.fill(7);
  d.inputs[1]!.fill(7);
  await d.until('masked');
  await d.toClients();
  const vectors = [1, 2].map((id) => {
    const msg = fromBinary(ClientMessageSchema, d.replies.find((r) => r.from === id)!.bytes);
    return msg.body.case === 'maskedInput' ? unpackVector(msg.body.value.vector, 8, m) : new Uint32Array(0);
  });
  const diff = vectors[0]!.map((a, i) => (a - vectors[1]![i]! + 256) % 256);
  assert.ok(chiSquare(diff, 256) < CHI2_255_LIMIT);
});
