/**
 * One test per attack class of the security review (issue "make the security guarantees real").
 * The attacker is scripted (harness.ts): it plays the server and the colluding clients against the
 * real client state machines, or feeds the real server state machine what a bad client would send.
 * Each test asserts what the attacker ends up with, so it fails if the defence is missing.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { Attack } from './harness.js';
import { Driver } from '../driver.js';
import { expectedSum, range } from '../helpers.js';
import { buildGraph } from '../../src/graph/index.js';
import { FIELD_PRIME } from '../../src/shamir/index.js';
import { applyMaskJob, type Unmasker } from '../../src/protocol/serverRound.js';
import { validateConfig } from '../../src/protocol/config.js';
import { unsafeSeededRng } from '../../src/rng.js';
import { ClientMessageSchema } from '../../src/wire/gen/secagg/v1/secagg_pb.js';
import type { ClientId } from '../../src/ids.js';

const all = (n: number) => range(n).map((i) => i + 1);

function decodeClient(bytes: Uint8Array) {
  return fromBinary(ClientMessageSchema, bytes);
}

/**
 * The classic lie: the victim's neighbours are split in two groups, one told the victim survived
 * (so it reveals shares of b_v), the other told it dropped (so it reveals shares of s_v^SK). Both
 * groups also sign the set they were shown; every colluder signs both. Complete graph, one view.
 */
async function splitSurvivorAttack(a: Attack, victim: number, groupA: readonly number[], groupB: readonly number[]): Promise<void> {
  const everyone = all(a.config.cohort.length);
  await a.startAll();
  if (a.config.mode === 'active') for (const id of a.honestIds) await a.view(id, everyone);
  for (const id of a.honestIds) await a.keysFor(id, everyone);
  const shared = a.honestIds.filter((id) => a.ciphertexts.has(id));
  for (const id of a.honestIds) await a.sharesFor(id, shared);
  const withVictim = everyone;
  const withoutVictim = everyone.filter((v) => v !== victim);
  const shown = new Map<number, number[]>();
  for (const id of a.honestIds) shown.set(id, groupB.includes(id) ? withoutVictim : withVictim);
  if (a.config.mode === 'active') for (const id of a.honestIds) await a.consistencyFor(id, shown.get(id)!);
  for (const id of [...groupA, ...groupB]) {
    const set = shown.get(id)!;
    const signatures = a.config.mode === 'active' ? await a.signaturesOver(id, set, shown) : [];
    await a.unmaskFor(id, set, signatures);
  }
}

describe('attack 1: the threshold is checked against the realised neighbourhood', () => {
  test('an odd degree k = 5 with t = 3 (2t = 6 = the k + 1 neighbours an odd U1 gives) is refused by every client', async () => {
    const a = await new Attack({ n: 8, degree: 5, threshold: 3, mode: 'active' }).setUp();
    await a.startAll();
    for (const id of a.honestIds) {
      assert.equal(a.stage(id), 'aborted');
      assert.equal(a.errors.get(id)?.code, 'ERR_INVALID_PARAMETERS');
    }
    assert.throws(() => validateConfig(a.config), /2t > k \+ c/);
  });

  test('with the smallest threshold now allowed, splitting the victim’s neighbours yields fewer than t shares of each kind', async () => {
    // n = 8 with client 8 left out of U1 gives 7 advertised clients and (k rounded up) a complete graph of 6 neighbours each.
    const a = await new Attack({ n: 8, degree: 5, threshold: 4, mode: 'active', colluders: [8] }).setUp();
    const u1 = all(7);
    await a.startAll();
    for (const id of a.honestIds) await a.view(id, u1);
    for (const id of a.honestIds) await a.keysFor(id, u1);
    const shared = a.honestIds.filter((id) => a.ciphertexts.has(id));
    assert.equal(shared.length, 7, 'every honest client shared');
    for (const id of a.honestIds) await a.sharesFor(id, shared);
    const A = [2, 3, 4];
    const B = [5, 6, 7];
    const shown = new Map<number, number[]>();
    for (const id of a.honestIds) shown.set(id, B.includes(id) ? u1.filter((v) => v !== 1) : u1);
    for (const id of a.honestIds) await a.consistencyFor(id, shown.get(id)!);
    for (const id of [...A, ...B]) await a.unmaskFor(id, shown.get(id)!, await a.signaturesOver(id, shown.get(id)!, shown));
    const s = a.stolen(1);
    assert.ok(s.self < 4 || s.key < 4, `the attacker holds ${s.self} self and ${s.key} key shares of client 1`);
    assert.deepEqual(a.anyCompromised(), []);
  });
});

