/**
 * A client of the aggregation service: connect, authenticate, wait for a round, run the protocol's
 * client state machine (protocol/clientRound.ts) over the WebSocket, and repeat for `rounds` rounds,
 * reconnecting with exponential back-off between them. The same code runs in browsers (the global
 * WebSocket) and in Node (pass `WebSocket` from the `ws` package).
 */
import { defaultCrypto } from '#crypto-default';
import type { CryptoProvider } from '../crypto/provider.js';
import { clientId, roundId as asRoundId } from '../ids.js';
import { createClient, handleClientMessage, type ClientState } from '../protocol/clientRound.js';
import { REPLY_STAGE, type Stage } from '../protocol/stages.js';
import { encodeClientMessage, PROTOCOL_VERSION } from '../wire/codec.js';
import { CLOSE, decodeControl, encodeControl, isControlFrame, TransportError } from '../transport/frames.js';
import { type DirectoryEntry } from '../wire/gen/secagg/v1/service_pb.js';
import { Mode as WireMode } from '../wire/gen/secagg/v1/secagg_pb.js';
import { bytesEqual, helloTranscript, identityPublicKey, parseKey, toHex as keyHex, verifyCertificate } from '../identity/index.js';
import { openChannel, type FrameChannel, type WebSocketConstructor } from '../transport/socket.js';
import { ClientError } from './errors.js';

/** The stage whose message a client is about to send. */
export type ReplyStage = Stage;

const REPLY = REPLY_STAGE;

export interface RoundInfo {
  readonly round: number;
  /** Hex. */
  readonly roundId: string;
  readonly clientId: number;
  readonly bits: number;
  readonly dimension: number;
  /**
   * Active mode: what the cohort's identity keys were checked against — the pinned directory, the
   * issuer's certificates, both, or only the server's word ('server': no protection against a
   * server that substitutes keys). Always the `trust` the client was given (or implied).
   */
  readonly identityCheck?: TrustMode;
}

export interface RoundReport extends RoundInfo {
  /** The server obtained a sum. */
  readonly completed: boolean;
  /** This client's input is in it. */
  readonly included: boolean;
  /** Why the round ended without this client's input, when it did. */
  readonly code: string | undefined;
  readonly reason: string | undefined;
  readonly survivors: number;
}

export type ClientEvent =
  | { readonly type: 'connected' }
  | { readonly type: 'welcome'; readonly clientId: number; readonly identity: string }
  | { readonly type: 'assigned'; readonly round: RoundInfo }
  | { readonly type: 'sent'; readonly stage: ReplyStage; readonly bytes: number }
  | { readonly type: 'finished'; readonly report: RoundReport }
  | { readonly type: 'disconnected'; readonly code: number; readonly reason: string }
  | { readonly type: 'reconnecting'; readonly attempt: number; readonly delayMs: number };

/**
 * What an active-mode client checks the cohort's identity keys against: a pinned directory, an
 * issuer's certificates, both, or — asked for explicitly — nothing but the server's word.
 */
export type TrustMode = 'pinned' | 'issuer' | 'pinned+issuer' | 'server';

const TRUST_MODES: readonly TrustMode[] = ['pinned', 'issuer', 'pinned+issuer', 'server'];

