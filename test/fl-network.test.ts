/**
 * The networked federated-learning example, short: the secure sums come from a real aggregation
 * service (createServer on 127.0.0.1) and participate() clients over WebSockets, with clients
 * disconnecting at random stages. The result must end within 1 percentage point of plain FedAvg,
 * and every round's sum must be one the service published and recorded in its history.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { memoryStore } from '../src/server/index.js';
import { runFederatedNetwork } from '../src/examples/fl/network.js';
import { renderSvg } from '../src/examples/fl/plot.js';

before(async () => {
  tf.env().set('PROD', true);
  await tf.setBackend('cpu');
});

test('networked run: secure FedAvg through the service (WebSocket clients, dropouts) ends within 1 pp of plain FedAvg', async () => {
  const store = memoryStore();
  const lines: string[] = [];
  let url = '';
  const r = await runFederatedNetwork(
    { rounds: 4, clients: 10, seed: 5, dropoutRate: 0.2, minSize: 40, maxSize: 100, testPerClass: 100, log: (l) => lines.push(l) },
    { store, unmaskWorkers: 0, stageTimeoutMs: 15_000, onListening: (s) => (url = s.url) },
  );
  assert.equal(r.aggregation, 'network');
  assert.match(url, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
  assert.equal(r.rounds.length, 4);
  assert.equal(lines.length, 1 + 1 + 4, 'plan, round 0, one line per round');

  const last = r.rounds.at(-1)!;
  assert.ok(Math.abs(last.secure.accuracy - last.plain.accuracy) <= 0.01, `secure ${last.secure.accuracy} vs plain ${last.plain.accuracy}`);
  assert.ok(Math.abs(last.secure.loss - last.plain.loss) < 0.03, `loss ${last.secure.loss} vs ${last.plain.loss} (clipping at ±0.2 is active)`);
  assert.ok(last.plain.accuracy > 0.4 && last.plain.accuracy > r.initial.accuracy + 0.2, `plain accuracy ${last.plain.accuracy}`);

  // Every round's sum came from the service: its history holds one completed round per FL round,
  // with the same round id, the same included count, and the very sum the example decoded.
  const history = (await store.list()).sort((a, b) => a.id - b.id);
  assert.equal(history.length, 4);
  for (const [k, round] of r.rounds.entries()) {
    const svc = round.service;
    assert.ok(svc, `round ${round.round} has a service record`);
    const rec = await store.get(svc.id);
    assert.ok(rec);
    assert.equal(rec.id, history[k]!.id);
    assert.equal(rec.outcome, 'completed');
    assert.equal(rec.roundId, svc.roundId);
    assert.equal(rec.params.cohort, 10, 'every client was in the cohort');
    assert.equal(rec.included!.length, round.included.length);
    assert.ok(rec.sum);
    assert.equal(
      createHash('sha256')
        .update(new Uint8Array(rec.sum.buffer, rec.sum.byteOffset, rec.sum.byteLength))
        .digest('hex'),
      svc.sumSha256,
    );
    // Dropouts happened (by disconnecting) every round, and the sum holds exactly the clients that
    // had sent their masked input: those dropping at unmask are in it, the earlier ones are not.
    const drops = Object.values(round.dropped).flat().length;
    assert.equal(drops, 2);
    assert.equal(round.included.length, 10 - (round.dropped.advertise?.length ?? 0) - (round.dropped.share?.length ?? 0) - (round.dropped.masked?.length ?? 0));
    assert.equal(svc.stages.advertise, 10 - (round.dropped.advertise?.length ?? 0));
  }
  assert.deepEqual(
    r.service?.history.map((h) => h.outcome),
    ['completed', 'completed', 'completed', 'completed'],
  );

  const svg = renderSvg(r);
  assert.match(svg, /over the network service/);
  assert.equal((svg.match(/<path /g) ?? []).length, 4, 'two curves in each of two panels');
});
