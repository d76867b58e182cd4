/**
 * The client's side of one round as a pure state machine: `handleClientMessage(ctx, state, bytes)`
 * returns the next state and the bytes to send to the server. No I/O, no clock: the transport
 * delivers server messages and sends what comes out.
 *
 * The state is data, one variant per stage holding what exists in that stage (the round's private
 * scalars as raw bytes, never key objects), so it can be encoded (stateCodec.ts) and finished in
 * another process. Crypto, randomness, the long-term identity, the directory, limits, floors and
 * the input provider come in a ClientContext given to every call and never kept. A call consumes
 * the state it is given (see handleClientMessage), as the server's do.
 *
 * A client has one peer, the server, so any invalid server message aborts the round for this
 * client (it sends a ClientAbort with the code), except a message for another round, which is
 * ignored. Nothing secret is revealed before every check of the stage has passed.
 */
import { defaultCrypto } from '#crypto-default';
import type { CryptoProvider, Ed25519PrivateKey } from '../crypto/provider.js';
import { SecAggError, isSecAggError } from '../errors.js';
import { MAX_CLIENT_ID, type ClientId } from '../ids.js';
import { RingAccumulator } from '../ring/accumulator.js';
import { assertInRing, packVector } from '../ring/vector.js';
import { cryptoRng, type Rng } from '../rng.js';
import { buildGraph } from '../graph/index.js';
import { splitSecret, SHARE_BYTES } from '../shamir/index.js';
import { decodeServerMessageChecked, encodeClientMessage, type ClientBody } from '../wire/codec.js';
import { peekServerBody, type ServerKind } from '../wire/peek.js';
import type { KeysForYou, RoundParameters, SharesForYou, UnmaskRequest, ConsistencyRequest, ViewRequest } from '../wire/gen/secagg/v1/secagg_pb.js';
import {
  DEFAULT_LIMITS,
  consistencyQuorum,
  neighbourhoodBoundViolation,
  validateConfig,
  type DpRoundConfig,
  type RoundConfig,
  type RoundLimits,
} from './config.js';
import { sampleBinomial, sampleDiscreteGaussian, samplePoisson } from '../dp/samplers.js';
import { clientNoiseVariance, excessProbability } from './noise.js';
import * as derive from './derive.js';
import {
  GRAPH_SEED_BYTES,
  KEY_BYTES,
  SHARE_CIPHERTEXT_BYTES,
  SIGNATURE_BYTES,
  entryCaps,
  serverMessageLimits,
  serverMessageLimitsBeforeStart,
} from './limits.js';
import { checkIdList } from './idlist.js';
import { configFromParameters } from './roundParams.js';
import { CLIENT_STAGE_ACCEPTS, SERVER_KIND_STAGE, unreachable, type ClientStage } from './stages.js';

export type { ClientStage };

/**
 * What a client's calls need besides the state: given to every call, never kept in the state (so
 * the state holds no long-term secret and no function). Build one with clientContext().
 */
export interface ClientContext {
  readonly crypto: CryptoProvider;
  /** Randomness for keys, seeds and Shamir coefficients. Production: the platform CSPRNG. */
  readonly rng: Rng;
  /** Active mode: this client's long-term Ed25519 identity seed (32 bytes). */
  readonly identity: Uint8Array | undefined;
  /** Active mode: the long-term Ed25519 public keys of the other clients (a PKI the server cannot forge). */
  readonly directory: ReadonlyMap<number, Uint8Array> | undefined;
  readonly limits: RoundLimits;
  /**
   * This client's own floors: it refuses (ERR_INVALID_PARAMETERS) a round whose cohort, advertised
   * set U1, threshold or corruption budget is below them, whatever the server says. They are how a
   * client keeps a server from running it with a couple of fakes. Defaults are the protocol's own
   * minimums (3, 3, 2, 0): set them for your deployment.
   */
  readonly floors: ClientFloors;
  /**
   * The input, produced once the round's parameters are known (called at RoundStart with the
   * round's config, before anything is sent): per-round steps such as scaling or noise run here.
   * Used when the client state was created without an input.
   */
  readonly input: InputProvider | undefined;
  /**
   * This client's differential-privacy policy: it refuses (ERR_INVALID_PARAMETERS, before sending
   * anything) a round that asks for less noise than the policy, another mechanism, or (with
   * `required`) no noise at all. Undefined: it joins any round and adds the noise the round asks for.
   */
  readonly dp: ClientDpPolicy | undefined;
}

/** What noise a client insists on (see ClientContext.dp). */
export interface ClientDpPolicy {
  /** The least `targetVariance` (σ² per coordinate, ring units, of every released sum) it takes part with. */
  readonly minTargetVariance: number;
  /** Refuse rounds without differential privacy (default false: such rounds are joined without noise). */
  readonly required?: boolean;
  /** Mechanisms it accepts (default both). */
  readonly mechanisms?: readonly DpRoundConfig['mechanism'][];
}

/** Produces this client's vector for a round: m = config.dimension elements, each < 2^config.bits. */
export type InputProvider = (config: RoundConfig) => Uint32Array | Promise<Uint32Array>;

export interface ClientContextOptions {
  readonly crypto?: CryptoProvider;
  readonly rng?: Rng;
  readonly identity?: Uint8Array;
  readonly directory?: ReadonlyMap<number, Uint8Array>;
  readonly limits?: Partial<RoundLimits>;
  readonly floors?: Partial<ClientFloors>;
  readonly input?: InputProvider;
  readonly dp?: ClientDpPolicy;
}

function checkDpPolicy(p: ClientDpPolicy): ClientDpPolicy {
  if (typeof p !== 'object' || p === null) throw new TypeError('dp must be a policy object');
  if (typeof p.minTargetVariance !== 'number' || !(p.minTargetVariance >= 0) || !Number.isFinite(p.minTargetVariance))
    throw new RangeError('dp.minTargetVariance must be a finite number ≥ 0');
  if (p.required !== undefined && typeof p.required !== 'boolean') throw new TypeError('dp.required must be a boolean');
  if (p.mechanisms !== undefined && !(Array.isArray(p.mechanisms) && p.mechanisms.every((m) => m === 'skellam' || m === 'dgauss')))
    throw new TypeError("dp.mechanisms must be a list of 'skellam' and 'dgauss'");
  return { minTargetVariance: p.minTargetVariance, required: p.required ?? false, mechanisms: [...(p.mechanisms ?? ['skellam', 'dgauss'])] };
}

