/**
 * The state-machine fuzzer: hostile inputs for the protocol handlers handleServerMessage,
 * handleServerDeadline (protocol/serverRound.ts) and handleClientMessage (protocol/clientRound.ts),
 * applied to states captured from real rounds.
 *
 * Seed corpus. Real rounds run with the test Driver (test/driver.ts) for a few round shapes (both
 * modes, complete and Harary graphs, dropouts at chosen stages). At every server stage the server
 * state is captured three times (fresh, with all but two and with all but one of the stage's
 * honest replies delivered), with the honest client replies of that stage; before every client
 * stage each recipient's client state is captured with the honest server message it gets.
 *
 * Fresh copies. The handlers consume their states (they change their Maps in place when they accept a message), so each
 * batch works on a decoded copy of its captured state (`cloneServerState` / `cloneClientState`: Maps,
 * Sets, arrays, byte arrays, plain objects and the running sum are copied; crypto objects, the graph
 * and other immutable class instances are shared) and takes a new copy whenever an input was
 * accepted, unless it goes on along that state for a few more inputs (a chain: duplicate
 * deliveries, messages of the stage it moved to, deadlines in between). Copying takes tens of µs;
 * replaying a round with the Driver to the same point takes 10–50 ms.
 *
 * Checks, for every input. No handler throws; every error is a SecAggError with a code from
 * ERROR_CODES, and an ERR_INTERNAL whose cause is not a SecAggError is counted as untyped.
 * The server: a refused message leaves the state's canonical snapshot (`snapshotServer`: stage,
 * result, abort code and every field of state.internal) unchanged and sends nothing. An accepted
 * message is one protobuf-es reads as the stage's kind (or an abort) of this round, from the
 * connection's own client; it, or a deadline, moves the round to the same stage, the next one or
 * 'aborted', and leaves a state whose sets nest (`serverInvariants`: U1 ⊇ U2 ⊇ U3 ⊇ U4 ⊇
 * responders, never both kinds of share of one owner, shares only from neighbours that answered).
 * A round that reaches 'done' along honest messages (mutated ones allowed only in the unmask stage,
 * whose shares the server verifies) has the plaintext sum of the clients it includes — in a DP
 * round, of their inputs plus the noise each added (found by running the round again without DP),
 * minus the excess noise in the unmask responses the server accepted (`expectedRelease`).
 * The client: ERR_ROUND_MISMATCH leaves it unchanged and sends nothing; any other refusal moves it
 * to 'aborted' with that code and sends exactly one ClientAbort with it (nothing when it has no
 * round yet); an accepted message moves it to the next stage with a reply of the kind that stage
 * sends, and an unmask response never reveals both kinds of share of one neighbour.
 * Also counted, as findings but not failures: state that aliases the caller's input buffer (it
 * changes when the caller overwrites the buffer after an accepted message), and a client's previous
 * state mutated in place by a message it refused.
 *
 * Reproducible: batch b of a run depends only on (seed, b), so `runRoundFuzz({ …, batches: (x) =>
 * x === b })` replays it (`node dist/bench/fuzz-rounds.js --seed S --batch b`).
 * bench/fuzz-rounds.ts is the command line; test/fuzz/rounds.test.ts a short run.
 */
import { clone as cloneMessage, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ERROR_CODES, SecAggError } from '../../src/errors.js';
import { handleClientMessage, type ClientContext, type ClientStage, type ClientState } from '../../src/protocol/clientRound.js';
import { decodeClientState, decodeServerState, encodeClientState, encodeServerState } from '../../src/protocol/stateCodec.js';
import type { Degree, DpRoundConfig, Mode } from '../../src/protocol/config.js';
import { graphOf, handleServerDeadline, handleServerMessage, type ServerContext, type ServerStage, type ServerState } from '../../src/protocol/serverRound.js';
import { unsafeSeededRng } from '../../src/rng.js';
import { encodeClientMessage, encodeServerMessage } from '../../src/wire/codec.js';
import {
  ClientMessageSchema,
  ServerMessageSchema,
  type ClientMessage,
  type RevealedShare,
  type ServerMessage,
} from '../../src/wire/gen/secagg/v1/secagg_pb.js';
import { Driver } from '../driver.js';
import { Prng, mutate } from './mutate.js';
import { STAGES } from '../../src/protocol/stages.js';

// ---------------------------------------------------------------------------------------------
// Round shapes and the captured corpus
// ---------------------------------------------------------------------------------------------

export interface RoundSpec {
  readonly name: string;
  readonly n: number;
  readonly m: number;
  readonly bits: number;
  readonly mode: Mode;
  readonly degree: Degree;
  readonly seed: number;
  readonly corruption?: number;
  /** Clients whose honest reply is produced but not delivered, per server stage label ('view', 'view#2', 'masked', …). */
  readonly silent?: Readonly<Record<string, readonly number[]>>;
  /** A DP round (RoundConfig.dp): clients add noise inside their masked inputs; removable noise comes off at unmask. */
  readonly dp?: DpRoundConfig;
}

/** Small rounds (rebuilding is cheap), both modes, complete and Harary graphs, dropouts in several stages. */
export const ROUND_SPECS: readonly RoundSpec[] = [
  { name: 'semi-complete-5', n: 5, m: 8, bits: 32, mode: 'semi-honest', degree: 'complete', seed: 11 },
  { name: 'semi-harary4-8', n: 8, m: 8, bits: 12, mode: 'semi-honest', degree: 4, seed: 12, silent: { masked: [3] } },
  { name: 'semi-complete-7', n: 7, m: 8, bits: 7, mode: 'semi-honest', degree: 'complete', seed: 15, silent: { share: [7], masked: [4] } },
  { name: 'semi-harary3-7', n: 7, m: 8, bits: 16, mode: 'semi-honest', degree: 3, seed: 16, silent: { unmask: [5] } },
  { name: 'active-complete-6', n: 6, m: 8, bits: 16, mode: 'active', degree: 'complete', seed: 13 },
  { name: 'active-harary4-8', n: 8, m: 8, bits: 16, mode: 'active', degree: 4, seed: 14, silent: { view: [6], 'view#2': [7], masked: [2] } },
  { name: 'active-complete-8-c1', n: 8, m: 8, bits: 16, mode: 'active', degree: 'complete', seed: 17, corruption: 1, silent: { consistency: [3] } },
  // DP rounds (RoundConfig.dp): the noise in RoundStart, the masked inputs, and for removable Skellam
  // the excess every survivor reveals at unmask (UnmaskResponse.excess_noise), which the server subtracts.
  {
    name: 'dp-skellam-removable-complete-6',
    n: 6,
    m: 8,
    bits: 16,
    mode: 'semi-honest',
    degree: 'complete',
    seed: 21,
    dp: { mechanism: 'skellam', targetVariance: 200, removable: true },
    silent: { masked: [2], unmask: [5] },
  },
  {
    name: 'dp-skellam-removable-active-complete-7-c1',
    n: 7,
    m: 8,
    bits: 12,
    mode: 'active',
    degree: 'complete',
    seed: 22,
    corruption: 1,
    dp: { mechanism: 'skellam', targetVariance: 90, removable: true },
    silent: { masked: [4] },
  },
  {
    name: 'dp-skellam-harary4-8',
    n: 8,
    m: 8,
    bits: 7,
    mode: 'semi-honest',
    degree: 4,
    seed: 23,
    dp: { mechanism: 'skellam', targetVariance: 50, removable: false },
    silent: { masked: [3] },
  },
  {
    name: 'dp-dgauss-complete-6',
    n: 6,
    m: 8,
    bits: 16,
    mode: 'semi-honest',
    degree: 'complete',
    seed: 24,
    dp: { mechanism: 'dgauss', targetVariance: 30, removable: false },
    silent: { share: [6] },
  },
  {
    name: 'dp-dgauss-active-harary4-8',
    n: 8,
    m: 8,
    bits: 16,
    mode: 'active',
    degree: 4,
    seed: 25,
    dp: { mechanism: 'dgauss', targetVariance: 40, removable: false },
    silent: { masked: [2] },
  },
];

export interface Wire {
  readonly from: number;
  readonly bytes: Uint8Array;
}

export interface ServerPoint {
  readonly round: RoundCorpus;
  /** Stage label ('view#2' for a second view attempt), '/partial' with all but two of its honest replies delivered, '/last' all but one. */
  readonly label: string;
  readonly state: ServerState;
  /** Canonical snapshot of `state` when captured: the master must never change. */
  readonly snapshot: string;
}

export interface ClientPoint {
  readonly round: RoundCorpus;
  readonly id: number;
  readonly state: ClientState;
  readonly snapshot: string;
  /** The honest server message this client got in this stage. */
  readonly message: Uint8Array;
}

export interface RoundCorpus {
  readonly spec: RoundSpec;
  readonly roundId: Uint8Array;
  readonly cohort: readonly number[];
  readonly inputs: readonly Uint32Array[];
  /**
   * A DP round: each client's input plus the noise it added (mod 2^bits), by client id − 1, and the
   * excess each client revealed in its honest unmask response (by id; absent when it revealed none).
   * Without DP: the inputs, and no excess.
   */
  readonly noisyInputs: readonly Uint32Array[];
  readonly honestExcess: ReadonlyMap<number, Uint32Array>;
  /** Honest client replies by server stage label ('view#2' for the second view attempt). */
  readonly replies: ReadonlyMap<string, readonly Wire[]>;
  /** Every honest client message of the round, and abort messages from each client. */
  readonly clientMessages: readonly (Wire & { readonly stage: string })[];
  /** Honest server messages by client stage, with their recipient (`from` = recipient). */
  readonly serverMessages: ReadonlyMap<ClientStage, readonly Wire[]>;
  readonly allServerMessages: readonly Wire[];
  /** `${from}|${hex}` of every honest client message: an accepted input in this set is honest. */
  readonly honest: ReadonlySet<string>;
  readonly decodedClient: readonly ClientMessage[];
  readonly decodedServer: readonly ServerMessage[];
  readonly serverPoints: ServerPoint[];
  readonly clientPoints: ClientPoint[];
  /** The contexts the round ran with (each batch gives them a fresh seeded RNG). */
  readonly serverCtx: ServerContext;
  readonly clientCtx: ReadonlyMap<number, ClientContext>;
}

