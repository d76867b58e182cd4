/**
 * Decode-after-check (wire/peek.ts, decode*Checked in wire/codec.ts): the envelope is read without
 * the body, a kind the stage does not expect is refused before anything is decoded, each kind has
 * its own byte limit, and repeated fields are counted against their caps before their entries are
 * built — by the fast decoder and by the pre-scan in front of protobuf-es alike, which agree on
 * every decision. Every refusal is a SecAggError with a code from ERROR_CODES.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { fromBinary, toBinary, create, type DescMessage } from '@bufbuild/protobuf';
import { ERROR_CODES, SecAggError, isSecAggError, type SecAggErrorCode } from '../src/errors.js';
import { clientMessageLimits, entryCaps, serverMessageLimits } from '../src/protocol/limits.js';
import {
  decodeClientMessage,
  decodeClientMessageChecked,
  decodeServerMessage,
  decodeServerMessageChecked,
  encodeClientMessage,
  type CheckedDecodeOptions,
} from '../src/wire/codec.js';
import { fastDecodeClientBody, fastDecodeServerBody } from '../src/wire/fast.js';
import { ClientMessageSchema, ServerMessageSchema } from '../src/wire/gen/secagg/v1/secagg_pb.js';
import {
  REPEATED_FIELD_CAPS,
  clientBodySchema,
  clientKinds,
  peekClientBody,
  peekServerBody,
  scanBody,
  serverBodySchema,
  serverKinds,
  type ClientKind,
  type EntryCaps,
  type ServerKind,
} from '../src/wire/peek.js';
import { buildCorpus, configOf } from './fuzz/corpus.js';
import { Prng, mutate, varint } from './fuzz/mutate.js';

const corpus = buildCorpus(11);
const config = configOf({ clients: 9, degree: 4, bits: 16, dimension: 20, mode: 'active' });
const CL = clientMessageLimits(config);
const SL = serverMessageLimits(config);
const CAPS = entryCaps(config); // k = 4, n = 9
const RID = config.roundId;

function code(fn: () => unknown): SecAggErrorCode | 'accepted' {
  try {
    fn();
    return 'accepted';
  } catch (e) {
    assert.ok(e instanceof SecAggError, `not a SecAggError: ${String(e)}`);
    assert.ok((ERROR_CODES as readonly string[]).includes(e.code), e.code);
    return e.code;
  }
}
function rejects(fn: () => unknown, c: SecAggErrorCode, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => isSecAggError(e, c) && (message === undefined || message.test(e.message)));
}

// ---- raw encodings (independent of the code under test) ----

const bytesOf = (...parts: (number[] | Uint8Array)[]): Uint8Array => {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const ld = (no: number, payload: number[] | Uint8Array): Uint8Array => bytesOf(varint(no * 8 + 2), varint(payload.length), payload);
const vi = (no: number, v: number): number[] => [...varint(no * 8), ...varint(v)];
/** A client envelope: version 1, the round id, sender 3, then `rest` (body records and anything else). */
const clientEnv = (...rest: (number[] | Uint8Array)[]): Uint8Array => bytesOf(vi(1, 1), ld(2, RID), vi(3, 3), ...rest);
const serverEnv = (...rest: (number[] | Uint8Array)[]): Uint8Array => bytesOf(vi(1, 1), ld(2, RID), ...rest);
const BODY: Record<ClientKind, number> = {
  advertiseKeys: 10,
  shareKeys: 11,
  maskedInput: 12,
  consistencySignature: 13,
  unmaskResponse: 14,
  abort: 15,
  viewSignature: 16,
};
const SBODY: Record<ServerKind, number> = { roundStart: 10, keys: 11, shares: 12, consistencyRequest: 13, unmaskRequest: 14, aborted: 15, viewRequest: 16 };

/** The checked options for a client message of one allowed kind, with this round's limits and caps. */
const only = (kind: ClientKind, extra: Partial<CheckedDecodeOptions<ClientKind>> = {}): CheckedDecodeOptions<ClientKind> => ({
  maxBytes: CL,
  allowed: (k) => k === kind,
  ...CAPS,
  ...extra,
});
const onlyServer = (kind: ServerKind, extra: Partial<CheckedDecodeOptions<ServerKind>> = {}): CheckedDecodeOptions<ServerKind> => ({
  maxBytes: SL,
  allowed: (k) => k === kind,
  ...CAPS,
  ...extra,
});

