/**
 * Looking at untrusted bytes before decoding them.
 *
 * `peekClientBody` / `peekServerBody` read only the top-level fields of a ClientMessage /
 * ServerMessage — version = 1, round_id = 2, sender = 3 (client messages) and the body oneof,
 * fields 10..16 — and say which body the message carries and where, without touching the body. A
 * receiver can then refuse a kind that does not belong to its stage, or that is larger than that
 * kind can be in this round, before anything proportional to the input is allocated.
 *
 * `scanBody` walks a body without building it: every field known to the schema with the wire type
 * it declares, each singular field at most once, every nested record ending exactly at its length,
 * and every repeated field counted against its cap as it goes, so that a 4 MB run of 2-byte entries
 * is refused after cap + 1 entries. It runs before protobuf-es's fromBinary, which would otherwise
 * allocate one object per entry (or per unknown field, in `$unknown`) before anyone could count.
 *
 * What both refuse that protobuf (and fromBinary) would accept, as ERR_DECODE:
 * - a field that occurs twice where the schema has it once — the envelope's version, round id,
 *   sender or body (a second body of the same kind would be merged into the first, of another kind
 *   would replace it), or a singular field of a body. Our encoders never write a field twice; a
 *   peer that does is either broken or hoping two parsers disagree about what it sent.
 * - unknown fields and groups: a version-1 peer writes none, and protobuf-es keeps each one as an
 *   object in `$unknown`, so two bytes of input would buy an allocation.
 * - a field with a wire type other than the schema's (protobuf-es reads some of those anyway),
 *   tags and lengths longer than 5 bytes or above 2^32 − 1, and nested records that overrun.
 * The full decoders (codec.ts) go through both, so all of them agree on what is refused.
 */
import type { DescField, DescMessage } from '@bufbuild/protobuf';
import { SecAggError } from '../errors.js';
import { ClientMessageSchema, ServerMessageSchema, type ClientMessage, type ServerMessage } from './gen/secagg/v1/secagg_pb.js';

/** The body kinds of a client→server message: 'advertiseKeys', 'shareKeys', …, 'abort', 'viewSignature'. */
export type ClientKind = NonNullable<ClientMessage['body']['case']>;
/** The body kinds of a server→client message: 'roundStart', 'keys', …, 'aborted', 'viewRequest'. */
export type ServerKind = NonNullable<ServerMessage['body']['case']>;

/**
 * Caps on repeated fields, by what their length is bounded by in an honest round: one entry per
 * neighbour (encrypted shares, revealed shares, neighbour keys, neighbours' view signatures), or one
 * per cohort member (id lists — cohort, advertised, survivors — seed commitments and reveals, and
 * the survivors' signatures). Packed id lists count their ids.
 */
export interface EntryCaps {
  /** Most entries of any per-neighbour list: the largest realised neighbourhood k. */
  readonly maxNeighbours: number;
  /** Most entries of any per-member list: the cohort size n. */
  readonly maxMembers: number;
}

/** No caps: what the uncapped decoders use. */
export const UNCAPPED: EntryCaps = { maxNeighbours: Number.POSITIVE_INFINITY, maxMembers: Number.POSITIVE_INFINITY };

/** Where a message's body is, and the envelope's scalar fields. */
export interface PeekedBody<K extends string> {
  readonly kind: K;
  /** The version field as protobuf-es reads it (0 when absent). */
  readonly version: number;
  /** A view into the input (empty when absent). */
  readonly roundId: Uint8Array;
  /** Client messages only; 0 when absent and always 0 for server messages. */
  readonly sender: number;
  /** The body's encoded content: bytes[bodyOffset, bodyOffset + bodyLength). */
  readonly bodyOffset: number;
  readonly bodyLength: number;
}

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

function fail(what: string): never {
  throw new SecAggError('ERR_DECODE', what);
}

/** A cursor over the input; every read is bounded by an explicit end. */
class Cursor {
  constructor(
    readonly buf: Uint8Array,
    public pos: number,
  ) {}