/** A context with the defaults filled in: the platform's crypto and CSPRNG, the default limits and floors. */
export function clientContext(o: ClientContextOptions = {}): ClientContext {
  if (o.identity !== undefined && !(o.identity instanceof Uint8Array && o.identity.length === 32))
    throw new RangeError('identity must be a 32-byte Ed25519 seed');
  return {
    crypto: o.crypto ?? defaultCrypto,
    rng: o.rng ?? cryptoRng,
    identity: o.identity,
    directory: o.directory,
    limits: { ...DEFAULT_LIMITS, ...o.limits },
    floors: { ...DEFAULT_FLOORS, ...o.floors },
    input: o.input,
    dp: o.dp === undefined ? undefined : checkDpPolicy(o.dp),
  };
}

export interface ClientOptions {
  readonly id: ClientId;
  /** This client's private vector; each element must be < 2^bits of the round it joins. Leave it out to have the context's `input` provider make it at RoundStart. */
  readonly input?: Uint32Array;
}

export interface ClientFloors {
  /** Fewest invited clients (|cohort|) this client takes part with. */
  readonly minCohort: number;
  /** Fewest clients that advertised keys (|U1|, as shown to this client) it shares secrets with. */
  readonly minAdvertised: number;
  /** Smallest Shamir threshold t it accepts. */
  readonly minThreshold: number;
  /** Smallest corruption budget c it accepts (the round must tolerate at least this many colluders per neighbourhood). */
  readonly minCorruption: number;
  /** Active mode: most view attempts it signs before it gives up (each new attempt is a new graph seed a server could choose among). */
  readonly maxViewAttempts: number;
}

export const DEFAULT_FLOORS: ClientFloors = { minCohort: 3, minAdvertised: 3, minThreshold: 2, minCorruption: 0, maxViewAttempts: 3 };

export interface Peer {
  readonly encryptionKey: Uint8Array;
  readonly maskingKey: Uint8Array;
}

/** Active mode: the view this client signed. */
export interface SignedView {
  readonly attempt: number;
  readonly advertised: readonly number[];
  readonly commitments: readonly Uint8Array[];
  readonly digest: Uint8Array;
}

/** Active mode, before the keys arrive: this client's seed contribution for the attempt due, and the view it signed last. */
export interface ViewProgress {
  /** The attempt whose reveal is outstanding (seedReveal belongs to it). */
  readonly attempt: number;
  readonly seedReveal: Uint8Array;
  readonly seedCommitment: Uint8Array;
  readonly view: SignedView | undefined;
}

interface Running {
  readonly id: ClientId;
  readonly config: RoundConfig;
  readonly abortCode?: undefined;
}

/** After RoundStart: this round's keys (raw private scalars: the state must be data) and the input. */
interface KeysMade extends Running {
  readonly input: Uint32Array;
  /** X25519 private key for the share encryption (32 bytes, as drawn; X25519 clamps it). */
  readonly encryptionSecret: Uint8Array;
  readonly encryptionKey: Uint8Array;
  /** X25519 masking key, clamped (the scalar that is secret-shared). */
  readonly maskingSecret: Uint8Array;
  readonly maskingKey: Uint8Array;
  readonly selfMaskSeed: Uint8Array;
}

export interface AwaitingStartState {
  readonly stage: 'awaiting-start';
  readonly id: ClientId;
  readonly config?: undefined;
  readonly input: Uint32Array | undefined;
  readonly abortCode?: undefined;
}
export interface AwaitingViewState extends KeysMade {
  readonly stage: 'awaiting-view';
  readonly active: ViewProgress;
}
export interface AwaitingKeysState extends KeysMade {
  readonly stage: 'awaiting-keys';
  /** Active mode only. */
  readonly active: ViewProgress | undefined;
}
/** After ShareKeys: U1 and this client's neighbours, with the keys agreed with each. */
export interface AwaitingSharesState extends Running {
  readonly stage: 'awaiting-shares';
  readonly input: Uint32Array;
  readonly selfMaskSeed: Uint8Array;
  /** Active mode: the view this client signed. */
  readonly view: SignedView | undefined;
  /** U1, ascending, as the server showed it. */
  readonly advertised: readonly number[];
  /** The neighbours kept (valid, fresh keys), with their keys. */
  readonly peers: Map<number, Peer>;
  /** AEAD key shared with each neighbour kept, to open its shares without a second agreement. */
  readonly shareKeys: Map<number, Uint8Array>;
  /**
   * Pairwise mask key with each neighbour kept. Derived at ShareKeys (it needs only the
   * neighbour's advertised key), so the MaskedInput stage is keystream work alone and answers sooner.
   */
  readonly maskKeys: Map<number, Uint8Array>;
}
/** After the masked input: what the unmask requests are checked against, and the shares held. */
interface Masked extends Running {
  readonly view: SignedView | undefined;
  readonly advertised: readonly number[];
  /** The neighbours kept. */
  readonly peers: Map<number, Peer>;
  /** Shares this client holds: from each neighbour v in its view of U2 whose ciphertext opened. */
  readonly held: Map<number, { readonly keyShare: Uint8Array; readonly selfShare: Uint8Array }>;
  /** The neighbours whose ciphertexts the server forwarded (its view of U2): the ones it masked with. */
  readonly maskedWith: ReadonlySet<number>;
  /** Active mode: the survivor set this client signed. */
  readonly signedSurvivors: readonly number[] | undefined;
  /** Which kind of share was revealed for each neighbour: never both. */
  readonly revealed: Map<number, 'self' | 'key'>;
  /** Removable DP noise (Skellam): what this client added and may still remove (undefined in other rounds). */
  readonly dpNoise: RemovableNoise | undefined;
}

/**
 * Removable Skellam noise, as plain data: the noise added was P1 − P2 per coordinate. At the first
 * unmask request the excess is drawn by Poisson thinning and kept (`excess`), and every later
 * request gets the same bytes: a second, fresh thinning of the same P1, P2 would tell the server
 * more about them (and so about the noise it keeps).
 */
export interface RemovableNoise {
  /** P1, P2 ~ Poisson(v0/2) per coordinate: non-negative integers (exact in doubles); empty once the excess is drawn. */
  readonly p1: Float64Array;
  readonly p2: Float64Array;
  /** The excess revealed, packed as in the wire's UnmaskResponse.excess_noise (empty: nothing removed); undefined before the first unmask request. */
  readonly excess: Uint8Array | undefined;
}
export interface AwaitingConsistencyState extends Masked {
  readonly stage: 'awaiting-consistency';
}
export interface AwaitingUnmaskState extends Masked {
  readonly stage: 'awaiting-unmask';
}
export interface DoneClientState extends Masked {
  readonly stage: 'done';
}
export interface AbortedClientState {
  readonly stage: 'aborted';
  readonly id: ClientId;
  readonly config: RoundConfig | undefined;
  /** The code this client aborted with. */
  readonly abortCode: string;
}

