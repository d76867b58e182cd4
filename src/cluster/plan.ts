/**
 * A cluster round's plan, as the coordinator writes it to Redis and every role reads it: the round's
 * parameters, and per shard its own protocol round (round id, cohort 1..n, threshold, degree) and
 * where each of its members is connected (gateway, connection). JSON, checked when read.
 */
import { unhex } from '../bytes.js';
import { SecAggError } from '../errors.js';
import { clientId, roundId } from '../ids.js';
import type { Mode, RoundConfig } from '../protocol/config.js';

export interface PlanMember {
  /** The gateway the client is connected to, and its connection there. */
  readonly gw: string;
  readonly conn: number;
  /** Its ClientId inside the shard (1..size). */
  readonly id: number;
  /** Its token's subject (for the round record). */
  readonly identity: string;
  /** Active mode: the identity key it proved at hello (hex) and its certificate. */
  readonly identityKey?: string;
  readonly certificate?: string;
}

export interface PlanShard {
  readonly index: number;
  /** This shard's own protocol round id (hex): shards are independent SecAgg instances. */
  readonly roundId: string;
  readonly threshold: number;
  readonly degree: number;
  /** c, the colluding clients this shard's threshold is sized for. */
  readonly corruption: number;
  readonly members: readonly PlanMember[];
}

export interface RoundPlan {
  /** The cluster round's id (hex, 16 bytes). */
  readonly rid: string;
  /** Its number in the history (RoundStore id). */
  readonly number: number;
  readonly startedAt: number;
  readonly bits: number;
  readonly dimension: number;
  readonly mode: Mode;
  readonly stageTimeoutMs: number;
  readonly maxFrameBytes: number;
  /** When the coordinator gives up on shards that have not ended (ms since the epoch). */
  readonly deadline: number;
  readonly policy: ShardPolicy;
  readonly shards: readonly PlanShard[];
}

/**
 * What a round whose shard aborted publishes: nothing ('abort', the default), or the sum over the
 * shards that completed, reported as such, when they hold at least `minClients` clients.
 */
export type ShardPolicy = { readonly kind: 'abort' } | { readonly kind: 'completed-shards'; readonly minClients: number };

/** The protocol configuration of one shard. */
export function shardConfig(plan: RoundPlan, s: PlanShard): RoundConfig {
  return {
    roundId: roundId(fromHex(s.roundId)),
    bits: plan.bits,
    dimension: plan.dimension,
    threshold: s.threshold,
    degree: s.degree,
    mode: plan.mode,
    cohort: s.members.map((m) => clientId(m.id)),
    corruption: s.corruption,
  };
}

/** Active mode: the shard's directory of identity keys. */
export function shardDirectory(s: PlanShard): Map<number, Uint8Array> {
  return new Map(s.members.map((m) => [m.id, fromHex(m.identityKey ?? '')]));
}

/** Parse a plan read from Redis; a malformed one is refused (it comes from our own coordinator, but a shared Redis is still input). */
export function parsePlan(text: string | Buffer | null): RoundPlan {
  if (text === null) throw new SecAggError('ERR_INTERNAL', 'the round plan is missing from Redis');
  let p: RoundPlan;
  try {
    p = JSON.parse(text.toString()) as RoundPlan;
  } catch (e) {
    throw new SecAggError('ERR_INTERNAL', 'the round plan in Redis is not JSON', { cause: e });
  }
  if (!p || typeof p.rid !== 'string' || !Array.isArray(p.shards) || typeof p.dimension !== 'number')
    throw new SecAggError('ERR_INTERNAL', 'the round plan in Redis is malformed');
  return p;
}

/** Hex from the plan back to bytes (a malformed value is refused). */
export function fromHex(s: string): Uint8Array {
  const b = unhex(s);
  if (b === undefined) throw new SecAggError('ERR_DECODE', 'not a hex string');
  return b;
}
