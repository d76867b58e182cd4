/**
 * A hand-written codec for the four messages whose size grows with the number of neighbours —
 * ShareKeys and UnmaskResponse from clients, KeysForYou and SharesForYou from the server. In a
 * complete graph a round carries O(n²) of their entries, and protobuf-es's reflective
 * toBinary/fromBinary became the dominant CPU cost of a large round.
 *
 * protobuf-es stays the reference. The encoder produces exactly the bytes of toBinary(create(...))
 * and declines (returns undefined) any input it would not reproduce exactly; the decoder returns a
 * value only for input it fully understands, and then one deep-equal to fromBinary's. Everything
 * else goes to protobuf-es, so this file changes how fast messages are handled, never which. The one
 * answer the decoder gives besides a value is ERR_SIZE when given caps on repeated fields: it counts
 * entries before reading them and throws at the same entry as peek.ts's scanBody, which vets input
 * for protobuf-es (test/wire-checked.test.ts checks the two paths agree).
 */
import { isSecAggError, SecAggError } from '../errors.js';
import { PROTOCOL_VERSION } from './version.js';
import type { ClientBody, ServerBody } from './bodies.js';
import { peekClientBody, peekServerBody, UNCAPPED, type ClientKind, type EntryCaps, type ServerKind } from './peek.js';
import type {
  ClientMessage,
  EncryptedShare,
  KeysForYou,
  NeighbourKeys,
  RevealedShare,
  ServerMessage,
  ShareKeys,
  SharesForYou,
  UnmaskResponse,
} from './gen/secagg/v1/secagg_pb.js';

const VARINT = 0;
const LEN = 2;

/** Thrown inside this file only, caught at the four entry points: protobuf-es handles the input. */
const DECLINE = Symbol('declined by the fast path');

const EMPTY: Uint8Array = new Uint8Array(0);
const NONE: readonly never[] = [];

// ---------------------------------------------------------------------------------------------
// Encoding: a size pass that also validates, then one write into a buffer of exactly that size.
// Every field number here is below 16, so every tag is one byte.

function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}
/** proto3 implicit presence: a zero or empty scalar is not written. */
const uintFieldSize = (v: number): number => (v === 0 ? 0 : 1 + varintSize(v));
const bytesFieldSize = (b: Uint8Array): number => (b.length === 0 ? 0 : 1 + varintSize(b.length) + b.length);
/** A message in a oneof or a repeated field is written even when empty. */
const messageFieldSize = (length: number): number => 1 + varintSize(length) + length;
/** EncryptedShare and RevealedShare share one layout: uint32 = 1, bytes = 2. */
const pairSize = (id: number, b: Uint8Array): number => uintFieldSize(id) + bytesFieldSize(b);
const neighbourSize = (client: number, enc: Uint8Array, mask: Uint8Array, sig: Uint8Array): number =>
  uintFieldSize(client) + bytesFieldSize(enc) + bytesFieldSize(mask) + bytesFieldSize(sig);