/** One client's state in one round: a variant per stage (narrow on `stage`). */
export type ClientState =
  | AwaitingStartState
  | AwaitingViewState
  | AwaitingKeysState
  | AwaitingSharesState
  | AwaitingConsistencyState
  | AwaitingUnmaskState
  | DoneClientState
  | AbortedClientState;

export interface ClientStep {
  readonly state: ClientState;
  /** Bytes to send to the server, or null. */
  readonly outgoing: Uint8Array | null;
  /** Why the message was refused (the state says whether the client aborted). */
  readonly error?: SecAggError;
}

/**
 * A client ready for a round; feed it the server's messages with handleClientMessage.
 *
 * @example
 * ```ts
 * const ctx = clientContext();
 * let client = createClient({ id: clientId(7), input });
 * const step = await handleClientMessage(ctx, client, bytesFromServer);
 * client = step.state;
 * if (step.outgoing) send(step.outgoing); // step.error says why a message was refused
 * ```
 */
export function createClient(options: ClientOptions): AwaitingStartState {
  if (!Number.isInteger(options.id) || options.id < 1 || options.id > MAX_CLIENT_ID) throw new RangeError(`id must be in [1, ${MAX_CLIENT_ID}]`);
  if (options.input !== undefined && !(options.input instanceof Uint32Array)) throw new TypeError('input must be a Uint32Array');
  return { stage: 'awaiting-start', id: options.id, input: options.input };
}

/** States handed to a call and not yet returned, or consumed by one: the mutation contract's guard. */
const taken = new WeakSet<object>();

/** Refuses a consumed state, or one a call is still working on (TypeError: a caller bug). */
export function assertClientStateUsable(state: ClientState): void {
  if (taken.has(state))
    throw new TypeError('this client state was consumed by an earlier call (or a call on it is still running): use the state the last call returned');
}

/**
 * Process one server message. Never throws on bad input: the error comes back in the step.
 * Consumes `consumed`: go on with the returned state (the same object when nothing changed).
 */
export async function handleClientMessage(ctx: ClientContext, consumed: ClientState, bytes: Uint8Array): Promise<ClientStep> {
  assertClientStateUsable(consumed);
  if (consumed.stage === 'aborted') return { state: consumed, outgoing: null, error: new SecAggError('ERR_ABORTED', 'this client already aborted the round') };
  taken.add(consumed);
  let step: ClientStep;
  try {
    // The state keeps parts of accepted messages (round id, keys, shares): never views into a
    // buffer the caller may reuse, so the input is copied once (Buffer#slice would share memory).
    step = await dispatch(ctx, consumed, bytes instanceof Uint8Array ? new Uint8Array(bytes) : bytes);
  } catch (e) {
    const error = isSecAggError(e) ? e : new SecAggError('ERR_INTERNAL', 'unexpected error in client round', { cause: e });
    if (error.code === 'ERR_ROUND_MISMATCH') step = { state: consumed, outgoing: null, error };
    else {
      const roundId = consumed.config?.roundId;
      const outgoing = roundId ? encodeClientMessage(roundId, consumed.id, { case: 'abort', value: { code: error.code } }) : null;
      const aborted: AbortedClientState = { stage: 'aborted', id: consumed.id, config: consumed.config, abortCode: error.code };
      step = { state: aborted, outgoing, error };
    }
  }
  if (step.state === consumed) taken.delete(consumed);
  return step;
}

function mismatch(stage: ClientStage, kind: string): SecAggError {
  return new SecAggError('ERR_STAGE_MISMATCH', `a ${kind} message is not expected while ${stage}`);
}

async function dispatch(ctx: ClientContext, state: Exclude<ClientState, AbortedClientState>, bytes: Uint8Array): Promise<ClientStep> {
  const config = state.config;
  // A message for another round is ignored, whatever its kind: look at the envelope first.
  if (config && bytes instanceof Uint8Array && !derive.bytesEqual(peekServerBody(bytes).roundId, config.roundId))
    throw new SecAggError('ERR_ROUND_MISMATCH', 'message is for another round');
  const maxClients = ctx.limits.maxClients;
  // The server messages each stage accepts (the stage table; 'any' kinds in every stage): any other
  // kind is refused before it is decoded.
  const expected: readonly ServerKind[] = CLIENT_STAGE_ACCEPTS[state.stage];
  const msg = decodeServerMessageChecked(bytes, {
    maxBytes: config ? serverMessageLimits(config) : serverMessageLimitsBeforeStart(maxClients),
    allowed: (kind) => SERVER_KIND_STAGE[kind] === 'any' || expected.includes(kind),
    ...(config ? entryCaps(config) : { maxNeighbours: 0, maxMembers: maxClients }),
  });
  if (config && !derive.bytesEqual(msg.roundId, config.roundId)) throw new SecAggError('ERR_ROUND_MISMATCH', 'message is for another round');
  const body = msg.body;
  // One case per server message kind: a kind added to the wire does not compile until it is handled
  // here (and placed in the stage table). Each handler narrows the state to the stages that take it.
  switch (body.case) {
    case 'aborted': {
      const aborted: AbortedClientState = { stage: 'aborted', id: state.id, config: state.config, abortCode: body.value.code || 'ERR_ABORTED' };
      return { state: aborted, outgoing: null };
    }
    case 'roundStart':
      if (state.stage !== 'awaiting-start') throw mismatch(state.stage, body.case);
      return onRoundStart(ctx, state, msg.roundId, body.value);
    case 'viewRequest':
      if (state.stage === 'awaiting-view') return onViewRequest(ctx, state, body.value);
      // A later view attempt, after this client signed the last one.
      if (state.stage === 'awaiting-keys' && state.active !== undefined)
        return onViewRequest(ctx, { ...state, stage: 'awaiting-view', active: state.active }, body.value);
      throw mismatch(state.stage, body.case);
    case 'keys':
      if (state.stage !== 'awaiting-keys') throw mismatch(state.stage, body.case);
      return onKeys(ctx, state, body.value);
    case 'shares':
      if (state.stage !== 'awaiting-shares') throw mismatch(state.stage, body.case);
      return onShares(ctx, state, body.value);
    case 'consistencyRequest':
      if (state.stage !== 'awaiting-consistency') throw mismatch(state.stage, body.case);
      return onConsistency(ctx, state, body.value);
    case 'unmaskRequest':
      if (state.stage !== 'awaiting-unmask' && state.stage !== 'done') throw mismatch(state.stage, body.case);
      return onUnmask(ctx, state, body.value);
    case undefined:
      throw new SecAggError('ERR_DECODE', 'a server message without a body');
    default:
      return unreachable(body, 'server message kind');
  }
}

