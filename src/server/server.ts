/**
 * The aggregation service: HTTP + WebSocket on one port. Clients connect, authenticate with a bearer
 * token, get a ClientId and wait; when enough are waiting a round starts over a sampled cohort and
 * is driven through the protocol's pure state machines (protocol/serverRound.ts, unchanged), with a
 * deadline per stage. Completed rounds are published to subscribers and stored; aborted ones are
 * stored with their reason and never publish a sum.
 *
 * Disconnection of a cohort member is fed to the state machine as that client's ClientAbort, so a
 * stage closes as soon as every member has answered or gone, without waiting for its deadline.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { nodeCrypto } from '../crypto/node.js';
import { SecAggError } from '../errors.js';
import { clientId, roundId, MAX_CLIENT_ID, type ClientId } from '../ids.js';
import { cryptoRng } from '../rng.js';
import { recommendParameters } from '../graph/index.js';
import { effectiveDegree, maxNeighbourhood, minimumThreshold, neighbourhoodBoundViolation, type Degree, type RoundConfig } from '../protocol/config.js';
import { maxClientMessageBytes, maxClientMessageBytesForStage } from '../protocol/limits.js';
import {
  handleServerDeadline,
  handleServerMessage,
  stageInstance,
  startServerRound,
  type ServerState,
  type ServerStep,
} from '../protocol/serverRound.js';
import { encodeClientMessage, PROTOCOL_VERSION } from '../wire/codec.js';
import { createWorkerUnmasker, type WorkerUnmasker } from '../node/workerUnmasker.js';
import { CLOSE, MAX_CONTROL_BYTES, TransportError, decodeControl, encodeControl, isControlFrame } from '../transport/frames.js';
import { createTokenVerifier, type StaticTokenEntry } from './token.js';
import { bytesEqual, helloTranscript, toHex, verifyCertificate, NONCE_BYTES } from '../identity/index.js';
import { Mode as WireMode } from '../wire/gen/secagg/v1/secagg_pb.js';
import { jsonLogger, type Logger } from './logger.js';
import { Metrics } from './metrics.js';
import { memoryStore, SERVICE_STAGES, type RoundRecord, type RoundStore, type ServiceStage, type StageRecord } from './store.js';
import { sqliteStore } from './sqliteStore.js';
import { DASHBOARD_HTML } from './dashboard.js';

export interface ServiceOptions {
  /** TCP port; 0 picks a free one (default 0). */
  readonly port: number;
  /** Interface to listen on (default 127.0.0.1). */
  readonly host: string;
  /**
   * Static bearer tokens: a list (each its own identity) or token → identity. In active mode each
   * must be bound to an identity key: token → `{ identity, identityKey }`.
   */
  readonly tokens: ReadonlyMap<string, string | StaticTokenEntry> | readonly string[];
  /** Secret for HMAC-signed tokens (see signToken); omit to accept static tokens only. */
  readonly secret: string | Uint8Array | undefined;
  /** A round starts when this many clients wait (≥ 3; default 3)… */
  readonly minClients: number;
  /** …after gathering for `startDelayMs` more (default 500), or at once when `maxClients` wait. */
  readonly startDelayMs: number;
  /** Cohort size cap: the cohort is sampled at random from the waiting clients (default 1000). */
  readonly maxClients: number;
  /** Start rounds automatically when clients wait (default true); else call startRound(). */
  readonly autoStart: boolean;
  /** Stop starting rounds after this many (default: no limit). */
  readonly maxRounds: number;
  /** Ring Z_{2^bits} (default 32). */
  readonly bits: number;
  /** m, elements per vector (default 1000). */
  readonly dimension: number;
  /** 'complete' (SecAgg), 'recommended' (SecAgg+, from recommendParameters), or k (default 'complete'). */
  readonly degree: Degree | 'recommended';
  /**
   * Shamir threshold; default `minimumThreshold(mode, degree, cohort, corruption)` (protocol/config.ts),
   * the smallest that meets the neighbourhood bound for the largest neighbourhood the round's graph
   * can give. A threshold that violates the bound for every cohort this server can draw is refused by
   * createServer; for a cohort it does not fit it is clamped into [minimum, neighbourhood] (logged).
   */
  readonly threshold: number | undefined;
  /**
   * c, clients colluding with the server that any one neighbourhood may contain while honest inputs
   * stay hidden (default 0). It raises the threshold (active mode: 2t > k + c; semi-honest: t > c),
   * goes into every round's parameters (clients check it) and sizes the 'recommended' degree.
   */
  readonly corruption: number;
  /** Dropout rate the 'recommended' degree is sized for (default 0.1). */
  readonly dropoutRate: number;
  /** Deadline of each protocol stage, ms (default 30,000). */
  readonly stageTimeoutMs: number;
  /** A connection must finish its hello (token and, in active mode, identity proof) within this time, ms (default 5,000). */
  readonly handshakeTimeoutMs: number;
  /**
   * Authenticated connections (waiting or in a round) accepted at once (default 10,000); a hello
   * beyond it is closed with 4503. Connections still in their handshake do not count here: they
   * have their own, smaller budget (`maxPendingConnections`, `maxPendingPerAddress`).
   */
  readonly maxConnections: number;
  /** Connections still in their handshake (no welcome yet), all addresses together (default 256); more are refused with HTTP 503. */
  readonly maxPendingConnections: number;
  /**
   * Connections still in their handshake from one source — an IPv4 address or an IPv6 /64 — (default
   * 8); more are refused with HTTP 503. Behind a reverse proxy every client has the proxy's address:
   * raise it (e.g. to `maxPendingConnections`) and limit per client at the proxy.
   */
  readonly maxPendingPerAddress: number;
  /**
   * A connection is closed (1008) once this many of its protocol messages were refused since it was
   * last assigned a round (default 8): wrong stage, duplicates, over the stage's frame limit, frames
   * outside a round. An honest client sends one message per stage, so it never gets near it.
   */
  readonly maxRefusedMessages: number;
  /** Frames per second per connection, sustained; bursts of twice that pass (default 50). */
  readonly maxMessagesPerSecond: number;
  /**
   * Bearer tokens that may read round results over HTTP (`/api/rounds`, `/api/rounds/:id`, which
   * carries the sum): a request must send `Authorization: Bearer <one of them>`, else 401. Default
   * none: those endpoints are open, as for a server on loopback (a warning is logged when the host
   * is not a loopback address). These are not the clients' tokens.
   */
  readonly resultsTokens: readonly string[];
  /** Round history; default: in memory, or SQLite when `historyFile` is set. */
  readonly store: RoundStore | undefined;
  /** SQLite file for the round history. */
  readonly historyFile: string | undefined;
  /** Worker threads for unmasking (default: cores; 0 = in the event loop). */
  readonly unmaskWorkers: number;
  /** Structured logs (default: JSON lines on stderr). */
  readonly logger: Logger;
  /**
   * 'semi-honest' (default) or 'active': every client then has a long-term Ed25519 identity, its
   * token is bound to the identity key, it proves possession at hello, and rounds run the protocol's
   * active mode with the cohort's identity keys as the directory (sent to the clients too).
   */
  readonly mode: 'semi-honest' | 'active';
  /** The server's name, signed into every identity proof (default `secagg:<host>:<port>`). */
  readonly serverId: string | undefined;
  /**
   * Active mode: the identity issuer's Ed25519 public key. When set, a client must present a
   * certificate from this issuer for its (identity, identity key) at hello; the server forwards the
   * certificates in the directory so clients that pin the same issuer key can check every peer.
   */
  readonly issuerKey: Uint8Array | undefined;
  /** WebSocket ping interval, ms (default 15,000; 0 = off). A connection that has not answered the previous ping is dropped. */
  readonly keepAliveIntervalMs: number;
}

