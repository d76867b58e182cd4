/**
 * wire/fast.ts against protobuf-es, the reference: the fast encoder's bytes equal toBinary(create())
 * for the four neighbour-sized messages and it declines everything else; the fast decoder equals
 * fromBinary on them, and on mutated or foreign input it either agrees with fromBinary or declines —
 * it never answers where protobuf-es throws or would decode differently. The codec keeps its errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import {
  ClientMessageSchema,
  EncryptedShareSchema,
  KeysForYouSchema,
  NeighbourKeysSchema,
  RevealedShareSchema,
  ServerMessageSchema,
  ShareKeysSchema,
  SharesForYouSchema,
  UnmaskResponseSchema,
  type ClientMessage,
  type ServerMessage,
} from '../src/wire/gen/secagg/v1/secagg_pb.js';
import {
  PROTOCOL_VERSION,
  decodeClientMessage,
  decodeServerMessage,
  encodeClientMessage,
  encodeServerMessage,
  type ClientBody,
  type ServerBody,
} from '../src/wire/codec.js';
import { fastDecodeClientMessage, fastDecodeServerMessage, fastEncodeClientMessage, fastEncodeServerMessage } from '../src/wire/fast.js';
import { isSecAggError, type SecAggErrorCode } from '../src/errors.js';

const RUNS = 300;

// ---- reference encodings ----

interface ClientCase {
  roundId: Uint8Array;
  sender: number;
  body: ClientBody;
}
interface ServerCase {
  roundId: Uint8Array;
  body: ServerBody;
}
const refClient = (m: ClientCase): Uint8Array =>
  toBinary(ClientMessageSchema, create(ClientMessageSchema, { version: PROTOCOL_VERSION, roundId: m.roundId, sender: m.sender, body: m.body }));
const refServer = (m: ServerCase): Uint8Array =>
  toBinary(ServerMessageSchema, create(ServerMessageSchema, { version: PROTOCOL_VERSION, roundId: m.roundId, body: m.body }));

// ---- arbitraries ----

/** Varint boundaries and the full uint32 range. */
const u32 = fc.oneof(
  fc.constantFrom(0, 1, 127, 128, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 2 ** 31, 2 ** 32 - 1),
  fc.integer({ min: 0, max: 2 ** 32 - 1 }),
);
/** Empty, short, and long enough for a two-byte length. */
const bytes = fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 48 }), fc.uint8Array({ minLength: 120, maxLength: 200 }));
const key = fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 32 }), bytes);
const signature = fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ minLength: 64, maxLength: 64 }));

/**
 * A nested value the way callers may pass it: a full init object, one with fields left out (they
 * default), or an already created message (protobuf-es then uses it as-is).
 */