export interface ParticipateOptions {
  /** ws:// or wss:// URL of the service (e.g. server.url). */
  readonly url: string;
  /** Bearer token. */
  readonly token: string;
  /** The vector to contribute (every round), each element < 2^bits. */
  readonly input?: Uint32Array;
  /** Or: the vector for a given round (called when the round is assigned). */
  readonly inputProvider?: (round: RoundInfo) => Uint32Array | Promise<Uint32Array>;
  /** WebSocket constructor; default the global one (browsers, Node ≥ 22). In Node 20 pass `ws`. */
  readonly WebSocket?: WebSocketConstructor;
  /** Rounds to take part in before resolving (default 1). */
  readonly rounds?: number;
  /** Reconnection back-off: first delay, cap, and consecutive failures before giving up. */
  readonly reconnect?: { readonly initialDelayMs?: number; readonly maxDelayMs?: number; readonly maxAttempts?: number };
  readonly connectTimeoutMs?: number;
  readonly crypto?: CryptoProvider;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: ClientEvent) => void;
  /**
   * Active mode: this client's long-term Ed25519 identity (32-byte seed). The token must be bound to
   * its public key; the client proves possession at hello, refuses servers and rounds that are not
   * active, and signs its keys and the survivor set in every round.
   */
  readonly identity?: Uint8Array;
  /**
   * Active mode: the pinned directory, identity name → Ed25519 public key (bytes, hex or base64url),
   * from a source this client trusts (not the aggregation server). Every cohort member's key the
   * server announces must match it, else the client aborts the round (ERR_IDENTITY).
   */
  readonly directory?: ReadonlyMap<string, Uint8Array | string> | Readonly<Record<string, Uint8Array | string>>;
  /**
   * Active mode: the pinned public key of the identity issuer. Every cohort member must come with a
   * valid, unexpired certificate from it (issueCertificate) for its name and key, else the client
   * aborts the round (ERR_IDENTITY).
   */
  readonly issuerKey?: Uint8Array | string;
  /** Active mode: this client's certificate from the issuer, presented at hello and forwarded to peers. */
  readonly certificate?: string;
  /**
   * Active mode: what the cohort's identity keys are checked against. 'pinned' needs `directory`,
   * 'issuer' needs `issuerKey`, 'pinned+issuer' both; without `trust` it follows from which of the
   * two are given. 'server' takes the server's directory as sent — no protection against a
   * malicious server substituting keys and playing those clients itself — and must be asked for
   * explicitly: active mode without `directory`, `issuerKey` or `trust: 'server'` is a TypeError.
   */
  readonly trust?: TrustMode;
  /** Refuse a server whose challenge names another server id. */
  readonly serverId?: string;
  /**
   * Test hook: decide what to do with a reply before it is sent — send it, stay silent (a client
   * that never answers), or disconnect (a client that drops out at this stage).
   */
  readonly unsafeBeforeSend?: (stage: ReplyStage, bytes: Uint8Array) => 'send' | 'silent' | 'disconnect';
}


/** Close codes after which reconnecting cannot help. */
const FATAL: ReadonlySet<number> = new Set([CLOSE.UNAUTHORIZED, CLOSE.MALFORMED, CLOSE.TOO_BIG, CLOSE.RATE_LIMITED, CLOSE.POLICY]);

/**
 * Take part in `rounds` rounds (default 1); resolves with one report per round.
 *
 * @example
 * ```ts
 * import WebSocket from 'ws';
 * const [report] = await participate({ url: 'ws://127.0.0.1:8080/ws', token, input, WebSocket });
 * console.log(report.included);
 * ```
 */
export async function participate(options: ParticipateOptions): Promise<RoundReport[]> {
  if (typeof options.url !== 'string') throw new TypeError('url must be a string');
  if (typeof options.token !== 'string') throw new TypeError('token must be a string');
  if (options.input === undefined && options.inputProvider === undefined) throw new TypeError('input or inputProvider is required');
  if (options.input !== undefined && !(options.input instanceof Uint32Array)) throw new TypeError('input must be a Uint32Array');
  if (options.identity !== undefined && !(options.identity instanceof Uint8Array && options.identity.length === 32))
    throw new TypeError('identity must be a 32-byte Ed25519 seed (Uint8Array)');
  if ((options.directory !== undefined || options.issuerKey !== undefined || options.trust !== undefined) && options.identity === undefined)
    throw new TypeError('directory, issuerKey and trust are for active mode: give identity too');
  const trust = trustAnchors(options);
  const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (WS === undefined) throw new ClientError('ERR_UNSUPPORTED', 'no WebSocket implementation: pass options.WebSocket (e.g. from the ws package)');
  const rounds = options.rounds ?? 1;
  const initial = options.reconnect?.initialDelayMs ?? 250;
  const cap = options.reconnect?.maxDelayMs ?? 10_000;
  const maxAttempts = options.reconnect?.maxAttempts ?? 8;
  const emit = (e: ClientEvent) => options.onEvent?.(e);
  const reports: RoundReport[] = [];
  let failures = 0;
  let lastError: unknown;
  while (reports.length < rounds) {
    if (options.signal?.aborted) throw new ClientError('ERR_CANCELLED', 'cancelled', { cause: options.signal.reason });
    if (failures > 0) {
      if (failures > maxAttempts)
        throw new ClientError('ERR_CONNECT', `gave up after ${maxAttempts} attempts: ${lastError instanceof Error ? lastError.message : String(lastError)}`, {
          cause: lastError,
        });
      // Full jitter: spread a crowd of clients reconnecting after a restart.
      const delayMs = Math.round(Math.random() * Math.min(cap, initial * 2 ** (failures - 1)));
      emit({ type: 'reconnecting', attempt: failures, delayMs });
      await sleep(delayMs, options.signal);
    }
    let ch: FrameChannel;
    try {
      ch = await openChannel(WS, options.url, { timeoutMs: options.connectTimeoutMs ?? 10_000 });
    } catch (e) {
      lastError = e;
      failures++;
      continue;
    }
    emit({ type: 'connected' });
    const end = await session(ch, options, trust, rounds - reports.length, emit, () => (failures = 0));
    reports.push(...end.reports);
    emit({ type: 'disconnected', code: end.code, reason: end.reason });
    if (end.error) throw end.error;
    if (reports.length >= rounds) break;
    if (FATAL.has(end.code)) throw new ClientError('ERR_REJECTED', `the server closed the connection: ${end.code} ${end.reason}`, { closeCode: end.code });
    lastError = new Error(`connection closed: ${end.code} ${end.reason}`);
    failures++;
  }
  return reports;
}