describe('attack 2: active mode has a corruption budget, and 2t > k + c holds against it', () => {
  test('positive control: a config that claims no colluders while 2 collude loses client 1’s input (the harness can win)', async () => {
    const a = await new Attack({ n: 10, degree: 'complete', threshold: 5, corruption: 0, mode: 'active', colluders: [9, 10] }).setUp();
    await splitSurvivorAttack(a, 1, [2, 3, 4], [5, 6, 7, 8]);
    assert.deepEqual(a.anyCompromised(), [1], 'with t = 5 and 2 colluders both secrets of client 1 are exposed');
  });

  test('the same 2 colluders against corruption = 2 (t = 6): no split of the 7 honest neighbours works', async () => {
    for (const [A, B] of [
      [
        [2, 3, 4],
        [5, 6, 7, 8],
      ],
      [
        [2, 3, 4, 5],
        [6, 7, 8],
      ],
    ] as const) {
      const a = await new Attack({ n: 10, degree: 'complete', threshold: 6, corruption: 2, mode: 'active', colluders: [9, 10] }).setUp();
      await splitSurvivorAttack(a, 1, A, B);
      assert.deepEqual(a.anyCompromised(), []);
    }
  });

  test('t = 5 with corruption = 2 is refused by validateConfig, and a client with its own floor of c = 2 refuses a round planned for c = 0', async () => {
    const a = await new Attack({ n: 10, degree: 'complete', threshold: 5, corruption: 2, mode: 'active' }).setUp();
    assert.throws(() => validateConfig(a.config), /2t > k \+ c/);
    const b = await new Attack({ n: 10, degree: 'complete', threshold: 5, corruption: 0, mode: 'active', floors: { minCorruption: 2 } }).setUp();
    await b.startAll();
    for (const id of b.honestIds) assert.equal(b.errors.get(id)?.code, 'ERR_INVALID_PARAMETERS');
  });
});