class Writer {
  readonly buf: Uint8Array;
  pos = 0;
  constructor(size: number) {
    this.buf = new Uint8Array(size);
  }
  varint(v: number): void {
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }
  header(no: number, length: number): void {
    this.buf[this.pos++] = (no << 3) | LEN;
    this.varint(length);
  }
  uintField(no: number, v: number): void {
    if (v === 0) return;
    this.buf[this.pos++] = (no << 3) | VARINT;
    this.varint(v);
  }
  bytesField(no: number, b: Uint8Array): void {
    if (b.length === 0) return;
    this.header(no, b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

// The size pass reads every value through these checks, so the write pass can read the same
// values with plain `??` defaults.

/**
 * create() keeps a nested value that already is a message of the expected type, and toBinary()
 * then throws on a missing field or on a child that is not a message of its type, and writes the
 * message's $unknown fields. Any other object is an init shape whose fields are copied, missing
 * ones as zero values. Returns whether `v` is kept as-is; declines whatever create() + toBinary()
 * would reject or encode some other way.
 */
function keptAsIs(v: unknown, typeName: string, parentKept: boolean): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw DECLINE;
  const kept = (v as { $typeName?: unknown }).$typeName === typeName;
  if (parentKept && !kept) throw DECLINE;
  if (kept && (v as { $unknown?: unknown }).$unknown !== undefined) throw DECLINE;
  return kept;
}
/** protobuf-es also accepts numeric strings, and throws on the rest: either way, its call. */
function uint(v: unknown, kept: boolean): number {
  if (v == null && !kept) return 0;
  if (typeof v === 'number' && v >>> 0 === v) return v;
  throw DECLINE;
}
/** create() turns a number[] into bytes; the fast path leaves that to it. */
function bytes(v: unknown, kept: boolean): Uint8Array {
  if (v == null && !kept) return EMPTY;
  if (v instanceof Uint8Array) return v;
  throw DECLINE;
}
function list(v: unknown, kept: boolean): readonly unknown[] {
  if (v == null && !kept) return NONE;
  if (Array.isArray(v)) return v;
  throw DECLINE;
}

const ENCRYPTED_SHARE = 'secagg.v1.EncryptedShare';
const REVEALED_SHARE = 'secagg.v1.RevealedShare';
const NEIGHBOUR_KEYS = 'secagg.v1.NeighbourKeys';

/** EncryptedShare {peer, ciphertext} and RevealedShare {owner, share}: one layout, uint32 = 1, bytes = 2. */
interface PairType {
  readonly typeName: string;
  readonly id: 'peer' | 'owner';
  readonly bytes: 'ciphertext' | 'share';
}
const ENCRYPTED: PairType = { typeName: ENCRYPTED_SHARE, id: 'peer', bytes: 'ciphertext' };
const REVEALED: PairType = { typeName: REVEALED_SHARE, id: 'owner', bytes: 'share' };
type AnyPair = Partial<Record<PairType['id'] | PairType['bytes'], unknown>>;

function pairsSize(v: unknown, parentKept: boolean, t: PairType): number {
  const items = list(v, parentKept);
  let size = 0;
  for (let i = 0; i < items.length; i++) {
    const e = items[i] as AnyPair;
    const kept = keptAsIs(e, t.typeName, parentKept);
    size += messageFieldSize(pairSize(uint(e[t.id], kept), bytes(e[t.bytes], kept)));
  }
  return size;
}
function writePairs(w: Writer, no: number, items: readonly unknown[] | undefined, t: PairType): void {
  for (const item of items ?? NONE) {
    const e = item as AnyPair;
    const id = (e[t.id] as number | undefined) ?? 0;
    const b = (e[t.bytes] as Uint8Array | undefined) ?? EMPTY;
    w.header(no, pairSize(id, b));
    w.uintField(1, id);
    w.bytesField(2, b);
  }
}

function neighboursSize(v: unknown, parentKept: boolean): number {
  const items = list(v, parentKept);
  let size = 0;
  for (let i = 0; i < items.length; i++) {
    const e = items[i] as Partial<NeighbourKeys>;
    const kept = keptAsIs(e, NEIGHBOUR_KEYS, parentKept);
    const client = uint(e.client, kept);
    const enc = bytes(e.encryptionPublicKey, kept);
    const mask = bytes(e.maskingPublicKey, kept);
    size += messageFieldSize(neighbourSize(client, enc, mask, bytes(e.signature, kept)));
  }
  return size;
}
function writeNeighbours(w: Writer, no: number, items: readonly NeighbourKeys[] | undefined): void {
  for (const e of items ?? NONE) {
    const client = e.client ?? 0;
    const encryptionPublicKey = e.encryptionPublicKey ?? EMPTY;
    const maskingPublicKey = e.maskingPublicKey ?? EMPTY;
    const signature = e.signature ?? EMPTY;
    w.header(no, neighbourSize(client, encryptionPublicKey, maskingPublicKey, signature));
    w.uintField(1, client);
    w.bytesField(2, encryptionPublicKey);
    w.bytesField(3, maskingPublicKey);
    w.bytesField(4, signature);
  }
}

/** Packed: one length-delimited record of bare varints, zeros included; nothing at all if empty. */
function packedSize(items: readonly unknown[]): number {
  let size = 0;
  for (let i = 0; i < items.length; i++) size += varintSize(uint(items[i], true));
  return size;
}
function writePacked(w: Writer, no: number, items: readonly number[] | undefined): void {
  if (items == null || items.length === 0) return;
  // Recomputed rather than carried over from the size pass: one more loop over small ints.
  w.header(no, packedSize(items));
  for (const x of items) w.varint(x);
}

/** One body kind: its message type, the size of its content, and how to write that content. */
interface BodyCodec {
  readonly typeName: string;
  size(value: unknown, kept: boolean): number;
  write(w: Writer, value: unknown): void;
}

const shareKeysCodec: BodyCodec = {
  typeName: 'secagg.v1.ShareKeys',
  size(value, kept) {
    const v = value as Partial<ShareKeys>;
    return bytesFieldSize(bytes(v.selfMaskCommitment, kept)) + pairsSize(v.shares, kept, ENCRYPTED);
  },
  write(w, value) {
    const v = value as Partial<ShareKeys>;
    w.bytesField(1, v.selfMaskCommitment ?? EMPTY);
    writePairs(w, 2, v.shares, ENCRYPTED);
  },
};

const unmaskResponseCodec: BodyCodec = {
  typeName: 'secagg.v1.UnmaskResponse',
  size(value, kept) {
    const v = value as Partial<UnmaskResponse>;
    return pairsSize(v.selfMaskShares, kept, REVEALED) + pairsSize(v.keyShares, kept, REVEALED) + bytesFieldSize(bytes(v.excessNoise, kept));
  },
  write(w, value) {
    const v = value as Partial<UnmaskResponse>;
    writePairs(w, 1, v.selfMaskShares, REVEALED);
    writePairs(w, 2, v.keyShares, REVEALED);
    w.bytesField(3, v.excessNoise ?? EMPTY);
  },
};

const keysForYouCodec: BodyCodec = {
  typeName: 'secagg.v1.KeysForYou',
  size(value, kept) {
    const v = value as Partial<KeysForYou>;
    // Active mode's view proof (one per client per round) is left to protobuf-es.
    if (v.view != null) throw DECLINE;
    const advertised = packedSize(list(v.advertised, kept));
    return bytesFieldSize(bytes(v.graphSeed, kept)) + (advertised === 0 ? 0 : messageFieldSize(advertised)) + neighboursSize(v.neighbours, kept);
  },
  write(w, value) {
    const v = value as Partial<KeysForYou>;
    w.bytesField(1, v.graphSeed ?? EMPTY);
    writePacked(w, 2, v.advertised);
    writeNeighbours(w, 3, v.neighbours);
  },
};

const sharesForYouCodec: BodyCodec = {
  typeName: 'secagg.v1.SharesForYou',
  size(value, kept) {
    return pairsSize((value as Partial<SharesForYou>).shares, kept, ENCRYPTED);
  },
  write(w, value) {
    writePairs(w, 1, (value as Partial<SharesForYou>).shares, ENCRYPTED);
  },
};

/** ServerMessage has no field 3; a zero `sender` writes nothing, exactly like its absence. */
function encode(roundId: Uint8Array, sender: number, bodyField: number, value: unknown, body: BodyCodec): Uint8Array | undefined {
  try {
    const id = bytes(roundId, false);
    const from = uint(sender, false);
    // The envelope itself is always created afresh, so the body value is a child of an init shape.
    const bodySize = body.size(value, keptAsIs(value, body.typeName, false));
    const size = uintFieldSize(PROTOCOL_VERSION) + bytesFieldSize(id) + uintFieldSize(from) + messageFieldSize(bodySize);
    const w = new Writer(size);
    w.uintField(1, PROTOCOL_VERSION);
    w.bytesField(2, id);
    w.uintField(3, from);
    w.header(bodyField, bodySize);
    body.write(w, value);
    // A size/write mismatch would otherwise send zero padding or a short message silently.
    if (w.pos !== size) throw new Error(`fast encoder wrote ${w.pos} bytes, sized ${size}`);
    return w.buf;
  } catch (e) {
    if (e === DECLINE) return undefined;
    throw e;
  }
}

/** The bytes of encodeClientMessage for a shareKeys or unmaskResponse body; undefined for any other. */
export function fastEncodeClientMessage(roundId: Uint8Array, sender: number, body: ClientBody): Uint8Array | undefined {
  // A nullish body is type-invalid, but create() takes it as "no body": protobuf-es's call.
  switch (body?.case) {
    case 'shareKeys':
      return encode(roundId, sender, 11, body.value, shareKeysCodec);
    case 'unmaskResponse':
      return encode(roundId, sender, 14, body.value, unmaskResponseCodec);
    default:
      return undefined;
  }
}

/** The bytes of encodeServerMessage for a keys or shares body; undefined for any other. */
export function fastEncodeServerMessage(roundId: Uint8Array, body: ServerBody): Uint8Array | undefined {
  switch (body?.case) {
    case 'keys':
      return encode(roundId, 0, 11, body.value, keysForYouCodec);
    case 'shares':
      return encode(roundId, 0, 12, body.value, sharesForYouCodec);
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding. Fields may come in any order, but only with the wire types the schema declares (protobuf-es
// reads some mismatched ones anyway), each singular field at most once (it would keep the last, or
// merge a second body), no unknown fields (it keeps them in $unknown), and every nested record must
// end exactly at its declared length (it only checks against the end of the whole input). Bytes
// fields are views into the input, as protobuf-es returns them.
//
// The envelope is read by peek.ts, which refuses what the fast path used to decline there (fields
// given twice, unknown fields). Repeated fields are counted against the caller's caps before each
// entry is read: more entries than the cap is ERR_SIZE, thrown after reading at most cap + 1 tags
// — at the same entry where peek.ts's scanBody, which vets the input for protobuf-es, would throw it.

class Reader {
  constructor(
    readonly buf: Uint8Array,
    public pos: number,
    /** End of the message being read; every read is bounded by it. */
    public limit: number,
  ) {}
  more(): boolean {
    return this.pos < this.limit;
  }
  /** A uint32 in at most 5 bytes. Longer encodings are legal but no encoder writes them. */
  varint(): number {
    let v = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (this.pos >= this.limit) throw DECLINE;
      const b = this.buf[this.pos++]!;
      v |= (b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
    if (this.pos >= this.limit) throw DECLINE;
    const b = this.buf[this.pos++]!;
    if (b > 0x0f) throw DECLINE; // continues, or exceeds 32 bits: protobuf-es truncates
    return (v | (b << 28)) >>> 0;
  }
  private length(): number {
    const n = this.varint();
    if (n > this.limit - this.pos) throw DECLINE;
    return n;
  }
  bytes(): Uint8Array {
    const n = this.length();
    const start = this.pos;
    this.pos = start + n;
    return this.buf.subarray(start, this.pos);
  }
  /** Enters a length-delimited record; returns the outer limit to restore with leave(). */
  enter(): number {
    const n = this.length();
    const outer = this.limit;
    this.limit = this.pos + n;
    return outer;
  }
  leave(outer: number): void {
    this.limit = outer;
  }
}

function once(seen: number, no: number): number {
  const bit = 1 << no;
  if ((seen & bit) !== 0) throw DECLINE;
  return seen | bit;
}

/** The (cap + 1)-th entry of a repeated field: the same error, in the same words, as scanBody's. */
function tooMany(field: string, cap: number): never {
  throw new SecAggError('ERR_SIZE', `secagg.v1.${field} has more than ${cap} entries`);
}

/** EncryptedShare or RevealedShare: uint32 = 1, bytes = 2. */
function readPair<T>(r: Reader, make: (id: number, b: Uint8Array) => T): T {
  const outer = r.enter();
  let seen = 0;
  let id = 0;
  let b = EMPTY;
  while (r.more()) {
    switch (r.varint()) {
      case (1 << 3) | VARINT:
        seen = once(seen, 1);
        id = r.varint();
        break;
      case (2 << 3) | LEN:
        seen = once(seen, 2);
        b = r.bytes();
        break;
      default:
        throw DECLINE;
    }
  }
  r.leave(outer);
  return make(id, b);
}
const encryptedShare = (peer: number, ciphertext: Uint8Array): EncryptedShare => ({ $typeName: ENCRYPTED_SHARE, peer, ciphertext });
const revealedShare = (owner: number, share: Uint8Array): RevealedShare => ({ $typeName: REVEALED_SHARE, owner, share });

function readNeighbourKeys(r: Reader): NeighbourKeys {
  const outer = r.enter();
  let seen = 0;
  let client = 0;
  let encryptionPublicKey = EMPTY;
  let maskingPublicKey = EMPTY;
  let signature = EMPTY;
  while (r.more()) {
    switch (r.varint()) {
      case (1 << 3) | VARINT:
        seen = once(seen, 1);
        client = r.varint();
        break;
      case (2 << 3) | LEN:
        seen = once(seen, 2);
        encryptionPublicKey = r.bytes();
        break;
      case (3 << 3) | LEN:
        seen = once(seen, 3);
        maskingPublicKey = r.bytes();
        break;
      case (4 << 3) | LEN:
        seen = once(seen, 4);
        signature = r.bytes();
        break;
      default:
        throw DECLINE;
    }
  }
  r.leave(outer);
  return { $typeName: NEIGHBOUR_KEYS, client, encryptionPublicKey, maskingPublicKey, signature };
}

// Body readers read up to r.limit, the end of the body.

function readShareKeys(r: Reader, caps: EntryCaps): ShareKeys {
  const cap = caps.maxNeighbours;
  let seen = 0;
  let selfMaskCommitment = EMPTY;
  const shares: EncryptedShare[] = [];
  while (r.more()) {
    switch (r.varint()) {
      case (1 << 3) | LEN:
        seen = once(seen, 1);
        selfMaskCommitment = r.bytes();
        break;
      case (2 << 3) | LEN:
        if (shares.length >= cap) tooMany('ShareKeys.shares', cap);
        shares.push(readPair(r, encryptedShare));
        break;
      default:
        throw DECLINE;
    }
  }
  return { $typeName: 'secagg.v1.ShareKeys', selfMaskCommitment, shares };
}

function readUnmaskResponse(r: Reader, caps: EntryCaps): UnmaskResponse {
  const cap = caps.maxNeighbours;
  const selfMaskShares: RevealedShare[] = [];
  const keyShares: RevealedShare[] = [];
  let seen = 0;
  let excessNoise = EMPTY;
  while (r.more()) {
    switch (r.varint()) {
      case (3 << 3) | LEN:
        seen = once(seen, 1);
        excessNoise = r.bytes();
        break;
      case (1 << 3) | LEN:
        if (selfMaskShares.length >= cap) tooMany('UnmaskResponse.self_mask_shares', cap);
        selfMaskShares.push(readPair(r, revealedShare));
        break;
      case (2 << 3) | LEN:
        if (keyShares.length >= cap) tooMany('UnmaskResponse.key_shares', cap);
        keyShares.push(readPair(r, revealedShare));
        break;
      default:
        throw DECLINE;
    }
  }
  return { $typeName: 'secagg.v1.UnmaskResponse', selfMaskShares, keyShares, excessNoise };
}

function readKeysForYou(r: Reader, caps: EntryCaps): KeysForYou {
  const idCap = caps.maxMembers;
  const cap = caps.maxNeighbours;
  let seen = 0;
  let graphSeed = EMPTY;
  const advertised: number[] = [];
  const neighbours: NeighbourKeys[] = [];
  while (r.more()) {
    switch (r.varint()) {
      case (1 << 3) | LEN:
        seen = once(seen, 1);
        graphSeed = r.bytes();
        break;
      case (2 << 3) | LEN: {
        // Packed; protobuf also allows several such records, and unpacked entries (below), all appended.
        const chunk = r.enter();
        while (r.more()) {
          if (advertised.length >= idCap) tooMany('KeysForYou.advertised', idCap);
          advertised.push(r.varint());
        }
        r.leave(chunk);
        break;
      }
      case (2 << 3) | VARINT:
        if (advertised.length >= idCap) tooMany('KeysForYou.advertised', idCap);
        advertised.push(r.varint());
        break;
      case (3 << 3) | LEN:
        if (neighbours.length >= cap) tooMany('KeysForYou.neighbours', cap);
        neighbours.push(readNeighbourKeys(r));
        break;
      default:
        // Including the view (field 4): active mode's view proof is left to protobuf-es.
        throw DECLINE;
    }
  }
  return { $typeName: 'secagg.v1.KeysForYou', graphSeed, advertised, neighbours };
}

function readSharesForYou(r: Reader, caps: EntryCaps): SharesForYou {
  const cap = caps.maxNeighbours;
  const shares: EncryptedShare[] = [];
  while (r.more()) {
    if (r.varint() !== ((1 << 3) | LEN)) throw DECLINE;
    if (shares.length >= cap) tooMany('SharesForYou.shares', cap);
    shares.push(readPair(r, encryptedShare));
  }
  return { $typeName: 'secagg.v1.SharesForYou', shares };
}

/** A decoded body: one of the kinds, never the empty case. */
export type DecodedClientBody = Extract<ClientMessage['body'], { case: ClientKind }>;
export type DecodedServerBody = Extract<ServerMessage['body'], { case: ServerKind }>;

function run<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (e) {
    if (e === DECLINE) return undefined;
    throw e;
  }
}

/**
 * fromBinary(<the kind's schema>, bytes.subarray(offset, offset + length)) as a body, for a
 * shareKeys or unmaskResponse body; undefined for any other kind or input it declines. Throws
 * ERR_SIZE when a repeated field has more entries than `caps` allow (nothing else).
 */
export function fastDecodeClientBody(
  kind: ClientKind,
  bytes: Uint8Array,
  offset: number,
  length: number,
  caps: EntryCaps = UNCAPPED,
): DecodedClientBody | undefined {
  const r = new Reader(bytes, offset, offset + length);
  switch (kind) {
    case 'shareKeys':
      return run(() => ({ case: kind, value: readShareKeys(r, caps) }));
    case 'unmaskResponse':
      return run(() => ({ case: kind, value: readUnmaskResponse(r, caps) }));
    default:
      return undefined;
  }
}

/** fastDecodeClientBody for a keys (without a view) or shares body. */
export function fastDecodeServerBody(
  kind: ServerKind,
  bytes: Uint8Array,
  offset: number,
  length: number,
  caps: EntryCaps = UNCAPPED,
): DecodedServerBody | undefined {
  const r = new Reader(bytes, offset, offset + length);
  switch (kind) {
    case 'keys':
      return run(() => ({ case: kind, value: readKeysForYou(r, caps) }));
    case 'shares':
      return run(() => ({ case: kind, value: readSharesForYou(r, caps) }));
    default:
      return undefined;
  }
}

/** The envelope as peek.ts reads it, or undefined where it refuses it. */
function peekOrDecline<P>(peek: (b: Uint8Array) => P, bytes: Uint8Array): P | undefined {
  try {
    return peek(bytes);
  } catch (e) {
    if (isSecAggError(e)) return undefined;
    throw e;
  }
}

/**
 * fromBinary(ClientMessageSchema, bytes) for a shareKeys or unmaskResponse body; else undefined
 * (also for an envelope peekClientBody refuses). With `caps`, ERR_SIZE as fastDecodeClientBody.
 */
export function fastDecodeClientMessage(bytes: Uint8Array, caps: EntryCaps = UNCAPPED): ClientMessage | undefined {
  const p = peekOrDecline(peekClientBody, bytes);
  const body = p && fastDecodeClientBody(p.kind, bytes, p.bodyOffset, p.bodyLength, caps);
  return p && body && { $typeName: 'secagg.v1.ClientMessage', version: p.version, roundId: p.roundId, sender: p.sender, body };
}

/** fromBinary(ServerMessageSchema, bytes) for a keys or shares body; else undefined. */
export function fastDecodeServerMessage(bytes: Uint8Array, caps: EntryCaps = UNCAPPED): ServerMessage | undefined {
  const p = peekOrDecline(peekServerBody, bytes);
  const body = p && fastDecodeServerBody(p.kind, bytes, p.bodyOffset, p.bodyLength, caps);
  return p && body && { $typeName: 'secagg.v1.ServerMessage', version: p.version, roundId: p.roundId, body };
}
