import { simulateRound, STAGES, type SimulateResult } from '../sim/simulate.js';
import { randomRingVector, spreadDropouts } from '../sim/random.js';
import { plainSum } from '../ring/vector.js';
import { recommendParameters } from '../graph/index.js';
import { minimumThreshold } from '../protocol/config.js';
import { isSecAggError } from '../errors.js';
import type { Degree, Mode } from '../protocol/config.js';
import { createWorkerUnmasker } from '../node/workerUnmasker.js';
import { fail, intFlag, parseFlags } from './args.js';

const SIMULATE_HELP = `Usage: secagg simulate [options]

Runs one secure-aggregation round in this process on random inputs: real keys, encrypted shares,
masks and unmasking, with messages encoded on the wire format. Dropouts are spread over the stages.

Options:
  --clients N          number of clients (default 100)
  --dim M              elements per vector (default 10000)
  --bits B             ring Z_{2^B}, 1..32 (default 32)
  --degree K|complete  neighbours per client, or 'recommended' (default complete)
  --threshold T        Shamir threshold (default: the smallest that meets the bound, see docs/protocol.md)
  --corruption C       colluding clients tolerated per neighbourhood (default 0; with --degree
                       recommended, at least what the recommendation assumes)
  --dropout RATE       fraction of clients that drop, spread over the stages (default 0)
  --mode MODE          semi-honest | active (default semi-honest)
  --workers W          worker threads for the server's unmasking (default: cores, 0 = none)
  --json               print the result as JSON
  --quiet              no progress on stderr
  -h, --help           this text

Exit code 0 when the result equals the plaintext sum of the included clients, 1 when it does not,
2 for bad arguments or an aborted round.`;

