/**
 * Where the server keeps its rounds: the live one and the history. A small interface so the
 * embedded defaults (in memory; SQLite file in sqliteStore.ts) can be swapped for an external
 * engine without touching the server.
 */
import { STAGES, type Stage } from '../protocol/stages.js';
import type { RoundDp } from './dp.js';

/** The server's protocol stages in round order ('view' and 'consistency': active mode only). */
export const SERVICE_STAGES = STAGES;
export type ServiceStage = Stage;

export type RoundOutcome = 'running' | 'completed' | 'aborted';

export interface StageRecord {
  /** Clients whose message for this stage the server accepted (a client's abort message is not an answer). */
  clients: number;
  /** Stage start and end, ms since the epoch (end 0 while running). */
  startedAt: number;
  endedAt: number;
  bytesIn: number;
  bytesOut: number;
  /**
   * Clients the stage waited for (its members when it began: the cohort for advertise, the clients
   * the previous stage kept after that). Absent in rounds recorded before it existed.
   */
  expected?: number;
  /**
   * Set when the stage ends: of `expected`, the clients that did not answer, or answered and then
   * left, before it closed. A client the server leaves out for its own reasons (the share stage's
   * peel of clients with too few sharing neighbours) is not counted. Absent while running and in
   * older rounds.
   */
  dropped?: number;
  /**
   * True when the stage was closed by its deadline, with clients still expected to answer, rather
   * than by every expected client answering or leaving (a round slowed by a deadline). Absent in
   * older rounds.
   */
  deadline?: boolean;
}

export interface RoundParams {
  readonly bits: number;
  readonly dimension: number;
  readonly threshold: number;
  /** Neighbours per client actually used (n − 1 for the complete graph). */
  readonly degree: number;
  readonly mode: 'semi-honest' | 'active';
  /** Clients invited (cohort size). */
  readonly cohort: number;
  /** c, colluding clients tolerated per neighbourhood (absent in rounds recorded before it existed: 0). */
  readonly corruption?: number;
}

export interface RoundRecord {
  /** Sequential round number, 1, 2, … */
  readonly id: number;
  /** The protocol's 16-byte round id, hex. */
  readonly roundId: string;
  readonly params: RoundParams;
  readonly startedAt: number;
  endedAt: number | null;
  outcome: RoundOutcome;
  /** When aborted: a SecAggError code or 'ERR_SHUTDOWN' / 'ERR_INTERRUPTED' (or, never stored, 'ERR_STORE': the history could not record the round). */
  code: string | null;
  reason: string | null;
  /** Current (or last) stage. */
  stage: string;
  stages: Partial<Record<ServiceStage, StageRecord>>;
  /** Completed rounds: clients in the sum and the sum (the sum only from `get`). */
  included: number[] | null;
  sum?: Uint32Array | null;
  /**
   * DP rounds (ServiceOptions.dp): the planned noise, the noise released (completed rounds), the ε
   * it implies and the cumulative ε and RDP of the history. Absent in rounds without DP.
   */
  dp?: RoundDp;
  /**
   * Cluster rounds (`secagg cluster`, src/cluster/): each shard's size, parameters and outcome.
   * Never a shard's sum: only the round's total is kept. Absent in one-process rounds.
   */
  shards?: ShardSummary[];
}

/** One shard of a cluster round, as its record keeps it. */
export interface ShardSummary {
  readonly index: number;
  readonly clients: number;
  readonly threshold: number;
  readonly degree: number;
  readonly outcome: RoundOutcome;
  /** Clients in the shard's sum (0 while running or when it aborted). */
  readonly included?: number;
  /** Whether the shard's sum is in the round's total. */
  readonly counted?: boolean;
  readonly code?: string;
  /** The worker that finished it, and how many workers ran it (1 + failovers). */
  readonly worker?: string;
  readonly owners?: number;
}

/** What the privacy ledger continues from after a restart: the newest record's cumulative RDP. */
export interface DpHistory {
  readonly cumulativeRdp: readonly number[];
  readonly rounds: number;
}

export interface RoundStore {
  /** Record a new round; returns its number. */
  begin(record: Omit<RoundRecord, 'id'>): Promise<number>;
  /** Save the current state of a round (stage progress, outcome, result). */
  save(record: RoundRecord): Promise<void>;
  get(id: number): Promise<RoundRecord | undefined>;
  /** Newest first, without sums. */
  list(options?: { limit?: number }): Promise<RoundRecord[]>;
  /** How many rounds of the whole history ended each way (the metrics' totals after a restart). */
  countOutcomes(): Promise<Record<RoundOutcome, number>>;
  /** Mark every round that never ended as aborted (after a restart); returns their numbers. */
  abortUnfinished(code: string, reason: string, at: number): Promise<number[]>;
  /** The cumulative RDP of the newest round whose DP entry has one (undefined: none). */
  latestDp(): Promise<DpHistory | undefined>;
  close(): Promise<void>;
}

/** The DpHistory of a record, if it has one. */
export function dpHistoryOf(r: Pick<RoundRecord, 'dp'>): DpHistory | undefined {
  const dp = r.dp;
  return dp && Array.isArray(dp.cumulativeRdp) ? { cumulativeRdp: dp.cumulativeRdp, rounds: dp.cumulativeRounds ?? 0 } : undefined;
}

const clone = (r: RoundRecord, withSum: boolean): RoundRecord => {
  const { sum, ...rest } = r;
  const copy: RoundRecord = structuredClone(rest);
  if (withSum && sum) copy.sum = sum.slice();
  return copy;
};

/** The default store: history in memory, lost on restart. */
export function memoryStore(): RoundStore {
  const rounds = new Map<number, RoundRecord>();
  let next = 1;
  return {
    async begin(record) {
      const id = next++;
      rounds.set(id, clone({ ...record, id }, true));
      return id;
    },
    async save(record) {
      rounds.set(record.id, clone(record, true));
    },
    async get(id) {
      const r = rounds.get(id);
      return r && clone(r, true);
    },
    async list(options = {}) {
      return [...rounds.values()]
        .sort((a, b) => b.id - a.id)
        .slice(0, options.limit ?? 100)
        .map((r) => clone(r, false));
    },
    async countOutcomes() {
      const counts: Record<RoundOutcome, number> = { running: 0, completed: 0, aborted: 0 };
      for (const r of rounds.values()) counts[r.outcome]++;
      return counts;
    },
    async abortUnfinished(code, reason, at) {
      const ids: number[] = [];
      for (const r of rounds.values())
        if (r.outcome === 'running') {
          Object.assign(r, { outcome: 'aborted', code, reason, endedAt: at });
          ids.push(r.id);
        }
      return ids;
    },
    async latestDp() {
      for (const r of [...rounds.values()].sort((a, b) => b.id - a.id)) {
        const h = dpHistoryOf(r);
        if (h) return structuredClone(h);
      }
      return undefined;
    },
    async close() {},
  };
}