function send(state: { readonly id: ClientId; readonly config: RoundConfig }, body: ClientBody): Uint8Array {
  return encodeClientMessage(state.config.roundId, state.id, body);
}

async function identityKey(ctx: ClientContext): Promise<Ed25519PrivateKey> {
  if (ctx.identity === undefined) throw new SecAggError('ERR_INVALID_PARAMETERS', 'active mode needs an identity key');
  return ctx.crypto.ed25519(ctx.identity);
}

function directoryKey(ctx: ClientContext, client: number): Uint8Array | undefined {
  return ctx.directory?.get(client);
}

/** The input for this round: the state's own, or the context's provider's; checked against the round either way. */
async function inputFor(ctx: ClientContext, state: AwaitingStartState, config: RoundConfig): Promise<Uint32Array> {
  let input = state.input;
  if (input === undefined) {
    if (ctx.input === undefined)
      throw new SecAggError('ERR_INVALID_PARAMETERS', 'this client has no input: give createClient an input or the context an input provider');
    try {
      // A copy: the provider runs after the parameters were validated against this client's floors
      // and the bound, and the state keeps `config`; a provider that changes (or keeps and later
      // changes) what it is given must not change the round this client takes part in.
      input = await ctx.input({ ...config, roundId: config.roundId.slice() as RoundConfig['roundId'], cohort: [...config.cohort] });
    } catch (cause) {
      if (isSecAggError(cause)) throw cause;
      throw new SecAggError('ERR_INVALID_PARAMETERS', 'the input provider failed', { cause });
    }
    if (!(input instanceof Uint32Array)) throw new SecAggError('ERR_INVALID_PARAMETERS', 'the input provider must return a Uint32Array');
  }
  if (input.length !== config.dimension)
    throw new SecAggError('ERR_INVALID_PARAMETERS', `the round wants ${config.dimension} elements, this client has ${input.length}`);
  try {
    assertInRing(input, config.bits, 'input');
  } catch (cause) {
    throw new SecAggError('ERR_INVALID_PARAMETERS', `input does not fit a ${config.bits}-bit ring`, { cause });
  }
  return input;
}

const EMPTY_COUNTS = new Float64Array(0);

/** Poisson means above this are refused (the sampler's own bound, 2^50). */
const MAX_CLIENT_POISSON_MEAN = 2 ** 50;

function checkDpAgainstPolicy(policy: ClientDpPolicy | undefined, config: RoundConfig): void {
  const dp = config.dp;
  if (dp === undefined) {
    if (policy?.required === true)
      throw new SecAggError('ERR_INVALID_PARAMETERS', "the round adds no differential-privacy noise; this client's policy requires it");
    return;
  }
  if (dp.mechanism === 'skellam' && clientNoiseVariance(config) / 2 > MAX_CLIENT_POISSON_MEAN)
    throw new SecAggError('ERR_INVALID_PARAMETERS', `per-client noise variance ${clientNoiseVariance(config)} is beyond the Skellam sampler's 2^51`);
  if (policy === undefined) return;
  if (policy.mechanisms !== undefined && !policy.mechanisms.includes(dp.mechanism))
    throw new SecAggError('ERR_INVALID_PARAMETERS', `the round's DP mechanism ${dp.mechanism} is not one this client's policy accepts`);
  if (!(dp.targetVariance >= policy.minTargetVariance))
    throw new SecAggError(
      'ERR_INVALID_PARAMETERS',
      `the round's DP target variance ${dp.targetVariance} is below this client's policy of ${policy.minTargetVariance}`,
    );
}

/**
 * The noise this client adds to its masked input, drawn with the context's rng: Skellam (P1 − P2,
 * P1, P2 ~ Poisson(v0/2)) or the exact discrete Gaussian N_Z(0, v0). Returns it wrapped into the
 * ring (mod 2^32; the accumulator reduces to `bits`), and for removable Skellam P1 and P2.
 */
function drawNoise(ctx: ClientContext, config: RoundConfig): { ring: Uint32Array; removable: RemovableNoise | undefined } | undefined {
  const dp = config.dp;
  if (dp === undefined) return undefined;
  const v0 = clientNoiseVariance(config);
  const m = config.dimension;
  const ring = new Uint32Array(m);
  const wrap = (e: number, i: number) => {
    const r = e % 4294967296;
    ring[i] = r < 0 ? r + 4294967296 : r;
  };
  if (dp.mechanism === 'dgauss') {
    const e = sampleDiscreteGaussian({ sigma2: v0, length: m, rng: ctx.rng });
    for (let i = 0; i < m; i++) wrap(e[i]!, i);
    return { ring, removable: undefined };
  }
  const p1 = samplePoisson({ mean: v0 / 2, length: m, rng: ctx.rng });
  const p2 = samplePoisson({ mean: v0 / 2, length: m, rng: ctx.rng });
  for (let i = 0; i < m; i++) wrap(p1[i]! - p2[i]!, i);
  return { ring, removable: dp.removable ? { p1, p2, excess: undefined } : undefined };
}

/**
 * The excess of removable noise for the survivor set this client verified: with r = |U3| − C
 * honest survivors guaranteed and r > t − C, each coordinate's P_i is thinned, R_i ~
 * Binomial(P_i, 1 − (t − C)/r), so that K_i = P_i − R_i ~ Poisson(v0_r/2) with v0_r =
 * targetVariance / r, independent of R_i; R1 − R2 (mod 2^bits) is revealed. Empty when r ≤ t − C.
 */
function drawExcess(ctx: ClientContext, config: RoundConfig, noise: RemovableNoise, survivors: number): Uint8Array {
  const probability = excessProbability(config, survivors);
  if (probability === 0) return new Uint8Array(0);
  const r1 = sampleBinomial({ trials: noise.p1, probability, rng: ctx.rng });
  const r2 = sampleBinomial({ trials: noise.p2, probability, rng: ctx.rng });
  const R = 2 ** config.bits;
  const excess = new Uint32Array(config.dimension);
  for (let i = 0; i < excess.length; i++) {
    const d = (r1[i]! - r2[i]!) % R;
    excess[i] = d < 0 ? d + R : d;
  }
  return packVector(excess, config.bits);
}

