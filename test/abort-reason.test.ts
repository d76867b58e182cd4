/**
 * The numbers in an abort reason are the numbers the reason names. A round that aborted at the
 * share stage once said "clients that shared keys: 0" while three had: the count was taken after
 * the server peels clients with fewer than t sharing neighbours, and below t + 1 that peel always
 * empties the set. These rounds are driven by hand (test/driver.ts) and compare the reason with
 * the clients the test let share.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeClientMessage } from '../src/wire/codec.js';
import { clientId } from '../src/ids.js';
import { Driver } from './driver.js';
import { GRAPH_SEED, graphFor, range } from './helpers.js';

/** Run honestly to the share stage, let `silent` not answer it, send the rest, then its deadline. */
async function shareWith(d: Driver, silent: readonly number[], quitAfterSharing: readonly number[] = []): Promise<string> {
  await d.until('share');
  const replies = await d.collectReplies(silent);
  for (const r of replies) assert.equal(await d.toServer(r.from, r.bytes), undefined, `client ${r.from}'s shares are accepted`);
  for (const u of quitAfterSharing)
    assert.equal(await d.toServer(u, encodeClientMessage(d.config.roundId, clientId(u), { case: 'abort', value: { code: 'ERR_ABORTED' } })), undefined);
  if (d.server.stage === 'share') await d.deadline();
  const s = d.server;
  assert.equal(s.stage, 'aborted');
  assert.equal(s.abortError.code, 'ERR_BELOW_THRESHOLD');
  return s.abortError.message;
}

describe('abort reasons count what they name', () => {
  test('too few clients share keys (complete graph, n = 5, t = 3): the reason gives the 3 that shared, not 0', async () => {
    const d = await new Driver({ n: 5, threshold: 3, seed: 21 }).start();
    const reason = await shareWith(d, [4, 5]);
    assert.equal(reason, 'clients that shared keys: 3, need at least 4');
  });

  test('a client that shared and then quit is not counted (4 shared, 1 quit: 3)', async () => {
    const d = await new Driver({ n: 5, threshold: 3, seed: 22 }).start();
    const reason = await shareWith(d, [5], [2]);
    assert.equal(reason, 'clients that shared keys: 3, need at least 4');
  });

  test('enough shared, but too few with t sharing neighbours (SecAgg+ graph): the reason gives both counts', async () => {
    const n = 16;
    const k = 6;
    const t = 4;
    // k − t + 1 of client 1's neighbours do not share: client 1 keeps t − 1 sharing neighbours and is
    // left out, and in this ring lattice the loss cascades.
    const silent = graphFor(
      range(n).map((i) => i + 1),
      k,
    )
      .neighbours(clientId(1))
      .slice(0, k - t + 1);
    const d = await new Driver({ n, degree: k, threshold: t, seed: 23, server: { graphSeed: GRAPH_SEED } }).start();
    const reason = await shareWith(d, silent);
    const m = /^clients that shared keys with at least 4 neighbours that also shared \(of (\d+) that shared keys\): (\d+), need at least 5$/.exec(reason);
    assert.ok(m, `reason: ${reason}`);
    assert.equal(Number(m[1]), n - silent.length, 'the clients that shared');
    assert.ok(Number(m[2]) < t + 1);
  });
});