interface SessionEnd {
  reports: RoundReport[];
  code: number;
  reason: string;
  error?: ClientError;
}

interface Trust {
  readonly pinned: ReadonlyMap<string, Uint8Array> | undefined;
  readonly issuerKey: Uint8Array | undefined;
  /** Active mode only. */
  readonly mode: TrustMode | undefined;
}

function trustAnchors(options: ParticipateOptions): Trust {
  let pinned: Map<string, Uint8Array> | undefined;
  if (options.directory !== undefined) {
    pinned = new Map();
    const entries = options.directory instanceof Map ? [...options.directory] : Object.entries(options.directory);
    for (const [name, key] of entries as [string, Uint8Array | string][]) {
      const bytes = typeof key === 'string' ? parseKey(key, `directory key of ${name}`) : key;
      if (!(bytes instanceof Uint8Array) || bytes.length !== 32) throw new TypeError(`directory key of ${name} must be 32 bytes`);
      pinned.set(name, bytes);
    }
  }
  const issuerKey = typeof options.issuerKey === 'string' ? parseKey(options.issuerKey, 'issuerKey') : options.issuerKey;
  if (issuerKey !== undefined && issuerKey.length !== 32) throw new TypeError('issuerKey must be 32 bytes');
  if (options.identity === undefined) return { pinned, issuerKey, mode: undefined };
  const given: TrustMode | undefined = pinned && issuerKey ? 'pinned+issuer' : pinned ? 'pinned' : issuerKey ? 'issuer' : undefined;
  const mode = options.trust;
  if (mode !== undefined && !TRUST_MODES.includes(mode)) throw new TypeError(`trust must be one of ${TRUST_MODES.join(', ')}, got ${String(mode)}`);
  if (mode === undefined) {
    if (given === undefined)
      throw new TypeError(
        "active mode needs something to check the cohort's identity keys against: a pinned directory, an issuerKey, or trust: 'server' " +
          "to take the server's directory as sent (no protection against a server that substitutes keys)",
      );
    return { pinned, issuerKey, mode: given };
  }
  if (mode === 'server' && given !== undefined) throw new TypeError(`trust: 'server' contradicts the ${given === 'issuer' ? 'issuerKey' : 'directory'} given`);
  if (mode !== 'server' && mode !== given)
    throw new TypeError(`trust: '${mode}' needs ${mode === 'pinned' ? 'directory' : mode === 'issuer' ? 'issuerKey' : 'directory and issuerKey'}, and only that`);
  return { pinned, issuerKey, mode };
}

class IdentityFailure extends Error {}

/**
 * Check the directory the server sent with a round assignment against what this client trusts, and
 * return it as ClientId → identity key for the protocol. Throws IdentityFailure on any mismatch.
 */
async function checkDirectory(
  entries: readonly DirectoryEntry[],
  me: { clientId: number; identityKey: Uint8Array },
  trust: Trust,
  crypto: CryptoProvider,
): Promise<Map<number, Uint8Array>> {
  const out = new Map<number, Uint8Array>();
  const names = new Set<string>();
  const keys = new Set<string>();
  for (const e of entries) {
    if (e.identityKey.length !== 32) throw new IdentityFailure(`the identity key of client ${e.clientId} is not 32 bytes`);
    const hex = keyHex(e.identityKey);
    if (out.has(e.clientId) || names.has(e.identity) || keys.has(hex))
      throw new IdentityFailure(`the directory lists client ${e.clientId} / ${e.identity} / a key twice`);
    out.set(e.clientId, e.identityKey);
    names.add(e.identity);
    keys.add(hex);
    if (trust.pinned !== undefined) {
      const pinned = trust.pinned.get(e.identity);
      if (pinned === undefined) throw new IdentityFailure(`${e.identity} (client ${e.clientId}) is not in the pinned directory`);
      if (!bytesEqual(pinned, e.identityKey))
        throw new IdentityFailure(`the server's directory gives ${e.identity} the key ${hex.slice(0, 16)}…, the pinned directory ${keyHex(pinned).slice(0, 16)}…`);
    }
    if (trust.issuerKey !== undefined) {
      const cert = await verifyCertificate(e.certificate, trust.issuerKey, { crypto });
      if (!cert.ok) throw new IdentityFailure(`the certificate of ${e.identity} (client ${e.clientId}) is ${cert.reason}`);
      if (cert.claims.clientId !== e.identity || !bytesEqual(cert.claims.identityKey, e.identityKey))
        throw new IdentityFailure(`the certificate of client ${e.clientId} is for another identity or key than the directory says`);
    }
  }
  const mine = out.get(me.clientId);
  if (mine === undefined || !bytesEqual(mine, me.identityKey)) throw new IdentityFailure('the directory does not give this client its own identity key');
  return out;
}

