/** The service's public types: what createServer returns, publishes and reports. */
import type { StageCounts } from '../protocol/serverRound.js';
import type { RoundRecord, RoundStore } from './store.js';
import type { DpStatus, RoundDp } from './dp.js';
import type { DpEncoding } from '../dp/encoding.js';

/** What subscribers receive when a round completes. */
export interface PublishedResult {
  readonly round: number;
  readonly roundId: string;
  /** Σ x_u mod 2^bits over `included`. */
  readonly sum: Uint32Array;
  /** ClientIds whose input is in the sum. */
  readonly included: readonly number[];
  /** Identities (from the tokens) of the included clients. */
  readonly identities: readonly string[];
  /** Active mode: the included clients' identity public keys, hex (same order). */
  readonly identityKeys?: readonly string[];
  readonly params: RoundRecord['params'];
  readonly stages: RoundRecord['stages'];
  readonly startedAt: number;
  readonly endedAt: number;
  /** DP rounds: the record's DP entry (released noise, ε) and the encoding, to decode the sum (decodeDpMean with planForEncoding(encoding) and the round id as seed). */
  readonly dp?: RoundDp & { readonly encoding: DpEncoding };
}

export interface LiveRound {
  readonly round: number;
  readonly roundId: string;
  readonly stage: string;
  readonly params: RoundRecord['params'];
  readonly startedAt: number;
  /** When the current stage's deadline passes, ms since the epoch. */
  readonly stageDeadline: number;
  readonly timeLeftMs: number;
  readonly stages: RoundRecord['stages'];
  /** Cohort members whose connection closed during the round. */
  readonly disconnected: number;
  /** The current stage's progress: how many clients it waits for, answered, quit, and are still pending. */
  readonly progress: StageCounts | null;
}

export interface ServiceStatus {
  readonly now: number;
  readonly connections: number;
  readonly waiting: number;
  readonly round: LiveRound | null;
  readonly totals: { readonly completed: number; readonly aborted: number };
  /** Newest first (DP entries without their cumulative RDP vector). */
  readonly recent: readonly RoundRecord[];
  /** With ServiceOptions.dp: ε spent, the budget, whether it stopped rounds, the encoding. */
  readonly dp?: DpStatus;
  /** A cluster's coordinator (src/cluster/): its gateways, workers and the running round's shards. */
  readonly cluster?: ClusterStatus;
}

/** What a cluster's coordinator reports of the cluster (GET /api/status's `cluster`, the dashboard's cluster panel). */
export interface ClusterStatus {
  readonly coordinator: { readonly id: string; readonly active: boolean };
  readonly gateways: readonly { readonly id: string; readonly alive: boolean; readonly waiting: number; readonly connections: number }[];
  readonly workers: readonly { readonly id: string; readonly alive: boolean; readonly shards: readonly string[] }[];
  /** The running round: each shard's stage and the worker that runs it (owners > 1: it failed over). */
  readonly round: {
    readonly number: number;
    readonly rid: string;
    readonly startedAt: number;
    readonly deadline: number;
    readonly shards: readonly {
      readonly index: number;
      readonly clients: number;
      readonly stage: string;
      readonly worker: string | null;
      readonly owners: number;
    }[];
  } | null;
  /** Bytes every role has written to Redis so far (the engine's traffic). */
  readonly redisBytes: number;
}

export interface SecAggServer {
  /** ws://host:port/ws */
  readonly url: string;
  /** http://host:port/ (https with TLS): the client port's HTTP side (/healthz; the admin surface too when it is served there). */
  readonly httpUrl: string;
  /** Where the dashboard, /metrics and /api/* are served (ServiceOptions.admin); undefined when 'off'. */
  readonly adminUrl: string | undefined;
  readonly port: number;
  readonly store: RoundStore;
  /** Called for every completed round; returns an unsubscribe function. */
  onResult(listener: (result: PublishedResult) => void): () => void;
  /** Called when any round ends (completed or aborted). */
  onRoundEnd(listener: (record: RoundRecord) => void): () => void;
  status(): Promise<ServiceStatus>;
  /** Start a round now with the waiting clients; resolves to its number (undefined if too few, or if the history could not record it). */
  startRound(): Promise<number | undefined>;
  /**
   * Stop: no new rounds; the running round gets `graceMs` (default 0) to finish, else it is
   * aborted with `reason` and recorded; connections close with 1001.
   */
  close(options?: { reason?: string; graceMs?: number }): Promise<void>;
}
