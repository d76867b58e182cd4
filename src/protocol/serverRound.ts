/**
 * The server's side of one round as a pure state machine. It is driven by decoded client messages
 * (`handleServerMessage`) and by explicit "the stage's deadline passed" events
 * (`handleServerDeadline`); it returns what to send to whom. No I/O, no clock.
 *
 * The state is data: one variant per stage holding exactly what exists in that stage (see
 * ServerState), and nothing else — the crypto provider, the RNG, the unmasker, the identity
 * directory and the event-loop yield come in a ServerContext passed to every call and never kept.
 * So a state can be written down (stateCodec.ts: encodeServerState) and finished elsewhere.
 *
 * The contract: a call *consumes* the state it is given. It returns the state to use next (the
 * same object when it refused the message and changed nothing); the consumed one must not be used
 * again, and is refused if it is (TypeError). A call also refuses a state that another call is
 * still working on: the machine is not reentrant, so calls on one round go one at a time.
 *
 * A bad message is refused with a typed error and changes nothing: every check runs before the
 * state is touched, so one misbehaving client never disturbs the round for the others.
 * Masked inputs go into one running sum as they arrive (memory O(m), not O(n·m)) — one message at a
 * time, or several already added up where they arrived (handleServerPartialSum).
 */
import { defaultCrypto } from '#crypto-default';
import type { CryptoProvider } from '../crypto/provider.js';
import { isSmallOrderX25519 } from '../crypto/lowOrder.js';
import { SecAggError, isSecAggError } from '../errors.js';
import type { ClientId, RoundId } from '../ids.js';
import { concatBytes } from '../bytes.js';
import { nextMacrotask, workPacer } from '../pace.js';
import { RingAccumulator } from '../ring/accumulator.js';
import { cryptoRng, type Rng } from '../rng.js';
import { buildGraph, type NeighbourGraph } from '../graph/index.js';
import { LagrangeCache, reconstructVerified, SHARE_BYTES, SHARE_CHUNKS } from '../shamir/index.js';
import { decodeClientMessageChecked, encodeServerMessage, type ServerBody } from '../wire/codec.js';
import { peekClientBody, type ClientKind } from '../wire/peek.js';
import type { AdvertiseKeys, ShareKeys, UnmaskResponse, ViewSignature } from '../wire/gen/secagg/v1/secagg_pb.js';
import { DEFAULT_LIMITS, consistencyQuorum, neighbourhoodBoundViolation, validateConfig, type RoundConfig, type RoundLimits } from './config.js';
import * as derive from './derive.js';
import { excessProbability, noiseReport, type NoiseReport } from './noise.js';
import { elementBytes } from '../ring/vector.js';
import { CLIENT_KIND_STAGE, unreachable, type ServerStage, type Stage } from './stages.js';
import { roundParameters } from './roundParams.js';

export { roundParameters };
import { GRAPH_SEED_BYTES, KEY_BYTES, SHARE_CIPHERTEXT_BYTES, SIGNATURE_BYTES, clampAbortReason, clientMessageLimits, entryCaps } from './limits.js';

export type { ServerStage };

/**
 * Masks the server must remove from the sum: one PRG expansion under a known key (a survivor's
 * self mask), or the pairwise masks between a dropped client — whose masking key the server has
 * just reconstructed — and its surviving neighbours. The second kind carries the key agreement
 * with it, so a worker-thread unmasker does the X25519 and HKDF work as well as the keystream.
 * sign +1 adds the keystream, −1 subtracts it.
 */
export type MaskJob = { readonly key: Uint8Array; readonly sign: 1 | -1 } | { readonly dropped: DroppedClientMasks };

export interface DroppedClientMasks {
  readonly round: RoundId;
  readonly client: ClientId;
  /** The dropped client's reconstructed (and verified) 32-byte X25519 masking key. */
  readonly secretKey: Uint8Array;
  readonly peers: readonly { readonly client: ClientId; readonly publicKey: Uint8Array; readonly sign: 1 | -1 }[];
}

/** PRG expansions a job performs. */
export function jobExpansions(job: MaskJob): number {
  return 'key' in job ? 1 : job.dropped.peers.length;
}

/** The pairwise mask keys of a dropped client with its surviving neighbours, one at a time (X25519 + HKDF each). */
export async function* droppedMaskKeys(d: DroppedClientMasks, crypto: CryptoProvider): AsyncGenerator<{ key: Uint8Array; sign: 1 | -1 }> {
  const key = await crypto.x25519(d.secretKey);
  for (const p of d.peers) yield { key: await derive.pairwiseMaskKey(crypto, await key.agree(p.publicKey), d.round, p.client, d.client), sign: p.sign };
}

/**
 * Runs one job into `sum` in this thread. `pause`, if given, is awaited after each PRG expansion
 * with the work just done (in keystream words, a key agreement counted as AGREEMENT_WORDS), so a
 * caller can let other work run.
 */
export async function applyMaskJob(sum: RingAccumulator, job: MaskJob, crypto: CryptoProvider, pause?: (words: number) => Promise<void>): Promise<void> {
  if ('key' in job) {
    await sum.addPrg(crypto, job.key, job.sign);
    return pause?.(sum.length);
  }
  for await (const { key, sign } of droppedMaskKeys(job.dropped, crypto)) {
    await sum.addPrg(crypto, key, sign);
    await pause?.(sum.length + AGREEMENT_WORDS);
  }
}

/** An X25519 agreement and HKDF cost about as much as expanding this many keystream words. */
const AGREEMENT_WORDS = 1 << 14;
/**
 * Keystream words between two yields of an in-thread unmasking: one to two milliseconds. Not less:
 * a yield is not free (V8 runs its pending garbage-collection tasks there, ~0.2 ms median
 * measured on the bench machine), and the slices of a round add up.
 */
const WORDS_PER_YIELD = 1 << 20;

/**
 * Applies mask jobs to the running sum. The default runs them in this thread; a Node server can
 * pass one that spreads them over worker threads (node/workerUnmasker.ts). The server calls it
 * several times concurrently, one batch at a time, without waiting for the previous batch:
 * additions commute, so any interleaving gives the same sum.
 */
export type Unmasker = (sum: RingAccumulator, jobs: readonly MaskJob[], crypto: CryptoProvider, round?: UnmaskPlan) => Promise<void>;

/** What the whole unmasking of a round will expand, known before the first batch: lets an unmasker choose threads per round. */
export interface UnmaskPlan {
  /** Keystream words over all batches of this round (PRG expansions × m). */
  readonly words: number;
  /** The server's yield: an unmasker that works in the server's thread awaits it every millisecond or two of work. */
  readonly yieldToEventLoop?: () => Promise<void>;
}

/**
 * Runs the jobs in this thread, yielding every millisecond or two when the plan carries the server's
 * yield. Batches of one round run one after another (the server starts them without waiting):
 * interleaved, each would take its slice in every turn of the event loop, and the turns would grow
 * with the number of batches.
 */
export const sequentialUnmasker: Unmasker = async (sum, jobs, crypto, round) => {
  const yielder = round?.yieldToEventLoop;
  if (round === undefined || yielder === undefined) return runInThread(sum, jobs, crypto, undefined);
  const previous = inThreadQueue.get(round) ?? Promise.resolve();
  const mine = previous.then(
    () => runInThread(sum, jobs, crypto, yielder),
    () => runInThread(sum, jobs, crypto, yielder),
  );
  inThreadQueue.set(round, mine);
  return mine;
};

/** Per round (its plan): the last in-thread batch queued. */
const inThreadQueue = new WeakMap<UnmaskPlan, Promise<void>>();

async function runInThread(sum: RingAccumulator, jobs: readonly MaskJob[], crypto: CryptoProvider, yielder: (() => Promise<void>) | undefined): Promise<void> {
  const pause = yielder ? workPacer(WORDS_PER_YIELD, yielder) : undefined;
  for (const job of jobs) await applyMaskJob(sum, job, crypto, pause);
}

