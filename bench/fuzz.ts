/**
 * Fuzz every decoder of untrusted bytes (test/fuzz/harness.ts) and print the summary table.
 *
 *   node dist/bench/fuzz.js [--inputs N] [--seed S] [--only I]
 *
 * N inputs (default 1,000,000), each fed to every decoder; S (default 1) makes the run
 * reproducible; --only I prints input I of that run (hex) and each decoder's answer to it.
 * Exit code 1 if any decoder threw an untyped error or broke a contract.
 */
import { countFlag } from './args.js';
import { buildCorpus } from '../test/fuzz/corpus.js';
import { decoders, formatReport, inputAt, runFuzz } from '../test/fuzz/harness.js';

const inputs = countFlag('inputs') ?? 1_000_000;
const seed = countFlag('seed') ?? 1;
const only = countFlag('only');

if (only !== undefined) {
  const corpus = buildCorpus(1);
  const { bytes, steps } = inputAt(corpus, seed, only);
  console.log(`input ${only} of seed ${seed} (${steps.join(', ')}): ${Buffer.from(bytes).toString('hex')}`);
  for (const d of decoders(corpus)) {
    try {
      d.run(bytes, only);
      console.log(`${d.name}: accepted`);
    } catch (e) {
      console.log(`${d.name}: ${e instanceof Error ? `${e.name} ${(e as { code?: unknown }).code ?? ''} ${e.message}` : String(e)}`);
    }
  }
} else {
  const started = Date.now();
  const report = runFuzz({
    inputs,
    seed,
    onProgress: (done) => process.stderr.write(`  ${done} inputs, ${((Date.now() - started) / 1000).toFixed(0)} s\n`),
  });
  console.log(`node dist/bench/fuzz.js --inputs ${inputs} --seed ${seed}\n`);
  console.log(formatReport(report));
  const bad = report.stats.reduce((a, s) => a + s.untyped + s.violations, 0);
  process.exit(bad === 0 ? 0 : 1);
}
