/**
 * The service's options: their documentation, their defaults, and one resolveOptions() that merges
 * a caller's Partial<ServiceOptions> over the defaults and checks every option once, at
 * createServer, with a TypeError (wrong type) or RangeError (out of range) naming it. The rest of
 * the service reads the resolved options and checks nothing again.
 */
import { availableParallelism } from 'node:os';
import { clientId, roundId, MAX_CLIENT_ID, type ClientId } from '../ids.js';
import { recommendParameters } from '../graph/index.js';
import { maxNeighbourhood, minimumThreshold, neighbourhoodBoundViolation, type Degree, type RoundConfig } from '../protocol/config.js';
import { maxClientMessageBytes } from '../protocol/limits.js';
import { MAX_CONTROL_BYTES } from '../transport/frames.js';
import type { JwtOptions, StaticTokenEntry } from './token.js';
import { jsonLogger, type Logger } from './logger.js';
import type { RoundStore } from './store.js';
import { resolveDp, serviceEncoding, type DpServiceOptions, type ResolvedDp } from './dp.js';
import type { DpEncoding } from '../dp/encoding.js';

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
  /** Secret for HS256 JWTs (and the older `st1.` tokens of signToken); omit to accept static tokens (and issuer-signed JWTs) only. */
  readonly secret: string | Uint8Array | undefined;
  /** JWTs: required audience and issuer, Ed25519 issuer keys for EdDSA tokens, clock skew (see token.ts). */
  readonly jwt: JwtOptions;
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
  /** Round history; default: in memory, or the store `historyFile` names. */
  readonly store: RoundStore | undefined;
  /**
   * Where the round history is kept: a SQLite file (sqliteStore), or a `postgres://` /
   * `postgresql://` URL of a PostgreSQL database (postgresStore; `?schema=NAME` picks the schema,
   * default `secagg`).
   */
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
  /**
   * TLS: PEM certificate chain and private key (the bytes or text, not paths). With them the
   * service listens with HTTPS and clients connect with wss://; without them on a non-loopback
   * interface it warns (use a TLS-terminating reverse proxy then: docs/deploy.md).
   */
  readonly tls: { readonly cert: string | Uint8Array; readonly key: string | Uint8Array } | undefined;
  /** WebSocket ping interval, ms (default 15,000; 0 = off). A connection that has not answered the previous ping is dropped. */
  readonly keepAliveIntervalMs: number;
  /**
   * Where the admin surface — the dashboard, /metrics, /api/status and /api/rounds (the sums) — is
   * served: `'client-port'` (with the clients' WebSocket), `{ port, host? }` (a listener of its own;
   * host default 127.0.0.1, port 0 picks a free one; TLS too when `tls` is set and the host is not
   * loopback) or `'off'`. Default: `'client-port'` when `host` is a loopback address, else
   * `{ host: '127.0.0.1', port: 0 }` — never on a client port reachable from other machines unless
   * asked for. /healthz stays on the client port in every case (for load balancers).
   */
  readonly admin: AdminPlacement | undefined;
  /**
   * Bearer tokens the admin surface requires on /metrics and /api/* (the dashboard page and its
   * script are static and load without one; the page sends the token given in its URL fragment,
   * `#token=…`). Default none: open. A results token (`resultsTokens`) also reads /api/rounds.
   */
  readonly adminTokens: readonly string[];
  /**
   * Browser origins allowed to open the WebSocket (`https://app.example.com`, scheme://host[:port]);
   * an upgrade whose Origin header is not one of them is refused with HTTP 403 before any
   * WebSocket exists. `'*'` allows any. Requests without an Origin header (Node, native clients —
   * which can claim any origin anyway) are not affected: this keeps other sites' pages from using
   * visitors' browsers against the service, it is not authentication. Default: any origin.
   */
  readonly allowedOrigins: readonly string[] | undefined;
  /**
   * Differential privacy of every released sum (docs/service.md, "Differential privacy"): the
   * clients add integer noise inside their masked inputs (RoundConfig.dp), every round's ε is
   * recorded, and an optional budget stops new rounds once spent. `dimension` must then be a power
   * of two. Default: off.
   */
  readonly dp: DpServiceOptions | undefined;
}

