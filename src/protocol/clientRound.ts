/**
 * The client's side of one round as a pure state machine: `handleClientMessage(state, bytes)`
 * returns the next state and the bytes to send to the server. No I/O, no clock: the transport
 * delivers server messages and sends what comes out. Randomness and crypto are injected.
 *
 * A client has one peer, the server, so any invalid server message aborts the round for this
 * client (it sends a ClientAbort with the code), except a message for another round, which is
 * ignored. Nothing secret is revealed before every check of the stage has passed.
 */
import { defaultCrypto } from '#crypto-default';
import type { CryptoProvider, X25519PrivateKey, Ed25519PrivateKey } from '../crypto/provider.js';
import { SecAggError, isSecAggError } from '../errors.js';
import { MAX_CLIENT_ID, type ClientId } from '../ids.js';
import { RingAccumulator } from '../ring/accumulator.js';
import { assertInRing, packVector } from '../ring/vector.js';
import { cryptoRng, type Rng } from '../rng.js';
import { buildGraph, type NeighbourGraph } from '../graph/index.js';
import { splitSecret, SHARE_BYTES } from '../shamir/index.js';
import { decodeServerMessageChecked, encodeClientMessage, type ClientBody } from '../wire/codec.js';
import { peekServerBody } from '../wire/peek.js';
import { type KeysForYou, type RoundParameters, type SharesForYou, type UnmaskRequest, type ConsistencyRequest, type ViewRequest } from '../wire/gen/secagg/v1/secagg_pb.js';
import { DEFAULT_LIMITS, consistencyQuorum, neighbourhoodBoundViolation, validateConfig, type RoundConfig, type RoundLimits } from './config.js';
import * as derive from './derive.js';
import { GRAPH_SEED_BYTES, KEY_BYTES, SHARE_CIPHERTEXT_BYTES, SIGNATURE_BYTES, entryCaps, serverMessageLimits, serverMessageLimitsBeforeStart } from './limits.js';
import { checkIdList } from './idlist.js';
import { configFromParameters } from './roundParams.js';
import { CLIENT_STAGE_ACCEPTS, type ClientStage } from './stages.js';

export type { ClientStage };