function shape<S extends DescMessage>(schema: S, fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<object> {
  return fc.oneof(
    fc.record(fields),
    fc.record(fields, { requiredKeys: [] }),
    fc.record(fields).map((init) => create(schema, init as MessageInitShape<S>)),
  );
}
const entries = (arb: fc.Arbitrary<object>) => fc.oneof(fc.constant([]), fc.array(arb, { maxLength: 12 }));

const encryptedShare = shape(EncryptedShareSchema, { peer: u32, ciphertext: bytes });
const revealedShare = shape(RevealedShareSchema, { owner: u32, share: bytes });
const neighbour = shape(NeighbourKeysSchema, { client: u32, encryptionPublicKey: key, maskingPublicKey: key, signature });

const clientBody: fc.Arbitrary<ClientBody> = fc.oneof(
  shape(ShareKeysSchema, { selfMaskCommitment: bytes, shares: entries(encryptedShare) }).map((value) => ({ case: 'shareKeys', value }) as ClientBody),
  shape(UnmaskResponseSchema, { selfMaskShares: entries(revealedShare), keyShares: entries(revealedShare) }).map(
    (value) => ({ case: 'unmaskResponse', value }) as ClientBody,
  ),
);
const serverBody: fc.Arbitrary<ServerBody> = fc.oneof(
  shape(KeysForYouSchema, { graphSeed: bytes, advertised: fc.array(u32, { maxLength: 20 }), neighbours: entries(neighbour) }).map(
    (value) => ({ case: 'keys', value }) as ServerBody,
  ),
  shape(SharesForYouSchema, { shares: entries(encryptedShare) }).map((value) => ({ case: 'shares', value }) as ServerBody),
);
const roundId = fc.oneof(fc.uint8Array({ minLength: 16, maxLength: 16 }), bytes);
const clientCase: fc.Arbitrary<ClientCase> = fc.record({ roundId, sender: u32, body: clientBody });
const serverCase: fc.Arbitrary<ServerCase> = fc.record({ roundId, body: serverBody });

// ---- decoder agreement ----

const THREW = Symbol('threw');
function fromBinaryOrThrew<S extends DescMessage>(schema: S, b: Uint8Array): unknown {
  try {
    return fromBinary(schema, b);
  } catch {
    return THREW;
  }
}

/** The fast decoder's contract: if it answers, fromBinary succeeds with a deep-equal value. */
function agrees(fast: (b: Uint8Array) => ClientMessage | ServerMessage | undefined, schema: DescMessage, b: Uint8Array): boolean {
  const got = fast(b);
  const ref = fromBinaryOrThrew(schema, b);
  if (got !== undefined) {
    assert.notEqual(ref, THREW, 'fast decoder answered where fromBinary throws');
    assert.deepStrictEqual(got, ref);
  }
  return got !== undefined;
}

// ---- byte helpers (independent of the code under test) ----

function varint(v: number): number[] {
  const out: number[] = [];
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
}
function record(no: number, wireType: number, value: number, payload: Uint8Array): number[] {
  const tag = varint(((no << 3) | wireType) >>> 0);
  switch (wireType) {
    case 0:
      return [...tag, ...varint(value)];
    case 1:
      return [...tag, ...Array.from({ length: 8 }, (_, i) => payload[i] ?? i)];
    case 5:
      return [...tag, ...Array.from({ length: 4 }, (_, i) => payload[i] ?? i)];
    default:
      return [...tag, ...varint(payload.length), ...payload];
  }
}
/** Top-level records of a message that uses only varint and length-delimited fields. */
function splitRecords(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  const readVarint = (): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      const x = b[pos++];
      if (x === undefined) throw new Error('truncated varint');
      v += (x & 0x7f) * 2 ** shift;
      if (x < 0x80) return v;
    }
  };
  while (pos < b.length) {
    const start = pos;
    const tag = readVarint();
    const n = readVarint();
    if ((tag & 7) !== 0) pos += n;
    out.push(b.subarray(start, pos));
  }
  return out;
}
const concat = (parts: readonly Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => [...p]));

type Mutation =
  | { kind: 'flip'; at: number; value: number }
  | { kind: 'insert'; at: number; value: number }
  | { kind: 'delete'; at: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'append'; no: number; wireType: number; value: number; payload: Uint8Array };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), weight: 4 },
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  // Known field numbers too: a repeated singular field or a second body is not "unknown" but still
  // decodes differently (last wins, or merged) — the fast decoder must leave those to protobuf-es.
  fc.record({
    kind: fc.constant('append' as const),
    no: fc.integer({ min: 1, max: 16 }),
    wireType: fc.constantFrom(0, 1, 2, 5),
    value: u32,
    payload: fc.uint8Array({ maxLength: 12 }),
  }),
);

function mutate(b: Uint8Array, ms: readonly Mutation[]): Uint8Array {
  let out = [...b];
  for (const m of ms) {
    const at = out.length === 0 ? 0 : ('at' in m ? m.at : 0) % out.length;
    switch (m.kind) {
      case 'flip':
        if (out.length > 0) out[at] = out[at]! ^ (m.value || 1);
        break;
      case 'insert':
        out.splice(at, 0, m.value);
        break;
      case 'delete':
        out.splice(at, 1);
        break;
      case 'truncate':
        out = out.slice(0, at);
        break;
      case 'append':
        out.push(...record(m.no, m.wireType, m.value, m.payload));
        break;
    }
  }
  return Uint8Array.from(out);
}

// ---- encoder ----