/** Where the admin surface listens: see ServiceOptions.admin. */
export type AdminPlacement = 'client-port' | 'off' | { readonly port: number; readonly host?: string };

const DEFAULTS: Omit<ServiceOptions, 'logger' | 'unmaskWorkers'> = {
  port: 0,
  host: '127.0.0.1',
  tokens: [],
  secret: undefined,
  jwt: {},
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
  mode: 'semi-honest',
  serverId: undefined,
  issuerKey: undefined,
  tls: undefined,
  keepAliveIntervalMs: 15_000,
  admin: undefined,
  adminTokens: [],
  allowedOrigins: undefined,
  dp: undefined,
};

/**
 * The caller's options over the defaults (an option given as undefined takes its default), each
 * checked. Throws TypeError / RangeError naming the first bad option.
 *
 * @example
 * ```ts
 * const o = resolveOptions({ minClients: 10, dimension: 10_000 });
 * o.maxClients; // 1000
 * ```
 */
export function resolveOptions(options: Partial<ServiceOptions> = {}): ServiceOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<ServiceOptions>;
  const o: ServiceOptions = { ...DEFAULTS, unmaskWorkers: availableParallelism(), logger: given.logger ?? jsonLogger(), ...given };

  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw new RangeError('port must be an integer in [0, 65535]');
  if (typeof o.host !== 'string' || o.host.length === 0) throw new TypeError('host must be a non-empty string');
  if (!Array.isArray(o.tokens) && !(o.tokens instanceof Map)) throw new TypeError('tokens must be a list of tokens or a Map of token → identity');
  if (o.secret !== undefined && typeof o.secret !== 'string' && !(o.secret instanceof Uint8Array))
    throw new TypeError('secret must be a string or a Uint8Array');
  if (o.tls !== undefined) {
    const pem = (v: unknown) => typeof v === 'string' || v instanceof Uint8Array;
    if (typeof o.tls !== 'object' || o.tls === null || !pem(o.tls.cert) || !pem(o.tls.key))
      throw new TypeError('tls must be { cert, key }, each PEM text or bytes');
  }
  if (typeof o.jwt !== 'object' || o.jwt === null) throw new TypeError('jwt must be an object');
  if (o.jwt.audience !== undefined && (typeof o.jwt.audience !== 'string' || o.jwt.audience.length === 0))
    throw new TypeError('jwt.audience must be a non-empty string');
  if (o.jwt.issuer !== undefined && (typeof o.jwt.issuer !== 'string' || o.jwt.issuer.length === 0))
    throw new TypeError('jwt.issuer must be a non-empty string');
  if (o.jwt.publicKeys !== undefined && !Array.isArray(o.jwt.publicKeys)) throw new TypeError('jwt.publicKeys must be a list of Ed25519 public keys');
  if (!Number.isInteger(o.minClients) || o.minClients < 3) throw new RangeError('minClients must be an integer ≥ 3');
  if (!Number.isInteger(o.maxClients) || o.maxClients < o.minClients || o.maxClients > MAX_CLIENT_ID)
    throw new RangeError(`maxClients must be an integer in [minClients, ${MAX_CLIENT_ID}]`);
  if (!(o.startDelayMs >= 0)) throw new RangeError('startDelayMs must be ≥ 0');
  if (typeof o.autoStart !== 'boolean') throw new TypeError('autoStart must be a boolean');
  if (!((Number.isInteger(o.maxRounds) && o.maxRounds >= 0) || o.maxRounds === Infinity))
    throw new RangeError('maxRounds must be an integer ≥ 0 (or Infinity)');
  if (!Number.isInteger(o.dimension) || o.dimension < 1) throw new RangeError('dimension must be a positive integer');
  if (!Number.isInteger(o.bits) || o.bits < 1 || o.bits > 32) throw new RangeError('bits must be in [1, 32]');
  if (o.mode !== 'semi-honest' && o.mode !== 'active') throw new RangeError("mode must be 'semi-honest' or 'active'");
  if (!(o.dropoutRate >= 0 && o.dropoutRate < 1)) throw new RangeError('dropoutRate must be in [0, 1)');
  if (!(o.stageTimeoutMs > 0)) throw new RangeError('stageTimeoutMs must be > 0');
  if (!(o.handshakeTimeoutMs > 0)) throw new RangeError('handshakeTimeoutMs must be > 0');
  if (!(o.keepAliveIntervalMs >= 0)) throw new RangeError('keepAliveIntervalMs must be ≥ 0');
  if (!(o.maxMessagesPerSecond > 0)) throw new RangeError('maxMessagesPerSecond must be > 0');
  for (const name of ['maxConnections', 'maxPendingConnections', 'maxPendingPerAddress', 'maxRefusedMessages'] as const)
    if (!((Number.isInteger(o[name]) && o[name] >= 1) || o[name] === Infinity)) throw new RangeError(`${name} must be an integer ≥ 1 (or Infinity)`);
  if (!Array.isArray(o.resultsTokens) || !o.resultsTokens.every((t) => typeof t === 'string' && t.length > 0))
    throw new TypeError('resultsTokens must be a list of non-empty strings');
  if (!Array.isArray(o.adminTokens) || !o.adminTokens.every((t) => typeof t === 'string' && t.length > 0))
    throw new TypeError('adminTokens must be a list of non-empty strings');
  checkAdmin(o.admin);
  if (o.allowedOrigins !== undefined) {
    if (!Array.isArray(o.allowedOrigins)) throw new TypeError('allowedOrigins must be a list of origins');
    for (const origin of o.allowedOrigins) checkOrigin(origin);
  }
  if (o.store !== undefined && (typeof o.store !== 'object' || o.store === null || typeof o.store.save !== 'function'))
    throw new TypeError('store must be a RoundStore');
  if (o.historyFile !== undefined && (typeof o.historyFile !== 'string' || o.historyFile.length === 0))
    throw new TypeError('historyFile must be a non-empty path or postgres:// URL');
  if (!Number.isInteger(o.unmaskWorkers) || o.unmaskWorkers < 0) throw new RangeError('unmaskWorkers must be an integer ≥ 0');
  if (typeof o.logger !== 'object' || o.logger === null || typeof o.logger.log !== 'function')
    throw new TypeError('logger must have a log(level, msg, fields) method');
  if (o.serverId !== undefined && typeof o.serverId !== 'string') throw new TypeError('serverId must be a string');
  if (o.issuerKey !== undefined && !(o.issuerKey instanceof Uint8Array && o.issuerKey.length === 32))
    throw new RangeError('issuerKey must be a 32-byte Ed25519 public key');
  checkThresholdOptions(o);
  if (o.dp !== undefined) dpSetup(o);
  return o;
}

