/**
 * A seeded, reproducible mutator for protobuf-encoded inputs, shared by the decoder fuzzer
 * (test/fuzz/harness.ts, bench/fuzz.ts) and anything else that wants hostile variants of real
 * messages (e.g. the protocol state machines' handlers).
 *
 * Byte-level mutations (bit flips, interesting bytes, insert, delete, truncate, duplicate a range,
 * random bytes) find framing bugs; structural ones work on the message parsed as a tree of records
 * and re-serialise it with correct lengths — so they reach the code behind the framing: fields
 * spliced in from other messages, records duplicated (up to thousands of times: caps on repeated
 * fields), deleted, reordered or re-tagged, varints replaced by boundary values, non-minimal
 * encodings, and lengths blown up or shrunk on purpose.
 */
import { concatBytes } from '../../src/bytes.js';

/** sfc32: small, fast, seeded; uint32 outputs. Not for anything secret. */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.next();
  }
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  /** Uniform in [0, n). */
  below(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.next() / 4294967296) * n);
  }
  chance(p: number): boolean {
    return this.next() / 4294967296 < p;
  }
  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new RangeError('pick from an empty list');
    return xs[this.below(xs.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.next() & 0xff;
    return out;
  }
  /** A new generator derived from this one (for independent streams). */
  fork(): Prng {
    return new Prng(this.next());
  }
}

// ---- varints (independent of the code under test) ----

export function varint(v: number): number[] {
  const out: number[] = [];
  let x = v;
  while (x >= 0x80) {
    out.push((x % 128) | 0x80);
    x = Math.floor(x / 128);
  }
  out.push(x);
  return out;
}

/** `v` padded to `size` bytes with continuation bits (a legal but non-minimal encoding). */
function paddedVarint(v: number, size: number): number[] {
  const out = varint(v);
  if (out.length >= size) return out;
  out[out.length - 1]! |= 0x80;
  while (out.length < size - 1) out.push(0x80);
  out.push(0);
  return out;
}

const INTERESTING_VALUES = [
  0,
  1,
  2,
  3,
  0x7f,
  0x80,
  0xff,
  0x3fff,
  0x4000,
  0xffff,
  65535,
  65536,
  2 ** 21,
  2 ** 28,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 35,
  2 ** 53 - 1,
];
const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x10, 0x12, 0x1a, 0x22, 0x52, 0x5a, 0x62, 0x82];

// ---- a tolerant record tree ----

/** One record: its tag and either a varint, fixed bytes, or a length-delimited payload (maybe a nested message). */
export interface Rec {
  no: number;
  wt: number;
  /** Wire type 0: the value. */
  value: number;
  /** Wire types 1, 2, 5: the raw payload (for 2, unless `children`). */
  raw: Uint8Array;
  /** Wire type 2 when the payload parses as records itself. */
  children: Rec[] | undefined;
  /** Serialisation quirks set by mutations: a padded tag, a wrong length, a padded length. */
  tagSize?: number;
  lengthDelta?: number;
  lengthOverride?: number;
  lengthSize?: number;
  valueSize?: number;
}

function readVarint(b: Uint8Array, pos: number, end: number): [number, number] | undefined {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) return undefined;
    const x = b[pos++]!;
    v += (x & 0x7f) * mul;
    mul *= 128;
    if (x < 0x80) return [v, pos];
  }
  return undefined;
}

/** Parses bytes[start, end) as records; undefined if they do not frame exactly. Nested up to `depth`. */
export function parse(b: Uint8Array, start = 0, end = b.length, depth = 4): Rec[] | undefined {
  const out: Rec[] = [];
  let pos = start;
  while (pos < end) {
    const t = readVarint(b, pos, end);
    if (t === undefined) return undefined;
    const [tag, p1] = t;
    const no = Math.floor(tag / 8);
    const wt = tag % 8;
    if (no === 0) return undefined;
    pos = p1;
    if (wt === 0) {
      const v = readVarint(b, pos, end);
      if (v === undefined) return undefined;
      out.push({ no, wt, value: v[0], raw: EMPTY, children: undefined });
      pos = v[1];
    } else if (wt === 1 || wt === 5) {
      const n = wt === 1 ? 8 : 4;
      if (pos + n > end) return undefined;
      out.push({ no, wt, value: 0, raw: b.subarray(pos, pos + n), children: undefined });
      pos += n;
    } else if (wt === 2) {
      const l = readVarint(b, pos, end);
      if (l === undefined || l[1] + l[0] > end) return undefined;
      const raw = b.subarray(l[1], l[1] + l[0]);
      const children = depth > 0 && raw.length > 0 ? parse(b, l[1], l[1] + l[0], depth - 1) : undefined;
      out.push({ no, wt, value: 0, raw, children });
      pos = l[1] + l[0];
    } else return undefined;
  }
  return out;
}

const EMPTY = new Uint8Array(0);

