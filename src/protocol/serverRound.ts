/**
 * The server's side of one round as a pure state machine. It is driven by decoded client messages
 * (`handleServerMessage`) and by explicit "the stage's deadline passed" events
 * (`handleServerDeadline`); it returns what to send to whom. No I/O, no clock.
 *
 * A bad message is refused with a typed error and changes nothing: every check runs before the
 * state is touched, so one misbehaving client never disturbs the round for the others.
 * Masked inputs go into one running sum as they arrive (memory O(m), not O(n·m)).
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
import { type AdvertiseKeys, type ShareKeys, type UnmaskResponse, type ViewSignature } from '../wire/gen/secagg/v1/secagg_pb.js';
import { DEFAULT_LIMITS, consistencyQuorum, neighbourhoodBoundViolation, validateConfig, type RoundConfig, type RoundLimits } from './config.js';
import * as derive from './derive.js';
import type { ServerStage } from './stages.js';
import { roundParameters } from './roundParams.js';

export { roundParameters };
import { GRAPH_SEED_BYTES, KEY_BYTES, SHARE_CIPHERTEXT_BYTES, SIGNATURE_BYTES, clampAbortReason, clientKindForStage, clientMessageLimits, entryCaps } from './limits.js';

export type { ServerStage };

/**
 * Masks the server must remove from the sum: one PRG expansion under a known key (a survivor's
 * self mask), or the pairwise masks between a dropped client — whose masking key the server has
 * just reconstructed — and its surviving neighbours. The second kind carries the key agreement
 * with it, so a worker-thread unmasker does the X25519 and HKDF work as well as the keystream.
 * sign +1 adds the keystream, −1 subtracts it.
 */
export type MaskJob =
  | { readonly key: Uint8Array; readonly sign: 1 | -1 }
  | { readonly dropped: DroppedClientMasks };

interface RevealedShares {
  readonly holders: number[];
  readonly shares: Uint8Array[];
}

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

export interface ServerOptions {
  readonly config: RoundConfig;
  readonly crypto?: CryptoProvider;
  /** Randomness for the graph seed. Production: the platform CSPRNG (default). */
  readonly rng?: Rng;
  /** Active mode: long-term Ed25519 public keys of the cohort. */
  readonly directory?: ReadonlyMap<number, Uint8Array>;
  readonly unmasker?: Unmasker;
  readonly limits?: Partial<RoundLimits>;
  /** Semi-honest mode: fix the graph seed instead of drawing it (tests that need to know the graph in advance). Active mode derives it from the clients' reveals. */
  readonly graphSeed?: Uint8Array;
  /** Active mode: view attempts before the round aborts when members of U1 fail to reveal (default 3; clients cap it too). */
  readonly viewAttempts?: number;
  /**
   * Lets other work run during unmasking: awaited between reconstructions and inside a slow one.
   * Default: setImmediate where it exists (Node), else a zero-delay timeout.
   */
  readonly yieldToEventLoop?: () => Promise<void>;
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
}

interface Advertised {
  readonly encryptionKey: Uint8Array;
  readonly maskingKey: Uint8Array;
  readonly signature: Uint8Array;
  /** Active mode: commitment to the client's seed contribution for the current view attempt. */
  seedCommitment: Uint8Array;
}

/** Active mode: one view attempt: U1 and the commitments every member signs, and their answers. */
interface View {
  readonly attempt: number;
  readonly advertised: readonly number[];
  readonly members: ReadonlySet<number>;
  readonly commitments: readonly Uint8Array[];
  readonly digest: Uint8Array;
  readonly answers: Map<number, { readonly signature: Uint8Array; readonly reveal: Uint8Array; readonly next: Uint8Array }>;
}

interface Shared {
  readonly commitment: Uint8Array;
  /** Ciphertext for each recipient. */
  readonly ciphertexts: Map<number, Uint8Array>;
}

export interface ServerState {
  readonly stage: ServerStage;
  readonly config: RoundConfig;
  readonly result: RoundResult | undefined;
  readonly abortError: SecAggError | undefined;
  /** @internal */
  readonly internal: ServerInternals;
}

