/**
 * The spam-filtering task of the federated-learning example (SpamAssassin corpus, one client per
 * recipient mailbox, held-out mailboxes as the test set), short: the split is really non-IID and
 * disjoint, the features are a function of each mail alone, and a 3-round run with dropouts has a
 * secure aggregate equal to the exact mean of the included clients' updates up to the fixed-point
 * bound, and beats always answering "ham".
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { runFederated } from '../src/examples/fl/run.js';
import { featurize, labelOf, loadCorpus, mailTokens, recipientOf, spamPartition, type CorpusMail } from '../src/examples/fl/spam.js';
import { SeededRandom } from '../src/examples/fl/data.js';
import { renderSvg } from '../src/examples/fl/plot.js';

let corpus: CorpusMail[] = [];

before(async () => {
  tf.env().set('PROD', true);
  await tf.setBackend('cpu');
  corpus = await loadCorpus();
});

test('spam split: training mailboxes are disjoint from the held-out ones, cover the corpus, and differ in spam rate', () => {
  assert.equal(corpus.length, 6046);
  const p = spamPartition(corpus, { clients: 6, spec: { features: 64, maxBodyChars: 2000 } });
  assert.equal(p.clients.length, 6);
  // Every mail is in exactly one place.
  const all = [...p.ids.flat(), ...p.testIds];
  assert.equal(all.length, corpus.length);
  assert.equal(new Set(all).size, corpus.length);
  // No held-out mail was sent to a training mailbox: the test set is other mailboxes, not other mails.
  const byId = new Map(corpus.map((m) => [`${m.group}/${m.id}`, m]));
  const training = new Set(p.mailboxes.map((m) => m.mailbox));
  for (const id of p.testIds) assert.ok(!training.has(recipientOf(byId.get(id)!.text)), `${id} is held out but went to a training mailbox`);
  p.ids.forEach((ids, i) => {
    for (const id of ids) assert.equal(recipientOf(byId.get(id)!.text), p.mailboxes[i]!.mailbox);
    assert.equal(p.clients[i]!.y.length, ids.length);
    assert.deepEqual(
      [...p.clients[i]!.y],
      ids.map((id) => labelOf(byId.get(id)!)),
    );
  });
  // Every 4th mailbox by size is held out: rank 3 is not a client, ranks 0–2 and 4–6 are.
  assert.deepEqual(
    p.mailboxes.map((m) => m.rank),
    [0, 1, 2, 4, 5, 6],
  );
  assert.equal(p.heldOut.largest[0]!.rank, 3);
  // Non-IID: the clients' spam rates span more than 50 percentage points, with a spread (sd) above 20 pp.
  const rates = p.clients.map((c) => c.y.reduce((a, y) => a + y, 0) / c.y.length);
  const mean = rates.reduce((a, r) => a + r, 0) / rates.length;
  const sd = Math.sqrt(rates.reduce((a, r) => a + (r - mean) ** 2, 0) / rates.length);
  assert.ok(Math.max(...rates) - Math.min(...rates) > 0.5, `spam rates ${rates.map((r) => r.toFixed(2))}`);
  assert.ok(sd > 0.2, `sd ${sd}`);
  // And the sizes differ (weighted FedAvg matters).
  const sizes = p.clients.map((c) => c.y.length);
  assert.ok(Math.max(...sizes) > 3 * Math.min(...sizes), `sizes ${sizes}`);
  assert.throws(() => spamPartition(corpus, { clients: 5000 }), /too few for 5000 training clients/);
  assert.throws(() => spamPartition(corpus, { clients: 3, holdoutEvery: 1 }), RangeError);
});

test('spam features: deterministic, a function of the mail alone, independent of the corpus and client order', () => {
  const spec = { features: 256, maxBodyChars: 4000 };
  const mail = 'From: a@b.c\nTo: Someone <x@y.org>\nSubject: FREE money!!\nReceived: from spamhost\n\nClick here for FREE $$$ money.\nfree';
  const tokens = mailTokens(mail, spec);
  assert.deepEqual(tokens, ['s:free', 's:money', 's:!', 's:!', 'click', 'here', 'for', 'free', '$', '$', '$', 'money', 'free']);
  assert.ok(!tokens.some((t) => t.includes('spamhost')), 'other headers are not features');
  assert.equal(recipientOf(mail), 'x@y.org');
  assert.equal(recipientOf('Subject: no recipient\n\nbody'), '(no To:)');
  const v = featurize(mail, spec);
  assert.deepEqual(featurize(mail, spec), v);
  const nz = [...v].filter((x) => x !== 0);
  assert.ok(nz.length <= 9 && nz.length >= 7, `9 distinct tokens in ${nz.length} buckets`);
  assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-6, 'unit L2 norm');
  assert.notDeepEqual(featurize(mail.replace('money', 'cash'), spec), v, 'a different word changes the vector');
  assert.throws(() => featurize(mail, { features: 1.5, maxBodyChars: 10 }), RangeError);

  // Every third mail (about 2,000), in corpus order and shuffled: the same clients, rows and test set.
  const subset = corpus.filter((_, i) => i % 3 === 0);
  const shuffled = new SeededRandom(11).shuffle(subset.slice());
  assert.notDeepEqual(
    shuffled.map((m) => m.id),
    subset.map((m) => m.id),
  );
  const a = spamPartition(subset, { clients: 5, spec });
  const b = spamPartition(shuffled, { clients: 5, spec });
  assert.deepEqual(a.mailboxes, b.mailboxes);
  assert.deepEqual(a.ids, b.ids);
  assert.deepEqual(a.testIds, b.testIds);
  a.clients.forEach((c, i) => {
    assert.deepEqual(c.x, b.clients[i]!.x);
    assert.deepEqual(c.y, b.clients[i]!.y);
  });
  assert.deepEqual(a.test.x, b.test.x);
  // A row is the mail's own featurize(), wherever the mail sits.
  const byId = new Map(subset.map((m) => [`${m.group}/${m.id}`, m]));
  const row = a.clients[2]!.x.subarray(3 * spec.features, 4 * spec.features);
  assert.deepEqual(row, featurize(byId.get(a.ids[2]![3]!)!.text, spec));
});

test('spam run: secure aggregate = exact mean of the included updates within the fixed-point bound; beats the majority class', async () => {
  const lines: string[] = [];
  // clip 10: no update is clipped, so the plain run (unclipped) must agree with the secure one too.
  const r = await runFederated({ task: 'spam', corpus, rounds: 3, clients: 6, seed: 5, dropoutRate: 0.25, clip: 10, log: (l) => lines.push(l) });
  assert.equal(r.data.task, 'spam');
  assert.equal(r.parameters, 2 * 2048 + 2, 'logistic regression on 2,048 hashed features, two classes');
  assert.equal(lines.length, 1 + 6 + 1 + 1 + 1 + 1 + 3, 'data, 6 clients, test, baseline, plan, round 0, one line per round');
  assert.match(lines[0]!, /6 training mailboxes.*spam rate per mailbox/);
  assert.match(lines.find((l) => l.startsWith('baseline'))!, /always 'ham'/);

  // The majority class of the training mailboxes is ham; always answering ham scores the test set's ham share, F1 0.
  const { baseline, heldOut } = r.data;
  assert.equal(r.data.majorityClass, 0);
  assert.ok(heldOut);
  assert.equal(baseline.accuracy, 1 - heldOut.spam / heldOut.mails);
  assert.equal(baseline.f1, 0);
  for (const round of r.rounds) {
    // Dropouts happened every round, and the sum holds exactly the clients that sent a masked input.
    const early = (round.dropped.advertise?.length ?? 0) + (round.dropped.share?.length ?? 0) + (round.dropped.masked?.length ?? 0);
    assert.equal(Object.values(round.dropped).flat().length, 2);
    assert.equal(round.included.length, 6 - early);
    // The decoded mean update is the exact float64 weighted mean of the same clients' updates, up to
    // the fixed-point bound (n′·2^−f / Σw); nothing was clipped.
    assert.equal(round.clipped, 0);
    assert.ok(round.aggregationError <= round.errorBound, `round ${round.round}: error ${round.aggregationError} > bound ${round.errorBound}`);
    assert.ok(round.errorBound < 1e-6);
  }
  // Round 1 starts both runs from the same model, so the two global models differ by the
  // aggregation error alone (plus float32 rounding: one ulp of a weight below 8 is at most 2^−20).
  const first = r.rounds[0]!;
  assert.ok(first.maxWeightGap <= first.errorBound + 2 ** -20, `round 1 weights differ by ${first.maxWeightGap}`);
  const last = r.rounds.at(-1)!;
  assert.ok(Math.abs(last.secure.accuracy - last.plain.accuracy) <= 0.01, `secure ${last.secure.accuracy} vs plain ${last.plain.accuracy}`);
  // It learned: 10 points above always-ham on mailboxes it never saw, with a real spam F1.
  for (const m of [last.secure, last.plain]) {
    assert.ok(m.accuracy > baseline.accuracy + 0.1, `accuracy ${m.accuracy} vs baseline ${baseline.accuracy}`);
    assert.ok(m.f1! > 0.6, `F1 ${m.f1}`);
    assert.ok(m.precision! > 0 && m.recall! > 0);
  }
  const svg = renderSvg(r);
  assert.match(svg, /Spam filtering/);
  assert.equal((svg.match(/<path /g) ?? []).length, 3 + 2 + 2, 'accuracy (with the baseline), F1 and loss panels');
});
