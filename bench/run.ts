/**
 * `npm run bench`: end-to-end timings of whole simulated rounds and of the client's masking work,
 * each also as a ratio to this machine's PRG floor measured in the same run (DESIGN.md,
 * "Performance model"). Prints a table and writes the same rows as JSON to
 * test-output/bench/results.json.
 *
 *   node dist/bench/run.js [--quick] [--only <row>[,<row>…]] [--reps N] [--workers W] [--out FILE]
 *
 * bench/measure.ts runs the cases (the rows are described there) and returns plain data;
 * bench/report.ts formats it. Targets are reported (PASS/FAIL), never thrown.
 */
import { availableParallelism } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { measure, ROW_IDS, type RowId } from './measure.js';
import { json, summary, table } from './report.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    only: { type: 'string', multiple: true },
    reps: { type: 'string' },
    workers: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});
if (args.help) {
  process.stdout.write(
    `Usage: node dist/bench/run.js [--quick] [--only ${ROW_IDS.join('|')}[,…]] [--reps N] [--workers W] [--out FILE]\n` +
      `  --quick     smaller sizes, a smoke run (targets are still printed but mean little)\n` +
      `  --only      run only these rows (repeatable or comma-separated)\n` +
      `  --reps      repetitions of the small measurements, median taken (default 3, quick 1)\n` +
      `  --workers   worker threads for the server's unmasking (default: available cores)\n` +
      `  --out       JSON output (default test-output/bench/results.json)\n`,
  );
  process.exit(0);
}
const QUICK = args.quick === true;
const isRowId = (s: string): s is RowId => (ROW_IDS as readonly string[]).includes(s);
const only = new Set<RowId>();
for (const o of (args.only ?? [])
  .flatMap((s) => s.split(','))
  .map((s) => s.trim())
  .filter(Boolean)) {
  if (!isRowId(o)) {
    process.stderr.write(`unknown row '${o}'; rows: ${ROW_IDS.join(', ')}\n`);
    process.exit(2);
  }
  only.add(o);
}
const REPS = args.reps !== undefined ? Math.max(1, Number.parseInt(args.reps, 10) || 1) : QUICK ? 1 : 3;
const WORKERS = args.workers !== undefined ? Math.max(0, Number.parseInt(args.workers, 10) || 0) : availableParallelism();
const OUT = args.out ?? 'test-output/bench/results.json';

const t0 = performance.now();
const log = (s: string): void => void process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${s}\n`);

const result = await measure({ quick: QUICK, only, reps: REPS, workers: WORKERS, log });
process.stdout.write(table(result));
process.stdout.write(`\n${summary(result)}`);
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(OUT, json(result));
log(`wrote ${OUT}`);
