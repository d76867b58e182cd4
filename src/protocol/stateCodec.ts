/**
 * A round's state written down: `encodeServerState` / `decodeServerState` and the same for a
 * client. A round can be stopped after any message, its state encoded, decoded in another process
 * (with that process's own context) and finished with the same sum.
 *
 * The encoding is a versioned binary format: a 4-byte magic ("SAGS" for a server, "SAGC" for a
 * client), a format version byte, the stage byte, then the stage's fields in a fixed order —
 * unsigned integers as 32-bit little-endian, byte strings and lists with a 32-bit length before
 * them, the round's config as the wire's RoundParameters (protobuf, length-prefixed), the running
 * sum as its m words mod 2^32; last, a CRC-32 of everything before it (see crc32). Data derived
 * from other fields (the graph, sets of ids kept next to their lists, the duplicate-key index) are
 * not written; they are rebuilt on decode.
 *
 * The decoders check every length before they allocate and refuse what does not parse with
 * SecAggError('ERR_DECODE'); they do not re-verify the protocol (signatures, shares): a state is
 * the round's own record, to be kept where only the round's owner can write it. An encoded client
 * state holds that round's private keys and shares: keep it as secret as the client's identity.
 *
 * **Resume an encoding at most once, and write a state down before sending what its call returned.**
 * What a client has revealed or signed is part of its state, so two live copies of one client
 * encoding each start from the same record: shown different survivor sets, they reveal both kinds
 * of share of one neighbour (semi-honest mode), or sign two survivor sets (active mode) — exactly
 * what "never both" and the consistency quorum rely on an honest client never doing
 * (test/attack/review3.test.ts). A server encoding resumed twice cannot publish a wrong sum (each
 * copy's sum is over its own U3) and gets no second kind of share from honest clients that were not
 * themselves resumed twice, but two copies can each abort the other's round.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { LITTLE_ENDIAN } from '../bytes.js';
import { ERROR_CODES, SecAggError, type SecAggErrorCode } from '../errors.js';
import { MAX_CLIENT_ID, type ClientId } from '../ids.js';
import { RingAccumulator } from '../ring/accumulator.js';
import { RoundParametersSchema } from '../wire/gen/secagg/v1/secagg_pb.js';
import { DEFAULT_LIMITS, validateConfig, type RoundConfig, type RoundLimits } from './config.js';
import { hex } from './derive.js';
import { excessProbability, noiseReport } from './noise.js';
import { configFromParameters, roundParameters } from './roundParams.js';
import { CLIENT_STAGES, STAGES, type ClientStage, type ServerStage } from './stages.js';
import {
  assertServerStateUsable,
  type Advertised,
  type RevealedShares,
  type RoundResult,
  type ServerState,
  type Shared,
  type View,
  type ViewAnswer,
} from './serverRound.js';
import { assertClientStateUsable, type ClientState, type Peer, type RemovableNoise, type SignedView, type ViewProgress } from './clientRound.js';
import { elementBytes } from '../ring/vector.js';

/** The format version this code writes and reads. (2: the CRC-32 trailer; 3: DP noise — a client's removable noise, the server's removed excess and the result's noise.) */
export const STATE_FORMAT_VERSION = 3;

const SERVER_MAGIC = [0x53, 0x41, 0x47, 0x53]; // "SAGS"
const CLIENT_MAGIC = [0x53, 0x41, 0x47, 0x43]; // "SAGC"
const SERVER_STAGES: readonly ServerStage[] = [...STAGES, 'done', 'aborted'];

// ---- writing ----

class Writer {
  private chunks: Uint8Array[] = [];
  private head = new Uint8Array(1 << 12);
  private at = 0;

