/**
 * The service's connections, from the HTTP upgrade to the close: the handshake budget (per source
 * and in all), the handshake itself (challenge → hello with the token and, in active mode, the
 * identity proof → welcome), frame size caps, the token bucket that limits each connection's frame
 * rate, keep-alive pings, and closing with the right code. What an authenticated connection sends
 * inside a round is handed to the service (onProtocolFrame); this module knows nothing of rounds.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { nodeCrypto } from '../crypto/node.js';
import type { SecAggErrorCode } from '../errors.js';
import { clientId, MAX_CLIENT_ID, type ClientId } from '../ids.js';
import { PROTOCOL_VERSION } from '../wire/codec.js';
import { Mode as WireMode } from '../wire/gen/secagg/v1/secagg_pb.js';
import { CLOSE, MAX_CONTROL_BYTES, TransportError, decodeControl, encodeControl, isControlFrame, type CloseCode } from '../transport/frames.js';
import { bytesEqual, helloTranscript, toHex, verifyCertificate, NONCE_BYTES } from '../identity/index.js';
import type { TokenCheck } from './token.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { ServiceOptions } from './options.js';

export interface Conn {
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

/**
 * The state machine's refusals that end the connection, by code, and the close code each gets. A
 * message that does not parse, speaks another version, or is over its size limit is not something
 * an honest client sends late or twice: the connection goes. Every other refusal (wrong stage,
 * duplicate, …) is counted against maxRefusedMessages instead. Chosen by the typed code only,
 * never by the message text.
 */
export const CLOSE_ON_REFUSAL: Readonly<Partial<Record<SecAggErrorCode, CloseCode>>> = {
  ERR_DECODE: CLOSE.MALFORMED,
  ERR_VERSION: CLOSE.MALFORMED,
  ERR_SIZE: CLOSE.MALFORMED,
  ERR_TOO_BIG: CLOSE.TOO_BIG,
};

/** The metrics label of a connection closed for a TransportError. */
const transportMetric = (e: TransportError): string => (e.closeCode === CLOSE.TOO_BIG ? 'too_big' : 'malformed');

export interface ConnectionsOptions {
  readonly options: ServiceOptions;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly verify: (token: string) => TokenCheck | Promise<TokenCheck>;
  /** The frame cap of an authenticated socket (maxServiceFrameBytes). */
  readonly maxPayload: number;
  /** The server's name, signed into identity proofs (known once the server listens). */
  readonly serverId: () => string;
  /** The server is shutting down: upgrades are refused. */
  readonly closing: () => boolean;
  /** A connection was welcomed: it now waits for a round. */
  readonly onWelcome: (c: Conn) => void;
  /** A connection is gone (closed by either side or dropped); `wasInRound` when it was in a round. */
  readonly onGone: (c: Conn, wasInRound: boolean) => void;
  /** A protocol frame (not a control frame) of a welcomed connection. May throw a TransportError. */
  readonly onProtocolFrame: (c: Conn, bytes: Uint8Array) => void;
}

export interface Connections {
  /** Open connections, in their handshake or welcomed. */
  readonly size: number;
  /** Connections still in their handshake. */
  readonly pending: number;
  all(): Conn[];
  /** The HTTP server's 'upgrade' handler for /ws. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(c: Conn, code: number, reason: string, metricReason: string): void;
  /**
   * A protocol message that the round will not use: logged, counted, and at `maxRefusedMessages`
   * since the connection's last round assignment the connection is closed (1008). Honest clients
   * send one message per stage (plus perhaps a late one and an abort), far below the default 8.
   */
  refused(c: Conn, code: string, reason: string, round?: number): void;
  /** Ping every connection each keepAliveIntervalMs (if set). */
  startKeepAlive(): void;
  stopKeepAlive(): void;
  /** Stop the keep-alive and the WebSocket server (connections are closed by the caller). */
  stop(): void;
}

