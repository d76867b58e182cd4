import { fromBinary, toBinary, create, type DescMessage } from '@bufbuild/protobuf';
import { SecAggError } from '../errors.js';
import { ClientMessageSchema, ServerMessageSchema, type ClientMessage, type ServerMessage } from './gen/secagg/v1/secagg_pb.js';
import { fastDecodeClientBody, fastDecodeServerBody, fastEncodeClientMessage, fastEncodeServerMessage } from './fast.js';
import {
  UNCAPPED,
  clientBodySchema,
  clientKinds,
  peekClientBody,
  peekServerBody,
  scanBody,
  serverBodySchema,
  serverKinds,
  type ClientKind,
  type EntryCaps,
  type PeekedBody,
  type ServerKind,
} from './peek.js';
import { PROTOCOL_VERSION } from './version.js';

export { PROTOCOL_VERSION };

/** A message body as the encoder accepts it: plain objects, nested messages need not be created first. */
export type { ClientBody, ServerBody } from './bodies.js';
import type { ClientBody, ServerBody } from './bodies.js';

/**
 * What a receiver accepts right now, for decodeClientMessageChecked / decodeServerMessageChecked.
 * Everything here bounds what an untrusted peer can make the decoder spend.
 */
export interface CheckedDecodeOptions<K extends string> extends EntryCaps {
  /**
   * The largest encoded message (envelope included) of each body kind in this round, e.g.
   * `clientMessageLimits(config)` from protocol/limits.ts, or a function of the kind.
   */
  readonly maxBytes: Readonly<Record<K, number>> | ((kind: K) => number);
  /** Whether a body of this kind may arrive now (the receiver's stage). A refused kind is never decoded. */
  readonly allowed: (kind: K) => boolean;
  /** Tests only: false sends every body through scanBody + protobuf-es instead of the fast decoder (default true). */
  readonly fastPath?: boolean;
}

interface Direction<K extends string, M> {
  readonly what: string;
  readonly kinds: readonly K[];
  readonly typeName: M extends { $typeName: infer T } ? T : never;
  peek(bytes: Uint8Array): PeekedBody<K>;
  schema(kind: K): DescMessage;
  fast(kind: K, bytes: Uint8Array, offset: number, length: number, caps: EntryCaps): { case: K; value: unknown } | undefined;
  withSender: boolean;
}

const CLIENT: Direction<ClientKind, ClientMessage> = {
  what: 'client message',
  kinds: clientKinds,
  typeName: 'secagg.v1.ClientMessage',
  peek: peekClientBody,
  schema: clientBodySchema,
  fast: fastDecodeClientBody,
  withSender: true,
};
const SERVER: Direction<ServerKind, ServerMessage> = {
  what: 'server message',
  kinds: serverKinds,
  typeName: 'secagg.v1.ServerMessage',
  peek: peekServerBody,
  schema: serverBodySchema,
  fast: fastDecodeServerBody,
  withSender: false,
};

function limitOf<K extends string>(maxBytes: CheckedDecodeOptions<K>['maxBytes'], kind: K): number {
  return typeof maxBytes === 'function' ? maxBytes(kind) : maxBytes[kind];
}

/**
 * The checks, in this order, each before anything proportional to the input is allocated:
 * bytes at all; length within the largest limit of any kind (ERR_TOO_BIG); the envelope (peek.ts,
 * ERR_DECODE); the protocol version (ERR_VERSION: another version may number its kinds otherwise);
 * the kind against `allowed` (ERR_STAGE_MISMATCH); the length against that kind's limit
 * (ERR_TOO_BIG). Then the body alone is decoded — by the fast decoder, which counts repeated entries
 * before reading them, or after scanBody has vetted it (shape and entry counts) by protobuf-es.
 */
