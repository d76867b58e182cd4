import { GRAPH_SEED_BYTES } from '../graph/index.js';
import { elementBytes } from '../ring/vector.js';
import { SHARE_BYTES } from '../shamir/index.js';
import { ENTRY_OVERHEAD, ENVELOPE_OVERHEAD } from '../wire/codec.js';
import type { ClientKind, ServerKind } from '../wire/peek.js';
import { maxNeighbourhood, type RoundConfig } from './config.js';
import { clientKindForStage } from './stages.js';

export { clientKindForStage, GRAPH_SEED_BYTES };

/** Bytes of one encrypted share message: ids, two Shamir shares, AES-GCM tag. */
export const SHARE_CIPHERTEXT_BYTES = 8 + 2 * SHARE_BYTES + 16;
export const KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

/** Upper bound on any client→server message of this round: checked before decoding. */
export function maxClientMessageBytes(c: RoundConfig): number {
  const k = maxNeighbourhood(c.degree, c.cohort.length);
  const shareKeys = KEY_BYTES + k * (SHARE_CIPHERTEXT_BYTES + ENTRY_OVERHEAD);
  const masked = elementBytes(c.bits) * c.dimension + ENTRY_OVERHEAD;
  const unmask = k * (SHARE_BYTES + ENTRY_OVERHEAD) + excessNoiseBytes(c);
  const advertise = 3 * KEY_BYTES + SIGNATURE_BYTES + 4 * ENTRY_OVERHEAD;
  const view = SIGNATURE_BYTES + 2 * KEY_BYTES + 3 * ENTRY_OVERHEAD;
  return ENVELOPE_OVERHEAD + Math.max(shareKeys, masked, unmask, advertise, view);
}

/** Upper bound on any server→client message of this round. */
export function maxServerMessageBytes(c: RoundConfig): number {
  const n = c.cohort.length;
  const k = maxNeighbourhood(c.degree, n);
  const ids = 3 * n + ENTRY_OVERHEAD; // packed varints: ids < 2^16 take at most 3 bytes
  // Active mode's view proof: every member's 32-byte reveal and view signature, and the keys of the
  // members that are not neighbours.
  const proof =
    ENTRY_OVERHEAD +
    n * (KEY_BYTES + ENTRY_OVERHEAD) +
    n * (SIGNATURE_BYTES + 2 * ENTRY_OVERHEAD) +
    Math.max(0, n - 1 - c.threshold) * (2 * KEY_BYTES + ENTRY_OVERHEAD);
  const keys = GRAPH_SEED_BYTES + ids + k * (2 * KEY_BYTES + SIGNATURE_BYTES + ENTRY_OVERHEAD) + (c.mode === 'active' ? proof : 0);
  const view = ENTRY_OVERHEAD + ids + n * (KEY_BYTES + ENTRY_OVERHEAD);
  const shares = k * (SHARE_CIPHERTEXT_BYTES + ENTRY_OVERHEAD);
  const unmask = ids + n * (SIGNATURE_BYTES + ENTRY_OVERHEAD);
  return ENVELOPE_OVERHEAD + Math.max(keys, view, shares, unmask);
}

/** Limit for the first server message (RoundStart), before the client knows the round's size. */
export function maxRoundStartBytes(maxClients: number): number {
  return ENVELOPE_OVERHEAD + 64 + 3 * maxClients + ENTRY_OVERHEAD;
}

// ---- Per-kind limits: each message kind is checked against its own size before it is decoded ----

/** SHA-256 commitments (self mask, seed contributions) and seed contributions: 32 bytes. */
export const COMMITMENT_BYTES = 32;
export const SEED_BYTES = 32;
/** A SecAggError code in an abort: the longest is 25 bytes. */
const MAX_ABORT_CODE_BYTES = 64;
/** The reason of a RoundAborted, in UTF-8 bytes: the server clamps it (clampAbortReason). */
export const MAX_ABORT_REASON_BYTES = 1024;

/** The longest prefix of `reason` whose UTF-8 encoding fits MAX_ABORT_REASON_BYTES, cut between code points. */
export function clampAbortReason(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.length <= MAX_ABORT_REASON_BYTES) return reason;
  let end = MAX_ABORT_REASON_BYTES;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // not inside a multi-byte sequence
  return new TextDecoder().decode(bytes.subarray(0, end));
}

/** The excess-noise field of an UnmaskResponse: m packed elements with framing in a removable-DP round, else nothing. */
function excessNoiseBytes(c: RoundConfig): number {
  return c.dp?.removable === true ? elementBytes(c.bits) * c.dimension + ENTRY_OVERHEAD : 0;
}

/** Packed ids (< 2^21, so at most 3 bytes each) with their field header. */
const idListBytes = (n: number): number => 3 * n + ENTRY_OVERHEAD;

/**
 * The largest honest encoding of each client→server message kind in this round, envelope included:
 * k = the largest neighbourhood any U1 can give (maxNeighbourhood), each field's and entry's framing
 * bounded by ENTRY_OVERHEAD. test/wire-limits.test.ts builds the largest honest message of each kind
 * and checks that it fits and that the limit is not far above it.
 *
 * @example
 * ```ts
 * const limits = clientMessageLimits(config); // { advertiseKeys: 240, shareKeys: …, maskedInput: …, … }
 * decodeClientMessageChecked(bytes, { maxBytes: limits, allowed, ...entryCaps(config) });
 * ```
 */