export interface ClientOptions {
  readonly id: ClientId;
  /** This client's private vector; each element must be < 2^bits of the round it joins. */
  readonly input: Uint32Array;
  readonly crypto?: CryptoProvider;
  /** Randomness for keys, seeds and Shamir coefficients. Production: the platform CSPRNG (default). */
  readonly rng?: Rng;
  /** Active mode: this client's long-term Ed25519 identity seed (32 bytes). */
  readonly identity?: Uint8Array;
  /** Active mode: the long-term Ed25519 public keys of the other clients (a PKI the server cannot forge). */
  readonly directory?: ReadonlyMap<number, Uint8Array>;
  readonly limits?: Partial<RoundLimits>;
  /**
   * This client's own floors: it refuses (ERR_INVALID_PARAMETERS) a round whose cohort, advertised
   * set U1, threshold or corruption budget is below them, whatever the server says. They are how a
   * client keeps a server from running it with a couple of fakes. Defaults are the protocol's own
   * minimums (3, 3, 2, 0): set them for your deployment.
   */
  readonly floors?: Partial<ClientFloors>;
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

interface Peer {
  readonly encryptionKey: Uint8Array;
  readonly maskingKey: Uint8Array;
}

export interface ClientState {
  readonly stage: ClientStage;
  readonly id: ClientId;
  /** Set once the round has started. */
  readonly config: RoundConfig | undefined;
  /** The code this client aborted with, if it did. */
  readonly abortCode: string | undefined;
  /** @internal */
  readonly internal: ClientInternals;
}

interface ClientInternals {
  readonly options: Required<Pick<ClientOptions, 'id' | 'input' | 'crypto' | 'rng'>> & ClientOptions;
  readonly limits: RoundLimits;
  readonly floors: ClientFloors;
  encryption?: X25519PrivateKey;
  masking?: X25519PrivateKey;
  maskingSecret?: Uint8Array;
  selfMaskSeed?: Uint8Array;
  identity?: Ed25519PrivateKey;
  /** Active mode: this client's graph-seed contribution for the current view attempt, and its commitment. */
  seedReveal?: Uint8Array;
  seedCommitment?: Uint8Array;
  /** Active mode: the view this client signed (the latest attempt). */
  view?: { readonly attempt: number; readonly advertised: readonly number[]; readonly commitments: readonly Uint8Array[]; readonly digest: Uint8Array };
  /** Active mode: the attempt whose reveal is outstanding (seedReveal belongs to it). */
  attempt: number;
  graph?: NeighbourGraph;
  neighbours?: readonly ClientId[];
  peers?: Map<number, Peer>;
  /** AEAD key shared with each neighbour, kept from ShareKeys to open its shares without a second agreement. */
  shareKeys?: Map<number, Uint8Array>;
  /**
   * Pairwise mask key with each neighbour. Derived at ShareKeys (it needs only the neighbour's
   * advertised key), so the MaskedInput stage is keystream work alone and answers sooner.
   */
  maskKeys?: Map<number, Uint8Array>;
  /** Shares this client holds: from each neighbour v in its view of U2 whose ciphertext opened. */
  held?: Map<number, { keyShare: Uint8Array; selfShare: Uint8Array }>;
  /** The neighbours whose ciphertexts the server forwarded (its view of U2): the ones it masks with. */
  maskedWith?: ReadonlySet<number>;
  /** The survivor set this client signed (active mode). */
  signedSurvivors?: readonly number[];
  /** Which kind of share was revealed for each neighbour: never both. */
  revealed: Map<number, 'self' | 'key'>;
}

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
 * let client = createClient({ id: clientId(7), input });
 * const step = await handleClientMessage(client, bytesFromServer);
 * client = step.state;
 * if (step.outgoing) send(step.outgoing); // step.error says why a message was refused
 * ```
 */
export function createClient(options: ClientOptions): ClientState {
  if (!Number.isInteger(options.id) || options.id < 1 || options.id > MAX_CLIENT_ID) throw new RangeError(`id must be in [1, ${MAX_CLIENT_ID}]`);
  if (!(options.input instanceof Uint32Array)) throw new TypeError('input must be a Uint32Array');
  if (options.identity !== undefined && !(options.identity instanceof Uint8Array && options.identity.length === 32))
    throw new RangeError('identity must be a 32-byte Ed25519 seed');
  const internal: ClientInternals = {
    options: { ...options, crypto: options.crypto ?? defaultCrypto, rng: options.rng ?? cryptoRng },
    limits: { ...DEFAULT_LIMITS, ...options.limits },
    floors: { ...DEFAULT_FLOORS, ...options.floors },
    attempt: 1,
    revealed: new Map(),
  };
  return { stage: 'awaiting-start', id: options.id, config: undefined, abortCode: undefined, internal };
}

function next(state: ClientState, stage: ClientStage, patch: Partial<Pick<ClientState, 'config' | 'abortCode'>> = {}): ClientState {
  return { ...state, ...patch, stage };
}

/** Process one server message. Never throws on bad input: the error comes back in the step. */
export async function handleClientMessage(state: ClientState, bytes: Uint8Array): Promise<ClientStep> {
  if (state.stage === 'aborted') return { state, outgoing: null, error: new SecAggError('ERR_ABORTED', 'this client already aborted the round') };
  try {
    // The state keeps parts of accepted messages (round id, keys, shares): never views into a
    // buffer the caller may reuse, so the input is copied once (Buffer#slice would share memory).
    return await dispatch(state, bytes instanceof Uint8Array ? new Uint8Array(bytes) : bytes);
  } catch (e) {
    const error = isSecAggError(e) ? e : new SecAggError('ERR_INTERNAL', 'unexpected error in client round', { cause: e });
    if (error.code === 'ERR_ROUND_MISMATCH') return { state, outgoing: null, error };
    const roundId = state.config?.roundId;
    const outgoing = roundId ? encodeClientMessage(roundId, state.id, { case: 'abort', value: { code: error.code } }) : null;
    return { state: next(state, 'aborted', { abortCode: error.code }), outgoing, error };
  }
}

/** The server messages each stage accepts (besides `aborted`, always): any other kind is refused before it is decoded. */
const EXPECTED = CLIENT_STAGE_ACCEPTS;

async function dispatch(state: ClientState, bytes: Uint8Array): Promise<ClientStep> {
  const config = state.config;
  // A message for another round is ignored, whatever its kind: look at the envelope first.
  if (config && bytes instanceof Uint8Array && !derive.bytesEqual(peekServerBody(bytes).roundId, config.roundId))
    throw new SecAggError('ERR_ROUND_MISMATCH', 'message is for another round');
  const maxClients = state.internal.limits.maxClients;
  const expected = EXPECTED[state.stage];
  const msg = decodeServerMessageChecked(bytes, {
    maxBytes: config ? serverMessageLimits(config) : serverMessageLimitsBeforeStart(maxClients),
    allowed: (kind) => kind === 'aborted' || expected.includes(kind),
    ...(config ? entryCaps(config) : { maxNeighbours: 0, maxMembers: maxClients }),
  });
  if (config && !derive.bytesEqual(msg.roundId, config.roundId)) throw new SecAggError('ERR_ROUND_MISMATCH', 'message is for another round');
  const body = msg.body;
  if (body.case === 'aborted') {
    return { state: next(state, 'aborted', { abortCode: body.value.code || 'ERR_ABORTED' }), outgoing: null };
  }
  switch (body.case) {
    case 'roundStart':
      return onRoundStart(state, msg.roundId, body.value);
    case 'viewRequest':
      return onViewRequest(state, body.value);
    case 'keys':
      return onKeys(state, body.value);
    case 'shares':
      return onShares(state, body.value);
    case 'consistencyRequest':
      return onConsistency(state, body.value);
    case 'unmaskRequest':
      return onUnmask(state, body.value);
    default:
      throw new SecAggError('ERR_DECODE', 'unknown server message');
  }
}

function send(state: ClientState, body: ClientBody): Uint8Array {
  return encodeClientMessage(state.config!.roundId, state.id, body);
}

async function onRoundStart(state: ClientState, roundId: Uint8Array, p: RoundParameters): Promise<ClientStep> {
  const it = state.internal;
  if (!derive.bytesEqual(roundId, p.roundId)) throw new SecAggError('ERR_INVALID_PARAMETERS', 'round id of the envelope and parameters differ');
  const config = configFromParameters(p);
  const mode = config.mode;
  validateConfig(config, it.limits);
  if (!config.cohort.includes(state.id)) throw new SecAggError('ERR_UNKNOWN_SENDER', 'this client is not in the cohort');
  const f = it.floors;
  if (config.cohort.length < f.minCohort) throw new SecAggError('ERR_INVALID_PARAMETERS', `cohort of ${config.cohort.length} is below this client's floor of ${f.minCohort}`);
  if (config.threshold < f.minThreshold) throw new SecAggError('ERR_INVALID_PARAMETERS', `threshold ${config.threshold} is below this client's floor of ${f.minThreshold}`);
  if ((config.corruption ?? 0) < f.minCorruption)
    throw new SecAggError('ERR_INVALID_PARAMETERS', `corruption budget ${config.corruption ?? 0} is below this client's floor of ${f.minCorruption}`);
  const input = it.options.input;
  if (input.length !== config.dimension)
    throw new SecAggError('ERR_INVALID_PARAMETERS', `the round wants ${config.dimension} elements, this client has ${input.length}`);
  try {
    assertInRing(input, config.bits, 'input');
  } catch (cause) {
    throw new SecAggError('ERR_INVALID_PARAMETERS', `input does not fit a ${config.bits}-bit ring`, { cause });
  }
  if (mode === 'active' && (it.options.identity === undefined || it.options.directory === undefined))
    throw new SecAggError('ERR_INVALID_PARAMETERS', 'active mode needs an identity key and a directory of peers');

