/** Prometheus text exposition (format 0.0.4) of the service's counters, gauges and histograms. */
import { SERVICE_STAGES, type ServiceStage } from './store.js';

const STAGE_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

interface Histogram {
  counts: number[];
  sum: number;
  count: number;
}

export class Metrics {
  readonly rounds = { completed: 0, aborted: 0 };
  readonly stageClients = new Map<ServiceStage, number>(); // of the current or last round
  readonly stageDurations = new Map<ServiceStage, Histogram>();
  readonly bytes = { in: new Map<ServiceStage, number>(), out: new Map<ServiceStage, number>() };
  readonly closes = new Map<string, number>();
  /** Protocol messages the service refused (the state machine's error, or the stage's frame limit), by code. */
  readonly refused = new Map<string, number>();
  connections = 0;
  /** Connections that have not finished their hello (within `connections`). */
  pending = 0;
  waiting = 0;
  roundRunning = 0;

  observeStage(stage: ServiceStage, seconds: number): void {
    let h = this.stageDurations.get(stage);
    if (!h) this.stageDurations.set(stage, (h = { counts: STAGE_BUCKETS.map(() => 0), sum: 0, count: 0 }));
    STAGE_BUCKETS.forEach((b, i) => {
      if (seconds <= b) h.counts[i]!++;
    });
    h.sum += seconds;
    h.count++;
  }

  addBytes(direction: 'in' | 'out', stage: ServiceStage, n: number): void {
    const m = this.bytes[direction];
    m.set(stage, (m.get(stage) ?? 0) + n);
  }

  refusedMessage(code: string): void {
    this.refused.set(code, (this.refused.get(code) ?? 0) + 1);
  }

  closed(reason: string): void {
    this.closes.set(reason, (this.closes.get(reason) ?? 0) + 1);
  }

  render(): string {
    const out: string[] = [];
    const head = (name: string, type: string, help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    head('secagg_rounds_total', 'counter', 'Rounds that ended, by outcome.');
    for (const [k, v] of Object.entries(this.rounds)) out.push(`secagg_rounds_total{outcome="${k}"} ${v}`);
    head('secagg_round_running', 'gauge', 'Whether a round is running.');
    out.push(`secagg_round_running ${this.roundRunning}`);
    head('secagg_stage_clients', 'gauge', 'Clients whose message the current (or last) round accepted, per stage.');
    for (const s of SERVICE_STAGES) out.push(`secagg_stage_clients{stage="${s}"} ${this.stageClients.get(s) ?? 0}`);
    head('secagg_stage_duration_seconds', 'histogram', 'Duration of each protocol stage.');
    for (const s of SERVICE_STAGES) {
      const h = this.stageDurations.get(s);
      if (!h) continue;
      STAGE_BUCKETS.forEach((b, i) => out.push(`secagg_stage_duration_seconds_bucket{stage="${s}",le="${b}"} ${h.counts[i]}`));
      out.push(`secagg_stage_duration_seconds_bucket{stage="${s}",le="+Inf"} ${h.count}`);
      out.push(`secagg_stage_duration_seconds_sum{stage="${s}"} ${h.sum}`, `secagg_stage_duration_seconds_count{stage="${s}"} ${h.count}`);
    }
    head('secagg_bytes_total', 'counter', 'Protocol bytes received from / sent to clients, per stage.');
    for (const dir of ['in', 'out'] as const)
      for (const s of SERVICE_STAGES) out.push(`secagg_bytes_total{direction="${dir}",stage="${s}"} ${this.bytes[dir].get(s) ?? 0}`);
    head('secagg_connections', 'gauge', 'Open WebSocket connections.');
    out.push(`secagg_connections ${this.connections}`);
    head('secagg_pending_connections', 'gauge', 'Open WebSocket connections that have not finished their hello.');
    out.push(`secagg_pending_connections ${this.pending}`);
    head('secagg_messages_refused_total', 'counter', 'Protocol messages refused (not used by the round), by code.');
    for (const [k, v] of this.refused) out.push(`secagg_messages_refused_total{code="${k}"} ${v}`);
    head('secagg_waiting_clients', 'gauge', 'Authenticated clients waiting for a round.');
    out.push(`secagg_waiting_clients ${this.waiting}`);
    head('secagg_connections_closed_total', 'counter', 'Connections the server closed, by reason.');
    for (const [k, v] of this.closes) out.push(`secagg_connections_closed_total{reason="${k}"} ${v}`);
    return out.join('\n') + '\n';
  }
}