  private room(n: number): void {
    if (this.at + n <= this.head.length) return;
    this.chunks.push(this.head.subarray(0, this.at));
    this.head = new Uint8Array(Math.max(1 << 12, n));
    this.at = 0;
  }
  u8(v: number): void {
    this.room(1);
    this.head[this.at++] = v;
  }
  u32(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`state field ${v} does not fit 32 bits`);
    this.room(4);
    const h = this.head;
    h[this.at++] = v & 0xff;
    h[this.at++] = (v >>> 8) & 0xff;
    h[this.at++] = (v >>> 16) & 0xff;
    h[this.at++] = v >>> 24;
  }
  raw(b: Uint8Array): void {
    if (b.length > 1 << 16) {
      this.chunks.push(this.head.subarray(0, this.at), b.slice());
      this.head = new Uint8Array(1 << 12);
      this.at = 0;
      return;
    }
    this.room(b.length);
    this.head.set(b, this.at);
    this.at += b.length;
  }
  bytes(b: Uint8Array): void {
    this.u32(b.length);
    this.raw(b);
  }
  str(s: string): void {
    this.bytes(new TextEncoder().encode(s));
  }
  ids(xs: Iterable<number>): void {
    const list = [...xs];
    this.u32(list.length);
    for (const x of list) this.u32(x);
  }
  optIds(xs: Iterable<number> | undefined): void {
    this.u8(xs === undefined ? 0 : 1);
    if (xs !== undefined) this.ids(xs);
  }
  /** Byte strings by client id. */
  byteMap(m: ReadonlyMap<number, Uint8Array>): void {
    this.u32(m.size);
    for (const [id, b] of m) {
      this.u32(id);
      this.bytes(b);
    }
  }
  words(w: Uint32Array): void {
    this.u32(w.length);
    if (LITTLE_ENDIAN) this.raw(new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
    else for (const x of w) this.u32(x);
  }
  /** Non-negative integers (exact in doubles): count, then 8 bytes each, little-endian. */
  counts(x: Float64Array): void {
    this.u32(x.length);
    const b = new Uint8Array(8 * x.length);
    const d = new DataView(b.buffer);
    for (let i = 0; i < x.length; i++) d.setFloat64(8 * i, x[i]! + 0, true); // + 0: never a −0
    this.raw(b);
  }
  config(c: RoundConfig): void {
    this.bytes(toBinary(RoundParametersSchema, create(RoundParametersSchema, roundParameters(c))));
  }
  finish(): Uint8Array {
    const parts = [...this.chunks, this.head.subarray(0, this.at)];
    const body = parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(body + CHECKSUM_BYTES);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    new DataView(out.buffer).setUint32(body, crc32(out.subarray(0, body)), true);
    return out;
  }
}

// ---- the checksum ----

/**
 * Every encoding ends with the CRC-32 (IEEE) of the bytes before it, little-endian. Most of a
 * state's bytes — keys, shares, the running sum, the graph seed — take any value, so no check of
 * the format can tell a flipped bit there; a sum or seed changed by a storage or transfer fault
 * would be finished into a wrong sum. The checksum makes every such fault an ERR_DECODE. (It is
 * not a MAC: a state is still to be kept where only the round's owner can write.)
 */
const CHECKSUM_BYTES = 4;
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// ---- reading ----

function bad(what: string): SecAggError {
  return new SecAggError('ERR_DECODE', `encoded state: ${what}`);
}

class Reader {
  private at = 0;
  constructor(
    private b: Uint8Array,
    private readonly limits: RoundLimits,
  ) {}