  /** A tag or a length: at most 5 bytes and below 2^32, as protobuf-es requires of tags. */
  u32(end: number): number {
    let v = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (this.pos >= end) fail('truncated varint');
      const b = this.buf[this.pos++]!;
      v |= (b & 0x7f) << shift;
      if (b < 0x80) return v >>> 0;
    }
    if (this.pos >= end) fail('truncated varint');
    const b = this.buf[this.pos++]!;
    if (b > 0x0f) fail('varint exceeds 32 bits');
    return (v | (b << 28)) >>> 0;
  }

  /** A varint value as protobuf-es reads a uint32 field: at most 10 bytes, the low 32 bits kept. */
  value(end: number): number {
    let v = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= end) fail('truncated varint');
      const b = this.buf[this.pos++]!;
      if (i < 4) v |= (b & 0x7f) << (7 * i);
      else if (i === 4) v |= (b & 0x0f) << 28;
      if (b < 0x80) return v >>> 0;
    }
    return fail('varint longer than 10 bytes');
  }

  /** A length prefix whose record fits before `end`; returns the length. */
  length(end: number): number {
    const n = this.u32(end);
    if (n > end - this.pos) fail('length exceeds the message');
    return n;
  }

  /** Skips one value of wire type `wt` (not a group). */
  skip(wt: number, end: number): void {
    switch (wt) {
      case VARINT:
        this.value(end);
        return;
      case I64:
      case I32: {
        const n = wt === I64 ? 8 : 4;
        if (n > end - this.pos) fail('truncated fixed-width value');
        this.pos += n;
        return;
      }
      case LEN: {
        const n = this.length(end); // read before this.pos is, unlike `this.pos += this.length(end)`
        this.pos += n;
        return;
      }
      default:
        fail(`wire type ${wt} is not used by this schema`);
    }
  }
}

/** Body field number − 10 → body kind, read from the generated schema. */
function bodyKinds<K extends string>(schema: DescMessage): readonly (K | undefined)[] {
  const oneof = schema.oneofs.find((o) => o.name === 'body');
  if (oneof === undefined) throw new Error(`${schema.typeName} has no body oneof`);
  const out: (K | undefined)[] = [];
  for (const f of oneof.fields) {
    if (f.number < 10 || f.number > 40) throw new Error(`${schema.typeName}.${f.name}: body fields are numbered 10..40`);
    out[f.number - 10] = f.localName as K;
  }
  return out;
}
const CLIENT_KINDS = bodyKinds<ClientKind>(ClientMessageSchema);
const SERVER_KINDS = bodyKinds<ServerKind>(ServerMessageSchema);

/** Every client body kind, in field-number order. */
export const clientKinds: readonly ClientKind[] = CLIENT_KINDS.filter((k): k is ClientKind => k !== undefined);
/** Every server body kind, in field-number order. */
export const serverKinds: readonly ServerKind[] = SERVER_KINDS.filter((k): k is ServerKind => k !== undefined);

function peek<K extends string>(bytes: Uint8Array, kinds: readonly (K | undefined)[], withSender: boolean, what: string): PeekedBody<K> {
  if (!(bytes instanceof Uint8Array)) fail(`${what} is not bytes`);
  const end = bytes.length;
  const c = new Cursor(bytes, 0);
  let seen = 0;
  let version = 0;
  let roundStart = 0;
  let roundEnd = 0;
  let sender = 0;
  let kind: K | undefined;
  let bodyOffset = 0;
  let bodyLength = 0;
  const once = (bit: number, name: string): void => {
    if ((seen & bit) !== 0) fail(`${what} has its ${name} twice`);
    seen |= bit;
  };
  while (c.pos < end) {
    const tag = c.u32(end);
    const no = tag >>> 3;
    const wt = tag & 7;
    if (no === 1 && wt === VARINT) {
      once(1, 'version');
      version = c.value(end);
    } else if (no === 2 && wt === LEN) {
      once(2, 'round id');
      const n = c.length(end);
      roundStart = c.pos;
      roundEnd = c.pos += n;
    } else if (no === 3 && wt === VARINT && withSender) {
      once(4, 'sender');
      sender = c.value(end);
    } else if (no >= 10 && wt === LEN && kinds[no - 10] !== undefined) {
      // One body, of whatever kind: protobuf would merge a second one into the first, or let it
      // replace a first of another kind.
      once(8, 'body');
      kind = kinds[no - 10];
      bodyLength = c.length(end);
      bodyOffset = c.pos;
      c.pos += bodyLength;
    } else fail(`${what} has an unknown field ${no} (wire type ${wt})`);
  }
  if (kind === undefined) fail(`${what} has no body`);
  return { kind, version, roundId: bytes.subarray(roundStart, roundEnd), sender, bodyOffset, bodyLength };
}

/**
 * The body kind of a ClientMessage and where its body is, from the envelope alone: O(number of
 * top-level fields), nothing allocated in proportion to the input. Throws ERR_DECODE for a malformed
 * envelope, an unknown top-level field, a field given twice, or no body.
 *
 * @example
 * ```ts
 * const { kind, bodyLength } = peekClientBody(bytes); // e.g. 'shareKeys', 4211
 * ```
 */
export function peekClientBody(bytes: Uint8Array): PeekedBody<ClientKind> {
  return peek(bytes, CLIENT_KINDS, true, 'client message');
}

