/**
 * A client of the aggregation service: connect, authenticate, wait for a round, run the protocol's
 * client state machine (protocol/clientRound.ts) over the WebSocket, and repeat for `rounds` rounds,
 * reconnecting with exponential back-off between them. The same code runs in browsers (the global
 * WebSocket) and in Node (pass `WebSocket` from the `ws` package).
 */
import { defaultCrypto, defaultCryptoLacksSubtle } from '#crypto-default';
import type { CryptoProvider } from '../crypto/provider.js';
import { clientId } from '../ids.js';
import { clientContext, createClient, handleClientMessage, type ClientContext, type ClientDpPolicy, type ClientState } from '../protocol/clientRound.js';
import { REPLY_STAGE } from '../protocol/stages.js';
import { PROTOCOL_VERSION } from '../wire/codec.js';
import { CLOSE, decodeControl, isControlFrame, TransportError } from '../transport/frames.js';
import type { DirectoryEntry } from '../wire/gen/secagg/v1/service_pb.js';
import { bytesEqual, helloTranscript, identityPublicKey, parseKey, toHex as keyHex, verifyCertificate } from '../identity/index.js';
import { openChannel, type FrameChannel, type WebSocketConstructor } from '../transport/socket.js';
import { sameDpEncoding, type DpEncoding } from '../dp/encoding.js';
import { ClientError, type ClientWarning } from './errors.js';
import {
  createSession,
  sessionStep,
  type ClientEvent,
  type ReplyStage,
  type RoundInfo,
  type RoundReport,
  type SessionAction,
  type SessionEvent,
  type SessionState,
  type TrustMode,
} from './session.js';

export type { ReplyStage, RoundInfo, RoundReport, ClientEvent, TrustMode } from './session.js';

const REPLY = REPLY_STAGE;

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
  /**
   * This client's differential-privacy policy (ClientContext.dp): a round that asks for less noise
   * (`minTargetVariance`, σ² per coordinate in ring units), another mechanism, or (with `required`)
   * none is refused before anything is sent. Without it the client adds whatever noise a round asks for.
   *
   * Either one policy for every round, or a function of the round, called when the round is
   * assigned (before the input provider), so the policy can be bound to the round's own encoding:
   * `(round) => dpPolicyFor({ encoding: round.dpEncoding, minNoiseMultiplier })`. A function that
   * throws refuses the round (ClientError ERR_DP_ENCODING, nothing sent), as does a policy made by
   * dpPolicyFor for another encoding than the one the round's assignment carries.
   */
  readonly dp?: ClientDpPolicy | ((round: RoundInfo) => ClientDpPolicy);
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: ClientEvent) => void;
  /**
   * Where warnings go (once per participate() call), instead of `console.warn` (once per page).
   * The one warning today: `WARN_NO_WEBCRYPTO`, the runtime has no `crypto.subtle` (a page that is
   * not a secure context), so the default crypto provider falls back to JavaScript for everything.
   */
  readonly onWarning?: (warning: ClientWarning) => void;
  /**
   * Refuse to run without `crypto.subtle` instead of warning: participate() rejects with
   * ClientError `ERR_NO_WEBCRYPTO` before connecting. Default false. Only for the default crypto
   * provider — with `crypto` given, the caller has chosen.
   */
  readonly requireWebCrypto?: boolean;
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
  if (options.crypto === undefined && defaultCryptoLacksSubtle()) noWebCrypto(options);
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
  let reconnected = false;
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
      const permanent = permanentConnectFailure(e);
      if (permanent !== undefined) throw new ClientError('ERR_CONNECT', `${permanent} (not retried)`, { cause: e });
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
    // A second connection with this identity: on the first connection another client holds it and
    // waiting will not help; after a drop it may be this client's own old connection, which the
    // server forgets at its next keep-alive, so that case is retried.
    if (end.code === CLOSE.DUPLICATE_IDENTITY && !reconnected)
      throw new ClientError('ERR_REJECTED', `the server closed the connection: ${end.code} ${end.reason} (another client uses this identity)`, {
        closeCode: end.code,
      });
    reconnected = true;
    lastError = new Error(`connection closed: ${end.code} ${end.reason}`);
    failures++;
  }
  return reports;
}

/** Whether the default console.warn has been given the WARN_NO_WEBCRYPTO warning (once per page). */
let warnedNoWebCrypto = false;

/** No crypto.subtle for the default provider: refuse (requireWebCrypto) or warn. */
function noWebCrypto(options: ParticipateOptions): void {
  const insecure = (globalThis as { isSecureContext?: boolean }).isSecureContext === false;
  const why = insecure ? 'this page is not a secure context (only https:// pages, and http://localhost, get WebCrypto)' : 'this runtime has no crypto.subtle';
  if (options.requireWebCrypto === true)
    throw new ClientError('ERR_NO_WEBCRYPTO', `WebCrypto is unavailable: ${why}; requireWebCrypto refuses the JavaScript fallback`);
  const message =
    `WebCrypto is unavailable: ${why}. secagg falls back to JavaScript crypto (@noble): several times slower (its AES keystream ~30×), ` +
    'and its AES uses lookup tables, not constant-time. Serve the page over https:// (or pass requireWebCrypto: true to refuse).';
  if (options.onWarning !== undefined) options.onWarning({ code: 'WARN_NO_WEBCRYPTO', message });
  else if (!warnedNoWebCrypto) {
    warnedNoWebCrypto = true;
    console.warn(`secagg: ${message}`);
  }
}

