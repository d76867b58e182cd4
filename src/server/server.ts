/**
 * The aggregation service: HTTP + WebSocket on one port. Clients connect, authenticate with a bearer
 * token, get a ClientId and wait; when enough are waiting a round starts over a sampled cohort and
 * is driven through the protocol's pure state machines with a deadline per stage. Completed rounds
 * are published to subscribers and stored; aborted ones are stored with their reason and never
 * publish a sum.
 *
 * This file composes the parts, owns the waiting room (who waits, when a round starts) and the
 * listeners (the client port; the admin surface on it or on a listener of its own):
 * - options.ts — the options, their defaults and their checks;
 * - connection.ts — handshake, limits, keep-alive and close codes of each connection;
 * - round.ts — one round's cohort, record and frame limits, driven through protocol/runner.ts;
 * - http.ts — /healthz, and the admin surface: the dashboard, /metrics and /api/*.
 *
 * Disconnection of a cohort member is fed to the state machine as that client's ClientAbort, so a
 * stage closes as soon as every member has answered or gone, without waiting for its deadline.
 */
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomInt } from 'node:crypto';
import { createWorkerUnmasker, type WorkerUnmasker } from '../node/workerUnmasker.js';
import { CLOSE } from '../transport/frames.js';
import { createTokenVerifier } from './token.js';
import type { Logger } from './logger.js';
import { Metrics } from './metrics.js';
import { memoryStore, type RoundRecord, type RoundStore } from './store.js';
import { sqliteStore } from './sqliteStore.js';
import { isPostgresUrl, postgresStore } from './pgStore.js';
import { adminPlacement, cohortParameters, dpSetup, isLoopback, maxServiceFrameBytes, resolveOptions, type ServiceOptions } from './options.js';
import { DpLedger, roundPlan } from './dp.js';
import { createConnections, type Conn } from './connection.js';
import { createServiceRound, DpBudgetExhausted, type ServiceRound } from './round.js';
import { createHttpHandler } from './http.js';
import type { PublishedResult, SecAggServer, ServiceStatus } from './types.js';

export type { ServiceOptions } from './options.js';
export type { LiveRound, PublishedResult, SecAggServer, ServiceStatus } from './types.js';
export { addressKey } from './connection.js';

/**
 * Start the service.
 *
 * @example
 * ```ts
 * const server = await createServer({ secret, dimension: 10_000, minClients: 10 });
 * server.onResult(({ sum, included }) => console.log(included.length, sum));
 * ```
 */
