/**
 * The server must not depend on the order replies arrive in (over a network it is arbitrary; the
 * simulator happens to deliver in id order). Same round, replies delivered ascending vs reversed vs
 * shuffled in every stage: the same sum and the same sets, with a client dropped after sharing so
 * both kinds of revealed shares are recorded and more than t shares arrive for every owner.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Driver } from './driver.js';
import { expectedSum } from './helpers.js';
import { unsafeSeededRng } from '../src/rng.js';

type Order = 'ascending' | 'reversed' | 'shuffled';

async function run(order: Order, degree: 'complete' | 6) {
  const d = await new Driver({ n: 12, m: 40, bits: 16, degree, seed: 11 }).start();
  const rng = unsafeSeededRng(99);
  const dropped = 4; // silent from the masked stage on
  while (d.server.stage !== 'done' && d.server.stage !== 'aborted') {
    const afterShare = d.server.stage === 'masked' || d.server.stage === 'unmask';
    const replies = await d.collectReplies(afterShare ? [dropped] : []);
    if (order === 'reversed') replies.reverse();
    if (order === 'shuffled')
      for (let i = replies.length - 1; i > 0; i--) {
        const j = rng(1)[0]! % (i + 1);
        [replies[i], replies[j]] = [replies[j]!, replies[i]!];
      }
    const stage = d.server.stage;
    for (const { from, bytes } of replies) assert.equal(await d.toServer(from, bytes), undefined);
    if (d.server.stage === stage) await d.deadline();
  }
  assert.equal(d.server.stage, 'done');
  return { result: d.server.result!, inputs: d.inputs };
}

for (const degree of ['complete', 6] as const) {
  test(`replies in any order give the same result (${degree === 'complete' ? 'complete graph' : `degree ${degree}`})`, async () => {
    const base = await run('ascending', degree);
    const included = base.result.included.map((id) => id - 1);
    assert.ok(!included.includes(3) && included.length === 11, 'client 4 dropped after sharing, the rest are in');
    assert.deepEqual(base.result.sum, expectedSum(base.inputs, included, 16));
    for (const order of ['reversed', 'shuffled'] as const) {
      const other = await run(order, degree);
      assert.deepEqual(other.result.sum, base.result.sum, order);
      assert.deepEqual(other.result.sets, base.result.sets, order);
      assert.equal(other.result.maskExpansions, base.result.maskExpansions, order);
    }
  });
}