// ---- peek ----

test('peek: the kind, the body range and the envelope of every corpus message, as fromBinary sees them', () => {
  for (const { kind, bytes } of corpus.client) {
    const p = peekClientBody(bytes);
    const ref = fromBinary(ClientMessageSchema, bytes);
    assert.equal(p.kind, kind);
    assert.equal(p.version, ref.version);
    assert.equal(p.sender, ref.sender);
    assert.deepEqual(p.roundId, ref.roundId);
    assert.deepEqual(bytes.subarray(p.bodyOffset, p.bodyOffset + p.bodyLength), toBinary(clientBodySchema(kind), ref.body.value!));
  }
  for (const { kind, bytes } of corpus.server) {
    const p = peekServerBody(bytes);
    const ref = fromBinary(ServerMessageSchema, bytes);
    assert.equal(p.kind, kind);
    assert.equal(p.sender, 0);
    assert.deepEqual(bytes.subarray(p.bodyOffset, p.bodyOffset + p.bodyLength), toBinary(serverBodySchema(kind), ref.body.value!));
  }
  assert.deepEqual(clientKinds, ['advertiseKeys', 'shareKeys', 'maskedInput', 'consistencySignature', 'unmaskResponse', 'abort', 'viewSignature']);
  assert.deepEqual(serverKinds, ['roundStart', 'keys', 'shares', 'consistencyRequest', 'unmaskRequest', 'aborted', 'viewRequest']);
});

test('peek: never reads the body — 4 MB of garbage in it are skipped by its length', () => {
  const garbage = new Uint8Array(4 << 20).fill(0xff);
  const b = clientEnv(ld(BODY.maskedInput, garbage));
  const p = peekClientBody(b);
  assert.equal(p.kind, 'maskedInput');
  assert.equal(p.bodyLength, garbage.length);
  const s = peekServerBody(serverEnv(ld(SBODY.shares, garbage)));
  assert.equal(s.kind, 'shares');
});

test('peek: a field given twice, an unknown field, a wrong wire type, no body, truncation — ERR_DECODE everywhere', () => {
  const body = ld(BODY.abort, ld(1, new TextEncoder().encode('ERR_ABORTED')));
  const good = clientEnv(body);
  assert.equal(peekClientBody(good).kind, 'abort');
  const cases: [string, Uint8Array][] = [
    ['version twice', bytesOf(vi(1, 1), good)],
    ['round id twice', bytesOf(ld(2, RID), good)],
    ['sender twice', bytesOf(good, vi(3, 4))],
    ['body twice, same kind (protobuf would merge)', bytesOf(good, body)],
    ['body twice, other kind (protobuf: last wins)', bytesOf(good, ld(BODY.maskedInput, ld(1, [1, 2])))],
    ['unknown field', bytesOf(good, vi(5, 1))],
    ['unknown length-delimited field', bytesOf(good, ld(9, [1]))],
    ['field number 0', bytesOf([0x00], good)],
    ['a group', bytesOf(good, [0x2b, 0x2c])],
    ['version as length-delimited', bytesOf(ld(1, [1]), ld(2, RID), vi(3, 3), body)],
    ['body as varint', bytesOf(vi(1, 1), ld(2, RID), vi(BODY.abort, 1))],
    ['no body', bytesOf(vi(1, 1), ld(2, RID), vi(3, 3))],
    ['empty', new Uint8Array(0)],
    ['truncated body', good.subarray(0, good.length - 1)],
    ['truncated tag', bytesOf(good, [0x80])],
    ['6-byte tag', bytesOf(good, [0xf8, 0xff, 0xff, 0xff, 0xff, 0x01])],
    ['length beyond the end', bytesOf(vi(1, 1), [0x12, 0xff, 0xff, 0xff, 0xff, 0x0f])],
  ];
  for (const [what, b] of cases) {
    rejects(() => peekClientBody(b), 'ERR_DECODE');
    rejects(() => decodeClientMessage(b, 1 << 20), 'ERR_DECODE');
    rejects(() => decodeClientMessageChecked(b, only('abort')), 'ERR_DECODE');
    assert.equal(
      code(() => decodeClientMessageChecked(b, only('abort', { fastPath: false }))),
      'ERR_DECODE',
      what,
    );
  }
  // protobuf-es itself takes the duplicates: the codec is deliberately stricter.
  const merged = fromBinary(ClientMessageSchema, bytesOf(good, ld(BODY.maskedInput, ld(1, [1, 2]))));
  assert.equal(merged.body.case, 'maskedInput');
  // A sender in a server message is an unknown field there.
  rejects(() => peekServerBody(bytesOf(vi(3, 3), serverEnv(ld(SBODY.aborted, [])))), 'ERR_DECODE');
  // Not bytes at all.
  for (const bad of ['x', null, undefined, [1, 2], new ArrayBuffer(4), new Uint16Array(2)] as unknown[]) {
    rejects(() => peekClientBody(bad as Uint8Array), 'ERR_DECODE');
    rejects(() => decodeClientMessageChecked(bad as Uint8Array, only('abort')), 'ERR_DECODE');
    rejects(() => decodeServerMessageChecked(bad as Uint8Array, onlyServer('aborted')), 'ERR_DECODE');
  }
});

