/**
 * The service's Prometheus metrics (prom-client). Each server has its own Registry, not prom-client's
 * global one: several servers in one process (the tests) must not share or collide on counters.
 * The registry also carries prom-client's default process and Node.js metrics (`process_*`, `nodejs_*`).
 */
import { readFileSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { SERVICE_STAGES, type RoundRecord, type ServiceStage } from './store.js';
import type { DpLedger } from './dp.js';

/** Stage durations: a stage lasts from milliseconds (small cohorts) to its deadline (stageTimeoutMs, 30 s by default). */
const STAGE_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Round durations: the sum of up to six stages, so up to several deadlines. */
const ROUND_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/** The package's version, from its package.json (dist/src/server/ → the package root); 'unknown' if unreadable. */
const packageVersion = (): string => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
};

export class Metrics {
  /** This server's registry: `/metrics` serves `register.metrics()` as `register.contentType`. */
  readonly register: Registry = new Registry();
  /** Rounds that ended, by outcome, including the history's (after a restart); /api/status's totals. */
  readonly rounds: { completed: number; aborted: number } = { completed: 0, aborted: 0 };

  private readonly roundsTotal: Counter<'outcome'>;
  private readonly aborts: Counter<'code'>;
  private readonly roundDuration: Histogram<'outcome'>;
  private readonly lastCompleted: Gauge;
  private readonly running: Gauge;
  private readonly stageClientsLive: Gauge<'stage'>;
  private readonly stageClientsTotal: Counter<'stage' | 'outcome'>;
  private readonly stageDuration: Histogram<'stage'>;
  private readonly bytes: Counter<'direction' | 'stage'>;
  private readonly refused: Counter<'code'>;
  private readonly closes: Counter<'reason'>;
  private readonly connectionsGauge: Gauge;
  private readonly pendingGauge: Gauge;
  private readonly waitingGauge: Gauge;
  private dpGauges: { spent: Gauge; round: Gauge; budget: Gauge; exhausted: Gauge; variance: Gauge } | undefined;