/**
 * What a round's server calls need besides the state: given to every call, never kept in the state.
 * Build one with serverContext(); a process that resumes an encoded round builds its own.
 */
export interface ServerContext {
  readonly crypto: CryptoProvider;
  /** Randomness for the graph seed. Production: the platform CSPRNG. */
  readonly rng: Rng;
  /** Active mode: long-term Ed25519 public keys of the cohort. */
  readonly directory: ReadonlyMap<number, Uint8Array> | undefined;
  readonly unmasker: Unmasker;
  /** Lets other work run during long steps: awaited between slices of work. */
  readonly yieldToEventLoop: () => Promise<void>;
}

/** A context with the defaults filled in: the platform's crypto and CSPRNG, the in-thread unmasker, setImmediate (or a zero timeout). */
export function serverContext(o: Partial<ServerContext> = {}): ServerContext {
  return {
    crypto: o.crypto ?? defaultCrypto,
    rng: o.rng ?? cryptoRng,
    directory: o.directory,
    unmasker: o.unmasker ?? sequentialUnmasker,
    yieldToEventLoop: o.yieldToEventLoop ?? nextMacrotask,
  };
}

/** The round's own parameters: they become part of the state. */
export interface ServerOptions {
  readonly config: RoundConfig;
  /** Validation of the config (largest cohort and dimension accepted). */
  readonly limits?: Partial<RoundLimits>;
  /** Semi-honest mode: fix the graph seed instead of drawing it (tests that need to know the graph in advance). Active mode derives it from the clients' reveals. */
  readonly graphSeed?: Uint8Array;
  /** Active mode: view attempts before the round aborts when members of U1 fail to reveal (default 3; clients cap it too). */
  readonly viewAttempts?: number;
}

/** The default `yieldToEventLoop`. */
export { nextMacrotask };

export interface RoundResult {
  /** Σ x_u mod 2^bits over `included`. */
  readonly sum: Uint32Array;
  /** U3: the clients whose masked input is in the sum, ascending. */
  readonly included: readonly ClientId[];
  /** Clients that advertised keys (U1), shared keys (U2), signed (U4, active) and answered the unmask request (U5). */
  readonly sets: Readonly<Record<'advertised' | 'shared' | 'masked' | 'signed' | 'unmasked', readonly ClientId[]>>;
  /** Holders whose revealed shares were inconsistent and were left out of a reconstruction. */
  readonly badShareHolders: readonly ClientId[];
  /** PRG expansions the unmasking performed (self masks + pairwise masks of dropped clients). */
  readonly maskExpansions: number;
  /** Reconstructions that needed the exact per-share check (inconsistent shares among those revealed). */
  readonly exactShareChecks: number;
  /** Active mode: view attempts it took to agree on U1 and the graph seed (0 in semi-honest mode). */
  readonly viewAttempts: number;
  /** A DP round (config.dp): the noise actually in `sum` (src/protocol/noise.ts); absent otherwise. */
  readonly noise?: NoiseReport;
}

export interface Advertised {
  readonly encryptionKey: Uint8Array;
  readonly maskingKey: Uint8Array;
  readonly signature: Uint8Array;
  /** Active mode: commitment to the client's seed contribution for the current view attempt (empty in semi-honest mode). */
  readonly seedCommitment: Uint8Array;
}

export interface ViewAnswer {
  readonly signature: Uint8Array;
  readonly reveal: Uint8Array;
  readonly next: Uint8Array;
}

/** Active mode: one view attempt: U1 and the commitments every member signs, and their answers. */
export interface View {
  readonly attempt: number;
  readonly advertised: readonly number[];
  readonly members: ReadonlySet<number>;
  readonly commitments: readonly Uint8Array[];
  readonly digest: Uint8Array;
  readonly answers: Map<number, ViewAnswer>;
}

export interface Shared {
  readonly commitment: Uint8Array;
  /** Ciphertext for each recipient. */
  readonly ciphertexts: Map<number, Uint8Array>;
}

export interface RevealedShares {
  readonly holders: number[];
  readonly shares: Uint8Array[];
}

/** What every running stage has. */
interface RoundBase {
  readonly config: RoundConfig;
  /** Active mode: the cap on view attempts. */
  readonly viewAttempts: number;
  /** Semi-honest mode: the graph seed fixed at the start, if any. */
  readonly fixedGraphSeed: Uint8Array | undefined;
  /** Clients that told us they aborted; they are no longer waited for. */
  readonly quit: Set<number>;
  readonly result?: undefined;
  readonly abortError?: undefined;
}

/** From the advertise stage on: the keys clients advertised (U1 is drawn from them). */
interface KeysData extends RoundBase {
  readonly advertised: Map<number, Advertised>;
  /** Every advertised public key (hex), for the duplicate check: derived from `advertised`. */
  readonly keysSeen: Set<string>;
}

/** From the share stage on: U1, its graph and the encrypted shares clients sent. */
interface GraphData extends KeysData {
  /** Active mode: the view every member of U1 signed (undefined in semi-honest mode). */
  readonly view: View | undefined;
  /** U1, ascending. */
  readonly u1: readonly number[];
  readonly graphSeed: Uint8Array;
  readonly shared: Map<number, Shared>;
}

/** From the masked stage on: U2 and the running sum of masked inputs. */
interface MaskedData extends GraphData {
  readonly u2: readonly number[];
  readonly u2set: ReadonlySet<number>;
  /** Σ masked inputs so far, mod 2^32 (its words are what the state encoding writes). */
  readonly sum: RingAccumulator;
  readonly masked: Set<number>;
}

/** From the consistency stage on (unmask in semi-honest mode): U3. */
interface SurvivorData extends MaskedData {
  readonly u3: readonly number[];
  readonly u3set: ReadonlySet<number>;
  /** Active mode: signatures on U3. */
  readonly signatures: Map<number, Uint8Array>;
}

export interface AdvertiseState extends KeysData {
  readonly stage: 'advertise';
}
export interface ViewState extends KeysData {
  readonly stage: 'view';
  readonly view: View;
}
export interface ShareState extends GraphData {
  readonly stage: 'share';
}
export interface MaskedState extends MaskedData {
  readonly stage: 'masked';
}
export interface ConsistencyState extends SurvivorData {
  readonly stage: 'consistency';
}
export interface UnmaskState extends SurvivorData {
  readonly stage: 'unmask';
  /** Active mode: U4, the clients that signed U3 (undefined in semi-honest mode). */
  readonly u4: readonly number[] | undefined;
  /** Who is asked to unmask: U4 in active mode, U3 in semi-honest mode. */
  readonly askedToUnmask: ReadonlySet<number>;
  /**
   * Revealed shares by owner, in arrival order (a holder answers once, so (owner, holder) never
   * repeats). Self-mask shares only ever for U3, key shares only for U2 \ U3.
   */
  readonly selfShares: Map<number, RevealedShares>;
  readonly keyShares: Map<number, RevealedShares>;
  readonly responded: Set<number>;
}
export interface DoneState {
  readonly stage: 'done';
  readonly config: RoundConfig;
  readonly result: RoundResult;
  readonly abortError?: undefined;
}
export interface AbortedState {
  readonly stage: 'aborted';
  readonly config: RoundConfig;
  readonly abortError: SecAggError;
  readonly result?: undefined;
}

/** A round that still takes messages. */
export type RunningServerState = AdvertiseState | ViewState | ShareState | MaskedState | ConsistencyState | UnmaskState;

/** One round's server state: a variant per stage (narrow on `stage`). */
export type ServerState = RunningServerState | DoneState | AbortedState;

export interface Outgoing {
  readonly to: ClientId;
  readonly bytes: Uint8Array;
}

export interface ServerStep {
  readonly state: ServerState;
  readonly outgoing: readonly Outgoing[];
  /** Why the handled message was refused; the round goes on. */
  readonly error?: SecAggError;
}

