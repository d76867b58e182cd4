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
import { RingAccumulator } from '../src/ring/accumulator.js';
import { nodeCrypto } from '../src/crypto/node.js';
import { pairwiseMaskKey, selfMaskKey } from '../src/protocol/derive.js';
import { clientId } from '../src/ids.js';
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
          assert.deepEqual(
            r.sum,
            expectedSum(
              d.inputs,
              r.included.map((id) => id - 1),
              d.config.bits,
            ),
          );
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
  // The server learns b_u of every survivor; y_u − PRG(b_u) must still look uniform, because the
  // pairwise masks of u's neighbours stay on it. Removing the self mask exactly as the server would.
  const m = 8192;
  const d = await new Driver({ n: 4, m, bits: 8, seed: 12 }).start();
  d.inputs[0]!.fill(0);
  await d.until('share');
  // The round's secrets as the clients hold them before they share (a consumed state keeps its data).
  const keysOf = (id: number) => {
    const s = d.clients.get(id)!;
    assert.equal(s.stage, 'awaiting-keys');
    return s as Extract<typeof s, { stage: 'awaiting-keys' }>;
  };
  const before = [1, 2, 3, 4].map(keysOf);
  await d.until('masked');
  await d.toClients();
  const msg = fromBinary(ClientMessageSchema, d.replies.find((r) => r.from === 1)!.bytes);
  assert.equal(msg.body.case, 'maskedInput');
  if (msg.body.case !== 'maskedInput') return;
  const acc = new RingAccumulator(m);
  acc.addVector(unpackVector(msg.body.value.vector, 8, m), 1);
  const seed = before[0]!.selfMaskSeed;
  await acc.addPrg(nodeCrypto, await selfMaskKey(nodeCrypto, seed, d.config.roundId, clientId(1)), -1);
  const withoutSelfMask = acc.toVector(8);
  assert.ok(chiSquare(withoutSelfMask, 256) < CHI2_255_LIMIT, 'still uniform with only the pairwise masks on it');
  // Sanity, so the test can fail: removing the pairwise masks too leaves the all-zero input.
  for (const v of [2, 3, 4]) {
    const shared = await (await nodeCrypto.x25519(before[0]!.maskingSecret)).agree(before[v - 1]!.maskingKey);
    await acc.addPrg(nodeCrypto, await pairwiseMaskKey(nodeCrypto, shared, d.config.roundId, clientId(1), clientId(v)), v > 1 ? -1 : 1);
  }
  assert.ok(
    acc.toVector(8).every((x) => x === 0),
    'y_1 minus all its masks is its input',
  );
});
