/**
 * The networked variant of the federated-learning example: the secure sums come from the
 * aggregation service. A `createServer` listens on 127.0.0.1 (a free port); every client is a
 * `participate()` client with its own WebSocket and token, running in this process. Each round the
 * example starts a service round over all clients; when the service assigns it, a client trains
 * locally from the current global model, encodes its update with the plan (weight inside the
 * vector) and hands it to the protocol; clients scheduled to drop close their connection just
 * before sending their message of that stage, and reconnect for the next round. The sum the
 * service publishes (`onResult`) is what `secureFedAvg` turns into the next global model.
 *
 * Only the public APIs of secagg/server and secagg/client are used. The global model reaches the
 * clients in memory: the service aggregates, it does not distribute models.
 */
import { createHash, randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { createServer, signToken, silentLogger, type PublishedResult, type RoundRecord, type RoundStore, type SecAggServer } from '../../server/index.js';
import { participate, type RoundReport, type WebSocketConstructor } from '../../client/index.js';
import { federatedLoop, type Aggregator, type AggregatorContext, type FlOptions, type FlResult, type ServiceRoundLog } from './run.js';

export interface NetworkOptions {
  /** Round history: this store (e.g. memoryStore(), to inspect it afterwards)… */
  store?: RoundStore;
  /** …or this SQLite file; default: SQLite in a temporary directory, deleted at the end. */
  historyFile?: string;
  /** Deadline of each protocol stage, ms (default 30,000). */
  stageTimeoutMs?: number;
  /** Unmasking worker threads on the server (default: the service's default, one per core). */
  unmaskWorkers?: number;
  /** Called with the service's URLs once it listens. */
  onListening?: (server: SecAggServer) => void;
}

const identity = (i: number) => `fl-client-${i}`;
const clientOf = (id: string): number => {
  const i = Number(id.slice('fl-client-'.length));
  if (!id.startsWith('fl-client-') || !Number.isInteger(i)) throw new Error(`unexpected identity in the sum: ${JSON.stringify(id)}`);
  return i;
};

interface Current {
  round: number;
  dropAt: Map<number, string>;
  input: (client: number) => Promise<Uint32Array>;
}

/** An aggregator whose sums come from a local aggregation service and `participate()` clients. */
async function serviceAggregator(ctx: AggregatorContext, opts: NetworkOptions = {}): Promise<Aggregator> {
  const n = ctx.clients;
  const rounds = ctx.rounds;
  let tempDir: string | undefined;
  let historyFile = opts.historyFile;
  if (!opts.store && historyFile === undefined) {
    tempDir = mkdtempSync(join(tmpdir(), 'secagg-fl-'));
    historyFile = join(tempDir, 'history.db');
  }
  const secret = randomBytes(24).toString('hex');
  const server = await createServer({
    host: '127.0.0.1',
    port: 0,
    secret,
    logger: silentLogger,
    autoStart: false, // the training loop starts each round once every client waits
    minClients: n,
    maxClients: n,
    bits: ctx.plan.bits,
    dimension: ctx.dimension,
    degree: 'complete',
    stageTimeoutMs: opts.stageTimeoutMs ?? 30_000,
    maxRounds: rounds,
    ...(opts.store ? { store: opts.store } : { historyFile: historyFile! }),
    ...(opts.unmaskWorkers !== undefined ? { unmaskWorkers: opts.unmaskWorkers } : {}),
  });
  opts.onListening?.(server);

  // Results and ends of service rounds, by round number; the loop waits for its round's.
  const ended = new Map<number, { record: RoundRecord; result?: PublishedResult }>();
  const results = new Map<number, PublishedResult>();
  const waiters = new Map<number, () => void>();
  server.onResult((res) => results.set(res.round, res));
  server.onRoundEnd((record) => {
    ended.set(record.id, { record, ...(results.has(record.id) ? { result: results.get(record.id)! } : {}) });
    waiters.get(record.id)?.();
  });

  let current: Current | undefined;
  // One signal per client (participate adds a listener per connection and per back-off sleep).
  const aborts = Array.from({ length: n }, () => {
    const a = new AbortController();
    setMaxListeners(rounds + 20, a.signal);
    return a;
  });
  const abortAll = () => aborts.forEach((a) => a.abort());
  const clientErrors: unknown[] = [];
  const clients: Array<Promise<RoundReport[]>> = Array.from({ length: n }, (_, i) =>
    participate({
      url: server.url,
      token: signToken({ clientId: identity(i), expiresAt: Date.now() + 86_400_000 }, secret),
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      rounds,
      // Called when the service assigns a round: train from the current global model, encode.
      inputProvider: () => {
        if (!current) throw new Error('assigned a round the example did not start');
        return current.input(i);
      },
      // Dropouts: close the connection instead of sending this stage's message.
      unsafeBeforeSend: (stage) => (current?.dropAt.get(i) === stage ? 'disconnect' : 'send'),
      reconnect: { initialDelayMs: 20, maxDelayMs: 500, maxAttempts: 50 },
      signal: aborts[i]!.signal,
    }).catch((e: unknown) => {
      clientErrors.push(e);
      return [];
    }),
  );

  const waitUntil = async (what: string, ok: () => Promise<boolean>, ms: number) => {
    const deadline = Date.now() + ms;
    while (!(await ok())) {
      if (clientErrors.length) throw new Error(`a client failed: ${String(clientErrors[0])}`, { cause: clientErrors[0] });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  return {
    kind: 'network',
    async round(r, dropped, input) {
      const dropAt = new Map<number, string>();
      for (const [stage, who] of Object.entries(dropped)) for (const i of who ?? []) dropAt.set(i, stage);
      await waitUntil(`all ${n} clients to wait for round ${r}`, async () => (await server.status()).waiting === n, 30_000);
      current = { round: r, dropAt, input };
      const t0 = performance.now();
      const id = await server.startRound();
      if (id === undefined) throw new Error(`round ${r}: the service did not start a round`);
      if (!ended.has(id)) await new Promise<void>((resolve) => waiters.set(id, resolve));
      waiters.delete(id);
      const ms = performance.now() - t0;
      const { record, result } = ended.get(id)!;
      if (record.outcome !== 'completed' || !result) throw new Error(`round ${r}: service round ${id} ${record.outcome}: ${record.code} ${record.reason}`);
      const service: ServiceRoundLog = {
        id,
        roundId: record.roundId,
        cohort: record.params.cohort,
        stages: Object.fromEntries(Object.entries(record.stages).map(([s, v]) => [s, v.clients])),
        sumSha256: createHash('sha256')
          .update(new Uint8Array(result.sum.buffer, result.sum.byteOffset, result.sum.byteLength))
          .digest('hex'),
      };
      const included = result.identities.map(clientOf).sort((a, b) => a - b);
      return { sum: result.sum, included, ms, service };
    },
    async close(failed) {
      try {
        if (failed) abortAll();
        // Each client leaves after its last round's report.
        else {
          let timer: ReturnType<typeof setTimeout> | undefined;
          await Promise.race([
            Promise.all(clients),
            new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timed out waiting for the clients to leave')), 10_000))),
          ]).finally(() => clearTimeout(timer));
          if (clientErrors.length) throw new Error(`a client failed: ${String(clientErrors[0])}`, { cause: clientErrors[0] });
        }
        const history = (await server.store.list({ limit: rounds + 10 })).map((h) => ({
          id: h.id,
          roundId: h.roundId,
          outcome: h.outcome,
          included: h.included?.length ?? 0,
          cohort: h.params.cohort,
        }));
        return { url: server.url, history };
      } finally {
        abortAll();
        await server.close({ reason: 'example finished' });
        if (tempDir) rmSync(tempDir, { recursive: true, force: true });
      }
    },
  };
}

/** FedAvg with the secure sums from the aggregation service over real WebSockets. */
export function runFederatedNetwork(partial: Partial<FlOptions> = {}, network: NetworkOptions = {}): Promise<FlResult> {
  return federatedLoop(partial, (ctx) => serviceAggregator(ctx, network));
}