export interface RoundFuzzCorpus {
  readonly rounds: readonly RoundCorpus[];
  readonly serverPoints: readonly ServerPoint[];
  readonly clientPoints: readonly ClientPoint[];
  /** Every corpus message as bytes: donors for the mutator. */
  readonly donors: readonly Uint8Array[];
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** Runs one honest round of `spec` and captures its states and messages. */
export async function captureRound(spec: RoundSpec): Promise<RoundCorpus> {
  const d = await new Driver({
    n: spec.n,
    m: spec.m,
    bits: spec.bits,
    mode: spec.mode,
    degree: spec.degree,
    seed: spec.seed,
    ...(spec.corruption !== undefined ? { corruption: spec.corruption } : {}),
    ...(spec.dp !== undefined ? { dp: spec.dp } : {}),
  }).start();
  const replies = new Map<string, Wire[]>();
  const clientMessages: (Wire & { stage: string })[] = [];
  const serverMessages = new Map<ClientStage, Wire[]>();
  const allServerMessages: Wire[] = [];
  const serverPoints: ServerPoint[] = [];
  const clientPoints: ClientPoint[] = [];
  const round: RoundCorpus = {
    spec,
    roundId: d.config.roundId,
    cohort: d.config.cohort,
    inputs: d.inputs,
    noisyInputs: d.inputs,
    honestExcess: new Map(),
    replies,
    clientMessages,
    serverMessages,
    allServerMessages,
    honest: new Set(),
    decodedClient: [],
    decodedServer: [],
    serverPoints,
    clientPoints,
    serverCtx: d.serverCtx,
    clientCtx: d.clientCtx,
  };
  const serverPoint = (label: string) => {
    const state = cloneServerState(d.server);
    serverPoints.push({ round, label, state, snapshot: snapshotServer(state) });
  };
  const clientPoint = (stage: ClientStage, id: number, state: ClientState, message: Uint8Array) => {
    const copy = cloneClientState(state);
    clientPoints.push({ round, id, state: copy, snapshot: snapshotClient(copy), message });
    let list = serverMessages.get(stage);
    if (!list) serverMessages.set(stage, (list = []));
    list.push({ from: id, bytes: message });
    allServerMessages.push({ from: id, bytes: message });
  };
  const visits = new Map<string, number>();
  for (let guard = 0; d.server.stage !== 'done' && d.server.stage !== 'aborted'; guard++) {
    if (guard > 20) throw new Error(`${spec.name}: the honest round does not finish`);
    const stage = d.server.stage;
    const visit = (visits.get(stage) ?? 0) + 1;
    visits.set(stage, visit);
    const label = visit === 1 ? stage : `${stage}#${visit}`;
    serverPoint(label);
    const pending = d.pending.slice();
    for (const o of pending) clientPoint(d.clients.get(o.to)!.stage, o.to, d.clients.get(o.to)!, o.bytes);
    const got = await d.collectReplies();
    for (const r of got) clientMessages.push({ ...r, stage: label });
    replies.set(label, got);
    if (stage === 'unmask') for (const o of pending) clientPoint('done', o.to, d.clients.get(o.to)!, o.bytes);
    const silent = spec.silent?.[label] ?? [];
    const deliver = got.filter((r) => !silent.includes(r.from));
    const cut = Math.max(0, deliver.length - 2);
    for (const r of deliver.slice(0, cut)) {
      const e = await d.toServer(r.from, r.bytes);
      if (e) throw new Error(`${spec.name}: an honest ${label} reply was refused: ${e.code} ${e.message}`);
    }
    if (cut > 0 && d.server.stage === stage) serverPoint(`${label}/partial`);
    for (const [i, r] of deliver.slice(cut).entries()) {
      if (i === 1 && d.server.stage === stage) serverPoint(`${label}/last`);
      const e = await d.toServer(r.from, r.bytes);
      if (e) throw new Error(`${spec.name}: an honest ${label} reply was refused: ${e.code} ${e.message}`);
    }
    if (d.server.stage === stage) await d.deadline();
  }
  if (d.server.stage !== 'done') throw new Error(`${spec.name}: the honest round ended ${d.server.stage}: ${d.server.abortError?.message}`);
  if (spec.dp !== undefined) await captureNoise(round);
  const want = expectedRelease(round, d.server.result!, new Map());
  if (hex(new Uint8Array(want.buffer)) !== hex(new Uint8Array(d.server.result!.sum.buffer))) throw new Error(`${spec.name}: the honest round has a wrong sum`);
  serverPoint('done');
  // Abort messages from every client, and the server's abort, as honest messages of no stage.
  for (const id of round.cohort)
    clientMessages.push({ from: id, bytes: encodeClientMessage(round.roundId, id, { case: 'abort', value: { code: 'ERR_BELOW_THRESHOLD' } }), stage: 'abort' });
  allServerMessages.push({
    from: 0,
    bytes: encodeServerMessage(round.roundId, { case: 'aborted', value: { code: 'ERR_BELOW_THRESHOLD', reason: 'masked inputs: 2, need at least 3' } }),
  });
  const honest = round.honest as Set<string>;
  for (const w of clientMessages) honest.add(`${w.from}|${hex(w.bytes)}`);
  (round.decodedClient as ClientMessage[]).push(...clientMessages.map((w) => fromBinary(ClientMessageSchema, w.bytes)));
  (round.decodedServer as ServerMessage[]).push(...allServerMessages.map((w) => fromBinary(ServerMessageSchema, w.bytes)));
  return round;
}

export async function buildRoundCorpus(specs: readonly RoundSpec[] = ROUND_SPECS): Promise<RoundFuzzCorpus> {
  const rounds: RoundCorpus[] = [];
  for (const s of specs) rounds.push(await captureRound(s));
  const donors = rounds.flatMap((r) => [...r.clientMessages.map((w) => w.bytes), ...r.allServerMessages.map((w) => w.bytes)]);
  return { rounds, serverPoints: rounds.flatMap((r) => r.serverPoints), clientPoints: rounds.flatMap((r) => r.clientPoints), donors };
}

/** Σ inputs of `included` (1-based ids) mod 2^bits, without the library. */
export function expectedSum(round: RoundCorpus, included: readonly number[]): Uint32Array {
  const { m, bits } = round.spec;
  const out = new Uint32Array(m);
  const mod = 2 ** bits;
  for (const id of included) for (let i = 0; i < m; i++) out[i] = (out[i]! + round.inputs[id - 1]![i]!) % mod;
  return out;
}

/** Little-endian elements of ⌈bits/8⌉ bytes (the wire's packing), read here without the library. */
function unpacked(bytes: Uint8Array, bits: number, m: number): Uint32Array {
  const w = Math.ceil(bits / 8);
  if (bytes.length !== w * m) throw new Error(`packed vector of ${bytes.length} bytes, expected ${w * m}`);
  const out = new Uint32Array(m);
  for (let i = 0; i < m; i++) {
    let x = 0;
    for (let j = w - 1; j >= 0; j--) x = x * 256 + bytes[i * w + j]!;
    out[i] = x;
  }
  return out;
}

/**
 * What a finished round must release, without the library: Σ over `included` of each client's
 * input plus its noise, minus the excess of every client that answered the unmask request (the one
 * its accepted response carried: `accepted` for responses accepted on the way, else its honest one)
 * — mod 2^bits. Without DP this is expectedSum.
 */
export function expectedRelease(
  round: RoundCorpus,
  result: { readonly included: readonly number[]; readonly sets: { readonly unmasked: readonly number[] } },
  accepted: ReadonlyMap<number, Uint32Array>,
): Uint32Array {
  if (round.spec.dp === undefined) return expectedSum(round, result.included);
  const { m, bits } = round.spec;
  const mod = 2 ** bits;
  const out = new Uint32Array(m);
  for (const id of result.included) for (let i = 0; i < m; i++) out[i] = (out[i]! + round.noisyInputs[id - 1]![i]!) % mod;
  for (const id of result.sets.unmasked) {
    const e = accepted.get(id) ?? round.honestExcess.get(id);
    if (e !== undefined) for (let i = 0; i < m; i++) out[i] = (out[i]! + mod - e[i]!) % mod;
  }
  return out;
}

/** The excess an unmask response carries (m elements), or undefined when it carries none. */
function excessOf(round: RoundCorpus, bytes: Uint8Array): Uint32Array | undefined {
  const msg = fromBinary(ClientMessageSchema, bytes);
  if (msg.body.case !== 'unmaskResponse' || msg.body.value.excessNoise.length === 0) return undefined;
  return unpacked(msg.body.value.excessNoise, round.spec.bits, round.spec.m);
}

/**
 * Each client's noise in a DP round, without the library's samplers: the same round (same seeds,
 * same deliveries, one RNG shared in the same order) run without DP, whose masked inputs differ from
 * the DP round's by exactly the noise (it is drawn after every mask seed, at the masked stage, and
 * the masks do not depend on it). Fills round.noisyInputs, and round.honestExcess from the honest
 * unmask responses; captureRound then checks the honest round's sum against them.
 */
async function captureNoise(round: RoundCorpus): Promise<void> {
  const { spec } = round;
  const plain = await maskedRepliesWithoutDp(spec);
  const noisy = round.replies.get('masked') ?? [];
  const mod = 2 ** spec.bits;
  const noisyInputs = round.inputs.map((x) => x.slice());
  for (const w of noisy) {
    const twin = plain.get(w.from);
    if (twin === undefined) throw new Error(`${spec.name}: client ${w.from} masked in the DP round only`);
    const y = maskedVector(round, w.bytes);
    const y0 = maskedVector(round, twin);
    const x = noisyInputs[w.from - 1]!;
    for (let i = 0; i < spec.m; i++) x[i] = (x[i]! + y[i]! + mod - y0[i]!) % mod;
  }
  (round as { noisyInputs: readonly Uint32Array[] }).noisyInputs = noisyInputs;
  const excess = round.honestExcess as Map<number, Uint32Array>;
  for (const w of round.replies.get('unmask') ?? []) {
    const e = excessOf(round, w.bytes);
    if (e !== undefined) excess.set(w.from, e);
  }
}

function maskedVector(round: RoundCorpus, bytes: Uint8Array): Uint32Array {
  const msg = fromBinary(ClientMessageSchema, bytes);
  if (msg.body.case !== 'maskedInput') throw new Error('not a masked input');
  return unpacked(msg.body.value.vector, round.spec.bits, round.spec.m);
}

/** The masked inputs of an honest run of `spec` without its DP noise, with captureRound's deliveries, by client. */
async function maskedRepliesWithoutDp(spec: RoundSpec): Promise<Map<number, Uint8Array>> {
  const d = await new Driver({
    n: spec.n,
    m: spec.m,
    bits: spec.bits,
    mode: spec.mode,
    degree: spec.degree,
    seed: spec.seed,
    ...(spec.corruption !== undefined ? { corruption: spec.corruption } : {}),
  }).start();
  const visits = new Map<string, number>();
  for (let guard = 0; d.server.stage !== 'done' && d.server.stage !== 'aborted'; guard++) {
    if (guard > 20) break;
    const stage = d.server.stage;
    const visit = (visits.get(stage) ?? 0) + 1;
    visits.set(stage, visit);
    const label = visit === 1 ? stage : `${stage}#${visit}`;
    const got = await d.collectReplies();
    if (label === 'masked') return new Map(got.map((r) => [r.from, r.bytes]));
    const silent = spec.silent?.[label] ?? [];
    for (const r of got.filter((x) => !silent.includes(x.from))) await d.toServer(r.from, r.bytes);
    if (d.server.stage === stage) await d.deadline();
  }
  throw new Error(`${spec.name}: the round without DP never reached the masked stage`);
}

// ---------------------------------------------------------------------------------------------
// Deep copies and canonical snapshots of the states
// ---------------------------------------------------------------------------------------------

/**
 * An independent copy of a server state: encoded and decoded (so every batch also runs the state
 * codec, and a decoded state must go on exactly as the original would).
 */
export function cloneServerState(s: ServerState): ServerState {
  return decodeServerState(encodeServerState(s));
}

/** An independent copy of a client state, through its encoding. */
export function cloneClientState(s: ClientState): ClientState {
  return decodeClientState(encodeClientState(s));
}

/** The encoding of a state, or a marker for one a call consumed (encoding refuses those). */
function encodingOf(encode: () => Uint8Array): string {
  try {
    return Buffer.from(encode()).toString('hex');
  } catch (e) {
    if (e instanceof TypeError) return '<consumed>';
    throw e;
  }
}

/** Not part of the snapshot: injected services, immutable inputs, the kernel's scratch memory. */
const SKIP = new Set(['crypto', 'rng', 'unmasker', 'yieldToEventLoop', 'directory', 'kernel', 'scratch', 'options']);
/** Key objects: only their public key is state. */
const KEY_OBJECTS = new Set(['encryption', 'masking', 'identity']);

function canon(v: unknown, seen: Set<object>): string {
  switch (typeof v) {
    case 'undefined':
      return 'u';
    case 'number':
      return Object.is(v, -0) ? '-0' : String(v);
    case 'string':
      return JSON.stringify(v);
    case 'boolean':
      return v ? 't' : 'f';
    case 'bigint':
      return `${v}n`;
    case 'function':
    case 'symbol':
      return '';
  }
  if (v === null) return 'n';
  const o = v as object;
  if (ArrayBuffer.isView(o))
    return `${o instanceof Uint8Array ? 'b' : o.constructor.name}:${Buffer.from(o.buffer, o.byteOffset, o.byteLength).toString('hex')}`;
  if (seen.has(o)) return '<cycle>';
  seen.add(o);
  let s: string;
  if (Array.isArray(o)) {
    s = '[';
    for (const x of o) s += canon(x, seen) + ',';
    s += ']';
  } else if (o instanceof Map) {
    s = 'M{';
    for (const [k, x] of o) s += `${canon(k, seen)}=>${canon(x, seen)},`;
    s += '}';
  } else if (o instanceof Set) {
    s = 'S{';
    for (const x of o) s += canon(x, seen) + ',';
    s += '}';
  } else if (o instanceof Error) {
    s = `E(${(o as { code?: unknown }).code ?? o.name})`;
  } else {
    s = '{';
    for (const k of Object.keys(o).sort()) {
      if (SKIP.has(k)) continue;
      const x = (o as Record<string, unknown>)[k];
      if (typeof x === 'function') continue;
      if (KEY_OBJECTS.has(k)) s += `${k}:${x === undefined ? 'u' : canon((x as { publicKey?: unknown }).publicKey, seen)};`;
      else s += `${k}:${canon(x, seen)};`;
    }
    s += '}';
  }
  seen.delete(o);
  return s;
}

/**
 * Canonical snapshot of a server state: its encoding (encodeServerState), and every field of the
 * state object, derived ones included (the encoding leaves those out): so the harness is the
 * mutation contract's check — a refusal must leave both exactly as they were.
 */
export function snapshotServer(s: ServerState): string {
  return `${s.stage}|${encodingOf(() => encodeServerState(s))}|${canon(s, new Set())}`;
}

/** The parts of a snapshot: `${stage}|${encoding or '<consumed>'}|${every field}`. */
const encodingPart = (snap: string): string => snap.split('|', 2)[1] ?? '';
const dataPart = (snap: string): string => snap.slice(snap.indexOf('|', snap.indexOf('|') + 1) + 1);

/** Canonical snapshot of a client state: its encoding (encodeClientState) and every field of the state object. */
export function snapshotClient(s: ClientState): string {
  return `${s.stage}|${encodingOf(() => encodeClientState(s))}|${canon(s, new Set())}`;
}

// ---------------------------------------------------------------------------------------------
// Protocol-aware mutations
// ---------------------------------------------------------------------------------------------

/** X25519 public keys of small order (and non-canonical encodings of them). */
const LOW_ORDER_KEYS: readonly Uint8Array[] = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'cdeb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880',
].map((h) => Uint8Array.from(Buffer.from(h, 'hex')));

