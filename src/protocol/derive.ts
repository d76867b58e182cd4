/**
 * Every key, commitment, nonce and signed message of the protocol is derived here, each under its
 * own label and bound to the round id and the clients involved, so no value can be replayed across
 * purposes, rounds or pairs.
 */
import type { CryptoProvider } from '../crypto/provider.js';
import type { ClientId, RoundId } from '../ids.js';
import { concatBytes as concat } from '../bytes.js';

const enc = new TextEncoder();
const LABEL = {
  shareKey: enc.encode('secagg/v1/share-key'),
  pairwise: enc.encode('secagg/v1/pairwise-mask'),
  selfMask: enc.encode('secagg/v1/self-mask'),
  commitment: enc.encode('secagg/v1/self-mask-commitment'),
  sharesAad: enc.encode('secagg/v1/shares'),
  advertise: enc.encode('secagg/v1/advertise'),
  consistency: enc.encode('secagg/v1/consistency'),
  seedCommitment: enc.encode('secagg/v1/graph-seed-commitment'),
  view: enc.encode('secagg/v1/view'),
  graphSeed: enc.encode('secagg/v1/graph-seed'),
};

function u32(...values: number[]): Uint8Array {
  return u32s(values);
}

function u32s(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(4 * values.length);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) dv.setUint32(4 * i, values[i]!, false);
  return out;
}

/** AEAD key for the shares u and v exchange (one key per unordered pair, one message per direction). */
export function shareKey(c: CryptoProvider, shared: Uint8Array, round: RoundId, u: ClientId, v: ClientId): Promise<Uint8Array> {
  return c.hkdf(shared, round, concat(LABEL.shareKey, u32(Math.min(u, v), Math.max(u, v))), 32);
}

/** Nonce for the message from `sender` to `recipient`: unique per key because each direction carries one message. */
export function shareNonce(sender: ClientId, recipient: ClientId): Uint8Array {
  return concat(u32(sender, recipient), new Uint8Array(4));
}

export function sharesAad(round: RoundId, sender: ClientId, recipient: ClientId): Uint8Array {
  return concat(LABEL.sharesAad, round, u32(sender, recipient));
}

/** AES-128 key of the pairwise mask between u and v. */
export function pairwiseMaskKey(c: CryptoProvider, shared: Uint8Array, round: RoundId, u: ClientId, v: ClientId): Promise<Uint8Array> {
  return c.hkdf(shared, round, concat(LABEL.pairwise, u32(Math.min(u, v), Math.max(u, v))), 16);
}

/** AES-128 key of u's self mask, from its 32-byte seed b_u. */
export function selfMaskKey(c: CryptoProvider, seed: Uint8Array, round: RoundId, u: ClientId): Promise<Uint8Array> {
  return c.hkdf(seed, round, concat(LABEL.selfMask, u32(u)), 16);
}

/** Hash commitment to b_u, sent with u's shares so a wrong reconstruction is caught, not summed. */
export function selfMaskCommitment(c: CryptoProvider, seed: Uint8Array, round: RoundId, u: ClientId): Promise<Uint8Array> {
  return c.sha256(concat(LABEL.commitment, round, u32(u), seed));
}

/** What a client signs in active mode to bind its round keys to its long-term identity. */
export function advertiseTranscript(round: RoundId, u: ClientId, encryptionKey: Uint8Array, maskingKey: Uint8Array): Uint8Array {
  return concat(LABEL.advertise, round, u32(u), encryptionKey, maskingKey);
}

/** Active mode: commitment to client u's 32-byte contribution r to the graph seed of one view attempt. */
export function seedCommitment(c: CryptoProvider, round: RoundId, u: ClientId, attempt: number, reveal: Uint8Array): Promise<Uint8Array> {
  return c.sha256(concat(LABEL.seedCommitment, round, u32(u, attempt), reveal));
}

/**
 * Active mode: the digest of one view of the round — U1 and each member's seed commitment for this
 * attempt. Every client signs it before revealing its contribution, so all commitments are fixed
 * before any contribution is known; it holds every member's fresh commitment, so no signature over
 * it (or over a survivor set bound to it) fits another round, even one with the same round id.
 */
export function viewDigest(
  c: CryptoProvider,
  round: RoundId,
  attempt: number,
  advertised: readonly number[],
  commitments: readonly Uint8Array[],
): Promise<Uint8Array> {
  return c.sha256(concat(LABEL.view, round, u32(attempt, advertised.length), u32s(advertised), ...commitments));
}

/** Active mode: the graph seed of a view, from every member's revealed contribution (U1 order). */
export function viewGraphSeed(c: CryptoProvider, view: Uint8Array, reveals: readonly Uint8Array[]): Promise<Uint8Array> {
  return c.sha256(concat(LABEL.graphSeed, view, ...reveals));
}

/**
 * What client u signs in active mode to say it holds this view of the round, with these round keys:
 * the view digest is fresh (it holds every member's new commitment), so this signature also binds
 * u's keys to this very round, which the advertise signature alone (over the server's round id)
 * cannot.
 */
export function viewTranscript(view: Uint8Array, u: ClientId, encryptionKey: Uint8Array, maskingKey: Uint8Array): Uint8Array {
  return concat(LABEL.view, view, u32(u), encryptionKey, maskingKey);
}

/**
 * What a client signs in active mode to commit to the survivor set it was shown, bound to the view
 * digest (fresh per round) so the signature cannot be replayed into another round.
 */
export function consistencyTranscript(round: RoundId, view: Uint8Array, survivors: readonly number[]): Uint8Array {
  return concat(LABEL.consistency, round, view, u32(survivors.length), u32s(survivors));
}

/** Plaintext of one encrypted share message. */
export function sharePlaintext(sender: ClientId, recipient: ClientId, keyShare: Uint8Array, selfShare: Uint8Array): Uint8Array {
  return concat(u32(sender, recipient), keyShare, selfShare);
}

export function readU32(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(offset, false);
}

export { bytesEqual, hex } from '../bytes.js';
