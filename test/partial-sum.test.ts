/**
 * Partial sums of masked inputs (handleServerPartialSum, RoundRunner.partialSum, createPartialSum,
 * maskedInputVector, RingAccumulator.addWords): rounds of real client state machines whose masked
 * inputs reach the server as a few pre-summed vectors give the plain round's sum, which is the
 * plaintext sum of the survivors — with dropouts, on both graphs, in both modes, mixed with single
 * messages, and across an encoded-and-resumed state; every refusal leaves the state as it was.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Driver, type DriverOptions } from './driver.js';
import { expectedSum } from './helpers.js';
import { createPartialSum, maskedInputVector } from '../src/protocol/partialSum.js';
import { handleServerPartialSum, serverContext, type PartialSum, type ServerState } from '../src/protocol/serverRound.js';
import { createRoundRunner } from '../src/protocol/runner.js';
import { decodeServerState, encodeServerState } from '../src/protocol/stateCodec.js';
import { RingAccumulator } from '../src/ring/accumulator.js';
import { packVector } from '../src/ring/vector.js';
import { encodeClientMessage } from '../src/wire/codec.js';
import { nodeCrypto } from '../src/crypto/node.js';
import { unsafeSeededRng } from '../src/rng.js';
import { isSecAggError, type SecAggError, type SecAggErrorCode } from '../src/errors.js';
import type { ClientId } from '../src/ids.js';

type Reply = { from: ClientId; bytes: Uint8Array };

/**
 * A round driven to the masked stage; the masked inputs of all but `silent` collected, not
 * delivered. `noShare`: clients that go silent before sharing keys (so they are not in U2).
 */
async function atMasked(o: DriverOptions, silent: readonly number[] = [], noShare: readonly number[] = []): Promise<{ d: Driver; masked: Reply[] }> {
  const d = await new Driver(o).start();
  await d.until('share');
  for (const r of await d.collectReplies(noShare)) await d.toServer(r.from, r.bytes);
  if (d.server.stage === 'share') await d.deadline();
  assert.equal(stageOf(d), 'masked');
  const masked = await d.collectReplies(silent);
  return { d, masked };
}

/** A gateway's partial sum of these clients' MaskedInput messages. */
function partialOf(d: Driver, replies: readonly Reply[]): PartialSum {
  const p = createPartialSum(d.config);
  for (const r of replies) p.add(r.from, maskedInputVector(d.config, r.from, r.bytes));
  return p.finish();
}

/** The server's stage, read afresh (an assert on d.server.stage would narrow it for good). */
const stageOf = (d: Driver): string => d.server.stage;

/** A partial sum as RoundRunner.partialSum's two arguments. */
const pair = (p: PartialSum): [readonly number[], Uint32Array] => [p.clients, p.words];

/** Split into `parts` groups, round robin (each gateway gets clients from all over the id range). */
function split<T>(xs: readonly T[], parts: number): T[][] {
  const out: T[][] = Array.from({ length: parts }, () => []);
  xs.forEach((x, i) => out[i % parts]!.push(x));
  return out;
}

async function finished(d: Driver) {
  if (d.server.stage === 'masked') await d.deadline();
  await d.finish();
  const s = d.server;
  assert.equal(s.stage, 'done', s.stage === 'aborted' ? s.abortError.message : s.stage);
  if (s.stage !== 'done') throw new Error('unreachable');
  return s.result;
}

function refusedWith(error: SecAggError | undefined, code: SecAggErrorCode): void {
  assert.ok(error !== undefined && isSecAggError(error, code), `expected ${code}, got ${error?.code ?? 'acceptance'}: ${error?.message}`);
}

const GRAPHS: ReadonlyArray<{ name: string; o: DriverOptions; drop: number[]; lost: number[] }> = [
  { name: 'complete graph (SecAgg), semi-honest', o: { n: 10, seed: 31 }, drop: [3], lost: [8] },
  { name: 'complete graph (SecAgg), active', o: { n: 8, mode: 'active', seed: 32 }, drop: [2], lost: [] },
  { name: 'Harary graph (SecAgg+), semi-honest', o: { n: 14, degree: 6, seed: 33 }, drop: [5], lost: [11] },
  { name: 'Harary graph (SecAgg+), active', o: { n: 14, degree: 8, mode: 'active', seed: 34 }, drop: [4, 13], lost: [] },
];