/** A hostile variant of a bytes field; `other` is the same field from another message, when there is one. */
function mutBytes(r: Prng, b: Uint8Array, other?: Uint8Array): Uint8Array {
  switch (r.below(10)) {
    case 0:
      return new Uint8Array(0);
    case 1:
      return b.subarray(0, Math.max(0, b.length - 1 - r.below(3)));
    case 2: {
      const out = new Uint8Array(b.length + 1 + r.below(3));
      out.set(b);
      return out;
    }
    case 3: {
      const out = b.slice();
      if (out.length > 0) out[r.below(out.length)]! ^= 1 << r.below(8);
      return out;
    }
    case 4:
      return new Uint8Array(b.length);
    case 5:
      return new Uint8Array(b.length).fill(0xff);
    case 6:
      return r.bytes(b.length);
    case 7:
      return other ?? r.bytes(b.length);
    case 8:
      return b.length === 32 ? r.pick(LOW_ORDER_KEYS) : r.bytes(r.below(80));
    default:
      return r.bytes(r.pick([16, 31, 32, 33, 63, 64, 65, 100]));
  }
}

const ODD_IDS = [0, 1, 2, 65535, 65536, 2 ** 21, 2 ** 32 - 1];

/** A hostile variant of an id list (ascending, from the cohort, normally). */
function mutIds(r: Prng, list: readonly number[], cohort: readonly number[], self: number): number[] {
  const l = list.slice();
  switch (r.below(9)) {
    case 0: // drop self
      return l.filter((x) => x !== self);
    case 1: // drop someone else
      if (l.length > 0) l.splice(r.below(l.length), 1);
      return l;
    case 2: // duplicate
      if (l.length > 0) {
        const i = r.below(l.length);
        l.splice(i, 0, l[i]!);
      }
      return l;
    case 3: // unsorted
      return l.reverse();
    case 4: // an outsider or an odd id
      l.push(r.chance(0.5) ? cohort.length + 1 + r.below(3) : r.pick(ODD_IDS));
      return r.chance(0.5) ? l.sort((a, b) => a - b) : l;
    case 5:
      return [];
    case 6: // the whole cohort
      return cohort.slice();
    case 7: // keep only a few
      return l.slice(0, 1 + r.below(Math.max(1, l.length - 1)));
    default:
      {
        // a member of the cohort that is not in the list
        const missing = cohort.filter((x) => !l.includes(x));
        if (missing.length > 0) l.push(r.pick(missing));
      }
      return l.sort((a, b) => a - b);
  }
}

/** Drop, duplicate, reorder or rewrite one entry of a repeated field. */
function mutList<T>(r: Prng, list: T[], rewrite: (x: T) => T, donor?: readonly T[]): T[] {
  const l = list.slice();
  switch (r.below(7)) {
    case 0:
      if (l.length > 0) l.splice(r.below(l.length), 1);
      return l;
    case 1:
      if (l.length > 0) {
        const i = r.below(l.length);
        l.splice(i + r.below(2), 0, l[i]!);
      }
      return l;
    case 2:
      return l.reverse();
    case 3:
      return l.slice(0, r.below(l.length + 1));
    case 4:
      return donor ? donor.slice() : [];
    default:
      if (l.length > 0) {
        const i = r.below(l.length);
        l[i] = rewrite(l[i]!);
      }
      return l;
  }
}

/** Another message of the same kind in the round (same body case), if any. */
function sameKind<M extends { body: { case: string | undefined } }>(r: Prng, pool: readonly M[], m: M): M | undefined {
  const xs = pool.filter((x) => x.body.case === m.body.case && x !== m);
  return xs.length > 0 ? r.pick(xs) : undefined;
}

/** A field-level mutation of an honest client message, re-encoded (the wire stays well formed). */
export function mutateClientFields(r: Prng, round: RoundCorpus, bytes: Uint8Array): { bytes: Uint8Array; how: string } {
  const m = fromBinary(ClientMessageSchema, bytes);
  const pool = round.decodedClient;
  const donor = sameKind(r, pool, m);
  const cohort = round.cohort;
  const self = m.sender;
  const someId = () => (r.chance(0.8) ? r.pick(cohort) : r.pick(ODD_IDS));
  let how = `field:${m.body.case}`;
  if (r.chance(0.12)) {
    switch (r.below(3)) {
      case 0:
        m.version = r.pick([0, 2, 3, 2 ** 32 - 1]);
        how = 'field:version';
        break;
      case 1:
        m.roundId = mutBytes(r, m.roundId);
        how = 'field:roundId';
        break;
      default:
        m.sender = someId();
        how = 'field:sender';
    }
    return { bytes: toBinary(ClientMessageSchema, m), how };
  }
  const b = m.body;
  const d = donor?.body;
  switch (b.case) {
    case 'advertiseKeys': {
      const v = b.value;
      const o = d?.case === 'advertiseKeys' ? d.value : undefined;
      const f = r.below(6);
      if (f === 0) v.encryptionPublicKey = mutBytes(r, v.encryptionPublicKey, o?.encryptionPublicKey);
      else if (f === 1) v.maskingPublicKey = mutBytes(r, v.maskingPublicKey, o?.maskingPublicKey);
      else if (f === 2) v.signature = mutBytes(r, v.signature, o?.signature);
      else if (f === 3) v.seedCommitment = mutBytes(r, v.seedCommitment, o?.seedCommitment);
      else if (f === 4)
        v.maskingPublicKey = v.encryptionPublicKey; // one key twice
      else v[r.chance(0.5) ? 'encryptionPublicKey' : 'maskingPublicKey'] = r.pick(LOW_ORDER_KEYS);
      how += `.${['ek', 'mk', 'sig', 'commit', 'same-key', 'low-order'][f]}`;
      break;
    }
    case 'viewSignature': {
      const v = b.value;
      const o = d?.case === 'viewSignature' ? d.value : undefined;
      const f = r.below(4);
      if (f === 0) v.signature = mutBytes(r, v.signature, o?.signature);
      else if (f === 1) v.seedReveal = mutBytes(r, v.seedReveal, o?.seedReveal);
      else if (f === 2) v.nextSeedCommitment = mutBytes(r, v.nextSeedCommitment, o?.nextSeedCommitment);
      else [v.seedReveal, v.nextSeedCommitment] = [v.nextSeedCommitment, v.seedReveal];
      break;
    }
    case 'shareKeys': {
      const v = b.value;
      const o = d?.case === 'shareKeys' ? d.value : undefined;
      if (r.chance(0.2)) v.selfMaskCommitment = mutBytes(r, v.selfMaskCommitment, o?.selfMaskCommitment);
      else
        v.shares = mutList(
          r,
          v.shares,
          (s) => (r.chance(0.5) ? { ...s, peer: r.chance(0.3) ? self : someId() } : { ...s, ciphertext: mutBytes(r, s.ciphertext) }),
          o?.shares,
        );
      break;
    }
    case 'maskedInput': {
      const v = b.value;
      const o = d?.case === 'maskedInput' ? d.value : undefined;
      if (r.chance(0.3) && v.vector.length > 0) {
        const x = v.vector.slice();
        x[x.length - 1 - r.below(Math.min(4, x.length))] = 0xff; // a top byte out of the ring (bits < 8k)
        v.vector = x;
      } else v.vector = mutBytes(r, v.vector, o?.vector);
      break;
    }
    case 'consistencySignature': {
      const o = d?.case === 'consistencySignature' ? d.value : undefined;
      b.value.signature = mutBytes(r, b.value.signature, o?.signature);
      break;
    }
    case 'unmaskResponse': {
      const v = b.value;
      const o = d?.case === 'unmaskResponse' ? d.value : undefined;
      const rewrite = (s: RevealedShare): RevealedShare =>
        r.chance(0.5) ? { ...s, owner: r.chance(0.3) ? self : someId() } : { ...s, share: mutBytes(r, s.share) };
      switch (r.below(6)) {
        case 0: // one share moved to the other kind
          if (v.selfMaskShares.length > 0 && (r.chance(0.5) || v.keyShares.length === 0)) v.keyShares.push(v.selfMaskShares.shift()!);
          else if (v.keyShares.length > 0) v.selfMaskShares.push(v.keyShares.shift()!);
          how += '.move';
          break;
        case 1: // both kinds of one owner
          if (v.selfMaskShares.length > 0) v.keyShares.push({ ...v.selfMaskShares[0]! });
          else if (v.keyShares.length > 0) v.selfMaskShares.push({ ...v.keyShares[0]! });
          how += '.both';
          break;
        case 2:
          [v.selfMaskShares, v.keyShares] = [v.keyShares, v.selfMaskShares];
          how += '.swap';
          break;
        case 3:
          v.selfMaskShares = mutList(r, v.selfMaskShares, rewrite, o?.selfMaskShares);
          how += '.self';
          break;
        default:
          v.keyShares = mutList(r, v.keyShares, rewrite, o?.keyShares);
          how += '.key';
      }
      break;
    }
    case 'abort':
      b.value.code = r.chance(0.5) ? r.pick(ERROR_CODES) : r.chance(0.5) ? '' : String.fromCharCode(...r.bytes(1 + r.below(90)));
      break;
    default:
      break;
  }
  return { bytes: toBinary(ClientMessageSchema, m), how };
}