  private need(n: number, what: string): void {
    if (n > this.b.length - this.at) throw bad(`${what} runs past the end (${n} bytes wanted, ${this.b.length - this.at} left)`);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.b[this.at++]!;
  }
  u32(what: string): number {
    this.need(4, what);
    const b = this.b;
    const v = (b[this.at]! | (b[this.at + 1]! << 8) | (b[this.at + 2]! << 16) | (b[this.at + 3]! << 24)) >>> 0;
    this.at += 4;
    return v;
  }
  bool(what: string): boolean {
    const v = this.u8(what);
    if (v > 1) throw bad(`${what}: flag ${v}`);
    return v === 1;
  }
  /** A byte string; `length` pins its size when the format knows it, `max` bounds it otherwise. */
  bytes(what: string, length?: number, max = Number.MAX_SAFE_INTEGER): Uint8Array {
    const n = this.u32(what);
    if (length !== undefined && n !== length) throw bad(`${what} is ${n} bytes, not ${length}`);
    if (n > max) throw bad(`${what} of ${n} bytes`);
    this.need(n, what);
    const out = this.b.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }
  str(what: string, max = 1 << 16): string {
    const b = this.bytes(what, undefined, max);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(b);
    } catch {
      throw bad(`${what} is not UTF-8`);
    }
  }
  /** A count of entries, each at least `minBytes` long: refused before anything is allocated if they cannot fit. */
  count(what: string, minBytes: number, max = this.limits.maxClients): number {
    const n = this.u32(what);
    if (n > max) throw bad(`${n} ${what}, more than ${max}`);
    this.need(n * minBytes, what);
    return n;
  }
  ids(what: string): number[] {
    const n = this.count(what, 4);
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const v = this.u32(what);
      if (v < 1 || v > MAX_CLIENT_ID) throw bad(`${what}: id ${v}`);
      out[i] = v;
    }
    return out;
  }
  /** Ids in ascending order without repeats (how every id list of a round is kept). */
  sortedIds(what: string): number[] {
    const xs = this.ids(what);
    for (let i = 1; i < xs.length; i++) if (xs[i]! <= xs[i - 1]!) throw bad(`${what} are not ascending`);
    return xs;
  }
  optIds(what: string): number[] | undefined {
    return this.bool(what) ? this.ids(what) : undefined;
  }
  /** Byte strings by client id, each id in `within` and at most once; `length` pins their size. */
  byteMap(what: string, within: ReadonlySet<number>, length?: number): Map<number, Uint8Array> {
    const out = new Map<number, Uint8Array>();
    const n = this.count(what, 8 + (length ?? 0), within.size);
    for (let i = 0; i < n; i++) {
      const id = this.u32(what);
      if (!within.has(id) || out.has(id)) throw bad(`${what}: client ${id}`);
      out.set(id, this.bytes(what, length));
    }
    return out;
  }
  /** m words mod 2^32: exactly `length` of them, or (length undefined) at most `max`. */
  words(what: string, length: number | undefined, max = length ?? 0): Uint32Array {
    const n = this.u32(what);
    if (length !== undefined ? n !== length : n > max) throw bad(`${what} has ${n} words, not ${length ?? `at most ${max}`}`);
    this.need(4 * n, what);
    const out = new Uint32Array(n);
    if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(this.b.subarray(this.at, this.at + 4 * n));
    else for (let i = 0; i < n; i++) out[i] = this.u32(what);
    if (LITTLE_ENDIAN) this.at += 4 * n;
    return out;
  }
  /** counts(): exactly `length` non-negative safe integers, checked against the bytes there are before allocating. */
  counts(what: string, lengths: readonly number[]): Float64Array {
    const n = this.u32(what);
    if (!lengths.includes(n)) throw bad(`${what} has ${n} entries, not ${lengths.join(' or ')}`);
    this.need(8 * n, what);
    const out = new Float64Array(n);
    const d = new DataView(this.b.buffer, this.b.byteOffset + this.at, 8 * n);
    for (let i = 0; i < n; i++) {
      const v = d.getFloat64(8 * i, true);
      if (!(Number.isSafeInteger(v) && v >= 0) || Object.is(v, -0)) throw bad(`${what}: ${v} is not a count`);
      out[i] = v;
    }
    this.at += 8 * n;
    return out;
  }
  config(): RoundConfig {
    const b = this.bytes('round parameters');
    let config: RoundConfig;
    try {
      config = configFromParameters(fromBinary(RoundParametersSchema, b));
      validateConfig(config, this.limits);
    } catch (cause) {
      throw new SecAggError('ERR_DECODE', 'encoded state: the round parameters do not parse or are not valid', { cause });
    }
    return config;
  }
  magic(expected: readonly number[], what: string): void {
    this.need(6, 'header');
    for (let i = 0; i < 4; i++) if (this.b[this.at + i] !== expected[i]) throw bad(`not an encoded ${what} state`);
    this.at += 4;
    const version = this.u8('version');
    if (version !== STATE_FORMAT_VERSION)
      throw new SecAggError('ERR_VERSION', `encoded ${what} state of format version ${version}; this code reads version ${STATE_FORMAT_VERSION}`);
    // The version is known: check the checksum, then read the bytes it covers.
    const body = this.b.length - CHECKSUM_BYTES;
    if (body < this.at + 1) throw bad('too short for a stage and a checksum');
    const b = this.b;
    const stored = (b[body]! | (b[body + 1]! << 8) | (b[body + 2]! << 16) | (b[body + 3]! << 24)) >>> 0;
    if (stored !== crc32(b.subarray(0, body))) throw bad('the checksum does not match (the encoding was changed or damaged)');
    this.b = b.subarray(0, body);
  }
  end(): void {
    if (this.at !== this.b.length) throw bad(`${this.b.length - this.at} bytes after the end`);
  }
}

/** Every id of `xs` must be in `within` (the cohort, U1, ...). */
function inSet(xs: Iterable<number>, within: ReadonlySet<number>, what: string): void {
  for (const x of xs) if (!within.has(x)) throw bad(`${what}: client ${x} does not belong`);
}

/** A writer holding the header: magic, format version, stage. */
function header(magic: readonly number[], stage: number): Writer {
  const w = new Writer();
  for (const b of magic) w.u8(b);
  w.u8(STATE_FORMAT_VERSION);
  w.u8(stage);
  return w;
}

