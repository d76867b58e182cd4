/**
 * One error type for everything the protocol can refuse. The `code` is stable and safe to send on
 * the wire; `cause` is for logs only and is never serialised.
 */
export const ERROR_CODES = [
  'ERR_DECODE', // bytes that do not parse as the expected message
  'ERR_VERSION', // protocol version we do not speak
  'ERR_ROUND_MISMATCH', // message for another round
  'ERR_STAGE_MISMATCH', // message that does not belong to the current stage
  'ERR_UNKNOWN_SENDER', // sender not in the cohort / not expected at this stage
  'ERR_DUPLICATE_SENDER', // second message from the same sender in one stage
  'ERR_SIZE', // a field or message has the wrong length for the round's parameters
  'ERR_TOO_BIG', // a message is over its byte limit (the service closes the connection with 1009)
  'ERR_NOT_NEIGHBOUR', // data addressed to / about a client that is not a neighbour
  'ERR_DUPLICATE_KEY', // two clients advertised the same public key
  'ERR_SIGNATURE_INVALID', // active mode: a signature does not verify
  'ERR_INCONSISTENT_VIEW', // active mode / checks: the server's view of the round is inconsistent
  'ERR_BOTH_SHARES_REQUESTED', // a client was asked for both share kinds of one neighbour
  'ERR_BELOW_THRESHOLD', // too few participants for the threshold
  'ERR_AEAD_OPEN_FAILED', // an encrypted share did not authenticate
  'ERR_RECONSTRUCTION_FAILED', // shares do not reconstruct a secret matching its commitment
  'ERR_INVALID_KEY', // a public key is malformed or low-order
  'ERR_ABORTED', // the round was already aborted
  'ERR_INVALID_PARAMETERS', // round parameters that are unsafe or impossible
  'ERR_INTERNAL', // a bug: please report it
] as const;

export type SecAggErrorCode = (typeof ERROR_CODES)[number];

export class SecAggError extends Error {
  readonly code: SecAggErrorCode;
  /** Clients this error is about (e.g. holders of bad shares), when known. */
  readonly clients: readonly number[];

  constructor(code: SecAggErrorCode, message: string, options: { cause?: unknown; clients?: readonly number[] } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SecAggError';
    this.code = code;
    this.clients = options.clients ?? [];
  }
}

export function isSecAggError(e: unknown, code?: SecAggErrorCode): e is SecAggError {
  return e instanceof SecAggError && (code === undefined || e.code === code);
}

/** Tiny boundary asserts in the noble style: caller bugs are TypeError/RangeError naming the argument. */
export function abytes(value: unknown, name: string, length?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
  if (length !== undefined && value.length !== length) throw new RangeError(`${name} must be ${length} bytes, got ${value.length}`);
}

export function aint(value: unknown, name: string, min: number, max: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new TypeError(`${name} must be an integer`);
  if (value < min || value > max) throw new RangeError(`${name} must be in [${min}, ${max}], got ${value}`);
}