/** A growable byte buffer. */
class Out {
  buf = new Uint8Array(256);
  pos = 0;
  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }
  varint(v: number, size = 0): void {
    const bytes = size > 0 ? paddedVarint(v, size) : varint(v);
    this.room(bytes.length);
    for (const x of bytes) this.buf[this.pos++] = x;
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

/** The bytes of a record's content (a nested message re-serialised, with its quirks). */
function payloadOf(r: Rec): Uint8Array {
  if (!r.children) return r.raw;
  const inner = new Out();
  serialiseInto(r.children, inner);
  return inner.buf.subarray(0, inner.pos);
}

function serialiseInto(recs: readonly Rec[], out: Out): void {
  for (const r of recs) {
    out.varint(r.no * 8 + r.wt, r.tagSize);
    if (r.wt === 0) out.varint(r.value, r.valueSize);
    else if (r.wt === 2) {
      const payload = payloadOf(r);
      const len = r.lengthOverride ?? Math.max(0, payload.length + (r.lengthDelta ?? 0));
      out.varint(len, r.lengthSize);
      out.bytes(payload);
    } else out.bytes(r.raw);
  }
}

export function serialise(recs: readonly Rec[]): Uint8Array {
  const out = new Out();
  serialiseInto(recs, out);
  return out.buf.subarray(0, out.pos);
}

/** Roughly how many bytes a record takes (for keeping repeated copies under the size cap). */
function approxSize(r: Rec): number {
  return 2 + (r.wt === 0 ? 5 : r.children ? r.children.reduce((a, c) => a + approxSize(c), 3) : r.raw.length + 3);
}

/** Every list of records in the tree (the top level and each nested message), for picking a place. */
function lists(recs: Rec[], out: Rec[][] = []): Rec[][] {
  out.push(recs);
  for (const r of recs) if (r.children) lists(r.children, out);
  return out;
}
function allRecords(recs: readonly Rec[], out: Rec[] = []): Rec[] {
  for (const r of recs) {
    out.push(r);
    if (r.children) allRecords(r.children, out);
  }
  return out;
}
function cloneRec(r: Rec): Rec {
  return { ...r, children: r.children?.map(cloneRec) };
}

// ---- mutations ----

export const MUTATIONS = [
  'bitflip',
  'byte',
  'insert',
  'delete',
  'truncate',
  'duplicate-range',
  'random',
  'splice',
  'duplicate-record',
  'repeat-record',
  'delete-record',
  'swap-records',
  'retag',
  'varint-value',
  'length-blowup',
  'non-minimal',
] as const;
export type MutationName = (typeof MUTATIONS)[number];

export interface MutateOptions {
  /** Outputs are cut to this many bytes (default 32 KiB). */
  readonly maxBytes?: number;
  /** Mutations applied in a row: 1..maxSteps (default 3). */
  readonly maxSteps?: number;
}

function byteMutation(rng: Prng, b: Uint8Array, name: MutationName, donors: readonly Uint8Array[]): Uint8Array {
  const at = rng.below(b.length + 1);
  switch (name) {
    case 'bitflip': {
      if (b.length === 0) return b;
      const out = b.slice();
      const flips = 1 + rng.below(3);
      for (let i = 0; i < flips; i++) {
        const j = rng.below(out.length);
        out[j] = out[j]! ^ (1 << rng.below(8));
      }
      return out;
    }
    case 'byte': {
      if (b.length === 0) return Uint8Array.of(rng.pick(INTERESTING_BYTES));
      const out = b.slice();
      out[rng.below(out.length)] = rng.chance(0.5) ? rng.pick(INTERESTING_BYTES) : rng.next() & 0xff;
      return out;
    }
    case 'insert': {
      const ins = rng.chance(0.5) ? Uint8Array.of(rng.pick(INTERESTING_BYTES)) : rng.bytes(1 + rng.below(8));
      return concat([b.subarray(0, at), ins, b.subarray(at)]);
    }
    case 'delete': {
      const n = 1 + rng.below(Math.min(16, Math.max(1, b.length - at)));
      return concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + n))]);
    }
    case 'truncate':
      return b.subarray(0, rng.below(b.length + 1));
    case 'duplicate-range': {
      const n = 1 + rng.below(Math.max(1, Math.min(64, b.length - at)));
      const piece = b.subarray(at, at + n);
      const times = 1 + rng.below(8);
      return concat([b.subarray(0, at + n), ...Array.from({ length: times }, () => piece), b.subarray(at + n)]);
    }
    case 'random':
      return rng.chance(0.2) && donors.length > 0
        ? // the head of a real message, the rest random
          concat([rng.pick(donors).subarray(0, 1 + rng.below(8)), rng.bytes(rng.below(64))])
        : rng.bytes(rng.below(rng.chance(0.9) ? 64 : 2048));
    default:
      return b;
  }
}

