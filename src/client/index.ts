/**
 * secagg/client — take part in rounds of an aggregation service over WebSocket. Browser-safe:
 * nothing here imports Node modules; in Node 20 pass `WebSocket` from the ws package.
 */
export { participate, type ParticipateOptions, type RoundInfo, type RoundReport, type ClientEvent, type ReplyStage, type TrustMode } from './participate.js';
export {
  generateIdentity,
  identityPublicKey,
  issueCertificate,
  verifyCertificate,
  helloTranscript,
  type CertificateClaims,
  type CertificateCheck,
} from '../identity/index.js';
export {
  ClientError,
  isClientError,
  CLIENT_ERROR_CODES,
  CLIENT_WARNING_CODES,
  type ClientErrorCode,
  type ClientWarning,
  type ClientWarningCode,
} from './errors.js';
export { CLOSE, TransportError } from '../transport/frames.js';
export type { WebSocketConstructor, WebSocketLike } from '../transport/socket.js';
export type { ClientDpPolicy } from '../protocol/clientRound.js';