test('fast encoder: byte-identical to toBinary(create()) for shareKeys and unmaskResponse', () => {
  fc.assert(
    fc.property(clientCase, (m) => {
      const fast = fastEncodeClientMessage(m.roundId, m.sender, m.body);
      assert.ok(fast !== undefined, 'the fast path declined a well-formed message');
      assert.deepStrictEqual(fast, refClient(m));
      assert.deepStrictEqual(encodeClientMessage(m.roundId, m.sender, m.body), fast);
    }),
    { numRuns: RUNS },
  );
});

test('fast encoder: byte-identical to toBinary(create()) for keys and shares', () => {
  fc.assert(
    fc.property(serverCase, (m) => {
      const fast = fastEncodeServerMessage(m.roundId, m.body);
      assert.ok(fast !== undefined, 'the fast path declined a well-formed message');
      assert.deepStrictEqual(fast, refServer(m));
      assert.deepStrictEqual(encodeServerMessage(m.roundId, m.body), fast);
    }),
    { numRuns: RUNS },
  );
});

test('fast encoder: round-sized messages (three-byte lengths, five-byte ids) are byte-identical', () => {
  const ct = new Uint8Array(112).map((_, i) => i);
  const ids = Array.from({ length: 499 }, (_, i) => (i % 2 === 0 ? i + 1 : 2 ** 32 - 1 - i));
  const shares = ids.map((peer) => ({ peer, ciphertext: ct }));
  const c: ClientCase = {
    roundId: new Uint8Array(16).fill(9),
    sender: 2 ** 32 - 1,
    body: { case: 'shareKeys', value: { selfMaskCommitment: ct.subarray(0, 32), shares } },
  };
  assert.deepStrictEqual(fastEncodeClientMessage(c.roundId, c.sender, c.body), refClient(c));
  const neighbours = ids.map((client) => ({
    client,
    encryptionPublicKey: ct.subarray(0, 32),
    maskingPublicKey: ct.subarray(32, 64),
    signature: ct.subarray(0, 64),
  }));
  const s: ServerCase = { roundId: c.roundId, body: { case: 'keys', value: { graphSeed: ct.subarray(0, 32), advertised: ids, neighbours } } };
  const bytesOut = fastEncodeServerMessage(s.roundId, s.body);
  assert.ok(bytesOut !== undefined && bytesOut.length > 2 ** 14 * 4);
  assert.deepStrictEqual(bytesOut, refServer(s));
  assert.deepStrictEqual(fastDecodeServerMessage(bytesOut), fromBinary(ServerMessageSchema, bytesOut));
});

test('fast encoder: declines other bodies', () => {
  const rid = new Uint8Array(16).fill(1);
  const k = new Uint8Array(32).fill(2);
  const clientBodies: ClientBody[] = [
    { case: 'advertiseKeys', value: { encryptionPublicKey: k, maskingPublicKey: k, signature: new Uint8Array(64) } },
    { case: 'maskedInput', value: { vector: new Uint8Array(40) } },
    { case: 'consistencySignature', value: { signature: new Uint8Array(64) } },
    { case: 'abort', value: { code: 'ERR_ABORTED' } },
  ];
  for (const body of clientBodies) {
    assert.equal(fastEncodeClientMessage(rid, 3, body), undefined, body.case);
    assert.deepStrictEqual(encodeClientMessage(rid, 3, body), refClient({ roundId: rid, sender: 3, body }));
  }
  const serverBodies: ServerBody[] = [
    { case: 'roundStart', value: { roundId: rid, bits: 20, dimension: 10, threshold: 2, degree: 0, cohort: [1, 2, 3] } },
    { case: 'consistencyRequest', value: { survivors: [1, 2, 3] } },
    { case: 'unmaskRequest', value: { survivors: [1, 2, 3], signatures: [{ client: 1, signature: new Uint8Array(64) }] } },
    { case: 'aborted', value: { code: 'ERR_ABORTED', reason: 'x' } },
  ];
  for (const body of serverBodies) {
    assert.equal(fastEncodeServerMessage(rid, body), undefined, body.case);
    assert.deepStrictEqual(encodeServerMessage(rid, body), refServer({ roundId: rid, body }));
  }
});