interface ServerInternals {
  readonly crypto: CryptoProvider;
  readonly rng: Rng;
  readonly directory: ReadonlyMap<number, Uint8Array> | undefined;
  readonly unmasker: Unmasker;
  readonly fixedGraphSeed: Uint8Array | undefined;
  readonly viewAttempts: number;
  readonly yieldToEventLoop: () => Promise<void>;
  /** The largest honest message of each kind in this round, and the caps on repeated entries: checked before decoding. */
  readonly messageLimits: Readonly<Record<ClientKind, number>>;
  readonly entryCaps: { readonly maxNeighbours: number; readonly maxMembers: number };
  readonly cohort: ReadonlySet<number>;
  /** Clients that told us they aborted; they are no longer waited for. */
  readonly quit: Set<number>;
  readonly advertised: Map<number, Advertised>;
  readonly keysSeen: Set<string>;
  view?: View;
  graph?: NeighbourGraph;
  readonly shared: Map<number, Shared>;
  u2?: number[];
  u2set?: Set<number>;
  sum?: RingAccumulator;
  readonly masked: Set<number>;
  u3?: number[];
  u3set?: Set<number>;
  readonly signatures: Map<number, Uint8Array>;
  u4?: number[];
  u4set?: Set<number>;
  /**
   * Revealed shares by owner, in arrival order (a holder answers once, so (owner, holder) never
   * repeats). Self-mask shares only ever for U3, key shares only for U2 \ U3.
   */
  readonly selfShares: Map<number, RevealedShares>;
  readonly keyShares: Map<number, RevealedShares>;
  readonly responded: Set<number>;
  /** Set when unmasking begins: its partial sum is never finished a second time. */
  unmaskStarted: boolean;
}

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
 * Start a round: returns the state and the RoundStart message for every cohort member.
 *
 * @example
 * ```ts
 * let { state, outgoing } = startServerRound({ config });
 * for (const o of outgoing) send(o.to, o.bytes);
 * ({ state, outgoing } = await handleServerMessage(state, from, bytes)); // on each client message
 * ({ state, outgoing } = await handleServerDeadline(state));             // when a stage times out
 * if (state.stage === 'done') console.log(state.result.sum);
 * ```
 */
export function startServerRound(options: ServerOptions): ServerStep {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const config = options.config;
  validateConfig(config, limits);
  if (config.mode === 'active') {
    if (options.directory === undefined) throw new TypeError('active mode needs a directory of identity keys');
    for (const id of config.cohort) if (!options.directory.has(id)) throw new RangeError(`no identity key for client ${id}`);
  }
  const internal: ServerInternals = {
    crypto: options.crypto ?? defaultCrypto,
    rng: options.rng ?? cryptoRng,
    directory: options.directory,
    unmasker: options.unmasker ?? sequentialUnmasker,
    fixedGraphSeed: options.graphSeed,
    viewAttempts: options.viewAttempts ?? 3,
    yieldToEventLoop: options.yieldToEventLoop ?? nextMacrotask,
    messageLimits: clientMessageLimits(config),
    entryCaps: entryCaps(config),
    cohort: new Set(config.cohort),
    quit: new Set(),
    advertised: new Map(),
    keysSeen: new Set(),
    shared: new Map(),
    masked: new Set(),
    signatures: new Map(),
    selfShares: new Map(),
    keyShares: new Map(),
    responded: new Set(),
    unmaskStarted: false,
  };
  const state: ServerState = { stage: 'advertise', config, result: undefined, abortError: undefined, internal };
  const start = encodeServerMessage(config.roundId, { case: 'roundStart', value: roundParameters(config) });
  return { state, outgoing: config.cohort.map((to) => ({ to, bytes: start })) };
}

function with_(state: ServerState, patch: Partial<Pick<ServerState, 'stage' | 'result' | 'abortError'>>): ServerState {
  return { ...state, ...patch };
}

/** Handle one message from `from` (authenticated by the transport). Never throws on bad input. */
export async function handleServerMessage(state: ServerState, from: number, bytes: Uint8Array): Promise<ServerStep> {
  try {
    // The round keeps parts of what it accepts (keys, ciphertexts, shares, signatures): never views
    // into a buffer the caller may reuse, so the input is copied once.
    return await dispatch(state, from, ownBytes(bytes));
  } catch (e) {
    const error = isSecAggError(e) ? e : new SecAggError('ERR_INTERNAL', 'unexpected error in server round', { cause: e });
    return { state, outgoing: [], error };
  }
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
  return state.stage === 'view' ? `view#${state.internal.view!.attempt}` : state.stage;
}