/**
 * The DP options with their defaults and the service's encoding (one scale for all its rounds),
 * planned for the largest cohort with the noise of the fewest honest clients the smallest cohort
 * guarantees (t − C at minClients). Throws TypeError / RangeError naming the dp option.
 */
export function dpSetup(o: ServiceOptions): { dp: ResolvedDp; encoding: DpEncoding } {
  const dp = resolveDp(o.dp);
  const { threshold } = cohortParameters(o, o.minClients);
  const minHonest = threshold - o.corruption;
  if (minHonest < 1)
    throw new RangeError(`dp needs at least one honest client in every released sum: threshold ${threshold} must exceed corruption ${o.corruption}`);
  return { dp, encoding: serviceEncoding(dp, o, minHonest).encoding };
}

function checkAdmin(admin: unknown): void {
  if (admin === undefined || admin === 'client-port' || admin === 'off') return;
  if (typeof admin !== 'object' || admin === null) throw new TypeError("admin must be 'client-port', 'off' or { port, host? }");
  const { port, host } = admin as { port?: unknown; host?: unknown };
  if (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535) throw new RangeError('admin.port must be an integer in [0, 65535]');
  if (host !== undefined && (typeof host !== 'string' || host.length === 0)) throw new TypeError('admin.host must be a non-empty string');
}

