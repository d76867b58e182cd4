/**
 * Frames of the WebSocket service. Protocol messages (ClientMessage / ServerMessage) travel as-is
 * in binary frames; a control frame (hello, welcome, round assignment, round finished) is the byte
 * 0x00 followed by an encoded `Control` (proto/secagg/v1/service.proto). No protobuf message can
 * begin with 0x00 (field number 0 is invalid), so one byte tells the two apart. Browser-safe.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { ControlSchema, type Control } from '../wire/gen/secagg/v1/service_pb.js';

const CONTROL_PREFIX = 0x00;
/** Largest control frame either side accepts (a hello carries a token; nothing else is large). */
export const MAX_CONTROL_BYTES = 4096;

export type ControlBody = NonNullable<MessageInitShape<typeof ControlSchema>['body']>;

export function encodeControl(body: ControlBody): Uint8Array {
  const inner = toBinary(ControlSchema, create(ControlSchema, { body }));
  const out = new Uint8Array(inner.length + 1);
  out[0] = CONTROL_PREFIX;
  out.set(inner, 1);
  return out;
}

export function isControlFrame(bytes: Uint8Array): boolean {
  return bytes.length > 0 && bytes[0] === CONTROL_PREFIX;
}

/** A round assignment carries the round's directory (active mode): the one control frame that grows with the cohort. */
const MAX_ASSIGNMENT_BYTES = 64 << 20;

/**
 * Decode a control frame; throws a TransportError('malformed') on anything else. Frames are capped
 * at MAX_CONTROL_BYTES, except — where `allowAssignment` (a client reading the server) — a round
 * assignment, which may be up to MAX_ASSIGNMENT_BYTES.
 */
export function decodeControl(bytes: Uint8Array, options: { allowAssignment?: boolean } = {}): Control {
  if (!isControlFrame(bytes)) throw new TransportError(CLOSE.MALFORMED, 'not a control frame');
  const large = bytes.length > MAX_CONTROL_BYTES;
  if (large && (!options.allowAssignment || bytes.length > MAX_ASSIGNMENT_BYTES))
    throw new TransportError(CLOSE.TOO_BIG, `control frame of ${bytes.length} bytes exceeds ${MAX_CONTROL_BYTES}`);
  let c: Control;
  try {
    c = fromBinary(ControlSchema, bytes.subarray(1));
  } catch {
    throw new TransportError(CLOSE.MALFORMED, 'malformed control frame');
  }
  if (c.body.case === undefined) throw new TransportError(CLOSE.MALFORMED, 'control frame without a body');
  if (large && c.body.case !== 'assignment') throw new TransportError(CLOSE.TOO_BIG, `control frame of ${bytes.length} bytes exceeds ${MAX_CONTROL_BYTES}`);
  return c;
}

/**
 * WebSocket close codes the service uses. 1000–1011 are RFC 6455's; 4000–4999 are ours and
 * mirror HTTP statuses where one fits.
 */
export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  MALFORMED: 4400,
  UNAUTHORIZED: 4401,
  HANDSHAKE_TIMEOUT: 4408,
  DUPLICATE_IDENTITY: 4409,
  RATE_LIMITED: 4429,
  SERVER_FULL: 4503,
} as const;

export type CloseCode = (typeof CLOSE)[keyof typeof CLOSE];

/** A transport-level failure: carries the close code the connection is (or was) closed with. */
export class TransportError extends Error {
  readonly closeCode: number;
  constructor(closeCode: number, message: string) {
    super(message);
    this.name = 'TransportError';
    this.closeCode = closeCode;
  }
}