export async function createServer(options: Partial<ServiceOptions> = {}): Promise<SecAggServer> {
  const o = resolveOptions(options);
  const log = o.logger;
  const verify = createTokenVerifier({ tokens: o.tokens, jwt: o.jwt, ...(o.secret !== undefined ? { secret: o.secret } : {}) });
  const store: RoundStore =
    o.store ?? (o.historyFile === undefined ? memoryStore() : isPostgresUrl(o.historyFile) ? await postgresStore(o.historyFile) : sqliteStore(o.historyFile));
  const interrupted = await store.abortUnfinished('ERR_INTERRUPTED', 'the server stopped while the round was running', Date.now());
  if (interrupted.length) log.log('warn', 'rounds interrupted by a restart recorded as aborted', { rounds: interrupted });
  const unmasker: WorkerUnmasker | undefined = o.unmaskWorkers > 0 ? createWorkerUnmasker({ workers: o.unmaskWorkers }) : undefined;
  const metrics = new Metrics();
  const history = await store.countOutcomes();
  metrics.restore(history, (await store.list({ limit: 100 })).find((r) => r.outcome === 'completed')?.endedAt ?? undefined);
  const maxPayload = maxServiceFrameBytes(o);
  // DP: the ledger goes on from the history's cumulative RDP (the newest record that has one).
  let ledger: DpLedger | undefined;
  if (o.dp !== undefined) {
    const { dp, encoding } = dpSetup(o);
    const history = await store.latestDp();
    ledger = new DpLedger(dp, encoding, history);
    // Already spent (a restart)? Judge by the smallest round this server can start.
    const { threshold, degree } = cohortParameters(o, o.minClients);
    const first = roundPlan(dp, encoding, { cohort: o.minClients, threshold, corruption: o.corruption, degree });
    const d = ledger.decide(first.plan, first.minHonest, o.minClients);
    if (!d.ok) log.log('warn', new DpBudgetExhausted(d.spent, d.after, dp.budget!).message, { spent: d.spent, budget: dp.budget });
    metrics.enableDp(ledger);
    log.log('info', 'differential privacy', {
      mechanism: dp.mechanism,
      noiseMultiplier: dp.noiseMultiplier,
      l2Clip: dp.l2Clip,
      scale: encoding.scale,
      removable: dp.removable,
      population: dp.population ?? null,
      delta: dp.delta,
      budget: dp.budget ?? null,
      spent: ledger.spent(),
      roundsAccounted: ledger.rounds,
    });
  }

  const waiting = new Set<Conn>();
  let serverId = o.serverId ?? '';
  let live: ServiceRound | undefined;
  let roundsStarted = 0;
  let startTimer: ReturnType<typeof setTimeout> | undefined;
  let closing = false;
  const resultListeners = new Set<(r: PublishedResult) => void>();
  const endListeners = new Set<(r: RoundRecord) => void>();

  const connections = createConnections({
    options: o,
    log,
    metrics,
    verify,
    maxPayload,
    serverId: () => serverId,
    closing: () => closing,
    onWelcome: (c) => {
      waiting.add(c);
      metrics.waiting = waiting.size;
      schedule();
    },
    onGone: (c, wasInRound) => {
      waiting.delete(c);
      metrics.waiting = waiting.size;
      if (wasInRound) live?.memberGone(c);
    },
    onProtocolFrame: (c, bytes) => {
      const round = live;
      // Not in a round: a late frame of a round that has finished (an honest client has one at most).
      if (c.phase !== 'in-round' || !round || !round.has(c)) return connections.refused(c, 'ERR_STAGE_MISMATCH', 'protocol frame outside a round');
      round.frame(c, bytes);
    },
  });

  // ---- the waiting room ----

  /** After a round, always gather for startDelayMs: its members are back in `waiting` while the ones leaving disconnect. */
  const schedule = (afterRound = false) => {
    if (closing || live || !o.autoStart || roundsStarted >= o.maxRounds || ledger?.exhausted) return;
    if (waiting.size >= o.maxClients && !afterRound) {
      if (startTimer) clearTimeout(startTimer);
      startTimer = undefined;
      void startRound();
    } else if (waiting.size >= o.minClients && !startTimer) {
      startTimer = setTimeout(() => {
        startTimer = undefined;
        if (waiting.size >= o.minClients) void startRound();
      }, o.startDelayMs);
    }
  };

  const startRound = async (): Promise<number | undefined> => {
    if (closing || live || ledger?.exhausted) return undefined;
    // A connection does not outlive its token: every draw re-checks the expiry kept from its hello.
    const now = Date.now();
    for (const c of [...waiting])
      if (c.expiresAt !== undefined && c.expiresAt <= now) connections.close(c, CLOSE.UNAUTHORIZED, 'token expired', 'unauthorized_expired');
    if (waiting.size < Math.max(3, o.minClients)) return undefined;
    // Sample the cohort uniformly from the waiting clients.
    const pool = [...waiting];
    for (let i = pool.length - 1; i > 0; i--) {
      const j = randomInt(i + 1);
      [pool[i], pool[j]] = [pool[j]!, pool[i]!];
    }
    const members = pool.slice(0, o.maxClients).sort((a, b) => a.clientId! - b.clientId!);
    let round: ServiceRound;
    try {
      round = createServiceRound({ options: o, log, metrics, store, connections, unmasker, members, dp: ledger, onFinished: roundFinished });
    } catch (e) {
      if (e instanceof DpBudgetExhausted) {
        // One line, once: the budget is spent for good (the history only grows); no round starts again.
        log.log('warn', e.message, { spent: e.spent, wouldBe: e.after, budget: ledger?.dp.budget });
        if (ledger) metrics.dpAccounted(ledger);
        if (startTimer) clearTimeout(startTimer);
        startTimer = undefined;
        return undefined;
      }
      log.log('error', 'could not start a round', { error: String(e) });
      return undefined;
    }
    roundsStarted++;
    for (const c of members) {
      waiting.delete(c);
      c.phase = 'in-round';
      c.refused = 0;
      c.queued = 0;
    }
    metrics.waiting = waiting.size;
    live = round;
    return round.begin();
  };

  /** The round's members still connected wait for the next one; subscribers hear of the end. */
  const roundFinished = ({ record, published, back }: { record: RoundRecord; published: PublishedResult | undefined; back: readonly Conn[] }) => {
    if (!closing)
      for (const c of back) {
        c.phase = 'waiting';
        waiting.add(c);
      }
    metrics.waiting = waiting.size;
    live = undefined;
    if (published) for (const f of resultListeners) safeCall(log, () => f(published));
    for (const f of endListeners) safeCall(log, () => f(record));
    schedule(true);
  };

  const status = async (): Promise<ServiceStatus> => {
    const now = Date.now();
    return {
      now,
      connections: connections.size,
      waiting: waiting.size,
      round: live ? live.live(now) : null,
      totals: { ...metrics.rounds },
      // The cumulative RDP vector is for restarts, not for the dashboard's twice-a-second poll.
      recent: (await store.list({ limit: 50 })).map((r) => (r.dp ? { ...r, dp: { ...r.dp, cumulativeRdp: null } } : r)),
      ...(ledger ? { dp: ledger.status() } : {}),
    };
  };

  // ---- HTTP ----

  const placement = adminPlacement(o);
  const handler = (admin: boolean) =>
    createHttpHandler({
      log,
      metrics,
      store,
      admin,
      adminTokens: o.adminTokens,
      resultsTokens: o.resultsTokens,
      status,
      health: () => ({ connections: connections.size, pending: connections.pending, waiting: waiting.size, roundRunning: live !== undefined }),
      closing: () => closing,
      ...(ledger ? { dpEncoding: ledger.encoding } : {}),
    });
  // With TLS: HTTPS, and the WebSocket upgrade arrives over it (wss://). Without: plain HTTP.
  const listener = (admin: boolean, tls: boolean) =>
    tls && o.tls ? createHttpsServer({ cert: pemText(o.tls.cert), key: pemText(o.tls.key) }, handler(admin)) : createHttpServer(handler(admin));
  const http = listener(placement === 'client-port', true);
  http.on('upgrade', connections.upgrade);
  // The admin listener: TLS when the service has it and the listener is reachable from elsewhere.
  const adminTls = typeof placement === 'object' && o.tls !== undefined && !isLoopback(placement.host);
  const adminHttp = typeof placement === 'object' ? listener(true, adminTls) : undefined;
  // No WebSocket there: an upgrade on the admin listener is answered 404 and closed.
  adminHttp?.on('upgrade', (_req, socket: Duplex) => socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'));
  const listen = (server: typeof http, port: number, host: string) =>
    new Promise<void>((ok, fail) => server.once('error', fail).listen(port, host, () => ok()));
  try {
    await listen(http, o.port, o.host);
    if (adminHttp && typeof placement === 'object') await listen(adminHttp, placement.port, placement.host);
  } catch (e) {
    // Nothing may outlive a server that never started: the worker pool would keep the process alive.
    connections.stop();
    if (http.listening) await new Promise((ok) => http.close(ok));
    await unmasker?.close();
    await store.close();
    throw e;
  }
  const port = (http.address() as AddressInfo).port;
  const hostForUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  const httpUrl = `${o.tls ? 'https' : 'http'}://${hostForUrl}:${port}/`;
  let adminUrl: string | undefined;
  if (placement === 'client-port') adminUrl = httpUrl;
  else if (adminHttp && typeof placement === 'object') {
    const h = placement.host.includes(':') ? `[${placement.host}]` : placement.host;
    adminUrl = `${adminTls ? 'https' : 'http'}://${h}:${(adminHttp.address() as AddressInfo).port}/`;
  }
  if (o.serverId === undefined) serverId = `secagg:${hostForUrl}:${port}`;
  connections.startKeepAlive();
  log.log('info', 'listening', {
    url: httpUrl,
    admin: adminUrl ?? 'off',
    dimension: o.dimension,
    bits: o.bits,
    degree: o.degree,
    mode: o.mode,
    serverId,
    maxPayload,
    corruption: o.corruption,
  });
  if (o.tls === undefined && !isLoopback(o.host))
    log.log(
      'warn',
      'listening beyond loopback without TLS: tokens and protocol messages travel in the clear; give tls (--tls-cert/--tls-key) or put a TLS proxy in front',
      {
        host: o.host,
      },
    );
  const adminHost = placement === 'client-port' ? o.host : typeof placement === 'object' ? placement.host : undefined;
  if (adminHost !== undefined && !isLoopback(adminHost) && o.adminTokens.length === 0) {
    const what = o.resultsTokens.length === 0 ? 'the dashboard, /metrics and /api/* (with the sums)' : 'the dashboard, /metrics and /api/status';
    log.log('warn', `${what} are readable without a token on a non-loopback interface: set adminTokens (--admin-token)`, { admin: adminUrl });
  }

  return {
    url: `${o.tls ? 'wss' : 'ws'}://${hostForUrl}:${port}/ws`,
    httpUrl,
    adminUrl,
    port,
    store,
    onResult(listener) {
      resultListeners.add(listener);
      return () => resultListeners.delete(listener);
    },
    onRoundEnd(listener) {
      endListeners.add(listener);
      return () => endListeners.delete(listener);
    },
    status,
    startRound,
    async close(options = {}) {
      if (closing) return;
      closing = true;
      if (startTimer) clearTimeout(startTimer);
      connections.stopKeepAlive();
      const round = live;
      if (round) {
        const grace = options.graceMs ?? 0;
        if (grace > 0) await Promise.race([round.done, new Promise((r) => setTimeout(r, grace))]);
        if (!round.finished) await round.shutdown(`server shutting down${options.reason ? ` (${options.reason})` : ''} before the round finished`);
        await round.idle();
      }
      for (const c of connections.all()) connections.close(c, CLOSE.GOING_AWAY, 'server shutting down', 'shutdown');
      connections.stop();
      await Promise.all(
        [http, adminHttp].map(
          (h) =>
            h &&
            new Promise<void>((ok) => {
              h.close(() => ok());
              h.closeAllConnections();
            }),
        ),
      );
      await unmasker?.close();
      await store.close();
      log.log('info', 'stopped', { reason: options.reason ?? 'close' });
    },
  };
}

function safeCall(log: Logger, f: () => void): void {
  try {
    f();
  } catch (e) {
    log.log('error', 'listener threw', { error: String(e) });
  }
}

function pemText(v: string | Uint8Array): string {
  return typeof v === 'string' ? v : new TextDecoder().decode(v);
}
