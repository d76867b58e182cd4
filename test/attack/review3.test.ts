/**
 * Red-team review 3: the context-passing state machines (the consume contract, a stage change that
 * fails half-way), the state codec (hostile and corrupted encodings, one encoding resumed twice)
 * and the client's input provider.
 *
 * Convention (as in review2.test.ts): a `test.todo` is a SUCCESSFUL ATTACK the library cannot fix
 * on its own; its body asserts the secure behaviour and fails today. Every plain `test` must pass.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { create, toBinary } from '@bufbuild/protobuf';
import { Driver } from '../driver.js';
import { expectedSum } from '../helpers.js';
import { nodeCrypto } from '../../src/crypto/node.js';
import type { CryptoProvider } from '../../src/crypto/provider.js';
import { isSecAggError, type SecAggError } from '../../src/errors.js';
import { clientId, roundId } from '../../src/ids.js';
import { clientContext, createClient, handleClientMessage, type ClientState } from '../../src/protocol/clientRound.js';
import type { RoundConfig } from '../../src/protocol/config.js';
import { roundParameters } from '../../src/protocol/roundParams.js';
import { handleServerDeadline, handleServerMessage, startServerRound, type ServerState } from '../../src/protocol/serverRound.js';
import { decodeClientState, decodeServerState, encodeClientState, encodeServerState } from '../../src/protocol/stateCodec.js';
import { encodeServerMessage } from '../../src/wire/codec.js';
import { RoundParametersSchema } from '../../src/wire/gen/secagg/v1/secagg_pb.js';

const done = (s: ServerState) => s.stage === 'done' || s.stage === 'aborted';

/** Never a wrong sum: a done state's sum is the plain sum over the clients it says are included. */
function assertNoWrongSum(s: ServerState, inputs: readonly Uint32Array[], bits: number, what: string): void {
  if (s.stage !== 'done') return;
  const want = expectedSum(
    inputs,
    s.result.included.map((id) => id - 1),
    bits,
  );
  assert.deepEqual([...s.result.sum], [...want], `${what}: the published sum is the sum over the stated survivors`);
}

/** Deliver `requests` to the driver's clients (their current states) and the answers to `server` (driven directly). */
async function answer(d: Driver, server: ServerState, requests: readonly { to: number; bytes: Uint8Array }[]): Promise<ServerState> {
  for (const { to, bytes } of requests) {
    const c = await handleClientMessage(d.clientCtx.get(to)!, d.clients.get(to)!, bytes);
    d.clients.set(to, c.state);
    if (c.outgoing && !done(server)) server = (await handleServerMessage(d.serverCtx, server, to, c.outgoing)).state;
  }
  return server;
}

// ------------------------------------------------------------------------------------------------
// 1. A stage change that fails after the message that triggered it was applied

describe('a stage change that throws after a message was applied', () => {
  test('is an abort of the round, not a refusal of a message whose effects stay in the state', async () => {
    // The crypto the server's stage change needs fails once (a transient provider fault): the last
    // AdvertiseKeys is checked and recorded, then closing the advertise stage (the view digest) throws.
    let armed = false;
    const flaky: CryptoProvider = {
      ...nodeCrypto,
      sha256: (data) => {
        if (armed) {
          armed = false;
          return Promise.reject(new Error('injected fault'));
        }
        return nodeCrypto.sha256(data);
      },
    };
    const d = await new Driver({ n: 5, mode: 'active', server: { crypto: flaky } }).start();
    const replies = await d.collectReplies();
    assert.equal(replies.length, 5);
    for (const r of replies.slice(0, -1)) assert.equal(await d.toServer(r.from, r.bytes), undefined);
    const last = replies.at(-1)!;
    armed = true;
    const error = await d.toServer(last.from, last.bytes);
    const s = d.server;
    if (error !== undefined) {
      // Refused: then the message must have changed nothing.
      assert.ok(s.stage === 'advertise' && !s.advertised.has(last.from), `a refused AdvertiseKeys (${error.code}) left the client's keys in the state`);
    } else {
      assert.equal(s.stage, 'aborted', 'an accepted message whose stage change failed aborts the round');
      assert.equal(s.abortError?.code, 'ERR_INTERNAL');
    }
  });
});

// ------------------------------------------------------------------------------------------------
// 2. The state decoders on hostile and corrupted bytes

/** A state encoding with its config replaced by `config` (the rest of the bytes unchanged). */
function withConfig(bytes: Uint8Array, config: RoundConfig): Uint8Array {
  const oldLength = bytes[6]! | (bytes[7]! << 8) | (bytes[8]! << 16) | (bytes[9]! << 24);
  const params = toBinary(RoundParametersSchema, create(RoundParametersSchema, roundParameters(config)));
  const out = new Uint8Array(bytes.length - oldLength + params.length);
  out.set(bytes.subarray(0, 6));
  new DataView(out.buffer).setUint32(6, params.length, true);
  out.set(params, 10);
  out.set(bytes.subarray(10 + oldLength, bytes.length - 4), 10 + params.length);
  // A valid checksum (the format's trailer): a writer that can change a state can recompute it.
  new DataView(out.buffer).setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
}

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