async function onRoundStart(ctx: ClientContext, state: AwaitingStartState, roundId: Uint8Array, p: RoundParameters): Promise<ClientStep> {
  if (!derive.bytesEqual(roundId, p.roundId)) throw new SecAggError('ERR_INVALID_PARAMETERS', 'round id of the envelope and parameters differ');
  const config = configFromParameters(p);
  const mode = config.mode;
  validateConfig(config, ctx.limits);
  checkDpAgainstPolicy(ctx.dp, config);
  if (!config.cohort.includes(state.id)) throw new SecAggError('ERR_UNKNOWN_SENDER', 'this client is not in the cohort');
  const f = ctx.floors;
  if (config.cohort.length < f.minCohort)
    throw new SecAggError('ERR_INVALID_PARAMETERS', `cohort of ${config.cohort.length} is below this client's floor of ${f.minCohort}`);
  if (config.threshold < f.minThreshold)
    throw new SecAggError('ERR_INVALID_PARAMETERS', `threshold ${config.threshold} is below this client's floor of ${f.minThreshold}`);
  if ((config.corruption ?? 0) < f.minCorruption)
    throw new SecAggError('ERR_INVALID_PARAMETERS', `corruption budget ${config.corruption ?? 0} is below this client's floor of ${f.minCorruption}`);
  if (mode === 'active' && (ctx.identity === undefined || ctx.directory === undefined))
    throw new SecAggError('ERR_INVALID_PARAMETERS', 'active mode needs an identity key and a directory of peers');
  const input = await inputFor(ctx, state, config);

  const c = ctx.crypto;
  const rng = ctx.rng;
  const encryptionSecret = rng(32);
  const encryption = await c.x25519(encryptionSecret);
  // The masking key is shared in its clamped form, the one scalar X25519 really uses: then
  // "derives the advertised public key and is clamped" pins the reconstructed value to exactly
  // this secret, and a holder that shifts its share by an ignored bit cannot pass it off.
  const maskingSecret = clampScalar(rng(32));
  const masking = await c.x25519(maskingSecret);
  const keys: KeysMade = {
    id: state.id,
    config,
    input,
    encryptionSecret,
    encryptionKey: encryption.publicKey,
    maskingSecret,
    maskingKey: masking.publicKey,
    selfMaskSeed: rng(32),
  };
  let signature: Uint8Array = new Uint8Array(0);
  let seedCommitment: Uint8Array = new Uint8Array(0);
  let next: AwaitingViewState | AwaitingKeysState;
  if (mode === 'active') {
    const identity = await identityKey(ctx);
    const seedReveal = rng(32);
    seedCommitment = await derive.seedCommitment(c, config.roundId, state.id, 1, seedReveal);
    signature = await identity.sign(derive.advertiseTranscript(config.roundId, state.id, keys.encryptionKey, keys.maskingKey));
    next = { ...keys, stage: 'awaiting-view', active: { attempt: 1, seedReveal, seedCommitment, view: undefined } };
  } else next = { ...keys, stage: 'awaiting-keys', active: undefined };
  const outgoing = send(next, {
    case: 'advertiseKeys',
    value: { encryptionPublicKey: keys.encryptionKey, maskingPublicKey: keys.maskingKey, signature, seedCommitment },
  });
  return { state: next, outgoing };
}

/** U1 as the server shows it: ascending ids of the cohort, this client among them, at least this client's floor. */
function checkAdvertised(ctx: ClientContext, state: Running, list: readonly number[]): number[] {
  const config = state.config;
  const advertised = checkIdList(list, 'advertised clients');
  const cohort = new Set<number>(config.cohort);
  for (const v of advertised) if (!cohort.has(v)) throw new SecAggError('ERR_INCONSISTENT_VIEW', `client ${v} is not in the cohort`);
  if (!advertised.includes(state.id)) throw new SecAggError('ERR_INCONSISTENT_VIEW', 'this client is missing from the advertised set');
  const floor = Math.max(ctx.floors.minAdvertised, config.threshold + 1);
  if (advertised.length < floor)
    throw new SecAggError('ERR_BELOW_THRESHOLD', `${advertised.length} advertised clients is below the ${floor} this client takes part with`);
  return advertised;
}

/**
 * Active mode: sign the view (U1 and every member's seed commitment for this attempt) and reveal
 * this client's contribution to the graph seed. The contribution was committed to before the
 * server fixed U1, and is revealed only once this client has committed to the view, so whatever U1
 * the server shows, the graph seed it leads to includes a value the server could not know when it
 * chose that U1: the server can neither pick this client's neighbourhood nor grind the seed. A
 * later attempt (a member failed to reveal) may only drop members, and uses a fresh contribution.
 */
async function onViewRequest(ctx: ClientContext, state: AwaitingViewState, m: ViewRequest): Promise<ClientStep> {
  const config = state.config;
  const c = ctx.crypto;
  const progress = state.active;
  if (config.mode !== 'active') throw new SecAggError('ERR_STAGE_MISMATCH', 'view requests belong to active mode');
  if (m.attempt !== progress.attempt) throw new SecAggError('ERR_INCONSISTENT_VIEW', `view attempt ${m.attempt} where ${progress.attempt} was due`);
  if (m.attempt > ctx.floors.maxViewAttempts)
    throw new SecAggError('ERR_INCONSISTENT_VIEW', `more than ${ctx.floors.maxViewAttempts} view attempts: each one is another graph seed to choose from`);
  const advertised = checkAdvertised(ctx, state, m.advertised);
  if (progress.view !== undefined) {
    const before = new Set(progress.view.advertised);
    for (const v of advertised) if (!before.has(v)) throw new SecAggError('ERR_INCONSISTENT_VIEW', `client ${v} was not in the previous view`);
  }
  if (m.seedCommitments.length !== advertised.length)
    throw new SecAggError('ERR_SIZE', `${m.seedCommitments.length} seed commitments for ${advertised.length} clients`);
  for (const h of m.seedCommitments) if (h.length !== 32) throw new SecAggError('ERR_SIZE', 'seed commitments must be 32 bytes');
  if (!derive.bytesEqual(m.seedCommitments[advertised.indexOf(state.id)]!, progress.seedCommitment))
    throw new SecAggError('ERR_INCONSISTENT_VIEW', 'the view carries another seed commitment for this client');
  const commitments = m.seedCommitments.map((h) => h.slice());
  const digest = await derive.viewDigest(c, config.roundId, m.attempt, advertised, commitments);
  const signature = await (await identityKey(ctx)).sign(derive.viewTranscript(digest, state.id, state.encryptionKey, state.maskingKey));
  const seedReveal = progress.seedReveal;
  const attempt = m.attempt + 1;
  const nextReveal = ctx.rng(32);
  const nextCommitment = await derive.seedCommitment(c, config.roundId, state.id, attempt, nextReveal);
  const next: AwaitingKeysState = {
    ...state,
    stage: 'awaiting-keys',
    active: { attempt, seedReveal: nextReveal, seedCommitment: nextCommitment, view: { attempt: m.attempt, advertised, commitments, digest } },
  };
  return { state: next, outgoing: send(next, { case: 'viewSignature', value: { signature, seedReveal, nextSeedCommitment: nextCommitment } }) };
}