/** peekClientBody for a ServerMessage (which has no sender field). */
export function peekServerBody(bytes: Uint8Array): PeekedBody<ServerKind> {
  return peek(bytes, SERVER_KINDS, false, 'server message');
}

// ---------------------------------------------------------------------------------------------
// Body pre-scan, driven by the generated schema so that a field added to the .proto is covered.

/** What each repeated field's length is bounded by (see EntryCaps). Keyed by `type.field` (proto names). */
export const REPEATED_FIELD_CAPS: Readonly<Record<string, keyof EntryCaps>> = {
  'secagg.v1.RoundParameters.cohort': 'maxMembers',
  'secagg.v1.ShareKeys.shares': 'maxNeighbours',
  'secagg.v1.UnmaskResponse.self_mask_shares': 'maxNeighbours',
  'secagg.v1.UnmaskResponse.key_shares': 'maxNeighbours',
  'secagg.v1.ViewRequest.advertised': 'maxMembers',
  'secagg.v1.ViewRequest.seed_commitments': 'maxMembers',
  'secagg.v1.ViewProof.seed_reveals': 'maxMembers',
  'secagg.v1.ViewProof.view_signatures': 'maxMembers',
  'secagg.v1.ViewProof.member_keys': 'maxMembers',
  'secagg.v1.KeysForYou.advertised': 'maxMembers',
  'secagg.v1.KeysForYou.neighbours': 'maxNeighbours',
  'secagg.v1.SharesForYou.shares': 'maxNeighbours',
  'secagg.v1.ConsistencyRequest.survivors': 'maxMembers',
  'secagg.v1.UnmaskRequest.survivors': 'maxMembers',
  'secagg.v1.UnmaskRequest.signatures': 'maxMembers',
};

/**
 * The cap a repeated field is counted against. A repeated field missing from REPEATED_FIELD_CAPS
 * (added to the schema since) is held to the per-neighbour cap, the tighter one in SecAgg+;
 * test/wire-checked.test.ts walks the schema so that every repeated field gets its own entry.
 */
function capOf(typeName: string, field: string): keyof EntryCaps {
  return REPEATED_FIELD_CAPS[`${typeName}.${field}`] ?? 'maxNeighbours';
}

interface FieldRule {
  readonly name: string;
  /** Wire type of one element. */
  readonly wire: number;
  readonly repeated: boolean;
  /** A repeated number: a length-delimited record of packed elements is accepted too. */
  readonly packable: boolean;
  /** Singular fields (oneof members share one): the bit in the message's `seen` mask. */
  readonly bit: number;
  /** Repeated fields: index of the field's counter. */
  readonly slot: number;
  readonly cap: keyof EntryCaps;
  /** Set for message fields, lazily (a schema may refer to a message before it is compiled). */
  readonly child: DescMessage | undefined;
}
interface MessageRule {
  readonly typeName: string;
  /** Indexed by field number. */
  readonly fields: readonly (FieldRule | undefined)[];
  readonly repeatedCount: number;
}

const rules = new WeakMap<DescMessage, MessageRule>();

function wireOf(f: DescField): number {
  const scalar = f.fieldKind === 'scalar' || (f.fieldKind === 'list' && f.listKind === 'scalar') ? f.scalar : undefined;
  if (f.fieldKind === 'enum' || (f.fieldKind === 'list' && f.listKind === 'enum')) return VARINT;
  if (scalar === undefined) return LEN; // messages
  switch (scalar) {
    case 9: // string
    case 12: // bytes
      return LEN;
    case 1: // double
    case 6: // fixed64
    case 16: // sfixed64
      return I64;
    case 2: // float
    case 7: // fixed32
    case 15: // sfixed32
      return I32;
    default:
      return VARINT;
  }
}

function ruleOf(schema: DescMessage): MessageRule {
  const known = rules.get(schema);
  if (known !== undefined) return known;
  const fields: (FieldRule | undefined)[] = [];
  const oneofBits = new Map<string, number>();
  let bits = 0;
  let slots = 0;
  for (const f of schema.fields) {
    if (f.fieldKind === 'map') throw new Error(`${schema.typeName}.${f.name}: maps are not supported by the pre-scan`);
    if ((f.fieldKind === 'message' || (f.fieldKind === 'list' && f.listKind === 'message')) && f.delimitedEncoding)
      throw new Error(`${schema.typeName}.${f.name}: groups are not supported by the pre-scan`);
    if (f.number > 1024) throw new Error(`${schema.typeName}.${f.name}: field numbers above 1024 are not supported by the pre-scan`);
    const repeated = f.fieldKind === 'list';
    let bit = 0;
    if (!repeated) {
      const shared = f.oneof === undefined ? undefined : oneofBits.get(f.oneof.name);
      if (shared !== undefined) bit = shared;
      else {
        if (bits === 30) throw new Error(`${schema.typeName}: more than 30 singular fields`);
        bit = 1 << bits++;
        if (f.oneof !== undefined) oneofBits.set(f.oneof.name, bit);
      }
    }
    const wire = wireOf(f);
    fields[f.number] = {
      name: f.name,
      wire,
      repeated,
      packable: repeated && wire !== LEN,
      bit,
      slot: repeated ? slots++ : -1,
      cap: capOf(schema.typeName, f.name),
      child: f.fieldKind === 'message' || (f.fieldKind === 'list' && f.listKind === 'message') ? f.message : undefined,
    };
  }
  const rule: MessageRule = { typeName: schema.typeName, fields, repeatedCount: slots };
  rules.set(schema, rule);
  return rule;
}