export async function runSimulate(argv: string[]): Promise<number> {
  const a = parseFlags(
    argv,
    {
      clients: { type: 'string' },
      dim: { type: 'string' },
      bits: { type: 'string' },
      degree: { type: 'string' },
      threshold: { type: 'string' },
      corruption: { type: 'string' },
      dropout: { type: 'string' },
      mode: { type: 'string' },
      workers: { type: 'string' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean' },
    },
    SIMULATE_HELP,
  );
  if (!a) return 0;
  const n = intFlag(a.clients, 'clients', 100, 3, 65535);
  const m = intFlag(a.dim, 'dim', 10000, 1, 1 << 26);
  const bits = intFlag(a.bits, 'bits', 32, 1, 32);
  const mode = (a.mode ?? 'semi-honest') as Mode;
  if (mode !== 'semi-honest' && mode !== 'active') fail(`--mode must be semi-honest or active, got '${a.mode}'`);
  const rate = a.dropout === undefined ? 0 : Number(a.dropout);
  if (!(rate >= 0 && rate < 1)) fail(`--dropout must be a number in [0, 1), got '${a.dropout}'`);
  const dropped = Math.round(rate * n);
  let degree: Degree = 'complete';
  let threshold: number | undefined;
  let corruption = intFlag(a.corruption, 'corruption', 0, 0, 65534);
  if (a.degree === 'recommended') {
    const rec = recommendParameters({ clients: n, dropoutRate: Math.max(rate, 0.01), corruptionRate: corruption / n, securityBits: 40 });
    degree = rec.degree;
    corruption = Math.max(corruption, rec.corruption);
    threshold = Math.max(rec.threshold, minimumThreshold(mode, degree, n, corruption));
  } else if (a.degree !== undefined && a.degree !== 'complete') degree = intFlag(a.degree, 'degree', 0, 2, 65534);
  if (a.threshold !== undefined) threshold = intFlag(a.threshold, 'threshold', 0, 2, 65534);
  const workers = intFlag(a.workers, 'workers', (await import('node:os')).availableParallelism(), 0, 64);

  const inputs = Array.from({ length: n }, () => randomRingVector(m, bits));
  const dropouts = spreadDropouts(
    n,
    dropped,
    STAGES.filter((s) => mode === 'active' || (s !== 'consistency' && s !== 'view')),
  );
  const unmasker = workers > 0 ? createWorkerUnmasker({ workers }) : undefined;
  const progress = !a.quiet && !a.json;
  const tty = process.stderr.isTTY === true;
  const t0 = performance.now();
  let result: SimulateResult;
  try {
    result = await simulateRound({
      inputs,
      bits,
      degree,
      ...(threshold !== undefined ? { threshold } : {}),
      corruption,
      mode,
      dropouts,
      ...(unmasker ? { unmasker: unmasker.unmask } : {}),
      // In a stage: on a terminal one line redrawn 4× a second, else a line every 5 s; a line per stage.
      progressIntervalMs: tty ? 250 : 5000,
      onProgress: progress
        ? (e) => {
            const at = `[${((performance.now() - t0) / 1000).toFixed(1)}s]`;
            const clear = tty ? '\r\x1b[K' : '';
            if (e.within === 'clients')
              process.stderr.write(`${clear}${at} ${e.stage}: … ${e.clientsDone}/${e.clientsTotal} clients have replied${tty ? '' : '\n'}`);
            else if (e.within === 'server')
              process.stderr.write(`${clear}${at} ${e.stage}: … the server has taken ${e.clientsDone}/${e.clientsTotal} replies${tty ? '' : '\n'}`);
            else process.stderr.write(`${clear}${at} ${e.stage === 'done' ? 'unmasked' : e.stage}: ${e.clientsDone}/${e.clientsTotal} clients\n`);
          }
        : undefined,
    } as Parameters<typeof simulateRound>[0]);
  } catch (e) {
    if (isSecAggError(e)) {
      if (a.json) process.stdout.write(JSON.stringify({ ok: false, code: e.code, message: e.message }) + '\n');
      else process.stderr.write(`round aborted: ${e.code}: ${e.message}\n`);
      return 2;
    }
    throw e;
  } finally {
    await unmasker?.close();
  }
  const expected = plainSum(
    result.included.map((i) => inputs[i]!),
    bits,
    m,
  );
  const ok = expected.length === result.sum.length && expected.every((v, i) => v === result.sum[i]);
  const s = result.stats;
  if (a.json) {
    process.stdout.write(JSON.stringify({ ok, included: result.included.length, dropouts, stats: s }, null, 1) + '\n');
    return ok ? 0 : 1;
  }
  const f = (x: number) => x.toFixed(1);
  const kb = (x: number) => (x / 1024).toFixed(1) + ' KiB';
  const lines = [
    `secagg simulate: ${n} clients, m = ${m}, ${bits} bits, ${s.degree === n - 1 ? 'complete graph' : `degree ${s.degree}`}, threshold ${s.threshold}, ${mode}, ${dropped} dropped`,
    '',
    'stage         clients   client ms (mean)   client ms (max)   server ms   longest block   server in    server out',
  ];
  for (const st of STAGES) {
    if ((st === 'consistency' || st === 'view') && mode !== 'active') continue;
    const x = s.stages[st];
    const mean = x.clients > 0 ? x.clientMsTotal / x.clients : 0;
    lines.push(
      `${st.padEnd(13)} ${String(x.clients).padStart(7)}   ${f(mean).padStart(16)}   ${f(x.clientMsMax).padStart(15)}   ${f(x.serverMs).padStart(9)}   ${f(x.serverLongestBlockMs).padStart(13)}   ${kb(x.serverBytesIn).padStart(10)}   ${kb(x.serverBytesOut).padStart(11)}`,
    );
  }
  lines.push(
    '',
    `one client, all stages: ${f(s.clientMs.mean)} ms mean, ${f(s.clientMs.max)} ms max`,
    `client sends ${kb(s.clientBytesSent.mean)}, receives ${kb(s.clientBytesReceived.mean)} (mean); server receives ${kb(s.serverBytesIn)}, sends ${kb(s.serverBytesOut)}`,
    `expansion factor (bytes a client sends / raw input bytes): ${s.expansionFactor.toFixed(3)}`,
    `server unmasking: ${s.serverMaskExpansions} PRG expansions${unmasker ? ` on ${workers} worker threads` : ''}`,
    `longest block: the longest other work waited for the server (a macrotask probe; includes GC pauses)`,
    `included ${result.included.length} of ${n} clients; wall time ${f(s.wallMs)} ms`,
    `result ${ok ? 'equals' : 'DIFFERS FROM'} the plaintext sum of the included clients`,
  );
  process.stdout.write(lines.join('\n') + '\n');
  return ok ? 0 : 1;
}
