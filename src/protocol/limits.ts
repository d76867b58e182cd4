import { elementBytes } from '../ring/vector.js';
import { SHARE_BYTES } from '../shamir/index.js';
import { ENTRY_OVERHEAD, ENVELOPE_OVERHEAD } from '../wire/codec.js';
import { effectiveDegree, type RoundConfig } from './config.js';

/** Bytes of one encrypted share message: ids, two Shamir shares, AES-GCM tag. */
export const SHARE_CIPHERTEXT_BYTES = 8 + 2 * SHARE_BYTES + 16;
export const KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
export const GRAPH_SEED_BYTES = 32;

/** Upper bound on any client→server message of this round: checked before decoding. */
export function maxClientMessageBytes(c: RoundConfig): number {
  const k = effectiveDegree(c.degree, c.cohort.length);
  const shareKeys = KEY_BYTES + k * (SHARE_CIPHERTEXT_BYTES + ENTRY_OVERHEAD);
  const masked = elementBytes(c.bits) * c.dimension + ENTRY_OVERHEAD;
  const unmask = k * (SHARE_BYTES + ENTRY_OVERHEAD);
  return ENVELOPE_OVERHEAD + Math.max(shareKeys, masked, unmask, 2 * KEY_BYTES + SIGNATURE_BYTES + ENTRY_OVERHEAD);
}

/** Upper bound on any server→client message of this round. */
export function maxServerMessageBytes(c: RoundConfig): number {
  const n = c.cohort.length;
  const k = effectiveDegree(c.degree, n);
  const ids = 3 * n + ENTRY_OVERHEAD; // packed varints: ids < 2^16 take at most 3 bytes
  const keys = GRAPH_SEED_BYTES + ids + k * (2 * KEY_BYTES + SIGNATURE_BYTES + ENTRY_OVERHEAD);
  const shares = k * (SHARE_CIPHERTEXT_BYTES + ENTRY_OVERHEAD);
  const unmask = ids + n * (SIGNATURE_BYTES + ENTRY_OVERHEAD);
  return ENVELOPE_OVERHEAD + Math.max(keys, shares, unmask);
}

/** Limit for the first server message (RoundStart), before the client knows the round's size. */
export function maxRoundStartBytes(maxClients: number): number {
  return ENVELOPE_OVERHEAD + 64 + 3 * maxClients + ENTRY_OVERHEAD;
}