describe('a round whose masked inputs arrive as partial sums', () => {
  for (const { name, o, drop, lost } of GRAPHS) {
    it(`${name}: 1–3 partial sums give the plain round's sum, the plaintext sum of the survivors; dropouts are unmasked`, async () => {
      // The plain round: every masked input as its own message (`lost` ones never arrive).
      const plain = await atMasked(o, drop);
      for (const r of plain.masked) if (!lost.includes(r.from)) assert.equal(await plain.d.toServer(r.from, r.bytes), undefined);
      const reference = await finished(plain.d);
      const survivors = plain.d.config.cohort.filter((u) => !drop.includes(u) && !lost.includes(u));
      assert.deepEqual(reference.included, survivors);
      assert.deepEqual(
        reference.sum,
        expectedSum(
          plain.d.inputs,
          survivors.map((u) => u - 1),
          plain.d.config.bits,
        ),
      );
      for (const parts of [1, 2, 3]) {
        // The same round (same seeds), the masked inputs summed by `parts` gateways; `lost` ones in
        // no partial sum: a gateway that lost them (or died) turns them into dropouts.
        const { d, masked } = await atMasked(o, drop);
        const groups = split(
          masked.filter((r) => !lost.includes(r.from)),
          parts,
        );
        for (const g of groups) {
          const p = partialOf(d, g);
          assert.deepEqual(
            p.clients,
            g.map((r) => r.from).sort((a, b) => a - b),
          );
          assert.equal(await d.runner.partialSum(p.clients, p.words), undefined);
        }
        const result = await finished(d);
        assert.deepEqual(result.included, reference.included, `${parts} partial sums: the same survivors`);
        assert.deepEqual(result.sum, reference.sum, `${parts} partial sums: the same sum`);
        assert.deepEqual(result.sets.shared, reference.sets.shared);
      }
    });
  }

  it('closes the masked stage on the partial sum that completes it, without a deadline', async () => {
    const { d, masked } = await atMasked({ n: 9, seed: 35 });
    const [a, b] = split(masked, 2);
    assert.equal(await d.runner.partialSum(...pair(partialOf(d, a!))), undefined);
    assert.equal(stageOf(d), 'masked');
    assert.equal(await d.runner.partialSum(...pair(partialOf(d, b!))), undefined);
    assert.equal(stageOf(d), 'unmask', 'every member of U2 answered: the unmask request is out');
    assert.equal(d.pending.length, 9);
    await d.finish();
    assert.equal(stageOf(d), 'done');
  });

  it('mixes with single masked messages, in any order, and with a quit', async () => {
    const o: DriverOptions = { n: 12, degree: 6, seed: 36 };
    const { d, masked } = await atMasked(o);
    const byId = new Map(masked.map((r) => [r.from as number, r]));
    const single = (u: number) => d.toServer(u, byId.get(u)!.bytes);
    const sum = (...us: number[]) =>
      d.runner.partialSum(
        ...pair(
          partialOf(
            d,
            us.map((u) => byId.get(u)!),
          ),
        ),
      );
    assert.equal(await single(1), undefined);
    assert.equal(await sum(2, 7, 12), undefined);
    assert.equal(await single(3), undefined);
    assert.equal(await sum(4, 5), undefined);
    assert.equal(await single(6), undefined);
    assert.equal(await sum(8, 9, 10), undefined);
    // Client 11 quits instead: the stage closes as soon as everyone has answered or quit.
    assert.equal(await d.toServer(11, encodeClientMessage(d.config.roundId, 11, { case: 'abort', value: { code: 'ERR_ABORTED' } })), undefined);
    assert.equal(d.server.stage, 'unmask');
    const result = await finished(d);
    const survivors = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12];
    assert.deepEqual(result.included, survivors);
    assert.deepEqual(
      result.sum,
      expectedSum(
        d.inputs,
        survivors.map((u) => u - 1),
        d.config.bits,
      ),
    );
  });

  it('a masked-stage state after partial sums round-trips through the state codec, and the resumed state takes more', async () => {
    for (const o of [
      { n: 10, seed: 37 },
      { n: 12, degree: 4, seed: 38 },
    ] as DriverOptions[]) {
      const { d, masked } = await atMasked(o, [10]);
      const [first, second, third] = split(masked, 3);
      assert.equal(await d.runner.partialSum(...pair(partialOf(d, first!))), undefined);
      assert.equal(await d.toServer(second![0]!.from, second![0]!.bytes), undefined);
      await d.runner.idle();
      const bytes = encodeServerState(d.server);
      const decoded = decodeServerState(bytes);
      assert.deepEqual(encodeServerState(decoded), bytes, 'decode ∘ encode is the identity');
      if (decoded.stage !== 'masked') throw new Error(`decoded a ${decoded.stage} state`);
      assert.deepEqual(
        [...decoded.masked].sort((a, b) => a - b),
        [...first!.map((r) => r.from), second![0]!.from].sort((a, b) => a - b),
      );
      // This process stops; another goes on from the decoded state with a context of its own.
      d.runner.abort('ERR_SHUTDOWN', 'this process stops');
      d.runner = createRoundRunner({
        resume: decoded,
        context: serverContext({ crypto: nodeCrypto, rng: unsafeSeededRng(77) }),
        send: (to, b) => void d.pending.push({ to, bytes: b }),
      });
      d.runner.start();
      // Already in the sum before the stop: still refused after it.
      refusedWith(await d.runner.partialSum(...pair(partialOf(d, first!.slice(0, 1)))), 'ERR_DUPLICATE_SENDER');
      assert.equal(await d.runner.partialSum(...pair(partialOf(d, [...second!.slice(1), ...third!]))), undefined);
      const result = await finished(d);
      const survivors = d.config.cohort.filter((u) => u !== 10);
      assert.deepEqual(result.included, survivors);
      assert.deepEqual(
        result.sum,
        expectedSum(
          d.inputs,
          survivors.map((u) => u - 1),
          d.config.bits,
        ),
      );
    }
  });
});

