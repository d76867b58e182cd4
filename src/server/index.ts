/**
 * secagg/server — the Node aggregation service (HTTP + WebSocket), its token helper and stores.
 * Node-only; the package root stays browser-safe.
 */
export { createServer, type SecAggServer, type ServiceOptions, type PublishedResult, type ServiceStatus, type LiveRound } from './server.js';
export type { AdminPlacement } from './options.js';
export {
  signToken,
  signJwt,
  createTokenVerifier,
  IDENTITY_KEY_CLAIM,
  type TokenClaims,
  type TokenCheck,
  type TokenVerifierOptions,
  type StaticTokenEntry,
  type JwtOptions,
} from './token.js';
export { generateIdentity, identityPublicKey, issueCertificate, verifyCertificate, type CertificateClaims } from '../identity/index.js';
export {
  memoryStore,
  SERVICE_STAGES,
  type RoundStore,
  type RoundRecord,
  type RoundParams,
  type StageRecord,
  type RoundOutcome,
  type ServiceStage,
} from './store.js';
export { sqliteStore, MissingDependencyError } from './sqliteStore.js';
export { postgresStore, isPostgresUrl, StoreUnavailableError, StoreSchemaError, type PostgresStoreOptions } from './pgStore.js';
export { jsonLogger, silentLogger, type Logger, type LogLevel } from './logger.js';
export { CLOSE } from '../transport/frames.js';