/**
 * Why connecting can never succeed, or undefined when a retry might: a malformed URL (the
 * constructor throws), an HTTP answer other than an upgrade that is not temporary (a wrong path
 * or host: 4xx but 408/429), or a TLS failure (an untrusted or mismatched certificate, a plain
 * server behind wss://). A refused connection, a timeout or a 5xx (a restart) is retried.
 */
function permanentConnectFailure(e: unknown): string | undefined {
  if (e instanceof SyntaxError || e instanceof TypeError) return `bad url: ${e.message}`;
  if (!(e instanceof Error)) return undefined;
  const status = /Unexpected server response: (\d{3})/.exec(e.message);
  if (status) {
    const code = Number(status[1]);
    return code >= 400 && code < 500 && code !== 408 && code !== 429 ? `${e.message} (is the path /ws?)` : undefined;
  }
  const cause = e.cause as { code?: unknown; message?: unknown } | undefined;
  const code = typeof cause?.code === 'string' ? cause.code : '';
  if (/CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY|HOSTNAME_MISMATCH|ALTNAME/.test(code) || /SSL routines|wrong version number/.test(e.message))
    return `TLS failure: ${e.message.trim()}`;
  return undefined;
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
    throw new TypeError(
      `trust: '${mode}' needs ${mode === 'pinned' ? 'directory' : mode === 'issuer' ? 'issuerKey' : 'directory and issuerKey'}, and only that`,
    );
  return { pinned, issuerKey, mode };
}

class IdentityFailure extends Error {}

/**
 * The DP policy for this round: options.dp itself, or what it returns for the round (checked like
 * any ClientContext.dp). A ClientError (ERR_DP_ENCODING) refuses the round instead: the function
 * threw (e.g. dpPolicyFor without an encoding in the assignment), or the policy was made by
 * dpPolicyFor for another encoding than the assignment's — the app may encode with either, and the
 * noise floor only protects updates encoded with the encoding it was computed for.
 */