describe('handleServerPartialSum refuses, leaving the state usable and unchanged', () => {
  /** Refused by the state machine itself: the same object back, released, byte for byte as before. */
  async function refusesDirectly(d: Driver, partial: PartialSum, code: SecAggErrorCode): Promise<void> {
    const state: ServerState = d.server;
    const before = encodeServerState(state);
    const step = await handleServerPartialSum(d.serverCtx, state, partial);
    refusedWith(step.error, code);
    assert.equal(step.state, state, 'the same state object comes back');
    assert.equal(step.outgoing.length, 0);
    assert.deepEqual(encodeServerState(state), before, 'unchanged, and not consumed (encodable)');
    // And through the runner: the same refusal, the round goes on.
    refusedWith(await d.runner.partialSum(partial.clients, partial.words), code);
    assert.deepEqual(encodeServerState(d.server), before);
  }

  it('every bad partial sum in the masked stage; then the good ones finish the round with the right sum', async () => {
    // m spans several 64 KiB chunks, so a bad word late in the vector tests addWords' undo.
    // Client 10 never shares keys (not in U2); client 9 shares but never masks (a dropout).
    const { d, masked } = await atMasked({ n: 10, m: 40_000, seed: 39 }, [9], [10]);
    assert.ok(d.server.stage === 'masked' && !d.server.u2set.has(10) && d.server.u2set.has(9));
    const byId = new Map(masked.map((r) => [r.from as number, r]));
    assert.equal(await d.toServer(1, byId.get(1)!.bytes), undefined, 'client 1 masks by message');
    const early = partialOf(d, [byId.get(2)!, byId.get(3)!]);
    assert.equal(await d.runner.partialSum(early.clients, early.words), undefined, 'clients 2 and 3 by a partial sum');
    const good = partialOf(
      d,
      [4, 5, 6].map((u) => byId.get(u)!),
    );
    const words = good.words;
    const m = d.config.dimension;
    await refusesDirectly(d, { clients: [], words }, 'ERR_SIZE');
    await refusesDirectly(d, { clients: [4, 5, 4], words }, 'ERR_DUPLICATE_SENDER');
    await refusesDirectly(d, { clients: [4, 1], words }, 'ERR_DUPLICATE_SENDER'); // by its own message
    await refusesDirectly(d, { clients: [3, 4], words }, 'ERR_DUPLICATE_SENDER'); // by an earlier partial sum
    await refusesDirectly(d, { clients: [4, 99], words }, 'ERR_UNKNOWN_SENDER'); // not in the cohort
    await refusesDirectly(d, { clients: [4, 0], words }, 'ERR_UNKNOWN_SENDER');
    await refusesDirectly(d, { clients: [4, 5.5], words }, 'ERR_UNKNOWN_SENDER');
    await refusesDirectly(d, { clients: [4, '5' as unknown as number], words }, 'ERR_UNKNOWN_SENDER');
    await refusesDirectly(d, { clients: [4, 10], words }, 'ERR_UNKNOWN_SENDER'); // in the cohort, not in U2 (silent)
    await refusesDirectly(d, { clients: [4, 5, 6], words: words.subarray(1) }, 'ERR_SIZE');
    await refusesDirectly(d, { clients: [4, 5, 6], words: new Uint32Array(m + 1) }, 'ERR_SIZE');
    for (const at of [0, 17, 16_384, m - 1]) {
      const bad = words.slice();
      bad[at] = 2 ** d.config.bits; // one above the ring (bits = 16)
      await refusesDirectly(d, { clients: [4, 5, 6], words: bad }, 'ERR_SIZE');
    }
    // A caller bug is a TypeError, before the state is touched; the round goes on.
    const before = encodeServerState(d.server);
    await assert.rejects(handleServerPartialSum(d.serverCtx, d.server, { clients: [4, 5, 6], words: new Uint8Array(m) as never }), TypeError);
    await assert.rejects(handleServerPartialSum(d.serverCtx, d.server, { clients: 4 as never, words }), TypeError);
    await assert.rejects(d.runner.partialSum([4, 5, 6], Array.from(words) as never), TypeError);
    await assert.rejects(d.runner.partialSum(new Set([4]) as never, words), TypeError);
    assert.deepEqual(encodeServerState(d.server), before);
    assert.equal(d.runner.finished, false);
    // The good partial sums still go in.
    assert.equal(await d.runner.partialSum(good.clients, good.words), undefined);
    const rest = partialOf(d, [byId.get(7)!, byId.get(8)!]);
    assert.equal(await d.runner.partialSum(rest.clients, rest.words), undefined);
    const result = await finished(d);
    assert.deepEqual(result.included, [1, 2, 3, 4, 5, 6, 7, 8], 'client 9 dropped');
    assert.deepEqual(result.sets.shared, [1, 2, 3, 4, 5, 6, 7, 8, 9], 'client 10 never shared keys');
    assert.deepEqual(result.sum, expectedSum(d.inputs, [0, 1, 2, 3, 4, 5, 6, 7], d.config.bits));
  });

  it('outside the masked stage: before it, after it, and once the round is over', async () => {
    const d = await new Driver({ n: 6, seed: 40 }).start();
    const words = new Uint32Array(d.config.dimension);
    await d.toClients();
    await d.flush(); // advertise → share
    assert.equal(stageOf(d), 'share');
    await refusesDirectly(d, { clients: [1], words }, 'ERR_STAGE_MISMATCH');
    await d.until('unmask');
    await refusesDirectly(d, { clients: [1], words }, 'ERR_STAGE_MISMATCH');
    await d.finish();
    assert.equal(stageOf(d), 'done');
    const done = d.server;
    const step = await handleServerPartialSum(d.serverCtx, done, { clients: [1], words });
    refusedWith(step.error, 'ERR_STAGE_MISMATCH');
    assert.equal(step.state, done);
    refusedWith(await d.runner.partialSum([1], words), 'ERR_STAGE_MISMATCH');
  });

  it('a consumed state is refused (TypeError), as by every other call', async () => {
    const { d, masked } = await atMasked({ n: 6, seed: 41 });
    const state = d.server;
    const p = partialOf(d, masked.slice(0, 2));
    const step = await handleServerPartialSum(d.serverCtx, state, p);
    assert.equal(step.error, undefined);
    assert.notEqual(step.state, state, 'accepted: a new state object');
    await assert.rejects(handleServerPartialSum(d.serverCtx, state, p), TypeError);
    assert.throws(() => encodeServerState(state), TypeError);
  });
});