/** Active mode: the graph seed from the view's reveals, each checked against its commitment. */
async function checkViewProof(
  ctx: ClientContext,
  state: AwaitingKeysState,
  view: SignedView | undefined,
  m: KeysForYou,
  advertised: readonly number[],
): Promise<Uint8Array> {
  const c = ctx.crypto;
  if (view === undefined) throw new SecAggError('ERR_STAGE_MISMATCH', 'keys before a view was signed');
  if (advertised.length !== view.advertised.length || advertised.some((v, i) => v !== view.advertised[i]))
    throw new SecAggError('ERR_INCONSISTENT_VIEW', 'keys for another advertised set than the view this client signed');
  const proof = m.view;
  if (proof === undefined) throw new SecAggError('ERR_INCONSISTENT_VIEW', 'active mode needs the view proof');
  if (proof.seedReveals.length !== advertised.length)
    throw new SecAggError('ERR_SIZE', `${proof.seedReveals.length} seed reveals for ${advertised.length} clients`);
  const round = state.config.roundId;
  const checks = await Promise.all(
    proof.seedReveals.map(
      async (r, i) =>
        r.length === 32 && derive.bytesEqual(await derive.seedCommitment(c, round, advertised[i]! as ClientId, view.attempt, r), view.commitments[i]!),
    ),
  );
  const wrong = checks.indexOf(false);
  if (wrong >= 0) throw new SecAggError('ERR_INCONSISTENT_VIEW', `client ${advertised[wrong]}'s seed reveal does not match its commitment`);
  const seed = await derive.viewGraphSeed(c, view.digest, proof.seedReveals);
  if (!derive.bytesEqual(seed, m.graphSeed)) throw new SecAggError('ERR_INCONSISTENT_VIEW', "the graph seed is not the one the view's reveals give");
  return seed;
}

/**
 * Active mode: every other member of U1 signed this very view (U1, every commitment, this
 * attempt) with the keys it is known by — the neighbours' keys from `m.neighbours`, the others'
 * from the proof's `memberKeys`. So every member of the U1 this client shares over signed that
 * U1: the server cannot pad it with members shown another view. O(|U1|) signature checks.
 */
async function checkViewSignatures(
  ctx: ClientContext,
  state: AwaitingKeysState,
  view: SignedView,
  m: KeysForYou,
  advertised: readonly number[],
  neighbours: readonly number[],
): Promise<void> {
  const proof = m.view;
  if (proof === undefined) throw new SecAggError('ERR_INCONSISTENT_VIEW', 'active mode needs the view proof');
  const others = advertised.filter((v) => v !== state.id);
  const signers = proof.viewSignatures;
  if (signers.length !== others.length || signers.some((s, i) => s.client !== others[i]))
    throw new SecAggError('ERR_INCONSISTENT_VIEW', `the view proof must hold the signature of each of the ${others.length} other members of U1, ascending`);
  const isNeighbour = new Set(neighbours);
  const neighbourKeys = new Map(m.neighbours.map((e) => [e.client, e]));
  if (proof.memberKeys.length !== others.length - neighbours.length)
    throw new SecAggError(
      'ERR_INCONSISTENT_VIEW',
      `${proof.memberKeys.length} member keys for ${others.length - neighbours.length} members that are not neighbours`,
    );
  let next = 0;
  const checks = signers.map((s) => {
    let encryption: Uint8Array;
    let masking: Uint8Array;
    const e = isNeighbour.has(s.client) ? neighbourKeys.get(s.client) : undefined;
    if (e !== undefined) {
      encryption = e.encryptionPublicKey;
      masking = e.maskingPublicKey;
    } else {
      const keys = proof.memberKeys[next++]!;
      if (keys.length !== 2 * KEY_BYTES) throw new SecAggError('ERR_SIZE', `the keys of member ${s.client} are not 64 bytes`);
      encryption = keys.subarray(0, KEY_BYTES);
      masking = keys.subarray(KEY_BYTES);
    }
    const identity = directoryKey(ctx, s.client);
    if (identity === undefined || s.signature.length !== SIGNATURE_BYTES) return Promise.resolve(false);
    return ctx.crypto.ed25519Verify(identity, derive.viewTranscript(view.digest, s.client as ClientId, encryption, masking), s.signature);
  });
  const ok = await Promise.all(checks);
  const wrong = ok.indexOf(false);
  if (wrong >= 0) throw new SecAggError('ERR_INCONSISTENT_VIEW', `member ${signers[wrong]!.client} of U1 did not sign this view`);
}

