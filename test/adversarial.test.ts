/**
 * Bad input from the network is the normal case: malformed, duplicated, out-of-stage, oversized and
 * inconsistent messages get typed errors and change nothing, and the honest clients' round still
 * completes with the right sum.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { ClientMessageSchema, ServerMessageSchema, type ClientMessage } from '../src/wire/gen/secagg/v1/secagg_pb.js';
import { encodeClientMessage, encodeServerMessage, PROTOCOL_VERSION } from '../src/wire/codec.js';
import { handleClientMessage } from '../src/protocol/clientRound.js';
import { unsafeRevealedOwners } from '../src/protocol/serverRound.js';
import { clientMessageLimits } from '../src/protocol/limits.js';
import type { SecAggErrorCode } from '../src/errors.js';
import { Driver } from './driver.js';
import { nodeCrypto } from '../src/crypto/node.js';
import { expectedSum, range } from './helpers.js';

function decode(bytes: Uint8Array): ClientMessage {
  return fromBinary(ClientMessageSchema, bytes);
}
function encode(msg: ClientMessage): Uint8Array {
  return toBinary(ClientMessageSchema, msg);
}

function assertCode(error: { code: string } | undefined, code: SecAggErrorCode): void {
  assert.ok(error, `expected ${code}, got no error`);
  assert.equal(error.code, code);
}

function assertHonestResult(d: Driver, included: readonly number[]): void {
  assert.equal(d.server.stage, 'done', d.server.abortError?.message);
  const r = d.server.result!;
  assert.deepEqual(
    [...r.included],
    included.map((i) => i + 1),
  );
  assert.deepEqual(r.sum, expectedSum(d.inputs, included, d.config.bits));
}

describe('server: bad client messages are refused with typed errors; the round goes on', () => {
  test('AdvertiseKeys stage: garbage, wrong version, wrong round, forged sender, stranger, oversize, duplicate, out of stage, reused key', async () => {
    const d = await new Driver({ n: 6 }).start();
    const replies = await d.collectReplies();
    const [r1, r2, r3] = replies as [(typeof replies)[0], (typeof replies)[0], (typeof replies)[0]];

    assertCode(await d.toServer(r1.from, new Uint8Array([0xff, 0xff, 0xff, 0x07])), 'ERR_DECODE');
    const wrongVersion = decode(r1.bytes);
    wrongVersion.version = PROTOCOL_VERSION + 1;
    assertCode(await d.toServer(r1.from, encode(wrongVersion)), 'ERR_VERSION');
    const wrongRound = decode(r1.bytes);
    wrongRound.roundId = new Uint8Array(16).fill(9);
    assertCode(await d.toServer(r1.from, encode(wrongRound)), 'ERR_ROUND_MISMATCH');
    // A message that names another sender than the connection it came on.
    assertCode(await d.toServer(r2.from, r1.bytes), 'ERR_UNKNOWN_SENDER');
    assertCode(await d.toServer(99, r1.bytes), 'ERR_UNKNOWN_SENDER');
    assertCode(await d.toServer(r1.from, new Uint8Array(Math.max(...Object.values(clientMessageLimits(d.config))) + 1)), 'ERR_TOO_BIG');
    // An AdvertiseKeys-sized frame of another kind is refused on its kind, a large AdvertiseKeys on its own limit.
    const bigAdvertise = decode(r1.bytes);
    if (bigAdvertise.body.case === 'advertiseKeys') bigAdvertise.body.value.signature = new Uint8Array(4096);
    assertCode(await d.toServer(r1.from, encode(bigAdvertise)), 'ERR_TOO_BIG');
    const early = encodeClientMessage(d.config.roundId, r1.from, { case: 'maskedInput', value: { vector: new Uint8Array(64) } });
    assertCode(await d.toServer(r1.from, early), 'ERR_STAGE_MISMATCH');
    const shortKey = decode(r1.bytes);
    if (shortKey.body.case === 'advertiseKeys') shortKey.body.value.maskingPublicKey = new Uint8Array(31);
    assertCode(await d.toServer(r1.from, encode(shortKey)), 'ERR_SIZE');

    assert.equal(await d.toServer(r1.from, r1.bytes), undefined);
    assertCode(await d.toServer(r1.from, r1.bytes), 'ERR_DUPLICATE_SENDER');
    // Client 3 advertises client 1's masking key as its own.
    const copied = decode(r3.bytes);
    const original = decode(r1.bytes);
    if (copied.body.case === 'advertiseKeys' && original.body.case === 'advertiseKeys')
      copied.body.value.maskingPublicKey = original.body.value.maskingPublicKey;
    assertCode(await d.toServer(r3.from, encode(copied)), 'ERR_DUPLICATE_KEY');

    // Client 3's honest message is still accepted after its bad one was refused.
    for (const r of replies.slice(1)) assert.equal(await d.toServer(r.from, r.bytes), undefined);
    assert.equal(d.server.stage, 'share');
    await d.finish();
    assertHonestResult(d, range(6));
  });

  test('ShareKeys stage: a stranger, a repeated or a missing recipient, wrong ciphertext size, duplicate', async () => {
    const d = await new Driver({ n: 12, degree: 4 }).start();
    await d.until('share');
    const replies = await d.collectReplies();
    const r = replies[0]!;
    const wrongPeer = decode(r.bytes);
    if (wrongPeer.body.case === 'shareKeys') {
      const neighbours = new Set(wrongPeer.body.value.shares.map((s) => s.peer));
      const stranger = range(12)
        .map((i) => i + 1)
        .find((v) => v !== r.from && !neighbours.has(v))!;
      wrongPeer.body.value.shares[0]!.peer = stranger;
    }
    assertCode(await d.toServer(r.from, encode(wrongPeer)), 'ERR_NOT_NEIGHBOUR');
    // Exactly one ciphertext per neighbour, ascending: a client that leaves one out is not admitted.
    const repeated = decode(r.bytes);
    if (repeated.body.case === 'shareKeys') repeated.body.value.shares[1]!.peer = repeated.body.value.shares[0]!.peer;
    assertCode(await d.toServer(r.from, encode(repeated)), 'ERR_DUPLICATE_SENDER');
    const missing = decode(r.bytes);
    if (missing.body.case === 'shareKeys') missing.body.value.shares.pop();
    assertCode(await d.toServer(r.from, encode(missing)), 'ERR_NOT_NEIGHBOUR');
    const truncated = decode(r.bytes);
    if (truncated.body.case === 'shareKeys') truncated.body.value.shares[1]!.ciphertext = new Uint8Array(10);
    assertCode(await d.toServer(r.from, encode(truncated)), 'ERR_SIZE');
    assert.equal(await d.toServer(r.from, r.bytes), undefined);
    assertCode(await d.toServer(r.from, r.bytes), 'ERR_DUPLICATE_SENDER');
    for (const x of replies.slice(1)) assert.equal(await d.toServer(x.from, x.bytes), undefined);
    await d.finish();
    assertHonestResult(d, range(12));
  });

  test('MaskedInput stage: wrong length, element outside the ring, duplicate, sender outside U2', async () => {
    const d = await new Driver({ n: 7, bits: 12 }).start();
    await d.until('share');
    await d.toClients([7]); // client 7 never shares keys, so it is not in U2
    await d.flush();
    assert.equal(d.server.stage, 'masked');
    const replies = await d.collectReplies();
    const r = replies[0]!;
    const short = decode(r.bytes);
    if (short.body.case === 'maskedInput') short.body.value.vector = short.body.value.vector.subarray(2);
    assertCode(await d.toServer(r.from, encode(short)), 'ERR_SIZE');
    const outside = decode(r.bytes);
    if (outside.body.case === 'maskedInput') {
      const v = outside.body.value.vector.slice();
      v[1] = 0xff; // 12-bit elements take 2 bytes; 0xff in the high byte is ≥ 2^12
      outside.body.value.vector = v;
    }
    assertCode(await d.toServer(r.from, encode(outside)), 'ERR_SIZE');
    const honestVector = decode(r.bytes).body;
    assert.equal(honestVector.case, 'maskedInput');
    const fromStranger = encodeClientMessage(d.config.roundId, 7, {
      case: 'maskedInput',
      value: { vector: honestVector.case === 'maskedInput' ? honestVector.value.vector : new Uint8Array(0) },
    });
    assertCode(await d.toServer(7, fromStranger), 'ERR_UNKNOWN_SENDER');
    for (const x of replies) assert.equal(await d.toServer(x.from, x.bytes), undefined);
    // All of U2 answered, so the stage closed; a late duplicate is now out of stage.
    assertCode(await d.toServer(r.from, r.bytes), 'ERR_STAGE_MISMATCH');
    await d.finish();
    assertHonestResult(d, range(6));
  });

  test('Unmask stage: shares of a non-neighbour, the unwanted kind, a duplicate owner, a wrong size', async () => {
    const d = await new Driver({ n: 12, degree: 6 }).start();
    await d.until('masked');
    await d.toClients([12]); // client 12 drops after sharing: its key shares are wanted, not its self-mask shares
    await d.flush();
    assert.equal(d.server.stage, 'unmask');
    const replies = await d.collectReplies();
    const r = replies.find((x) => {
      const m = decode(x.bytes);
      return m.body.case === 'unmaskResponse' && m.body.value.keyShares.length > 0;
    })!;
    const base = decode(r.bytes);
    assert.equal(base.body.case, 'unmaskResponse');
    if (base.body.case !== 'unmaskResponse') return;
    const neighbourSet = new Set([...base.body.value.selfMaskShares, ...base.body.value.keyShares].map((s) => s.owner));
    const stranger = range(12)
      .map((i) => i + 1)
      .find((v) => v !== r.from && !neighbourSet.has(v))!;

    const foreign = decode(r.bytes);
    if (foreign.body.case === 'unmaskResponse') foreign.body.value.selfMaskShares[0]!.owner = stranger;
    assertCode(await d.toServer(r.from, encode(foreign)), 'ERR_NOT_NEIGHBOUR');
    // A self-mask share of the dropped client 12: the server must never accept it.
    const wrongKind = decode(r.bytes);
    if (wrongKind.body.case === 'unmaskResponse') {
      const k = wrongKind.body.value.keyShares[0]!;
      wrongKind.body.value.keyShares = [];
      wrongKind.body.value.selfMaskShares.push(k);
    }
    assertCode(await d.toServer(r.from, encode(wrongKind)), 'ERR_BOTH_SHARES_REQUESTED');
    const dup = decode(r.bytes);
    if (dup.body.case === 'unmaskResponse') dup.body.value.selfMaskShares.push(dup.body.value.selfMaskShares[0]!);
    assertCode(await d.toServer(r.from, encode(dup)), 'ERR_DUPLICATE_SENDER');
    const size = decode(r.bytes);
    if (size.body.case === 'unmaskResponse') size.body.value.keyShares[0]!.share = new Uint8Array(43);
    assertCode(await d.toServer(r.from, encode(size)), 'ERR_SIZE');
    // None of the refused messages left a share behind.
    assert.deepEqual(unsafeRevealedOwners(d.server), { self: [], key: [] });
    for (const x of replies) assert.equal(await d.toServer(x.from, x.bytes), undefined);
    assertHonestResult(d, range(11));
  });

  test('a corrupted share, with more than t shares, is recovered from and its holder named', async () => {
    const d = await new Driver({ n: 9 }).start();
    await d.until('unmask');
    const replies = await d.collectReplies();
    // Client 1 flips a bit in every share it reveals.
    for (const x of replies) {
      let bytes = x.bytes;
      if (x.from === 1) {
        const m = decode(bytes);
        if (m.body.case === 'unmaskResponse') for (const s of m.body.value.selfMaskShares) s.share[0]! ^= 1;
        bytes = encode(m);
      }
      assert.equal(await d.toServer(x.from, bytes), undefined);
    }
    assertHonestResult(d, range(9));
    assert.deepEqual([...d.server.result!.badShareHolders], [1]);
  });

  test('with exactly t shares, a corrupted one aborts with ERR_RECONSTRUCTION_FAILED instead of a wrong sum', async () => {
    const d = await new Driver({ n: 7, threshold: 4 }).start(); // 6 holders per secret, t = 4
    await d.until('unmask');
    const replies = await d.collectReplies([6, 7]); // only 5 respond: each responder's secret has exactly 4 holders
    for (const x of replies) {
      let bytes = x.bytes;
      if (x.from === 1) {
        const m = decode(bytes);
        if (m.body.case === 'unmaskResponse') for (const s of m.body.value.selfMaskShares) s.share[5]! ^= 0x10;
        bytes = encode(m);
      }
      await d.toServer(x.from, bytes);
    }
    await d.deadline();
    assert.equal(d.server.stage, 'aborted');
    assert.equal(d.server.abortError?.code, 'ERR_RECONSTRUCTION_FAILED');
    assert.equal(d.server.result, undefined);
  });
});

describe('client: bad server messages abort that client with a typed error and reveal nothing', () => {
  test('garbage, out-of-stage, wrong round', async () => {
    const d = await new Driver({ n: 5 }).start();
    const c = d.clients.get(1)!;
    const garbage = await handleClientMessage(d.clientCtx.get(1)!, c, new Uint8Array([1, 2, 3]));
    assertCode(garbage.error, 'ERR_DECODE');
    assert.equal(garbage.state.stage, 'aborted');
    d.clients.set(1, garbage.state);
    const early = encodeServerMessage(d.config.roundId, { case: 'unmaskRequest', value: { survivors: [1, 2, 3] } });
    const r = await handleClientMessage(d.clientCtx.get(2)!, d.clients.get(2)!, early);
    assertCode(r.error, 'ERR_STAGE_MISMATCH');
    d.clients.set(2, r.state);
    await d.toClients();
    const other = encodeServerMessage(new Uint8Array(16).fill(3), { case: 'shares', value: { shares: [] } });
    const r3 = await handleClientMessage(d.clientCtx.get(3)!, d.clients.get(3)!, other);
    assertCode(r3.error, 'ERR_ROUND_MISMATCH');
    assert.equal(r3.state.stage, 'awaiting-keys', 'a message for another round is ignored, not fatal');
  });

  test('KeysForYou with a reused public key makes that neighbour a dropout; a neighbour set that does not match the graph aborts', async () => {
    const d = await new Driver({ n: 6 }).start();
    await d.toClients();
    await d.flush();
    const keysFor = (to: number) => fromBinary(ServerMessageSchema, d.pending.find((p) => p.to === to)!.bytes);
    const m = keysFor(1);
    let reuser = 0;
    if (m.body.case === 'keys') {
      m.body.value.neighbours[1]!.maskingPublicKey = m.body.value.neighbours[0]!.maskingPublicKey;
      reuser = m.body.value.neighbours[1]!.client;
    }
    const r = await handleClientMessage(d.clientCtx.get(1)!, d.clients.get(1)!, toBinary(ServerMessageSchema, m));
    assert.equal(r.error, undefined);
    assert.equal(r.state.stage, 'awaiting-shares');
    const sent = fromBinary(ClientMessageSchema, r.outgoing!);
    assert.equal(sent.body.case, 'shareKeys');
    if (sent.body.case === 'shareKeys') {
      const peers = sent.body.value.shares.map((x) => x.peer);
      assert.ok(!peers.includes(reuser), 'no shares for the neighbour that reused a key');
      assert.deepEqual(
        peers,
        [2, 3, 4, 5, 6].filter((v) => v !== reuser),
      );
    }
    const m2 = keysFor(2);
    if (m2.body.case === 'keys') m2.body.value.neighbours.pop();
    const r2 = await handleClientMessage(d.clientCtx.get(2)!, d.clients.get(2)!, toBinary(ServerMessageSchema, m2));
    assertCode(r2.error, 'ERR_INCONSISTENT_VIEW');
  });

  test('a client asked for both kinds of share of one neighbour refuses', async () => {
    const d = await new Driver({ n: 6 }).start();
    await d.until('unmask');
    await d.toClients();
    d.replies = [];
    // The server asks again, now claiming client 2 dropped: that would reveal its key share too.
    const again = encodeServerMessage(d.config.roundId, { case: 'unmaskRequest', value: { survivors: [1, 3, 4, 5, 6] } });
    const r = await handleClientMessage(d.clientCtx.get(1)!, d.clients.get(1)!, again);
    assertCode(r.error, 'ERR_BOTH_SHARES_REQUESTED');
    assert.equal(fromBinary(ClientMessageSchema, r.outgoing!).body.case, 'abort');
    // Repeating the same request is harmless (a lost response) and reveals the same kind again.
    const d2 = await new Driver({ n: 6 }).start();
    await d2.until('unmask');
    const req2 = d2.pending.find((p) => p.to === 1)!.bytes;
    await d2.toClients();
    const repeat = await handleClientMessage(d2.clientCtx.get(1)!, d2.clients.get(1)!, req2);
    assert.equal(repeat.error, undefined);
    assert.equal(fromBinary(ClientMessageSchema, repeat.outgoing!).body.case, 'unmaskResponse');
  });
});

describe('active mode: a lying server makes honest clients abort before revealing anything', () => {
  test('different survivor sets to different clients', async () => {
    const d = await new Driver({ n: 7, mode: 'active' }).start();
    await d.until('consistency');
    const real = [1, 2, 3, 4, 5, 6, 7];
    const fake = [1, 2, 3, 4, 5, 6]; // client 1 is told that client 7 dropped
    const request = (survivors: number[]) => encodeServerMessage(d.config.roundId, { case: 'consistencyRequest', value: { survivors } });
    const signatures = new Map<number, Uint8Array>();
    for (const id of real) {
      const r = await handleClientMessage(d.clientCtx.get(id)!, d.clients.get(id)!, request(id === 1 ? fake : real));
      d.clients.set(id, r.state);
      const m = fromBinary(ClientMessageSchema, r.outgoing!);
      assert.equal(m.body.case, 'consistencySignature');
      if (m.body.case === 'consistencySignature') signatures.set(id, m.body.value.signature);
    }
    const all = [...signatures].map(([client, signature]) => ({ client, signature }));
    // Client 1 gets its fake set with everyone's signatures: the others signed a different set.
    const to1 = await handleClientMessage(
      d.clientCtx.get(1)!,
      d.clients.get(1)!,
      encodeServerMessage(d.config.roundId, { case: 'unmaskRequest', value: { survivors: fake, signatures: all.filter((s) => s.client !== 7) } }),
    );
    assertCode(to1.error, 'ERR_SIGNATURE_INVALID');
    assert.equal(fromBinary(ClientMessageSchema, to1.outgoing!).body.case, 'abort');
    // Client 2 gets the real set, with client 1's signature over the fake one among them.
    const to2 = await handleClientMessage(
      d.clientCtx.get(2)!,
      d.clients.get(2)!,
      encodeServerMessage(d.config.roundId, { case: 'unmaskRequest', value: { survivors: real, signatures: all } }),
    );
    assertCode(to2.error, 'ERR_SIGNATURE_INVALID');
    assert.equal(fromBinary(ClientMessageSchema, to2.outgoing!).body.case, 'abort');
    // Client 3 is shown a survivor set other than the one it signed.
    const to3 = await handleClientMessage(
      d.clientCtx.get(3)!,
      d.clients.get(3)!,
      encodeServerMessage(d.config.roundId, { case: 'unmaskRequest', value: { survivors: fake, signatures: all } }),
    );
    assertCode(to3.error, 'ERR_INCONSISTENT_VIEW');
  });

  test('too few signatures, or a forged one, and keys not signed by the identity', async () => {
    const d = await new Driver({ n: 7, mode: 'active' }).start();
    await d.until('unmask');
    const honest = fromBinary(ServerMessageSchema, d.pending.find((p) => p.to === 1)!.bytes);
    assert.equal(honest.body.case, 'unmaskRequest');
    if (honest.body.case !== 'unmaskRequest') return;
    const few = structuredClone(honest);
    if (few.body.case === 'unmaskRequest') few.body.value.signatures = few.body.value.signatures.slice(0, d.config.threshold - 1);
    const r = await handleClientMessage(d.clientCtx.get(1)!, d.clients.get(1)!, toBinary(ServerMessageSchema, few));
    assertCode(r.error, 'ERR_BELOW_THRESHOLD');
    const forged = structuredClone(honest);
    if (forged.body.case === 'unmaskRequest') {
      const sig = forged.body.value.signatures[2]!.signature.slice();
      sig[0]! ^= 1;
      forged.body.value.signatures[2]!.signature = sig;
    }
    const r2 = await handleClientMessage(d.clientCtx.get(2)!, d.clients.get(2)!, toBinary(ServerMessageSchema, forged));
    assertCode(r2.error, 'ERR_SIGNATURE_INVALID');

    // A server substituting its own round keys for a neighbour's is caught at KeysForYou: the
    // neighbour's view signature covers its keys, and only a lying server can send a view
    // signature that does not verify (it checked each one), so the client stops before sharing.
    const d2 = await new Driver({ n: 7, mode: 'active', seed: 9 }).start();
    await d2.until('share');
    const keys = fromBinary(ServerMessageSchema, d2.pending.find((p) => p.to === 1)!.bytes);
    let victim = 0;
    if (keys.body.case === 'keys') {
      keys.body.value.neighbours[0]!.encryptionPublicKey = (await nodeCrypto.x25519(new Uint8Array(32).fill(9))).publicKey;
      victim = keys.body.value.neighbours[0]!.client;
    }
    const r3 = await handleClientMessage(d2.clientCtx.get(1)!, d2.clients.get(1)!, toBinary(ServerMessageSchema, keys));
    assertCode(r3.error, 'ERR_INCONSISTENT_VIEW');
    assert.match(r3.error!.message, new RegExp(`member ${victim} of U1 did not sign this view`));
    assert.equal(fromBinary(ClientMessageSchema, r3.outgoing!).body.case, 'abort', 'nothing encrypted to anyone');
  });

  test('the server refuses advertised keys whose signature does not verify', async () => {
    const d = await new Driver({ n: 5, mode: 'active' }).start();
    await d.toClients();
    const r = d.replies[0]!;
    const m = decode(r.bytes);
    if (m.body.case === 'advertiseKeys') {
      const sig = m.body.value.signature.slice(); // decoded bytes may view the original message
      sig[10]! ^= 4;
      m.body.value.signature = sig;
    }
    assertCode(await d.toServer(r.from, encode(m)), 'ERR_SIGNATURE_INVALID');
    const unsigned = decode(r.bytes);
    if (unsigned.body.case === 'advertiseKeys') unsigned.body.value.signature = new Uint8Array(0);
    assertCode(await d.toServer(r.from, encode(unsigned)), 'ERR_SIGNATURE_INVALID');
    await d.flush();
    await d.finish();
    assertHonestResult(d, range(5));
  });
});