describe('createPartialSum and maskedInputVector (the gateway side)', () => {
  const config = { dimension: 5, bits: 12 };
  const packed = (...xs: number[]) => packVector(Uint32Array.from(xs), config.bits);

  it('sums mod 2^bits, lists the clients ascending, refuses without changing anything', () => {
    const p = createPartialSum(config);
    p.add(9, packed(4095, 1, 2, 3, 4));
    p.add(2, packed(1, 4095, 4095, 0, 7));
    const assertErr = (f: () => void, code: SecAggErrorCode) => assert.throws(f, (e: unknown) => isSecAggError(e, code));
    assertErr(() => p.add(9, packed(1, 1, 1, 1, 1)), 'ERR_DUPLICATE_SENDER');
    assertErr(() => p.add(3, packed(1, 1, 1, 1)), 'ERR_SIZE');
    assertErr(() => p.add(3, packVector(Uint32Array.from([1, 1, 1, 1, 4096]), 16)), 'ERR_SIZE'); // 2 bytes per element, one ≥ 2^12
    assertErr(() => p.add(0, packed(1, 1, 1, 1, 1)), 'ERR_UNKNOWN_SENDER');
    assertErr(() => p.add(65536, packed(1, 1, 1, 1, 1)), 'ERR_UNKNOWN_SENDER');
    assert.throws(() => p.add(3, [1, 2] as never), TypeError);
    assert.equal(p.size, 2);
    assert.ok(p.has(2) && p.has(9) && !p.has(3));
    const { clients, words } = p.finish();
    assert.deepEqual(clients, [2, 9]);
    assert.deepEqual(words, Uint32Array.from([0, 0, 1, 3, 11]));
    assert.throws(() => p.finish(), TypeError);
    assert.throws(() => p.add(4, packed(0, 0, 0, 0, 0)), TypeError);
  });

  it('maskedInputVector checks the kind, the round and the sender', async () => {
    const { d, masked } = await atMasked({ n: 5, seed: 42 });
    const r = masked[0]!;
    assert.equal(maskedInputVector(d.config, r.from, r.bytes).length, 2 * d.config.dimension);
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        return isSecAggError(e) ? e.code : String(e);
      }
      return undefined;
    };
    assert.equal(
      code(() => maskedInputVector(d.config, r.from + 1, r.bytes)),
      'ERR_UNKNOWN_SENDER',
    );
    assert.equal(
      code(() => maskedInputVector({ ...d.config, roundId: new Uint8Array(16) as never }, r.from, r.bytes)),
      'ERR_ROUND_MISMATCH',
    );
    const abort = encodeClientMessage(d.config.roundId, r.from, { case: 'abort', value: { code: 'ERR_ABORTED' } });
    assert.equal(
      code(() => maskedInputVector(d.config, r.from, abort)),
      'ERR_STAGE_MISMATCH',
    );
    assert.equal(
      code(() => maskedInputVector(d.config, r.from, r.bytes.subarray(0, 10))),
      'ERR_DECODE',
    );
  });
});