/** A field-level mutation of an honest server message, re-encoded. `self` is the recipient. */
export function mutateServerFields(r: Prng, round: RoundCorpus, bytes: Uint8Array, self: number): { bytes: Uint8Array; how: string } {
  const m = fromBinary(ServerMessageSchema, bytes);
  const donor = sameKind(r, round.decodedServer, m);
  const cohort = round.cohort;
  const someId = () => (r.chance(0.8) ? r.pick(cohort) : r.pick(ODD_IDS));
  let how = `field:${m.body.case}`;
  if (r.chance(0.1)) {
    if (r.chance(0.5)) {
      m.version = r.pick([0, 2, 2 ** 32 - 1]);
      how = 'field:version';
    } else {
      m.roundId = mutBytes(r, m.roundId);
      how = 'field:roundId';
    }
    return { bytes: toBinary(ServerMessageSchema, m), how };
  }
  const b = m.body;
  const d = donor?.body;
  switch (b.case) {
    case 'roundStart': {
      const p = b.value;
      const f = r.below(9);
      how += `.${['bits', 'dimension', 'threshold', 'degree', 'mode', 'cohort', 'corruption', 'roundId', 'tweak'][f]}`;
      if (f === 0) p.bits = r.pick([0, 1, 8, 31, 32, 33, 2 ** 32 - 1]);
      else if (f === 1) p.dimension = r.pick([0, 1, p.dimension - 1, p.dimension + 1, 2 ** 28, 2 ** 32 - 1]);
      else if (f === 2) p.threshold = r.pick([0, 1, 2, p.threshold - 1, p.threshold + 1, cohort.length, cohort.length + 1, 2 ** 32 - 1]);
      else if (f === 3) p.degree = r.pick([0, 1, 2, 3, 4, 5, cohort.length - 1, cohort.length, cohort.length + 1, 2 ** 32 - 1]);
      else if (f === 4) p.mode = r.pick([0, 1, 2, 3, 99]) as typeof p.mode;
      else if (f === 5) p.cohort = mutIds(r, p.cohort, cohort, self);
      else if (f === 6) p.corruption = r.pick([1, 2, cohort.length, 2 ** 32 - 1]);
      else if (f === 7) p.roundId = mutBytes(r, p.roundId);
      else {
        p.threshold = Math.max(2, p.threshold - 1);
        p.degree = p.degree === 0 ? cohort.length - 2 : 0;
      }
      break;
    }
    case 'viewRequest': {
      const v = b.value;
      const f = r.below(4);
      if (f === 0) v.attempt = r.pick([0, v.attempt - 1, v.attempt + 1, 4, 2 ** 32 - 1]);
      else if (f === 1) v.advertised = mutIds(r, v.advertised, cohort, self);
      else if (f === 2) v.seedCommitments = mutList(r, v.seedCommitments, (h) => mutBytes(r, h));
      else {
        // Rewrite this client's own commitment, or drop a member with its commitment.
        const i = v.advertised.indexOf(self);
        if (r.chance(0.5) && i >= 0) v.seedCommitments[i] = mutBytes(r, v.seedCommitments[i]!);
        else if (v.advertised.length > 1) {
          const j = (i + 1) % v.advertised.length;
          v.advertised.splice(j, 1);
          v.seedCommitments.splice(j, 1);
        }
      }
      break;
    }
    case 'keys': {
      const v = b.value;
      const o = d?.case === 'keys' ? d.value : undefined;
      const f = r.below(7);
      how += `.${['seed', 'advertised', 'neighbours', 'neighbour-key', 'reveals', 'view-signatures', 'proof'][f]}`;
      if (f === 0) v.graphSeed = mutBytes(r, v.graphSeed, o?.graphSeed);
      else if (f === 1) v.advertised = mutIds(r, v.advertised, cohort, self);
      else if (f === 2) v.neighbours = mutList(r, v.neighbours, (x) => ({ ...x, client: someId() }), o?.neighbours);
      else if (f === 3) {
        if (v.neighbours.length > 0) {
          const i = r.below(v.neighbours.length);
          const x = { ...v.neighbours[i]! };
          const other = v.neighbours[(i + 1) % v.neighbours.length]!;
          const g = r.below(5);
          if (g === 0) x.encryptionPublicKey = mutBytes(r, x.encryptionPublicKey, other.encryptionPublicKey);
          else if (g === 1) x.maskingPublicKey = mutBytes(r, x.maskingPublicKey, other.maskingPublicKey);
          else if (g === 2) x.maskingPublicKey = x.encryptionPublicKey;
          else if (g === 3) x.signature = mutBytes(r, x.signature, other.signature);
          else x[r.chance(0.5) ? 'encryptionPublicKey' : 'maskingPublicKey'] = r.pick(LOW_ORDER_KEYS);
          v.neighbours[i] = x;
        }
      } else if (f === 4) {
        if (v.view) v.view.seedReveals = mutList(r, v.view.seedReveals, (x) => mutBytes(r, x));
        else v.view = { $typeName: 'secagg.v1.ViewProof', seedReveals: [r.bytes(32)], viewSignatures: [], memberKeys: [] };
      } else if (f === 5) {
        if (v.view && r.chance(0.7))
          v.view.viewSignatures = mutList(
            r,
            v.view.viewSignatures,
            (x) => (r.chance(0.5) ? { ...x, client: someId() } : { ...x, signature: mutBytes(r, x.signature) }),
            o?.view?.viewSignatures,
          );
        else if (v.view) v.view.memberKeys = mutList(r, v.view.memberKeys, (x) => mutBytes(r, x), o?.view?.memberKeys);
      } else v.view = r.chance(0.5) ? undefined : o?.view;
      break;
    }
    case 'shares': {
      const v = b.value;
      const o = d?.case === 'shares' ? d.value : undefined;
      v.shares = mutList(
        r,
        v.shares,
        (s) => (r.chance(0.4) ? { ...s, peer: r.chance(0.3) ? self : someId() } : { ...s, ciphertext: mutBytes(r, s.ciphertext) }),
        o?.shares,
      );
      break;
    }
    case 'consistencyRequest':
      b.value.survivors = mutIds(r, b.value.survivors, cohort, self);
      break;
    case 'unmaskRequest': {
      const v = b.value;
      if (r.chance(0.6) || v.signatures.length === 0) v.survivors = mutIds(r, v.survivors, cohort, self);
      else v.signatures = mutList(r, v.signatures, (s) => (r.chance(0.5) ? { ...s, client: someId() } : { ...s, signature: mutBytes(r, s.signature) }));
      break;
    }
    case 'aborted':
      b.value.code = r.chance(0.5) ? r.pick(ERROR_CODES) : String.fromCharCode(...r.bytes(r.below(70)));
      break;
    default:
      break;
  }
  return { bytes: toBinary(ServerMessageSchema, m), how };
}

/** The same message claimed by another sender (envelope rewritten). */
function withSender(bytes: Uint8Array, sender: number): Uint8Array {
  const m = cloneMessage(ClientMessageSchema, fromBinary(ClientMessageSchema, bytes));
  m.sender = sender;
  return toBinary(ClientMessageSchema, m);
}

const MUTATE_OPTIONS = { maxBytes: 1 << 13 } as const;

interface Input {
  readonly from: number;
  readonly bytes: Uint8Array;
  readonly how: string;
}

/** Who has answered the server's current stage (read from its state, for picking honest replies still due). */
function answered(s: ServerState): { has(u: number): boolean } {
  switch (s.stage) {
    case 'advertise':
      return s.advertised;
    case 'view':
      return s.view.answers;
    case 'share':
      return s.shared;
    case 'masked':
      return s.masked;
    case 'consistency':
      return s.signatures;
    case 'unmask':
      return s.responded;
    default:
      return new Set();
  }
}

/** A hostile input for a server in state `s` of `round`. */
function serverInput(r: Prng, c: RoundFuzzCorpus, round: RoundCorpus, s: ServerState): Input {
  const stage = s.stage;
  const attempt = s.stage === 'view' ? s.view.attempt : 1;
  const pool = round.replies.get(stage === 'view' && attempt > 1 ? `view#${attempt}` : stage) ?? [];
  if (r.chance(0.1)) {
    // An honest reply still due: stages then close on messages too, and chains go on to later stages.
    const done = answered(s);
    const quit = 'quit' in s ? s.quit : new Set<number>();
    const due = pool.filter((w) => !done.has(w.from) && !quit.has(w.from));
    if (due.length > 0) return { ...r.pick(due), how: 'honest-due' };
  }
  const any = round.clientMessages;
  const base: Wire = pool.length > 0 && r.chance(0.75) ? r.pick(pool) : r.pick(any);
  const cohort = round.cohort;
  let from = base.from;
  let bytes = base.bytes;
  let how: string;
  const roll = r.below(100);
  if (roll < 38) {
    const x = mutate(r, base.bytes, c.donors, MUTATE_OPTIONS);
    bytes = x.bytes;
    how = `mutate:${x.steps[0]}`;
  } else if (roll < 55) ({ bytes, how } = mutateClientFields(r, round, base.bytes));
  else if (roll < 60) how = 'honest';
  else if (roll < 66) {
    // The sender id swapped: the message of one client claimed by another (from its own connection, or the first's).
    const other = r.chance(0.85) ? r.pick(cohort) : r.pick(ODD_IDS);
    bytes = withSender(base.bytes, other);
    if (r.chance(0.7)) from = other;
    how = 'swap-sender';
  } else if (roll < 71) {
    from = r.pick(cohort);
    how = 'wrong-connection';
  } else if (roll < 76) {
    const other = any.filter((w) => w.stage !== stage);
    const w = r.pick(other.length > 0 ? other : any);
    ({ from, bytes } = w);
    how = 'other-stage';
  } else if (roll < 80) {
    const foreign = r.pick(c.rounds.filter((x) => x !== round));
    const w = r.pick(foreign.clientMessages);
    ({ from, bytes } = w);
    how = 'other-round';
  } else if (roll < 84) {
    from = r.pick(cohort);
    bytes = encodeClientMessage(round.roundId, from, { case: 'abort', value: { code: r.pick(ERROR_CODES) } });
    how = 'abort';
  } else if (roll < 89) {
    bytes = r.chance(0.3)
      ? Uint8Array.from([...base.bytes.subarray(0, 1 + r.below(24)), ...r.bytes(r.below(200))])
      : r.bytes(r.below(r.chance(0.9) ? 300 : 4000));
    how = 'random';
  } else if (roll < 95) {
    const w = r.pick(any);
    from = w.from;
    bytes = mutate(r, w.bytes, c.donors, MUTATE_OPTIONS).bytes;
    how = 'mutate-any';
  } else {
    const x = mutateClientFields(r, round, base.bytes);
    bytes = mutate(r, x.bytes, c.donors, { ...MUTATE_OPTIONS, maxSteps: 2 }).bytes;
    how = `${x.how}+mutate`;
  }
  if (r.chance(0.03)) {
    from = r.pick([0, -1, cohort.length + 1, 65535, 65536, 1.5, Number.NaN, 2 ** 32]);
    how += '@odd-from';
  }
  return { from, bytes, how };
}