describe('the server state decoder', () => {
  test('refuses a sum shorter than the config says before it allocates the running sum', async () => {
    const d = await new Driver({ n: 4, m: 8 }).start();
    await d.until('masked');
    const bytes = encodeServerState(d.server);
    // A few hundred bytes that claim the largest dimension the limits allow (2^26 words = 256 MiB).
    const hostile = withConfig(bytes, { ...d.config, dimension: 1 << 26 });
    assert.ok(hostile.length < 4096);
    const grow = WebAssembly.Memory.prototype.grow;
    let grownPages = 0;
    WebAssembly.Memory.prototype.grow = function (this: WebAssembly.Memory, pages: number) {
      grownPages += pages;
      return grow.call(this, pages);
    };
    const before = process.memoryUsage().arrayBuffers;
    try {
      assert.throws(
        () => decodeServerState(hostile),
        // refused at the sum itself (not earlier, e.g. at the checksum): the order of the checks is what is tested
        (e: unknown) => isSecAggError(e, 'ERR_DECODE') && /running sum/.test(e.message),
      );
    } finally {
      WebAssembly.Memory.prototype.grow = grow;
    }
    assert.ok(grownPages < 256, `decoding ${hostile.length} bytes grew WebAssembly memory by ${grownPages} pages (${grownPages / 16} MiB)`);
    assert.ok(process.memoryUsage().arrayBuffers - before < 16 << 20, 'and allocated no large buffer');
  });

  test('refuses a survivor set U3 that is not the set of masked inputs in the sum (else: a wrong sum over the stated survivors)', async () => {
    const d = await new Driver({ n: 5 }).start();
    await d.until('unmask'); // semi-honest: U3 = every client, the unmask requests are pending
    const s = d.server;
    assert.equal(s.stage, 'unmask');
    if (s.stage !== 'unmask') return;
    // Client 5's masked input is in the running sum, but the state names it a dropout.
    const bytes = encodeServerState({ ...s, u3: [1, 2, 3, 4] });
    let decoded: ServerState;
    try {
      decoded = decodeServerState(bytes);
    } catch (e) {
      assert.ok(isSecAggError(e, 'ERR_DECODE'), String(e));
      return;
    }
    // Decoded: drive it on with honest clients, shown the survivor set the state holds.
    const request = encodeServerMessage(d.config.roundId, { case: 'unmaskRequest', value: { survivors: [1, 2, 3, 4], signatures: [] } });
    decoded = await answer(
      d,
      decoded,
      [1, 2, 3, 4].map((to) => ({ to, bytes: request })),
    );
    if (!done(decoded)) decoded = (await handleServerDeadline(d.serverCtx, decoded)).state;
    assertNoWrongSum(decoded, d.inputs, 16, 'a decoded state whose U3 left out a masked input');
  });

  test('refuses an active state past the view whose U1 is not the view it was fixed by (the server would use another graph than its clients)', async () => {
    const d = await new Driver({ n: 6, mode: 'active' }).start();
    await d.until('share');
    const s = d.server;
    assert.equal(s.stage, 'share');
    if (s.stage !== 'share') return;
    const bytes = encodeServerState({ ...s, u1: s.u1.slice(0, -1) });
    assert.throws(
      () => decodeServerState(bytes),
      (e: unknown) => isSecAggError(e, 'ERR_DECODE'),
    );
  });

  test('a bit flipped in a stored running sum is refused, never finished into a wrong sum', async () => {
    const d = await new Driver({ n: 5 }).start();
    await d.until('unmask');
    const bytes = encodeServerState(d.server);
    // Where the sum's first word is: the one place two encodings differing only there differ.
    const copy = decodeServerState(bytes);
    assert.equal(copy.stage, 'unmask');
    if (copy.stage !== 'unmask') return;
    const oneHot = new Uint32Array(d.config.dimension);
    oneHot[0] = 1;
    copy.sum.addVector(oneHot, 1);
    const other = encodeServerState(copy);
    const at = bytes.findIndex((b, i) => b !== other[i]);
    assert.ok(at > 0);
    const flipped = bytes.slice();
    flipped[at] = flipped[at]! ^ 0x10;
    let decoded: ServerState;
    try {
      decoded = decodeServerState(flipped);
    } catch (e) {
      assert.ok(isSecAggError(e, 'ERR_DECODE'), String(e));
      return;
    }
    decoded = await answer(d, decoded, d.pending);
    assert.equal(decoded.stage, 'done');
    assertNoWrongSum(decoded, d.inputs, 16, 'a state with a flipped bit in its running sum');
  });
});

// ------------------------------------------------------------------------------------------------
// 3. One encoding resumed twice