async function onKeys(ctx: ClientContext, state: AwaitingKeysState, m: KeysForYou): Promise<ClientStep> {
  const config = state.config;
  const c = ctx.crypto;
  if (m.graphSeed.length !== GRAPH_SEED_BYTES) throw new SecAggError('ERR_SIZE', 'graph seed must be 32 bytes');
  const advertised = checkAdvertised(ctx, state, m.advertised);
  const active = config.mode === 'active';
  const view = state.active?.view;
  if (active) await checkViewProof(ctx, state, view, m, advertised);
  const graph = buildGraph({ clients: advertised as ClientId[], degree: config.degree, seed: m.graphSeed });
  const neighbours = graph.neighbours(state.id);
  // The bound against the neighbourhood this client really has, not the declared degree.
  const why = neighbourhoodBoundViolation(config.mode, neighbours.length, config.threshold, config.corruption ?? 0);
  if (why !== undefined) throw new SecAggError('ERR_INVALID_PARAMETERS', why);
  if (neighbours.length < config.threshold)
    throw new SecAggError('ERR_BELOW_THRESHOLD', `${neighbours.length} neighbours is fewer than the threshold ${config.threshold}`);
  if (m.neighbours.length !== neighbours.length) throw new SecAggError('ERR_INCONSISTENT_VIEW', 'the server sent keys for a different neighbour set');
  for (let i = 0; i < neighbours.length; i++) {
    const entry = m.neighbours[i]!;
    if (entry.client !== neighbours[i]) throw new SecAggError('ERR_NOT_NEIGHBOUR', `keys of client ${entry.client} where ${neighbours[i]} was expected`);
    if (entry.encryptionPublicKey.length !== KEY_BYTES || entry.maskingPublicKey.length !== KEY_BYTES)
      throw new SecAggError('ERR_SIZE', `keys of client ${entry.client} are not 32 bytes`);
  }
  if (active && view !== undefined) await checkViewSignatures(ctx, state, view, m, advertised, neighbours);
  // A neighbour whose keys are reused or do not agree is treated as dropped: its
  // secrets are not shared with it and its shares are not taken, so one bad key costs one edge,
  // never the round. (An honest server refuses such keys before they reach anyone.)
  const seen = new Set<string>([derive.hex(state.encryptionKey), derive.hex(state.maskingKey)]);
  const fresh = m.neighbours.map((entry) => {
    const keys = [derive.hex(entry.encryptionPublicKey), derive.hex(entry.maskingPublicKey)];
    const ok = keys[0] !== keys[1] && !seen.has(keys[0]!) && !seen.has(keys[1]!);
    for (const k of keys) seen.add(k);
    return ok;
  });
  const [encryption, masking] = await Promise.all([c.x25519(state.encryptionSecret), c.x25519(state.maskingSecret)]);
  const agreed = await Promise.all(
    m.neighbours.map(async (entry, i) => {
      const v = entry.client as ClientId;
      if (!fresh[i]) return undefined;
      try {
        const maskKey = await derive.pairwiseMaskKey(c, await masking.agree(entry.maskingPublicKey), config.roundId, state.id, v);
        const shareKey = await derive.shareKey(c, await encryption.agree(entry.encryptionPublicKey), config.roundId, state.id, v);
        return { v, maskKey, shareKey, peer: { encryptionKey: entry.encryptionPublicKey, maskingKey: entry.maskingPublicKey } };
      } catch (e) {
        if (isSecAggError(e, 'ERR_INVALID_KEY')) return undefined;
        throw e;
      }
    }),
  );
  const live = agreed.filter((a) => a !== undefined);
  if (live.length < config.threshold)
    throw new SecAggError('ERR_BELOW_THRESHOLD', `${live.length} neighbours with valid keys is fewer than the threshold ${config.threshold}`);

  // Share s_u^SK and b_u t-of-|live| among the neighbours kept, then encrypt each pair of shares to its holder.
  const holders = live.map((a) => a.v as number);
  const keyShares = splitSecret({ secret: state.maskingSecret, holders, threshold: config.threshold, rng: ctx.rng });
  const selfShares = splitSecret({ secret: state.selfMaskSeed, holders, threshold: config.threshold, rng: ctx.rng });
  const shares = await Promise.all(
    live.map(async ({ v, shareKey }, i) => {
      const pt = derive.sharePlaintext(state.id, v, keyShares[i]!, selfShares[i]!);
      const ciphertext = await c.aeadSeal(shareKey, derive.shareNonce(state.id, v), pt, derive.sharesAad(config.roundId, state.id, v));
      return { peer: v, ciphertext };
    }),
  );
  const selfMaskCommitment = await derive.selfMaskCommitment(c, state.selfMaskSeed, config.roundId, state.id);
  // The masking and encryption secrets are not needed again: the next state does not hold them.
  const next: AwaitingSharesState = {
    stage: 'awaiting-shares',
    id: state.id,
    config,
    input: state.input,
    selfMaskSeed: state.selfMaskSeed,
    view,
    advertised,
    peers: new Map(live.map((a) => [a.v, a.peer])),
    shareKeys: new Map(live.map((a) => [a.v, a.shareKey])),
    maskKeys: new Map(live.map((a) => [a.v, a.maskKey])),
  };
  return { state: next, outgoing: send(next, { case: 'shareKeys', value: { selfMaskCommitment, shares } }) };
}

async function onShares(ctx: ClientContext, state: AwaitingSharesState, m: SharesForYou): Promise<ClientStep> {
  const config = state.config;
  const c = ctx.crypto;
  const held = new Map<number, { keyShare: Uint8Array; selfShare: Uint8Array }>();
  let previous = 0;
  for (const entry of m.shares) {
    const v = entry.peer;
    if (v <= previous) throw new SecAggError('ERR_DUPLICATE_SENDER', 'shares must come once per neighbour, ascending');
    previous = v;
    if (!state.peers.has(v)) throw new SecAggError('ERR_NOT_NEIGHBOUR', `shares from client ${v}, who is not a neighbour`);
    if (entry.ciphertext.length !== SHARE_CIPHERTEXT_BYTES) throw new SecAggError('ERR_SIZE', `shares from client ${v} have the wrong size`);
  }
  if (m.shares.length < config.threshold)
    throw new SecAggError('ERR_BELOW_THRESHOLD', `${m.shares.length} neighbours shared keys, fewer than the threshold ${config.threshold}`);
  // A ciphertext that does not open is that neighbour's fault (or the server's): this client still
  // masks with it — the neighbour masks with this client, having its shares — but holds none of
  // its shares, so one bad client does not make its honest neighbours abort.
  const opened = await Promise.all(
    m.shares.map(async (entry) => {
      const v = entry.peer as ClientId;
      const key = state.shareKeys.get(v);
      if (key === undefined) return undefined;
      try {
        const pt = await c.aeadOpen(key, derive.shareNonce(v, state.id), entry.ciphertext, derive.sharesAad(config.roundId, v, state.id));
        if (derive.readU32(pt, 0) !== v || derive.readU32(pt, 4) !== state.id) return undefined;
        return { v, keyShare: pt.slice(8, 8 + SHARE_BYTES), selfShare: pt.slice(8 + SHARE_BYTES) };
      } catch (e) {
        if (isSecAggError(e, 'ERR_AEAD_OPEN_FAILED')) return undefined;
        throw e;
      }
    }),
  );
  for (const o of opened) if (o) held.set(o.v, { keyShare: o.keyShare, selfShare: o.selfShare });
  const maskedWith = new Set(m.shares.map((e) => e.peer));

  // y_u = x_u + PRG(b_u) + Σ_{v>u} PRG(s_uv) − Σ_{v<u} PRG(s_uv), over v in N(u) ∩ U2.
  const acc = new RingAccumulator(config.dimension);
  acc.addVector(state.input, 1);
  // x' = x + e: the round's DP noise, inside the masks (so the server never sees it apart from x).
  const noise = drawNoise(ctx, config);
  if (noise !== undefined) acc.addVector(noise.ring, 1);
  await acc.addPrg(c, await derive.selfMaskKey(c, state.selfMaskSeed, config.roundId, state.id), 1);
  for (const v of maskedWith) {
    const key = state.maskKeys.get(v);
    if (key === undefined) throw new SecAggError('ERR_INTERNAL', `no mask key for neighbour ${v}`);
    await acc.addPrg(c, key, v > state.id ? 1 : -1);
  }
  const vector = packVector(acc.toVector(config.bits), config.bits);
  // The input, the self-mask seed and the mask keys are not needed again: the next state does not hold them.
  const masked: Masked = {
    id: state.id,
    config,
    view: state.view,
    advertised: state.advertised,
    peers: state.peers,
    held,
    maskedWith,
    signedSurvivors: undefined,
    revealed: new Map(),
    dpNoise: noise?.removable,
  };
  const next: AwaitingConsistencyState | AwaitingUnmaskState = { ...masked, stage: config.mode === 'active' ? 'awaiting-consistency' : 'awaiting-unmask' };
  return { state: next, outgoing: send(next, { case: 'maskedInput', value: { vector } }) };
}