test('fast encoder: declines what toBinary(create()) rejects or encodes some other way', () => {
  const rid = new Uint8Array(16);
  const ct = new Uint8Array(8).fill(5);
  const shareKeys = (value: unknown): ClientBody => ({ case: 'shareKeys', value }) as ClientBody;
  // Not a uint32: protobuf-es throws.
  for (const bad of [-1, 1.5, 2 ** 32, Number.NaN]) {
    assert.equal(fastEncodeClientMessage(rid, bad, shareKeys({ shares: [] })), undefined);
    assert.throws(() => refClient({ roundId: rid, sender: bad, body: shareKeys({ shares: [] }) }));
    assert.equal(fastEncodeClientMessage(rid, 1, shareKeys({ shares: [{ peer: bad, ciphertext: ct }] })), undefined);
    assert.throws(() => refClient({ roundId: rid, sender: 1, body: shareKeys({ shares: [{ peer: bad, ciphertext: ct }] }) }));
    assert.equal(fastEncodeServerMessage(rid, { case: 'keys', value: { advertised: [1, bad] } }), undefined);
  }
  // A message used as-is whose children are not messages: toBinary throws.
  const foreign = shareKeys({ $typeName: 'secagg.v1.ShareKeys', selfMaskCommitment: ct, shares: [{ peer: 1, ciphertext: ct }] });
  assert.equal(fastEncodeClientMessage(rid, 1, foreign), undefined);
  assert.throws(() => refClient({ roundId: rid, sender: 1, body: foreign }));
  // A message used as-is with a field missing: toBinary throws.
  const missing = shareKeys({ shares: [{ $typeName: 'secagg.v1.EncryptedShare', peer: 1 }] });
  assert.equal(fastEncodeClientMessage(rid, 1, missing), undefined);
  assert.throws(() => refClient({ roundId: rid, sender: 1, body: missing }));
  // Bytes as number[]: create() converts them.
  const arrayBytes = shareKeys({ selfMaskCommitment: [1, 2, 3], shares: [] });
  assert.equal(fastEncodeClientMessage(rid, 1, arrayBytes), undefined);
  assert.deepStrictEqual(encodeClientMessage(rid, 1, arrayBytes), refClient({ roundId: rid, sender: 1, body: arrayBytes }));
  // null in an init object is the zero value, as in create().
  const nulls = shareKeys({
    selfMaskCommitment: null,
    shares: [
      { peer: null, ciphertext: null },
      { peer: 2, ciphertext: ct },
    ],
  });
  assert.deepStrictEqual(fastEncodeClientMessage(rid, 1, nulls), refClient({ roundId: rid, sender: 1, body: nulls }));
});

test('unknown fields at any depth: the encoder will not drop them, the fast decoder will not parse them, the codec refuses them', () => {
  const withUnknown = <T extends object>(m: T, no: number, value: number): T =>
    Object.assign(m, { $unknown: [{ no, wireType: 0, data: Uint8Array.from(varint(value)) }] });
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 5, max: 9 }), u32, (where, no, value) => {
      const ct = new Uint8Array(20).fill(3);
      const shares = [create(EncryptedShareSchema, { peer: 1, ciphertext: ct }), create(EncryptedShareSchema, { peer: 2, ciphertext: ct })];
      const body = create(SharesForYouSchema, { shares });
      if (where === 0) withUnknown(body, no, value);
      else withUnknown(shares[where - 1]!, no, value);
      const m: ServerCase = { roundId: new Uint8Array(16), body: { case: 'shares', value: body } };
      assert.equal(fastEncodeServerMessage(m.roundId, m.body), undefined);
      const b = refServer(m);
      assert.equal(fastDecodeServerMessage(b), undefined);
      assert.deepStrictEqual(encodeServerMessage(m.roundId, m.body), b);
      // A version-1 peer writes no unknown fields, and protobuf-es would allocate one $unknown entry
      // per field: the codec refuses them (wire/peek.ts).
      rejects(() => decodeServerMessage(b, b.length), 'ERR_DECODE');
    }),
    { numRuns: 50 },
  );
});

// ---- decoder ----