/**
 * The graph over U1 of a state, built from U1 and the graph seed on first use and then kept per U1
 * (not in the state: it is derived data, rebuilt after a state is decoded).
 */
const graphs = new WeakMap<readonly number[], NeighbourGraph>();
export function graphOf(state: GraphData): NeighbourGraph {
  let g = graphs.get(state.u1);
  if (g === undefined) graphs.set(state.u1, (g = buildGraph({ clients: state.u1 as ClientId[], degree: state.config.degree, seed: state.graphSeed })));
  return g;
}

/** A map entry the round's invariants say exists; a missing one is a bug, reported as such. */
function must<K, V>(map: ReadonlyMap<K, V>, key: K, what: string): V {
  const v = map.get(key);
  if (v === undefined) throw new SecAggError('ERR_INTERNAL', `${what} ${String(key)} is missing`);
  return v;
}

/** States handed to a call and not yet returned, or consumed by one: the mutation contract's guard. */
const taken = new WeakSet<object>();

/** Refuses a consumed state, or one a call is still working on (TypeError: a caller bug). */
export function assertServerStateUsable(state: ServerState): void {
  if (taken.has(state))
    throw new TypeError('this server state was consumed by an earlier call (or a call on it is still running): use the state the last call returned');
}

function take(state: ServerState): void {
  assertServerStateUsable(state);
  taken.add(state);
}

/** The step's state is the one to use next: the input is released when it comes back unchanged. */
function settle(input: ServerState, step: ServerStep): ServerStep {
  if (step.state === input) taken.delete(input);
  return step;
}

/**
 * Start a round: returns the state and the RoundStart message for every cohort member.
 *
 * @example
 * ```ts
 * const ctx = serverContext();
 * let { state, outgoing } = startServerRound(ctx, { config });
 * for (const o of outgoing) send(o.to, o.bytes);
 * ({ state, outgoing } = await handleServerMessage(ctx, state, from, bytes)); // on each client message
 * ({ state, outgoing } = await handleServerDeadline(ctx, state));             // when a stage times out
 * if (state.stage === 'done') console.log(state.result.sum);
 * ```
 */
export function startServerRound(ctx: ServerContext, options: ServerOptions): ServerStep {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const config = options.config;
  validateConfig(config, limits);
  if (config.mode === 'active') {
    if (ctx.directory === undefined) throw new TypeError('active mode needs a directory of identity keys');
    for (const id of config.cohort) if (!ctx.directory.has(id)) throw new RangeError(`no identity key for client ${id}`);
  }
  const viewAttempts = options.viewAttempts ?? 3;
  if (!Number.isSafeInteger(viewAttempts) || viewAttempts < 1 || viewAttempts > 255) throw new RangeError('viewAttempts must be in [1, 255]');
  if (options.graphSeed !== undefined && options.graphSeed.length !== GRAPH_SEED_BYTES) throw new RangeError(`graphSeed must be ${GRAPH_SEED_BYTES} bytes`);
  const state: AdvertiseState = {
    stage: 'advertise',
    config,
    viewAttempts,
    fixedGraphSeed: options.graphSeed?.slice(),
    quit: new Set(),
    advertised: new Map(),
    keysSeen: new Set(),
  };
  const start = encodeServerMessage(config.roundId, { case: 'roundStart', value: roundParameters(config) });
  return { state, outgoing: config.cohort.map((to) => ({ to, bytes: start })) };
}

/** The largest honest message of each kind in this round, and the caps on repeated entries: checked before decoding. Derived from the config, kept per config. */
const decodeLimits = new WeakMap<
  RoundConfig,
  { maxBytes: Readonly<Record<ClientKind, number>>; caps: { maxNeighbours: number; maxMembers: number }; cohort: ReadonlySet<number> }
>();
function limitsOf(config: RoundConfig) {
  let l = decodeLimits.get(config);
  if (l === undefined) decodeLimits.set(config, (l = { maxBytes: clientMessageLimits(config), caps: entryCaps(config), cohort: new Set(config.cohort) }));
  return l;
}

/**
 * Handle one message from `from` (authenticated by the transport). Never throws on bad input: a
 * refusal comes back as `error` with the same, unchanged state. Consumes `consumed` (see the
 * module comment): go on with the returned state.
 */
export async function handleServerMessage(ctx: ServerContext, consumed: ServerState, from: number, bytes: Uint8Array): Promise<ServerStep> {
  take(consumed);
  let applied: RunningServerState;
  try {
    // The round keeps parts of what it accepts (keys, ciphertexts, shares, signatures): never views
    // into a buffer the caller may reuse, so the input is copied once.
    applied = await dispatch(ctx, consumed, from, ownBytes(bytes));
  } catch (e) {
    const error = isSecAggError(e) ? e : new SecAggError('ERR_INTERNAL', 'unexpected error in server round', { cause: e });
    taken.delete(consumed);
    return { state: consumed, outgoing: [], error };
  }
  // The message is in the state from here on. A stage change it completes that then fails is not a
  // refusal — the message's effects (its keys, a masked input in the sum, a quit) would stay behind
  // one — but, as at a deadline, a fault the round cannot go on from: the round aborts.
  try {
    return settle(consumed, await maybeClose(ctx, applied));
  } catch (e) {
    return abort(consumed, isSecAggError(e) ? e : new SecAggError('ERR_INTERNAL', 'unexpected error closing a stage', { cause: e }));
  }
}

/**
 * Several clients' masked inputs, added up before they reach the server: a gateway that terminates
 * the clients' connections sums the masked inputs it received for one shard (createPartialSum,
 * protocol/partialSum.ts) and forwards one vector instead of one per client, so no single process
 * receives all n·m words.
 */
export interface PartialSum {
  /** The clients whose masked inputs are in `words`: distinct members of U2. */
  readonly clients: readonly number[];
  /** Σ of their masked inputs mod 2^bits: m words, each < 2^bits. */
  readonly words: Uint32Array;
}

/**
 * Apply a partial sum in the masked stage: its words go into the running sum and its clients count
 * as masked, exactly as if each had sent its MaskedInput; then the stage closes if everyone has
 * answered, as after a message. Never throws on bad input: outside the masked stage
 * (ERR_STAGE_MISMATCH), an empty client list (ERR_SIZE), a client listed twice or already masked —
 * by its own message or an earlier partial sum — (ERR_DUPLICATE_SENDER), a client not in U2
 * (ERR_UNKNOWN_SENDER), a vector of the wrong length or with a word ≥ 2^bits (ERR_SIZE): refused,
 * with the same, unchanged state. Consumes `consumed` (see the module comment); the words are read
 * during the call and not kept. A TypeError (a caller bug) when `clients` is not an array or `words`
 * not a Uint32Array, before the state is touched.
 *
 * Who may call this: the round's own infrastructure (the gateway's sum is trusted to hold exactly
 * the listed clients' masked inputs, as a message is trusted to come from its connection's client).
 * A client that is listed but whose input is missing, or the other way round, leaves masks in the
 * sum: the unmasked result is then wrong, not private data exposed — but it is wrong.
 *
 * @example
 * ```ts
 * const partial = createPartialSum(config);
 * for (const { from, vector } of maskedInputs) partial.add(from, vector); // at the gateway
 * ({ state, outgoing } = await handleServerPartialSum(ctx, state, partial.finish())); // at the shard's worker
 * ```
 */