test('peek: values as protobuf-es reads them (10-byte varints keep the low 32 bits), non-minimal encodings accepted', () => {
  // version = 1 written in 10 bytes with high bits set, sender in a padded 5-byte varint.
  const version = [0x08, 0x81, 0x80, 0x80, 0x80, 0xf0, 0xff, 0xff, 0xff, 0xff, 0x01];
  const sender = [0x18, 0x83, 0x80, 0x80, 0x80, 0x00];
  const b = bytesOf(version, ld(2, RID), sender, ld(BODY.consistencySignature, ld(1, new Uint8Array(64))));
  const ref = fromBinary(ClientMessageSchema, b);
  const p = peekClientBody(b);
  assert.equal(p.version, ref.version);
  assert.equal(p.sender, ref.sender);
  assert.deepStrictEqual(decodeClientMessageChecked(b, only('consistencySignature')), ref);
});

// ---- the order of the checks ----

test('a kind the stage does not expect is refused as ERR_STAGE_MISMATCH without being decoded', () => {
  // Bodies that would be ERR_DECODE (or ERR_SIZE) if anyone decoded them: an unterminated varint
  // all the way; for the fast kinds, too many entries.
  const garbage = new Uint8Array(CL.maskedInput - 100).fill(0xff);
  for (const kind of clientKinds) {
    const b = clientEnv(ld(BODY[kind], garbage));
    if (b.length > CL.maskedInput) continue;
    const seen: ClientKind[] = [];
    const opts = only('advertiseKeys', { allowed: (k) => (seen.push(k), k === (kind === 'advertiseKeys' ? 'abort' : 'advertiseKeys')) });
    rejects(() => decodeClientMessageChecked(b, opts), 'ERR_STAGE_MISMATCH', new RegExp(kind));
    assert.deepEqual(seen, [kind], 'asked once, about the peeked kind');
    // Allowed (and given room), the same bytes are decoded — and refused as what they are.
    const allowed = code(() => decodeClientMessageChecked(b, { ...only(kind), maxBytes: () => b.length }));
    assert.ok(allowed === 'ERR_DECODE' || allowed === 'ERR_SIZE', `${kind}: ${allowed}`);
  }
  for (const kind of serverKinds) {
    const b = serverEnv(ld(SBODY[kind], garbage));
    rejects(() => decodeServerMessageChecked(b, onlyServer(kind === 'aborted' ? 'keys' : 'aborted', { maxBytes: () => b.length })), 'ERR_STAGE_MISMATCH');
    const allowed = code(() => decodeServerMessageChecked(b, onlyServer(kind, { maxBytes: () => b.length })));
    assert.ok(allowed === 'ERR_DECODE' || allowed === 'ERR_SIZE', `${kind}: ${allowed}`);
  }
});