test('fast decoder: deep-equal to fromBinary on every encoding of the four kinds', () => {
  fc.assert(
    fc.property(clientCase, serverCase, (c, s) => {
      const cb = refClient(c);
      const fcm = fastDecodeClientMessage(cb);
      assert.ok(fcm !== undefined, 'the fast path declined a clean encoding');
      assert.deepStrictEqual(fcm, fromBinary(ClientMessageSchema, cb));
      const sb = refServer(s);
      const fs = fastDecodeServerMessage(sb);
      assert.ok(fs !== undefined, 'the fast path declined a clean encoding');
      assert.deepStrictEqual(fs, fromBinary(ServerMessageSchema, sb));
    }),
    { numRuns: RUNS },
  );
});

test('fast decoder: field order does not matter, as for protobuf-es', () => {
  fc.assert(
    fc.property(clientCase, serverCase, fc.nat(), (c, s, seed) => {
      for (const [b, fast, schema] of [
        [refClient(c), fastDecodeClientMessage, ClientMessageSchema],
        [refServer(s), fastDecodeServerMessage, ServerMessageSchema],
      ] as const) {
        const parts = splitRecords(b);
        const shuffled = parts.map((p, i) => ({ p, k: (i * 7919 + seed) % 104729 })).sort((x, y) => x.k - y.k);
        assert.ok(agrees(fast, schema, concat(shuffled.map((x) => x.p))), 'declined a reordered clean encoding');
      }
    }),
    { numRuns: 100 },
  );
});

test('fast decoder: unpacked and split advertised ids are appended, as protobuf allows', () => {
  const graphSeed = [0x0a, 2, 7, 7];
  const unpacked = [0x10, ...varint(5), 0x10, ...varint(2 ** 32 - 1)];
  const packed = [0x12, 3, ...varint(300), 0];
  const empty = [0x12, 0];
  const neighbour = [0x1a, 2, 0x08, 9];
  const body = [...graphSeed, ...unpacked, ...packed, ...empty, ...neighbour, ...unpacked];
  const b = Uint8Array.from([0x08, 1, 0x5a, ...varint(body.length), ...body]);
  assert.ok(agrees(fastDecodeServerMessage, ServerMessageSchema, b));
  const m = fastDecodeServerMessage(b)!;
  assert.equal(m.body.case, 'keys');
  assert.deepEqual(m.body.case === 'keys' && m.body.value.advertised, [5, 2 ** 32 - 1, 300, 0, 5, 2 ** 32 - 1]);
});

test('fast decoder: on mutated encodings it agrees with fromBinary or declines', () => {
  let accepted = 0;
  let declined = 0;
  fc.assert(
    fc.property(clientCase, serverCase, fc.array(mutation, { minLength: 1, maxLength: 3 }), (c, s, ms) => {
      const cb = mutate(refClient(c), ms);
      const sb = mutate(refServer(s), ms);
      for (const ok of [
        agrees(fastDecodeClientMessage, ClientMessageSchema, cb),
        agrees(fastDecodeServerMessage, ServerMessageSchema, sb),
        // The other side's decoder on the same bytes: the wire format does not name the schema.
        agrees(fastDecodeServerMessage, ServerMessageSchema, cb),
        agrees(fastDecodeClientMessage, ClientMessageSchema, sb),
      ])
        if (ok) accepted++;
        else declined++;
    }),
    { numRuns: 1000 },
  );
  // Both outcomes must actually occur, or the property above checked nothing.
  assert.ok(accepted > 100, `accepted ${accepted}`);
  assert.ok(declined > 100, `declined ${declined}`);
});

