/**
 * The federated-learning example, short: the secure run (real protocol, dropouts, fixed point)
 * must end within 1 percentage point of plain FedAvg, having actually learned something.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { runFederated } from '../src/examples/fl/run.js';
import { partition } from '../src/examples/fl/data.js';
import { renderSvg } from '../src/examples/fl/plot.js';

before(async () => {
  tf.env().set('PROD', true);
  await tf.setBackend('cpu');
});

test('the dataset and its non-IID split are deterministic and skewed', () => {
  const a = partition({ seed: 3, clients: 6, minSize: 50, maxSize: 80, testPerClass: 10 });
  const b = partition({ seed: 3, clients: 6, minSize: 50, maxSize: 80, testPerClass: 10 });
  assert.deepEqual(a.clients[2]!.x, b.clients[2]!.x);
  assert.notDeepEqual(partition({ seed: 4, clients: 6, minSize: 50, maxSize: 80, testPerClass: 10 }).clients[2]!.x, a.clients[2]!.x);
  a.clients.forEach((c, i) => {
    const [p, q] = a.mainClasses[i]!;
    const main = [...c.y].filter((y) => y === p || y === q).length;
    assert.ok(main / c.y.length > 0.7, `client ${i}: ${main}/${c.y.length} from its two main classes`);
  });
  assert.equal(a.test.y.length, 10 * a.test.classes);
});

test('short run: secure FedAvg (real protocol, dropouts) ends within 1 pp of plain FedAvg', async () => {
  const lines: string[] = [];
  const r = await runFederated({ rounds: 4, clients: 8, seed: 5, dropoutRate: 0.25, minSize: 40, maxSize: 100, testPerClass: 100, log: (l) => lines.push(l) });
  assert.equal(r.rounds.length, 4);
  assert.equal(lines.length, 1 + 1 + 4, 'plan, round 0, one line per round');
  const last = r.rounds.at(-1)!;
  const gap = Math.abs(last.secure.accuracy - last.plain.accuracy);
  assert.ok(gap <= 0.01, `secure ${last.secure.accuracy} vs plain ${last.plain.accuracy}`);
  assert.ok(Math.abs(last.secure.loss - last.plain.loss) < 0.01);
  // It learned (8 classes: chance is 12.5 %), so agreeing is not trivial.
  assert.ok(last.plain.accuracy > 0.4 && last.plain.accuracy > r.initial.accuracy + 0.2, `plain accuracy ${last.plain.accuracy}`);
  assert.ok(
    r.rounds.some((round) => round.clipped > 0),
    'the default clip is active (and reported)',
  );
  // Dropouts happened every round.
  for (const round of r.rounds) {
    assert.equal(round.included.length, 8 - (round.dropped.advertise?.length ?? 0) - (round.dropped.share?.length ?? 0) - (round.dropped.masked?.length ?? 0));
    assert.ok(Object.values(round.dropped).flat().length === 2);
  }
  const svg = renderSvg(r);
  assert.match(svg, /^<svg /);
  assert.equal((svg.match(/<path /g) ?? []).length, 4, 'two curves in each of two panels');
});

test('without clipping, the secure global model equals plain FedAvg up to quantisation', async () => {
  const r = await runFederated({ rounds: 2, clients: 6, seed: 9, clip: 10, dropoutRate: 0.2, minSize: 40, maxSize: 80, testPerClass: 50 });
  for (const round of r.rounds) {
    assert.equal(round.clipped, 0);
    assert.ok(round.included.length < 6, 'someone dropped');
    assert.ok(round.maxWeightGap < 1e-4, `round ${round.round}: weights differ by ${round.maxWeightGap}`);
    assert.ok(round.errorBound < 1e-5);
  }
});
