/**
 * Building a partial sum of masked inputs where they arrive (a gateway in the distributed
 * deployment, docs/protocol.md "Sharding"): each client's MaskedInput vector is added into one
 * running vector as it comes, and the shard's server receives that one vector and the list of
 * clients in it (handleServerPartialSum, or RoundRunner.partialSum) instead of every client's m
 * words. The masks cancel in the shard's total exactly as they do when the server adds the inputs
 * itself: addition mod 2^bits commutes.
 *
 * Holds no client data beyond the running vector and the ids: memory O(m) per partial sum. Pure and
 * browser-safe; no I/O.
 */
import { SecAggError } from '../errors.js';
import { MAX_CLIENT_ID, type ClientId } from '../ids.js';
import { RingAccumulator } from '../ring/accumulator.js';
import { assertBits } from '../ring/vector.js';
import { decodeClientMessageChecked } from '../wire/codec.js';
import { bytesEqual } from './derive.js';
import type { RoundConfig } from './config.js';
import { clientMessageLimits, entryCaps } from './limits.js';
import type { PartialSum } from './serverRound.js';

/** A partial sum being built: add() each masked input, then finish() once. */
export interface PartialSumBuilder {
  /** Clients added so far. */
  readonly size: number;
  /** Whether `client`'s masked input is already in. */
  has(client: number): boolean;
  /**
   * Add `client`'s masked input, packed as in MaskedInput.vector (elementBytes(bits) little-endian
   * bytes per element). Throws SecAggError — ERR_UNKNOWN_SENDER for an id outside 1..65535,
   * ERR_DUPLICATE_SENDER for a client already added, ERR_SIZE for a wrong length or an element
   * ≥ 2^bits — and then changes nothing. TypeError after finish().
   */
  add(client: number, vector: Uint8Array): void;
  /** The partial sum: the clients ascending, the words mod 2^bits (a fresh vector). Once. */
  finish(): PartialSum;
}

/**
 * Start a partial sum for a round of `dimension` elements mod 2^`bits` (a RoundConfig has both).
 *
 * @example
 * ```ts
 * const partial = createPartialSum(config);
 * partial.add(from, maskedInputVector(config, from, bytes)); // for each masked input this gateway receives
 * const { clients, words } = partial.finish();                 // then, once: forward to the shard's worker
 * await runner.partialSum(clients, words);                     // at the worker
 * ```
 */
export function createPartialSum(o: Pick<RoundConfig, 'dimension' | 'bits'>): PartialSumBuilder {
  assertBits(o.bits);
  const sum = new RingAccumulator(o.dimension); // RangeError for a bad dimension
  const bits = o.bits;
  const clients = new Set<number>();
  let finished = false;
  return {
    get size() {
      return clients.size;
    },
    has: (client) => clients.has(client),
    add(client, vector) {
      if (finished) throw new TypeError('this partial sum is finished');
      if (!(vector instanceof Uint8Array)) throw new TypeError('vector must be a Uint8Array');
      if (!Number.isInteger(client) || client < 1 || client > MAX_CLIENT_ID) throw new SecAggError('ERR_UNKNOWN_SENDER', `client id ${client} is out of range`);
      if (clients.has(client))
        throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${client}'s masked input is already in this partial sum`, { clients: [client] });
      sum.addPacked(vector, bits, 1); // checks the length and every element before it adds anything
      clients.add(client);
    },
    finish() {
      if (finished) throw new TypeError('this partial sum is finished');
      finished = true;
      return { clients: [...clients].sort((a, b) => a - b) as ClientId[], words: sum.toVector(bits) };
    },
  };
}

/**
 * The packed vector of a MaskedInput message from `from` in this round, checked as the server
 * checks it before it adds the vector: the size against the kind's limit before decoding, the
 * envelope and version, the kind (ERR_STAGE_MISMATCH for any other kind: route an abort to the
 * server as a message), the round id (ERR_ROUND_MISMATCH) and the sender (ERR_UNKNOWN_SENDER).
 * The vector's length and range are checked by createPartialSum's add(). Throws SecAggError. The
 * vector may be a view into `bytes`: add it before the buffer is reused.
 */
export function maskedInputVector(config: RoundConfig, from: number, bytes: Uint8Array): Uint8Array {
  const msg = decodeClientMessageChecked(bytes, { maxBytes: clientMessageLimits(config), allowed: (kind) => kind === 'maskedInput', ...entryCaps(config) });
  if (!bytesEqual(msg.roundId, config.roundId)) throw new SecAggError('ERR_ROUND_MISMATCH', 'message is for another round');
  if (msg.sender !== from) throw new SecAggError('ERR_UNKNOWN_SENDER', `message claims sender ${msg.sender} on the connection of ${from}`);
  if (msg.body.case !== 'maskedInput') throw new SecAggError('ERR_STAGE_MISMATCH', `a ${String(msg.body.case)} message is not a masked input`);
  return msg.body.value.vector;
}