// ---- server ----

/**
 * The server state as bytes. Refuses (TypeError) a state that a call consumed or is still working
 * on: encode the state a call returned, between calls.
 */
export function encodeServerState(state: ServerState): Uint8Array {
  assertServerStateUsable(state);
  const w = header(SERVER_MAGIC, SERVER_STAGES.indexOf(state.stage));
  w.config(state.config);
  switch (state.stage) {
    case 'done':
      writeResult(w, state.result);
      return w.finish();
    case 'aborted':
      w.str(state.abortError.code);
      w.str(state.abortError.message);
      w.ids(state.abortError.clients);
      return w.finish();
    default:
  }
  w.u8(state.viewAttempts);
  w.u8(state.fixedGraphSeed ? 1 : 0);
  if (state.fixedGraphSeed) w.bytes(state.fixedGraphSeed);
  w.ids(state.quit);
  w.u32(state.advertised.size);
  for (const [id, a] of state.advertised) {
    w.u32(id);
    w.bytes(a.encryptionKey);
    w.bytes(a.maskingKey);
    w.bytes(a.signature);
    w.bytes(a.seedCommitment);
  }
  if (state.stage === 'advertise') return w.finish();
  if (state.stage === 'view') {
    writeView(w, state.view);
    return w.finish();
  }
  w.u8(state.view ? 1 : 0);
  if (state.view) writeView(w, state.view);
  w.ids(state.u1);
  w.bytes(state.graphSeed);
  w.u32(state.shared.size);
  for (const [id, s] of state.shared) {
    w.u32(id);
    w.bytes(s.commitment);
    w.byteMap(s.ciphertexts);
  }
  if (state.stage === 'share') return w.finish();
  w.ids(state.u2);
  w.words(state.sum.view());
  w.ids(state.masked);
  if (state.stage === 'masked') return w.finish();
  w.ids(state.u3);
  w.byteMap(state.signatures);
  if (state.stage === 'consistency') return w.finish();
  w.optIds(state.u4);
  for (const shares of [state.selfShares, state.keyShares]) {
    w.u32(shares.size);
    for (const [owner, r] of shares) {
      w.u32(owner);
      w.ids(r.holders);
      for (const s of r.shares) w.bytes(s);
    }
  }
  w.ids(state.responded);
  return w.finish();
}

/** What a view is on both sides: the attempt, U1, each member's commitment and the digest signed. */
function writeViewCore(w: Writer, v: SignedView): void {
  w.u32(v.attempt);
  w.ids(v.advertised);
  for (const c of v.commitments) w.bytes(c);
  w.bytes(v.digest);
}

function readViewCore(r: Reader, within: ReadonlySet<number>): SignedView {
  const attempt = r.u32('view attempt');
  const advertised = r.sortedIds('view members');
  inSet(advertised, within, 'view members');
  const commitments = advertised.map(() => r.bytes('view commitment', 32));
  return { attempt, advertised, commitments, digest: r.bytes('view digest', 32) };
}

function writeView(w: Writer, v: View): void {
  writeViewCore(w, v);
  w.u32(v.answers.size);
  for (const [id, a] of v.answers) {
    w.u32(id);
    w.bytes(a.signature);
    w.bytes(a.reveal);
    w.bytes(a.next);
  }
}

function writeResult(w: Writer, r: RoundResult): void {
  w.words(r.sum);
  w.ids(r.included);
  for (const k of ['advertised', 'shared', 'masked', 'signed', 'unmasked'] as const) w.ids(r.sets[k]);
  w.ids(r.badShareHolders);
  w.u32(r.maskExpansions);
  w.u32(r.exactShareChecks);
  w.u32(r.viewAttempts);
  // A DP round: the survivors whose excess was removed (the rest of the report follows from the config and U3).
  if (r.noise !== undefined) w.u32(r.noise.removedFrom);
}

/**
 * A server state from encodeServerState's bytes. `limits` bound what the decoder accepts (the
 * config is validated against them); the state comes back ready for the next call, with a
 * context of the decoding process's own.
 */