export async function handleServerPartialSum(ctx: ServerContext, consumed: ServerState, partial: PartialSum): Promise<ServerStep> {
  assertServerStateUsable(consumed);
  if (typeof partial !== 'object' || partial === null || !Array.isArray(partial.clients)) throw new TypeError('partial.clients must be an array of client ids');
  if (!(partial.words instanceof Uint32Array)) throw new TypeError('partial.words must be a Uint32Array');
  take(consumed);
  let applied: MaskedState;
  try {
    if (consumed.stage !== 'masked')
      throw new SecAggError('ERR_STAGE_MISMATCH', `a partial sum of masked inputs does not belong to the ${consumed.stage} stage`);
    onPartialSum(consumed, partial);
    applied = consumed;
  } catch (e) {
    const error = isSecAggError(e) ? e : new SecAggError('ERR_INTERNAL', 'unexpected error in server round', { cause: e });
    taken.delete(consumed);
    return { state: consumed, outgoing: [], error };
  }
  // As after an accepted message: the inputs are in the sum, so a failed stage change aborts.
  try {
    return settle(consumed, await maybeClose(ctx, applied));
  } catch (e) {
    return abort(consumed, isSecAggError(e) ? e : new SecAggError('ERR_INTERNAL', 'unexpected error closing a stage', { cause: e }));
  }
}