describe('attack 3: SecAgg+ neighbourhood isolation — the server cannot pick a client’s neighbours', () => {
  const options = { n: 20, degree: 4, threshold: 3, corruption: 1, mode: 'active' as const, colluders: [18, 19, 20], floors: { minAdvertised: 12 } };
  const C = new Set(options.colluders);
  const padded = [...all(8), 18, 19, 20, 9]; // 12 members: the victim, 8 honest clients that never see this view, the colluders
  /** The padding members are shown the whole cohort as their view: their reveals are then the attacker's to use. */
  const showOthers = async (a: Attack) => {
    for (const id of a.honestIds) if (id !== 1) await a.view(id, all(20));
  };

  test('a U1 of the victim and t colluders is refused below the victim’s own floor', async () => {
    const a = await new Attack(options).setUp();
    await a.startAll();
    const reply = await a.view(1, [1, 18, 19, 20]);
    assert.equal(reply?.body.case, 'abort');
    assert.equal(a.errors.get(1)?.code, 'ERR_BELOW_THRESHOLD');
  });

  test('a graph seed ground to put the colluders around the victim is refused, and so is a colluder reveal changed to grind', async () => {
    const a = await new Attack(options).setUp();
    await a.startAll();
    const u1 = padded.slice().sort((x, y) => x - y);
    await showOthers(a);
    assert.equal((await a.view(1, u1))?.body.case, 'viewSignature');
    // The attacker grinds seeds offline until the victim's neighbourhood is mostly colluders…
    const rng = unsafeSeededRng(99);
    let ground: Uint8Array | undefined;
    for (let i = 0; i < 100_000 && !ground; i++) {
      const seed = rng(32);
      const ns = buildGraph({ clients: u1 as ClientId[], degree: 4, seed }).neighbours(1 as ClientId);
      if (ns.filter((v) => C.has(v)).length >= 3) ground = seed;
    }
    assert.ok(ground, 'a seed that isolates the victim exists, so only the protocol can stop it');
    const before = await a.keysFor(1, u1, ground);
    assert.ok(before.neighbours(1 as ClientId).filter((v) => C.has(v)).length >= 3);
    assert.equal(a.stage(1), 'aborted');
    assert.equal(a.errors.get(1)?.code, 'ERR_INCONSISTENT_VIEW');
    assert.equal(a.stolen(1).self + a.stolen(1).key, 0, 'nothing was shared');

    const b = await new Attack(options).setUp();
    await b.startAll();
    await showOthers(b);
    await b.view(1, u1);
    b.reveals.set(18, new Uint8Array(32).fill(1)); // a reveal chosen after seeing the victim's
    await b.keysFor(1, u1, await b.seedFor(u1));
    assert.equal(b.errors.get(1)?.code, 'ERR_INCONSISTENT_VIEW');
    assert.match(b.errors.get(1)!.message, /reveal does not match its commitment/);
  });

  test('a U1 padded with honest members that were shown another view is refused before the victim shares anything, whatever the graph', async () => {
    let isolatable = 0;
    let seed = 0;
    // Rounds until the random graph has put t colluders around the victim at least once (about 1
    // in 40 rounds): the case where, before every signature was checked, the victim shared with them.
    while (isolatable === 0 && seed < 300) {
      seed++;
      const a = await new Attack({ ...options, seed }).setUp();
      await a.startAll();
      const u1 = padded.slice().sort((x, y) => x - y);
      await showOthers(a);
      await a.view(1, u1);
      const graph = await a.keysFor(1, u1);
      if (graph.neighbours(1 as ClientId).filter((v) => C.has(v)).length >= 3) isolatable++;
      // The padding members signed another view: their signatures do not verify over the victim's.
      assert.equal(a.errors.get(1)?.code, 'ERR_INCONSISTENT_VIEW');
      assert.match(a.errors.get(1)!.message, /member \d+ of U1 did not sign this view/);
      assert.equal(a.ciphertexts.has(1), false, 'no ciphertext to anyone');
      assert.deepEqual(a.stolen(1), { self: 0, key: 0 });
    }
    assert.equal(isolatable, 1, `no graph among ${seed} put t colluders around the victim`);
  });

  test('the same U1 shown to every member, each signing it, is accepted: the check costs honest rounds nothing', async () => {
    const a = await new Attack({ ...options, seed: 3 }).setUp();
    await a.startAll();
    const u1 = padded.slice().sort((x, y) => x - y);
    for (const id of u1) if (!C.has(id)) await a.view(id, u1);
    await a.keysFor(1, u1);
    assert.equal(a.errors.get(1), undefined, a.errors.get(1)?.message);
    assert.equal(a.stage(1), 'awaiting-shares');
    assert.ok(a.ciphertexts.has(1), 'the victim shares once every member of its U1 signed it');
  });
});