export function decodeServerState(bytes: Uint8Array, limits: Partial<RoundLimits> = {}): ServerState {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('bytes must be a Uint8Array');
  const r = new Reader(bytes, { ...DEFAULT_LIMITS, ...limits });
  r.magic(SERVER_MAGIC, 'server');
  const stageIndex = r.u8('stage');
  const stage = SERVER_STAGES[stageIndex];
  if (stage === undefined) throw bad(`unknown stage ${stageIndex}`);
  const config = r.config();
  const cohort = new Set<number>(config.cohort);
  const n = config.cohort.length;
  if (stage === 'done') {
    const result = readResult(r, config, cohort);
    r.end();
    return { stage, config, result };
  }
  if (stage === 'aborted') {
    const code = r.str('abort code', 64);
    if (!(ERROR_CODES as readonly string[]).includes(code)) throw bad(`unknown abort code ${code}`);
    const message = r.str('abort reason');
    const clients = r.ids('clients of the abort');
    r.end();
    return { stage, config, abortError: new SecAggError(code as SecAggErrorCode, message, { clients }) };
  }
  const viewAttempts = r.u8('view attempts');
  if (viewAttempts < 1) throw bad('view attempts 0');
  const fixedGraphSeed = r.bool('fixed graph seed') ? r.bytes('fixed graph seed', 32) : undefined;
  const quit = new Set(r.ids('quit clients'));
  inSet(quit, cohort, 'quit clients');
  const advertised = new Map<number, Advertised>();
  const keysSeen = new Set<string>();
  const na = r.count('advertised clients', 4 + 4 * 4 + 64, n);
  for (let i = 0; i < na; i++) {
    const id = r.u32('advertised client');
    if (!cohort.has(id) || advertised.has(id)) throw bad(`advertised client ${id}`);
    const a: Advertised = {
      encryptionKey: r.bytes('encryption key', 32),
      maskingKey: r.bytes('masking key', 32),
      signature: r.bytes('signature', config.mode === 'active' ? 64 : 0),
      seedCommitment: r.bytes('seed commitment', config.mode === 'active' ? 32 : 0),
    };
    advertised.set(id, a);
    keysSeen.add(hex(a.encryptionKey));
    keysSeen.add(hex(a.maskingKey));
  }
  const base = { config, viewAttempts, fixedGraphSeed, quit, advertised, keysSeen };
  if (stage === 'advertise') {
    r.end();
    return { ...base, stage };
  }
  if (stage === 'view') {
    const view = readView(r, advertised);
    r.end();
    return { ...base, stage, view };
  }
  // A view is kept in active mode only, and from the view stage on it is always there.
  const hasView = r.bool('view');
  if (hasView !== (config.mode === 'active')) throw bad(hasView ? 'a semi-honest round with a view' : 'an active round past the view stage without a view');
  const view = hasView ? readView(r, advertised) : undefined;
  const u1 = r.sortedIds('U1');
  inSet(u1, new Set(advertised.keys()), 'U1');
  // Active mode: the keys went out only once every member of the view revealed, over that view's
  // members; a U1 of other members would give the server another graph than its clients use.
  if (view !== undefined && (u1.length !== view.advertised.length || u1.some((u, i) => u !== view.advertised[i])))
    throw bad('U1 is not the membership of the view it was fixed by');
  const graphSeed = r.bytes('graph seed', 32);
  const u1set = new Set(u1);
  const shared = new Map<number, Shared>();
  const ns = r.count('clients that shared keys', 4 + 4 + 32 + 4, u1.length);
  for (let i = 0; i < ns; i++) {
    const id = r.u32('client that shared keys');
    if (!u1set.has(id) || shared.has(id)) throw bad(`shares of client ${id}`);
    const commitment = r.bytes('self-mask commitment', 32);
    const ciphertexts = r.byteMap('ciphertexts', u1set);
    shared.set(id, { commitment, ciphertexts });
  }
  const graphData = { ...base, view, u1, graphSeed, shared };
  if (stage === 'share') {
    r.end();
    return { ...graphData, stage };
  }
  const u2 = r.sortedIds('U2');
  inSet(u2, new Set(shared.keys()), 'U2');
  const u2set = new Set(u2);
  // The words first: they are checked against the bytes there are before the accumulator (which
  // the config may size at the largest dimension the limits allow) is allocated.
  const words = r.words('running sum', config.dimension);
  const sum = new RingAccumulator(config.dimension);
  sum.addVector(words, 1);
  const masked = new Set(r.ids('clients that sent a masked input'));
  inSet(masked, u2set, 'masked inputs');
  const maskedData = { ...graphData, u2, u2set, sum, masked };
  if (stage === 'masked') {
    r.end();
    return { ...maskedData, stage };
  }
  const u3 = r.sortedIds('U3');
  // U3 is exactly the clients whose masked input is in the sum (the masked stage closes with
  // U2 ∩ masked, and masked ⊆ U2): a client in the sum but not in U3 would be unmasked as a dropout,
  // its self mask left in, and the sum published over U3 would be wrong.
  inSet(u3, masked, 'U3');
  if (u3.length !== masked.size) throw bad(`U3 has ${u3.length} clients, the running sum ${masked.size} masked inputs`);
  const u3set = new Set(u3);
  const signatures = r.byteMap('signatures', u3set, 64);
  const survivors = { ...maskedData, u3, u3set, signatures };
  if (stage === 'consistency') {
    r.end();
    return { ...survivors, stage };
  }
  const u4 = r.optIds('U4');
  if ((u4 !== undefined) !== (config.mode === 'active')) throw bad('U4 is kept in active mode only');
  if (u4) inSet(u4, u3set, 'U4');
  const askedToUnmask = new Set(u4 ?? u3);
  const [selfShares, keyShares] = [0, 1].map(() => {
    const out = new Map<number, RevealedShares>();
    const no = r.count('owners of revealed shares', 8, u2.length);
    for (let i = 0; i < no; i++) {
      const owner = r.u32('owner');
      if (!u2set.has(owner) || out.has(owner)) throw bad(`revealed shares of client ${owner}`);
      const holders = r.ids('holders');
      inSet(holders, askedToUnmask, 'holders');
      const shares = holders.map(() => r.bytes('share'));
      out.set(owner, { holders, shares });
    }
    return out;
  }) as [Map<number, RevealedShares>, Map<number, RevealedShares>];
  const responded = new Set(r.ids('clients that answered the unmask request'));
  inSet(responded, askedToUnmask, 'unmask responses');
  r.end();
  return { ...survivors, stage, u4, askedToUnmask, selfShares, keyShares, responded };
}