/** Every check first (the list, then the vector), then the sum and the masked set: a refusal changes nothing. */
function onPartialSum(state: MaskedState, { clients, words }: PartialSum): void {
  if (clients.length === 0) throw new SecAggError('ERR_SIZE', 'a partial sum of no clients');
  // At most |U2| distinct members can pass: stop at the first bad one, before building anything larger.
  const seen = new Set<number>();
  for (const u of clients) {
    if (!state.u2set.has(u))
      throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${String(u)} is not in the shared-keys set`, { clients: typeof u === 'number' ? [u] : [] });
    if (seen.has(u)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${u} is listed twice in the partial sum`, { clients: [u] });
    if (state.masked.has(u)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${u} already sent its masked input`, { clients: [u] });
    seen.add(u);
  }
  state.sum.addWords(words, state.config.bits); // checks length and range before it keeps anything
  for (const u of clients) state.masked.add(u);
}

/**
 * A fresh Uint8Array holding the input (Buffer#slice would share memory) — except a masked input,
 * which is added into the sum and not kept: copying every one would cost O(n·m) for nothing.
 */
function ownBytes(bytes: Uint8Array): Uint8Array {
  if (!(bytes instanceof Uint8Array)) return bytes;
  try {
    if (peekClientBody(bytes).kind === 'maskedInput') return bytes;
  } catch {
    // malformed: the checked decoder refuses it with its own typed error
  }
  return new Uint8Array(bytes);
}

/**
 * Which stage the round is in, one value per stage *instance*: the stage name, and for the view
 * stage its attempt ('view#2'). A caller that runs deadlines changes its timer when this changes,
 * and drops a deadline set for an instance that is over (see handleServerDeadline).
 */
export function stageInstance(state: ServerState): string {
  return state.stage === 'view' ? `view#${state.view.attempt}` : state.stage;
}

/** The current stage's deadline passed: close it with whoever answered. Consumes `consumed`. */
export async function handleServerDeadline(ctx: ServerContext, consumed: ServerState): Promise<ServerStep> {
  if (consumed.stage === 'done' || consumed.stage === 'aborted') {
    take(consumed);
    taken.delete(consumed);
    return { state: consumed, outgoing: [] };
  }
  take(consumed);
  try {
    return settle(consumed, await closeStage(ctx, consumed));
  } catch (e) {
    // closeStage catches what it expects; anything else is a bug, and the round cannot go on.
    const error = isSecAggError(e) ? e : new SecAggError('ERR_INTERNAL', 'unexpected error closing a stage', { cause: e });
    return abort(consumed, error);
  }
}

/** The current state again as a new object: the consumed one is not handed back. */
function same<S extends RunningServerState>(state: S): ServerStep {
  return { state: { ...state }, outgoing: [] };
}

/** Whether a client message of `kind` is taken in `stage` (the stage table says; 'any': every running stage). */
function belongsTo(kind: ClientKind, stage: Stage): boolean {
  const home = CLIENT_KIND_STAGE[kind];
  return home === 'any' || home === stage;
}

function mismatch(stage: string, kind: string): SecAggError {
  return new SecAggError('ERR_STAGE_MISMATCH', `a ${kind} message does not belong to the ${stage} stage`);
}

/** Check the message and apply it to the state; throws (having changed nothing) to refuse it. The caller then closes the stage if it is complete. */
async function dispatch(ctx: ServerContext, state: ServerState, from: number, bytes: Uint8Array): Promise<RunningServerState> {
  if (state.stage === 'done' || state.stage === 'aborted') throw new SecAggError('ERR_STAGE_MISMATCH', `the round is ${state.stage}`);
  const limits = limitsOf(state.config);
  if (!limits.cohort.has(from)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${from} is not in this round's cohort`);
  // The kind is checked against the stage (the stage table: CLIENT_KIND_STAGE), and the size against
  // that kind's own limit, before anything is decoded; repeated entries are capped at the
  // neighbourhood / cohort size.
  const stage = state.stage;
  const msg = decodeClientMessageChecked(bytes, { maxBytes: limits.maxBytes, allowed: (kind) => belongsTo(kind, stage), ...limits.caps });
  if (!derive.bytesEqual(msg.roundId, state.config.roundId)) throw new SecAggError('ERR_ROUND_MISMATCH', 'message is for another round');
  if (msg.sender !== from) throw new SecAggError('ERR_UNKNOWN_SENDER', `message claims sender ${msg.sender} on the connection of ${from}`);
  const body = msg.body;
  // One case per client message kind: a kind added to the wire does not compile until it is handled
  // here (and placed in the stage table). Each handler narrows the state to its own stage.
  switch (body.case) {
    case 'abort':
      state.quit.add(from);
      break;
    case 'advertiseKeys':
      if (state.stage !== 'advertise') throw mismatch(state.stage, body.case);
      await onAdvertise(ctx, state, from, body.value);
      break;
    case 'viewSignature':
      if (state.stage !== 'view') throw mismatch(state.stage, body.case);
      await onViewSignature(ctx, state, from, body.value);
      break;
    case 'shareKeys':
      if (state.stage !== 'share') throw mismatch(state.stage, body.case);
      onShareKeys(state, from, body.value);
      break;
    case 'maskedInput':
      if (state.stage !== 'masked') throw mismatch(state.stage, body.case);
      onMasked(state, from, body.value.vector);
      break;
    case 'consistencySignature':
      if (state.stage !== 'consistency') throw mismatch(state.stage, body.case);
      await onSignature(ctx, state, from, body.value.signature);
      break;
    case 'unmaskResponse':
      if (state.stage !== 'unmask') throw mismatch(state.stage, body.case);
      onUnmaskResponse(state, from, body.value);
      break;
    case undefined:
      throw new SecAggError('ERR_DECODE', 'a client message without a body');
    default:
      unreachable(body, 'client message kind');
  }
  return state;
}

function identityOf(ctx: ServerContext, client: number): Uint8Array {
  const key = ctx.directory?.get(client);
  if (key === undefined) throw new SecAggError('ERR_INTERNAL', `no identity key for client ${client} in the context's directory`);
  return key;
}

async function onAdvertise(ctx: ServerContext, state: AdvertiseState, from: number, m: AdvertiseKeys): Promise<void> {
  const active = state.config.mode === 'active';
  if (state.advertised.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already advertised keys`);
  if (m.encryptionPublicKey.length !== KEY_BYTES || m.maskingPublicKey.length !== KEY_BYTES) throw new SecAggError('ERR_SIZE', 'public keys must be 32 bytes');
  if (m.seedCommitment.length !== (active ? 32 : 0))
    throw new SecAggError('ERR_SIZE', active ? 'the seed commitment must be 32 bytes' : 'no seed commitment is expected in semi-honest mode');
  const ek = derive.hex(m.encryptionPublicKey);
  const mk = derive.hex(m.maskingPublicKey);
  if (ek === mk || state.keysSeen.has(ek) || state.keysSeen.has(mk))
    throw new SecAggError('ERR_DUPLICATE_KEY', `client ${from} advertised a public key that is already in use`);
  // A small-order key would make every neighbour's key agreement fail: refuse it here, before it
  // reaches anyone. (Every other 32-byte string is a valid X25519 u-coordinate.)
  if (isSmallOrderX25519(m.encryptionPublicKey) || isSmallOrderX25519(m.maskingPublicKey))
    throw new SecAggError('ERR_INVALID_KEY', `client ${from} advertised a low-order public key`);
  if (active) {
    if (m.signature.length !== SIGNATURE_BYTES) throw new SecAggError('ERR_SIGNATURE_INVALID', 'signature must be 64 bytes');
    const transcript = derive.advertiseTranscript(state.config.roundId, from as ClientId, m.encryptionPublicKey, m.maskingPublicKey);
    if (!(await ctx.crypto.ed25519Verify(identityOf(ctx, from), transcript, m.signature)))
      throw new SecAggError('ERR_SIGNATURE_INVALID', `the keys of client ${from} are not signed by its identity`);
  } else if (m.signature.length !== 0) throw new SecAggError('ERR_SIZE', 'no signature is expected in semi-honest mode');
  state.keysSeen.add(ek);
  state.keysSeen.add(mk);
  state.advertised.set(from, {
    encryptionKey: m.encryptionPublicKey.slice(),
    maskingKey: m.maskingPublicKey.slice(),
    signature: m.signature.slice(),
    seedCommitment: m.seedCommitment.slice(),
  });
}

async function onViewSignature(ctx: ServerContext, state: ViewState, from: number, m: ViewSignature): Promise<void> {
  const view = state.view;
  if (!view.members.has(from)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${from} is not in this view`);
  if (view.answers.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already signed the view`);
  if (m.signature.length !== SIGNATURE_BYTES || m.seedReveal.length !== 32 || m.nextSeedCommitment.length !== 32)
    throw new SecAggError('ERR_SIZE', 'a view signature has a 64-byte signature, a 32-byte reveal and a 32-byte commitment');
  const a = must(state.advertised, from, 'the keys of view member');
  const c = ctx.crypto;
  const [revealOk, signed] = await Promise.all([
    derive.seedCommitment(c, state.config.roundId, from as ClientId, view.attempt, m.seedReveal).then((h) => derive.bytesEqual(h, a.seedCommitment)),
    c.ed25519Verify(identityOf(ctx, from), derive.viewTranscript(view.digest, from as ClientId, a.encryptionKey, a.maskingKey), m.signature),
  ]);
  if (!revealOk) throw new SecAggError('ERR_INCONSISTENT_VIEW', `client ${from}'s seed reveal does not match its commitment`);
  if (!signed) throw new SecAggError('ERR_SIGNATURE_INVALID', `client ${from} did not sign the view`);
  view.answers.set(from, { signature: m.signature.slice(), reveal: m.seedReveal.slice(), next: m.nextSeedCommitment.slice() });
}

/**
 * u's neighbours in `set`. Every set this is asked about holds only clients that shared keys, and a
 * ShareKeys is admitted only with one ciphertext per neighbour, so these are exactly the neighbours
 * u exchanged shares with.
 */
function edgesIn(graph: NeighbourGraph, u: number, set: ReadonlySet<number>): number[] {
  return graph.neighbours(u as ClientId).filter((v) => set.has(v));
}

function onShareKeys(state: ShareState, from: number, m: ShareKeys): void {
  const graph = graphOf(state);
  if (!graph.has(from)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${from} did not advertise keys`);
  if (state.shared.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already shared keys`);
  if (m.selfMaskCommitment.length !== 32) throw new SecAggError('ERR_SIZE', 'commitment must be 32 bytes');
  const neighbours = graph.neighbours(from as ClientId);
  // Exactly one ciphertext per neighbour: the server refused every bad key before anyone saw it, so
  // an honest client leaves no neighbour out; one that does is not admitted to U2 (were it, one
  // ordinary dropout among the few it shared with could sink the round).
  if (m.shares.length !== neighbours.length)
    throw new SecAggError('ERR_NOT_NEIGHBOUR', `${m.shares.length} encrypted shares for ${neighbours.length} neighbours`);
  const ciphertexts = new Map<number, Uint8Array>();
  let previous = 0;
  for (let i = 0; i < m.shares.length; i++) {
    const s = m.shares[i]!;
    if (s.peer <= previous) throw new SecAggError('ERR_DUPLICATE_SENDER', 'encrypted shares must be addressed once per neighbour, ascending');
    previous = s.peer;
    // Ascending, as many as the (ascending) neighbours: so each is the neighbour at its place.
    if (s.peer !== neighbours[i]) throw new SecAggError('ERR_NOT_NEIGHBOUR', `shares addressed to ${s.peer}, who is not a neighbour`);
    if (s.ciphertext.length !== SHARE_CIPHERTEXT_BYTES) throw new SecAggError('ERR_SIZE', `ciphertext for ${s.peer} has the wrong size`);
    ciphertexts.set(s.peer, s.ciphertext);
  }
  state.shared.set(from, { commitment: m.selfMaskCommitment, ciphertexts });
}

function onMasked(state: MaskedState, from: number, vector: Uint8Array): void {
  if (!state.u2set.has(from)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${from} is not in the shared-keys set`);
  if (state.masked.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already sent its masked input`);
  state.sum.addPacked(vector, state.config.bits, 1); // validates length and range before adding anything
  state.masked.add(from);
}

async function onSignature(ctx: ServerContext, state: ConsistencyState, from: number, signature: Uint8Array): Promise<void> {
  if (!state.u3set.has(from)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${from} is not a survivor`);
  if (state.signatures.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already signed`);
  if (signature.length !== SIGNATURE_BYTES) throw new SecAggError('ERR_SIGNATURE_INVALID', 'signature must be 64 bytes');
  if (state.view === undefined) throw new SecAggError('ERR_INTERNAL', 'an active round without a view');
  const transcript = derive.consistencyTranscript(state.config.roundId, state.view.digest, state.u3);
  if (!(await ctx.crypto.ed25519Verify(identityOf(ctx, from), transcript, signature)))
    throw new SecAggError('ERR_SIGNATURE_INVALID', `client ${from} did not sign the survivor set`);
  state.signatures.set(from, signature.slice());
}

function onUnmaskResponse(state: UnmaskState, from: number, m: UnmaskResponse): void {
  if (!state.askedToUnmask.has(from)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${from} was not asked to unmask`);
  if (state.responded.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already answered`);
  const graph = graphOf(state);
  // Check everything first; only then record, so a bad response leaves no trace.
  const owners = new Set<number>();
  const check = (entries: readonly { owner: number; share: Uint8Array }[], kind: 'self' | 'key') => {
    for (const { owner, share } of entries) {
      if (owners.has(owner)) throw new SecAggError('ERR_DUPLICATE_SENDER', `two shares of client ${owner}`);
      owners.add(owner);
      if (!state.u2set.has(owner) || !graph.isNeighbour(from, owner))
        throw new SecAggError('ERR_NOT_NEIGHBOUR', `client ${from} holds no shares of client ${owner}`);
      // The server only ever accepts one kind per owner: self-mask shares of survivors, key shares of the dropped.
      if ((kind === 'self') !== state.u3set.has(owner)) throw new SecAggError('ERR_BOTH_SHARES_REQUESTED', `a ${kind} share of client ${owner} is not wanted`);
      if (share.length !== SHARE_BYTES) throw new SecAggError('ERR_SIZE', `share of client ${owner} has the wrong size`);
    }
  };
  check(m.selfMaskShares, 'self');
  check(m.keyShares, 'key');
  // Removable DP noise: every survivor answering reveals its excess for this U3 (the one it verified),
  // exactly m packed elements, or nothing when nothing is removable; it comes off the sum at once
  // (addPacked checks length and range before it changes anything).
  const config = state.config;
  const wanted = excessProbability(config, state.u3.length) > 0 ? elementBytes(config.bits) * config.dimension : 0;
  if (m.excessNoise.length !== wanted) throw new SecAggError('ERR_SIZE', `excess noise of ${m.excessNoise.length} bytes where this round wants ${wanted}`);
  if (wanted > 0) state.sum.addPacked(m.excessNoise, config.bits, -1);
  const record = (into: Map<number, RevealedShares>, entries: readonly { owner: number; share: Uint8Array }[]) => {
    for (const { owner, share } of entries) {
      let got = into.get(owner);
      if (!got) into.set(owner, (got = { holders: [], shares: [] }));
      got.holders.push(from);
      got.shares.push(share);
    }
  };
  record(state.selfShares, m.selfMaskShares);
  record(state.keyShares, m.keyShares);
  state.responded.add(from);
}

interface Counted {
  has(u: number): boolean;
  readonly size: number;
}

/** Who the current stage waits for, and who has answered (every answer was checked to be from a member). */
function stageProgress(state: RunningServerState): { members: Counted; answered: Counted } {
  switch (state.stage) {
    case 'advertise':
      return { members: limitsOf(state.config).cohort, answered: state.advertised };
    case 'view':
      return { members: state.view.members, answered: state.view.answers };
    case 'share':
      return { members: { has: (u) => graphOf(state).has(u), size: state.u1.length }, answered: state.shared };
    case 'masked':
      return { members: state.u2set, answered: state.masked };
    case 'consistency':
      return { members: state.u3set, answered: state.signatures };
    case 'unmask':
      return { members: state.askedToUnmask, answered: state.responded };
    default:
      return unreachable(state, 'server stage');
  }
}

/** How far the current stage is (see stageCounts). */
export interface StageCounts {
  /** Clients the stage waits for (its members). */
  readonly expected: number;
  /** Members whose message for the stage was accepted (a member that answered and then quit included). */
  readonly answered: number;
  /** Members that quit (or whose connection closed) without answering. */
  readonly quit: number;
  /** Members still expected to answer: expected − answered − quit. The stage closes early when this is 0. */
  readonly pending: number;
}

/**
 * Who the current stage waits for, counted (what a dashboard shows as pending); undefined once the
 * round is over. Reads the state, changes nothing: O(quitters).
 */
export function stageCounts(state: ServerState): StageCounts | undefined {
  if (state.stage === 'done' || state.stage === 'aborted') return undefined;
  const { members, answered } = stageProgress(state);
  let quit = 0;
  for (const u of state.quit) if (members.has(u) && !answered.has(u)) quit++;
  return { expected: members.size, answered: answered.size, quit, pending: Math.max(0, members.size - answered.size - quit) };
}

/** Close the stage once every member has answered or quit: O(quitters) per message, not O(n). */
async function maybeClose(ctx: ServerContext, state: RunningServerState): Promise<ServerStep> {
  const { members, answered } = stageProgress(state);
  let quitWithoutAnswer = 0;
  for (const u of state.quit) if (members.has(u) && !answered.has(u)) quitWithoutAnswer++;
  if (answered.size + quitWithoutAnswer >= members.size) return closeStage(ctx, state);
  return same(state);
}

function abort(state: { readonly config: RoundConfig }, error: SecAggError): ServerStep {
  const bytes = encodeServerMessage(state.config.roundId, { case: 'aborted', value: { code: error.code, reason: clampAbortReason(error.message) } });
  const aborted: AbortedState = { stage: 'aborted', config: state.config, abortError: error };
  return { state: aborted, outgoing: state.config.cohort.map((to) => ({ to, bytes })) };
}

function below(what: string, have: number, need: number): SecAggError {
  return new SecAggError('ERR_BELOW_THRESHOLD', `${what}: ${have}, need at least ${need}`);
}

/** Active mode: ask every member of `advertised` to sign this view attempt and reveal its seed contribution. */
async function startView(ctx: ServerContext, state: KeysData, advertised: number[], attempt: number): Promise<ServerStep> {
  const config = state.config;
  const commitments = advertised.map((u) => must(state.advertised, u, 'the keys of client').seedCommitment);
  const digest = await derive.viewDigest(ctx.crypto, config.roundId, attempt, advertised, commitments);
  const view: View = { attempt, advertised, members: new Set(advertised), commitments, digest, answers: new Map() };
  const bytes = encodeServerMessage(config.roundId, { case: 'viewRequest', value: { attempt, advertised, seedCommitments: commitments } });
  const next: ViewState = { ...keysData(state), stage: 'view', view };
  return { state: next, outgoing: advertised.map((to) => ({ to: to as ClientId, bytes })) };
}

/** The advertise stage's data of a state (the fields a view state is made of). */
function keysData(state: KeysData): KeysData {
  return {
    config: state.config,
    viewAttempts: state.viewAttempts,
    fixedGraphSeed: state.fixedGraphSeed,
    quit: state.quit,
    advertised: state.advertised,
    keysSeen: state.keysSeen,
  };
}

/**
 * A pause for the long loops of a stage change, counting entries built, encoded or checked: fanning
 * O(n·k) entries out to a large cohort lets other connections run every few milliseconds.
 */
function pacer(ctx: ServerContext): (work: number) => Promise<void> {
  return workPacer(ENTRIES_PER_YIELD, ctx.yieldToEventLoop);
}

/** Entries (a neighbour's keys, a routed ciphertext, an edge checked) between two yields of a stage change. */
const ENTRIES_PER_YIELD = 1 << 12;

/** Fix the graph over U1 and send each member its neighbours' keys (and, in active mode, the view proof). */
async function sendKeys(ctx: ServerContext, state: KeysData, view: View | undefined, u1: number[], graphSeed: Uint8Array): Promise<ServerStep> {
  const config = state.config;
  const t = config.threshold;
  const next: ShareState = { ...keysData(state), stage: 'share', view, u1, graphSeed, shared: new Map() };
  const graph = graphOf(next);
  if (graph.degree < t) return abort(state, below('neighbours per client', graph.degree, t));
  // The bound against the neighbourhoods this graph really has (every client checks its own too).
  const why = neighbourhoodBoundViolation(config.mode, graph.degree, t, config.corruption ?? 0);
  if (why !== undefined) return abort(state, new SecAggError('ERR_INVALID_PARAMETERS', why));
  const answers = view?.answers;
  const reveals = view?.advertised.map((u) => must(view.answers, u, 'the view answer of client').reveal);
  const pause = pacer(ctx);
  // Each member's encryption then masking key, as a view proof carries them: built once per member.
  const keyBytes = new Map<number, Uint8Array>();
  const keysOf = (v: number): Uint8Array => {
    let b = keyBytes.get(v);
    if (b === undefined) {
      const a = must(state.advertised, v, 'the keys of client');
      keyBytes.set(v, (b = concatBytes(a.encryptionKey, a.maskingKey)));
    }
    return b;
  };
  const outgoing: Outgoing[] = [];
  for (const u of u1) {
    const ns = graph.neighbours(u as ClientId);
    const neighbours = ns.map((v) => {
      const a = must(state.advertised, v, 'the keys of client');
      return { client: v, encryptionPublicKey: a.encryptionKey, maskingPublicKey: a.maskingKey, signature: a.signature };
    });
    // Every other member's view signature (the client checks them all: its U1 is the one they all
    // signed), with the keys it covers for the members that are not neighbours.
    let proof: { seedReveals: Uint8Array[]; viewSignatures: { client: number; signature: Uint8Array }[]; memberKeys: Uint8Array[] } | undefined;
    if (answers && reveals) {
      const isNeighbour = new Set<number>(ns);
      const others = u1.filter((v) => v !== u);
      proof = {
        seedReveals: reveals,
        viewSignatures: others.map((v) => ({ client: v, signature: must(answers, v, 'the view answer of client').signature })),
        memberKeys: others.filter((v) => !isNeighbour.has(v)).map(keysOf),
      };
    }
    const body: ServerBody = { case: 'keys', value: { graphSeed, advertised: u1, neighbours, ...(proof ? { view: proof } : {}) } };
    outgoing.push({ to: u as ClientId, bytes: encodeServerMessage(config.roundId, body) });
    await pause(ns.length + (view ? u1.length : u1.length / 8));
  }
  return { state: next, outgoing };
}

async function closeStage(ctx: ServerContext, state: RunningServerState): Promise<ServerStep> {
  const { config } = state;
  const t = config.threshold;
  switch (state.stage) {
    case 'advertise': {
      const u1 = [...state.advertised.keys()].filter((u) => !state.quit.has(u)).sort((a, b) => a - b);
      if (u1.length < t + 1) return abort(state, below('clients that advertised keys', u1.length, t + 1));
      if (config.mode === 'active') return startView(ctx, state, u1, 1);
      return await sendKeys(ctx, state, undefined, u1, state.fixedGraphSeed ?? ctx.rng(GRAPH_SEED_BYTES));
    }
    case 'view': {
      const view = state.view;
      const revealed = view.advertised.filter((u) => view.answers.has(u) && !state.quit.has(u));
      if (revealed.length === view.advertised.length) {
        const seed = await derive.viewGraphSeed(
          ctx.crypto,
          view.digest,
          view.advertised.map((u) => must(view.answers, u, 'the view answer of client').reveal),
        );
        return await sendKeys(ctx, state, view, revealed, seed);
      }
      // Someone did not reveal: the seed cannot be formed without it, and leaving its reveal out
      // after seeing the others' would let the server choose among seeds. Ask again, with the
      // ones that answered and their fresh commitments; each attempt is one more seed to choose
      // from, so attempts are capped (here and by every client).
      if (view.attempt >= state.viewAttempts)
        return abort(
          state,
          below(`members that revealed their seed contribution in all ${view.attempt} view attempts`, revealed.length, view.advertised.length),
        );
      if (revealed.length < t + 1) return abort(state, below('clients that signed the view', revealed.length, t + 1));
      for (const u of revealed) {
        const a = must(state.advertised, u, 'the keys of client');
        state.advertised.set(u, { ...a, seedCommitment: must(view.answers, u, 'the view answer of client').next });
      }
      return startView(ctx, state, revealed, view.attempt + 1);
    }
    case 'share': {
      // Peel clients with fewer than t share-exchanging neighbours in U2: their secrets could never
      // be reconstructed, so they are left out before anyone masks with them (a sparse graph then
      // still completes).
      const graph = graphOf(state);
      const shared = [...state.shared.keys()].filter((u) => !state.quit.has(u));
      // Checked before the peel, with the count it names: below t + 1 every client has fewer than t
      // sharing neighbours, so the peel would empty the set and the reason would say 0.
      if (shared.length < t + 1) return abort(state, below('clients that shared keys', shared.length, t + 1));
      const u2set = new Set(shared);
      const pause = pacer(ctx);
      for (let changed = true; changed; ) {
        changed = false;
        for (const u of u2set) {
          const ns = graph.neighbours(u as ClientId);
          if (countIn(ns, u2set) < t) {
            u2set.delete(u);
            changed = true;
          }
          await pause(ns.length);
        }
      }
      if (u2set.size < t + 1)
        return abort(
          state,
          below(`clients that shared keys with at least ${t} neighbours that also shared (of ${shared.length} that shared keys)`, u2set.size, t + 1),
        );
      const u2 = [...u2set].sort((a, b) => a - b);
      const outgoing: Outgoing[] = [];
      for (const v of u2) {
        const shares = edgesIn(graph, v, u2set).map((u) => ({
          peer: u,
          ciphertext: must(must(state.shared, u, 'the shares of client').ciphertexts, v, 'the ciphertext for client'),
        }));
        outgoing.push({ to: v as ClientId, bytes: encodeServerMessage(config.roundId, { case: 'shares', value: { shares } }) });
        await pause(shares.length);
      }
      const next: MaskedState = { ...state, stage: 'masked', u2, u2set, sum: new RingAccumulator(config.dimension), masked: new Set() };
      return { state: next, outgoing };
    }
    case 'masked': {
      const u3 = state.u2.filter((u) => state.masked.has(u));
      const u3set = new Set(u3);
      if (u3.length < t) return abort(state, below('masked inputs', u3.length, t));
      const short = await reconstructible(ctx, state, u3set);
      if (short !== undefined) return abort(state, short);
      const survivors: SurvivorData = { ...state, u3, u3set, signatures: new Map() };
      if (config.mode === 'active') {
        const bytes = encodeServerMessage(config.roundId, { case: 'consistencyRequest', value: { survivors: u3 } });
        const next: ConsistencyState = { ...survivors, stage: 'consistency' };
        return { state: next, outgoing: u3.map((to) => ({ to: to as ClientId, bytes })) };
      }
      const bytes = encodeServerMessage(config.roundId, { case: 'unmaskRequest', value: { survivors: u3, signatures: [] } });
      return { state: unmaskState(survivors, undefined, u3set), outgoing: u3.map((to) => ({ to: to as ClientId, bytes })) };
    }
    case 'consistency': {
      const u4 = state.u3.filter((u) => state.signatures.has(u));
      const u4set = new Set(u4);
      const quorum = consistencyQuorum(config, state.u1.length);
      if (u4.length < quorum) return abort(state, below('signatures on the survivor set (a quorum of U1)', u4.length, quorum));
      const short = await reconstructible(ctx, state, u4set);
      if (short !== undefined) return abort(state, short);
      const signatures = u4.map((client) => ({ client, signature: must(state.signatures, client, 'the signature of client') }));
      const bytes = encodeServerMessage(config.roundId, { case: 'unmaskRequest', value: { survivors: state.u3.slice(), signatures } });
      return { state: unmaskState(state, u4, u4set), outgoing: u4.map((to) => ({ to: to as ClientId, bytes })) };
    }
    case 'unmask':
      return finish(ctx, state);
    default:
      return unreachable(state, 'server stage');
  }
}

function unmaskState(s: SurvivorData, u4: readonly number[] | undefined, askedToUnmask: ReadonlySet<number>): UnmaskState {
  return { ...s, stage: 'unmask', u4, askedToUnmask, selfShares: new Map(), keyShares: new Map(), responded: new Set() };
}

/** Every client of U2 needs ≥ t share-exchanging neighbours among the clients that may still reveal shares. */
async function reconstructible(ctx: ServerContext, state: MaskedData, holders: ReadonlySet<number>): Promise<SecAggError | undefined> {
  const t = state.config.threshold;
  const graph = graphOf(state);
  const pause = pacer(ctx);
  for (const v of state.u2) {
    const ns = graph.neighbours(v as ClientId);
    const n = countIn(ns, holders);
    if (n < t) return below(`live holders of client ${v}'s shares`, n, t);
    await pause(ns.length);
  }
  return undefined;
}

/** How many of `xs` are in `set`. */
function countIn(xs: readonly number[], set: ReadonlySet<number>): number {
  let n = 0;
  for (const x of xs) if (set.has(x)) n++;
  return n;
}

/** Jobs handed to the unmasker at a time: enough keystream per batch (~16 MiB) to be worth a thread hop. */
function batchSize(dimension: number): number {
  return Math.max(8, Math.ceil((1 << 22) / dimension));
}

/**
 * Work between two yields to the event loop during unmasking, in share chunks handled (a fast
 * reconstruction from k shares is ≈ k·11 of them, plus a verify worth ≈ 2^12): a millisecond or two.
 */
const WORK_PER_YIELD = 1 << 16;
const VERIFY_WORK = 1 << 12;

/** RFC 7748's clamped form: bits 0–2 and 255 clear, bit 254 set. */
function isClamped(k: Uint8Array): boolean {
  return k.length === 32 && (k[0]! & 7) === 0 && (k[31]! & 0xc0) === 0x40;
}

/**
 * Reconstruct every needed secret and remove the masks. The running sum is modified in place, so
 * the unmask state is consumed for good once this begins: it ends with the sum or with a typed
 * abort — a reconstruction, a worker, anything that fails aborts the round — and never hands back
 * a state whose sum is partly unmasked.
 */
async function finish(ctx: ServerContext, state: UnmaskState): Promise<ServerStep> {
  const { config } = state;
  const c = ctx.crypto;
  const t = config.threshold;
  const graph = graphOf(state);
  const cache = new LagrangeCache();
  // In a complete graph every owner's holders are the responders minus itself: one superset
  // serves them all (O(k) per owner instead of O(k²)).
  const complete = graph.kind === 'complete';
  const bad = new Set<number>();
  // Masks are removed in batches while the remaining secrets are still being reconstructed, so a
  // worker-thread unmasker expands keystream while this thread does Shamir and X25519.
  const inFlight: Promise<void>[] = [];
  let failed: { error: unknown } | undefined;
  let batch: MaskJob[] = [];
  const perBatch = batchSize(config.dimension);
  // Every survivor's self mask, and each dropped client's pairwise masks with surviving neighbours.
  let expansions = state.u3.length;
  for (const v of state.u2) if (!state.u3set.has(v)) expansions += edgesIn(graph, v, state.u3set).length;
  const plan: UnmaskPlan = { words: expansions * config.dimension, yieldToEventLoop: ctx.yieldToEventLoop };
  const flush = () => {
    if (batch.length === 0) return;
    const p = ctx.unmasker(state.sum, batch, c, plan);
    // Noted at once (a batch that fails while this thread still reconstructs stops the round
    // early, and is never an unhandled rejection); awaited together below.
    p.catch((error: unknown) => (failed ??= { error }));
    inFlight.push(p);
    batch = [];
  };
  let batchExpansions = 0;
  const push = (job: MaskJob) => {
    batch.push(job);
    batchExpansions += jobExpansions(job);
    if (batchExpansions >= perBatch) {
      flush();
      batchExpansions = 0;
    }
  };
  const pause = workPacer(WORK_PER_YIELD, ctx.yieldToEventLoop);
  // Holders in arrival order: reconstructVerified puts them in ascending order itself. A holder
  // already named bad is left out of later reconstructions while enough others remain, so one
  // lying holder costs one slow reconstruction, not one per owner.
  const gather = (owner: number, from: Map<number, RevealedShares>): RevealedShares => {
    const got = from.get(owner) ?? { holders: [], shares: [] };
    if (bad.size === 0) return got;
    const keep = got.holders.map((h, i) => (bad.has(h) ? -1 : i)).filter((i) => i >= 0);
    if (keep.length === got.holders.length || keep.length < t) return got;
    return { holders: keep.map((i) => got.holders[i]!), shares: keep.map((i) => got.shares[i]!) };
  };
  const reconstruct = async (owner: number, from: Map<number, RevealedShares>, what: string, verify: (secret: Uint8Array) => Promise<boolean>) => {
    const { holders, shares } = gather(owner, from);
    if (holders.length < t) throw new SecAggError('ERR_BELOW_THRESHOLD', `${what}: ${holders.length}, need at least ${t}`, { clients: [owner] });
    let reconstructed;
    try {
      reconstructed = await reconstructVerified({ holders, shares, threshold: t, cache, verify, yieldToEventLoop: ctx.yieldToEventLoop });
    } catch (e) {
      // Name the owner: without verifiable secret sharing its own inconsistent shares (or a false
      // commitment) are the likeliest cause, and the operator needs to know whom to look at.
      if (isSecAggError(e, 'ERR_RECONSTRUCTION_FAILED'))
        throw new SecAggError('ERR_RECONSTRUCTION_FAILED', `${what} do not reconstruct a verified secret: ${e.message}`, {
          cause: e,
          clients: [owner, ...e.clients],
        });
      throw e;
    }
    const { secret, badHolders } = reconstructed;
    for (const h of badHolders) bad.add(h);
    // Outside a complete graph each owner has its own holder set: its weights and dual vectors are
    // computed afresh, O(k²) and O(k·(k − t)) field operations.
    const k = holders.length;
    await pause(k * SHARE_CHUNKS + VERIFY_WORK + (complete ? 0 : k * k + 2 * k * Math.max(0, k - t)));
    if (failed) throw failed.error;
    return secret;
  };
  try {
    if (complete && state.responded.size > 0) {
      await cache.prepareUniverse([...state.responded], t, ctx.yieldToEventLoop); // O(k²) once, in slices
    }
    for (const v of state.u3) {
      const commitment = must(state.shared, v, 'the shares of client').commitment;
      const secret = await reconstruct(v, state.selfShares, `shares of client ${v}'s self mask`, async (seed) =>
        derive.bytesEqual(await derive.selfMaskCommitment(c, seed, config.roundId, v as ClientId), commitment),
      );
      push({ key: await derive.selfMaskKey(c, secret, config.roundId, v as ClientId), sign: -1 });
    }
    for (const v of state.u2) {
      if (state.u3set.has(v)) continue;
      const advertised = must(state.advertised, v, 'the keys of client').maskingKey;
      // Binding: clients share the clamped scalar, and only one clamped scalar gives this key.
      const secret = await reconstruct(
        v,
        state.keyShares,
        `shares of dropped client ${v}'s key`,
        async (sk) => isClamped(sk) && derive.bytesEqual((await c.x25519(sk)).publicKey, advertised),
      );
      // Survivor u added +PRG(s_uv) if v > u, −PRG(s_uv) if v < u: remove exactly that. Long peer
      // lists are split so that batches stay balanced across workers.
      const peers = edgesIn(graph, v, state.u3set).map((u) => ({
        client: u as ClientId,
        publicKey: must(state.advertised, u, 'the keys of client').maskingKey,
        sign: (v > u ? -1 : 1) as 1 | -1,
      }));
      for (let i = 0; i < peers.length; i += perBatch)
        push({ dropped: { round: config.roundId, client: v as ClientId, secretKey: secret, peers: peers.slice(i, i + perBatch) } });
    }
    flush();
    await Promise.all(inFlight);
  } catch (e) {
    await Promise.allSettled(inFlight); // the sum is discarded; let the workers finish first
    return abort(state, isSecAggError(e) ? e : new SecAggError('ERR_INTERNAL', 'unmasking failed', { cause: e }));
  }
  const ids = (xs: Iterable<number>) => [...xs].sort((a, b) => a - b) as ClientId[];
  const result: RoundResult = {
    sum: state.sum.toVector(config.bits),
    included: ids(state.u3),
    sets: {
      advertised: ids(state.advertised.keys()),
      shared: ids(state.u2),
      masked: ids(state.u3),
      signed: ids(state.u4 ?? []),
      unmasked: ids(state.responded),
    },
    badShareHolders: ids(bad),
    maskExpansions: expansions,
    exactShareChecks: cache.exactChecks,
    viewAttempts: state.view?.attempt ?? 0,
    ...dpNoiseOf(config, state.u3.length, state.responded.size),
  };
  const done: DoneState = { stage: 'done', config, result };
  return { state: done, outgoing: [] };
}

/**
 * The noise report of a finished DP round: every survivor that answered the unmask request removed
 * its excess when any was removable (onUnmaskResponse takes no answer without it), so the removals
 * follow from the config, |U3| and the answers: derived, never stored.
 */
function dpNoiseOf(config: RoundConfig, survivors: number, answered: number): { noise?: NoiseReport } {
  const removedFrom = excessProbability(config, survivors) > 0 ? answered : 0;
  const noise = noiseReport(config, survivors, removedFrom);
  return noise === undefined ? {} : { noise };
}

/** For tests of the privacy invariant: owners for which the server holds each kind of share (none before the unmask stage). */
export function unsafeRevealedOwners(state: ServerState): { self: number[]; key: number[] } {
  if (state.stage !== 'unmask') return { self: [], key: [] };
  return { self: [...state.selfShares.keys()], key: [...state.keyShares.keys()] };
}