/** A hostile input for a client at `stage` (the recipient is `self`). */
function clientInput(r: Prng, c: RoundFuzzCorpus, round: RoundCorpus, stage: ClientStage, self: number, own: Uint8Array | undefined): Input {
  const pool = round.serverMessages.get(stage) ?? [];
  const any = round.allServerMessages;
  const mine = own ?? pool.find((w) => w.from === self)?.bytes;
  const x = r.below(100);
  const base: Uint8Array = mine !== undefined && x < 60 ? mine : pool.length > 0 && x < 80 ? r.pick(pool).bytes : r.pick(any).bytes;
  let bytes = base;
  let how: string;
  const roll = r.below(100);
  if (roll < 38) {
    const m = mutate(r, base, c.donors, MUTATE_OPTIONS);
    bytes = m.bytes;
    how = `mutate:${m.steps[0]}`;
  } else if (roll < 58) ({ bytes, how } = mutateServerFields(r, round, base, self));
  else if (roll < 62) how = base === mine ? 'honest' : 'honest-for-another';
  else if (roll < 70) {
    bytes = r.pick(any).bytes;
    how = 'other-stage';
  } else if (roll < 75) {
    const foreign = r.pick(c.rounds.filter((x) => x !== round));
    bytes = r.pick(foreign.allServerMessages).bytes;
    how = 'other-round';
  } else if (roll < 78) {
    bytes = encodeServerMessage(round.roundId, { case: 'aborted', value: { code: r.pick(ERROR_CODES), reason: 'fuzz' } });
    how = 'aborted';
  } else if (roll < 84) {
    bytes = r.chance(0.3) ? Uint8Array.from([...base.subarray(0, 1 + r.below(24)), ...r.bytes(r.below(200))]) : r.bytes(r.below(r.chance(0.9) ? 300 : 4000));
    how = 'random';
  } else if (roll < 90) {
    bytes = mutate(r, r.pick(any).bytes, c.donors, MUTATE_OPTIONS).bytes;
    how = 'mutate-any';
  } else {
    const m = mutateServerFields(r, round, base, self);
    bytes = mutate(r, m.bytes, c.donors, { ...MUTATE_OPTIONS, maxSteps: 2 }).bytes;
    how = `${m.how}+mutate`;
  }
  return { from: self, bytes, how };
}