  const c = it.options.crypto;
  const rng = it.options.rng;
  it.encryption = await c.x25519(rng(32));
  // The masking key is shared in its clamped form, the one scalar X25519 really uses: then
  // "derives the advertised public key and is clamped" pins the reconstructed value to exactly
  // this secret, and a holder that shifts its share by an ignored bit cannot pass it off.
  it.maskingSecret = clampScalar(rng(32));
  it.masking = await c.x25519(it.maskingSecret);
  it.selfMaskSeed = rng(32);
  let signature: Uint8Array = new Uint8Array(0);
  let seedCommitment: Uint8Array = new Uint8Array(0);
  if (mode === 'active') {
    it.identity = await c.ed25519(it.options.identity!);
    it.seedReveal = rng(32);
    it.seedCommitment = seedCommitment = await derive.seedCommitment(c, config.roundId, state.id, it.attempt, it.seedReveal);
    signature = await it.identity.sign(derive.advertiseTranscript(config.roundId, state.id, it.encryption.publicKey, it.masking.publicKey));
  }
  const started = next(state, mode === 'active' ? 'awaiting-view' : 'awaiting-keys', { config });
  const outgoing = send(started, {
    case: 'advertiseKeys',
    value: { encryptionPublicKey: it.encryption.publicKey, maskingPublicKey: it.masking.publicKey, signature, seedCommitment },
  });
  return { state: started, outgoing };
}

