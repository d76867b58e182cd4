/** simulateRound's progress: one event per stage, and in-stage events that count what really happened. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { simulateRound, type ProgressEvent } from '../src/sim/simulate.js';
import { randomRingVector } from '../src/sim/random.js';
import { unsafeSeededRng } from '../src/rng.js';

test('simulateRound progress: in-stage events count clients that replied and replies the server took; one closing event per stage', async () => {
  const n = 9;
  const rng = unsafeSeededRng(11);
  const inputs = Array.from({ length: n }, () => randomRingVector(16, 16, rng));
  const events: ProgressEvent[] = [];
  // Client 3 (index 2) goes silent at share: the share stage has n - 1 replies, and so on after.
  await simulateRound({ inputs, bits: 16, dropouts: { share: [2] }, rng, progressIntervalMs: 0, onProgress: (e) => events.push(e) });
  const closing = events.filter((e) => e.within === undefined);
  assert.deepEqual(
    closing.map((e) => [e.stage, e.clientsDone]),
    [
      ['advertise', n],
      ['share', n - 1],
      ['masked', n - 1],
      ['unmask', n - 1],
      ['done', n - 1],
    ],
  );
  for (const stage of ['advertise', 'share', 'masked', 'unmask'] as const) {
    const clients = events.filter((e) => e.stage === stage && e.within === 'clients').map((e) => e.clientsDone);
    const server = events.filter((e) => e.stage === stage && e.within === 'server').map((e) => e.clientsDone);
    const replies = closing.find((e) => e.stage === stage)!.clientsDone;
    // One event per client that computed a reply (the silent one computes nothing from share on).
    assert.equal(clients.length, stage === 'advertise' ? n : n - 1, stage);
    assert.ok(
      clients.every((c, i) => i === 0 || c >= clients[i - 1]!),
      `${stage}: never decreasing`,
    );
    assert.equal(clients.at(-1), replies, `${stage}: the last in-stage count is the stage's`);
    assert.deepEqual(
      server,
      Array.from({ length: replies }, (_, i) => i + 1),
      `${stage}: one event per reply the server took`,
    );
  }
  // Events come in order: a stage's client events, its closing event, then its server events.
  const order = events.map((e) => `${e.stage}:${e.within ?? 'end'}`);
  assert.ok(order.indexOf('share:end') > order.lastIndexOf('share:clients') && order.indexOf('share:end') < order.indexOf('share:server'));
});

test('simulateRound progress: with the default interval a quick round reports only the stage ends', async () => {
  const rng = unsafeSeededRng(12);
  const inputs = Array.from({ length: 5 }, () => randomRingVector(8, 16, rng));
  const events: ProgressEvent[] = [];
  await simulateRound({ inputs, bits: 16, rng, onProgress: (e) => events.push(e), progressIntervalMs: 60_000 });
  assert.deepEqual(
    events.map((e) => e.stage),
    ['advertise', 'share', 'masked', 'unmask', 'done'],
  );
});