function readView(r: Reader, advertised: ReadonlyMap<number, Advertised>): View {
  const { attempt, advertised: members, commitments, digest } = readViewCore(r, new Set(advertised.keys()));
  const answers = new Map<number, ViewAnswer>();
  const memberSet = new Set(members);
  const na = r.count('view answers', 4 + 4 * 3 + 64 + 64, members.length);
  for (let i = 0; i < na; i++) {
    const id = r.u32('view answer');
    if (!memberSet.has(id) || answers.has(id)) throw bad(`view answer of client ${id}`);
    answers.set(id, { signature: r.bytes('view signature', 64), reveal: r.bytes('seed reveal', 32), next: r.bytes('next seed commitment', 32) });
  }
  return { attempt, advertised: members, members: memberSet, commitments, digest, answers };
}

function readResult(r: Reader, config: RoundConfig, cohort: ReadonlySet<number>): RoundResult {
  const sum = r.words('sum', config.dimension);
  if (config.bits < 32) for (const x of sum) if (x >>> config.bits !== 0) throw bad(`the sum has an element outside Z_2^${config.bits}`);
  const included = r.sortedIds('included clients') as ClientId[];
  const sets = {} as Record<'advertised' | 'shared' | 'masked' | 'signed' | 'unmasked', ClientId[]>;
  for (const k of ['advertised', 'shared', 'masked', 'signed', 'unmasked'] as const) {
    sets[k] = r.sortedIds(k) as ClientId[];
    inSet(sets[k], cohort, k);
  }
  inSet(included, cohort, 'included clients');
  const badShareHolders = r.sortedIds('bad share holders') as ClientId[];
  const maskExpansions = r.u32('mask expansions');
  const exactShareChecks = r.u32('exact share checks');
  const viewAttempts = r.u32('view attempts');
  let noise = {};
  if (config.dp !== undefined) {
    const removedFrom = r.u32('clients whose excess noise was removed');
    // Every answer to the unmask request carried its excess when any was removable, none otherwise.
    if (removedFrom !== (excessProbability(config, included.length) > 0 ? sets.unmasked.length : 0))
      throw bad(`excess noise removed from ${removedFrom} clients`);
    noise = { noise: noiseReport(config, included.length, removedFrom)! };
  }
  return { sum, included, sets, badShareHolders, maskExpansions, exactShareChecks, viewAttempts, ...noise };
}

// ---- client ----

/**
 * The client state as bytes: holds this round's private keys and the shares this client holds —
 * store it as you would the client's identity. Refuses (TypeError) a consumed state.
 */
