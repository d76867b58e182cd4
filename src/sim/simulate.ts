/**
 * One whole round in process: real clients and a real server exchanging encoded protocol messages
 * through an in-memory transport. The sum comes out of the protocol (keys, encrypted shares,
 * masks, reconstruction, unmasking), never from the plaintext inputs.
 */
import { defaultCrypto } from '#crypto-default';
import type { CryptoProvider } from '../crypto/provider.js';
import { SecAggError } from '../errors.js';
import { clientId, roundId, type ClientId } from '../ids.js';
import { cryptoRng, type Rng } from '../rng.js';
import { effectiveDegree, minimumThreshold, type Degree, type DpRoundConfig, type Mode, type RoundConfig } from '../protocol/config.js';
import type { NoiseReport } from '../protocol/noise.js';
import { STAGES, type Stage } from '../protocol/stages.js';
import { clientContext, createClient, handleClientMessage, type ClientContext, type ClientState } from '../protocol/clientRound.js';
import { nextMacrotask } from '../pace.js';
import { serverContext, type Outgoing, type Unmasker } from '../protocol/serverRound.js';
import { createRoundRunner, type RoundRunner } from '../protocol/runner.js';

export { STAGES, type Stage };

export interface StageStats {
  /** Clients that sent this stage's message. */
  clients: number;
  /** Total client compute time for this stage over all clients, ms. */
  clientMsTotal: number;
  /** Slowest single client, ms. */
  clientMsMax: number;
  /** Server compute time handling this stage's messages and closing it, ms. */
  serverMs: number;
  /**
   * The longest other work (a timer, another connection) would have waited for the server in this
   * stage, ms: the longest gap between runs of a macrotask probe re-queued while the server
   * handles a message or closes the stage.
   */
  serverLongestBlockMs: number;
  /** Bytes the server received / sent in this stage. */
  serverBytesIn: number;
  serverBytesOut: number;
}

export interface RoundStats {
  clients: number;
  dimension: number;
  bits: number;
  degree: number;
  threshold: number;
  mode: Mode;
  stages: Record<Stage, StageStats>;
  /** Per client averages over clients that completed the round (or all, if none did). */
  clientBytesSent: { mean: number; max: number };
  clientBytesReceived: { mean: number; max: number };
  /** Total client compute over all stages, one client: mean and max, ms. */
  clientMs: { mean: number; max: number };
  serverBytesIn: number;
  serverBytesOut: number;
  /** Bytes a client sends ÷ bytes of its raw input (m·bits/8). */
  expansionFactor: number;
  /** PRG expansions the server's unmasking performed. */
  serverMaskExpansions: number;
  badShareHolders: number[];
  wallMs: number;
}

/** A progress report of simulateRound: see SimulateOptions.onProgress. */
export interface ProgressEvent {
  readonly stage: Stage | 'done';
  readonly clientsDone: number;
  readonly clientsTotal: number;
  readonly within?: 'clients' | 'server';
}

export interface SimulateOptions {
  /** One vector per client, equal lengths, every value < 2 ** bits. */
  inputs: Uint32Array[];
  bits: number;
  /** Neighbours per client; default 'complete'. */
  degree?: Degree;
  /** Default: the smallest threshold that meets the neighbourhood bound (config.ts, minimumThreshold). */
  threshold?: number;
  mode?: Mode;
  /** c: colluding clients tolerated per neighbourhood (default 0). */
  corruption?: number;
  /** C: colluding clients tolerated in the whole round (RoundConfig.colluders; default `corruption`). */
  colluders?: number;
  /** Differential privacy: every client adds its share of the round's noise (RoundConfig.dp); the result reports the noise released. */
  dp?: DpRoundConfig;
  /** Indices of clients that fall silent instead of sending that stage's message. */
  dropouts?: Partial<Record<Stage, number[]>>;
  crypto?: CryptoProvider;
  /** Seedable randomness so a round replays byte for byte; default the platform CSPRNG. */
  rng?: Rng;
  unmasker?: Unmasker;
  /** Fix the neighbour graph's seed (so a test can know the graph in advance); default: drawn by the server. */
  graphSeed?: Uint8Array;
  /**
   * Progress on long runs: once per stage when its clients have answered (`within` absent), and
   * while a stage runs at most every `progressIntervalMs` — `within: 'clients'` (clientsDone of
   * clientsTotal clients have computed their reply) or `within: 'server'` (the server has taken
   * clientsDone of clientsTotal replies).
   */
  onProgress?: (event: ProgressEvent) => void;
  /** Least time between two in-stage progress events, ms (default 1,000; 0: after every client). */
  progressIntervalMs?: number;
  /**
   * Test hook: rewrite (or drop, by returning null) a server→client message before delivery,
   * e.g. to model a lying server.
   */
  interceptServer?: (to: ClientId, bytes: Uint8Array, stage: Stage) => Uint8Array | null;
}