/** The input as the caller hands it over: a private copy (the caller may reuse it), sometimes a Buffer or an offset view. */
function delivered(r: Prng, bytes: Uint8Array): { bytes: Uint8Array; as: string } {
  const k = r.below(25);
  if (k === 0) return { bytes: Buffer.from(bytes), as: 'Buffer' };
  if (k === 1) {
    const big = new Uint8Array(bytes.length + 7);
    big.set(bytes, 3);
    return { bytes: big.subarray(3, 3 + bytes.length), as: 'offset view' };
  }
  return { bytes: bytes.slice(), as: 'Uint8Array' };
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

export interface Row {
  readonly handler: 'server' | 'deadline' | 'client';
  readonly stage: string;
  tried: number;
  accepted: number;
  refused: Record<string, number>;
  crashes: number;
  untyped: number;
  /** Server: state changed by a refused message. Client: ERR_ROUND_MISMATCH that changed the state. */
  stateChanges: number;
  /** Other broken contracts: wrong transitions, something sent on a refusal, a wrong sum, … */
  violations: number;
  /** Accepted inputs after which the state changed when the caller reused the input buffer. */
  aliasing: number;
  /** Client: refused messages that changed the previous state in place (it aborted, so the change is moot). */
  preMutated: number;
  /** Deadlines: outcome stages. */
  outcomes: Record<string, number>;
  /** Rounds that reached 'done' along honest inputs and whose sum was checked. */
  sumsChecked: number;
}

export type FailureKind = 'crash' | 'untyped' | 'state-change' | 'violation' | 'aliasing' | 'pre-mutated';

export interface Failure {
  readonly kind: FailureKind;
  readonly where: string;
  readonly batch: number;
  readonly index: number;
  readonly how: string;
  readonly from: number;
  readonly hex: string;
  readonly detail: string;
  /** The accepted inputs (or deadlines) applied to the captured state before this one. */
  readonly chain: readonly string[];
}

export interface RoundFuzzReport {
  readonly seed: number;
  inputs: number;
  batches: number;
  rows: Record<string, Row>;
  hows: Record<string, number>;
  failures: Failure[];
  /** Failures of each kind (the list keeps the first few). */
  failureCounts: Record<string, number>;
  /** Aliasing findings by handler, accepted kind, how the input was passed, and the first field that changed. */
  aliasingBy: Record<string, number>;
  /** Per corpus round (RoundSpec.name): inputs and deadlines tried, accepted, sums checked, unmask responses with excess noise accepted. */
  byRound: Record<string, RoundTally>;
  ms: number;
}

export interface RoundTally {
  inputs: number;
  accepted: number;
  sums: number;
  excess: number;
}

function byRound(rep: RoundFuzzReport, round: RoundCorpus): RoundTally {
  return (rep.byRound[round.spec.name] ??= { inputs: 0, accepted: 0, sums: 0, excess: 0 });
}

export interface RoundFuzzOptions {
  readonly inputs: number;
  readonly seed: number;
  /** Inputs per batch (one captured state per batch). Default 250. */
  readonly batchSize?: number;
  /** Run only these batches of the run (workers take every k-th; replays take one). */
  readonly batches?: (b: number) => boolean;
  readonly corpus?: RoundFuzzCorpus;
  /** Chance that an input is a deadline instead (server batches). Default 0.03. */
  readonly deadlineRate?: number;
  /** Failures kept per kind. Default 5. */
  readonly keep?: number;
  readonly onProgress?: (inputsDone: number) => void;
  /** The handlers under test (default the real ones; tests of the harness pass broken ones). */
  readonly handlers?: Partial<Handlers>;
}

export interface Handlers {
  readonly server: typeof handleServerMessage;
  readonly deadline: typeof handleServerDeadline;
  readonly client: typeof handleClientMessage;
}

const REAL_HANDLERS: Handlers = { server: handleServerMessage, deadline: handleServerDeadline, client: handleClientMessage };

const KNOWN_CODES = new Set<string>(ERROR_CODES);

/** null if `e` is a typed error; else why not, with the cause's stack. */
function untypedReason(e: unknown): string | null {
  if (!(e instanceof SecAggError)) return `not a SecAggError: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
  if (!KNOWN_CODES.has(e.code)) return `unknown code ${String(e.code)}`;
  if (e.code === 'ERR_INTERNAL' && !(e.cause instanceof SecAggError)) {
    const c = e.cause;
    return `ERR_INTERNAL (${e.message}) caused by ${c instanceof Error ? (c.stack ?? c.message) : String(c)}`;
  }
  return null;
}

const STAGE_KIND: Readonly<Partial<Record<ServerStage, string>>> = {
  advertise: 'advertiseKeys',
  view: 'viewSignature',
  share: 'shareKeys',
  masked: 'maskedInput',
  consistency: 'consistencySignature',
  unmask: 'unmaskResponse',
};

const SERVER_NEXT: Readonly<Record<Mode, Readonly<Partial<Record<ServerStage, readonly ServerStage[]>>>>> = {
  'semi-honest': { advertise: ['share'], share: ['masked'], masked: ['unmask'], unmask: ['done'] },
  active: { advertise: ['view'], view: ['view', 'share'], share: ['masked'], masked: ['consistency'], consistency: ['unmask'], unmask: ['done'] },
};

const CLIENT_NEXT: Readonly<Record<ClientStage, readonly ClientStage[]>> = {
  'awaiting-start': ['awaiting-view', 'awaiting-keys'],
  'awaiting-view': ['awaiting-keys'],
  'awaiting-keys': ['awaiting-shares', 'awaiting-keys'],
  'awaiting-shares': ['awaiting-consistency', 'awaiting-unmask'],
  'awaiting-consistency': ['awaiting-unmask'],
  'awaiting-unmask': ['done'],
  done: ['done'],
  aborted: [],
};

/** The kind a client sends when it moves from `before` to `after`. */
function replyKind(before: ClientStage, after: ClientStage): string | undefined {
  if (before === 'awaiting-start') return 'advertiseKeys';
  if (before === 'awaiting-view' || (before === 'awaiting-keys' && after === 'awaiting-keys')) return 'viewSignature';
  if (before === 'awaiting-keys') return 'shareKeys';
  if (before === 'awaiting-shares') return 'maskedInput';
  if (before === 'awaiting-consistency') return 'consistencySignature';
  if (before === 'awaiting-unmask' || before === 'done') return 'unmaskResponse';
  return undefined;
}

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

function mixSeed(seed: number, b: number): number {
  let h = Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) ^ Math.imul(b + 1, 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 13)) >>> 0;
}

/** (handler, stage) keys a batch is drawn for, round-robin; 'done' server states weigh less. */
function targetKeys(c: RoundFuzzCorpus): string[] {
  const keys = new Set<string>();
  for (const p of c.serverPoints) keys.add(`server ${p.state.stage}`);
  for (const p of c.clientPoints) keys.add(`client ${p.state.stage}`);
  const out: string[] = [];
  for (const k of [...keys].sort()) for (let i = 0; i < (k === 'server done' ? 1 : 4); i++) out.push(k);
  // Interleave so that consecutive batches visit different keys.
  const order: string[] = [];
  const stride = 5;
  for (let s = 0; s < stride; s++) for (let i = s; i < out.length; i += stride) order.push(out[i]!);
  return order;
}

export function emptyReport(seed: number): RoundFuzzReport {
  return { seed, inputs: 0, batches: 0, rows: {}, hows: {}, failures: [], failureCounts: {}, aliasingBy: {}, byRound: {}, ms: 0 };
}

function row(rep: RoundFuzzReport, handler: Row['handler'], stage: string): Row {
  const key = `${handler} ${stage}`;
  return (rep.rows[key] ??= {
    handler,
    stage,
    tried: 0,
    accepted: 0,
    refused: {},
    crashes: 0,
    untyped: 0,
    stateChanges: 0,
    violations: 0,
    aliasing: 0,
    preMutated: 0,
    outcomes: {},
    sumsChecked: 0,
  });
}

class BatchContext {
  chain: string[] = [];
  constructor(
    readonly rep: RoundFuzzReport,
    readonly keep: number,
    readonly batch: number,
    readonly where: string,
  ) {}
  fail(kind: FailureKind, index: number, input: Input | undefined, detail: string): void {
    this.rep.failureCounts[kind] = (this.rep.failureCounts[kind] ?? 0) + 1;
    if (this.rep.failures.filter((f) => f.kind === kind).length >= (kind === 'aliasing' ? Math.min(2, this.keep) : this.keep)) return;
    const h = input ? hex(input.bytes) : '';
    this.rep.failures.push({
      kind,
      where: this.where,
      batch: this.batch,
      index,
      how: input?.how ?? 'deadline',
      from: input?.from ?? 0,
      hex: h.length > 2048 ? `${h.slice(0, 2048)}…(${input!.bytes.length} bytes)` : h,
      detail,
      chain: this.chain.slice(),
    });
  }
}

/**
 * Invariants of a server state, read from its internals independently of how it got there: every
 * set of the round inside the one before it, shares only ever of one kind per owner (self-mask
 * shares of U3, key shares of U2 \ U3), from holders that answered and are the owner's neighbours.
 */
export function serverInvariants(s: ServerState): string | undefined {
  if (s.stage === 'done') {
    const inc = s.result.included;
    if (inc.join() !== s.result.sets.masked.join()) return `the result includes ${inc.join()} where U3 is ${s.result.sets.masked.join()}`;
    for (const u of inc) if (!s.config.cohort.includes(u)) return `the result includes ${u}, not in the cohort`;
    return undefined;
  }
  if (s.stage === 'aborted') return undefined;
  const it = flat(s);
  const inCohort = (what: string, xs: Iterable<number>) => {
    for (const u of xs) if (!it.cohort.has(u)) return `${what} ${u} is not in the cohort`;
    return undefined;
  };
  const why = inCohort('advertised', it.advertised.keys()) ?? inCohort('quit', it.quit);
  if (why) return why;
  if (it.view) {
    for (const u of it.view.members) if (!it.advertised.has(u)) return `view member ${u} did not advertise`;
    for (const u of it.view.answers.keys()) if (!it.view.members.has(u)) return `view answer from ${u}, not a member`;
  }
  const g = it.graph;
  if (g) {
    for (const u of g.clients) if (!it.advertised.has(u)) return `graph member ${u} did not advertise`;
    for (const [u, sh] of it.shared) {
      if (!g.has(u)) return `shares from ${u}, not in U1`;
      for (const v of sh.ciphertexts.keys()) if (!g.isNeighbour(u, v)) return `ciphertext from ${u} for ${v}, not a neighbour`;
    }
  } else if (it.shared.size > 0) return 'shares before the graph';
  if (it.u2set) for (const u of it.u2set) if (!it.shared.has(u)) return `U2 member ${u} did not share`;
  for (const u of it.masked) if (!it.u2set?.has(u)) return `masked input from ${u}, not in U2`;
  if (it.u3set) for (const u of it.u3set) if (!it.masked.has(u)) return `U3 member ${u} sent no masked input`;
  for (const u of it.signatures.keys()) if (!it.u3set?.has(u)) return `signature from ${u}, not in U3`;
  const asked = it.u4set;
  for (const u of it.responded) if (!asked?.has(u)) return `unmask response from ${u}, who was not asked`;
  for (const [owner, got] of it.selfShares) {
    if (!it.u3set?.has(owner)) return `self-mask shares of ${owner}, not in U3`;
    if (it.keyShares.has(owner)) return `the server holds both kinds of share of ${owner}`;
    if (new Set(got.holders).size !== got.holders.length) return `two self-mask shares of ${owner} from one holder`;
    for (const h of got.holders) if (!it.responded.has(h) || !g?.isNeighbour(h, owner)) return `self-mask share of ${owner} from ${h}`;
  }
  for (const [owner, got] of it.keyShares) {
    if (!it.u2set?.has(owner) || it.u3set?.has(owner)) return `key shares of ${owner}, not in U2 \\ U3`;
    if (new Set(got.holders).size !== got.holders.length) return `two key shares of ${owner} from one holder`;
    for (const h of got.holders) if (!it.responded.has(h) || !g?.isNeighbour(h, owner)) return `key share of ${owner} from ${h}`;
  }
  return undefined;
}

/** Every field a running server state can have, empty where its stage has none yet: for the invariants. */
function flat(s: Exclude<ServerState, { stage: 'done' | 'aborted' }>) {
  const none = new Map<number, never>();
  return {
    cohort: new Set<number>(s.config.cohort),
    advertised: s.advertised,
    quit: s.quit,
    view: 'view' in s ? s.view : undefined,
    graph: 'u1' in s ? graphOf(s) : undefined,
    shared: 'shared' in s ? s.shared : none,
    u2set: 'u2set' in s ? s.u2set : undefined,
    masked: 'masked' in s ? s.masked : new Set<number>(),
    u3set: 'u3set' in s ? s.u3set : undefined,
    signatures: 'signatures' in s ? s.signatures : none,
    u4set: s.stage === 'unmask' ? s.askedToUnmask : undefined,
    responded: s.stage === 'unmask' ? s.responded : new Set<number>(),
    selfShares: s.stage === 'unmask' ? s.selfShares : none,
    keyShares: s.stage === 'unmask' ? s.keyShares : none,
  };
}

/** Chance that a chain (a state reached by accepted inputs) goes back to the captured state before the next input. */
const CHAIN_END = 0.08;

const describeInput = (x: Input): string => `${x.how} from ${x.from}: ${hex(x.bytes)}`;

async function serverBatch(
  c: RoundFuzzCorpus,
  point: ServerPoint,
  r: Prng,
  size: number,
  ctx: BatchContext,
  deadlineRate: number,
  stateSeed: number,
  h: Handlers,
): Promise<void> {
  const round = point.round;
  const mode = round.spec.mode;
  const cohort = new Set(round.cohort);
  let cur = cloneServerState(point.state);
  let sctx: ServerContext = { ...round.serverCtx, rng: unsafeSeededRng(stateSeed + 0.5) };
  let curSnap = point.snapshot;
  let depth = 0;
  let tainted = false;
  let prev: Input | undefined;
  /** DP rounds: the excess of each unmask response accepted along the current chain, by sender. */
  const chainExcess = new Map<number, Uint32Array>();
  const reset = () => {
    cur = cloneServerState(point.state);
    sctx = { ...round.serverCtx, rng: unsafeSeededRng(stateSeed + depth + 1.5) };
    curSnap = point.snapshot;
    depth = 0;
    tainted = false;
    chainExcess.clear();
    ctx.chain = [];
  };
  const advance = (next: ServerState, snap: string, what: string) => {
    if (next.stage !== 'done' && next.stage !== 'aborted' && depth < 12 && r.chance(0.75)) {
      cur = next;
      curSnap = snap;
      depth++;
      ctx.chain.push(what);
    } else reset();
  };
  for (let i = 0; i < size; i++) {
    if (depth > 0 && r.chance(CHAIN_END)) reset();
    const before = cur.stage;
    if (r.chance(deadlineRate)) {
      // A deadline: the stage closes with whoever answered.
      const dl = row(ctx.rep, 'deadline', before);
      dl.tried++;
      byRound(ctx.rep, round).inputs++;
      ctx.rep.hows.deadline = (ctx.rep.hows.deadline ?? 0) + 1;
      let step;
      try {
        step = await h.deadline(sctx, cur);
      } catch (e) {
        dl.crashes++;
        ctx.fail('crash', i, undefined, `handleServerDeadline threw at ${before}: ${e instanceof Error ? e.stack : String(e)}`);
        reset();
        continue;
      }
      const after = step.state.stage;
      dl.outcomes[after] = (dl.outcomes[after] ?? 0) + 1;
      const allowed = SERVER_NEXT[mode][before] ?? [];
      let bad: string | undefined;
      if (before === 'done' || before === 'aborted') {
        if (after !== before || step.outgoing.length > 0 || snapshotServer(step.state) !== curSnap) bad = `a deadline changed a ${before} round`;
      } else if (after !== 'aborted' && !allowed.includes(after)) bad = `deadline at ${before} moved to ${after}`;
      for (const o of step.outgoing) if (!cohort.has(o.to)) bad ??= `deadline sent to ${o.to}, not in the cohort`;
      if (after === 'aborted') {
        const why = untypedReason(step.state.abortError);
        if (why !== null) {
          dl.untyped++;
          ctx.fail('untyped', i, undefined, `deadline at ${before} aborted with ${why}`);
        }
      }
      if (after === 'done' && before !== 'done') {
        const res = step.state.result;
        if (!res) bad ??= 'done without a result';
        else if (!tainted) {
          dl.sumsChecked++;
          byRound(ctx.rep, round).sums++;
          const want = expectedRelease(round, res, chainExcess);
          if (!bytesEqual(new Uint8Array(res.sum.buffer), new Uint8Array(want.buffer)))
            bad ??= `wrong sum over ${res.included.join(',')}: ${res.sum.join(',')} != ${want.join(',')}`;
        }
      }
      bad ??= serverInvariants(step.state);
      if (after === 'done' && (step.state.result?.badShareHolders.length ?? 0) > 0)
        dl.outcomes['done with bad holders named'] = (dl.outcomes['done with bad holders named'] ?? 0) + 1;
      if (bad !== undefined) {
        dl.violations++;
        ctx.fail('violation', i, undefined, bad);
      }
      advance(step.state, snapshotServer(step.state), 'deadline');
      prev = undefined;
      continue;
    }
    const input = prev !== undefined && r.chance(0.05) ? { ...prev, how: `duplicate:${prev.how}` } : serverInput(r, c, round, cur);
    prev = input;
    ctx.rep.hows[input.how.split(/[.:@+]/)[0]!] = (ctx.rep.hows[input.how.split(/[.:@+]/)[0]!] ?? 0) + 1;
    const st = row(ctx.rep, 'server', before);
    st.tried++;
    byRound(ctx.rep, round).inputs++;
    const { bytes, as } = delivered(r, input.bytes);
    let step;
    try {
      step = await h.server(sctx, cur, input.from, bytes);
    } catch (e) {
      st.crashes++;
      ctx.fail('crash', i, input, `handleServerMessage threw at ${before}: ${e instanceof Error ? e.stack : String(e)}`);
      reset();
      continue;
    }
    if (step.error !== undefined) {
      const code = String((step.error as { code?: unknown }).code);
      st.refused[code] = (st.refused[code] ?? 0) + 1;
      const why = untypedReason(step.error);
      if (why !== null) {
        st.untyped++;
        ctx.fail('untyped', i, input, `refused at ${before} with ${why}`);
      }
      let changed: string | undefined;
      if (step.outgoing.length > 0) changed = `a refusal sent ${step.outgoing.length} messages`;
      const snap = snapshotServer(step.state);
      if (snap !== curSnap) changed ??= `state changed: ${firstDifference(curSnap, snap)}`;
      else if (step.state !== cur && snapshotServer(cur) !== curSnap) changed ??= `the input state changed: ${firstDifference(curSnap, snapshotServer(cur))}`;
      if (changed !== undefined) {
        st.stateChanges++;
        ctx.fail('state-change', i, input, `${code} at ${before}: ${step.error.message}; ${changed}`);
        reset();
      }
      continue;
    }
    // Accepted.
    st.accepted++;
    byRound(ctx.rep, round).accepted++;
    const next = step.state;
    const after = next.stage;
    let bad: string | undefined;
    if (after !== before && after !== 'aborted' && !(SERVER_NEXT[mode][before] ?? []).includes(after)) bad = `an accepted message moved ${before} to ${after}`;
    if (after === before && before !== 'view' && step.outgoing.length > 0)
      bad ??= `an accepted message sent ${step.outgoing.length} messages without closing ${before}`;
    for (const o of step.outgoing) if (!cohort.has(o.to)) bad ??= `sent to ${o.to}, not in the cohort`;
    if (after === 'aborted') {
      const why = untypedReason(next.abortError);
      if (why !== null) {
        st.untyped++;
        ctx.fail('untyped', i, input, `accepted at ${before}, then aborted with ${why}`);
      }
    }
    const honest = round.honest.has(`${input.from}|${hex(input.bytes)}`);
    // What was accepted, read independently of the code under test: from a cohort member on its own
    // connection, for this round, of the stage's kind or an abort.
    let kind: string | undefined;
    try {
      const m = fromBinary(ClientMessageSchema, input.bytes);
      kind = m.body.case;
      if (m.sender !== input.from || !cohort.has(input.from)) bad ??= `accepted a message of sender ${m.sender} on the connection of ${input.from}`;
      if (!bytesEqual(m.roundId, round.roundId)) bad ??= 'accepted a message for another round';
      if (kind !== 'abort' && kind !== STAGE_KIND[before]) bad ??= `accepted ${kind} at ${before}`;
    } catch {
      kind = undefined;
      bad ??= 'accepted a message protobuf-es does not decode';
    }
    if (!honest && kind !== 'abort' && before !== 'unmask') tainted = true;
    // A DP round: the excess this accepted unmask response carried comes off the sum (the server
    // cannot check it: it is the client's secret), so the expected release follows what was accepted.
    if (kind === 'unmaskResponse' && before === 'unmask' && round.spec.dp !== undefined) {
      const e = excessOf(round, input.bytes);
      if (e !== undefined) {
        chainExcess.set(input.from, e);
        byRound(ctx.rep, round).excess++;
      } else chainExcess.delete(input.from);
    }
    if (after === 'done') {
      const res = next.result;
      if (!res) bad ??= 'done without a result';
      else if (!tainted) {
        st.sumsChecked++;
        byRound(ctx.rep, round).sums++;
        const want = expectedRelease(round, res, chainExcess);
        if (!bytesEqual(new Uint8Array(res.sum.buffer), new Uint8Array(want.buffer)))
          bad ??= `wrong sum over ${res.included.join(',')}: ${res.sum.join(',')} != ${want.join(',')}`;
      }
    }
    bad ??= serverInvariants(next);
    if (bad !== undefined) {
      st.violations++;
      ctx.fail('violation', i, input, bad);
    }
    // The caller may reuse its buffer once the handler returned: the state must not change with it.
    const s1 = snapshotServer(next);
    bytes.fill(0x5a);
    const s2 = snapshotServer(next);
    if (s1 !== s2) {
      st.aliasing++;
      tallyAliasing(ctx.rep, `handleServerMessage ${kind ?? '?'} as ${as}: ${changedField(s1, s2)}`);
      ctx.fail(
        'aliasing',
        i,
        input,
        `${kind ?? '?'} (as ${as}) accepted at ${before}: the state changed when the input buffer was overwritten: ${firstDifference(s1, s2)}`,
      );
    }
    advance(next, s2, describeInput(input));
  }
  if (snapshotServer(point.state) !== point.snapshot)
    throw new Error(`harness: captured server state ${point.round.spec.name} ${point.label} changed (a copy shares mutable state)`);
}

async function clientBatch(c: RoundFuzzCorpus, point: ClientPoint, r: Prng, size: number, ctx: BatchContext, stateSeed: number, h: Handlers): Promise<void> {
  const round = point.round;
  const base = round.clientCtx.get(point.id)!;
  let cur = cloneClientState(point.state);
  let cctx: ClientContext = { ...base, rng: unsafeSeededRng(stateSeed + 0.25) };
  let curSnap = point.snapshot;
  let own: Uint8Array | undefined = point.message;
  let depth = 0;
  let prev: Input | undefined;
  const reset = () => {
    cur = cloneClientState(point.state);
    cctx = { ...base, rng: unsafeSeededRng(stateSeed + depth + 1.25) };
    curSnap = point.snapshot;
    own = point.message;
    depth = 0;
    ctx.chain = [];
  };
  for (let i = 0; i < size; i++) {
    if (depth > 0 && r.chance(CHAIN_END)) reset();
    const before = cur.stage;
    const input = prev !== undefined && r.chance(0.05) ? { ...prev, how: `duplicate:${prev.how}` } : clientInput(r, c, round, before, point.id, own);
    prev = input;
    const hk = input.how.split(/[.:@+]/)[0]!;
    ctx.rep.hows[`client ${hk}`] = (ctx.rep.hows[`client ${hk}`] ?? 0) + 1;
    const st = row(ctx.rep, 'client', before);
    st.tried++;
    byRound(ctx.rep, round).inputs++;
    const { bytes, as } = delivered(r, input.bytes);
    const revealedBefore = new Map('revealed' in cur ? cur.revealed : []);
    let step;
    try {
      step = await h.client(cctx, cur, bytes);
    } catch (e) {
      st.crashes++;
      ctx.fail('crash', i, input, `handleClientMessage threw at ${before}: ${e instanceof Error ? e.stack : String(e)}`);
      reset();
      continue;
    }
    if (step.error !== undefined) {
      const code = String((step.error as { code?: unknown }).code);
      st.refused[code] = (st.refused[code] ?? 0) + 1;
      const why = untypedReason(step.error);
      if (why !== null) {
        st.untyped++;
        ctx.fail('untyped', i, input, `refused at ${before} with ${why}`);
      }
      if (code === 'ERR_ROUND_MISMATCH') {
        const snap = snapshotClient(step.state);
        if (step.outgoing !== null || snap !== curSnap) {
          st.stateChanges++;
          ctx.fail(
            'state-change',
            i,
            input,
            `ERR_ROUND_MISMATCH at ${before} ${step.outgoing !== null ? 'sent a reply' : `changed the state: ${firstDifference(curSnap, snap)}`}`,
          );
          reset();
        }
        continue;
      }
      let bad: string | undefined;
      if (step.state.stage !== 'aborted') bad = `refused with ${code} at ${before} but went to ${step.state.stage}`;
      else if (step.state.abortCode !== code) bad = `aborted with ${step.state.abortCode}, refused with ${code}`;
      else if (cur.config === undefined) {
        if (step.outgoing !== null) bad = `refused before the round started, and sent ${hex(step.outgoing)}`;
      } else if (step.outgoing === null) bad = `refused at ${before} without telling the server`;
      else {
        try {
          const out = fromBinary(ClientMessageSchema, step.outgoing);
          if (out.body.case !== 'abort') bad = `refused at ${before}, and sent ${out.body.case}`;
          else if (out.body.value.code !== code) bad = `abort message with ${out.body.value.code}, refused with ${code}`;
          else if (out.sender !== point.id || !bytesEqual(out.roundId, cur.config.roundId)) bad = 'abort message with the wrong envelope';
        } catch (e) {
          bad = `the abort message does not decode: ${String(e)}`;
        }
      }
      if (bad !== undefined) {
        st.violations++;
        ctx.fail('violation', i, input, bad);
      }
      // A refusal that aborts hands back a new (aborted) state and consumes the previous one: that
      // one must then be marked consumed (refused if used again) with its data untouched; a refusal
      // that hands the same state back must leave it exactly as it was.
      const pre = snapshotClient(cur);
      const consumed = step.state !== cur;
      const wrong = consumed ? encodingPart(pre) !== '<consumed>' || dataPart(pre) !== dataPart(curSnap) : pre !== curSnap;
      if (wrong) {
        st.preMutated++;
        ctx.fail(
          'pre-mutated',
          i,
          input,
          `${code} at ${before}: the previous state ${consumed ? 'is not marked consumed, or its data changed' : 'changed in place'}: ${firstDifference(curSnap, pre)}`,
        );
        reset();
      } else if (consumed) reset(); // the client aborted: go on from a fresh copy
      continue;
    }
    // Accepted.
    st.accepted++;
    byRound(ctx.rep, round).accepted++;
    const next = step.state;
    const after = next.stage;
    let bad: string | undefined;
    let inKind: string | undefined;
    try {
      const m = fromBinary(ServerMessageSchema, input.bytes);
      inKind = m.body.case;
      // (Before RoundStart a client knows no round id: an abort of any round ends its wait.)
      const roundId = cur.config?.roundId ?? (m.body.case === 'roundStart' ? m.body.value.roundId : m.roundId);
      if (!bytesEqual(m.roundId, roundId)) bad = 'accepted a message for another round';
    } catch {
      inKind = undefined;
      bad = 'accepted a message protobuf-es does not decode';
    }
    if (bad !== undefined) {
      // reported below
    } else if (after === 'aborted') {
      if (inKind !== 'aborted') bad = `accepted ${inKind ?? 'an undecodable message'} at ${before} and aborted without an error`;
      else if (step.outgoing !== null) bad = 'answered the server’s abort';
    } else if (!CLIENT_NEXT[before].includes(after)) bad = `an accepted message moved ${before} to ${after}`;
    else if (step.outgoing === null) bad = `accepted at ${before} without a reply`;
    else {
      try {
        const out = fromBinary(ClientMessageSchema, step.outgoing);
        const want = replyKind(before, after);
        if (out.body.case !== want) bad = `replied ${out.body.case} at ${before} → ${after}, expected ${want}`;
        else if (out.sender !== point.id || !bytesEqual(out.roundId, next.config!.roundId)) bad = 'reply with the wrong envelope';
        else if (out.body.case === 'unmaskResponse') {
          const self = new Set(out.body.value.selfMaskShares.map((s) => s.owner));
          for (const k of out.body.value.keyShares) if (self.has(k.owner)) bad ??= `both shares of ${k.owner} in one response`;
          for (const s of out.body.value.selfMaskShares) if (revealedBefore.get(s.owner) === 'key') bad ??= `self share of ${s.owner} after its key share`;
          for (const s of out.body.value.keyShares) if (revealedBefore.get(s.owner) === 'self') bad ??= `key share of ${s.owner} after its self share`;
        }
      } catch (e) {
        bad = `the reply does not decode: ${String(e)}`;
      }
    }
    if (bad !== undefined) {
      st.violations++;
      ctx.fail('violation', i, input, bad);
    }
    const s1 = snapshotClient(next);
    bytes.fill(0x5a);
    const s2 = snapshotClient(next);
    if (s1 !== s2) {
      st.aliasing++;
      tallyAliasing(ctx.rep, `handleClientMessage ${inKind ?? '?'} as ${as}: ${changedField(s1, s2)}`);
      ctx.fail(
        'aliasing',
        i,
        input,
        `${inKind ?? '?'} (as ${as}) accepted at ${before}: the state changed when the input buffer was overwritten: ${firstDifference(s1, s2)}`,
      );
    }
    if (after !== 'aborted' && depth < 4 && r.chance(0.5)) {
      cur = next;
      curSnap = s2;
      own = undefined; // the honest message for the next stage, if this client gets one
      depth++;
      ctx.chain.push(describeInput(input));
    } else reset();
  }
  if (snapshotClient(point.state) !== point.snapshot)
    throw new Error(`harness: captured client state ${point.round.spec.name} ${point.id} changed (a copy shares mutable state)`);
}

/** The innermost field name before the first difference of two snapshots. */
function changedField(a: string, b: string): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const keys = [...a.slice(0, i).matchAll(/([A-Za-z]{2,}):/g)];
  return keys.length > 0 ? keys[keys.length - 1]![1]! : '?';
}

function tallyAliasing(rep: RoundFuzzReport, key: string): void {
  rep.aliasingBy[key] = (rep.aliasingBy[key] ?? 0) + 1;
}

/** Where two snapshots first differ, with some context. */
export function firstDifference(a: string, b: string): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const from = Math.max(0, a.lastIndexOf(';', i - 1) - 80);
  return `at ${i}: …${a.slice(from, i + 80)}… → …${b.slice(from, i + 80)}…`;
}

/** Runs `inputs` inputs (or the selected batches of such a run). */
export async function runRoundFuzz(o: RoundFuzzOptions): Promise<RoundFuzzReport> {
  const started = performance.now();
  const c = o.corpus ?? (await buildRoundCorpus());
  const rep = emptyReport(o.seed);
  const size = o.batchSize ?? 250;
  const keys = targetKeys(c);
  const batches = Math.ceil(o.inputs / size);
  const keep = o.keep ?? 5;
  const handlers: Handlers = { ...REAL_HANDLERS, ...o.handlers };
  for (let b = 0; b < batches; b++) {
    if (o.batches && !o.batches(b)) continue;
    const n = Math.min(size, o.inputs - b * size);
    const bseed = mixSeed(o.seed, b);
    const r = new Prng(bseed);
    const key = keys[(b + (o.seed % keys.length)) % keys.length]!;
    const [handler, stage] = key.split(' ') as [string, string];
    if (handler === 'server') {
      const point = r.pick(c.serverPoints.filter((p) => p.state.stage === stage));
      const ctx = new BatchContext(rep, keep, b, `server ${point.round.spec.name} ${point.label}`);
      await serverBatch(c, point, r, n, ctx, o.deadlineRate ?? 0.03, bseed, handlers);
    } else {
      const point = r.pick(c.clientPoints.filter((p) => p.state.stage === stage));
      const ctx = new BatchContext(rep, keep, b, `client ${point.round.spec.name} #${point.id} ${stage}`);
      await clientBatch(c, point, r, n, ctx, bseed, handlers);
    }
    rep.inputs += n;
    rep.batches++;
    o.onProgress?.(rep.inputs);
  }
  rep.ms = performance.now() - started;
  return rep;
}