test('each kind has its own byte limit: over it is ERR_TOO_BIG ("exceeds"), checked after the stage, before decoding', () => {
  for (const kind of clientKinds) {
    const limit = CL[kind];
    // Just fits (content: garbage, so decoding would say ERR_DECODE), one byte more does not.
    const head = clientEnv().length + 1 + varint(limit).length;
    for (const extra of [0, 1]) {
      const b = clientEnv(ld(BODY[kind], new Uint8Array(limit - head + extra).fill(0xff)));
      if (b.length !== limit + extra) continue; // the length varint changed size: skip this corner
      const got = code(() => decodeClientMessageChecked(b, only(kind)));
      if (extra === 1) rejects(() => decodeClientMessageChecked(b, only(kind)), 'ERR_TOO_BIG', /exceeds/);
      else assert.ok(got === 'ERR_DECODE' || got === 'ERR_SIZE' || got === 'ERR_TOO_BIG' || got === 'accepted', `${kind}: ${got}`);
      // Stage first: the same oversized bytes, not allowed, are a stage mismatch.
      if (extra === 1 && b.length <= Math.max(...Object.values(CL)))
        rejects(() => decodeClientMessageChecked(b, only(kind === 'abort' ? 'shareKeys' : 'abort')), 'ERR_STAGE_MISMATCH');
    }
  }
  // Above the largest limit of any kind: ERR_TOO_BIG before the envelope is even read.
  const largest = Math.max(...Object.values(CL));
  const huge = new Uint8Array(largest + 1).fill(0xff);
  rejects(() => decodeClientMessageChecked(huge, only('maskedInput')), 'ERR_TOO_BIG', /exceeds/);
  rejects(() => decodeServerMessageChecked(new Uint8Array(Math.max(...Object.values(SL)) + 1), onlyServer('keys')), 'ERR_TOO_BIG', /exceeds/);
  // The old single-limit decoders refuse the same way.
  const honest = corpus.client.find((x) => x.kind === 'shareKeys')!.bytes;
  rejects(() => decodeClientMessage(honest, honest.length - 1), 'ERR_TOO_BIG', /exceeds/);
});

test('another protocol version is ERR_VERSION, before the stage and size checks', () => {
  const b = bytesOf(vi(1, 2), ld(2, RID), vi(3, 3), ld(BODY.maskedInput, new Uint8Array(10)));
  rejects(() => decodeClientMessageChecked(b, only('abort')), 'ERR_VERSION');
  rejects(() => decodeClientMessage(b, 1000), 'ERR_VERSION');
  const s = bytesOf(ld(2, RID), ld(SBODY.aborted, [])); // version absent = 0
  rejects(() => decodeServerMessageChecked(s, onlyServer('keys')), 'ERR_VERSION');
});

// ---- caps on repeated fields ----

/** `count` copies of one record, then 4 MB that would be ERR_DECODE if read. */
function repeatedThenGarbage(record: Uint8Array, count: number, garbageBytes = 4 << 20): Uint8Array {
  const out = new Uint8Array(record.length * count + garbageBytes);
  for (let i = 0; i < count; i++) out.set(record, i * record.length);
  out.fill(0xff, record.length * count);
  return out;
}

test('4 MB of 2-byte empty share entries: ERR_SIZE, on the fast path and the protobuf-es path', () => {
  const entries = new Uint8Array(4 << 20);
  new Uint16Array(entries.buffer).fill(0x0012); // 0x12 0x00: ShareKeys.shares = {}, 2M times
  const b = clientEnv(ld(BODY.shareKeys, entries));
  // The limit is no help here (a masked input may be this large): the caps are.
  const opts = only('shareKeys', { maxBytes: () => b.length });
  for (const fastPath of [true, false]) rejects(() => decodeClientMessageChecked(b, { ...opts, fastPath }), 'ERR_SIZE', /more than 4 entries/);
  // The envelope of the same bytes, peeked: one body of 4 MB.
  assert.equal(peekClientBody(b).bodyLength, entries.length);
});