  constructor() {
    const registers = [this.register];
    collectDefaultMetrics({ register: this.register });
    new Gauge({
      name: 'secagg_build_info',
      help: 'The running secagg version and Node.js version (always 1).',
      labelNames: ['version', 'node'],
      registers,
    }).set({ version: packageVersion(), node: process.version }, 1);
    this.roundsTotal = new Counter({ name: 'secagg_rounds_total', help: 'Rounds that ended, by outcome.', labelNames: ['outcome'], registers });
    this.aborts = new Counter({
      name: 'secagg_round_aborts_total',
      help: 'Rounds aborted since the server started, by code (a SecAggError code, ERR_SHUTDOWN, ERR_INTERNAL).',
      labelNames: ['code'],
      registers,
    });
    this.roundDuration = new Histogram({
      name: 'secagg_round_duration_seconds',
      help: 'Duration of each round, from its start to its end, by outcome.',
      labelNames: ['outcome'],
      buckets: ROUND_BUCKETS,
      registers,
    });
    this.lastCompleted = new Gauge({
      name: 'secagg_last_completed_round_timestamp_seconds',
      help: 'When the last completed round ended (Unix time, seconds; 0: none yet).',
      registers,
    });
    this.running = new Gauge({ name: 'secagg_round_running', help: 'Whether a round is running.', registers });
    this.stageClientsLive = new Gauge({
      name: 'secagg_round_stage_clients',
      help: 'Clients whose message the current (or last) round accepted, per stage.',
      labelNames: ['stage'],
      registers,
    });
    this.stageClientsTotal = new Counter({
      name: 'secagg_stage_clients_total',
      help: 'Per stage of every ended round: clients whose message was accepted, and clients of the previous stage (the cohort for advertise) whose message was not (dropped).',
      labelNames: ['stage', 'outcome'],
      registers,
    });
    this.stageDuration = new Histogram({
      name: 'secagg_stage_duration_seconds',
      help: 'Duration of each protocol stage.',
      labelNames: ['stage'],
      buckets: STAGE_BUCKETS,
      registers,
    });
    this.bytes = new Counter({
      name: 'secagg_bytes_total',
      help: 'Protocol bytes received from / sent to clients, per stage.',
      labelNames: ['direction', 'stage'],
      registers,
    });
    this.refused = new Counter({
      name: 'secagg_messages_refused_total',
      help: 'Protocol messages refused (not used by the round), by code.',
      labelNames: ['code'],
      registers,
    });
    this.closes = new Counter({
      name: 'secagg_connections_closed_total',
      help: 'Connections the server closed, by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.connectionsGauge = new Gauge({ name: 'secagg_connections', help: 'Open WebSocket connections.', registers });
    this.pendingGauge = new Gauge({
      name: 'secagg_pending_connections',
      help: 'Open WebSocket connections that have not finished their hello.',
      registers,
    });
    this.waitingGauge = new Gauge({ name: 'secagg_waiting_clients', help: 'Authenticated clients waiting for a round.', registers });
    // Series that exist from the start, at 0, so rates and alerts need no "absent" case.
    for (const outcome of ['completed', 'aborted'] as const) this.roundsTotal.inc({ outcome }, 0);
    for (const stage of SERVICE_STAGES) {
      this.stageClientsLive.set({ stage }, 0);
      for (const direction of ['in', 'out'] as const) this.bytes.inc({ direction, stage }, 0);
    }
  }

  set connections(n: number) {
    this.connectionsGauge.set(n);
  }
  set pending(n: number) {
    this.pendingGauge.set(n);
  }
  set waiting(n: number) {
    this.waitingGauge.set(n);
  }

  /** The rounds the history holds from before this process (the totals go on from them); `lastCompletedAt`: ms since the epoch. */
  restore(history: { completed: number; aborted: number }, lastCompletedAt: number | undefined): void {
    this.rounds.completed += history.completed;
    this.rounds.aborted += history.aborted;
    this.roundsTotal.inc({ outcome: 'completed' }, history.completed);
    this.roundsTotal.inc({ outcome: 'aborted' }, history.aborted);
    if (lastCompletedAt !== undefined) this.lastCompleted.set(lastCompletedAt / 1000);
  }

  roundStarted(): void {
    this.running.set(1);
    for (const stage of SERVICE_STAGES) this.stageClientsLive.set({ stage }, 0);
  }

  /** The live round's accepted clients per stage (after each step). */
  stageProgress(record: RoundRecord): void {
    for (const stage of SERVICE_STAGES) this.stageClientsLive.set({ stage }, record.stages[stage]?.clients ?? 0);
  }

  /** A round ended (its record has its outcome, code and end time). */
  roundEnded(record: RoundRecord): void {
    const outcome = record.outcome === 'completed' ? 'completed' : 'aborted';
    this.rounds[outcome]++;
    this.roundsTotal.inc({ outcome });
    if (outcome === 'aborted') this.aborts.inc({ code: record.code ?? 'ERR_INTERNAL' });
    const endedAt = record.endedAt ?? Date.now();
    this.roundDuration.observe({ outcome }, (endedAt - record.startedAt) / 1000);
    if (outcome === 'completed') this.lastCompleted.set(endedAt / 1000);
    this.running.set(0);
    this.stageProgress(record);
    // Dropped: the stage record's own count (clients it waited for that did not answer, or answered
    // and left, before it closed — the dashboard's figure). A record without it (written before it
    // was kept) falls back to: the clients the previous stage accepted (advertise: the cohort) that
    // this one did not.
    let asked = record.params.cohort;
    for (const stage of SERVICE_STAGES) {
      const rec = record.stages[stage];
      if (!rec) continue;
      this.stageClientsTotal.inc({ stage, outcome: 'accepted' }, rec.clients);
      this.stageClientsTotal.inc({ stage, outcome: 'dropped' }, rec.dropped ?? Math.max(0, asked - rec.clients));
      asked = rec.clients;
    }
  }

  /** A DP service: register the secagg_dp_* gauges (a service without DP has none) and set them from the ledger. */
  enableDp(ledger: DpLedger): void {
    const registers = [this.register];
    const d = ledger.dp.delta;
    this.dpGauges ??= {
      spent: new Gauge({ name: 'secagg_dp_epsilon_spent', help: `ε of every completed round of the history, composed (RDP), at δ = ${d}.`, registers }),
      round: new Gauge({ name: 'secagg_dp_round_epsilon', help: `ε of the last completed round alone, at δ = ${d}.`, registers }),
      budget: new Gauge({ name: 'secagg_dp_budget_epsilon', help: "The operator's privacy budget ε (+Inf: none).", registers }),
      exhausted: new Gauge({ name: 'secagg_dp_budget_exhausted', help: 'Whether the budget stopped new rounds (0/1).', registers }),
      variance: new Gauge({
        name: 'secagg_dp_released_noise_variance',
        help: "Noise variance per coordinate (ring units) in the last completed round's released sum.",
        registers,
      }),
    };
    this.dpAccounted(ledger);
  }

  /** The ledger changed (a round accounted, the budget reached). */
  dpAccounted(ledger: DpLedger): void {
    const g = this.dpGauges;
    if (!g) return;
    g.spent.set(ledger.spent());
    g.round.set(ledger.lastRoundEpsilon ?? 0);
    g.budget.set(ledger.dp.budget?.epsilon ?? Infinity);
    g.exhausted.set(ledger.exhausted ? 1 : 0);
    g.variance.set(ledger.lastReleasedVariance ?? 0);
  }

  observeStage(stage: ServiceStage, seconds: number): void {
    this.stageDuration.observe({ stage }, seconds);
  }

  addBytes(direction: 'in' | 'out', stage: ServiceStage, n: number): void {
    this.bytes.inc({ direction, stage }, n);
  }

  refusedMessage(code: string): void {
    this.refused.inc({ code });
  }

  closed(reason: string): void {
    this.closes.inc({ reason });
  }
}