/** What subscribers receive when a round completes. */
export interface PublishedResult {
  readonly round: number;
  readonly roundId: string;
  /** Σ x_u mod 2^bits over `included`. */
  readonly sum: Uint32Array;
  /** ClientIds whose input is in the sum. */
  readonly included: readonly number[];
  /** Identities (from the tokens) of the included clients. */
  readonly identities: readonly string[];
  /** Active mode: the included clients' identity public keys, hex (same order). */
  readonly identityKeys?: readonly string[];
  readonly params: RoundRecord['params'];
  readonly stages: RoundRecord['stages'];
  readonly startedAt: number;
  readonly endedAt: number;
}

export interface LiveRound {
  readonly round: number;
  readonly roundId: string;
  readonly stage: string;
  readonly params: RoundRecord['params'];
  readonly startedAt: number;
  /** When the current stage's deadline passes, ms since the epoch. */
  readonly stageDeadline: number;
  readonly timeLeftMs: number;
  readonly stages: RoundRecord['stages'];
  /** Cohort members whose connection closed during the round. */
  readonly disconnected: number;
}

export interface ServiceStatus {
  readonly now: number;
  readonly connections: number;
  readonly waiting: number;
  readonly round: LiveRound | null;
  readonly totals: { readonly completed: number; readonly aborted: number };
  readonly recent: readonly RoundRecord[];
}

export interface SecAggServer {
  /** ws://host:port/ws */
  readonly url: string;
  /** http://host:port/ */
  readonly httpUrl: string;
  readonly port: number;
  readonly store: RoundStore;
  /** Called for every completed round; returns an unsubscribe function. */
  onResult(listener: (result: PublishedResult) => void): () => void;
  /** Called when any round ends (completed or aborted). */
  onRoundEnd(listener: (record: RoundRecord) => void): () => void;
  status(): Promise<ServiceStatus>;
  /** Start a round now with the waiting clients; resolves to its number (undefined if too few). */
  startRound(): Promise<number | undefined>;
  /**
   * Stop: no new rounds; the running round gets `graceMs` (default 0) to finish, else it is
   * aborted with `reason` and recorded; connections close with 1001.
   */
  close(options?: { reason?: string; graceMs?: number }): Promise<void>;
}

const DEFAULTS: Omit<ServiceOptions, 'logger'> = {
  port: 0,
  host: '127.0.0.1',
  tokens: [],
  secret: undefined,
  minClients: 3,
  startDelayMs: 500,
  maxClients: 1000,
  autoStart: true,
  maxRounds: Infinity,
  bits: 32,
  dimension: 1000,
  degree: 'complete',
  threshold: undefined,
  corruption: 0,
  dropoutRate: 0.1,
  stageTimeoutMs: 30_000,
  handshakeTimeoutMs: 5_000,
  maxConnections: 10_000,
  maxPendingConnections: 256,
  maxPendingPerAddress: 8,
  maxRefusedMessages: 8,
  maxMessagesPerSecond: 50,
  resultsTokens: [],
  store: undefined,
  historyFile: undefined,
  unmaskWorkers: availableParallelism(),
  mode: 'semi-honest',
  serverId: undefined,
  issuerKey: undefined,
  keepAliveIntervalMs: 15_000,
};

interface Conn {
  readonly seq: number;
  readonly ws: WebSocket;
  readonly remote: string;
  /** The source its handshake is budgeted against (addressKey). */
  readonly source: string;
  phase: 'handshake' | 'authenticating' | 'waiting' | 'in-round' | 'closed';
  /** Counted in the pending (pre-welcome) budget. */
  pending: boolean;
  /** The token's expiry (TokenCheck.expiresAt), checked again whenever a cohort is drawn. */
  expiresAt?: number;
  /** Protocol messages refused since this connection was last assigned a round. */
  refused: number;
  /** Its frames waiting in the round's queue. */
  queued: number;
  /** Closed by the server for misbehaving: frames it has in the round's queue are dropped, not handled. */
  discard: boolean;
  /** The challenge nonce sent on connect. */
  readonly nonce: Uint8Array;
  /** Answered the last ping. */
  alive: boolean;
  identity?: string;
  /** Active mode: the proven identity key and the certificate the client presented. */
  identityKey?: Uint8Array;
  certificate?: string;
  clientId?: ClientId;
  handshakeTimer?: ReturnType<typeof setTimeout>;
  tokens: number;
  lastRefill: number;
}

interface Live {
  readonly record: RoundRecord;
  state: ServerState;
  readonly config: RoundConfig;
  readonly members: Map<number, Conn>;
  /** The largest client message of the round (any stage): a bigger frame closes the connection (1009). */
  readonly maxFrame: number;
  /** Per stage, the largest message a client may send in it: a bigger frame is refused unread. */
  readonly stageFrame: Map<string, number>;
  queue: Promise<void>;
  timer?: ReturnType<typeof setTimeout>;
  stageDeadline: number;
  /** The stage instance (stageInstance) the timer is for. */
  stageInstance: string;
  readonly disconnected: Set<number>;
  /** Per stage, the clients whose message was accepted: a stage may ask again (active mode's view re-attempts), a client counts once. */
  readonly accepted: Map<string, Set<number>>;
  finished: boolean;
  readonly done: Promise<void>;
  resolveDone: () => void;
}

const isStage = (s: string): s is ServiceStage => (SERVICE_STAGES as readonly string[]).includes(s);

/**
 * Start the service.
 *
 * @example
 * ```ts
 * const server = await createServer({ secret, dimension: 10_000, minClients: 10 });
 * server.onResult(({ sum, included }) => console.log(included.length, sum));
 * ```
 */