test('the decoders stop at entry cap + 1: entries after it are garbage and are never read', () => {
  const k = CAPS.maxNeighbours;
  const n = CAPS.maxMembers;
  const emptyEntry = (no: number) => ld(no, []);
  const client: [ClientKind, Uint8Array][] = [
    ['shareKeys', repeatedThenGarbage(emptyEntry(2), k + 1)],
    ['unmaskResponse', repeatedThenGarbage(emptyEntry(1), k + 1)],
    ['unmaskResponse', repeatedThenGarbage(emptyEntry(2), k + 1)],
  ];
  for (const [kind, body] of client) {
    const b = clientEnv(ld(BODY[kind], body));
    for (const fastPath of [true, false]) rejects(() => decodeClientMessageChecked(b, only(kind, { maxBytes: () => b.length, fastPath })), 'ERR_SIZE');
    // One entry fewer and the garbage is read: ERR_DECODE.
    const under = clientEnv(ld(BODY[kind], repeatedThenGarbage(body.subarray(0, 2), k, 8)));
    for (const fastPath of [true, false])
      rejects(() => decodeClientMessageChecked(under, only(kind, { maxBytes: () => under.length, fastPath })), 'ERR_DECODE');
  }
  const packedIds = (count: number) => ld(2, bytesOf(...Array.from({ length: count }, (_, i) => varint(60000 + i))));
  const server: [ServerKind, Uint8Array][] = [
    ['keys', repeatedThenGarbage(emptyEntry(3), k + 1)], // neighbours
    ['keys', bytesOf(packedIds(n + 1), new Uint8Array(1 << 20).fill(0xff))], // advertised, packed
    ['keys', repeatedThenGarbage(Uint8Array.from(vi(2, 7)), n + 1)], // advertised, unpacked
    ['keys', bytesOf(packedIds(3), Uint8Array.from(vi(2, 7)), packedIds(n - 3), vi(2, 8), new Uint8Array(1 << 20).fill(0xff))], // mixed, summed
    ['keys', bytesOf(ld(4, repeatedThenGarbage(emptyEntry(2), n + 1, 64)))], // view.view_signatures (protobuf-es path)
    ['keys', bytesOf(ld(4, repeatedThenGarbage(emptyEntry(3), n + 1, 64)))], // view.member_keys
    ['keys', bytesOf(ld(4, repeatedThenGarbage(emptyEntry(1), n + 1, 64)))], // view.seed_reveals
    ['shares', repeatedThenGarbage(emptyEntry(1), k + 1)],
    ['consistencyRequest', bytesOf(ld(1, bytesOf(...Array.from({ length: n + 1 }, () => [5]))), new Uint8Array(1 << 20).fill(0xff))],
    ['unmaskRequest', repeatedThenGarbage(emptyEntry(2), n + 1)],
    ['unmaskRequest', repeatedThenGarbage(Uint8Array.from(vi(1, 9)), n + 1)],
    ['roundStart', repeatedThenGarbage(Uint8Array.from(vi(7, 9)), n + 1)],
    ['viewRequest', repeatedThenGarbage(emptyEntry(3), n + 1)],
    ['viewRequest', repeatedThenGarbage(Uint8Array.from(vi(2, 1)), n + 1)],
  ];
  for (const [kind, body] of server) {
    const b = serverEnv(ld(SBODY[kind], body));
    for (const fastPath of [true, false])
      rejects(() => decodeServerMessageChecked(b, onlyServer(kind, { maxBytes: () => b.length, fastPath })), 'ERR_SIZE', /more than \d+ entries/);
  }
  // The fast decoders and the pre-scan directly: the same refusal, not a decline.
  const sk = repeatedThenGarbage(emptyEntry(2), k + 1);
  rejects(() => fastDecodeClientBody('shareKeys', sk, 0, sk.length, CAPS), 'ERR_SIZE');
  rejects(() => scanBody(clientBodySchema('shareKeys'), sk, 0, sk.length, CAPS), 'ERR_SIZE');
  // Under the cap, the fast decoder declines the garbage (protobuf-es's call), the pre-scan refuses it.
  const under = repeatedThenGarbage(emptyEntry(2), k, 8);
  assert.equal(fastDecodeClientBody('shareKeys', under, 0, under.length, CAPS), undefined);
  rejects(() => scanBody(clientBodySchema('shareKeys'), under, 0, under.length, CAPS), 'ERR_DECODE');
  const sfy = repeatedThenGarbage(emptyEntry(1), k + 1);
  rejects(() => fastDecodeServerBody('shares', sfy, 0, sfy.length, CAPS), 'ERR_SIZE');
  rejects(() => scanBody(serverBodySchema('shares'), sfy, 0, sfy.length, CAPS), 'ERR_SIZE');
});