/** The survivor set U3 must be a sane id list that contains this client and agrees with its view of U2. */
function checkSurvivors(state: Masked, list: readonly number[]): number[] {
  const config = state.config;
  const survivors = checkIdList(list, 'survivors');
  if (survivors.length < config.threshold)
    throw new SecAggError('ERR_BELOW_THRESHOLD', `${survivors.length} survivors is fewer than the threshold ${config.threshold}`);
  if (!survivors.includes(state.id)) throw new SecAggError('ERR_INCONSISTENT_VIEW', 'this client is missing from the survivor set');
  const u1 = new Set(state.advertised);
  // Every neighbour this client kept that is called a survivor must have shared its keys with this
  // client: otherwise the server withheld its shares so that this client masked with fewer
  // neighbours (the "mask partners" lie), or the survivor set is simply false.
  for (const v of survivors) {
    if (v !== state.id && state.peers.has(v) && !state.maskedWith.has(v))
      throw new SecAggError('ERR_INCONSISTENT_VIEW', `client ${v} is called a survivor but never shared its keys with this client`);
    if (!u1.has(v)) throw new SecAggError('ERR_INCONSISTENT_VIEW', `client ${v} never advertised keys`);
  }
  return survivors;
}

async function onConsistency(ctx: ClientContext, state: AwaitingConsistencyState, m: ConsistencyRequest): Promise<ClientStep> {
  const survivors = checkSurvivors(state, m.survivors);
  if (state.view === undefined) throw new SecAggError('ERR_STAGE_MISMATCH', 'a consistency request without a signed view');
  const signature = await (await identityKey(ctx)).sign(derive.consistencyTranscript(state.config.roundId, state.view.digest, survivors));
  const next: AwaitingUnmaskState = { ...state, stage: 'awaiting-unmask', signedSurvivors: survivors };
  return { state: next, outgoing: send(next, { case: 'consistencySignature', value: { signature } }) };
}

async function onUnmask(ctx: ClientContext, state: AwaitingUnmaskState | DoneClientState, m: UnmaskRequest): Promise<ClientStep> {
  const config = state.config;
  const survivors = checkSurvivors(state, m.survivors);
  if (config.mode === 'active') {
    const signed = state.signedSurvivors;
    const view = state.view;
    if (signed === undefined || view === undefined)
      throw new SecAggError('ERR_INCONSISTENT_VIEW', 'an unmask request before this client signed a survivor set');
    if (signed.length !== survivors.length || signed.some((v, i) => v !== survivors[i]))
      throw new SecAggError('ERR_INCONSISTENT_VIEW', 'the survivor set differs from the one this client signed');
    const transcript = derive.consistencyTranscript(config.roundId, view.digest, survivors);
    const members = new Set(survivors);
    const signers = new Set<number>();
    for (const s of m.signatures) {
      if (!members.has(s.client)) throw new SecAggError('ERR_INCONSISTENT_VIEW', `signature from client ${s.client}, who is not a survivor`);
      if (signers.has(s.client)) throw new SecAggError('ERR_DUPLICATE_SENDER', `two signatures from client ${s.client}`);
      const identity = directoryKey(ctx, s.client);
      if (identity === undefined || s.signature.length !== SIGNATURE_BYTES || !(await ctx.crypto.ed25519Verify(identity, transcript, s.signature)))
        throw new SecAggError('ERR_SIGNATURE_INVALID', `client ${s.client} did not sign this survivor set`);
      signers.add(s.client);
    }
    // A quorum of U1, not just t: two different survivor sets can then never both be signed, since
    // any two quorums share an honest client and an honest client signs one survivor set only.
    const quorum = consistencyQuorum(config, view.advertised.length);
    if (signers.size < quorum)
      throw new SecAggError('ERR_BELOW_THRESHOLD', `${signers.size} clients signed the survivor set, fewer than the quorum of ${quorum}`);
  }
  // Decide every reveal before revealing anything: refuse outright if any neighbour would get both kinds.
  const members = new Set(survivors);
  const plan: Array<{ owner: number; kind: 'self' | 'key'; share: Uint8Array }> = [];
  for (const [v, shares] of state.held) {
    const kind = members.has(v) ? 'self' : 'key';
    const before = state.revealed.get(v);
    if (before !== undefined && before !== kind) throw new SecAggError('ERR_BOTH_SHARES_REQUESTED', `the server asked for both kinds of share of client ${v}`);
    plan.push({ owner: v, kind, share: kind === 'self' ? shares.selfShare : shares.keyShare });
  }
  // The excess of removable noise: drawn once, for the survivor set verified above (never a declared
  // count), and the same bytes for every later request.
  let dpNoise = state.dpNoise;
  // P1 and P2 are not needed once the excess is drawn: the state keeps the excess alone.
  if (dpNoise !== undefined && dpNoise.excess === undefined)
    dpNoise = { p1: EMPTY_COUNTS, p2: EMPTY_COUNTS, excess: drawExcess(ctx, config, dpNoise, survivors.length) };
  const excessNoise = dpNoise?.excess ?? new Uint8Array(0);
  for (const p of plan) state.revealed.set(p.owner, p.kind);
  const selfMaskShares = plan.filter((p) => p.kind === 'self').map((p) => ({ owner: p.owner, share: p.share }));
  const keyShares = plan.filter((p) => p.kind === 'key').map((p) => ({ owner: p.owner, share: p.share }));
  const next: DoneClientState = { ...state, stage: 'done', dpNoise };
  return { state: next, outgoing: send(next, { case: 'unmaskResponse', value: { selfMaskShares, keyShares, excessNoise } }) };
}

/** RFC 7748 clamping: the X25519 scalar a 32-byte private key really stands for. */
function clampScalar(k: Uint8Array): Uint8Array {
  const out = k.slice();
  out[0] = out[0]! & 248;
  out[31] = (out[31]! & 127) | 64;
  return out;
}