/** The current stage's deadline passed: close it with whoever answered. */
export async function handleServerDeadline(state: ServerState): Promise<ServerStep> {
  if (state.stage === 'done' || state.stage === 'aborted') return { state, outgoing: [] };
  return closeStage(state);
}

async function dispatch(state: ServerState, from: number, bytes: Uint8Array): Promise<ServerStep> {
  const it = state.internal;
  if (state.stage === 'done' || state.stage === 'aborted') throw new SecAggError('ERR_STAGE_MISMATCH', `the round is ${state.stage}`);
  if (!it.cohort.has(from)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${from} is not in this round's cohort`);
  // The kind is checked against the stage, and the size against that kind's own limit, before
  // anything is decoded; repeated entries are capped at the neighbourhood / cohort size.
  const expected = clientKindForStage(state.stage);
  const msg = decodeClientMessageChecked(bytes, { maxBytes: it.messageLimits, allowed: (kind) => kind === 'abort' || kind === expected, ...it.entryCaps });
  if (!derive.bytesEqual(msg.roundId, state.config.roundId)) throw new SecAggError('ERR_ROUND_MISMATCH', 'message is for another round');
  if (msg.sender !== from) throw new SecAggError('ERR_UNKNOWN_SENDER', `message claims sender ${msg.sender} on the connection of ${from}`);
  const body = msg.body;
  if (body.case === 'abort') {
    it.quit.add(from);
    return maybeClose(state);
  }
  switch (body.case) {
    case 'advertiseKeys':
      await onAdvertise(state, from, body.value);
      break;
    case 'viewSignature':
      await onViewSignature(state, from, body.value);
      break;
    case 'shareKeys':
      onShareKeys(state, from, body.value);
      break;
    case 'maskedInput':
      onMasked(state, from, body.value.vector);
      break;
    case 'consistencySignature':
      await onSignature(state, from, body.value.signature);
      break;
    case 'unmaskResponse':
      onUnmaskResponse(state, from, body.value);
      break;
    default:
      throw new SecAggError('ERR_DECODE', 'unknown client message');
  }
  return maybeClose(state);
}


async function onAdvertise(state: ServerState, from: number, m: AdvertiseKeys): Promise<void> {
  const it = state.internal;
  const active = state.config.mode === 'active';
  if (it.advertised.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already advertised keys`);
  if (m.encryptionPublicKey.length !== KEY_BYTES || m.maskingPublicKey.length !== KEY_BYTES)
    throw new SecAggError('ERR_SIZE', 'public keys must be 32 bytes');
  if (m.seedCommitment.length !== (active ? 32 : 0))
    throw new SecAggError('ERR_SIZE', active ? 'the seed commitment must be 32 bytes' : 'no seed commitment is expected in semi-honest mode');
  const ek = derive.hex(m.encryptionPublicKey);
  const mk = derive.hex(m.maskingPublicKey);
  if (ek === mk || it.keysSeen.has(ek) || it.keysSeen.has(mk))
    throw new SecAggError('ERR_DUPLICATE_KEY', `client ${from} advertised a public key that is already in use`);
  // A small-order key would make every neighbour's key agreement fail: refuse it here, before it
  // reaches anyone. (Every other 32-byte string is a valid X25519 u-coordinate.)
  if (isSmallOrderX25519(m.encryptionPublicKey) || isSmallOrderX25519(m.maskingPublicKey))
    throw new SecAggError('ERR_INVALID_KEY', `client ${from} advertised a low-order public key`);
  if (active) {
    if (m.signature.length !== SIGNATURE_BYTES) throw new SecAggError('ERR_SIGNATURE_INVALID', 'signature must be 64 bytes');
    const transcript = derive.advertiseTranscript(state.config.roundId, from as ClientId, m.encryptionPublicKey, m.maskingPublicKey);
    if (!(await it.crypto.ed25519Verify(it.directory!.get(from)!, transcript, m.signature)))
      throw new SecAggError('ERR_SIGNATURE_INVALID', `the keys of client ${from} are not signed by its identity`);
  } else if (m.signature.length !== 0) throw new SecAggError('ERR_SIZE', 'no signature is expected in semi-honest mode');
  if (it.advertised.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already advertised keys`); // raced during the awaits
  it.keysSeen.add(ek);
  it.keysSeen.add(mk);
  it.advertised.set(from, {
    encryptionKey: m.encryptionPublicKey.slice(),
    maskingKey: m.maskingPublicKey.slice(),
    signature: m.signature.slice(),
    seedCommitment: m.seedCommitment.slice(),
  });
}

async function onViewSignature(state: ServerState, from: number, m: ViewSignature): Promise<void> {
  const it = state.internal;
  const view = it.view!;
  if (!view.members.has(from)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${from} is not in this view`);
  if (view.answers.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already signed the view`);
  if (m.signature.length !== SIGNATURE_BYTES || m.seedReveal.length !== 32 || m.nextSeedCommitment.length !== 32)
    throw new SecAggError('ERR_SIZE', 'a view signature has a 64-byte signature, a 32-byte reveal and a 32-byte commitment');
  const a = it.advertised.get(from)!;
  const c = it.crypto;
  const [revealOk, signed] = await Promise.all([
    derive.seedCommitment(c, state.config.roundId, from as ClientId, view.attempt, m.seedReveal).then((h) => derive.bytesEqual(h, a.seedCommitment)),
    c.ed25519Verify(it.directory!.get(from)!, derive.viewTranscript(view.digest, from as ClientId, a.encryptionKey, a.maskingKey), m.signature),
  ]);
  if (!revealOk) throw new SecAggError('ERR_INCONSISTENT_VIEW', `client ${from}'s seed reveal does not match its commitment`);
  if (!signed) throw new SecAggError('ERR_SIGNATURE_INVALID', `client ${from} did not sign the view`);
  if (it.view !== view || view.answers.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already signed the view`);
  view.answers.set(from, { signature: m.signature.slice(), reveal: m.seedReveal.slice(), next: m.nextSeedCommitment.slice() });
}

/**
 * u's neighbours in `set`. Every set this is asked about holds only clients that shared keys, and a
 * ShareKeys is admitted only with one ciphertext per neighbour, so these are exactly the neighbours
 * u exchanged shares with.
 */
function edgesIn(it: ServerInternals, u: number, set: ReadonlySet<number>): number[] {
  return it.graph!.neighbours(u as ClientId).filter((v) => set.has(v));
}

function onShareKeys(state: ServerState, from: number, m: ShareKeys): void {
  const it = state.internal;
  if (!it.graph!.has(from)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${from} did not advertise keys`);
  if (it.shared.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already shared keys`);
  if (m.selfMaskCommitment.length !== 32) throw new SecAggError('ERR_SIZE', 'commitment must be 32 bytes');
  const neighbours = it.graph!.neighbours(from as ClientId);
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
  it.shared.set(from, { commitment: m.selfMaskCommitment, ciphertexts });
}

function onMasked(state: ServerState, from: number, vector: Uint8Array): void {
  const it = state.internal;
  if (!it.u2set!.has(from)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${from} is not in the shared-keys set`);
  if (it.masked.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already sent its masked input`);
  it.sum!.addPacked(vector, state.config.bits, 1); // validates length and range before adding anything
  it.masked.add(from);
}

async function onSignature(state: ServerState, from: number, signature: Uint8Array): Promise<void> {
  const it = state.internal;
  if (!it.u3set!.has(from)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${from} is not a survivor`);
  if (it.signatures.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already signed`);
  if (signature.length !== SIGNATURE_BYTES) throw new SecAggError('ERR_SIGNATURE_INVALID', 'signature must be 64 bytes');
  const transcript = derive.consistencyTranscript(state.config.roundId, it.view!.digest, it.u3!);
  if (!(await it.crypto.ed25519Verify(it.directory!.get(from)!, transcript, signature)))
    throw new SecAggError('ERR_SIGNATURE_INVALID', `client ${from} did not sign the survivor set`);
  if (it.signatures.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already signed`);
  it.signatures.set(from, signature.slice());
}

function onUnmaskResponse(state: ServerState, from: number, m: UnmaskResponse): void {
  const it = state.internal;
  const allowed = state.config.mode === 'active' ? it.u4set! : it.u3set!;
  if (!allowed.has(from)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${from} was not asked to unmask`);
  if (it.responded.has(from)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${from} already answered`);
  // Check everything first; only then record, so a bad response leaves no trace.
  const owners = new Set<number>();
  const check = (entries: readonly { owner: number; share: Uint8Array }[], kind: 'self' | 'key') => {
    for (const { owner, share } of entries) {
      if (owners.has(owner)) throw new SecAggError('ERR_DUPLICATE_SENDER', `two shares of client ${owner}`);
      owners.add(owner);
      if (!it.u2set!.has(owner) || !it.graph!.isNeighbour(from, owner))
        throw new SecAggError('ERR_NOT_NEIGHBOUR', `client ${from} holds no shares of client ${owner}`);
      // The server only ever accepts one kind per owner: self-mask shares of survivors, key shares of the dropped.
      if ((kind === 'self') !== it.u3set!.has(owner))
        throw new SecAggError('ERR_BOTH_SHARES_REQUESTED', `a ${kind} share of client ${owner} is not wanted`);
      if (share.length !== SHARE_BYTES) throw new SecAggError('ERR_SIZE', `share of client ${owner} has the wrong size`);
    }
  };
  check(m.selfMaskShares, 'self');
  check(m.keyShares, 'key');
  const record = (into: Map<number, RevealedShares>, entries: readonly { owner: number; share: Uint8Array }[]) => {
    for (const { owner, share } of entries) {
      let got = into.get(owner);
      if (!got) into.set(owner, (got = { holders: [], shares: [] }));
      got.holders.push(from);
      got.shares.push(share);
    }
  };
  record(it.selfShares, m.selfMaskShares);
  record(it.keyShares, m.keyShares);
  it.responded.add(from);
}

/** Who the current stage waits for, and who has answered (every answer was checked to be from a member). */
function stageProgress(state: ServerState): { members: { has(u: number): boolean; readonly size: number }; answered: { has(u: number): boolean; readonly size: number } } | undefined {
  const it = state.internal;
  switch (state.stage) {
    case 'advertise':
      return { members: it.cohort, answered: it.advertised };
    case 'view':
      return { members: it.view!.members, answered: it.view!.answers };
    case 'share':
      return { members: { has: (u) => it.graph!.has(u), size: it.graph!.clients.length }, answered: it.shared };
    case 'masked':
      return { members: it.u2set!, answered: it.masked };
    case 'consistency':
      return { members: it.u3set!, answered: it.signatures };
    case 'unmask':
      return { members: state.config.mode === 'active' ? it.u4set! : it.u3set!, answered: it.responded };
    default:
      return undefined;
  }
}

/** Close the stage once every member has answered or quit: O(quitters) per message, not O(n). */
async function maybeClose(state: ServerState): Promise<ServerStep> {
  const progress = stageProgress(state);
  if (progress === undefined) return { state, outgoing: [] };
  const { members, answered } = progress;
  let quitWithoutAnswer = 0;
  for (const u of state.internal.quit) if (members.has(u) && !answered.has(u)) quitWithoutAnswer++;
  if (answered.size + quitWithoutAnswer >= members.size) return closeStage(state);
  return { state, outgoing: [] };
}

function abort(state: ServerState, error: SecAggError): ServerStep {
  const bytes = encodeServerMessage(state.config.roundId, { case: 'aborted', value: { code: error.code, reason: clampAbortReason(error.message) } });
  return {
    state: with_(state, { stage: 'aborted', abortError: error }),
    outgoing: state.config.cohort.map((to) => ({ to, bytes })),
  };
}

function below(what: string, have: number, need: number): SecAggError {
  return new SecAggError('ERR_BELOW_THRESHOLD', `${what}: ${have}, need at least ${need}`);
}

/** Active mode: ask every member of `advertised` to sign this view attempt and reveal its seed contribution. */
async function startView(state: ServerState, advertised: number[], attempt: number): Promise<ServerStep> {
  const it = state.internal;
  const config = state.config;
  const commitments = advertised.map((u) => it.advertised.get(u)!.seedCommitment);
  const digest = await derive.viewDigest(it.crypto, config.roundId, attempt, advertised, commitments);
  it.view = { attempt, advertised, members: new Set(advertised), commitments, digest, answers: new Map() };
  const bytes = encodeServerMessage(config.roundId, { case: 'viewRequest', value: { attempt, advertised, seedCommitments: commitments } });
  return { state: with_(state, { stage: 'view' }), outgoing: advertised.map((to) => ({ to: to as ClientId, bytes })) };
}

/**
 * A pause for the long loops of a stage change, counting entries built, encoded or checked: fanning
 * O(n·k) entries out to a large cohort lets other connections run every few milliseconds.
 */
function pacer(it: ServerInternals): (work: number) => Promise<void> {
  return workPacer(ENTRIES_PER_YIELD, it.yieldToEventLoop);
}

/** Entries (a neighbour's keys, a routed ciphertext, an edge checked) between two yields of a stage change. */
const ENTRIES_PER_YIELD = 1 << 12;

/** Fix the graph over U1 and send each member its neighbours' keys (and, in active mode, the view proof). */
async function sendKeys(state: ServerState, u1: number[], graphSeed: Uint8Array): Promise<ServerStep> {
  const it = state.internal;
  const config = state.config;
  const t = config.threshold;
  it.graph = buildGraph({ clients: u1 as ClientId[], degree: config.degree, seed: graphSeed });
  if (it.graph.degree < t) return abort(state, below('neighbours per client', it.graph.degree, t));
  // The bound against the neighbourhoods this graph really has (every client checks its own too).
  const why = neighbourhoodBoundViolation(config.mode, it.graph.degree, t, config.corruption ?? 0);
  if (why !== undefined) return abort(state, new SecAggError('ERR_INVALID_PARAMETERS', why));
  const view = it.view;
  const reveals = view?.advertised.map((u) => view.answers.get(u)!.reveal);
  const pause = pacer(it);
  // Each member's encryption then masking key, as a view proof carries them: built once per member.
  const keyBytes = new Map<number, Uint8Array>();
  const keysOf = (v: number): Uint8Array => {
    let b = keyBytes.get(v);
    if (b === undefined) {
      const a = it.advertised.get(v)!;
      keyBytes.set(v, (b = concatBytes(a.encryptionKey, a.maskingKey)));
    }
    return b;
  };
  const outgoing: Outgoing[] = [];
  for (const u of u1) {
    const ns = it.graph!.neighbours(u as ClientId);
    const neighbours = ns.map((v) => {
      const a = it.advertised.get(v)!;
      return { client: v, encryptionPublicKey: a.encryptionKey, maskingPublicKey: a.maskingKey, signature: a.signature };
    });
    // Every other member's view signature (the client checks them all: its U1 is the one they all
    // signed), with the keys it covers for the members that are not neighbours.
    let proof: { seedReveals: Uint8Array[]; viewSignatures: { client: number; signature: Uint8Array }[]; memberKeys: Uint8Array[] } | undefined;
    if (view) {
      const isNeighbour = new Set<number>(ns);
      const others = u1.filter((v) => v !== u);
      proof = {
        seedReveals: reveals!,
        viewSignatures: others.map((v) => ({ client: v, signature: view.answers.get(v)!.signature })),
        memberKeys: others.filter((v) => !isNeighbour.has(v)).map(keysOf),
      };
    }
    const body: ServerBody = { case: 'keys', value: { graphSeed, advertised: u1, neighbours, ...(proof ? { view: proof } : {}) } };
    outgoing.push({ to: u as ClientId, bytes: encodeServerMessage(config.roundId, body) });
    await pause(ns.length + (view ? u1.length : u1.length / 8));
  }
  return { state: with_(state, { stage: 'share' }), outgoing };
}

async function closeStage(state: ServerState): Promise<ServerStep> {
  const it = state.internal;
  const { config } = state;
  const t = config.threshold;
  switch (state.stage) {
    case 'advertise': {
      const u1 = [...it.advertised.keys()].filter((u) => !it.quit.has(u)).sort((a, b) => a - b);
      if (u1.length < t + 1) return abort(state, below('clients that advertised keys', u1.length, t + 1));
      if (config.mode === 'active') return startView(state, u1, 1);
      return await sendKeys(state, u1, it.fixedGraphSeed ?? it.rng(GRAPH_SEED_BYTES));
    }
    case 'view': {
      const view = it.view!;
      const revealed = view.advertised.filter((u) => view.answers.has(u) && !it.quit.has(u));
      if (revealed.length === view.advertised.length) {
        const seed = await derive.viewGraphSeed(it.crypto, view.digest, view.advertised.map((u) => view.answers.get(u)!.reveal));
        return await sendKeys(state, revealed, seed);
      }
      // Someone did not reveal: the seed cannot be formed without it, and leaving its reveal out
      // after seeing the others' would let the server choose among seeds. Ask again, with the
      // ones that answered and their fresh commitments; each attempt is one more seed to choose
      // from, so attempts are capped (here and by every client).
      if (view.attempt >= it.viewAttempts)
        return abort(state, below(`members that revealed their seed contribution in all ${view.attempt} view attempts`, revealed.length, view.advertised.length));
      if (revealed.length < t + 1) return abort(state, below('clients that signed the view', revealed.length, t + 1));
      for (const u of revealed) it.advertised.get(u)!.seedCommitment = view.answers.get(u)!.next;
      return startView(state, revealed, view.attempt + 1);
    }
    case 'share': {
      // Peel clients with fewer than t share-exchanging neighbours in U2: their secrets could never
      // be reconstructed, so they are left out before anyone masks with them (a sparse graph then
      // still completes).
      const u2 = new Set([...it.shared.keys()].filter((u) => !it.quit.has(u)));
      const pause = pacer(it);
      for (let changed = true; changed; ) {
        changed = false;
        for (const u of u2) {
          const ns = it.graph!.neighbours(u as ClientId);
          if (countIn(ns, u2) < t) {
            u2.delete(u);
            changed = true;
          }
          await pause(ns.length);
        }
      }
      if (u2.size < t + 1) return abort(state, below('clients that shared keys', u2.size, t + 1));
      it.u2 = [...u2].sort((a, b) => a - b);
      it.u2set = u2;
      it.sum = new RingAccumulator(config.dimension);
      const outgoing: Outgoing[] = [];
      for (const v of it.u2) {
        const shares = edgesIn(it, v, u2).map((u) => ({ peer: u, ciphertext: it.shared.get(u)!.ciphertexts.get(v)! }));
        outgoing.push({ to: v as ClientId, bytes: encodeServerMessage(config.roundId, { case: 'shares', value: { shares } }) });
        await pause(shares.length);
      }
      return { state: with_(state, { stage: 'masked' }), outgoing };
    }
    case 'masked': {
      const u3 = it.u2!.filter((u) => it.masked.has(u));
      it.u3 = u3;
      it.u3set = new Set(u3);
      if (u3.length < t) return abort(state, below('masked inputs', u3.length, t));
      const short = await reconstructible(state, it.u3set);
      if (short !== undefined) return abort(state, short);
      const survivors = { survivors: u3 };
      const body: ServerBody =
        config.mode === 'active' ? { case: 'consistencyRequest', value: survivors } : { case: 'unmaskRequest', value: { survivors: u3, signatures: [] } };
      const bytes = encodeServerMessage(config.roundId, body);
      return { state: with_(state, { stage: config.mode === 'active' ? 'consistency' : 'unmask' }), outgoing: u3.map((to) => ({ to: to as ClientId, bytes })) };
    }
    case 'consistency': {
      const u4 = it.u3!.filter((u) => it.signatures.has(u));
      it.u4 = u4;
      it.u4set = new Set(u4);
      const quorum = consistencyQuorum(config, it.graph!.clients.length);
      if (u4.length < quorum) return abort(state, below('signatures on the survivor set (a quorum of U1)', u4.length, quorum));
      const short = await reconstructible(state, it.u4set);
      if (short !== undefined) return abort(state, short);
      const signatures = u4.map((client) => ({ client, signature: it.signatures.get(client)! }));
      const bytes = encodeServerMessage(config.roundId, { case: 'unmaskRequest', value: { survivors: it.u3!, signatures } });
      return { state: with_(state, { stage: 'unmask' }), outgoing: u4.map((to) => ({ to: to as ClientId, bytes })) };
    }
    case 'unmask':
      return finish(state);
    default:
      return { state, outgoing: [] };
  }
}

/** Every client of U2 needs ≥ t share-exchanging neighbours among the clients that may still reveal shares. */
async function reconstructible(state: ServerState, holders: ReadonlySet<number>): Promise<SecAggError | undefined> {
  const it = state.internal;
  const t = state.config.threshold;
  const pause = pacer(it);
  for (const v of it.u2!) {
    const ns = it.graph!.neighbours(v as ClientId);
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
 * Reconstruct every needed secret and remove the masks. Commits only on success: the running sum
 * is modified in place, so any failure once this has begun — a reconstruction, a worker, anything —
 * aborts the round with a typed reason, and a second call (a deadline after a failure) aborts too
 * instead of unmasking a partly unmasked sum again.
 */
async function finish(state: ServerState): Promise<ServerStep> {
  const it = state.internal;
  const { config } = state;
  if (it.unmaskStarted) return abort(state, new SecAggError('ERR_INTERNAL', 'unmasking was interrupted; its partial sum is discarded'));
  it.unmaskStarted = true;
  const c = it.crypto;
  const t = config.threshold;
  const cache = new LagrangeCache();
  // In a complete graph every owner's holders are the responders minus itself: one superset
  // serves them all (O(k) per owner instead of O(k²)).
  const complete = it.graph!.kind === 'complete';
  if (complete && it.responded.size > 0) {
    await cache.prepareUniverse([...it.responded], t, it.yieldToEventLoop); // O(k²) once, in slices
  }
  const bad = new Set<number>();
  // Masks are removed in batches while the remaining secrets are still being reconstructed, so a
  // worker-thread unmasker expands keystream while this thread does Shamir and X25519.
  const inFlight: Promise<void>[] = [];
  let failed: { error: unknown } | undefined;
  let batch: MaskJob[] = [];
  const perBatch = batchSize(config.dimension);
  // Every survivor's self mask, and each dropped client's pairwise masks with surviving neighbours.
  let expansions = it.u3!.length;
  for (const v of it.u2!) if (!it.u3set!.has(v)) expansions += edgesIn(it, v, it.u3set!).length;
  const plan: UnmaskPlan = { words: expansions * config.dimension, yieldToEventLoop: it.yieldToEventLoop };
  const flush = () => {
    if (batch.length === 0) return;
    const p = it.unmasker(it.sum!, batch, c, plan);
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
  const pause = workPacer(WORK_PER_YIELD, it.yieldToEventLoop);
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
      reconstructed = await reconstructVerified({ holders, shares, threshold: t, cache, verify, yieldToEventLoop: it.yieldToEventLoop });
    } catch (e) {
      // Name the owner: without verifiable secret sharing its own inconsistent shares (or a false
      // commitment) are the likeliest cause, and the operator needs to know whom to look at.
      if (isSecAggError(e, 'ERR_RECONSTRUCTION_FAILED'))
        throw new SecAggError('ERR_RECONSTRUCTION_FAILED', `${what} do not reconstruct a verified secret: ${e.message}`, { cause: e, clients: [owner, ...e.clients] });
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
    for (const v of it.u3!) {
      const commitment = it.shared.get(v)!.commitment;
      const secret = await reconstruct(v, it.selfShares, `shares of client ${v}'s self mask`, async (seed) =>
        derive.bytesEqual(await derive.selfMaskCommitment(c, seed, config.roundId, v as ClientId), commitment),
      );
      push({ key: await derive.selfMaskKey(c, secret, config.roundId, v as ClientId), sign: -1 });
    }
    for (const v of it.u2!) {
      if (it.u3set!.has(v)) continue;
      const advertised = it.advertised.get(v)!.maskingKey;
      // Binding: clients share the clamped scalar, and only one clamped scalar gives this key.
      const secret = await reconstruct(v, it.keyShares, `shares of dropped client ${v}'s key`, async (sk) => isClamped(sk) && derive.bytesEqual((await c.x25519(sk)).publicKey, advertised));
      // Survivor u added +PRG(s_uv) if v > u, −PRG(s_uv) if v < u: remove exactly that. Long peer
      // lists are split so that batches stay balanced across workers.
      const peers = edgesIn(it, v, it.u3set!).map((u) => ({ client: u as ClientId, publicKey: it.advertised.get(u)!.maskingKey, sign: (v > u ? -1 : 1) as 1 | -1 }));
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
    sum: it.sum!.toVector(config.bits),
    included: ids(it.u3!),
    sets: {
      advertised: ids(it.advertised.keys()),
      shared: ids(it.u2!),
      masked: ids(it.u3!),
      signed: ids(it.u4 ?? []),
      unmasked: ids(it.responded),
    },
    badShareHolders: ids(bad),
    maskExpansions: expansions,
    exactShareChecks: cache.exactChecks,
    viewAttempts: it.view?.attempt ?? 0,
  };
  return { state: with_(state, { stage: 'done', result }), outgoing: [] };
}

/** For tests of the privacy invariant: owners for which the server holds each kind of share. */
export function unsafeRevealedOwners(state: ServerState): { self: number[]; key: number[] } {
  return { self: [...state.internal.selfShares.keys()], key: [...state.internal.keyShares.keys()] };
}