test('caps are exact: cap entries are accepted, cap + 1 are not, per field', () => {
  const k = CAPS.maxNeighbours;
  const share = (peer: number) => ld(2, bytesOf(vi(1, peer), ld(2, new Uint8Array(112))));
  const body = (m: number) => bytesOf(ld(1, new Uint8Array(32)), ...Array.from({ length: m }, (_, i) => share(i + 1)));
  for (const fastPath of [true, false]) {
    const ok = clientEnv(ld(BODY.shareKeys, body(k)));
    assert.equal(decodeClientMessageChecked(ok, only('shareKeys', { fastPath })).body.value?.$typeName, 'secagg.v1.ShareKeys');
    rejects(() => decodeClientMessageChecked(clientEnv(ld(BODY.shareKeys, body(k + 1))), only('shareKeys', { fastPath, maxBytes: () => 1 << 20 })), 'ERR_SIZE');
  }
  // UnmaskResponse: each of its two lists has the cap.
  const rs = (no: number, m: number) => Array.from({ length: m }, (_, i) => ld(no, bytesOf(vi(1, i + 1), ld(2, new Uint8Array(44)))));
  const both = clientEnv(ld(BODY.unmaskResponse, bytesOf(...rs(1, k), ...rs(2, k))));
  for (const fastPath of [true, false]) {
    const m = decodeClientMessageChecked(both, only('unmaskResponse', { fastPath, maxBytes: () => both.length }));
    assert.equal(m.body.case === 'unmaskResponse' && m.body.value.keyShares.length, k);
  }
});

test('every repeated field of the schema has its own cap', () => {
  const seen = new Set<string>();
  const walk = (m: DescMessage): void => {
    if (seen.has(m.typeName)) return;
    seen.add(m.typeName);
    for (const f of m.fields) {
      if (f.fieldKind === 'list') assert.ok(`${m.typeName}.${f.name}` in REPEATED_FIELD_CAPS, `${m.typeName}.${f.name} has no entry in REPEATED_FIELD_CAPS`);
      if (f.fieldKind === 'message' || (f.fieldKind === 'list' && f.listKind === 'message')) walk(f.message);
    }
  };
  walk(ClientMessageSchema);
  walk(ServerMessageSchema);
  for (const key of Object.keys(REPEATED_FIELD_CAPS)) assert.ok(seen.has(key.slice(0, key.lastIndexOf('.'))), `stale entry ${key}`);
});

// ---- the fast path and the protobuf-es path agree ----

type Outcome = { ok: true; value: unknown } | { ok: false; code: SecAggErrorCode };
function outcome(fn: () => unknown): Outcome {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    assert.ok(e instanceof SecAggError, `untyped error: ${String(e)}`);
    assert.ok((ERROR_CODES as readonly string[]).includes(e.code));
    return { ok: false, code: e.code };
  }
}
function sameOutcome(a: Outcome, b: Outcome, what: string): void {
  if (a.ok && b.ok) assert.ok(isDeepStrictEqual(a.value, b.value), `${what}: values differ`);
  else assert.deepEqual(a.ok ? 'accepted' : a.code, b.ok ? 'accepted' : b.code, what);
}

const allKinds = { allowed: () => true } as const;
const capSets: EntryCaps[] = [CAPS, { maxNeighbours: 2, maxMembers: 3 }, { maxNeighbours: 1e9, maxMembers: 1e9 }];

test('fast path and protobuf-es path: the same decision (and value) on every mutated input, and accepted values equal fromBinary', () => {
  const tally = new Map<string, number>();
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
      const rng = new Prng(seed);
      const input = mutate(rng, rng.pick(corpus.all), corpus.all, { maxSteps: rng.pick([1, 1, 2, 3]) }).bytes;
      const caps = rng.pick(capSets);
      const c = { maxBytes: () => 1 << 20, ...allKinds, ...caps };
      const s = { maxBytes: () => 1 << 20, ...allKinds, ...caps };
      const pairs: [string, Outcome, Outcome][] = [
        ['client', outcome(() => decodeClientMessageChecked(input, c)), outcome(() => decodeClientMessageChecked(input, { ...c, fastPath: false }))],
        ['server', outcome(() => decodeServerMessageChecked(input, s)), outcome(() => decodeServerMessageChecked(input, { ...s, fastPath: false }))],
      ];
      for (const [what, fast, ref] of pairs) {
        sameOutcome(fast, ref, what);
        const key = `${what}:${fast.ok ? 'accepted' : fast.code}`;
        tally.set(key, (tally.get(key) ?? 0) + 1);
        // Stricter than protobuf-es, never different: whatever is accepted is what fromBinary returns.
        if (fast.ok)
          assert.ok(
            isDeepStrictEqual(fast.value, fromBinary(what === 'client' ? ClientMessageSchema : ServerMessageSchema, input)),
            `${what}: differs from fromBinary`,
          );
      }
    }),
    { numRuns: 3000, seed: 20261201 }, // fixed: the tally below must not depend on the run
  );
  // Each decision must actually occur, or the property checked little.
  for (const key of ['client:accepted', 'server:accepted', 'client:ERR_DECODE', 'server:ERR_DECODE', 'client:ERR_SIZE', 'server:ERR_SIZE'])
    assert.ok((tally.get(key) ?? 0) > 10, `${key}: ${tally.get(key) ?? 0} (${JSON.stringify([...tally])})`);
});