export function encodeClientState(state: ClientState): Uint8Array {
  assertClientStateUsable(state);
  const w = header(CLIENT_MAGIC, CLIENT_STAGES.indexOf(state.stage));
  w.u32(state.id);
  switch (state.stage) {
    case 'awaiting-start':
      w.u8(state.input ? 1 : 0);
      if (state.input) w.words(state.input);
      return w.finish();
    case 'aborted':
      w.u8(state.config ? 1 : 0);
      if (state.config) w.config(state.config);
      w.str(state.abortCode);
      return w.finish();
    default:
  }
  w.config(state.config);
  switch (state.stage) {
    case 'awaiting-view':
    case 'awaiting-keys':
      w.words(state.input);
      w.bytes(state.encryptionSecret);
      w.bytes(state.encryptionKey);
      w.bytes(state.maskingSecret);
      w.bytes(state.maskingKey);
      w.bytes(state.selfMaskSeed);
      w.u8(state.active ? 1 : 0);
      if (state.active) {
        w.u32(state.active.attempt);
        w.bytes(state.active.seedReveal);
        w.bytes(state.active.seedCommitment);
        writeSignedView(w, state.active.view);
      }
      return w.finish();
    case 'awaiting-shares':
      w.words(state.input);
      w.bytes(state.selfMaskSeed);
      writeSignedView(w, state.view);
      w.ids(state.advertised);
      writePeers(w, state.peers);
      w.byteMap(state.shareKeys);
      w.byteMap(state.maskKeys);
      return w.finish();
    default:
  }
  writeSignedView(w, state.view);
  w.ids(state.advertised);
  writePeers(w, state.peers);
  w.u32(state.held.size);
  for (const [v, h] of state.held) {
    w.u32(v);
    w.bytes(h.keyShare);
    w.bytes(h.selfShare);
  }
  w.ids(state.maskedWith);
  w.optIds(state.signedSurvivors);
  w.u32(state.revealed.size);
  for (const [v, kind] of state.revealed) {
    w.u32(v);
    w.u8(kind === 'self' ? 0 : 1);
  }
  const noise = state.dpNoise;
  w.u8(noise ? 1 : 0);
  if (noise) {
    w.counts(noise.p1);
    w.counts(noise.p2);
    w.u8(noise.excess ? 1 : 0);
    if (noise.excess) w.bytes(noise.excess);
  }
  return w.finish();
}

function writeSignedView(w: Writer, v: SignedView | undefined): void {
  w.u8(v ? 1 : 0);
  if (v) writeViewCore(w, v);
}

function writePeers(w: Writer, peers: ReadonlyMap<number, Peer>): void {
  w.u32(peers.size);
  for (const [v, p] of peers) {
    w.u32(v);
    w.bytes(p.encryptionKey);
    w.bytes(p.maskingKey);
  }
}