/** A structural mutation; undefined when the input does not parse as records. */
function structuralMutation(rng: Prng, b: Uint8Array, name: MutationName, donors: readonly Uint8Array[], maxBytes: number): Uint8Array | undefined {
  const tree = parse(b);
  if (tree === undefined || tree.length === 0) return undefined;
  const places = lists(tree);
  const records = allRecords(tree);
  const list = rng.pick(places);
  switch (name) {
    case 'splice': {
      const donor = donors.length > 0 ? parse(rng.pick(donors)) : undefined;
      if (!donor || donor.length === 0) return undefined;
      const piece = cloneRec(rng.pick(allRecords(donor)));
      list.splice(rng.below(list.length + 1), 0, piece);
      break;
    }
    case 'duplicate-record': {
      if (list.length === 0) return undefined;
      const i = rng.below(list.length);
      list.splice(rng.below(list.length + 1), 0, cloneRec(list[i]!));
      break;
    }
    case 'repeat-record': {
      // Many copies of one record in place: repeated-field caps, size limits.
      if (list.length === 0) return undefined;
      const i = rng.below(list.length);
      const wanted = rng.chance(0.7) ? 2 + rng.below(16) : 16 + rng.below(4000);
      const times = Math.max(2, Math.min(wanted, Math.floor(maxBytes / approxSize(list[i]!))));
      const copies = Array.from({ length: times }, () => list[i]!);
      list.splice(i, 0, ...copies);
      break;
    }
    case 'delete-record': {
      if (list.length === 0) return undefined;
      list.splice(rng.below(list.length), 1);
      break;
    }
    case 'swap-records': {
      if (list.length < 2) return undefined;
      const i = rng.below(list.length);
      const j = rng.below(list.length);
      [list[i], list[j]] = [list[j]!, list[i]!];
      break;
    }
    case 'retag': {
      const r = rng.pick(records);
      if (rng.chance(0.5)) r.no = rng.chance(0.7) ? Math.max(1, r.no + rng.below(5) - 2) : 1 + rng.below(40);
      else {
        const wt = rng.pick([0, 1, 2, 3, 4, 5, 6, 7]);
        // Keep the record serialisable: a new wire type gets a payload of its own kind.
        if (wt !== r.wt) {
          r.wt = wt;
          r.children = undefined;
          r.raw = wt === 1 ? rng.bytes(8) : wt === 5 ? rng.bytes(4) : wt === 2 ? rng.bytes(rng.below(8)) : EMPTY;
          r.value = rng.pick(INTERESTING_VALUES);
        }
      }
      break;
    }
    case 'varint-value': {
      const vs = records.filter((r) => r.wt === 0);
      if (vs.length === 0) return undefined;
      rng.pick(vs).value = rng.chance(0.8) ? rng.pick(INTERESTING_VALUES) : rng.next();
      break;
    }
    case 'length-blowup': {
      const ls = records.filter((r) => r.wt === 2);
      if (ls.length === 0) return undefined;
      const r = rng.pick(ls);
      const choice = rng.below(4);
      if (choice === 0) r.lengthDelta = rng.pick([1, -1, 2, -2, 16, -16]);
      else if (choice === 1) r.lengthOverride = rng.pick([2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 35, 1 << 24, 65536]);
      else if (choice === 2)
        r.lengthSize = 5 + rng.below(6); // padded to 5..10 bytes
      else r.lengthOverride = rng.below(1 << 20);
      break;
    }
    case 'non-minimal': {
      const r = rng.pick(records);
      const size = 2 + rng.below(9);
      if (rng.chance(0.4)) r.tagSize = size;
      else if (r.wt === 0) r.valueSize = size;
      else if (r.wt === 2) r.lengthSize = size;
      else r.tagSize = size;
      break;
    }
    default:
      return undefined;
  }
  return serialise(tree);
}

const concat = (parts: readonly Uint8Array[]): Uint8Array => concatBytes(...parts);

const BYTE_LEVEL: ReadonlySet<MutationName> = new Set(['bitflip', 'byte', 'insert', 'delete', 'truncate', 'duplicate-range', 'random']);

/**
 * One hostile variant of `input`: 1..maxSteps mutations, each picked at random; `donors` supply
 * fields to splice in. Deterministic for a given generator state. Returns the mutations applied too.
 */
export function mutate(rng: Prng, input: Uint8Array, donors: readonly Uint8Array[], options: MutateOptions = {}): { bytes: Uint8Array; steps: MutationName[] } {
  const maxBytes = options.maxBytes ?? 1 << 15;
  const steps: MutationName[] = [];
  let b = input;
  const n = 1 + rng.below(options.maxSteps ?? 3);
  for (let i = 0; i < n; i++) {
    const name = rng.pick(MUTATIONS);
    const out = BYTE_LEVEL.has(name) ? byteMutation(rng, b, name, donors) : structuralMutation(rng, b, name, donors, maxBytes);
    if (out === undefined) continue;
    steps.push(name);
    b = out.length > maxBytes ? out.subarray(0, maxBytes) : out;
  }
  if (steps.length === 0) {
    b = byteMutation(rng, b, 'bitflip', donors);
    steps.push('bitflip');
  }
  return { bytes: b, steps };
}
