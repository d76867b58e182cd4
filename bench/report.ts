/**
 * The reporting half of `npm run bench` (bench/run.ts): formats what bench/measure.ts measured —
 * the header with the run's keystream floor, the markdown table (each timing with its floor and
 * its ratio to it), the PASS/FAIL line, and the JSON written to disk.
 */
import type { Measurement, Row } from './measure.js';
import { toGBps } from './timing.js';

/** The row with its ratio to the floor: the measured one, or meanMs / (floorPerThreadMs ?? floorMs). */
function withRatio(r: Row): Row {
  if (r.ratio !== null || r.meanMs === null || r.floorMs === null) return r;
  return { ...r, ratio: r.meanMs / (r.floorPerThreadMs ?? r.floorMs) };
}

/** The lines above the table: the run's settings and its keystream floor. */
function header(m: Measurement): string[] {
  const { bytesPerMs, samples } = m.keystream;
  return [
    `secagg bench${m.quick ? ' (QUICK: smaller sizes, targets not meaningful)' : ''} — node ${m.node}, ${m.cores} cores, ` +
      `${m.workers} unmask worker threads, accumulator ${m.simd ? 'WASM SIMD' : 'plain JS'}, reps ${m.reps} (median)`,
    `PRG floor: nodeCrypto.keystream (AES-128-CTR) into a no-op sink: ${toGBps(bytesPerMs).toFixed(2)} GB/s ` +
      `(${((1e6 * 4) / bytesPerMs).toFixed(2)} ns/word; ` +
      `samples ${Math.min(...samples.map(toGBps)).toFixed(2)}–${Math.max(...samples.map(toGBps)).toFixed(2)} GB/s). ` +
      `Each row's floor is re-measured next to it.`,
    `ratio = mean / floor (client rows) or mean / (floor / threads) (server rows). Client rows: mean and max over clients.`,
  ];
}

function fmtMs(x: number | null): string {
  if (x === null) return '';
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function fmtWords(x: number | null): string {
  if (x === null) return '';
  return x >= 1e6 ? `${(x / 1e6).toFixed(1)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(0)}k` : String(x);
}

/** The header, then a markdown table of the rows, one group per scenario. */
export function table(m: Measurement): string {
  const rows = m.rows.map(withRatio);
  const cols: Array<{ title: string; get: (r: Row) => string; right?: boolean }> = [
    { title: 'row', get: (r) => r.row },
    { title: 'measure', get: (r) => r.measure },
    { title: 'mean ms', get: (r) => fmtMs(r.meanMs), right: true },
    { title: 'max ms', get: (r) => fmtMs(r.maxMs), right: true },
    { title: 'PRG words', get: (r) => fmtWords(r.prgWords), right: true },
    { title: 'floor ms', get: (r) => fmtMs(r.floorMs), right: true },
    { title: 'thr', get: (r) => (r.threads === null ? '' : String(r.threads)), right: true },
    { title: 'floor/thr', get: (r) => fmtMs(r.floorPerThreadMs), right: true },
    { title: 'ratio', get: (r) => (r.ratio === null ? '' : `${r.ratio.toFixed(2)}×`), right: true },
    { title: 'target', get: (r) => r.target ?? '' },
    { title: 'result', get: (r) => (r.pass === null ? '' : r.pass ? 'PASS' : 'FAIL') },
    { title: 'note', get: (r) => r.note ?? '' },
  ];
  const cells = rows.map((r) => cols.map((c) => c.get(r)));
  const widths = cols.map((c, i) => Math.max(c.title.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) => '| ' + vals.map((v, i) => (cols[i]!.right ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join(' | ') + ' |';
  const out: string[] = [...header(m), ''];
  out.push(line(cols.map((c) => c.title)));
  out.push('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  let lastScenario = '';
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (r.scenario !== lastScenario) {
      out.push(line(cols.map((_, j) => (j === 1 ? `— ${r.scenario} —` : ''))));
      lastScenario = r.scenario;
    }
    out.push(line(cells[i]!));
  }
  return out.join('\n') + '\n';
}

/** "N PASS, M FAIL: <the misses>" over the rows that have a target. */
export function summary(m: Measurement): string {
  const judged = m.rows.filter((r) => r.pass !== null);
  const misses = judged.filter((r) => r.pass === false);
  return (
    `${judged.length - misses.length} PASS, ${misses.length} FAIL` +
    (misses.length ? `: ${misses.map((r) => `${r.row} ${r.measure.trim()} (${r.target})`).join('; ')}` : '') +
    '\n'
  );
}

/** The JSON document of the run: settings, the floor, every row (with its ratio) and the per-case details. */
export function json(m: Measurement): string {
  return (
    JSON.stringify(
      {
        node: m.node,
        quick: m.quick,
        cores: m.cores,
        workers: m.workers,
        reps: m.reps,
        keystreamGBps: toGBps(m.keystream.bytesPerMs),
        keystreamSamplesGBps: m.keystream.samples.map(toGBps),
        rows: m.rows.map(withRatio),
        details: m.details,
      },
      null,
      1,
    ) + '\n'
  );
}
