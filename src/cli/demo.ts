import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { availableParallelism } from 'node:os';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { createServer, signToken, silentLogger, type PublishedResult, type ServiceOptions } from '../server/index.js';
import { participate, type ReplyStage } from '../client/index.js';
import { identityPublicKey, issueCertificate, toHex } from '../identity/index.js';
import type { WebSocketConstructor } from '../transport/socket.js';
import { unsafeSeededRng } from '../rng.js';
import { randomRingVector } from '../sim/random.js';
import { plainSum } from '../ring/vector.js';
import { stagesOf } from '../protocol/stages.js';
import { UsageError, intFlag as num, parseFlags } from './args.js';

export const DEMO_HELP = `Usage: secagg demo [options]

Starts a service on localhost and N clients over real WebSockets (in worker threads) that drop out
at random stages; prints each round's result, verified against the plaintext sum, and keeps the
dashboard up until Ctrl-C (or exits after --rounds).

Options:
  --clients N      clients (default 50)
  --rounds R       exit after R rounds (default: run until Ctrl-C)
  --dim M          elements per vector (default 1000)
  --dropout P      probability that a client drops out during a round (default 0.1)
  --port P         port (default 8080)
  --mode M         semi-honest | active (default semi-honest). Active: every client gets an Ed25519
                   identity certified by a demo issuer; tokens are bound to the identity keys and
                   clients check every peer's certificate against the pinned issuer key
  -h, --help       this text`;

interface Job {
  /** Client i connects to urls[i % urls.length] (the gateways of `secagg cluster`, or the one service). */
  urls: string[];
  secret: string;
  ids: number[];
  m: number;
  dropout: number;
  /** Active mode: per client (same order as ids) its identity seed (hex) and certificate, and the issuer key (hex). */
  active?: { seeds: string[]; certificates: string[]; issuerKey: string };
}

/** Client i's input in round r: reproducible, so the demo (and `secagg cluster`) can check every sum. */
export function demoInput(i: number, round: number, m: number): Uint32Array {
  return randomRingVector(m, 32, unsafeSeededRng(i * 1_000_003 + round));
}

/**
 * N demo clients (ids 0..n−1, token subjects `demo-<i>`) in worker threads, each taking part in
 * round after round and dropping out at a random stage with probability `dropout`; terminate the
 * workers to stop them.
 */
export function startDemoClients(o: {
  urls: string[];
  secret: string;
  n: number;
  m: number;
  dropout: number;
  issuer?: { key: Uint8Array; seeds: string[]; certificates: string[] };
}): Worker[] {
  const threads = Math.max(1, Math.min(availableParallelism(), 4, o.n));
  return Array.from({ length: threads }, (_, w) => {
    const ids = Array.from({ length: o.n }, (_, i) => i).filter((i) => i % threads === w);
    const issuer = o.issuer;
    const active = issuer
      ? { seeds: ids.map((i) => issuer.seeds[i]!), certificates: ids.map((i) => issuer.certificates[i]!), issuerKey: toHex(issuer.key) }
      : undefined;
    return new Worker(fileURLToPath(import.meta.url), {
      workerData: { urls: o.urls, secret: o.secret, ids, m: o.m, dropout: o.dropout, ...(active ? { active } : {}) } satisfies Job,
    });
  });
}

async function clientWorker(job: Job): Promise<void> {
  const stages: readonly ReplyStage[] = stagesOf(job.active ? 'active' : 'semi-honest');
  await Promise.all(
    job.ids.map(async (i, k) => {
      const seed = job.active ? Uint8Array.from(Buffer.from(job.active.seeds[k]!, 'hex')) : undefined;
      const identityKey = seed ? await identityPublicKey(seed) : undefined;
      for (;;) {
        // Each round: with probability `dropout` this client leaves at a random stage, then comes back.
        const drop = Math.random() < job.dropout ? stages[Math.floor(Math.random() * stages.length)] : undefined;
        try {
          await participate({
            url: job.urls[i % job.urls.length]!,
            token: signToken({ clientId: `demo-${i}`, expiresAt: Date.now() + 86_400_000, ...(identityKey ? { identityKey } : {}) }, job.secret),
            ...(job.active ? { identity: seed!, certificate: job.active.certificates[k]!, issuerKey: job.active.issuerKey } : {}),
            inputProvider: (r) => demoInput(i, r.round, r.dimension),
            WebSocket: WebSocket as unknown as WebSocketConstructor,
            reconnect: { maxAttempts: 1000, maxDelayMs: 2000 },
            unsafeBeforeSend: (stage) => (stage === drop ? 'disconnect' : 'send'),
          });
        } catch {
          await new Promise((r) => setTimeout(r, 1000));
        }
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 400));
      }
    }),
  );
}