export function createConnections(co: ConnectionsOptions): Connections {
  const { options: o, log, metrics } = co;
  const active = o.mode === 'active';
  const conns = new Set<Conn>();
  /** Connections before their welcome, per source (addressKey), and in all. */
  const pendingBySource = new Map<string, number>();
  let pendingCount = 0;
  const identities = new Map<string, Conn>();
  const identityKeys = new Map<string, Conn>(); // hex identity key → connection (active mode)
  const byClientId = new Map<number, Conn>();
  let nextClientId = 1;
  let nextSeq = 1;
  let keepAlive: ReturnType<typeof setInterval> | undefined;

  const close = (c: Conn, code: number, reason: string, metricReason: string) => {
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
    if (c.identity !== undefined && identities.get(c.identity) === c) identities.delete(c.identity);
    if (c.identityKey !== undefined && identityKeys.get(toHex(c.identityKey)) === c) identityKeys.delete(toHex(c.identityKey));
    if (c.clientId !== undefined && byClientId.get(c.clientId) === c) byClientId.delete(c.clientId);
    metrics.connections = conns.size;
    co.onGone(c, wasInRound);
  };

  const allocateClientId = (): ClientId | undefined => {
    for (let tries = 0; tries < MAX_CLIENT_ID; tries++) {
      const id = nextClientId;
      nextClientId = nextClientId >= MAX_CLIENT_ID ? 1 : nextClientId + 1;
      if (!byClientId.has(id)) return clientId(id);
    }
    return undefined;
  };

  /** The token bucket: `maxMessagesPerSecond` sustained, bursts of twice that. */
  const rateOk = (c: Conn): boolean => {
    const now = performance.now();
    const burst = 2 * o.maxMessagesPerSecond;
    c.tokens = Math.min(burst, c.tokens + ((now - c.lastRefill) / 1000) * o.maxMessagesPerSecond);
    c.lastRefill = now;
    if (c.tokens < 1) return false;
    c.tokens -= 1;
    return true;
  };

  const refuse = (c: Conn, reason: string, metricReason: string) => close(c, CLOSE.UNAUTHORIZED, reason, metricReason);

  const onHello = async (c: Conn, bytes: Uint8Array) => {
    const ctl = decodeControl(bytes);
    if (ctl.body.case !== 'hello') throw new TransportError(CLOSE.MALFORMED, `expected hello, got ${ctl.body.case}`);
    const hello = ctl.body.value;
    if (hello.version !== PROTOCOL_VERSION) throw new TransportError(CLOSE.MALFORMED, `protocol version ${hello.version} is not ${PROTOCOL_VERSION}`);
    // Verifying may wait (a JWT's signature): no other frame is taken from this connection meanwhile.
    c.phase = 'authenticating';
    const check = await co.verify(hello.token);
    if ((c.phase as Conn['phase']) !== 'authenticating') return; // closed meanwhile
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
      const transcript = await helloTranscript(
        { version: hello.version, nonce: c.nonce, serverId: co.serverId(), token: hello.token, identityKey: proof.identityKey },
        nodeCrypto,
      );
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
    if (identities.has(check.identity)) return close(c, CLOSE.DUPLICATE_IDENTITY, `identity ${check.identity} is already connected`, 'duplicate_identity');
    if (identityKey !== undefined && identityKeys.has(toHex(identityKey)))
      return close(c, CLOSE.DUPLICATE_IDENTITY, `identity key ${toHex(identityKey).slice(0, 16)}… is already connected`, 'duplicate_identity');
    if (conns.size - pendingCount >= o.maxConnections) return close(c, CLOSE.SERVER_FULL, 'too many connections', 'server_full');
    const id = allocateClientId();
    if (id === undefined) return close(c, CLOSE.SERVER_FULL, 'no client id free', 'server_full');
    if (!setPayloadCap(c.ws, co.maxPayload)) {
      log.log('error', 'cannot raise the frame limit of an authenticated socket: ws internals changed (see setPayloadCap)', { conn: c.seq });
      return close(c, CLOSE.INTERNAL, 'internal error', 'internal');
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
    c.ws.send(encodeControl({ case: 'welcome', value: { clientId: id, identity: check.identity, maxFrameBytes: co.maxPayload } }));
    log.log('debug', 'client authenticated', {
      conn: c.seq,
      clientId: id,
      identity: check.identity,
      ...(identityKey ? { identityKey: toHex(identityKey) } : {}),
    });
    co.onWelcome(c);
  };

  const onFrame = (c: Conn, data: RawData, isBinary: boolean) => {
    if (c.phase === 'closed') return;
    if (!rateOk(c)) return close(c, CLOSE.RATE_LIMITED, `more than ${o.maxMessagesPerSecond} frames per second`, 'rate_limited');
    if (!isBinary) return close(c, CLOSE.MALFORMED, 'text frames are not accepted', 'malformed');
    const bytes = Array.isArray(data) ? new Uint8Array(Buffer.concat(data)) : new Uint8Array(data as ArrayBuffer | Buffer);
    try {
      if (c.phase === 'handshake') {
        // ws already refused anything above MAX_CONTROL_BYTES before buffering it (setPayloadCap); kept as a second line.
        if (bytes.length > MAX_CONTROL_BYTES) return close(c, CLOSE.TOO_BIG, `hello of ${bytes.length} bytes exceeds ${MAX_CONTROL_BYTES}`, 'too_big');
        onHello(c, bytes).catch((e: unknown) => {
          if (e instanceof TransportError) return close(c, e.closeCode, e.message, transportMetric(e));
          log.log('error', 'unexpected error handling a hello', { conn: c.seq, error: String(e) });
          close(c, CLOSE.INTERNAL, 'internal error', 'internal');
        });
        return;
      }
      if (c.phase === 'authenticating') return close(c, CLOSE.MALFORMED, 'frame before the welcome', 'malformed');
      if (isControlFrame(bytes)) {
        const ctl = decodeControl(bytes);
        throw new TransportError(CLOSE.MALFORMED, `unexpected ${ctl.body.case} frame`);
      }
      co.onProtocolFrame(c, bytes);
    } catch (e) {
      if (e instanceof TransportError) return close(c, e.closeCode, e.message, transportMetric(e));
      log.log('error', 'unexpected error handling a frame', { conn: c.seq, error: String(e) });
      close(c, CLOSE.INTERNAL, 'internal error', 'internal');
    }
  };

  // maxPayload is the pre-authentication cap: a socket gets the round-sized cap only once it is
  // welcomed (setPayloadCap). closeTimeout (an option of ws 8.23's WebSocketServer, missing from
  // @types/ws 8.18) bounds how long a peer that never answers our close frame keeps its socket
  // (ws's default: 30 s).
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_CONTROL_BYTES, perMessageDeflate: false, ...({ closeTimeout: 5_000 } as object) });

  const allowedOrigins = o.allowedOrigins ? new Set(o.allowedOrigins) : undefined;
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (co.closing()) {
      socket.destroy();
      return;
    }
    if (new URL(req.url ?? '/', 'http://x').pathname !== '/ws') {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
      return;
    }
    // A browser page from an origin not allowed: refused before the upgrade (no WebSocket).
    const origin = req.headers.origin;
    if (allowedOrigins && origin !== undefined && !allowedOrigins.has('*') && !allowedOrigins.has(origin.toLowerCase())) {
      metrics.closed('origin');
      log.log('info', 'upgrade refused: origin not allowed', { remote: req.socket.remoteAddress, origin: origin.slice(0, 200) });
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n', () => socket.destroy());
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
      c.handshakeTimer = setTimeout(
        () => close(c, CLOSE.HANDSHAKE_TIMEOUT, `no hello within ${o.handshakeTimeoutMs} ms`, 'handshake_timeout'),
        o.handshakeTimeoutMs,
      );
      ws.on('message', (data, isBinary) => onFrame(c, data, isBinary));
      ws.on('pong', () => (c.alive = true));
      ws.on('close', () => gone(c));
      ws.on('error', (e: Error & { code?: string }) => {
        // ws refused a frame over the socket's cap (1009) from its header, before buffering it.
        if (e.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' && c.phase !== 'closed') {
          log.log('info', 'closing connection', {
            conn: c.seq,
            clientId: c.clientId,
            identity: c.identity,
            code: CLOSE.TOO_BIG,
            reason: `frame over the ${c.pending ? 'pre-authentication' : 'service'} limit`,
          });
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
          value: { version: PROTOCOL_VERSION, mode: active ? WireMode.ACTIVE : WireMode.SEMI_HONEST, nonce: c.nonce, serverId: co.serverId() },
        }),
      );
    });
  };

  return {
    get size() {
      return conns.size;
    },
    get pending() {
      return pendingCount;
    },
    all: () => [...conns],
    upgrade,
    close,
    refused(c, code, reason, round) {
      metrics.refusedMessage(code);
      log.log('info', 'message refused', { ...(round !== undefined ? { round } : {}), conn: c.seq, clientId: c.clientId, code, reason });
      c.refused++;
      if (c.refused >= o.maxRefusedMessages && c.phase !== 'closed')
        close(c, CLOSE.POLICY, `${c.refused} refused messages (limit ${o.maxRefusedMessages})`, 'refused_messages');
    },
    startKeepAlive() {
      // Keep-alive: ping every connection each interval; one that has not answered the previous ping
      // (a half-open TCP connection, a frozen peer) is dropped — in a round, that is a dropout.
      if (o.keepAliveIntervalMs <= 0 || keepAlive) return;
      keepAlive = setInterval(() => {
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
      }, o.keepAliveIntervalMs);
    },
    stopKeepAlive() {
      if (keepAlive) clearInterval(keepAlive);
      keepAlive = undefined;
    },
    stop() {
      this.stopKeepAlive();
      wss.close();
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