describe('attack 4: a one-off internal fault never publishes a wrong sum', () => {
  test('an unmasker that fails once, after adding part of its batch, aborts the round; the next deadline does not unmask again', async () => {
    let calls = 0;
    const flaky: Unmasker = async (sum, jobs, crypto) => {
      calls++;
      if (calls === 1) {
        await applyMaskJob(sum, jobs[0]!, crypto); // a partial batch lands in the running sum…
        throw new Error('worker thread crashed'); // …then a plain, untyped failure
      }
      for (const job of jobs) await applyMaskJob(sum, job, crypto);
    };
    const d = await new Driver({ n: 6, server: { unmasker: flaky } }).start();
    await d.finish();
    assert.equal(d.server.stage, 'aborted');
    assert.equal(d.server.abortError?.code, 'ERR_INTERNAL');
    assert.equal(d.server.result, undefined);
    await d.deadline(); // the stage deadline the service would still fire
    assert.equal(d.server.stage, 'aborted');
    assert.equal(d.server.result, undefined);
    assert.equal(calls, 1, 'unmasking never ran a second time on the partly unmasked sum');
  });
});

describe('attack 5: one client with a low-order key cannot kill the round', () => {
  const lowOrder = [new Uint8Array(32), Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0))];

  test('the server refuses low-order keys at AdvertiseKeys; the round completes without that client', async () => {
    for (const bad of lowOrder) {
      for (const field of ['maskingPublicKey', 'encryptionPublicKey'] as const) {
        const d = await new Driver({ n: 6 }).start();
        const replies = await d.collectReplies();
        const evil = decodeClient(replies[0]!.bytes);
        if (evil.body.case === 'advertiseKeys') evil.body.value[field] = bad;
        const error = await d.toServer(replies[0]!.from, toBinary(ClientMessageSchema, evil));
        assert.equal(error?.code, 'ERR_INVALID_KEY');
        for (const r of replies.slice(1)) assert.equal(await d.toServer(r.from, r.bytes), undefined);
        await d.deadline();
        await d.finish();
        assert.equal(d.server.stage, 'done', d.server.abortError?.message);
        assert.deepEqual([...d.server.result!.included], [2, 3, 4, 5, 6]);
        assert.deepEqual(d.server.result!.sum, expectedSum(d.inputs, [1, 2, 3, 4, 5], d.config.bits));
      }
    }
  });

  test('a low-order key forwarded by a malicious server makes that neighbour a dropout for the client, not an abort', async () => {
    const a = await new Attack({ n: 6, degree: 'complete', threshold: 3, mode: 'semi-honest', colluders: [6] }).setUp();
    await a.startAll();
    a.keys.set(6, { encryption: lowOrder[1]!, masking: lowOrder[0]! });
    await a.keysFor(1, all(6));
    assert.equal(a.stage(1), 'awaiting-shares');
    assert.deepEqual([...a.ciphertexts.get(1)!.keys()], [2, 3, 4, 5]);
  });
});

describe('attack 6: the key-share check is binding, so bad share holders are named exactly', () => {
  test('a holder that shifts its share of a dropped client’s key by an X25519-ignored bit is named, and only it', async () => {
    const d = await new Driver({ n: 7 }).start(); // t = 4
    await d.until('masked');
    await d.toClients([7]); // client 7 drops after sharing: its masking key must be reconstructed
    await d.flush();
    if (d.server.stage === 'consistency') await d.until('unmask');
    await d.toClients();
    const t = d.config.threshold;
    // Holder 1 is in the canonical subset {1, …, t}; it adds λ_1(0)^-1 to chunk 0 of its share, so
    // the interpolated secret moves by exactly +1: bit 0, which X25519 clamps away.
    const subset = range(t).map((i) => BigInt(i + 1));
    const p = BigInt(FIELD_PRIME);
    const pow = (b: bigint, e: bigint): bigint => (e === 0n ? 1n : e % 2n ? (b * pow((b * b) % p, e / 2n)) % p : pow((b * b) % p, e / 2n));
    let lambda = 1n;
    for (const x of subset.slice(1)) lambda = (lambda * x * pow((((x - 1n) % p) + p) % p, p - 2n)) % p;
    const shift = pow(lambda, p - 2n);
    for (const r of d.replies) {
      if (r.from !== 1) continue;
      const m = decodeClient(r.bytes);
      if (m.body.case !== 'unmaskResponse') continue;
      const share = m.body.value.keyShares.find((s) => s.owner === 7)!;
      const bytes = share.share.slice();
      const dv = new DataView(bytes.buffer);
      dv.setUint32(0, Number((BigInt(dv.getUint32(0, true)) + shift) % p), true);
      share.share = bytes;
      r.bytes = toBinary(ClientMessageSchema, m);
    }
    await d.flush();
    assert.equal(d.server.stage, 'done', d.server.abortError?.message);
    assert.deepEqual([...d.server.result!.badShareHolders], [1]);
    assert.deepEqual(d.server.result!.sum, expectedSum(d.inputs, range(6), d.config.bits));
  });
});