/** Adds `b` into `a` (worker reports into one). */
export function mergeReports(a: RoundFuzzReport, b: RoundFuzzReport, keep = 5): RoundFuzzReport {
  a.inputs += b.inputs;
  a.batches += b.batches;
  a.ms = Math.max(a.ms, b.ms);
  for (const [k, x] of Object.entries(b.hows)) a.hows[k] = (a.hows[k] ?? 0) + x;
  for (const [k, x] of Object.entries(b.failureCounts)) a.failureCounts[k] = (a.failureCounts[k] ?? 0) + x;
  for (const [k, x] of Object.entries(b.aliasingBy)) a.aliasingBy[k] = (a.aliasingBy[k] ?? 0) + x;
  for (const [k, x] of Object.entries(b.byRound)) {
    const y = (a.byRound[k] ??= { inputs: 0, accepted: 0, sums: 0, excess: 0 });
    y.inputs += x.inputs;
    y.accepted += x.accepted;
    y.sums += x.sums;
    y.excess += x.excess;
  }
  for (const f of b.failures) if (a.failures.filter((g) => g.kind === f.kind).length < (f.kind === 'aliasing' ? Math.min(2, keep) : keep)) a.failures.push(f);
  for (const [k, x] of Object.entries(b.rows)) {
    const y = (a.rows[k] ??= {
      ...x,
      refused: {},
      outcomes: {},
      tried: 0,
      accepted: 0,
      crashes: 0,
      untyped: 0,
      stateChanges: 0,
      violations: 0,
      aliasing: 0,
      preMutated: 0,
      sumsChecked: 0,
    });
    y.tried += x.tried;
    y.accepted += x.accepted;
    y.crashes += x.crashes;
    y.untyped += x.untyped;
    y.stateChanges += x.stateChanges;
    y.violations += x.violations;
    y.aliasing += x.aliasing;
    y.preMutated += x.preMutated;
    y.sumsChecked += x.sumsChecked;
    for (const [c, n] of Object.entries(x.refused)) y.refused[c] = (y.refused[c] ?? 0) + n;
    for (const [c, n] of Object.entries(x.outcomes)) y.outcomes[c] = (y.outcomes[c] ?? 0) + n;
  }
  return a;
}