export function clientMessageLimits(c: RoundConfig): Record<ClientKind, number> {
  const k = maxNeighbourhood(c.degree, c.cohort.length);
  const E = ENVELOPE_OVERHEAD;
  return {
    // Four bytes fields: two keys, the signature and the seed commitment (the last two in active mode).
    advertiseKeys: E + 2 * KEY_BYTES + SIGNATURE_BYTES + COMMITMENT_BYTES + ENTRY_OVERHEAD,
    shareKeys: E + COMMITMENT_BYTES + ENTRY_OVERHEAD + k * (SHARE_CIPHERTEXT_BYTES + ENTRY_OVERHEAD),
    maskedInput: E + elementBytes(c.bits) * c.dimension + ENTRY_OVERHEAD,
    consistencySignature: E + SIGNATURE_BYTES + ENTRY_OVERHEAD,
    // One share per neighbour, of one kind or the other (never both for the same neighbour), and
    // with removable DP noise the excess: m elements packed like the masked input.
    unmaskResponse: E + k * (SHARE_BYTES + ENTRY_OVERHEAD) + excessNoiseBytes(c),
    abort: E + MAX_ABORT_CODE_BYTES + ENTRY_OVERHEAD,
    viewSignature: E + SIGNATURE_BYTES + SEED_BYTES + COMMITMENT_BYTES + ENTRY_OVERHEAD,
  };
}

/**
 * The largest honest encoding of each server→client message kind in this round, envelope included
 * (n = cohort size, k = maxNeighbourhood). In semi-honest mode KeysForYou carries no view proof and
 * UnmaskRequest no signatures, so their limits leave them out.
 */
export function serverMessageLimits(c: RoundConfig): Record<ServerKind, number> {
  const n = c.cohort.length;
  const k = maxNeighbourhood(c.degree, n);
  const active = c.mode === 'active';
  const E = ENVELOPE_OVERHEAD;
  // The view proof: every member's seed reveal, every other member's signature (id + 64 bytes), and
  // the keys (64 bytes) of the other members that are not neighbours: fewer than n − t of them (a
  // client with fewer than t neighbours stops before it reads them).
  const view = active
    ? ENTRY_OVERHEAD +
      n * (SEED_BYTES + ENTRY_OVERHEAD) +
      n * (SIGNATURE_BYTES + ENTRY_OVERHEAD) +
      Math.max(0, n - 1 - c.threshold) * (2 * KEY_BYTES + ENTRY_OVERHEAD)
    : 0;
  return {
    roundStart: maxRoundStartBytes(n),
    keys: E + GRAPH_SEED_BYTES + ENTRY_OVERHEAD + idListBytes(n) + k * (2 * KEY_BYTES + SIGNATURE_BYTES + ENTRY_OVERHEAD) + view,
    shares: E + k * (SHARE_CIPHERTEXT_BYTES + ENTRY_OVERHEAD),
    consistencyRequest: E + idListBytes(n),
    unmaskRequest: E + idListBytes(n) + (active ? n * (SIGNATURE_BYTES + ENTRY_OVERHEAD) : 0),
    aborted: E + MAX_ABORT_CODE_BYTES + ENTRY_OVERHEAD + MAX_ABORT_REASON_BYTES + ENTRY_OVERHEAD,
    // The attempt number, U1 and each member's seed commitment.
    viewRequest: E + ENTRY_OVERHEAD + idListBytes(n) + n * (COMMITMENT_BYTES + ENTRY_OVERHEAD),
  };
}

/**
 * Limits for a client that has not seen RoundStart yet: only roundStart (for a cohort of up to
 * `maxClients`) and aborted can arrive; every other kind's limit is 0.
 */
export function serverMessageLimitsBeforeStart(maxClients: number): Record<ServerKind, number> {
  const none: Record<ServerKind, number> = { roundStart: 0, keys: 0, shares: 0, consistencyRequest: 0, unmaskRequest: 0, aborted: 0, viewRequest: 0 };
  const aborted = ENVELOPE_OVERHEAD + MAX_ABORT_CODE_BYTES + ENTRY_OVERHEAD + MAX_ABORT_REASON_BYTES + ENTRY_OVERHEAD;
  return { ...none, roundStart: maxRoundStartBytes(maxClients), aborted };
}

/**
 * Caps on repeated fields for this round's messages: one entry per neighbour is at most k =
 * maxNeighbourhood, one per member at most n. Spread into the checked decoders' options.
 */
export function entryCaps(c: RoundConfig): { maxNeighbours: number; maxMembers: number } {
  const n = c.cohort.length;
  return { maxNeighbours: maxNeighbourhood(c.degree, n), maxMembers: n };
}

/**
 * The largest message a client may send while the server is in `stage`: the larger of that stage's
 * kind and an abort; for any other stage ('done', 'aborted', unknown) the abort limit. For a frame
 * limit per stage.
 */
export function maxClientMessageBytesForStage(c: RoundConfig, stage: string): number {
  const limits = clientMessageLimits(c);
  const kind = clientKindForStage(stage);
  return kind === undefined ? limits.abort : Math.max(limits[kind], limits.abort);
}