/** One connection: challenge, hello, then rounds until `wanted` reports or the connection closes. */
async function session(
  ch: FrameChannel,
  options: ParticipateOptions,
  trust: Trust,
  wanted: number,
  emit: (e: ClientEvent) => void,
  onWelcome: () => void,
): Promise<SessionEnd> {
  const reports: RoundReport[] = [];
  let error: ClientError | undefined;
  let round: RoundInfo | undefined;
  let state: ClientState | undefined;
  let chain = Promise.resolve();
  let leaving = false;
  let helloSent = false;
  const crypto = options.crypto ?? defaultCrypto;
  const identityKey = options.identity !== undefined ? await identityPublicKey(options.identity, crypto) : undefined;
  const identityCheck = trust.mode;
  /** Give up on this server: an identity check failed (retrying cannot help). */
  const identityFailure = (message: string, abortRound?: { roundId: Uint8Array; clientId: number }) => {
    error = new ClientError('ERR_IDENTITY', message);
    leaving = true;
    if (abortRound)
      ch.send(encodeClientMessage(asRoundId(abortRound.roundId), clientId(abortRound.clientId), { case: 'abort', value: { code: 'ERR_SIGNATURE_INVALID' } }));
    ch.close(CLOSE.NORMAL, 'identity check failed');
  };
  const cancel = () => {
    error = new ClientError('ERR_CANCELLED', 'cancelled', { cause: options.signal?.reason });
    ch.close(CLOSE.NORMAL, 'cancelled');
  };
  options.signal?.addEventListener('abort', cancel, { once: true });

  const onFrame = async (bytes: Uint8Array) => {
    if (leaving) return;
    if (isControlFrame(bytes)) {
      const ctl = decodeControl(bytes, { allowAssignment: true });
      switch (ctl.body.case) {
        case 'challenge': {
          if (helloSent) throw new TransportError(CLOSE.MALFORMED, 'a second challenge');
          const ch0 = ctl.body.value;
          if (options.serverId !== undefined && ch0.serverId !== options.serverId)
            return identityFailure(`the server calls itself '${ch0.serverId}', expected '${options.serverId}'`);
          let proof: { identityKey: Uint8Array; signature: Uint8Array; certificate: string } | undefined;
          if (options.identity !== undefined) {
            if (ch0.mode !== WireMode.ACTIVE) return identityFailure('the server runs semi-honest rounds; this client has an identity and takes part in active rounds only');
            const transcript = await helloTranscript({ version: PROTOCOL_VERSION, nonce: ch0.nonce, serverId: ch0.serverId, token: options.token, identityKey: identityKey! }, crypto);
            const signature = await (await crypto.ed25519(options.identity)).sign(transcript);
            proof = { identityKey: identityKey!, signature, certificate: options.certificate ?? '' };
          }
          helloSent = true;
          ch.send(encodeControl({ case: 'hello', value: { version: PROTOCOL_VERSION, token: options.token, ...(proof ? { proof } : {}) } }));
          return;
        }
        case 'welcome':
          onWelcome();
          emit({ type: 'welcome', clientId: ctl.body.value.clientId, identity: ctl.body.value.identity });
          return;
        case 'assignment': {
          const a = ctl.body.value;
          let directory: Map<number, Uint8Array> | undefined;
          if (options.identity !== undefined) {
            try {
              directory = await checkDirectory(a.directory, { clientId: a.clientId, identityKey: identityKey! }, trust, crypto);
            } catch (e) {
              if (!(e instanceof IdentityFailure)) throw e;
              return identityFailure(`round ${a.roundNumber}: ${e.message}`, { roundId: a.roundId, clientId: a.clientId });
            }
          }
          round = {
            round: a.roundNumber,
            roundId: keyHex(a.roundId),
            clientId: a.clientId,
            bits: a.bits,
            dimension: a.dimension,
            ...(directory && identityCheck ? { identityCheck } : {}),
          };
          emit({ type: 'assigned', round });
          const input = options.input ?? (await options.inputProvider!(round));
          const max = 2 ** a.bits;
          let bad: string | undefined;
          if (!(input instanceof Uint32Array)) bad = 'the input is not a Uint32Array';
          else if (input.length !== a.dimension) bad = `the input has ${input.length} elements, the round wants ${a.dimension}`;
          else if (a.bits < 32 && input.some((x) => x >= max)) bad = `the input has elements ≥ 2^${a.bits}`;
          if (bad !== undefined) {
            error = new ClientError('ERR_INPUT', bad);
            leaving = true;
            ch.close(CLOSE.NORMAL, 'input does not fit the round');
            return;
          }
          state = createClient({
            id: clientId(a.clientId),
            input: input!,
            ...(options.crypto ? { crypto: options.crypto } : {}),
            ...(directory ? { identity: options.identity!, directory } : {}),
          });
          return;
        }
        case 'finished': {
          const f = ctl.body.value;
          if (!round || f.roundNumber !== round.round) return;
          const report: RoundReport = {
            ...round,
            completed: f.completed,
            included: f.included,
            code: f.code || (state?.abortCode ?? undefined),
            reason: f.reason || undefined,
            survivors: f.survivors,
          };
          reports.push(report);
          emit({ type: 'finished', report });
          round = undefined;
          state = undefined;
          if (reports.length >= wanted) {
            leaving = true;
            ch.close(CLOSE.NORMAL, 'done');
          }
          return;
        }
        default:
          throw new TransportError(CLOSE.MALFORMED, `unexpected ${ctl.body.case} frame from the server`);
      }
    }
    if (state === undefined) return; // not in a round (late frame)
    const stage = REPLY[state.stage];
    const step = await handleClientMessage(state, bytes);
    state = step.state;
    if (options.identity !== undefined && state.config !== undefined && state.config.mode !== 'active')
      return identityFailure(`round ${round?.round}: the server started a semi-honest round; this client takes part in active rounds only`, {
        roundId: state.config.roundId,
        clientId: state.id,
      });
    if (step.error?.code === 'ERR_SIGNATURE_INVALID' && options.identity !== undefined && step.outgoing !== null) {
      // The protocol caught a key not signed by the identity the directory names: send the abort, then leave.
      ch.send(step.outgoing);
      return identityFailure(`round ${round?.round}: ${step.error.message}`);
    }
    if (step.outgoing === null) return;
    const decision = stage && options.unsafeBeforeSend ? options.unsafeBeforeSend(stage, step.outgoing) : 'send';
    if (decision === 'silent') return;
    if (decision === 'disconnect') {
      leaving = true;
      ch.close(CLOSE.NORMAL, 'leaving');
      return;
    }
    ch.send(step.outgoing);
    if (stage) emit({ type: 'sent', stage, bytes: step.outgoing.length });
  };

  ch.onFrame((bytes) => {
    chain = chain.then(() =>
      onFrame(bytes).catch((e: unknown) => {
        const code = e instanceof TransportError ? e.closeCode : CLOSE.INTERNAL;
        leaving = true;
        ch.close(code, e instanceof Error ? e.message.slice(0, 120) : 'error');
      }),
    );
  });
  const { code, reason } = await ch.closed;
  await chain;
  options.signal?.removeEventListener('abort', cancel);
  if (round !== undefined && reports.length < wanted) {
    // The connection ended mid-round: this client is not in that round's sum.
    const report: RoundReport = { ...round, completed: false, included: false, code: 'ERR_DISCONNECTED', reason: `connection closed: ${code} ${reason}`, survivors: 0 };
    reports.push(report);
    emit({ type: 'finished', report });
  }
  if (code === CLOSE.UNAUTHORIZED) error ??= new ClientError('ERR_UNAUTHORIZED', `the server refused the token: ${reason}`, { closeCode: code });
  return { reports, code, reason, ...(error ? { error } : {}) };
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    // The listener is removed when the timer fires: a long-lived signal across many reconnects
    // must not collect one listener per back-off.
    const onAbort = () => {
      clearTimeout(t);
      reject(new ClientError('ERR_CANCELLED', 'cancelled', { cause: signal?.reason }));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