test('fast path and protobuf-es path agree on honest messages too, under every cap', () => {
  for (const caps of capSets)
    for (const fastPath of [true, false]) {
      for (const { bytes } of corpus.client) {
        const a = outcome(() => decodeClientMessageChecked(bytes, { maxBytes: () => 1 << 20, ...allKinds, ...caps, fastPath }));
        const b = outcome(() => decodeClientMessageChecked(bytes, { maxBytes: () => 1 << 20, ...allKinds, ...caps, fastPath: !fastPath }));
        sameOutcome(a, b, 'client');
      }
      for (const { bytes } of corpus.server) {
        const a = outcome(() => decodeServerMessageChecked(bytes, { maxBytes: () => 1 << 20, ...allKinds, ...caps, fastPath }));
        const b = outcome(() => decodeServerMessageChecked(bytes, { maxBytes: () => 1 << 20, ...allKinds, ...caps, fastPath: !fastPath }));
        sameOutcome(a, b, 'server');
      }
    }
  // Uncapped, every honest message decodes, equal to fromBinary, by the old decoders too.
  for (const { bytes } of corpus.client) assert.deepStrictEqual(decodeClientMessage(bytes, bytes.length), fromBinary(ClientMessageSchema, bytes));
  for (const { bytes } of corpus.server) assert.deepStrictEqual(decodeServerMessage(bytes, bytes.length), fromBinary(ServerMessageSchema, bytes));
});

test('the pre-scan refuses what the fast decoder declines for shape reasons (duplicates, unknown fields, wire types)', () => {
  const share = ld(2, bytesOf(vi(1, 1), ld(2, new Uint8Array(112))));
  const cases: [string, Uint8Array][] = [
    ['commitment twice', bytesOf(ld(1, new Uint8Array(32)), ld(1, new Uint8Array(32)), share)],
    ['peer twice in an entry', ld(2, bytesOf(vi(1, 1), vi(1, 2)))],
    ['unknown field in an entry', ld(2, bytesOf(vi(1, 1), vi(7, 2)))],
    ['unknown field in the body', bytesOf(share, vi(9, 1))],
    ['shares as a varint', bytesOf(vi(2, 1))],
    ['commitment as a varint', bytesOf(vi(1, 1))],
    ['entry overruns', bytesOf([0x12, 0x04, 0x08, 0x01, 0x12, 0x05, 0, 0, 0])],
  ];
  for (const [what, body] of cases) {
    const b = clientEnv(ld(BODY.shareKeys, body));
    assert.equal(
      code(() => decodeClientMessageChecked(b, only('shareKeys'))),
      'ERR_DECODE',
      what,
    );
    assert.equal(
      code(() => decodeClientMessageChecked(b, only('shareKeys', { fastPath: false }))),
      'ERR_DECODE',
      what,
    );
  }
  // Honest: accepted by both.
  const honest = encodeClientMessage(RID, 3, {
    case: 'shareKeys',
    value: { selfMaskCommitment: new Uint8Array(32), shares: [{ peer: 1, ciphertext: new Uint8Array(112) }] },
  });
  assert.equal(
    code(() => decodeClientMessageChecked(honest, only('shareKeys', { fastPath: false }))),
    'accepted',
  );
  // UTF-8 that fromBinary refuses is still ERR_DECODE through the pre-scan.
  const badUtf8 = clientEnv(ld(BODY.abort, ld(1, [0xc3, 0x28])));
  assert.equal(
    code(() => decodeClientMessageChecked(badUtf8, only('abort'))),
    'ERR_DECODE',
  );
  assert.throws(() => fromBinary(ClientMessageSchema, badUtf8));
  void create;
});