export async function createServer(options: Partial<ServiceOptions> = {}): Promise<SecAggServer> {
  const o: ServiceOptions = { ...DEFAULTS, logger: options.logger ?? jsonLogger(), ...stripUndefined(options) };
  if (!Number.isInteger(o.minClients) || o.minClients < 3) throw new RangeError('minClients must be an integer ≥ 3');
  if (!Number.isInteger(o.maxClients) || o.maxClients < o.minClients || o.maxClients > MAX_CLIENT_ID)
    throw new RangeError(`maxClients must be an integer in [minClients, ${MAX_CLIENT_ID}]`);
  if (!Number.isInteger(o.dimension) || o.dimension < 1) throw new RangeError('dimension must be a positive integer');
  if (!Number.isInteger(o.bits) || o.bits < 1 || o.bits > 32) throw new RangeError('bits must be in [1, 32]');
  if (o.mode !== 'semi-honest' && o.mode !== 'active') throw new RangeError("mode must be 'semi-honest' or 'active'");
  if (o.issuerKey !== undefined && !(o.issuerKey instanceof Uint8Array && o.issuerKey.length === 32)) throw new RangeError('issuerKey must be a 32-byte Ed25519 public key');
  if (!(o.keepAliveIntervalMs >= 0)) throw new RangeError('keepAliveIntervalMs must be ≥ 0');
  if (!(o.handshakeTimeoutMs > 0)) throw new RangeError('handshakeTimeoutMs must be > 0');
  for (const name of ['maxConnections', 'maxPendingConnections', 'maxPendingPerAddress', 'maxRefusedMessages'] as const)
    if (!((Number.isInteger(o[name]) && o[name] >= 1) || o[name] === Infinity)) throw new RangeError(`${name} must be an integer ≥ 1 (or Infinity)`);
  if (!Array.isArray(o.resultsTokens) || !o.resultsTokens.every((t) => typeof t === 'string' && t.length > 0))
    throw new TypeError('resultsTokens must be a list of non-empty strings');
  checkThresholdOptions(o);
  const active = o.mode === 'active';
  const log = o.logger;
  const verify = createTokenVerifier({ tokens: o.tokens, ...(o.secret !== undefined ? { secret: o.secret } : {}) });
  const store = o.store ?? (o.historyFile !== undefined ? sqliteStore(o.historyFile) : memoryStore());
  const interrupted = await store.abortUnfinished('ERR_INTERRUPTED', 'the server stopped while the round was running', Date.now());
  if (interrupted.length) log.log('warn', 'rounds interrupted by a restart recorded as aborted', { rounds: interrupted });
  const unmasker: WorkerUnmasker | undefined = o.unmaskWorkers > 0 ? createWorkerUnmasker({ workers: o.unmaskWorkers }) : undefined;
  const metrics = new Metrics();
  const history = await store.countOutcomes();
  metrics.rounds.completed += history.completed;
  metrics.rounds.aborted += history.aborted;

  // Largest frame any round of this server can need: the bound for the biggest cohort. It is the
  // cap of authenticated sockets only; before the welcome a socket is held to MAX_CONTROL_BYTES.
  const maxPayload = Math.max(MAX_CONTROL_BYTES, maxClientMessageBytes(fakeConfig(o, o.maxClients)));
  const resultsTokens = o.resultsTokens.map(digest);

  const conns = new Set<Conn>();
  /** Connections before their welcome, per source (addressKey), and in all. */
  const pendingBySource = new Map<string, number>();
  let pendingCount = 0;
  const waiting = new Set<Conn>();
  const identities = new Map<string, Conn>();
  const identityKeys = new Map<string, Conn>(); // hex identity key → connection (active mode)
  let serverId = o.serverId ?? '';
  const byClientId = new Map<number, Conn>();
  let nextClientId = 1;
  let nextSeq = 1;
  let live: Live | undefined;
  let roundsStarted = 0;
  let startTimer: ReturnType<typeof setTimeout> | undefined;
  let closing = false;
  const resultListeners = new Set<(r: PublishedResult) => void>();
  const endListeners = new Set<(r: RoundRecord) => void>();

  // ---- connections ----

  const closeConn = (c: Conn, code: number, reason: string, metricReason: string) => {
    if (c.phase === 'closed') return;
    log.log(code === CLOSE.NORMAL || code === CLOSE.GOING_AWAY ? 'debug' : 'info', 'closing connection', {
      conn: c.seq,
      clientId: c.clientId,
      identity: c.identity,
      code,
      reason,
    });
    metrics.closed(metricReason);
    if (code !== CLOSE.NORMAL && code !== CLOSE.GOING_AWAY) {
      // Misbehaviour: nothing more from this peer is used. Its frames still in the round's queue are
      // dropped, and whatever it sends before answering the close must be small: a bigger frame makes
      // ws end the connection at once instead of buffering it.
      c.discard = true;
      setPayloadCap(c.ws, MAX_CONTROL_BYTES);
    }
    c.ws.close(code, reason.slice(0, 120));
    gone(c);
  };

  /** The connection leaves the pending (pre-welcome) budget: welcomed or gone. */
  const settle = (c: Conn) => {
    if (!c.pending) return;
    c.pending = false;
    pendingCount--;
    const n = (pendingBySource.get(c.source) ?? 1) - 1;
    if (n > 0) pendingBySource.set(c.source, n);
    else pendingBySource.delete(c.source);
    metrics.pending = pendingCount;
  };

  const gone = (c: Conn) => {
    if (c.phase === 'closed') return;
    const wasInRound = c.phase === 'in-round';
    c.phase = 'closed';
    if (c.handshakeTimer) clearTimeout(c.handshakeTimer);
    settle(c);
    conns.delete(c);
    waiting.delete(c);
    if (c.identity !== undefined && identities.get(c.identity) === c) identities.delete(c.identity);
    if (c.identityKey !== undefined && identityKeys.get(toHex(c.identityKey)) === c) identityKeys.delete(toHex(c.identityKey));
    if (c.clientId !== undefined && byClientId.get(c.clientId) === c) byClientId.delete(c.clientId);
    metrics.connections = conns.size;
    metrics.waiting = waiting.size;
    if (wasInRound && live && c.clientId !== undefined && live.members.get(c.clientId) === c) {
      const l = live;
      const id = c.clientId;
      l.disconnected.add(id);
      // The transport knows this client is gone: tell the state machine, as the client's own abort would.
      const bytes = encodeClientMessage(l.config.roundId, id, { case: 'abort', value: { code: 'ERR_ABORTED' } });
      enqueue(l, () => handleServerMessage(l.state, id, bytes));
    }
  };

  const allocateClientId = (): ClientId | undefined => {
    for (let tries = 0; tries < MAX_CLIENT_ID; tries++) {
      const id = nextClientId;
      nextClientId = nextClientId >= MAX_CLIENT_ID ? 1 : nextClientId + 1;
      if (!byClientId.has(id)) return clientId(id);
    }
    return undefined;
  };

  const rateOk = (c: Conn): boolean => {
    const now = performance.now();
    const burst = 2 * o.maxMessagesPerSecond;
    c.tokens = Math.min(burst, c.tokens + ((now - c.lastRefill) / 1000) * o.maxMessagesPerSecond);
    c.lastRefill = now;
    if (c.tokens < 1) return false;
    c.tokens -= 1;
    return true;
  };

  const refuse = (c: Conn, reason: string, metricReason: string) => closeConn(c, CLOSE.UNAUTHORIZED, reason, metricReason);

  const onHello = async (c: Conn, bytes: Uint8Array) => {
    const ctl = decodeControl(bytes);
    if (ctl.body.case !== 'hello') throw new TransportError(CLOSE.MALFORMED, `expected hello, got ${ctl.body.case}`);
    const hello = ctl.body.value;
    if (hello.version !== PROTOCOL_VERSION)
      throw new TransportError(CLOSE.MALFORMED, `protocol version ${hello.version} is not ${PROTOCOL_VERSION}`);
    const check = verify(hello.token);
    if (!check.ok) return refuse(c, check.reason === 'expired' ? 'token expired' : 'invalid token', `unauthorized_${check.reason}`);
    let identityKey: Uint8Array | undefined;
    let certificate: string | undefined;
    if (active) {
      // The token names the identity key; the hello must prove possession of exactly that key.
      if (check.identityKey === undefined) return refuse(c, 'token is not bound to an identity key', 'unauthorized_unbound');
      const proof = hello.proof;
      if (proof === undefined || proof.identityKey.length !== 32 || proof.signature.length !== 64)
        return refuse(c, 'identity proof required', 'unauthorized_no_proof');
      if (!bytesEqual(proof.identityKey, check.identityKey)) return refuse(c, 'token is bound to another identity key', 'unauthorized_wrong_key');
      c.phase = 'authenticating';
      const transcript = await helloTranscript({ version: hello.version, nonce: c.nonce, serverId, token: hello.token, identityKey: proof.identityKey }, nodeCrypto);
      const proven = await nodeCrypto.ed25519Verify(proof.identityKey, transcript, proof.signature);
      if (c.phase !== 'authenticating') return; // closed meanwhile
      if (!proven) return refuse(c, 'identity proof does not verify', 'unauthorized_bad_proof');
      if (o.issuerKey !== undefined) {
        const cert = await verifyCertificate(proof.certificate, o.issuerKey, { crypto: nodeCrypto });
        if (c.phase !== 'authenticating') return;
        if (!cert.ok) return refuse(c, cert.reason === 'expired' ? 'certificate expired' : 'invalid certificate', `unauthorized_certificate_${cert.reason}`);
        if (cert.claims.clientId !== check.identity || !bytesEqual(cert.claims.identityKey, proof.identityKey))
          return refuse(c, 'certificate is for another identity', 'unauthorized_certificate_mismatch');
      }
      identityKey = proof.identityKey;
      certificate = proof.certificate || undefined;
    }
    if (identities.has(check.identity)) {
      closeConn(c, CLOSE.DUPLICATE_IDENTITY, `identity ${check.identity} is already connected`, 'duplicate_identity');
      return;
    }
    if (identityKey !== undefined && identityKeys.has(toHex(identityKey))) {
      closeConn(c, CLOSE.DUPLICATE_IDENTITY, `identity key ${toHex(identityKey).slice(0, 16)}… is already connected`, 'duplicate_identity');
      return;
    }
    if (conns.size - pendingCount >= o.maxConnections) {
      closeConn(c, CLOSE.SERVER_FULL, 'too many connections', 'server_full');
      return;
    }
    const id = allocateClientId();
    if (id === undefined) {
      closeConn(c, CLOSE.SERVER_FULL, 'no client id free', 'server_full');
      return;
    }
    if (!setPayloadCap(c.ws, maxPayload)) {
      log.log('error', 'cannot raise the frame limit of an authenticated socket: ws internals changed (see setPayloadCap)', { conn: c.seq });
      closeConn(c, CLOSE.INTERNAL, 'internal error', 'internal');
      return;
    }
    if (c.handshakeTimer) clearTimeout(c.handshakeTimer);
    settle(c);
    c.identity = check.identity;
    c.expiresAt = check.expiresAt;
    c.clientId = id;
    identities.set(check.identity, c);
    if (identityKey !== undefined) {
      c.identityKey = identityKey;
      if (certificate !== undefined) c.certificate = certificate;
      identityKeys.set(toHex(identityKey), c);
    }
    byClientId.set(id, c);
    c.phase = 'waiting';
    c.ws.send(encodeControl({ case: 'welcome', value: { clientId: id, identity: check.identity, maxFrameBytes: maxPayload } }));
    log.log('debug', 'client authenticated', { conn: c.seq, clientId: id, identity: check.identity, ...(identityKey ? { identityKey: toHex(identityKey) } : {}) });
    waiting.add(c);
    metrics.waiting = waiting.size;
    schedule();
  };

  /**
   * A protocol message that the round will not use: logged, counted, and at `maxRefusedMessages`
   * since the connection's last round assignment the connection is closed (1008). Honest clients
   * send one message per stage (plus perhaps a late one and an abort), far below the default 8.
   */
  const refusedMessage = (c: Conn, l: Live | undefined, code: string, reason: string) => {
    metrics.refusedMessage(code);
    log.log('info', 'message refused', { ...(l ? { round: l.record.id } : {}), conn: c.seq, clientId: c.clientId, code, reason });
    c.refused++;
    if (c.refused >= o.maxRefusedMessages && c.phase !== 'closed')
      closeConn(c, CLOSE.POLICY, `${c.refused} refused messages (limit ${o.maxRefusedMessages})`, 'refused_messages');
  };

  /** The largest frame a client may send in `stage` of this round (cached per stage). */
  const stageFrameLimit = (l: Live, stage: string): number => {
    let n = l.stageFrame.get(stage);
    if (n === undefined) {
      n = Math.min(l.maxFrame, maxClientMessageBytesForStage(l.config, stage));
      l.stageFrame.set(stage, n);
    }
    return n;
  };

  const onFrame = (c: Conn, data: RawData, isBinary: boolean) => {
    if (c.phase === 'closed') return;
    if (!rateOk(c)) return closeConn(c, CLOSE.RATE_LIMITED, `more than ${o.maxMessagesPerSecond} frames per second`, 'rate_limited');
    if (!isBinary) return closeConn(c, CLOSE.MALFORMED, 'text frames are not accepted', 'malformed');
    const bytes = Array.isArray(data) ? new Uint8Array(Buffer.concat(data)) : new Uint8Array(data as ArrayBuffer | Buffer);
    try {
      if (c.phase === 'handshake') {
        // ws already refused anything above MAX_CONTROL_BYTES before buffering it (setPayloadCap); kept as a second line.
        if (bytes.length > MAX_CONTROL_BYTES) return closeConn(c, CLOSE.TOO_BIG, `hello of ${bytes.length} bytes exceeds ${MAX_CONTROL_BYTES}`, 'too_big');
        onHello(c, bytes).catch((e: unknown) => {
          if (e instanceof TransportError) return closeConn(c, e.closeCode, e.message, e.closeCode === CLOSE.TOO_BIG ? 'too_big' : 'malformed');
          log.log('error', 'unexpected error handling a hello', { conn: c.seq, error: String(e) });
          closeConn(c, CLOSE.INTERNAL, 'internal error', 'internal');
        });
        return;
      }
      if (c.phase === 'authenticating') return closeConn(c, CLOSE.MALFORMED, 'frame before the welcome', 'malformed');
      if (isControlFrame(bytes)) {
        const ctl = decodeControl(bytes);
        throw new TransportError(CLOSE.MALFORMED, `unexpected ${ctl.body.case} frame`);
      }
      const l = live;
      // Not in a round: a late frame of a round that has finished (an honest client has one at most).
      if (c.phase !== 'in-round' || !l || c.clientId === undefined || l.members.get(c.clientId) !== c)
        return refusedMessage(c, undefined, 'ERR_STAGE_MISMATCH', 'protocol frame outside a round');
      if (bytes.length > l.maxFrame)
        return closeConn(c, CLOSE.TOO_BIG, `frame of ${bytes.length} bytes exceeds the round's limit of ${l.maxFrame}`, 'too_big');
      const id = c.clientId;
      const stage = l.state.stage;
      // Frames are checked against the stage the round is in when they arrive: a client can only have
      // been asked for this stage's message (the server sends a stage's requests after entering it),
      // so a bigger frame is a late message of an earlier stage or junk — refused unread either way.
      const limit = stageFrameLimit(l, stage);
      if (bytes.length > limit) return refusedMessage(c, l, 'ERR_SIZE', `frame of ${bytes.length} bytes exceeds the ${stage} stage's limit of ${limit}`);
      // Frames wait in the round's queue while earlier steps run; an honest client has one or two
      // there at a time. More would only hold memory until they are refused.
      if (c.queued >= o.maxRefusedMessages)
        return closeConn(c, CLOSE.POLICY, `more than ${o.maxRefusedMessages} frames waiting to be handled`, 'refused_messages');
      c.queued++;
      enqueue(l, async () => {
        c.queued--;
        // Closed for misbehaviour (e.g. its refusal budget) while this frame waited: not handled.
        if (c.discard) return { state: l.state, outgoing: [] };
        const step = await handleServerMessage(l.state, id, bytes);
        if (isStage(stage)) metrics.addBytes('in', stage, bytes.length);
        const rec = isStage(stage) ? l.record.stages[stage] : undefined;
        if (rec) rec.bytesIn += bytes.length;
        if (step.error) {
          const code = step.error.code;
          if (code === 'ERR_DECODE' || code === 'ERR_VERSION' || code === 'ERR_SIZE') {
            metrics.refusedMessage(code);
            log.log('info', 'message refused', { round: l.record.id, conn: c.seq, clientId: id, code, reason: step.error.message });
            closeConn(c, code === 'ERR_SIZE' && step.error.message.includes('exceeds') ? CLOSE.TOO_BIG : CLOSE.MALFORMED, `${code}: ${step.error.message}`, 'malformed');
          } else refusedMessage(c, l, code, step.error.message);
        } else if (rec) {
          let who = l.accepted.get(stage);
          if (!who) l.accepted.set(stage, (who = new Set()));
          who.add(id);
          rec.clients = who.size;
        }
        return step;
      });
    } catch (e) {
      if (e instanceof TransportError) return closeConn(c, e.closeCode, e.message, e.closeCode === CLOSE.TOO_BIG ? 'too_big' : 'malformed');
      log.log('error', 'unexpected error handling a frame', { conn: c.seq, error: String(e) });
      closeConn(c, CLOSE.INTERNAL, 'internal error', 'internal');
    }
  };

  // ---- rounds ----

  /** After a round, always gather for startDelayMs: its members are back in `waiting` while the ones leaving disconnect. */
  const schedule = (afterRound = false) => {
    if (closing || live || !o.autoStart || roundsStarted >= o.maxRounds) return;
    if (waiting.size >= o.maxClients && !afterRound) {
      if (startTimer) clearTimeout(startTimer);
      startTimer = undefined;
      void startRound();
    } else if (waiting.size >= o.minClients && !startTimer) {
      startTimer = setTimeout(() => {
        startTimer = undefined;
        if (waiting.size >= o.minClients) void startRound();
      }, o.startDelayMs);
    }
  };

  /**
   * The degree and threshold of a round over `n` clients. The threshold is checked against the
   * largest neighbourhood the graph can give over any U1 of the cohort (maxNeighbourhood: an odd
   * degree over an odd U1 gives k + 1), never against the declared degree, and with the corruption
   * budget: minimumThreshold is the smallest that meets the bound.
   */
  const resolveParameters = (n: number): { degree: Degree; threshold: number } => {
    const c = o.corruption;
    let degree: Degree;
    let recommended: number | undefined;
    if (o.degree === 'recommended') {
      try {
        const rec = recommendParameters({ clients: n, dropoutRate: Math.max(o.dropoutRate, 0.01), corruptionRate: c / n, securityBits: 40 });
        degree = rec.complete ? 'complete' : rec.degree;
        recommended = rec.threshold;
      } catch {
        degree = 'complete';
      }
    } else degree = o.degree;
    const k = maxNeighbourhood(degree, n);
    const floor = minimumThreshold(o.mode, degree, n, c);
    const wanted = o.threshold ?? recommended ?? floor;
    const threshold = Math.min(Math.max(wanted, floor), k);
    if (o.threshold !== undefined && threshold !== o.threshold)
      log.log('warn', 'the configured threshold does not fit this cohort: clamped', { threshold: o.threshold, used: threshold, cohort: n, neighbourhood: k, corruption: c });
    return { degree, threshold };
  };

  const startRound = async (): Promise<number | undefined> => {
    if (closing || live) return undefined;
    // A connection does not outlive its token: every draw re-checks the expiry kept from its hello.
    const now0 = Date.now();
    for (const c of [...waiting]) if (c.expiresAt !== undefined && c.expiresAt <= now0) closeConn(c, CLOSE.UNAUTHORIZED, 'token expired', 'unauthorized_expired');
    if (waiting.size < Math.max(3, o.minClients)) return undefined;
    // Sample the cohort uniformly from the waiting clients.
    const pool = [...waiting];
    for (let i = pool.length - 1; i > 0; i--) {
      const j = randomInt(i + 1);
      [pool[i], pool[j]] = [pool[j]!, pool[i]!];
    }
    const members = pool.slice(0, o.maxClients).sort((a, b) => a.clientId! - b.clientId!);
    const n = members.length;
    const { degree, threshold } = resolveParameters(n);
    const config: RoundConfig = {
      roundId: roundId(cryptoRng(16)),
      bits: o.bits,
      dimension: o.dimension,
      threshold,
      degree,
      mode: o.mode,
      cohort: members.map((c) => c.clientId!),
      corruption: o.corruption,
    };
    // Active mode: the directory is the identity keys the members proved possession of at hello.
    const directory = active ? new Map<number, Uint8Array>(members.map((c) => [c.clientId!, c.identityKey!])) : undefined;
    let first: ServerStep;
    try {
      first = startServerRound({ config, crypto: nodeCrypto, ...(directory ? { directory } : {}), ...(unmasker ? { unmasker: unmasker.unmask } : {}) });
    } catch (e) {
      log.log('error', 'could not start a round', { error: String(e) });
      return undefined;
    }
    roundsStarted++;
    for (const c of members) {
      waiting.delete(c);
      c.phase = 'in-round';
      c.refused = 0;
      c.queued = 0;
    }
    metrics.waiting = waiting.size;
    const now = Date.now();
    const params = { bits: o.bits, dimension: o.dimension, threshold, degree: effectiveDegree(degree, n), mode: o.mode, cohort: n, corruption: o.corruption };
    const base: Omit<RoundRecord, 'id'> = {
      roundId: toHex(config.roundId),
      params,
      startedAt: now,
      endedAt: null,
      outcome: 'running',
      code: null,
      reason: null,
      stage: 'advertise',
      stages: {},
      included: null,
    };
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));
    const l: Live = {
      record: { ...base, id: 0 },
      state: first.state,
      config,
      members: new Map(members.map((c) => [c.clientId!, c])),
      maxFrame: maxClientMessageBytes(config),
      stageFrame: new Map(),
      queue: Promise.resolve(),
      stageDeadline: 0,
      stageInstance: '',
      disconnected: new Set(),
      accepted: new Map(),
      finished: false,
      done,
      resolveDone,
    };
    live = l;
    metrics.roundRunning = 1;
    metrics.stageClients.clear();
    (l.record as { id: number }).id = await store.begin(base);
    log.log('info', 'round started', { round: l.record.id, roundId: l.record.roundId, ...params });
    const directoryEntries = active
      ? members.map((c) => ({ clientId: c.clientId!, identity: c.identity!, identityKey: c.identityKey!, certificate: c.certificate ?? '' }))
      : [];
    for (const c of members) {
      c.ws.send(
        encodeControl({
          case: 'assignment',
          value: {
            roundNumber: l.record.id,
            roundId: config.roundId,
            clientId: c.clientId!,
            bits: o.bits,
            dimension: o.dimension,
            maxFrameBytes: l.maxFrame,
            stageTimeoutMs: o.stageTimeoutMs,
            directory: directoryEntries,
          },
        }),
      );
    }
    enterStage(l, 'advertise');
    enqueue(l, async () => first);
    return l.record.id;
  };

  const enterStage = (l: Live, stage: string) => {
    const now = Date.now();
    const prev = l.record.stage;
    if (isStage(prev) && l.record.stages[prev] && prev !== stage) {
      const rec = l.record.stages[prev]!;
      rec.endedAt = now;
      metrics.observeStage(prev, (now - rec.startedAt) / 1000);
    }
    l.record.stage = stage;
    if (!isStage(stage)) return;
    const rec: StageRecord = { clients: 0, startedAt: now, endedAt: 0, bytesIn: 0, bytesOut: 0 };
    l.record.stages[stage] = rec;
    armDeadline(l, now);
    void store.save(l.record).catch((e: unknown) => log.log('error', 'store save failed', { error: String(e) }));
  };

  /**
   * The deadline of the stage instance the round is in now. It closes that instance only: a step
   * that closes a stage may yield, so the timer can fire while the stage is being closed, and its
   * queued job must not close the next stage the moment it opens.
   */
  const armDeadline = (l: Live, now: number) => {
    if (l.timer) clearTimeout(l.timer);
    const instance = stageInstance(l.state);
    l.stageInstance = instance;
    l.stageDeadline = now + o.stageTimeoutMs;
    l.timer = setTimeout(() => {
      log.log('info', 'stage deadline passed', { round: l.record.id, stage: instance });
      enqueue(l, async () => (stageInstance(l.state) === instance ? handleServerDeadline(l.state) : { state: l.state, outgoing: [] }));
    }, o.stageTimeoutMs);
  };

  /** Run one state-machine step at a time, in arrival order; send what it returns. */
  const enqueue = (l: Live, work: () => Promise<ServerStep>) => {
    l.queue = l.queue.then(async () => {
      if (l.finished) return;
      let step: ServerStep;
      try {
        step = await work();
      } catch (e) {
        log.log('error', 'unexpected error in the round', { round: l.record.id, error: String(e) });
        return finish(l, { code: 'ERR_INTERNAL', reason: 'internal error' });
      }
      if (l.finished) return;
      const before = l.record.stage;
      l.state = step.state;
      if (step.state.stage !== before) enterStage(l, step.state.stage);
      else if (stageInstance(step.state) !== l.stageInstance) armDeadline(l, Date.now()); // a new view attempt
      const stage = l.state.stage;
      for (const { to, bytes } of step.outgoing) {
        const c = l.members.get(to);
        if (!c || c.phase !== 'in-round') continue;
        c.ws.send(bytes);
        if (isStage(stage)) {
          metrics.addBytes('out', stage, bytes.length);
          l.record.stages[stage]!.bytesOut += bytes.length;
        }
      }
      for (const s of SERVICE_STAGES) metrics.stageClients.set(s, l.record.stages[s]?.clients ?? 0);
      if (stage === 'done') return finish(l, undefined);
      if (stage === 'aborted') {
        const e = l.state.abortError ?? new SecAggError('ERR_INTERNAL', 'aborted');
        return finish(l, { code: e.code, reason: e.message });
      }
    });
  };

  const finish = async (l: Live, abort: { code: string; reason: string } | undefined) => {
    if (l.finished) return;
    l.finished = true;
    if (l.timer) clearTimeout(l.timer);
    const now = Date.now();
    const rec = l.record;
    const last = rec.stage;
    if (isStage(last) && rec.stages[last] && rec.stages[last]!.endedAt === 0) {
      rec.stages[last]!.endedAt = now;
      metrics.observeStage(last, (now - rec.stages[last]!.startedAt) / 1000);
    }
    rec.endedAt = now;
    const result = abort === undefined ? l.state.result : undefined;
    if (result) {
      rec.outcome = 'completed';
      rec.stage = 'done';
      rec.included = [...result.included];
      rec.sum = result.sum;
    } else {
      rec.outcome = 'aborted';
      rec.stage = 'aborted';
      rec.code = abort?.code ?? 'ERR_INTERNAL';
      rec.reason = abort?.reason ?? 'aborted';
    }
    metrics.rounds[rec.outcome]++;
    metrics.roundRunning = 0;
    try {
      await store.save(rec);
    } catch (e) {
      log.log('error', 'store save failed', { round: rec.id, error: String(e) });
    }
    log.log(result ? 'info' : 'warn', result ? 'round completed' : 'round aborted', {
      round: rec.id,
      roundId: rec.roundId,
      outcome: rec.outcome,
      code: rec.code,
      reason: rec.reason,
      included: rec.included?.length ?? 0,
      cohort: rec.params.cohort,
      ms: now - rec.startedAt,
      stages: Object.fromEntries(Object.entries(rec.stages).map(([s, v]) => [s, { clients: v.clients, ms: v.endedAt - v.startedAt }])),
    });
    const included = new Set<number>(result?.included ?? []);
    for (const [id, c] of l.members) {
      if (c.phase !== 'in-round') continue;
      c.ws.send(
        encodeControl({
          case: 'finished',
          value: {
            roundNumber: rec.id,
            roundId: l.config.roundId,
            completed: result !== undefined,
            included: included.has(id),
            code: rec.code ?? '',
            reason: rec.reason ?? '',
            survivors: included.size,
          },
        }),
      );
      if (!closing) {
        c.phase = 'waiting';
        waiting.add(c);
      }
    }
    metrics.waiting = waiting.size;
    live = undefined;
    if (result) {
      const published: PublishedResult = {
        round: rec.id,
        roundId: rec.roundId,
        sum: result.sum,
        included: rec.included!,
        identities: rec.included!.map((id) => l.members.get(id)?.identity ?? ''),
        ...(active ? { identityKeys: rec.included!.map((id) => toHex(l.members.get(id)?.identityKey ?? new Uint8Array(0))) } : {}),
        params: rec.params,
        stages: structuredClone(rec.stages),
        startedAt: rec.startedAt,
        endedAt: now,
      };
      for (const f of resultListeners) safeCall(log, () => f(published));
    }
    for (const f of endListeners) safeCall(log, () => f(rec));
    l.resolveDone();
    schedule(true);
  };

  // ---- HTTP ----

  const status = async (): Promise<ServiceStatus> => {
    const now = Date.now();
    const l = live;
    return {
      now,
      connections: conns.size,
      waiting: waiting.size,
      round: l
        ? {
            round: l.record.id,
            roundId: l.record.roundId,
            stage: l.record.stage,
            params: l.record.params,
            startedAt: l.record.startedAt,
            stageDeadline: l.stageDeadline,
            timeLeftMs: Math.max(0, l.stageDeadline - now),
            stages: structuredClone(l.record.stages),
            disconnected: l.disconnected.size,
          }
        : null,
      totals: { ...metrics.rounds },
      recent: await store.list({ limit: 50 }),
    };
  };

  /** With `resultsTokens` set, reading results needs one of them as a bearer token (compared as SHA-256 digests, in constant time). */
  const resultsAuthorized = (req: IncomingMessage): boolean => {
    if (resultsTokens.length === 0) return true;
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const got = digest(m[1]!);
    let ok = false;
    for (const t of resultsTokens) ok = timingSafeEqual(t, got) || ok;
    return ok;
  };

  const json = (res: ServerResponse, code: number, body: unknown) =>
    res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(JSON.stringify(body));

  const onRequest = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    try {
      if (req.method !== 'GET') return json(res, 405, { error: 'method not allowed' });
      if (url.pathname === '/' || url.pathname === '/index.html')
        return res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(DASHBOARD_HTML);
      if (url.pathname === '/healthz')
        return json(res, closing ? 503 : 200, {
          status: closing ? 'closing' : 'ok',
          connections: conns.size,
          pending: pendingCount,
          waiting: waiting.size,
          roundRunning: live !== undefined,
          memory: { rss: process.memoryUsage.rss(), maxRss: process.resourceUsage().maxRSS * 1024 },
        });
      if (url.pathname === '/metrics') return res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(metrics.render());
      if (url.pathname === '/api/status') return json(res, 200, await status());
      const m = /^\/api\/rounds\/(\d+)$/.exec(url.pathname);
      if ((m || url.pathname === '/api/rounds') && !resultsAuthorized(req)) {
        res.setHeader('www-authenticate', 'Bearer realm="secagg results"');
        return json(res, 401, { error: 'round results need Authorization: Bearer <results token>' });
      }
      if (m) {
        const r = await store.get(Number(m[1]));
        if (!r) return json(res, 404, { error: 'no such round' });
        return json(res, 200, { ...r, sum: r.sum ? Array.from(r.sum) : null });
      }
      if (url.pathname === '/api/rounds') return json(res, 200, await store.list({ limit: Number(url.searchParams.get('limit') ?? 100) }));
      return json(res, 404, { error: 'not found' });
    } catch (e) {
      log.log('error', 'http error', { path: url.pathname, error: String(e) });
      return json(res, 500, { error: 'internal error' });
    }
  };

  const http = createHttpServer((req, res) => void onRequest(req, res));
  // maxPayload is the pre-authentication cap: a socket gets the round-sized cap only once it is
  // welcomed (setPayloadCap). closeTimeout (an option of ws 8.23's WebSocketServer, missing from
  // @types/ws 8.18) bounds how long a peer that never answers our close frame keeps its socket
  // (ws's default: 30 s).
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_CONTROL_BYTES, perMessageDeflate: false, ...({ closeTimeout: 5_000 } as object) });
  http.on('upgrade', (req, socket, head) => {
    if (closing) {
      socket.destroy();
      return;
    }
    if (new URL(req.url ?? '/', 'http://x').pathname !== '/ws') {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
      return;
    }
    // Handshakes have their own small budget, per source and in all, so sockets that never
    // authenticate cannot take the slots of clients that do. Refused before the upgrade: no
    // WebSocket, no closing handshake to wait for.
    const remote = req.socket.remoteAddress ?? '';
    const source = addressKey(remote);
    const fromSource = pendingBySource.get(source) ?? 0;
    if (fromSource >= o.maxPendingPerAddress || pendingCount >= o.maxPendingConnections) {
      const perSource = fromSource >= o.maxPendingPerAddress;
      metrics.closed(perSource ? 'pending_per_address' : 'pending_full');
      log.log('info', 'handshake refused', { remote, source, reason: perSource ? 'too many handshakes from this address' : 'too many handshakes' });
      // Destroyed once the response is written: a peer that never closes its side keeps nothing.
      socket.end(`HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
      return;
    }
    // Without verifyClient, ws completes the upgrade synchronously: the count below cannot be
    // overtaken by another upgrade between the check above and this callback.
    wss.handleUpgrade(req, socket, head, (ws) => {
      const c: Conn = {
        seq: nextSeq++,
        ws,
        remote,
        source,
        phase: 'handshake',
        pending: true,
        refused: 0,
        queued: 0,
        discard: false,
        nonce: new Uint8Array(randomBytes(NONCE_BYTES)),
        alive: true,
        tokens: 2 * o.maxMessagesPerSecond,
        lastRefill: performance.now(),
      };
      pendingCount++;
      pendingBySource.set(source, (pendingBySource.get(source) ?? 0) + 1);
      metrics.pending = pendingCount;
      conns.add(c);
      metrics.connections = conns.size;
      c.handshakeTimer = setTimeout(() => closeConn(c, CLOSE.HANDSHAKE_TIMEOUT, `no hello within ${o.handshakeTimeoutMs} ms`, 'handshake_timeout'), o.handshakeTimeoutMs);
      ws.on('message', (data, isBinary) => onFrame(c, data, isBinary));
      ws.on('pong', () => (c.alive = true));
      ws.on('close', () => gone(c));
      ws.on('error', (e: Error & { code?: string }) => {
        // ws refused a frame over the socket's cap (1009) from its header, before buffering it.
        if (e.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' && c.phase !== 'closed') {
          log.log('info', 'closing connection', { conn: c.seq, clientId: c.clientId, identity: c.identity, code: CLOSE.TOO_BIG, reason: `frame over the ${c.pending ? 'pre-authentication' : 'service'} limit` });
          metrics.closed('too_big');
          c.discard = true;
          gone(c);
          return;
        }
        log.log('debug', 'socket error', { conn: c.seq, error: String(e) });
      });
      ws.send(
        encodeControl({
          case: 'challenge',
          value: { version: PROTOCOL_VERSION, mode: active ? WireMode.ACTIVE : WireMode.SEMI_HONEST, nonce: c.nonce, serverId },
        }),
      );
    });
  });
  try {
    await new Promise<void>((ok, fail) => http.once('error', fail).listen(o.port, o.host, ok));
  } catch (e) {
    // Nothing may outlive a server that never started: the worker pool would keep the process alive.
    wss.close();
    await unmasker?.close();
    await store.close();
    throw e;
  }
  const port = (http.address() as AddressInfo).port;
  const hostForUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  if (o.serverId === undefined) serverId = `secagg:${hostForUrl}:${port}`;

  // Keep-alive: ping every connection each interval; one that has not answered the previous ping
  // (a half-open TCP connection, a frozen peer) is dropped — in a round, that is a dropout.
  const keepAlive =
    o.keepAliveIntervalMs > 0
      ? setInterval(() => {
          for (const c of [...conns]) {
            if (!c.alive) {
              log.log('info', 'no pong: dropping the connection', { conn: c.seq, clientId: c.clientId, identity: c.identity });
              metrics.closed('keepalive_timeout');
              gone(c);
              c.ws.terminate();
              continue;
            }
            c.alive = false;
            try {
              c.ws.ping();
            } catch {
              /* closing */
            }
          }
        }, o.keepAliveIntervalMs)
      : undefined;
  log.log('info', 'listening', { url: `http://${hostForUrl}:${port}/`, dimension: o.dimension, bits: o.bits, degree: o.degree, mode: o.mode, serverId, maxPayload, corruption: o.corruption });
  if (resultsTokens.length === 0 && !isLoopback(o.host))
    log.log('warn', 'round results (/api/rounds, with the sums) are readable without a token on a non-loopback interface: set resultsTokens (--results-token)', { host: o.host });

  return {
    url: `ws://${hostForUrl}:${port}/ws`,
    httpUrl: `http://${hostForUrl}:${port}/`,
    port,
    store,
    onResult(listener) {
      resultListeners.add(listener);
      return () => resultListeners.delete(listener);
    },
    onRoundEnd(listener) {
      endListeners.add(listener);
      return () => endListeners.delete(listener);
    },
    status,
    startRound,
    async close(options = {}) {
      if (closing) return;
      closing = true;
      if (startTimer) clearTimeout(startTimer);
      if (keepAlive) clearInterval(keepAlive);
      const l = live;
      if (l) {
        const grace = options.graceMs ?? 0;
        if (grace > 0) await Promise.race([l.done, new Promise((r) => setTimeout(r, grace))]);
        if (!l.finished) {
          const reason = `server shutting down${options.reason ? ` (${options.reason})` : ''} before the round finished`;
          // finish() marks the round finished first, so no step still in the queue can publish a sum.
          await finish(l, { code: 'ERR_SHUTDOWN', reason });
        }
        await l.queue.catch(() => {});
      }
      for (const c of [...conns]) closeConn(c, CLOSE.GOING_AWAY, 'server shutting down', 'shutdown');
      wss.close();
      await new Promise<void>((ok) => {
        http.close(() => ok());
        http.closeAllConnections();
      });
      await unmasker?.close();
      await store.close();
      log.log('info', 'stopped', { reason: options.reason ?? 'close' });
    },
  };
}

/**
 * Set the frame cap of one open socket. ws has no public way to change maxPayload after the
 * upgrade, so this sets the socket's Receiver's `_maxPayload` (ws 8, lib/receiver.js). It is sound
 * because the Receiver reads that field afresh at every frame header (haveLength compares the
 * running total of the message's fragments with it before a byte of payload is buffered, and a
 * frame over it errors the Receiver, which stops reading the socket and closes with 1009), reads it
 * nowhere else but in permessage-deflate's inflate path, which is off here (that extension keeps its
 * own copy). A frame whose header came before a change was checked against the cap in force then;
 * the server raises the cap before it sends the welcome, and a client sends nothing big before its
 * round assignment, so no honest frame ever meets the small cap. Returns false when the field is not
 * there (a ws release that renamed it): the caller closes the connection rather than run with a
 * wrong cap, and every service test would fail.
 */
function setPayloadCap(ws: WebSocket, bytes: number): boolean {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  if (receiver === undefined || receiver === null || typeof receiver._maxPayload !== 'number') return false;
  receiver._maxPayload = bytes;
  return true;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/**
 * The source a handshake is budgeted against: an IPv4 address (also when IPv4-mapped), or the /64
 * of an IPv6 address — one subscriber usually has a whole /64, so a per-address budget alone would
 * not hold.
 */
export function addressKey(remote: string): string {
  const address = remote.split('%')[0]!.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(':')) return address;
  const [head = '', tail] = address.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => (parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || /^::ffff:127\./.test(host);
}

/**
 * Refuse at createServer a threshold or corruption budget that no cohort this server can draw
 * could use. The neighbourhood grows with the cohort for a fixed degree (up to k, or k + 1 for an
 * odd k) and the bound 2t > k + c (active; semi-honest: t > c, 2t > k) gets stricter with it, so a
 * threshold that fails for the smallest cohort fails for all, and one above the largest
 * neighbourhood fits none. For the 'recommended' degree only what holds for every degree is checked.
 */
function checkThresholdOptions(o: ServiceOptions): void {
  const c = o.corruption;
  if (!Number.isInteger(c) || c < 0) throw new RangeError('corruption must be an integer ≥ 0');
  const t = o.threshold;
  if (t !== undefined && (!Number.isInteger(t) || t < 2)) throw new RangeError('threshold must be an integer ≥ 2');
  if (o.degree !== 'recommended' && o.degree !== 'complete' && (!Number.isInteger(o.degree) || o.degree < 2))
    throw new RangeError("degree must be 'complete', 'recommended' or an integer ≥ 2");
  if (o.degree === 'recommended') {
    if (t !== undefined && o.mode === 'semi-honest' && t <= c) throw new RangeError(`threshold ${t} must exceed the corruption budget ${c}`);
    return;
  }
  const kLargest = maxNeighbourhood(o.degree, o.maxClients);
  const kSmallest = maxNeighbourhood(o.degree, o.minClients);
  if (c >= kLargest) throw new RangeError(`corruption ${c} must be below the neighbourhood size (${kLargest} at most for degree ${o.degree})`);
  if (t === undefined) return;
  if (t > kLargest) throw new RangeError(`threshold ${t} exceeds every neighbourhood this server can build (${kLargest} at most)`);
  const why = neighbourhoodBoundViolation(o.mode, kSmallest, t, c);
  if (why !== undefined) throw new RangeError(`threshold ${t} is unsafe for every cohort (${o.minClients}..${o.maxClients} clients, degree ${o.degree}): ${why}`);
}

function fakeConfig(o: Pick<ServiceOptions, 'bits' | 'dimension' | 'degree'>, n: number): RoundConfig {
  const cohort: ClientId[] = Array.from({ length: Math.max(3, n) }, (_, i) => clientId(i + 1));
  // The complete graph bounds every degree.
  return { roundId: roundId(new Uint8Array(16)), bits: o.bits, dimension: o.dimension, threshold: 2, degree: 'complete', mode: 'semi-honest', cohort };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function safeCall(log: Logger, f: () => void): void {
  try {
    f();
  } catch (e) {
    log.log('error', 'listener threw', { error: String(e) });
  }
}