describe('RingAccumulator.addWords', () => {
  for (const simd of [true, false]) {
    it(`${simd ? 'SIMD kernel' : 'plain JS'}: adds like addVector; a bad length or word changes nothing, wherever it is`, () => {
      const rng = unsafeSeededRng(43);
      for (const m of [1, 63, 64, 1000, 16_384, 16_385, 50_000]) {
        for (const bits of [1, 12, 16, 31, 32]) {
          const words = new Uint32Array(rng(4 * m).buffer).map((x) => (bits === 32 ? x : x % 2 ** bits));
          const start = new Uint32Array(rng(4 * m).buffer);
          const a = new RingAccumulator(m, { simd });
          const b = new RingAccumulator(m, { simd });
          a.addVector(start, 1);
          b.addVector(start, 1);
          a.addWords(words, bits);
          b.addVector(words, 1);
          assert.deepEqual(a.view(), b.view(), `m=${m}, bits=${bits}`);
          const snapshot = a.view().slice();
          assert.throws(
            () => a.addWords(words.subarray(1), bits),
            (e: unknown) => isSecAggError(e, 'ERR_SIZE'),
          );
          if (bits < 32)
            for (const at of [0, m >> 1, m - 1]) {
              const bad = words.slice();
              bad[at] = 2 ** bits + (bad[at]! & 1);
              assert.throws(
                () => a.addWords(bad, bits),
                (e: unknown) => isSecAggError(e, 'ERR_SIZE') && e.message.includes(`element ${at} `),
              );
              assert.deepEqual(a.view(), snapshot, `m=${m}, bits=${bits}, bad word at ${at}: unchanged`);
            }
        }
      }
    });
  }

  it('caller bugs: bits out of range (RangeError), not a Uint32Array (TypeError)', () => {
    const a = new RingAccumulator(4);
    assert.throws(() => a.addWords(new Uint32Array(4), 0), RangeError);
    assert.throws(() => a.addWords(new Int32Array(4) as never, 16), TypeError);
  });
});