function roundDpPolicy(dp: ParticipateOptions['dp'], round: RoundInfo): ClientDpPolicy | undefined | ClientError {
  let policy: ClientDpPolicy | undefined;
  if (typeof dp === 'function') {
    try {
      policy = dp(round);
      clientContext({ dp: policy }); // its shape and ranges, now rather than at the round's start
    } catch (e) {
      if (e instanceof ClientError) return e;
      return new ClientError('ERR_DP_ENCODING', `round ${round.round}: no DP policy for this round: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
      });
    }
  } else policy = dp;
  const bound = (policy as { readonly encoding?: DpEncoding } | undefined)?.encoding;
  if (bound !== undefined && round.dpEncoding !== undefined && !sameDpEncoding(bound, round.dpEncoding))
    return new ClientError(
      'ERR_DP_ENCODING',
      `round ${round.round}: the assignment's DP encoding (clip ${round.dpEncoding.clip}, scale ${round.dpEncoding.scale}) is not the one this client's DP policy was made for (clip ${bound.clip}, scale ${bound.scale})`,
    );
  return policy;
}

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
        throw new IdentityFailure(
          `the server's directory gives ${e.identity} the key ${hex.slice(0, 16)}…, the pinned directory ${keyHex(pinned).slice(0, 16)}…`,
        );
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

/**
 * One connection: challenge, hello, then rounds until `wanted` reports or the connection closes.
 * The control frames go through the session state machine (session.ts); this function performs
 * what it asks for — sending, closing, the asynchronous work (hello proof, directory check, input)
 * — and runs each round's protocol messages through the protocol's client state machine. Frames
 * are handled one at a time, in order, each with all the work it causes.
 */
async function session(
  ch: FrameChannel,
  options: ParticipateOptions,
  trust: Trust,
  wanted: number,
  emit: (e: ClientEvent) => void,
  onWelcome: () => void,
): Promise<SessionEnd> {
  const crypto = options.crypto ?? defaultCrypto;
  const identityKey = options.identity !== undefined ? await identityPublicKey(options.identity, crypto) : undefined;
  let s: SessionState = createSession({
    token: options.token,
    active: options.identity !== undefined,
    wanted,
    ...(options.serverId !== undefined ? { serverId: options.serverId } : {}),
    ...(trust.mode !== undefined ? { identityCheck: trust.mode } : {}),
  });
  /** The round's protocol state, while a round runs. */
  let state: ClientState | undefined;
  /** The protocol calls' context for the current round (crypto, identity, the directory checked at the assignment). */
  let protocol: ClientContext = clientContext();
  /** The DP policy of the round being started (options.dp, or what it gave for this round). */
  let roundPolicy: ClientDpPolicy | undefined;
  let chain = Promise.resolve();

  /** Feed one event to the session and perform its actions (answers to asked-for work are fed back, in turn). */
  const run = async (event: SessionEvent): Promise<void> => {
    const step = sessionStep(s, event);
    s = step.state;
    for (const a of step.actions) await perform(a);
  };

  const perform = async (a: SessionAction): Promise<void> => {
    switch (a.type) {
      case 'send':
        return ch.send(a.frame);
      case 'close':
        return ch.close(a.code, a.reason);
      case 'emit':
        return emit(a.event);
      case 'welcomed':
        return onWelcome();
      case 'prove': {
        const transcript = await helloTranscript(
          { version: PROTOCOL_VERSION, nonce: a.nonce, serverId: a.serverId, token: options.token, identityKey: identityKey! },
          crypto,
        );
        const signature = await (await crypto.ed25519(options.identity!)).sign(transcript);
        return run({ type: 'proof', proof: { identityKey: identityKey!, signature, certificate: options.certificate ?? '' } });
      }
      case 'check-directory': {
        let directory: Map<number, Uint8Array>;
        try {
          directory = await checkDirectory(a.entries, { clientId: a.clientId, identityKey: identityKey! }, trust, crypto);
        } catch (e) {
          if (!(e instanceof IdentityFailure)) throw e;
          return run({ type: 'directory', ok: false, message: e.message });
        }
        return run({ type: 'directory', ok: true, directory });
      }
      case 'get-input': {
        const dp = roundDpPolicy(options.dp, a.round);
        if (dp instanceof ClientError) return run({ type: 'refuse', error: dp });
        roundPolicy = dp;
        return run({ type: 'input', input: options.input ?? (await options.inputProvider!(a.round)) });
      }
      case 'start-round':
        state = createClient({ id: clientId(a.clientId), input: a.input });
        protocol = clientContext({
          ...(options.crypto ? { crypto: options.crypto } : {}),
          ...(a.directory ? { identity: options.identity!, directory: a.directory } : {}),
          ...(roundPolicy ? { dp: roundPolicy } : {}),
        });
        return;
      case 'end-round':
        state = undefined;
        return;
    }
  };

  const cancel = () => void run({ type: 'cancel', cause: options.signal?.reason });
  options.signal?.addEventListener('abort', cancel, { once: true });

  /** A protocol message of the round, for the protocol's client state machine. */
  const onProtocolFrame = async (bytes: Uint8Array) => {
    if (state === undefined) return; // not in a round (late frame)
    const stage = REPLY[state.stage];
    const step = await handleClientMessage(protocol, state, bytes);
    state = step.state;
    if (options.identity !== undefined && state.config !== undefined && state.config.mode !== 'active') {
      return run({
        type: 'identity-failure',
        message: `round ${s.round?.round}: the server started a semi-honest round; this client takes part in active rounds only`,
        abort: { roundId: state.config.roundId, clientId: state.id },
      });
    }
    if (step.error?.code === 'ERR_SIGNATURE_INVALID' && options.identity !== undefined && step.outgoing !== null) {
      // The protocol caught a key not signed by the identity the directory names: send the abort, then leave.
      ch.send(step.outgoing);
      return run({ type: 'identity-failure', message: `round ${s.round?.round}: ${step.error.message}` });
    }
    if (step.outgoing === null) return;
    const decision = stage && options.unsafeBeforeSend ? options.unsafeBeforeSend(stage, step.outgoing) : 'send';
    if (decision === 'silent') return;
    if (decision === 'disconnect') return run({ type: 'leave', reason: 'leaving' });
    ch.send(step.outgoing);
    if (stage) emit({ type: 'sent', stage, bytes: step.outgoing.length });
  };

  const onFrame = async (bytes: Uint8Array) => {
    if (s.phase === 'leaving' || s.phase === 'closed') return;
    if (isControlFrame(bytes))
      return run({ type: 'control', control: decodeControl(bytes, { allowAssignment: true }), abortCode: state?.abortCode ?? undefined });
    return onProtocolFrame(bytes);
  };

  ch.onFrame((bytes) => {
    chain = chain.then(() =>
      onFrame(bytes).catch((e: unknown) =>
        run({ type: 'fail', code: e instanceof TransportError ? e.closeCode : CLOSE.INTERNAL, reason: e instanceof Error ? e.message : 'error' }),
      ),
    );
  });
  const { code, reason } = await ch.closed;
  await chain;
  options.signal?.removeEventListener('abort', cancel);
  await run({ type: 'closed', code, reason });
  return { reports: [...s.reports], code, reason, ...(s.error ? { error: s.error } : {}) };
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
