import { fromBinary, toBinary, create, type MessageInitShape } from '@bufbuild/protobuf';
import { SecAggError } from '../errors.js';
import {
  ClientMessageSchema,
  ServerMessageSchema,
  type ClientMessage,
  type ServerMessage,
} from './gen/secagg/v1/secagg_pb.js';
import { fastDecodeClientMessage, fastDecodeServerMessage, fastEncodeClientMessage, fastEncodeServerMessage } from './fast.js';
import { PROTOCOL_VERSION } from './version.js';

export { PROTOCOL_VERSION };

/** A message body as the encoder accepts it: plain objects, nested messages need not be created first. */
export type ClientBody = NonNullable<MessageInitShape<typeof ClientMessageSchema>['body']>;
export type ServerBody = NonNullable<MessageInitShape<typeof ServerMessageSchema>['body']>;

/**
 * Decode untrusted bytes. The byte length is checked against `maxBytes` (derived from the round's
 * parameters by the caller) before the decoder allocates anything proportional to the input.
 */
export function decodeClientMessage(bytes: Uint8Array, maxBytes: number): ClientMessage {
  if (!(bytes instanceof Uint8Array)) throw new SecAggError('ERR_DECODE', 'message is not bytes');
  if (bytes.length > maxBytes) throw new SecAggError('ERR_SIZE', `message of ${bytes.length} bytes exceeds the limit of ${maxBytes}`);
  // The fast path only answers for input protobuf-es would decode to the same value.
  let msg = fastDecodeClientMessage(bytes);
  if (msg === undefined) {
    try {
      msg = fromBinary(ClientMessageSchema, bytes);
    } catch (cause) {
      throw new SecAggError('ERR_DECODE', 'malformed client message', { cause });
    }
  }
  if (msg.version !== PROTOCOL_VERSION) throw new SecAggError('ERR_VERSION', `protocol version ${msg.version} is not ${PROTOCOL_VERSION}`);
  if (msg.body.case === undefined) throw new SecAggError('ERR_DECODE', 'client message has no body');
  return msg;
}

export function decodeServerMessage(bytes: Uint8Array, maxBytes: number): ServerMessage {
  if (!(bytes instanceof Uint8Array)) throw new SecAggError('ERR_DECODE', 'message is not bytes');
  if (bytes.length > maxBytes) throw new SecAggError('ERR_SIZE', `message of ${bytes.length} bytes exceeds the limit of ${maxBytes}`);
  let msg = fastDecodeServerMessage(bytes);
  if (msg === undefined) {
    try {
      msg = fromBinary(ServerMessageSchema, bytes);
    } catch (cause) {
      throw new SecAggError('ERR_DECODE', 'malformed server message', { cause });
    }
  }
  if (msg.version !== PROTOCOL_VERSION) throw new SecAggError('ERR_VERSION', `protocol version ${msg.version} is not ${PROTOCOL_VERSION}`);
  if (msg.body.case === undefined) throw new SecAggError('ERR_DECODE', 'server message has no body');
  return msg;
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