/** An allowed origin is '*' or exactly what a browser sends: scheme://host[:port], lower case, no path. */
function checkOrigin(origin: unknown): void {
  if (origin === '*') return;
  if (typeof origin !== 'string') throw new TypeError('allowedOrigins entries must be strings');
  let parsed: URL | undefined;
  try {
    parsed = new URL(origin);
  } catch {
    parsed = undefined;
  }
  if (!parsed || (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') || parsed.origin !== origin)
    throw new RangeError(
      `allowedOrigins: '${origin}' is not an origin (scheme://host[:port], lower case, no path or trailing slash${parsed ? `; did you mean '${parsed.origin}'?` : ''})`,
    );
}

/** The admin surface's placement once defaults are applied: see ServiceOptions.admin. */
export function adminPlacement(o: Pick<ServiceOptions, 'admin' | 'host'>): 'client-port' | 'off' | { readonly port: number; readonly host: string } {
  const a = o.admin ?? (isLoopback(o.host) ? 'client-port' : { port: 0 });
  return typeof a === 'string' ? a : { port: a.port, host: a.host ?? '127.0.0.1' };
}

/** A loopback interface name or address (only this machine can reach it). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || /^::ffff:127\./i.test(host);
}

/**
 * The degree and threshold of a round over `n` clients. The threshold is checked against the
 * largest neighbourhood the graph can give over any U1 of the cohort (maxNeighbourhood: an odd
 * degree over an odd U1 gives k + 1), never against the declared degree, and with the corruption
 * budget: minimumThreshold is the smallest that meets the bound. `clamped` says the configured
 * threshold did not fit this cohort and another was used.
 */
export function cohortParameters(o: ServiceOptions, n: number): { degree: Degree; threshold: number; clamped: boolean; neighbourhood: number } {
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
  return { degree, threshold, clamped: o.threshold !== undefined && threshold !== o.threshold, neighbourhood: k };
}

/**
 * The largest frame any round of this server can need: the bound for the biggest cohort (the
 * complete graph bounds every degree). It is the cap of authenticated sockets only; before the
 * welcome a socket is held to MAX_CONTROL_BYTES.
 */
export function maxServiceFrameBytes(o: Pick<ServiceOptions, 'bits' | 'dimension' | 'maxClients' | 'dp'>): number {
  const cohort: ClientId[] = Array.from({ length: Math.max(3, o.maxClients) }, (_, i) => clientId(i + 1));
  const config: RoundConfig = {
    roundId: roundId(new Uint8Array(16)),
    bits: o.bits,
    dimension: o.dimension,
    threshold: 2,
    degree: 'complete',
    mode: 'semi-honest',
    cohort,
    // Removable DP noise: unmask responses carry the excess noise too (m more elements).
    ...(o.dp !== undefined
      ? { dp: { mechanism: 'skellam' as const, targetVariance: 1, removable: o.dp.removable ?? (o.dp.mechanism ?? 'skellam') === 'skellam' } }
      : {}),
  };
  return Math.max(MAX_CONTROL_BYTES, maxClientMessageBytes(config));
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
  if (why !== undefined)
    throw new RangeError(`threshold ${t} is unsafe for every cohort (${o.minClients}..${o.maxClients} clients, degree ${o.degree}): ${why}`);
}