function tooMany(rule: MessageRule, f: FieldRule, cap: number): never {
  throw new SecAggError('ERR_SIZE', `${rule.typeName}.${f.name} has more than ${cap} entries`);
}

/** Deeper than any message of this schema nests (ServerMessage → KeysForYou → ViewProof → SurvivorSignature). */
const MAX_DEPTH = 16;

function scanMessage(schema: DescMessage, c: Cursor, end: number, caps: EntryCaps, depth: number): void {
  if (depth > MAX_DEPTH) fail('messages nested too deep');
  const rule = ruleOf(schema);
  // One small array per message with repeated fields; the entries themselves have none.
  const counts = rule.repeatedCount === 0 ? undefined : new Array<number>(rule.repeatedCount).fill(0);
  let seen = 0;
  while (c.pos < end) {
    const tag = c.u32(end);
    const no = tag >>> 3;
    const wt = tag & 7;
    const f = rule.fields[no];
    if (f === undefined) fail(`${rule.typeName} has an unknown field ${no} (wire type ${wt})`);
    if (!f.repeated) {
      if (wt !== f.wire) fail(`${rule.typeName}.${f.name} has wire type ${wt}`);
      if ((seen & f.bit) !== 0) fail(`${rule.typeName}.${f.name} is given twice`);
      seen |= f.bit;
    } else {
      const cap = caps[f.cap];
      let count = counts![f.slot]!;
      if (wt === LEN && f.packable) {
        // Packed: count the elements as they are skipped; the last must end with the record.
        const n = c.length(end);
        const stop = c.pos + n;
        while (c.pos < stop) {
          if (count >= cap) tooMany(rule, f, cap);
          c.skip(f.wire, stop);
          count++;
        }
        counts![f.slot] = count;
        continue;
      }
      if (wt !== f.wire) fail(`${rule.typeName}.${f.name} has wire type ${wt}`);
      // Counted at the tag, before the entry is even read.
      if (count >= cap) tooMany(rule, f, cap);
      counts![f.slot] = count + 1;
    }
    if (f.child !== undefined) {
      const n = c.length(end);
      const stop = c.pos + n;
      scanMessage(f.child, c, stop, caps, depth + 1);
    } else c.skip(wt, end);
  }
  if (c.pos !== end) fail(`${rule.typeName} overruns its record`);
}

/**
 * Checks the encoded `schema` message in bytes[offset, offset + length) against the schema and the
 * caps without building it (see the file comment). Throws ERR_DECODE or ERR_SIZE; returns nothing.
 * O(number of fields), allocates O(1) per message with repeated fields, nothing per entry.
 */
export function scanBody(schema: DescMessage, bytes: Uint8Array, offset: number, length: number, caps: EntryCaps): void {
  const end = offset + length;
  if (!(offset >= 0 && length >= 0 && end <= bytes.length)) throw new RangeError('scanBody: the range is outside the input');
  scanMessage(schema, new Cursor(bytes, offset), end, caps, 0);
}

/** The message type of each body kind, from the generated schema. */
function bodySchemas(schema: DescMessage): ReadonlyMap<string, DescMessage> {
  const out = new Map<string, DescMessage>();
  for (const f of schema.oneofs.find((o) => o.name === 'body')!.fields) if (f.fieldKind === 'message') out.set(f.localName, f.message);
  return out;
}
const CLIENT_BODY_SCHEMAS = bodySchemas(ClientMessageSchema);
const SERVER_BODY_SCHEMAS = bodySchemas(ServerMessageSchema);

/** The message type of a client body kind, e.g. ShareKeysSchema for 'shareKeys'. */
export function clientBodySchema(kind: ClientKind): DescMessage {
  return CLIENT_BODY_SCHEMAS.get(kind)!;
}
/** The message type of a server body kind. */
export function serverBodySchema(kind: ServerKind): DescMessage {
  return SERVER_BODY_SCHEMAS.get(kind)!;
}
