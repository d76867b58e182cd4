/**
 * One connection's control-frame protocol, as a pure state machine: events in (a decoded control
 * frame, the result of work the machine asked for, the connection's close), state and actions out
 * (frames to send, a close, events for the caller, work to do). It does no I/O, awaits nothing and
 * reads no clock, so every path — a second challenge, a round assignment whose directory fails
 * its check, a close in the middle of a round — is a plain unit test. participate.ts performs the
 * actions and runs the reconnect loop around it; the protocol messages of a round go to the
 * protocol's own client state machine (protocol/clientRound.ts), not through here.
 *
 *   awaiting-challenge ─challenge─▶ (proving ─proof─▶) awaiting-welcome ─welcome─▶ ready
 *   ready: assignment ─▶ (DP encoding check) (directory check) ─▶ input ─▶ a round runs ─finished─▶ ready …
 *   any ─failure / enough rounds─▶ leaving ─closed─▶ closed
 *
 * Browser-safe.
 */
import { clientId, roundId as asRoundId } from '../ids.js';
import type { Stage } from '../protocol/stages.js';
import { encodeClientMessage, PROTOCOL_VERSION } from '../wire/codec.js';
import { CLOSE, encodeControl } from '../transport/frames.js';
import type { Control, DirectoryEntry, RoundAssignment, DpEncoding as WireDpEncoding } from '../wire/gen/secagg/v1/service_pb.js';
import { DpMechanism, Mode as WireMode } from '../wire/gen/secagg/v1/secagg_pb.js';
import { toHex } from '../identity/index.js';
import { dpEncodingProblem, type DpEncoding } from '../dp/encoding.js';
import { ClientError } from './errors.js';

/** The stage whose message a client is about to send. */
export type ReplyStage = Stage;

/**
 * What an active-mode client checks the cohort's identity keys against: a pinned directory, an
 * issuer's certificates, both, or — asked for explicitly — nothing but the server's word.
 */
export type TrustMode = 'pinned' | 'issuer' | 'pinned+issuer' | 'server';