/** Inputs that must be zero for a run to pass. */
export function badCount(rep: RoundFuzzReport): { crashes: number; untyped: number; stateChanges: number; violations: number } {
  const rows = Object.values(rep.rows);
  const sum = (f: (r: Row) => number) => rows.reduce((a, r) => a + f(r), 0);
  return { crashes: sum((r) => r.crashes), untyped: sum((r) => r.untyped), stateChanges: sum((r) => r.stateChanges), violations: sum((r) => r.violations) };
}

const SERVER_ORDER: readonly string[] = [...STAGES, 'done', 'aborted'];
const CLIENT_ORDER = ['awaiting-start', 'awaiting-view', 'awaiting-keys', 'awaiting-shares', 'awaiting-consistency', 'awaiting-unmask', 'done', 'aborted'];

function sortedRows(rep: RoundFuzzReport): Row[] {
  const rank = (r: Row) =>
    (r.handler === 'server' ? 0 : r.handler === 'deadline' ? 100 : 200) + (r.handler === 'client' ? CLIENT_ORDER : SERVER_ORDER).indexOf(r.stage);
  return Object.values(rep.rows).sort((a, b) => rank(a) - rank(b));
}

/** The summary table. */
export function formatRoundReport(rep: RoundFuzzReport): string {
  const lines: string[] = [];
  const pad = (s: string | number, n: number) => String(s).padStart(n);
  const head = `${'handler / stage'.padEnd(34)}${pad('inputs', 9)}${pad('accepted', 10)}${pad('refused', 9)}${pad('crashes', 9)}${pad('untyped', 9)}${pad('changed', 9)}${pad('other', 7)}${pad('alias', 7)}${pad('sums', 6)}`;
  lines.push(head, '-'.repeat(head.length));
  const total = { tried: 0, accepted: 0, refused: 0, crashes: 0, untyped: 0, stateChanges: 0, violations: 0, aliasing: 0, sums: 0 };
  for (const r of sortedRows(rep)) {
    const refused = Object.values(r.refused).reduce((a, b) => a + b, 0);
    const name =
      r.handler === 'server'
        ? `handleServerMessage ${r.stage}`
        : r.handler === 'deadline'
          ? `handleServerDeadline ${r.stage}`
          : `handleClientMessage ${r.stage}`;
    const acc = r.handler === 'deadline' ? '' : r.accepted;
    lines.push(
      `${name.padEnd(34)}${pad(r.tried, 9)}${pad(acc, 10)}${pad(r.handler === 'deadline' ? '' : refused, 9)}${pad(r.crashes, 9)}${pad(r.untyped, 9)}${pad(r.stateChanges, 9)}${pad(r.violations, 7)}${pad(r.aliasing, 7)}${pad(r.sumsChecked, 6)}`,
    );
    total.tried += r.tried;
    total.accepted += r.handler === 'deadline' ? 0 : r.accepted;
    total.refused += refused;
    total.crashes += r.crashes;
    total.untyped += r.untyped;
    total.stateChanges += r.stateChanges;
    total.violations += r.violations;
    total.aliasing += r.aliasing;
    total.sums += r.sumsChecked;
  }
  lines.push('-'.repeat(head.length));
  lines.push(
    `${'total'.padEnd(34)}${pad(total.tried, 9)}${pad(total.accepted, 10)}${pad(total.refused, 9)}${pad(total.crashes, 9)}${pad(total.untyped, 9)}${pad(total.stateChanges, 9)}${pad(total.violations, 7)}${pad(total.aliasing, 7)}${pad(total.sums, 6)}`,
  );
  lines.push('');
  lines.push('changed: server state changed by a refused message (client: by ERR_ROUND_MISMATCH); other: broken contracts');
  lines.push('(transition, reply kind, abort message, sum); alias: state changed when the caller reused its input buffer');
  lines.push('after an accepted message (a finding, not a failure); sums: rounds that reached done along honest inputs,');
  lines.push("sum checked against the plaintext sum (DP rounds: plus each client's noise, minus the excess removed).");
  lines.push('');
  lines.push('refused, by error code:');
  for (const r of sortedRows(rep)) {
    if (r.handler === 'deadline') continue;
    const codes = Object.entries(r.refused).sort((a, b) => b[1] - a[1]);
    lines.push(`  ${r.handler} ${r.stage}: ${codes.map(([c, n]) => `${c} ${n}`).join(' · ')}`);
  }
  lines.push('');
  lines.push('deadlines, by outcome:');
  for (const r of sortedRows(rep))
    if (r.handler === 'deadline')
      lines.push(
        `  ${r.stage} → ${Object.entries(r.outcomes)
          .map(([s, n]) => `${s} ${n}`)
          .join(' · ')}`,
      );
  lines.push('');
  lines.push('by corpus round (inputs and deadlines · accepted · sums checked · unmask responses with excess noise accepted):');
  for (const spec of ROUND_SPECS) {
    const t = rep.byRound[spec.name];
    if (t === undefined) continue;
    const dp = spec.dp ? ` [DP ${spec.dp.mechanism}${spec.dp.removable ? ', removable' : ''}]` : '';
    lines.push(`  ${`${spec.name}${dp}`.padEnd(66)}${pad(t.inputs, 7)}${pad(t.accepted, 7)}${pad(t.sums, 5)}${pad(t.excess, 5)}`);
  }
  const pre = Object.values(rep.rows).reduce((a, r) => a + r.preMutated, 0);
  lines.push('');
  lines.push(`client refusals that left the previous state changed, or not marked consumed: ${pre}`);
  const alias = Object.entries(rep.aliasingBy).sort((x, y) => x[0].localeCompare(y[0]));
  if (alias.length > 0) {
    lines.push('');
    lines.push('accepted messages after which the state changed when the caller overwrote its input buffer (handler, kind, input, first field changed):');
    for (const [k, n] of alias) lines.push(`  ${k}: ${n}`);
  }
  lines.push('');
  lines.push(
    `inputs by generator: ${Object.entries(rep.hows)
      .sort((a, b) => b[1] - a[1])
      .map(([h, n]) => `${h} ${n}`)
      .join(' · ')}`,
  );
  lines.push('');
  lines.push(`${rep.inputs} inputs in ${rep.batches} batches, ${(rep.ms / 1000).toFixed(1)} s`);
  if (rep.failures.length > 0) {
    lines.push('');
    lines.push(
      `failures and findings (first few of each kind; counts: ${Object.entries(rep.failureCounts)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}):`,
    );
    for (const f of rep.failures) {
      lines.push(`- [${f.kind}] ${f.where}, batch ${f.batch} input ${f.index} (${f.how}, from ${f.from}): ${f.detail}`);
      if (f.chain.length > 0) lines.push(`    after: ${f.chain.map((x) => (x.length > 200 ? `${x.slice(0, 200)}…` : x)).join(' ; ')}`);
      if (f.hex) lines.push(`    input: ${f.hex.length > 400 ? `${f.hex.slice(0, 400)}…` : f.hex}`);
    }
  }
  return lines.join('\n');
}