export async function runDemo(argv: string[]): Promise<number> {
  const a = parseFlags(
    argv,
    {
      clients: { type: 'string' },
      rounds: { type: 'string' },
      dim: { type: 'string' },
      dropout: { type: 'string' },
      port: { type: 'string' },
      mode: { type: 'string' },
    },
    DEMO_HELP,
  );
  if (!a) return 0;
  const n = num(a.clients, 'clients', 50, 3, 10_000);
  const rounds = a.rounds === undefined ? Infinity : num(a.rounds, 'rounds', 0, 1, 1e9);
  const m = num(a.dim, 'dim', 1000, 1, 1 << 24);
  const dropout = a.dropout === undefined ? 0.1 : Number(a.dropout);
  if (!(dropout >= 0 && dropout < 1)) throw new UsageError('--dropout must be in [0, 1)');
  const mode = a.mode ?? 'semi-honest';
  if (mode !== 'semi-honest' && mode !== 'active') throw new UsageError(`--mode must be semi-honest or active, got '${mode}'`);
  const secret = randomBytes(24).toString('hex');
  // Active mode: a demo identity issuer certifies every client's key; clients pin the issuer's public key.
  let issuer: { key: Uint8Array; seeds: string[]; certificates: string[] } | undefined;
  if (mode === 'active') {
    const issuerSeed = new Uint8Array(randomBytes(32));
    const seeds = Array.from({ length: n }, () => new Uint8Array(randomBytes(32)));
    const certificates = await Promise.all(
      seeds.map(async (seed, i) =>
        issueCertificate({ clientId: `demo-${i}`, identityKey: await identityPublicKey(seed), expiresAt: Date.now() + 86_400_000 }, issuerSeed),
      ),
    );
    issuer = { key: await identityPublicKey(issuerSeed), seeds: seeds.map(toHex), certificates };
  }
  const options: Partial<ServiceOptions> = {
    secret,
    logger: silentLogger,
    minClients: Math.max(3, Math.floor(n * 0.7)),
    maxClients: n,
    startDelayMs: 1000,
    dimension: m,
    bits: 32,
    degree: n > 60 ? 'recommended' : 'complete',
    stageTimeoutMs: 5000,
    maxRounds: rounds,
    mode,
    ...(issuer ? { issuerKey: issuer.key } : {}),
  };
  const port = num(a.port, 'port', 8080, 0, 65535);
  let server: Awaited<ReturnType<typeof createServer>>;
  try {
    server = await createServer({ ...options, port });
  } catch (e) {
    // The default port may be taken on a developer machine: fall back to any free one, and say so.
    if (a.port !== undefined || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    process.stderr.write(`secagg demo: port ${port} is in use, using a free port instead\n`);
    server = await createServer({ ...options, port: 0 });
  }
  process.stdout.write(`secagg demo: ${n} clients, m = ${m}, dropout ${dropout}, ${mode}; dashboard ${server.adminUrl ?? 'off'}\n`);
  let ended = 0;
  let failures = 0;
  const finished = new Promise<void>((resolve) => {
    server.onRoundEnd((rec) => {
      ended++;
      if (rec.outcome === 'aborted') process.stdout.write(`round ${rec.id}: aborted — ${rec.code}: ${rec.reason}\n`);
      if (ended >= rounds) resolve();
    });
  });
  server.onResult((r: PublishedResult) => {
    const expected = plainSum(
      r.identities.map((name) => demoInput(Number(name.slice('demo-'.length)), r.round, m)),
      32,
      m,
    );
    const ok = r.sum.every((v, j) => v === expected[j]);
    if (!ok) failures++;
    const stages = Object.entries(r.stages)
      .map(([s, v]) => `${s} ${v.clients}`)
      .join(' → ');
    process.stdout.write(
      `round ${r.round}: ${r.included.length}/${r.params.cohort} in the sum (${stages}), ${((r.endedAt - r.startedAt) / 1000).toFixed(2)} s, sum ${ok ? 'verified ✓' : 'WRONG ✗'}\n`,
    );
  });
  const workers = startDemoClients({ urls: [server.url], secret, n, m, dropout, ...(issuer ? { issuer } : {}) });
  const interrupted = new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await Promise.race([finished, interrupted]);
  await Promise.all(workers.map((w) => w.terminate()));
  await server.close({ reason: 'demo finished' });
  process.stdout.write(`secagg demo: ${ended} round(s), ${failures} wrong sum(s)\n`);
  return failures === 0 ? 0 : 1;
}

if (!isMainThread && (workerData as Job | undefined)?.ids) await clientWorker(workerData as Job);
