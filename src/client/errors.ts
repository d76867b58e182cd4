/** Errors participate() rejects with: a small closed set of stable codes. */
export const CLIENT_ERROR_CODES = [
  'ERR_UNAUTHORIZED', // the server refused the token (invalid or expired): retrying will not help
  'ERR_CONNECT', // could not connect (or stay connected) after the configured attempts
  'ERR_REJECTED', // the server closed the connection for a protocol violation (malformed, too big, rate)
  'ERR_INPUT', // the input does not fit the round (length or range)
  'ERR_CANCELLED', // the caller's AbortSignal fired
  'ERR_UNSUPPORTED', // no WebSocket implementation available
  'ERR_IDENTITY', // active mode: the server's identity directory or round does not match what this client trusts
  'ERR_NO_WEBCRYPTO', // requireWebCrypto, and no crypto.subtle (a page that is not a secure context)
  'ERR_DP_ENCODING', // a round's DP encoding is malformed or out of range, differs from the one the DP policy was made for, or is missing where the policy needs it: the round is refused before anything is sent
] as const;

export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];

export class ClientError extends Error {
  readonly code: ClientErrorCode;
  /** The WebSocket close code that ended the connection, when one did. */
  readonly closeCode: number | undefined;
  constructor(code: ClientErrorCode, message: string, options: { cause?: unknown; closeCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ClientError';
    this.code = code;
    this.closeCode = options.closeCode;
  }
}

export function isClientError(e: unknown, code?: ClientErrorCode): e is ClientError {
  return e instanceof ClientError && (code === undefined || e.code === code);
}

/** Warnings participate() reports (through `onWarning`, else once per page with console.warn). */
export const CLIENT_WARNING_CODES = [
  'WARN_NO_WEBCRYPTO', // no crypto.subtle: the client runs on the JavaScript fallbacks (slower, AES not constant-time)
] as const;

export type ClientWarningCode = (typeof CLIENT_WARNING_CODES)[number];

export interface ClientWarning {
  readonly code: ClientWarningCode;
  readonly message: string;
}