export interface SimulateResult {
  sum: Uint32Array;
  /** Indices (into `inputs`) of the clients whose masked input is in the sum. */
  included: number[];
  stats: RoundStats;
  /** A DP round: the noise in `sum` (RoundResult.noise). */
  noise?: NoiseReport;
}

function emptyStage(): StageStats {
  return { clients: 0, clientMsTotal: 0, clientMsMax: 0, serverMs: 0, serverLongestBlockMs: 0, serverBytesIn: 0, serverBytesOut: 0 };
}

/**
 * Run one round. Client i has id i + 1. Rejects with a SecAggError when the round cannot complete
 * (its `code` says why).
 *
 * @example
 * ```ts
 * const inputs = [Uint32Array.of(1, 2), Uint32Array.of(3, 4), Uint32Array.of(5, 6), Uint32Array.of(7, 8)];
 * const { sum, included } = await simulateRound({ inputs, bits: 16, dropouts: { masked: [3] } });
 * // sum = [9, 12], included = [0, 1, 2]
 * ```
 */
export async function simulateRound(options: SimulateOptions): Promise<SimulateResult> {
  const wall = performance.now();
  const { inputs, bits } = options;
  if (!Array.isArray(inputs) || inputs.length < 3) throw new RangeError('inputs must hold at least 3 vectors');
  const m = inputs[0]!.length;
  for (const [i, x] of inputs.entries()) {
    if (!(x instanceof Uint32Array)) throw new TypeError(`inputs[${i}] must be a Uint32Array`);
    if (x.length !== m) throw new RangeError(`inputs[${i}] has ${x.length} elements, inputs[0] has ${m}`);
  }
  const n = inputs.length;
  const crypto = options.crypto ?? defaultCrypto;
  const rng = options.rng ?? cryptoRng;
  const mode = options.mode ?? 'semi-honest';
  const degree = options.degree ?? 'complete';
  const k = effectiveDegree(degree, n);
  const corruption = options.corruption ?? 0;
  const threshold = options.threshold ?? minimumThreshold(mode, degree, n, corruption);
  const dropAt = new Map<number, Stage>();
  for (const stage of STAGES) {
    for (const i of options.dropouts?.[stage] ?? []) {
      if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`dropouts.${stage} names client ${i}, not in [0, ${n})`);
      if (!dropAt.has(i)) dropAt.set(i, stage);
    }
  }

  const ids = inputs.map((_, i) => clientId(i + 1));
  const config: RoundConfig = {
    roundId: roundId(rng(16)),
    bits,
    dimension: m,
    threshold,
    degree,
    mode,
    cohort: ids,
    corruption,
    ...(options.colluders !== undefined ? { colluders: options.colluders } : {}),
    ...(options.dp !== undefined ? { dp: options.dp } : {}),
  };

  let directory: Map<number, Uint8Array> | undefined;
  const identities: Uint8Array[] = [];
  if (mode === 'active') {
    directory = new Map();
    for (const id of ids) {
      const seed = rng(32);
      identities.push(seed);
      directory.set(id, (await crypto.ed25519(seed)).publicKey);
    }
  }
  const clients: ClientState[] = ids.map((id, i) => createClient({ id, input: inputs[i]! }));
  const clientContexts: ClientContext[] = ids.map((_, i) => clientContext({ crypto, rng, ...(directory ? { identity: identities[i]!, directory } : {}) }));

  const stages = Object.fromEntries(STAGES.map((s) => [s, emptyStage()])) as Record<Stage, StageStats>;
  const sent = new Float64Array(n);
  const received = new Float64Array(n);
  const clientMs = new Float64Array(n);

  // How long other work would wait: a probe re-queued as a macrotask while the server works;
  // the longest gap between two of its runs (or the call's start or end) is the longest block.
  const serverCall = async <T>(stage: StageStats, call: () => Promise<T> | T): Promise<T> => {
    let last = performance.now();
    let running = true;
    const gap = () => {
      const now = performance.now();
      stage.serverLongestBlockMs = Math.max(stage.serverLongestBlockMs, now - last);
      last = now;
    };
    const probe = (): void => {
      if (!running) return;
      gap();
      void nextMacrotask().then(probe);
    };
    void nextMacrotask().then(probe);
    try {
      return await call();
    } finally {
      gap();
      running = false;
    }
  };

  const interval = options.progressIntervalMs ?? 1000;
  let lastTick = performance.now();
  const tick = (stage: Stage, within: 'clients' | 'server', clientsDone: number, clientsTotal: number) => {
    if (!options.onProgress) return;
    const now = performance.now();
    if (now - lastTick < interval) return;
    lastTick = now;
    options.onProgress({ stage, within, clientsDone, clientsTotal });
  };

  // The server's messages of the last steps, delivered at the top of the next turn of the loop.
  let outgoing: Outgoing[] = [];
  let t0 = performance.now();
  const runner: RoundRunner = await serverCall(stages.advertise, () =>
    createRoundRunner({
      server: { config, ...(options.graphSeed ? { graphSeed: options.graphSeed } : {}) },
      context: serverContext({ crypto, rng, ...(directory ? { directory } : {}), ...(options.unmasker ? { unmasker: options.unmasker } : {}) }),
      // No timers: the simulation runs in lock-step and calls a stage's deadline itself once every
      // reply of the stage is in.
      send: (to, bytes) => void outgoing.push({ to, bytes }),
    }),
  );
  runner.start();
  await runner.idle();
  stages.advertise.serverMs += performance.now() - t0;

  const errors: SecAggError[] = [];
  while (runner.state.stage !== 'done' && runner.state.stage !== 'aborted') {
    const stage = runner.state.stage as Stage;
    const stats = stages[stage];
    // Deliver the server's messages; collect the replies of the clients that do not drop here.
    const replies: Array<{ from: ClientId; bytes: Uint8Array }> = [];
    const delivering = outgoing;
    outgoing = [];
    for (const { to, bytes: raw } of delivering) {
      const i = to - 1;
      const bytes = options.interceptServer ? options.interceptServer(to, raw, stage) : raw;
      if (bytes === null) continue;
      stats.serverBytesOut += bytes.length;
      const drop = dropAt.get(i);
      if (drop !== undefined && STAGES.indexOf(drop) <= STAGES.indexOf(stage)) continue; // silent: offline
      received[i] = received[i]! + bytes.length;
      const c0 = performance.now();
      const r = await handleClientMessage(clientContexts[i]!, clients[i]!, bytes);
      const dt = performance.now() - c0;
      clients[i] = r.state;
      clientMs[i] = clientMs[i]! + dt;
      stats.clientMsTotal += dt;
      stats.clientMsMax = Math.max(stats.clientMsMax, dt);
      if (r.error) errors.push(r.error);
      if (r.outgoing) {
        sent[i] = sent[i]! + r.outgoing.length;
        replies.push({ from: to, bytes: r.outgoing });
        if (!r.error) stats.clients++;
      }
      tick(stage, 'clients', stats.clients, delivering.length);
    }
    options.onProgress?.({ stage, clientsDone: stats.clients, clientsTotal: n });
    lastTick = performance.now();
    t0 = performance.now();
    for (let k = 0; k < replies.length; k++) {
      const { from, bytes } = replies[k]!;
      stats.serverBytesIn += bytes.length;
      await serverCall(stats, () => runner.message(from, bytes));
      tick(stage, 'server', k + 1, replies.length);
    }
    // Some clients stayed silent: the stage's deadline passes.
    if (runner.state.stage === stage) await serverCall(stats, () => runner.deadline());
    stats.serverMs += performance.now() - t0;
  }
  const server = runner.state;
  options.onProgress?.({ stage: 'done', clientsDone: server.result?.included.length ?? 0, clientsTotal: n });

  if (server.stage === 'aborted') {
    const e = server.abortError!;
    throw new SecAggError(e.code, `round aborted: ${e.message}`, { cause: errors[0] ?? e, clients: e.clients });
  }
  const result = server.result!;
  const included = result.included.map((id) => id - 1);
  const done = included.length > 0 ? included : ids.map((_, i) => i);
  const stat = (xs: Float64Array) => {
    let sum = 0;
    let max = 0;
    for (const i of done) {
      sum += xs[i]!;
      max = Math.max(max, xs[i]!);
    }
    return { mean: sum / done.length, max };
  };
  const clientBytesSent = stat(sent);
  const stats: RoundStats = {
    clients: n,
    dimension: m,
    bits,
    degree: k,
    threshold,
    mode,
    stages,
    clientBytesSent,
    clientBytesReceived: stat(received),
    clientMs: stat(clientMs),
    serverBytesIn: STAGES.reduce((a, s) => a + stages[s].serverBytesIn, 0),
    serverBytesOut: STAGES.reduce((a, s) => a + stages[s].serverBytesOut, 0),
    expansionFactor: clientBytesSent.mean / ((m * bits) / 8),
    serverMaskExpansions: result.maskExpansions,
    badShareHolders: result.badShareHolders.map((id) => id - 1),
    wallMs: performance.now() - wall,
  };
  return { sum: result.sum, included, stats, ...(result.noise ? { noise: result.noise } : {}) };
}