describe('attack 7: one lying holder costs one slow reconstruction, not one per owner', () => {
  test('a holder that corrupts every share it reveals is named once and left out of the rest; the server keeps yielding', async () => {
    let yields = 0;
    const n = 40;
    const d = await new Driver({ n, m: 8, server: { yieldToEventLoop: async () => void yields++ } }).start();
    await d.until('unmask');
    await d.toClients();
    for (const r of d.replies) {
      if (r.from !== 1) continue;
      const m = decodeClient(r.bytes);
      if (m.body.case !== 'unmaskResponse') continue;
      for (const s of m.body.value.selfMaskShares) {
        const bytes = s.share.slice();
        bytes[4] = (bytes[4]! + 1) & 0xff; // chunk 1 moves by 1: still a valid field element
        s.share = bytes;
      }
      r.bytes = toBinary(ClientMessageSchema, m);
    }
    await d.flush();
    assert.equal(d.server.stage, 'done', d.server.abortError?.message);
    assert.deepEqual([...d.server.result!.badShareHolders], [1]);
    assert.deepEqual(d.server.result!.sum, expectedSum(d.inputs, range(n), d.config.bits));
    assert.equal(d.server.result!.exactShareChecks, 1, `${n - 1} owners, one exact check`);
    assert.ok(yields >= Math.floor(n / 16), `${yields} yields to the event loop during ${n} reconstructions`);
  });
});

describe('attack 10: replay, floors', () => {
  test('a consistency signature from an earlier run with the same round id is refused: the view digest is fresh', async () => {
    const id = new Uint8Array(16).fill(42);
    const first = await new Driver({ n: 6, mode: 'active', roundId: id, seed: 1 }).start();
    await first.until('consistency');
    await first.toClients();
    const old = first.replies.find((r) => r.from === 3)!;
    const second = await new Driver({ n: 6, mode: 'active', roundId: id, seed: 2 }).start();
    assert.deepEqual(second.config.roundId, first.config.roundId);
    await second.until('consistency');
    const refused = await second.toServer(3, old.bytes);
    assert.equal(refused?.code, 'ERR_SIGNATURE_INVALID');
  });

  test('a client refuses a cohort, U1 or threshold below its own floors', async () => {
    const small = await new Attack({ n: 6, degree: 'complete', threshold: 3, mode: 'active', floors: { minCohort: 10 } }).setUp();
    await small.startAll();
    assert.match(small.errors.get(1)!.message, /cohort of 6 is below this client's floor of 10/);
    const low = await new Attack({ n: 6, degree: 'complete', threshold: 3, mode: 'active', floors: { minThreshold: 4 } }).setUp();
    await low.startAll();
    assert.match(low.errors.get(1)!.message, /threshold 3 is below this client's floor of 4/);
    const few = await new Attack({ n: 9, degree: 'complete', threshold: 5, mode: 'active', floors: { minAdvertised: 8 } }).setUp();
    await few.startAll();
    await few.view(1, all(7));
    assert.equal(few.errors.get(1)?.code, 'ERR_BELOW_THRESHOLD');
  });
});