export interface RoundInfo {
  readonly round: number;
  /** Hex. */
  readonly roundId: string;
  readonly clientId: number;
  readonly bits: number;
  readonly dimension: number;
  /**
   * A DP round: the service's encoding from the assignment (RoundAssignment.dp_encoding, checked
   * by the session: ranges, and its dimension and bits are the round's), to encode the update with
   * (encodeForRound) and to bind the noise floor to (dpPolicyFor). Still the server's word.
   */
  readonly dpEncoding?: DpEncoding;
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

export interface SessionConfig {
  /** Bearer token sent in the hello. */
  readonly token: string;
  /** Active mode: the client has an identity, proves it at hello and takes part in active rounds only. */
  readonly active: boolean;
  /** Refuse a server whose challenge names another server id. */
  readonly serverId?: string;
  /** Active mode: reported in every RoundInfo. */
  readonly identityCheck?: TrustMode;
  /** Round reports wanted on this connection: after that many the client leaves. */
  readonly wanted: number;
}

export type SessionPhase = 'awaiting-challenge' | 'proving' | 'awaiting-welcome' | 'ready' | 'leaving' | 'closed';

export interface SessionState {
  readonly config: SessionConfig;
  readonly phase: SessionPhase;
  /** The round this client was assigned (from the assignment until its 'finished' frame). */
  readonly round: RoundInfo | undefined;
  /** An assignment waiting for its directory check or its input (with its checked DP encoding, if any). */
  readonly pending:
    | {
        readonly assignment: RoundAssignment;
        readonly directory: ReadonlyMap<number, Uint8Array> | undefined;
        readonly dpEncoding: DpEncoding | undefined;
      }
    | undefined;
  readonly reports: readonly RoundReport[];
  /** Why the session fails (given up on this server, or cancelled). */
  readonly error: ClientError | undefined;
  /** Set once closed. */
  readonly closed: { readonly code: number; readonly reason: string } | undefined;
}

export type SessionEvent =
  /** A control frame from the server; `abortCode` is the protocol state machine's, if the round aborted on this client. */
  | { readonly type: 'control'; readonly control: Control; readonly abortCode?: string | undefined }
  /** Answer to 'prove': the identity proof for the hello. */
  | { readonly type: 'proof'; readonly proof: { readonly identityKey: Uint8Array; readonly signature: Uint8Array; readonly certificate: string } }
  /** Answer to 'check-directory'. */
  | { readonly type: 'directory'; readonly ok: true; readonly directory: ReadonlyMap<number, Uint8Array> }
  | { readonly type: 'directory'; readonly ok: false; readonly message: string }
  /** Answer to 'get-input'. */
  | { readonly type: 'input'; readonly input: unknown }
  /** Instead of an input: this client refuses the pending round (e.g. its DP policy cannot be met). Nothing of the round is sent. */
  | { readonly type: 'refuse'; readonly error: ClientError }
  /** The round's protocol found an identity problem (a semi-honest round, a key not signed by its owner). */
  | { readonly type: 'identity-failure'; readonly message: string; readonly abort?: { readonly roundId: Uint8Array; readonly clientId: number } }
  /** Leave now without an error (a test's disconnecting client). */
  | { readonly type: 'leave'; readonly reason: string }
  | { readonly type: 'cancel'; readonly cause: unknown }
  /** A frame that cannot be handled (undecodable, …): close with `code`. */
  | { readonly type: 'fail'; readonly code: number; readonly reason: string }
  | { readonly type: 'closed'; readonly code: number; readonly reason: string };

export type SessionAction =
  | { readonly type: 'send'; readonly frame: Uint8Array }
  | { readonly type: 'close'; readonly code: number; readonly reason: string }
  | { readonly type: 'emit'; readonly event: ClientEvent }
  /** The server accepted this client (the reconnect loop resets its failure count). */
  | { readonly type: 'welcomed' }
  /** Active mode: compute the hello proof over this challenge, answer with a 'proof' event. */
  | { readonly type: 'prove'; readonly nonce: Uint8Array; readonly serverId: string }
  /** Active mode: check the assignment's directory against the trust anchors, answer with a 'directory' event. */
  | { readonly type: 'check-directory'; readonly entries: readonly DirectoryEntry[]; readonly clientId: number }
  /** Obtain this round's input, answer with an 'input' event. */
  | { readonly type: 'get-input'; readonly round: RoundInfo }
  /** Run the round's protocol with this input (and directory, active mode). */
  | { readonly type: 'start-round'; readonly clientId: number; readonly input: Uint32Array; readonly directory: ReadonlyMap<number, Uint8Array> | undefined }
  /** The round is over for this client: drop its protocol state. */
  | { readonly type: 'end-round' };

export interface SessionStep {
  readonly state: SessionState;
  readonly actions: readonly SessionAction[];
}

export function createSession(config: SessionConfig): SessionState {
  return { config, phase: 'awaiting-challenge', round: undefined, pending: undefined, reports: [], error: undefined, closed: undefined };
}

const hello = (token: string, proof?: { identityKey: Uint8Array; signature: Uint8Array; certificate: string }): SessionAction => ({
  type: 'send',
  frame: encodeControl({ case: 'hello', value: { version: PROTOCOL_VERSION, token, ...(proof ? { proof } : {}) } }),
});

/** Give up on this server: retrying cannot help. Aborts the round it names first, if any. */
function leave(
  s: SessionState,
  error: ClientError | undefined,
  reason: string,
  abort?: { readonly roundId: Uint8Array; readonly clientId: number },
): SessionStep {
  const actions: SessionAction[] = [];
  if (abort)
    actions.push({
      type: 'send',
      frame: encodeClientMessage(asRoundId(abort.roundId), clientId(abort.clientId), { case: 'abort', value: { code: 'ERR_SIGNATURE_INVALID' } }),
    });
  actions.push({ type: 'close', code: CLOSE.NORMAL, reason });
  return { state: { ...s, phase: 'leaving', ...(error ? { error } : {}) }, actions };
}

const identityFailure = (s: SessionState, message: string, abort?: { readonly roundId: Uint8Array; readonly clientId: number }) =>
  leave(s, new ClientError('ERR_IDENTITY', message), 'identity check failed', abort);

/**
 * The assignment's DP encoding as the library's DpEncoding, or why it cannot be one: a known
 * mechanism, every field in range (dpEncodingProblem), and the round's own dimension and bits.
 */
function dpEncodingFromWire(w: WireDpEncoding, a: RoundAssignment): DpEncoding | string {
  const mechanism = w.mechanism === DpMechanism.SKELLAM ? 'skellam' : w.mechanism === DpMechanism.DISCRETE_GAUSSIAN ? 'dgauss' : undefined;
  if (mechanism === undefined) return `unknown mechanism ${w.mechanism}`;
  const encoding: DpEncoding = {
    version: 1,
    mechanism,
    dimension: w.dimension,
    bits: w.bits,
    clip: w.clip,
    scale: w.scale,
    beta: w.beta,
    noiseMultiplier: w.noiseMultiplier,
  };
  if (w.version !== 1) return `unknown encoding version ${w.version}`;
  if (w.dimension !== a.dimension) return `its dimension ${w.dimension} is not the round's ${a.dimension}`;
  if (w.bits !== a.bits) return `its bits ${w.bits} are not the round's ${a.bits}`;
  return dpEncodingProblem(encoding) ?? encoding;
}

/** The assignment is accepted (its directory checked, in active mode): report it and ask for the input. */
function accept(s: SessionState, a: RoundAssignment, directory: ReadonlyMap<number, Uint8Array> | undefined, dpEncoding: DpEncoding | undefined): SessionStep {
  const round: RoundInfo = {
    round: a.roundNumber,
    roundId: toHex(a.roundId),
    clientId: a.clientId,
    bits: a.bits,
    dimension: a.dimension,
    ...(dpEncoding ? { dpEncoding } : {}),
    ...(directory && s.config.identityCheck ? { identityCheck: s.config.identityCheck } : {}),
  };
  return {
    state: { ...s, round, pending: { assignment: a, directory, dpEncoding } },
    actions: [
      { type: 'emit', event: { type: 'assigned', round } },
      { type: 'get-input', round },
    ],
  };
}

/** Why `input` cannot be this round's input, or undefined. */
function badInput(input: unknown, a: RoundAssignment): string | undefined {
  if (!(input instanceof Uint32Array)) return 'the input is not a Uint32Array';
  if (input.length !== a.dimension) return `the input has ${input.length} elements, the round wants ${a.dimension}`;
  const max = 2 ** a.bits;
  if (a.bits < 32 && input.some((x) => x >= max)) return `the input has elements ≥ 2^${a.bits}`;
  return undefined;
}

function onControl(s: SessionState, control: Control, abortCode: string | undefined): SessionStep {
  const body = control.body;
  switch (body.case) {
    case 'challenge': {
      if (s.phase !== 'awaiting-challenge')
        return { state: { ...s, phase: 'leaving' }, actions: [{ type: 'close', code: CLOSE.MALFORMED, reason: 'a second challenge' }] };
      const c = body.value;
      if (s.config.serverId !== undefined && c.serverId !== s.config.serverId)
        return identityFailure(s, `the server calls itself '${c.serverId}', expected '${s.config.serverId}'`);
      if (!s.config.active) return { state: { ...s, phase: 'awaiting-welcome' }, actions: [hello(s.config.token)] };
      if (c.mode !== WireMode.ACTIVE)
        return identityFailure(s, 'the server runs semi-honest rounds; this client has an identity and takes part in active rounds only');
      return { state: { ...s, phase: 'proving' }, actions: [{ type: 'prove', nonce: c.nonce, serverId: c.serverId }] };
    }
    case 'welcome':
      return {
        state: { ...s, phase: 'ready' },
        actions: [{ type: 'welcomed' }, { type: 'emit', event: { type: 'welcome', clientId: body.value.clientId, identity: body.value.identity } }],
      };
    case 'assignment': {
      const a = body.value;
      // A malformed DP encoding: the server cannot be trusted to run this round; nothing is sent.
      let dpEncoding: DpEncoding | undefined;
      if (a.dpEncoding !== undefined) {
        const e = dpEncodingFromWire(a.dpEncoding, a);
        if (typeof e === 'string')
          return leave(s, new ClientError('ERR_DP_ENCODING', `round ${a.roundNumber}: the assignment's DP encoding is refused: ${e}`), 'bad DP encoding');
        dpEncoding = e;
      }
      if (!s.config.active) return accept(s, a, undefined, dpEncoding);
      return {
        state: { ...s, pending: { assignment: a, directory: undefined, dpEncoding } },
        actions: [{ type: 'check-directory', entries: a.directory, clientId: a.clientId }],
      };
    }
    case 'finished': {
      const f = body.value;
      if (!s.round || f.roundNumber !== s.round.round) return { state: s, actions: [] }; // not this client's round
      const report: RoundReport = {
        ...s.round,
        completed: f.completed,
        included: f.included,
        code: f.code || abortCode,
        reason: f.reason || undefined,
        survivors: f.survivors,
      };
      const reports = [...s.reports, report];
      const actions: SessionAction[] = [{ type: 'end-round' }, { type: 'emit', event: { type: 'finished', report } }];
      const done = reports.length >= s.config.wanted;
      if (done) actions.push({ type: 'close', code: CLOSE.NORMAL, reason: 'done' });
      return { state: { ...s, round: undefined, pending: undefined, reports, ...(done ? { phase: 'leaving' as const } : {}) }, actions };
    }
    default:
      return {
        state: { ...s, phase: 'leaving' },
        actions: [{ type: 'close', code: CLOSE.MALFORMED, reason: `unexpected ${body.case} frame from the server` }],
      };
  }
}

/**
 * One event in, the next state and what to do out. After the session has decided to leave, only
 * the close is taken into account.
 *
 * @example
 * ```ts
 * let s = createSession({ token, active: false, wanted: 1 });
 * ({ state: s, actions } = sessionStep(s, { type: 'control', control: decodeControl(frame, { allowAssignment: true }) }));
 * // actions: [{ type: 'send', frame: <hello> }]
 * ```
 */
export function sessionStep(s: SessionState, event: SessionEvent): SessionStep {
  if (s.phase === 'closed') return { state: s, actions: [] };
  if (event.type === 'closed') {
    const reports = [...s.reports];
    const actions: SessionAction[] = [];
    if (s.round !== undefined && reports.length < s.config.wanted) {
      // The connection ended mid-round: this client is not in that round's sum.
      const report: RoundReport = {
        ...s.round,
        completed: false,
        included: false,
        code: 'ERR_DISCONNECTED',
        reason: `connection closed: ${event.code} ${event.reason}`,
        survivors: 0,
      };
      reports.push(report);
      actions.push({ type: 'emit', event: { type: 'finished', report } });
    }
    const error =
      s.error ??
      (event.code === CLOSE.UNAUTHORIZED
        ? new ClientError('ERR_UNAUTHORIZED', `the server refused the token: ${event.reason}`, { closeCode: event.code })
        : undefined);
    return {
      state: { ...s, phase: 'closed', round: undefined, pending: undefined, reports, error, closed: { code: event.code, reason: event.reason } },
      actions,
    };
  }
  if (event.type === 'cancel')
    return {
      state: { ...s, error: new ClientError('ERR_CANCELLED', 'cancelled', { cause: event.cause }) },
      actions: [{ type: 'close', code: CLOSE.NORMAL, reason: 'cancelled' }],
    };
  if (s.phase === 'leaving') return { state: s, actions: [] };
  switch (event.type) {
    case 'control':
      return onControl(s, event.control, event.abortCode);
    case 'proof':
      if (s.phase !== 'proving') return { state: s, actions: [] };
      return { state: { ...s, phase: 'awaiting-welcome' }, actions: [hello(s.config.token, event.proof)] };
    case 'directory': {
      const a = s.pending?.assignment;
      if (a === undefined) return { state: s, actions: [] };
      if (!event.ok)
        return identityFailure({ ...s, pending: undefined }, `round ${a.roundNumber}: ${event.message}`, { roundId: a.roundId, clientId: a.clientId });
      return accept(s, a, event.directory, s.pending!.dpEncoding);
    }
    case 'input': {
      const p = s.pending;
      if (p === undefined) return { state: s, actions: [] };
      const bad = badInput(event.input, p.assignment);
      if (bad !== undefined) return leave({ ...s, pending: undefined }, new ClientError('ERR_INPUT', bad), 'input does not fit the round');
      return {
        state: { ...s, pending: undefined },
        actions: [{ type: 'start-round', clientId: p.assignment.clientId, input: event.input as Uint32Array, directory: p.directory }],
      };
    }
    case 'refuse':
      if (s.pending === undefined) return { state: s, actions: [] };
      return leave({ ...s, pending: undefined }, event.error, 'round refused');
    case 'identity-failure':
      return identityFailure(s, event.message, event.abort);
    case 'leave':
      return leave(s, undefined, event.reason);
    case 'fail':
      return { state: { ...s, phase: 'leaving' }, actions: [{ type: 'close', code: event.code, reason: event.reason.slice(0, 120) }] };
  }
}