function decodeChecked<K extends string, M>(d: Direction<K, M>, bytes: Uint8Array, o: CheckedDecodeOptions<K>): M {
  if (!(bytes instanceof Uint8Array)) throw new SecAggError('ERR_DECODE', `${d.what} is not bytes`);
  let largest = 0;
  for (const k of d.kinds) largest = Math.max(largest, limitOf(o.maxBytes, k));
  if (!(bytes.length <= largest)) throw new SecAggError('ERR_TOO_BIG', `${d.what} of ${bytes.length} bytes exceeds the limit of ${largest}`);
  const p = d.peek(bytes);
  if (p.version !== PROTOCOL_VERSION) throw new SecAggError('ERR_VERSION', `protocol version ${p.version} is not ${PROTOCOL_VERSION}`);
  if (!o.allowed(p.kind)) throw new SecAggError('ERR_STAGE_MISMATCH', `${p.kind} is not expected now`);
  const limit = limitOf(o.maxBytes, p.kind);
  if (!(bytes.length <= limit)) throw new SecAggError('ERR_TOO_BIG', `${p.kind} message of ${bytes.length} bytes exceeds the limit of ${limit}`);
  const caps: EntryCaps = { maxNeighbours: o.maxNeighbours, maxMembers: o.maxMembers };
  let body = o.fastPath === false ? undefined : d.fast(p.kind, bytes, p.bodyOffset, p.bodyLength, caps);
  if (body === undefined) {
    const schema = d.schema(p.kind);
    scanBody(schema, bytes, p.bodyOffset, p.bodyLength, caps);
    try {
      body = { case: p.kind, value: fromBinary(schema, bytes.subarray(p.bodyOffset, p.bodyOffset + p.bodyLength)) };
    } catch (cause) {
      throw new SecAggError('ERR_DECODE', `malformed ${d.what}`, { cause });
    }
  }
  // What fromBinary(ClientMessageSchema | ServerMessageSchema, bytes) returns for an envelope
  // peek.ts accepts: no field twice, no unknown fields.
  const envelope = d.withSender
    ? { $typeName: d.typeName, version: p.version, roundId: p.roundId, sender: p.sender, body }
    : { $typeName: d.typeName, version: p.version, roundId: p.roundId, body };
  return envelope as M;
}

/**
 * Decode an untrusted client message for the receiver's current stage. Refuses, before decoding:
 * a kind `allowed` does not accept (ERR_STAGE_MISMATCH), a message over its kind's byte limit
 * (ERR_TOO_BIG), a repeated field with more entries than its cap (ERR_SIZE, counted before the entries
 * are built); and ERR_DECODE / ERR_VERSION as decodeClientMessage. Every error is a SecAggError.
 *
 * @example
 * ```ts
 * const limits = clientMessageLimits(config);            // protocol/limits.ts
 * const msg = decodeClientMessageChecked(bytes, {
 *   maxBytes: limits,
 *   allowed: (kind) => kind === 'abort' || kind === 'shareKeys',
 *   ...entryCaps(config),                                // { maxNeighbours: k, maxMembers: n }
 * });
 * ```
 */
export function decodeClientMessageChecked(bytes: Uint8Array, options: CheckedDecodeOptions<ClientKind>): ClientMessage {
  return decodeChecked(CLIENT, bytes, options);
}

/** decodeClientMessageChecked for server messages (a client reading a possibly malicious server). */
export function decodeServerMessageChecked(bytes: Uint8Array, options: CheckedDecodeOptions<ServerKind>): ServerMessage {
  return decodeChecked(SERVER, bytes, options);
}

const anyKind = (): boolean => true;

/**
 * Decode untrusted bytes of any kind, with one byte limit for all (derived from the round's
 * parameters by the caller) and no caps on repeated fields. Prefer decodeClientMessageChecked,
 * which also checks the kind and caps entries. The same envelope and shape rules apply (peek.ts):
 * a field given twice, an unknown field, a wrong wire type is ERR_DECODE.
 */
export function decodeClientMessage(bytes: Uint8Array, maxBytes: number): ClientMessage {
  return decodeChecked(CLIENT, bytes, { maxBytes: () => maxBytes, allowed: anyKind, ...UNCAPPED });
}

export function decodeServerMessage(bytes: Uint8Array, maxBytes: number): ServerMessage {
  return decodeChecked(SERVER, bytes, { maxBytes: () => maxBytes, allowed: anyKind, ...UNCAPPED });
}

export function encodeClientMessage(roundId: Uint8Array, sender: number, body: ClientBody): Uint8Array {
  return (
    fastEncodeClientMessage(roundId, sender, body) ??
    toBinary(ClientMessageSchema, create(ClientMessageSchema, { version: PROTOCOL_VERSION, roundId, sender, body }))
  );
}

export function encodeServerMessage(roundId: Uint8Array, body: ServerBody): Uint8Array {
  return fastEncodeServerMessage(roundId, body) ?? toBinary(ServerMessageSchema, create(ServerMessageSchema, { version: PROTOCOL_VERSION, roundId, body }));
}

/** Worst-case framing overhead of one repeated/length-delimited entry: tag + length varint + small fields. */
export const ENTRY_OVERHEAD = 16;
/** Envelope: version, round id, sender, body tag and length. */
export const ENVELOPE_OVERHEAD = 64;
