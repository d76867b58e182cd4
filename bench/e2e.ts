/**
 * End-to-end loopback round: `secagg serve` in a child process and N clients (participate() over
 * real WebSockets) in worker threads. Reports wall time per stage, the server's peak RSS, and
 * checks the published sum against the plaintext sum.
 *
 *   npm run bench:e2e                      # 1000 clients, m = 10,000, SecAgg+ recommended degree
 *   node dist/bench/e2e.js --clients 200 --dim 1000
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import WebSocket from 'ws';
import { participate } from '../src/client/index.js';
import { signToken } from '../src/server/token.js';
import type { WebSocketConstructor } from '../src/transport/socket.js';
import { unsafeSeededRng } from '../src/rng.js';
import { randomRingVector } from '../src/sim/random.js';
import { plainSum } from '../src/ring/vector.js';
import { asKeystream, gbps, keystreamBytesPerMs, keystreamMs, timed } from './timing.js';

const SECRET = 'bench-secret-0123456789abcdef';
const HERE = dirname(fileURLToPath(import.meta.url));
const MAIN = resolve(HERE, '..', 'src', 'cli', 'main.js');

function input(i: number, m: number): Uint32Array {
  return randomRingVector(m, 32, unsafeSeededRng(i + 1));
}

interface Job {
  url: string;
  from: number;
  to: number;
  m: number;
}

async function workerMain(job: Job): Promise<void> {
  const runs = [];
  for (let i = job.from; i < job.to; i++) {
    runs.push(
      participate({
        url: job.url,
        token: signToken({ clientId: `bench-${i}`, expiresAt: Date.now() + 3_600_000 }, SECRET),
        input: input(i, job.m),
        WebSocket: WebSocket as unknown as WebSocketConstructor,
        connectTimeoutMs: 60_000,
      }),
    );
  }
  const reports = await Promise.all(runs);
  parentPort!.postMessage({ included: reports.filter((r) => r[0]?.included).length });
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: { clients: { type: 'string' }, dim: { type: 'string' }, degree: { type: 'string' }, workers: { type: 'string' } },
  });
  const n = Number(a.clients ?? 1000);
  const m = Number(a.dim ?? 10_000);
  const degree = a.degree ?? 'recommended';
  const workers = Number(a.workers ?? availableParallelism());
  const server = spawn(
    process.execPath,
    [
      MAIN,
      'serve',
      '--port',
      '0',
      '--secret',
      SECRET,
      '--history',
      '',
      '--min-clients',
      String(n),
      '--max-clients',
      String(n),
      '--dim',
      String(m),
      '--bits',
      '32',
      '--degree',
      degree,
      '--stage-timeout',
      '300000',
      '--rounds',
      '1',
      '--log-level',
      'info',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const logs: Array<Record<string, unknown>> = [];
  createInterface({ input: server.stderr! }).on('line', (l) => {
    try {
      logs.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      process.stderr.write(l + '\n');
    }
  });
  const first = await new Promise<string>((ok) => createInterface({ input: server.stdout! }).once('line', ok));
  const { url, dashboard } = JSON.parse(first) as { url: string; dashboard: string };
  let peak = 0;
  const sampler = setInterval(() => {
    fetch(dashboard + 'healthz')
      .then((r) => r.json() as Promise<{ memory: { maxRss: number } }>)
      .then((h) => (peak = Math.max(peak, h.memory.maxRss)))
      .catch(() => {});
  }, 200);
  process.stderr.write(`e2e: ${n} clients in ${workers} worker threads, m = ${m}, degree ${degree}, server ${dashboard}\n`);
  const per = Math.ceil(n / workers);
  const { value: included, ms: wall } = await timed(() =>
    Promise.all(
      Array.from({ length: workers }, (_, w) => {
        const job: Job = { url, from: w * per, to: Math.min(n, (w + 1) * per), m };
        return new Promise<number>((ok, fail) => {
          const worker = new Worker(fileURLToPath(import.meta.url), { workerData: job });
          worker.once('message', (msg: { included: number }) => ok(msg.included));
          worker.once('error', fail);
        });
      }),
    ),
  );
  const round = (await (await fetch(dashboard + 'api/rounds/1')).json()) as {
    outcome: string;
    sum: number[] | null;
    included: number[] | null;
    params: { degree: number; threshold: number };
    startedAt: number;
    endedAt: number;
    stages: Record<string, { clients: number; startedAt: number; endedAt: number; bytesIn: number; bytesOut: number }>;
  };
  const h = (await (await fetch(dashboard + 'healthz')).json()) as { memory: { maxRss: number } };
  peak = Math.max(peak, h.memory.maxRss);
  clearInterval(sampler);
  server.kill('SIGTERM');
  const expected = plainSum(
    Array.from({ length: n }, (_, i) => input(i, m)),
    32,
    m,
  );
  const ok = round.outcome === 'completed' && round.sum !== null && round.sum.every((v, j) => v === expected[j]);
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  // The PRG floor, measured now that the round is over: every client that masked expands k + 1
  // masks and the server one self mask per survivor (dropped clients' pairwise masks aside).
  const rate = keystreamBytesPerMs();
  const k = round.params.degree;
  const maskers = round.stages.masked?.clients ?? 0;
  const prgWords = maskers * (k + 2) * m;
  const floorMs = keystreamMs(prgWords, rate);
  const roundMs = round.endedAt - round.startedAt;
  const cores = availableParallelism();
  const lines = [
    `e2e loopback round: n = ${n}, m = ${m}, bits = 32, degree k = ${round.params.degree}, t = ${round.params.threshold}`,
    `  outcome ${round.outcome}, ${round.included?.length ?? 0} clients in the sum (clients saw ${included.reduce((x, y) => x + y, 0)} included), sum ${ok ? 'verified' : 'WRONG'}`,
    `  wall (first connection → last client done): ${(wall / 1000).toFixed(2)} s; round (start → result): ${((round.endedAt - round.startedAt) / 1000).toFixed(2)} s`,
    ...Object.entries(round.stages).map(
      ([s, v]) =>
        `  ${s.padEnd(10)} ${((v.endedAt - v.startedAt) / 1000).toFixed(2).padStart(7)} s  ${String(v.clients).padStart(5)} clients  in ${mb(v.bytesIn).padStart(8)}  out ${mb(v.bytesOut).padStart(8)}  ${asKeystream(v.endedAt - v.startedAt, rate)}`,
    ),
    `  PRG floor in this run ${gbps(rate)}: the round's ${(prgWords / 1e6).toFixed(0)}M mask words take ${floorMs.toFixed(0)} ms on one thread; ` +
      `the round took ${(roundMs / (floorMs / cores)).toFixed(1)}× that ÷ ${cores} cores (key agreement, Shamir and messaging dominate at m = ${m})`,
    `  server peak RSS: ${mb(peak)}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  process.exitCode = ok ? 0 : 1;
}

if (isMainThread) await main();
else await workerMain(workerData as Job);