describe('one encoded state resumed twice', () => {
  test('server: a masked state finished by two copies that saw different masked inputs never publishes a wrong sum, and never gets t shares of both kinds of one client (the clients refuse)', async () => {
    for (const order of ['A first', 'interleaved'] as const) {
      const d = await new Driver({ n: 5 }).start(); // complete graph, k = 4, t = 3
      const t = d.config.threshold;
      await d.until('masked');
      const inputs = await d.collectReplies();
      assert.equal(inputs.length, 5);
      for (const r of inputs.slice(0, 4)) assert.equal(await d.toServer(r.from, r.bytes), undefined);
      const checkpoint = encodeServerState(d.server);
      // Copy A (the live runner) gets client 5's masked input; copy B, resumed from the checkpoint, closes without it.
      await d.toServer(inputs[4]!.from, inputs[4]!.bytes);
      assert.equal(d.server.stage, 'unmask');
      const toA = d.pending;
      d.pending = [];
      let a = decodeServerState(encodeServerState(d.server));
      const stepB = await handleServerDeadline(d.serverCtx, decodeServerState(checkpoint));
      let b = stepB.state;
      assert.equal(b.stage, 'unmask');
      const toB = [...stepB.outgoing];
      if (order === 'A first') {
        a = await answer(d, a, toA);
        b = await answer(d, b, toB);
      } else {
        a = await answer(
          d,
          a,
          toA.filter((o) => o.to <= 2 || o.to === 5),
        );
        b = await answer(
          d,
          b,
          toB.filter((o) => o.to > 2),
        );
        a = await answer(
          d,
          a,
          toA.filter((o) => o.to > 2 && o.to !== 5),
        );
        b = await answer(
          d,
          b,
          toB.filter((o) => o.to <= 2),
        );
      }
      const self5 = a.stage === 'unmask' ? (a.selfShares.get(5)?.holders.length ?? 0) : 0;
      const key5 = b.stage === 'unmask' ? (b.keyShares.get(5)?.holders.length ?? 0) : 0;
      assert.ok(self5 < t || key5 < t, `${order}: the two copies hold ${self5} self-mask and ${key5} key shares of client 5`);
      if (!done(a)) a = (await handleServerDeadline(d.serverCtx, a)).state;
      if (!done(b)) b = (await handleServerDeadline(d.serverCtx, b)).state;
      assertNoWrongSum(a, d.inputs, 16, `${order}, copy A`);
      assertNoWrongSum(b, d.inputs, 16, `${order}, copy B`);
    }
  });

  // Cannot be fixed in the library: `revealed` is part of the state, and two copies of one
  // encoding each start from the same record. The rule is documented (stateCodec.ts, README): an
  // encoded client state is resumed at most once, and a state is written down before its outgoing
  // message is sent. This test shows what happens when the rule is broken.
  test.todo('client: an awaiting-unmask state decoded twice never reveals both kinds of share of one neighbour', async () => {
    const d = await new Driver({ n: 5 }).start();
    await d.until('unmask');
    const enc = encodeClientState(d.clients.get(1)!);
    const ctx = d.clientCtx.get(1)!;
    const ask = (survivors: number[]) => encodeServerMessage(d.config.roundId, { case: 'unmaskRequest', value: { survivors, signatures: [] } });
    const first = await handleClientMessage(ctx, decodeClientState(enc), ask([1, 2, 3, 4, 5]));
    assert.equal(first.state.stage, 'done', 'the first copy reveals the self-mask share of client 5');
    const second = await handleClientMessage(ctx, decodeClientState(enc), ask([1, 2, 3, 4]));
    assert.equal(second.state.stage, 'aborted', 'the second copy must not reveal the key share of client 5');
  });
});

// ------------------------------------------------------------------------------------------------
// 4. The client's input provider

describe("the client's input provider", () => {
  test('cannot change the round parameters the client validated (it gets a copy of the config)', async () => {
    const config: RoundConfig = {
      roundId: roundId(new Uint8Array(16).fill(3)),
      bits: 16,
      dimension: 4,
      threshold: 4,
      degree: 'complete',
      mode: 'semi-honest',
      cohort: [1, 2, 3, 4, 5, 6].map(clientId),
    };
    const start = startServerRound(d0(), { config }).outgoing[0]!.bytes;
    let kept: RoundConfig | undefined;
    const ctx = clientContext({
      crypto: nodeCrypto,
      floors: { minThreshold: 4 },
      input: (c) => {
        kept = c;
        // A buggy provider "normalises" what it was given: after the client checked its floors.
        (c as { threshold: number }).threshold = 2;
        (c.cohort as unknown as number[]).push(7);
        c.roundId.fill(0);
        return new Uint32Array(c.dimension);
      },
    });
    const step = await handleClientMessage(ctx, createClient({ id: clientId(1) }), start);
    assert.ok(kept !== undefined);
    const s: ClientState = step.state;
    assert.equal(s.stage, 'awaiting-keys', (step.error as SecAggError | undefined)?.message);
    assert.equal(s.config?.threshold, 4, "the provider lowered the client's threshold below its own floor");
    assert.deepEqual(s.config?.cohort, config.cohort, 'the provider changed the cohort');
    assert.deepEqual(s.config?.roundId, config.roundId, 'the provider changed the round id');
  });
});

function d0() {
  return {
    crypto: nodeCrypto,
    rng: (n: number) => new Uint8Array(n).fill(9),
    directory: undefined,
    unmasker: async () => {},
    yieldToEventLoop: async () => {},
  };
}
