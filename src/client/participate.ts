/**
 * A client of the aggregation service: connect, authenticate, wait for a round, run the protocol's
 * client state machine (protocol/clientRound.ts) over the WebSocket, and repeat for `rounds` rounds,
 * reconnecting with exponential back-off between them. The same code runs in browsers (the global
 * WebSocket) and in Node (pass `WebSocket` from the `ws` package).
 */
import type { CryptoProvider } from '../crypto/provider.js';
import { clientId } from '../ids.js';
import { createClient, handleClientMessage, type ClientStage, type ClientState } from '../protocol/clientRound.js';
import { PROTOCOL_VERSION } from '../wire/codec.js';
import { CLOSE, decodeControl, encodeControl, isControlFrame, TransportError } from '../transport/frames.js';
import { openChannel, type FrameChannel, type WebSocketConstructor } from '../transport/socket.js';
import { ClientError } from './errors.js';

/** The stage whose message a client is about to send. */
export type ReplyStage = 'advertise' | 'share' | 'masked' | 'consistency' | 'unmask';

const REPLY: Partial<Record<ClientStage, ReplyStage>> = {
  'awaiting-start': 'advertise',
  'awaiting-keys': 'share',
  'awaiting-shares': 'masked',
  'awaiting-consistency': 'consistency',
  'awaiting-unmask': 'unmask',
};

export interface RoundInfo {
  readonly round: number;
  /** Hex. */
  readonly roundId: string;
  readonly clientId: number;
  readonly bits: number;
  readonly dimension: number;
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
   * Test hook: decide what to do with a reply before it is sent — send it, stay silent (a client
   * that never answers), or disconnect (a client that drops out at this stage).
   */
  readonly unsafeBeforeSend?: (stage: ReplyStage, bytes: Uint8Array) => 'send' | 'silent' | 'disconnect';
}

const toHex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

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
    const end = await session(ch, options, rounds - reports.length, emit, () => (failures = 0));
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

/** One connection: hello, then rounds until `wanted` reports or the connection closes. */
async function session(
  ch: FrameChannel,
  options: ParticipateOptions,
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
  const cancel = () => {
    error = new ClientError('ERR_CANCELLED', 'cancelled', { cause: options.signal?.reason });
    ch.close(CLOSE.NORMAL, 'cancelled');
  };
  options.signal?.addEventListener('abort', cancel, { once: true });

  const onFrame = async (bytes: Uint8Array) => {
    if (leaving) return;
    if (isControlFrame(bytes)) {
      const ctl = decodeControl(bytes);
      switch (ctl.body.case) {
        case 'welcome':
          onWelcome();
          emit({ type: 'welcome', clientId: ctl.body.value.clientId, identity: ctl.body.value.identity });
          return;
        case 'assignment': {
          const a = ctl.body.value;
          round = { round: a.roundNumber, roundId: toHex(a.roundId), clientId: a.clientId, bits: a.bits, dimension: a.dimension };
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
          state = createClient({ id: clientId(a.clientId), input: input!, ...(options.crypto ? { crypto: options.crypto } : {}) });
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
  ch.send(encodeControl({ case: 'hello', value: { version: PROTOCOL_VERSION, token: options.token } }));
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
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(new ClientError('ERR_CANCELLED', 'cancelled', { cause: signal.reason }));
      },
      { once: true },
    );
  });
}