/** A client state from encodeClientState's bytes, ready for the next call (with a context of the decoding process's own). */
export function decodeClientState(bytes: Uint8Array, limits: Partial<RoundLimits> = {}): ClientState {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('bytes must be a Uint8Array');
  const l = { ...DEFAULT_LIMITS, ...limits };
  const r = new Reader(bytes, l);
  r.magic(CLIENT_MAGIC, 'client');
  const stageIndex = r.u8('stage');
  const stage: ClientStage | undefined = CLIENT_STAGES[stageIndex];
  if (stage === undefined) throw bad(`unknown stage ${stageIndex}`);
  const id = r.u32('client id') as ClientId;
  if (id < 1 || id > MAX_CLIENT_ID) throw bad(`client id ${id}`);
  if (stage === 'awaiting-start') {
    let input: Uint32Array | undefined;
    if (r.bool('input')) input = r.words('input', undefined, l.maxDimension);
    r.end();
    return { stage, id, input };
  }
  if (stage === 'aborted') {
    const config = r.bool('config') ? r.config() : undefined;
    const abortCode = r.str('abort code', 64);
    r.end();
    return { stage, id, config, abortCode };
  }
  const config = r.config();
  if (!config.cohort.includes(id)) throw bad(`client ${id} is not in the round's cohort`);
  const cohort = new Set<number>(config.cohort);
  if (stage === 'awaiting-view' || stage === 'awaiting-keys') {
    const keys = {
      id,
      config,
      input: r.words('input', config.dimension),
      encryptionSecret: r.bytes('encryption secret', 32),
      encryptionKey: r.bytes('encryption key', 32),
      maskingSecret: r.bytes('masking secret', 32),
      maskingKey: r.bytes('masking key', 32),
      selfMaskSeed: r.bytes('self-mask seed', 32),
    };
    let active: ViewProgress | undefined;
    if (r.bool('view progress')) {
      active = {
        attempt: r.u32('view attempt'),
        seedReveal: r.bytes('seed reveal', 32),
        seedCommitment: r.bytes('seed commitment', 32),
        view: readSignedView(r, cohort),
      };
    }
    if ((active !== undefined) !== (config.mode === 'active')) throw bad('view progress is kept in active mode only');
    r.end();
    if (stage === 'awaiting-view') {
      if (active === undefined) throw bad('awaiting a view without view progress');
      return { ...keys, stage, active };
    }
    return { ...keys, stage, active };
  }
  if (stage === 'awaiting-shares') {
    const input = r.words('input', config.dimension);
    const selfMaskSeed = r.bytes('self-mask seed', 32);
    const view = readSignedView(r, cohort);
    const advertised = r.sortedIds('U1');
    inSet(advertised, cohort, 'U1');
    const peers = readPeers(r, new Set(advertised));
    const kept = new Set(peers.keys());
    const shareKeys = r.byteMap('share keys', kept, 32);
    const maskKeys = r.byteMap('mask keys', kept, 16);
    if (shareKeys.size !== kept.size || maskKeys.size !== kept.size) throw bad('a key for every neighbour kept');
    r.end();
    return { stage, id, config, input, selfMaskSeed, view, advertised, peers, shareKeys, maskKeys };
  }
  const view = readSignedView(r, cohort);
  const advertised = r.sortedIds('U1');
  inSet(advertised, cohort, 'U1');
  const peers = readPeers(r, new Set(advertised));
  const held = new Map<number, { keyShare: Uint8Array; selfShare: Uint8Array }>();
  const nh = r.count('shares held', 4 + 8, peers.size);
  for (let i = 0; i < nh; i++) {
    const v = r.u32('share owner');
    if (!peers.has(v) || held.has(v)) throw bad(`shares of client ${v}`);
    held.set(v, { keyShare: r.bytes('key share'), selfShare: r.bytes('self-mask share') });
  }
  const maskedWith = new Set(r.ids('neighbours masked with'));
  inSet(maskedWith, new Set(peers.keys()), 'neighbours masked with');
  const signedSurvivors = r.optIds('signed survivors');
  const revealed = new Map<number, 'self' | 'key'>();
  const nr = r.count('revealed shares', 5, held.size);
  for (let i = 0; i < nr; i++) {
    const v = r.u32('revealed owner');
    const kind = r.u8('revealed kind');
    if (!held.has(v) || revealed.has(v) || kind > 1) throw bad(`revealed share of client ${v}`);
    revealed.set(v, kind === 0 ? 'self' : 'key');
  }
  let dpNoise: RemovableNoise | undefined;
  if (r.bool('removable noise')) {
    if (config.dp?.removable !== true) throw bad('removable noise in a round without removable DP');
    // P1 and P2 while the excess is not drawn; afterwards the excess alone (empty: nothing removed).
    const m = config.dimension;
    const p1 = r.counts('removable noise P1', [m, 0]);
    const p2 = r.counts('removable noise P2', [p1.length]);
    const excess = r.bool('excess noise') ? r.bytes('excess noise', undefined, elementBytes(config.bits) * m) : undefined;
    if (excess !== undefined && excess.length !== 0 && excess.length !== elementBytes(config.bits) * m) throw bad(`excess noise of ${excess.length} bytes`);
    if ((excess === undefined) !== (p1.length === m)) throw bad('removable noise holds P1 and P2 until the excess is drawn, then the excess alone');
    if (stage !== 'done' && excess !== undefined) throw bad('an excess drawn before the unmask request');
    dpNoise = { p1, p2, excess };
  } else if (config.dp?.removable === true) throw bad('a removable-DP round without its noise');
  r.end();
  return { stage, id, config, view, advertised, peers, held, maskedWith, signedSurvivors, revealed, dpNoise };
}

function readSignedView(r: Reader, cohort: ReadonlySet<number>): SignedView | undefined {
  return r.bool('signed view') ? readViewCore(r, cohort) : undefined;
}

function readPeers(r: Reader, u1: ReadonlySet<number>): Map<number, Peer> {
  const peers = new Map<number, Peer>();
  const np = r.count('neighbours', 4 + 8 + 64, u1.size);
  for (let i = 0; i < np; i++) {
    const v = r.u32('neighbour');
    if (!u1.has(v) || peers.has(v)) throw bad(`neighbour ${v}`);
    peers.set(v, { encryptionKey: r.bytes('neighbour encryption key', 32), maskingKey: r.bytes('neighbour masking key', 32) });
  }
  return peers;
}