/** U1 as the server shows it: ascending ids of the cohort, this client among them, at least this client's floor. */
function checkAdvertised(state: ClientState, list: readonly number[]): number[] {
  const config = state.config!;
  const advertised = checkIdList(list, 'advertised clients');
  const cohort = new Set<number>(config.cohort);
  for (const v of advertised) if (!cohort.has(v)) throw new SecAggError('ERR_INCONSISTENT_VIEW', `client ${v} is not in the cohort`);
  if (!advertised.includes(state.id)) throw new SecAggError('ERR_INCONSISTENT_VIEW', 'this client is missing from the advertised set');
  const floor = Math.max(state.internal.floors.minAdvertised, config.threshold + 1);
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
async function onViewRequest(state: ClientState, m: ViewRequest): Promise<ClientStep> {
  const it = state.internal;
  const config = state.config!;
  const c = it.options.crypto;
  if (config.mode !== 'active') throw new SecAggError('ERR_STAGE_MISMATCH', 'view requests belong to active mode');
  if (m.attempt !== it.attempt) throw new SecAggError('ERR_INCONSISTENT_VIEW', `view attempt ${m.attempt} where ${it.attempt} was due`);
  if (m.attempt > it.floors.maxViewAttempts)
    throw new SecAggError('ERR_INCONSISTENT_VIEW', `more than ${it.floors.maxViewAttempts} view attempts: each one is another graph seed to choose from`);
  const advertised = checkAdvertised(state, m.advertised);
  if (it.view !== undefined) {
    const before = new Set(it.view.advertised);
    for (const v of advertised) if (!before.has(v)) throw new SecAggError('ERR_INCONSISTENT_VIEW', `client ${v} was not in the previous view`);
  }
  if (m.seedCommitments.length !== advertised.length) throw new SecAggError('ERR_SIZE', `${m.seedCommitments.length} seed commitments for ${advertised.length} clients`);
  for (const h of m.seedCommitments) if (h.length !== 32) throw new SecAggError('ERR_SIZE', 'seed commitments must be 32 bytes');
  if (!derive.bytesEqual(m.seedCommitments[advertised.indexOf(state.id)]!, it.seedCommitment!))
    throw new SecAggError('ERR_INCONSISTENT_VIEW', 'the view carries another seed commitment for this client');
  const commitments = m.seedCommitments.map((h) => h.slice());
  const digest = await derive.viewDigest(c, config.roundId, m.attempt, advertised, commitments);
  const signature = await it.identity!.sign(derive.viewTranscript(digest, state.id, it.encryption!.publicKey, it.masking!.publicKey));
  const seedReveal = it.seedReveal!;
  it.view = { attempt: m.attempt, advertised, commitments, digest };
  it.attempt = m.attempt + 1;
  it.seedReveal = it.options.rng(32);
  it.seedCommitment = await derive.seedCommitment(c, config.roundId, state.id, it.attempt, it.seedReveal);
  const after = next(state, 'awaiting-keys');
  return { state: after, outgoing: send(after, { case: 'viewSignature', value: { signature, seedReveal, nextSeedCommitment: it.seedCommitment } }) };
}

/** Active mode: the graph seed from the view's reveals, each checked against its commitment. */
async function checkViewProof(state: ClientState, m: KeysForYou, advertised: readonly number[]): Promise<Uint8Array> {
  const it = state.internal;
  const c = it.options.crypto;
  const view = it.view;
  if (view === undefined) throw new SecAggError('ERR_STAGE_MISMATCH', 'keys before a view was signed');
  if (advertised.length !== view.advertised.length || advertised.some((v, i) => v !== view.advertised[i]))
    throw new SecAggError('ERR_INCONSISTENT_VIEW', 'keys for another advertised set than the view this client signed');
  const proof = m.view;
  if (proof === undefined) throw new SecAggError('ERR_INCONSISTENT_VIEW', 'active mode needs the view proof');
  if (proof.seedReveals.length !== advertised.length) throw new SecAggError('ERR_SIZE', `${proof.seedReveals.length} seed reveals for ${advertised.length} clients`);
  const round = state.config!.roundId;
  const checks = await Promise.all(
    proof.seedReveals.map(async (r, i) => r.length === 32 && derive.bytesEqual(await derive.seedCommitment(c, round, advertised[i]! as ClientId, view.attempt, r), view.commitments[i]!)),
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
async function checkViewSignatures(state: ClientState, m: KeysForYou, advertised: readonly number[], neighbours: readonly number[]): Promise<void> {
  const it = state.internal;
  const proof = m.view!;
  const others = advertised.filter((v) => v !== state.id);
  const signers = proof.viewSignatures;
  if (signers.length !== others.length || signers.some((s, i) => s.client !== others[i]))
    throw new SecAggError('ERR_INCONSISTENT_VIEW', `the view proof must hold the signature of each of the ${others.length} other members of U1, ascending`);
  const isNeighbour = new Set(neighbours);
  const neighbourKeys = new Map(m.neighbours.map((e) => [e.client, e]));
  if (proof.memberKeys.length !== others.length - neighbours.length)
    throw new SecAggError('ERR_INCONSISTENT_VIEW', `${proof.memberKeys.length} member keys for ${others.length - neighbours.length} members that are not neighbours`);
  let next = 0;
  const checks = signers.map((s) => {
    let encryption: Uint8Array;
    let masking: Uint8Array;
    if (isNeighbour.has(s.client)) {
      const e = neighbourKeys.get(s.client)!;
      encryption = e.encryptionPublicKey;
      masking = e.maskingPublicKey;
    } else {
      const keys = proof.memberKeys[next++]!;
      if (keys.length !== 2 * KEY_BYTES) throw new SecAggError('ERR_SIZE', `the keys of member ${s.client} are not 64 bytes`);
      encryption = keys.subarray(0, KEY_BYTES);
      masking = keys.subarray(KEY_BYTES);
    }
    const identity = it.options.directory!.get(s.client);
    if (identity === undefined || s.signature.length !== SIGNATURE_BYTES) return Promise.resolve(false);
    return it.options.crypto.ed25519Verify(identity, derive.viewTranscript(it.view!.digest, s.client as ClientId, encryption, masking), s.signature);
  });
  const ok = await Promise.all(checks);
  const wrong = ok.indexOf(false);
  if (wrong >= 0) throw new SecAggError('ERR_INCONSISTENT_VIEW', `member ${signers[wrong]!.client} of U1 did not sign this view`);
}

async function onKeys(state: ClientState, m: KeysForYou): Promise<ClientStep> {
  const it = state.internal;
  const config = state.config!;
  const c = it.options.crypto;
  if (m.graphSeed.length !== GRAPH_SEED_BYTES) throw new SecAggError('ERR_SIZE', 'graph seed must be 32 bytes');
  const advertised = checkAdvertised(state, m.advertised);
  const active = config.mode === 'active';
  if (active) await checkViewProof(state, m, advertised);
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
  if (active) await checkViewSignatures(state, m, advertised, neighbours);
  // A neighbour whose keys are reused or do not agree is treated as dropped: its
  // secrets are not shared with it and its shares are not taken, so one bad key costs one edge,
  // never the round. (An honest server refuses such keys before they reach anyone.)
  const seen = new Set<string>([derive.hex(it.encryption!.publicKey), derive.hex(it.masking!.publicKey)]);
  const fresh = m.neighbours.map((entry) => {
    const keys = [derive.hex(entry.encryptionPublicKey), derive.hex(entry.maskingPublicKey)];
    const ok = keys[0] !== keys[1] && !seen.has(keys[0]!) && !seen.has(keys[1]!);
    for (const k of keys) seen.add(k);
    return ok;
  });
  const agreed = await Promise.all(
    m.neighbours.map(async (entry, i) => {
      const v = entry.client as ClientId;
      if (!fresh[i]) return undefined;
      try {
        const maskKey = await derive.pairwiseMaskKey(c, await it.masking!.agree(entry.maskingPublicKey), config.roundId, state.id, v);
        const shareKey = await derive.shareKey(c, await it.encryption!.agree(entry.encryptionPublicKey), config.roundId, state.id, v);
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
  it.graph = graph;
  it.neighbours = neighbours;
  it.peers = new Map(live.map((a) => [a.v, a.peer]));
  it.maskKeys = new Map(live.map((a) => [a.v, a.maskKey]));
  it.shareKeys = new Map(live.map((a) => [a.v, a.shareKey]));

  // Share s_u^SK and b_u t-of-|live| among the neighbours kept, then encrypt each pair of shares to its holder.
  const holders = live.map((a) => a.v as number);
  const keyShares = splitSecret({ secret: it.maskingSecret!, holders, threshold: config.threshold, rng: it.options.rng });
  const selfShares = splitSecret({ secret: it.selfMaskSeed!, holders, threshold: config.threshold, rng: it.options.rng });
  const shares = await Promise.all(
    live.map(async ({ v, shareKey }, i) => {
      const pt = derive.sharePlaintext(state.id, v, keyShares[i]!, selfShares[i]!);
      const ciphertext = await c.aeadSeal(shareKey, derive.shareNonce(state.id, v), pt, derive.sharesAad(config.roundId, state.id, v));
      return { peer: v, ciphertext };
    }),
  );
  const selfMaskCommitment = await derive.selfMaskCommitment(c, it.selfMaskSeed!, config.roundId, state.id);
  const after = next(state, 'awaiting-shares');
  return { state: after, outgoing: send(after, { case: 'shareKeys', value: { selfMaskCommitment, shares } }) };
}

async function onShares(state: ClientState, m: SharesForYou): Promise<ClientStep> {
  const it = state.internal;
  const config = state.config!;
  const c = it.options.crypto;
  const held = new Map<number, { keyShare: Uint8Array; selfShare: Uint8Array }>();
  let previous = 0;
  for (const entry of m.shares) {
    const v = entry.peer;
    if (v <= previous) throw new SecAggError('ERR_DUPLICATE_SENDER', 'shares must come once per neighbour, ascending');
    previous = v;
    const peer = it.peers!.get(v);
    if (peer === undefined) throw new SecAggError('ERR_NOT_NEIGHBOUR', `shares from client ${v}, who is not a neighbour`);
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
      const key = it.shareKeys!.get(v)!;
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
  it.held = held;
  it.maskedWith = new Set(m.shares.map((e) => e.peer));

  // y_u = x_u + PRG(b_u) + Σ_{v>u} PRG(s_uv) − Σ_{v<u} PRG(s_uv), over v in N(u) ∩ U2.
  const acc = new RingAccumulator(config.dimension);
  acc.addVector(it.options.input, 1);
  await acc.addPrg(c, await derive.selfMaskKey(c, it.selfMaskSeed!, config.roundId, state.id), 1);
  for (const v of it.maskedWith) await acc.addPrg(c, it.maskKeys!.get(v)!, v > state.id ? 1 : -1);
  const vector = packVector(acc.toVector(config.bits), config.bits);
  const after = next(state, config.mode === 'active' ? 'awaiting-consistency' : 'awaiting-unmask');
  return { state: after, outgoing: send(after, { case: 'maskedInput', value: { vector } }) };
}

/** The survivor set U3 must be a sane id list that contains this client and agrees with its view of U2. */
function checkSurvivors(state: ClientState, list: readonly number[]): number[] {
  const config = state.config!;
  const it = state.internal;
  const survivors = checkIdList(list, 'survivors');
  if (survivors.length < config.threshold)
    throw new SecAggError('ERR_BELOW_THRESHOLD', `${survivors.length} survivors is fewer than the threshold ${config.threshold}`);
  if (!survivors.includes(state.id)) throw new SecAggError('ERR_INCONSISTENT_VIEW', 'this client is missing from the survivor set');
  // Every neighbour this client kept that is called a survivor must have shared its keys with this
  // client: otherwise the server withheld its shares so that this client masked with fewer
  // neighbours (the "mask partners" lie), or the survivor set is simply false.
  for (const v of survivors) {
    if (v !== state.id && it.peers!.has(v) && !it.maskedWith!.has(v))
      throw new SecAggError('ERR_INCONSISTENT_VIEW', `client ${v} is called a survivor but never shared its keys with this client`);
    if (!it.graph!.has(v)) throw new SecAggError('ERR_INCONSISTENT_VIEW', `client ${v} never advertised keys`);
  }
  return survivors;
}

async function onConsistency(state: ClientState, m: ConsistencyRequest): Promise<ClientStep> {
  const it = state.internal;
  const survivors = checkSurvivors(state, m.survivors);
  it.signedSurvivors = survivors;
  const signature = await it.identity!.sign(derive.consistencyTranscript(state.config!.roundId, it.view!.digest, survivors));
  const after = next(state, 'awaiting-unmask');
  return { state: after, outgoing: send(after, { case: 'consistencySignature', value: { signature } }) };
}

async function onUnmask(state: ClientState, m: UnmaskRequest): Promise<ClientStep> {
  const it = state.internal;
  const config = state.config!;
  const survivors = checkSurvivors(state, m.survivors);
  if (config.mode === 'active') {
    const signed = it.signedSurvivors!;
    if (signed.length !== survivors.length || signed.some((v, i) => v !== survivors[i]))
      throw new SecAggError('ERR_INCONSISTENT_VIEW', 'the survivor set differs from the one this client signed');
    const transcript = derive.consistencyTranscript(config.roundId, it.view!.digest, survivors);
    const members = new Set(survivors);
    const signers = new Set<number>();
    for (const s of m.signatures) {
      if (!members.has(s.client)) throw new SecAggError('ERR_INCONSISTENT_VIEW', `signature from client ${s.client}, who is not a survivor`);
      if (signers.has(s.client)) throw new SecAggError('ERR_DUPLICATE_SENDER', `two signatures from client ${s.client}`);
      const identity = it.options.directory!.get(s.client);
      if (identity === undefined || s.signature.length !== SIGNATURE_BYTES || !(await it.options.crypto.ed25519Verify(identity, transcript, s.signature)))
        throw new SecAggError('ERR_SIGNATURE_INVALID', `client ${s.client} did not sign this survivor set`);
      signers.add(s.client);
    }
    // A quorum of U1, not just t: two different survivor sets can then never both be signed, since
    // any two quorums share an honest client and an honest client signs one survivor set only.
    const quorum = consistencyQuorum(config, it.view!.advertised.length);
    if (signers.size < quorum)
      throw new SecAggError('ERR_BELOW_THRESHOLD', `${signers.size} clients signed the survivor set, fewer than the quorum of ${quorum}`);
  }
  // Decide every reveal before revealing anything: refuse outright if any neighbour would get both kinds.
  const members = new Set(survivors);
  const plan: Array<{ owner: number; kind: 'self' | 'key'; share: Uint8Array }> = [];
  for (const [v, shares] of it.held!) {
    const kind = members.has(v) ? 'self' : 'key';
    const before = it.revealed.get(v);
    if (before !== undefined && before !== kind)
      throw new SecAggError('ERR_BOTH_SHARES_REQUESTED', `the server asked for both kinds of share of client ${v}`);
    plan.push({ owner: v, kind, share: kind === 'self' ? shares.selfShare : shares.keyShare });
  }
  for (const p of plan) it.revealed.set(p.owner, p.kind);
  const selfMaskShares = plan.filter((p) => p.kind === 'self').map((p) => ({ owner: p.owner, share: p.share }));
  const keyShares = plan.filter((p) => p.kind === 'key').map((p) => ({ owner: p.owner, share: p.share }));
  const after = next(state, 'done');
  return { state: after, outgoing: send(after, { case: 'unmaskResponse', value: { selfMaskShares, keyShares } }) };
}


/** RFC 7748 clamping: the X25519 scalar a 32-byte private key really stands for. */
export function clampScalar(k: Uint8Array): Uint8Array {
  const out = k.slice();
  out[0] = out[0]! & 248;
  out[31] = (out[31]! & 127) | 64;
  return out;
}