test('fast decoder: declines other bodies and messages without a body', () => {
  const rid = new Uint8Array(16).fill(1);
  const k = new Uint8Array(32).fill(2);
  const client: ClientBody[] = [
    { case: 'advertiseKeys', value: { encryptionPublicKey: k, maskingPublicKey: k } },
    { case: 'maskedInput', value: { vector: new Uint8Array(40) } },
    { case: 'consistencySignature', value: { signature: new Uint8Array(64) } },
    { case: 'abort', value: { code: 'ERR_ABORTED' } },
  ];
  for (const body of client) assert.equal(fastDecodeClientMessage(refClient({ roundId: rid, sender: 3, body })), undefined, body.case);
  const server: ServerBody[] = [
    { case: 'roundStart', value: { roundId: rid, bits: 20, dimension: 10, threshold: 2, cohort: [1, 2, 3] } },
    { case: 'consistencyRequest', value: { survivors: [1, 2, 3] } },
    { case: 'unmaskRequest', value: { survivors: [1, 2, 3] } },
    { case: 'aborted', value: { code: 'ERR_ABORTED', reason: 'x' } },
  ];
  for (const body of server) assert.equal(fastDecodeServerMessage(refServer({ roundId: rid, body })), undefined, body.case);
  const noBody = toBinary(ClientMessageSchema, create(ClientMessageSchema, { version: 1, roundId: rid, sender: 3 }));
  assert.equal(fastDecodeClientMessage(noBody), undefined);
  assert.equal(fastDecodeServerMessage(new Uint8Array(0)), undefined);
  // A second body, even of a fast kind, would be merged by protobuf-es.
  const twice = concat([
    refClient({ roundId: rid, sender: 3, body: { case: 'shareKeys', value: { shares: [{ peer: 1 }] } } }),
    Uint8Array.of(0x5a, 2, 0x0a, 0),
  ]);
  assert.equal(fastDecodeClientMessage(twice), undefined);
  assert.equal((fromBinary(ClientMessageSchema, twice).body.value as { shares: unknown[] }).shares.length, 1);
});

// ---- codec ----

function rejects(fn: () => unknown, code: SecAggErrorCode): void {
  assert.throws(fn, (e: unknown) => isSecAggError(e, code));
}

test('codec: the fast kinds decode as before, and keep their errors', () => {
  const rid = new Uint8Array(16).fill(4);
  const body: ClientBody = {
    case: 'shareKeys',
    value: { selfMaskCommitment: new Uint8Array(32).fill(1), shares: [{ peer: 2, ciphertext: new Uint8Array(112) }] },
  };
  const good = encodeClientMessage(rid, 7, body);
  assert.deepStrictEqual(decodeClientMessage(good, good.length), fromBinary(ClientMessageSchema, good));
  rejects(() => decodeClientMessage(good, good.length - 1), 'ERR_TOO_BIG');
  rejects(() => decodeClientMessage(good.subarray(0, good.length - 3), good.length), 'ERR_DECODE');
  for (const version of [0, 2, 2 ** 32 - 1]) {
    const b = toBinary(ClientMessageSchema, create(ClientMessageSchema, { version, roundId: rid, sender: 7, body }));
    assert.notEqual(fastDecodeClientMessage(b), undefined, 'the fast path itself does not judge the version');
    rejects(() => decodeClientMessage(b, b.length), 'ERR_VERSION');
  }
  const noBody = toBinary(ClientMessageSchema, create(ClientMessageSchema, { version: PROTOCOL_VERSION, roundId: rid, sender: 7 }));
  rejects(() => decodeClientMessage(noBody, noBody.length), 'ERR_DECODE');

  const sbody: ServerBody = { case: 'shares', value: { shares: [{ peer: 2, ciphertext: new Uint8Array(112) }] } };
  const sgood = encodeServerMessage(rid, sbody);
  assert.deepStrictEqual(decodeServerMessage(sgood, sgood.length), fromBinary(ServerMessageSchema, sgood));
  rejects(() => decodeServerMessage(sgood, sgood.length - 1), 'ERR_TOO_BIG');
  rejects(() => decodeServerMessage(sgood.subarray(0, sgood.length - 1), sgood.length), 'ERR_DECODE');
  const sv2 = toBinary(ServerMessageSchema, create(ServerMessageSchema, { version: 2, roundId: rid, body: sbody }));
  rejects(() => decodeServerMessage(sv2, sv2.length), 'ERR_VERSION');
  const sNoBody = toBinary(ServerMessageSchema, create(ServerMessageSchema, { version: PROTOCOL_VERSION, roundId: rid }));
  rejects(() => decodeServerMessage(sNoBody, sNoBody.length), 'ERR_DECODE');
});
