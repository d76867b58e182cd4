/**
 * Red-team review of the latest security changes (bounds against the realised neighbourhood, the
 * active-mode view stage, client floors, "bad neighbour = dropout", hasEdge, low-order keys, clamped
 * key shares, commit-once unmasking, bad-holder exclusion, kind-before-decode).
 *
 * Every test drives the real state machines. The attacker is either the scripted malicious server
 * of harness.ts (it plays the server and the colluders against real clients) or a bad client
 * feeding the real server (driver.ts).
 *
 * Convention: a test marked `test.todo` is a SUCCESSFUL ATTACK. Its body asserts the secure
 * behaviour, so it fails today (node:test reports it as a todo, not a failure); it will pass once
 * the flaw is fixed. Every plain `test` is an attack that the code currently defeats (or a measured
 * observation); it must pass.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { Attack } from './harness.js';
import { Driver } from '../driver.js';
import { expectedSum, range } from '../helpers.js';
import { nodeCrypto } from '../../src/crypto/node.js';
import * as derive from '../../src/protocol/derive.js';
import { buildGraph } from '../../src/graph/index.js';
import { combineShares, SHARE_BYTES } from '../../src/shamir/index.js';
import { RingAccumulator } from '../../src/ring/accumulator.js';
import { minimumThreshold } from '../../src/protocol/config.js';
import { encodeClientMessage, type ClientBody } from '../../src/wire/codec.js';
import { ClientMessageSchema, type ClientMessage } from '../../src/wire/gen/secagg/v1/secagg_pb.js';
import type { ClientId } from '../../src/ids.js';
import type { ServerState } from '../../src/protocol/serverRound.js';
import { concatBytes } from '../../src/bytes.js';

const all = (n: number) => range(n).map((i) => i + 1);
const decodeClient = (bytes: Uint8Array): ClientMessage => fromBinary(ClientMessageSchema, bytes);

// ------------------------------------------------------------------------------------------------
// Helpers for the "mask-partner" attack

/** Shares the attacker collected, owner → holder → share, per kind. */
interface Loot {
  readonly self: Map<number, Map<number, Uint8Array>>;
  readonly key: Map<number, Map<number, Uint8Array>>;
}

function lootOf(): Loot {
  return { self: new Map(), key: new Map() };
}

function put(into: Map<number, Map<number, Uint8Array>>, owner: number, holder: number, share: Uint8Array): void {
  let m = into.get(owner);
  if (!m) into.set(owner, (m = new Map()));
  m.set(holder, share);
}

/** A ciphertext a colluder sends to an honest client (its content is irrelevant: the colluder knows its own secrets). */
async function colluderCiphertext(a: Attack, from: number, to: number): Promise<Uint8Array> {
  const c = a.colluders.get(from)!;
  const round = a.config.roundId;
  const key = await derive.shareKey(nodeCrypto, await c.encryption.agree(a.keys.get(to)!.encryption), round, from as ClientId, to as ClientId);
  const pt = derive.sharePlaintext(from as ClientId, to as ClientId, new Uint8Array(SHARE_BYTES), new Uint8Array(SHARE_BYTES));
  return nodeCrypto.aeadSeal(key, derive.shareNonce(from as ClientId, to as ClientId), pt, derive.sharesAad(round, from as ClientId, to as ClientId));
}

/**
 * The mask-partner attack. Everyone is shown one honest view, one honest graph. The server then
 * forwards to the victim ONLY the ciphertexts of `partners` (≥ t of them), so the victim masks its
 * input with those partners alone. At unmasking it shows survivor sets such that
 *   - every holder of the victim is told the victim survived  → t self-mask shares of b_victim;
 *   - every holder of each honest partner v is told v dropped → t key shares of s_v^SK.
 * No honest holder is ever asked for both kinds of share of the SAME owner, so the never-both rule
 * and the bound 2t > k + c (which only counts both kinds of one owner) do not apply; yet b_victim
 * plus every partner's masking key strip every mask off y_victim.
 */
async function partnerAttack(a: Attack, victim: number, partners: readonly number[], shown: ReadonlyMap<number, readonly number[]>): Promise<Loot> {
  const everyone = a.config.cohort.slice() as number[];
  const active = a.config.mode === 'active';
  await a.startAll();
  if (active) for (const id of a.honestIds) await a.view(id, everyone);
  for (const id of a.honestIds) await a.keysFor(id, everyone);
  const shared = a.honestIds.filter((id) => a.ciphertexts.has(id));
  assert.deepEqual(shared, a.honestIds, 'every honest client shared its keys');
  for (const id of a.honestIds) {
    if (id !== victim) {
      await a.sharesFor(id, shared);
      continue;
    }
    const shares = [];
    for (const p of [...partners].sort((x, y) => x - y)) {
      if (!a.isColluder(p) && !a.ciphertexts.get(p)?.has(victim)) continue;
      const ciphertext = a.isColluder(p) ? await colluderCiphertext(a, p, victim) : a.ciphertexts.get(p)!.get(victim)!;
      shares.push({ peer: p, ciphertext });
    }
    await a.deliver(victim, { case: 'shares', value: { shares } });
  }
  for (const id of a.honestIds) assert.ok(a.masked.has(id), `client ${id} sent its masked input (${a.errors.get(id)?.message})`);
  if (active) for (const id of a.honestIds) await a.consistencyFor(id, shown.get(id)!);
  const loot = lootOf();
  for (const id of a.honestIds) {
    const set = shown.get(id)!;
    const signatures = active ? await a.signaturesOver(id, set, new Map([...shown].map(([k, v]) => [k, [...v]]))) : [];
    const reply = await a.unmaskFor(id, set, signatures);
    if (reply?.body.case !== 'unmaskResponse') continue; // refused: the attacker gets nothing from this client
    for (const s of reply.body.value.selfMaskShares) put(loot.self, s.owner, id, s.share);
    for (const s of reply.body.value.keyShares) put(loot.key, s.owner, id, s.share);
  }
  // Each colluder holds both kinds of share of every honest client that encrypted to it.
  for (const [owner, cts] of a.ciphertexts) {
    for (const [holder, ciphertext] of cts) {
      const c = a.colluders.get(holder);
      if (!c) continue;
      const round = a.config.roundId;
      const key = await derive.shareKey(nodeCrypto, await c.encryption.agree(a.keys.get(owner)!.encryption), round, holder as ClientId, owner as ClientId);
      const pt = await nodeCrypto.aeadOpen(
        key,
        derive.shareNonce(owner as ClientId, holder as ClientId),
        ciphertext,
        derive.sharesAad(round, owner as ClientId, holder as ClientId),
      );
      put(loot.key, owner, holder, pt.slice(8, 8 + SHARE_BYTES));
      put(loot.self, owner, holder, pt.slice(8 + SHARE_BYTES));
    }
  }
  return loot;
}

class NotEnoughShares extends Error {}

function firstT(m: Map<number, Uint8Array> | undefined, t: number): { holders: number[]; shares: Uint8Array[] } {
  const entries = [...(m ?? new Map<number, Uint8Array>()).entries()].sort((x, y) => x[0] - y[0]).slice(0, t);
  if (entries.length < t) throw new NotEnoughShares(`only ${entries.length} shares, need ${t}`);
  return { holders: entries.map((e) => e[0]), shares: entries.map((e) => e[1]) };
}

/** What the attacker computes from the loot: y_victim − PRG(b_victim) − Σ_partners ±PRG(s_victim,v). */
async function stripMasks(a: Attack, victim: number, partners: readonly number[], loot: Loot): Promise<Uint32Array> {
  const { roundId, bits, dimension } = a.config;
  const acc = new RingAccumulator(dimension);
  acc.addPacked(a.masked.get(victim)!, bits, 1);
  const b = combineShares(firstT(loot.self.get(victim), a.t));
  await acc.addPrg(nodeCrypto, await derive.selfMaskKey(nodeCrypto, b, roundId, victim as ClientId), -1);
  const victimMaskingKey = a.keys.get(victim)!.masking;
  for (const v of partners) {
    const colluder = a.colluders.get(v);
    const priv = colluder ? colluder.masking : await nodeCrypto.x25519(combineShares(firstT(loot.key.get(v), a.t)));
    const key = await derive.pairwiseMaskKey(nodeCrypto, await priv.agree(victimMaskingKey), roundId, victim as ClientId, v as ClientId);
    await acc.addPrg(nodeCrypto, key, v > victim ? -1 : 1); // the victim added +PRG for v > victim
  }
  return acc.toVector(bits);
}

/** The attack's outcome: the input it computes, or undefined when it could not gather t shares of what it needs. */
async function recovered(a: Attack, victim: number, partners: readonly number[], loot: Loot): Promise<Uint32Array | undefined> {
  if (!a.masked.has(victim)) return undefined;
  try {
    return await stripMasks(a, victim, partners, loot);
  } catch (e) {
    if (e instanceof NotEnoughShares) return undefined;
    throw e;
  }
}

function assertNotRecovered(x: Uint32Array | undefined, input: Uint32Array | undefined): void {
  if (x !== undefined) assert.notDeepEqual(x, input, 'the attacker recovered the victim’s private input');
}

/** Honest owners of which the attacker holds t shares of BOTH kinds: what attacks.test.ts / property.test.ts measure. */
function compromisedBothKinds(a: Attack, loot: Loot): number[] {
  return a.honestIds.filter((v) => (loot.self.get(v)?.size ?? 0) >= a.t && (loot.key.get(v)?.size ?? 0) >= a.t);
}

describe('R1 (fixed): the mask-partner attack — the server forwards the victim only t partners, then shows survivor sets in which the victim survived and its partners dropped', () => {
  test('active SecAgg, n = 6, t = 3, no colluders: x_1 is not recovered (survivor sets need a quorum of U1; a survivor the victim did not get shares from is refused)', async () => {
    const n = 6;
    assert.equal(minimumThreshold('active', 'complete', n, 0), 3, 'the threshold the library picks by default');
    const a = await new Attack({ n, degree: 'complete', threshold: 3, mode: 'active' }).setUp();
    const victim = 1;
    const partners = [2, 3, 4];
    const S = [1, 5, 6]; // shown to the victim and to 5, 6: the partners "dropped"
    const shown = new Map<number, number[]>([
      [1, S],
      [5, S],
      [6, S],
      [2, all(n)],
      [3, all(n)],
      [4, all(n)],
    ]);
    const loot = await partnerAttack(a, victim, partners, shown);
    assert.deepEqual(compromisedBothKinds(a, loot), [], 'no owner had both kinds revealed: the existing metric sees nothing');
    assertNotRecovered(await recovered(a, victim, partners, loot), a.inputs.get(victim));
  });

  test('active SecAgg, n = 10, t = 6, corruption = 2 with 2 colluders: x_1 is not recovered', async () => {
    const a = await new Attack({ n: 10, degree: 'complete', threshold: 6, corruption: 2, mode: 'active', colluders: [9, 10] }).setUp();
    const victim = 1;
    const partners = [2, 3, 4, 5, 9, 10]; // t partners, two of them colluders
    const S = [1, 6, 7, 8, 9, 10];
    const shown = new Map<number, number[]>();
    for (const id of a.honestIds) shown.set(id, [2, 3, 4, 5].includes(id) ? all(10) : S);
    const loot = await partnerAttack(a, victim, partners, shown);
    assert.deepEqual(compromisedBothKinds(a, loot), []);
    assertNotRecovered(await recovered(a, victim, partners, loot), a.inputs.get(victim));
  });

  test('semi-honest SecAgg, n = 6, t = 3: this variant is refused too (the victim checks the survivors against whom it got shares from)', async () => {
    const a = await new Attack({ n: 6, degree: 'complete', threshold: 3, mode: 'semi-honest' }).setUp();
    const S = [1, 5, 6];
    const shown = new Map<number, number[]>([
      [1, S],
      [5, S],
      [6, S],
      [2, all(6)],
      [3, all(6)],
      [4, all(6)],
    ]);
    const loot = await partnerAttack(a, 1, [2, 3, 4], shown);
    // The victim refuses a survivor set naming a neighbour that never shared with it (this variant
    // fails in semi-honest mode too; with no signatures at all, semi-honest mode is still not a
    // defence against a lying server in general — docs/protocol.md).
    assertNotRecovered(await recovered(a, 1, [2, 3, 4], loot), a.inputs.get(1));
  });

  test('active SecAgg+ (degree 10, t = 6, n = 30, no colluders): x_u is not recovered although every survivor set the victim sees is within the neighbours it exchanged shares with', async () => {
    const n = 30;
    const k = 10;
    const t = minimumThreshold('active', k, n, 0);
    assert.equal(t, 6);
    const a = await new Attack({ n, degree: k, threshold: t, mode: 'active' }).setUp();
    // Dry run to learn the honest graph (the seed the reveals give is the same in the real run:
    // the harness's clients are deterministic), then choose partners P ⊆ N(u) with, for each v ∈ P,
    // at least t holders of v outside P ∪ {u}.
    const dry = await new Attack({ n, degree: k, threshold: t, mode: 'active' }).setUp();
    await dry.startAll();
    for (const id of dry.honestIds) await dry.view(id, all(n));
    const graph = buildGraph({ clients: all(n) as ClientId[], degree: k, seed: await dry.seedFor(all(n)) });
    let victim = 0;
    let partners: number[] | undefined;
    for (const u of all(n)) {
      const nu = graph.neighbours(u as ClientId);
      const choose = (from: number, acc: number[]): number[] | undefined => {
        if (acc.length === t) {
          const P = new Set([...acc, u]);
          return acc.every((v) => graph.neighbours(v as ClientId).filter((w) => !P.has(w)).length >= t) ? acc : undefined;
        }
        for (let i = from; i < nu.length; i++) {
          const r = choose(i + 1, [...acc, nu[i]!]);
          if (r) return r;
        }
        return undefined;
      };
      partners = choose(0, []);
      if (partners) {
        victim = u;
        break;
      }
    }
    assert.ok(partners, 'a partner set exists');
    const P = new Set(partners);
    const Su = [victim, ...partners].sort((x, y) => x - y); // ⊆ the victim's held ∪ {victim}: Bonawitz's U3 ⊆ U2 holds for it
    const S = all(n).filter((v) => !P.has(v));
    const shown = new Map<number, number[]>();
    for (const id of a.honestIds) shown.set(id, id === victim || P.has(id) ? Su : S);
    const loot = await partnerAttack(a, victim, partners!, shown);
    assert.deepEqual(compromisedBothKinds(a, loot), []);
    assertNotRecovered(await recovered(a, victim, partners!, loot), a.inputs.get(victim));
  });
});

describe('R1 controls', () => {
  test('control: with one more than the default threshold (2t > |U1| + c: two signature quorums must share an honest signer) the partner attack cannot even form its survivor sets', async () => {
    const a = await new Attack({ n: 6, degree: 'complete', threshold: 4, mode: 'active' }).setUp();
    await a.startAll();
    for (const id of a.honestIds) await a.view(id, all(6));
    for (const id of a.honestIds) await a.keysFor(id, all(6));
    const partners = [2, 3, 4, 5]; // t partners
    await a.deliver(1, { case: 'shares', value: { shares: partners.map((p) => ({ peer: p, ciphertext: a.ciphertexts.get(p)!.get(1)! })) } });
    for (const id of [2, 3, 4, 5, 6]) await a.sharesFor(id, a.honestIds);
    // The partners must be "dropped" for their holders: what is left, {1, 6}, is below t.
    await a.consistencyFor(1, [1, 6]);
    assert.equal(a.stage(1), 'aborted');
    assert.equal(a.errors.get(1)?.code, 'ERR_BELOW_THRESHOLD');
  });
});

// ------------------------------------------------------------------------------------------------
// A single bad client against an honest server

/** Replace client `from`'s queued reply (decoded) by `edit(msg)`; returns the new bytes. */
function edited(bytes: Uint8Array, edit: (m: ClientMessage) => void): Uint8Array {
  const m = decodeClient(bytes);
  edit(m);
  return toBinary(ClientMessageSchema, m);
}

/** Run the share stage with `from`'s ShareKeys rewritten by `rewrite`, then finish honestly (with `silentAtMasked` dropping before MaskedInput). */
async function withShareKeys(
  d: Driver,
  from: number,
  rewrite: (m: ClientMessage) => Promise<void> | void,
  silentAtMasked: readonly number[] = [],
): Promise<void> {
  await d.until('share');
  const replies = await d.collectReplies();
  for (const r of replies) {
    let bytes = r.bytes;
    if (r.from === from) {
      const m = decodeClient(bytes);
      await rewrite(m);
      bytes = toBinary(ClientMessageSchema, m);
    }
    const refused = await d.toServer(r.from, bytes);
    // An honest client's ShareKeys is always taken; a rewritten one may be refused (one that
    // leaves a neighbour out is: that client is then simply not in U2).
    if (r.from !== from) assert.equal(refused, undefined, 'the server takes every honest ShareKeys');
  }
  if (d.server.stage === 'share') await d.deadline();
  if (silentAtMasked.length > 0 && d.server.stage === 'masked') {
    await d.toClients(silentAtMasked);
    await d.flush();
  }
  await d.finish();
}

describe('R2: one bad client against a round run by an honest server (fixed, but for the dealer-framing todo)', () => {
  test('residual (no verifiable secret sharing): a survivor with a false self-mask commitment aborts the round — never a wrong sum — and the abort names it', async () => {
    const d = await new Driver({ n: 6 }).start();
    await withShareKeys(d, 1, (m) => {
      if (m.body.case === 'shareKeys') m.body.value.selfMaskCommitment = new Uint8Array(32).fill(0xee);
    });
    assert.equal(stageOf(d.server), 'aborted');
    assert.equal(d.server.result, undefined);
    assert.equal(d.server.abortError?.code, 'ERR_RECONSTRUCTION_FAILED');
    assert.ok(d.server.abortError!.clients.includes(1), `the abort names client 1: ${d.server.abortError!.clients}`);
  });

  test('a client whose ciphertexts do not open makes no honest neighbour abort; the round ends at unmasking, naming it, with no sum', async () => {
    const d = await new Driver({ n: 6 }).start();
    await withShareKeys(d, 1, (m) => {
      if (m.body.case !== 'shareKeys') return;
      for (const s of m.body.value.shares) {
        const c = s.ciphertext.slice();
        c[0] = c[0]! ^ 1;
        s.ciphertext = c;
      }
    });
    const aborted = [...d.clients].filter(([id, c]) => id !== 1 && c.stage === 'aborted').map(([id, c]) => `${id}:${c.abortCode}`);
    assert.deepEqual(aborted, [], 'no honest client aborted');
    // Nobody holds client 1's secrets, so its self mask cannot be removed (residual: a client that
    // shares nothing usable and then survives still ends the round; never with a wrong sum).
    assert.equal(stageOf(d.server), 'aborted');
    assert.equal(d.server.result, undefined);
    assert.ok(d.server.abortError!.clients.includes(1), `${d.server.abortError?.message}`);
  });

  test('a client that encrypts to only t of its neighbours is not admitted to U2, so one ordinary dropout among them does not sink the round', async () => {
    // n = 7, t = 4. Client 1 keeps only 2..5; client 2 then drops before MaskedInput, as clients do.
    const d = await new Driver({ n: 7 }).start();
    assert.equal(d.config.threshold, 4);
    await withShareKeys(
      d,
      1,
      (m) => {
        if (m.body.case === 'shareKeys') m.body.value.shares = m.body.value.shares.filter((s) => s.peer <= 5);
      },
      [2],
    );
    assert.equal(d.server.stage, 'done', `aborted: ${d.server.abortError?.message}`);
  });

  test('control: the same dropout with client 1 sharing honestly completes', async () => {
    const d = await new Driver({ n: 7 }).start();
    await withShareKeys(d, 1, () => {}, [2]);
    assert.equal(d.server.stage, 'done', d.server.abortError?.message);
    assert.deepEqual(d.server.result!.sum, expectedSum(d.inputs, [0, 2, 3, 4, 5, 6], d.config.bits));
  });

  test.todo('a dealer frames an honest holder: client 1 puts a wrong share (inside a valid ciphertext) for client 2, and the server names 2 in badShareHolders and drops it from later reconstructions', async () => {
    const d = await new Driver({ n: 6 }).start(); // t = 3: holders of 1's self mask are 2..6, canonical {2, 3, 4}
    const round = d.config.roundId;
    await withShareKeys(d, 1, async (m) => {
      if (m.body.case !== 'shareKeys') return;
      const entry = m.body.value.shares.find((s) => s.peer === 2)!;
      const c1 = d.clients.get(1)!;
      assert.equal(c1.stage, 'awaiting-shares');
      const key = (c1 as Extract<typeof c1, { stage: 'awaiting-shares' }>).shareKeys.get(2)!;
      const nonce = derive.shareNonce(1 as ClientId, 2 as ClientId);
      const aad = derive.sharesAad(round, 1 as ClientId, 2 as ClientId);
      const pt = await nodeCrypto.aeadOpen(key, nonce, entry.ciphertext, aad);
      const dv = new DataView(pt.buffer, pt.byteOffset + 8 + SHARE_BYTES, SHARE_BYTES); // 2's share of b_1
      dv.setUint32(0, (dv.getUint32(0, true) + 1) % 67108859, true); // still a field element
      entry.ciphertext = await nodeCrypto.aeadSeal(key, nonce, pt, aad);
    });
    assert.equal(d.server.stage, 'done', d.server.abortError?.message);
    assert.deepEqual(d.server.result!.sum, expectedSum(d.inputs, range(6), d.config.bits), 'the sum is right');
    assert.ok(!d.server.result!.badShareHolders.includes(2 as ClientId), `honest client 2 named as a bad share holder: ${d.server.result!.badShareHolders}`);
  });
});

describe('R3: bad-client attacks the honest server defeats', () => {
  test('ShareKeys that leaves two neighbours out is refused: the round completes without its sender, with the right sum', async () => {
    const d = await new Driver({ n: 7 }).start();
    await withShareKeys(
      d,
      1,
      (m) => {
        if (m.body.case === 'shareKeys') m.body.value.shares = m.body.value.shares.filter((s) => s.peer !== 2 && s.peer !== 3);
      },
      [1],
    );
    assert.equal(d.server.stage, 'done', d.server.abortError?.message);
    assert.deepEqual(d.server.result!.sum, expectedSum(d.inputs, [1, 2, 3, 4, 5, 6], d.config.bits));
    assert.deepEqual([...d.server.result!.included], [2, 3, 4, 5, 6, 7]);
  });

  test('every refused message leaves the server untouched (advertise, view, share stages, active mode): the same clients then complete the round with the right sum', async () => {
    const d = await new Driver({ n: 6, mode: 'active' }).start();
    const refusals: string[] = [];
    const refuse = async (from: number, bytes: Uint8Array, why: string) => {
      const e = await d.toServer(from, bytes);
      assert.ok(e, `${why} was accepted`);
      refusals.push(`${why}: ${e.code}`);
    };
    // advertise
    let replies = await d.collectReplies();
    const adv = replies.find((r) => r.from === 2)!;
    await refuse(
      2,
      edited(adv.bytes, (m) => m.body.case === 'advertiseKeys' && (m.body.value.maskingPublicKey = new Uint8Array(32))),
      'low-order masking key',
    );
    await refuse(
      2,
      edited(adv.bytes, (m) => m.body.case === 'advertiseKeys' && (m.body.value.seedCommitment = new Uint8Array(31))),
      'short seed commitment',
    );
    await refuse(
      2,
      edited(adv.bytes, (m) => m.body.case === 'advertiseKeys' && (m.body.value.signature = new Uint8Array(64))),
      'unsigned keys',
    );
    const other = replies.find((r) => r.from === 3)!;
    await refuse(
      2,
      edited(other.bytes, (m) => (m.sender = 2)),
      "client 3's keys replayed by 2",
    );
    await refuse(
      2,
      encodeClientMessage(d.config.roundId, 2 as ClientId, {
        case: 'viewSignature',
        value: { signature: new Uint8Array(64), seedReveal: new Uint8Array(32), nextSeedCommitment: new Uint8Array(32) },
      }),
      'a view signature during advertise',
    );
    for (const r of replies) assert.equal(await d.toServer(r.from, r.bytes), undefined);
    assert.equal(stageOf(d.server), 'view');
    // view
    replies = await d.collectReplies();
    const vs = replies.find((r) => r.from === 2)!;
    await refuse(
      2,
      edited(vs.bytes, (m) => m.body.case === 'viewSignature' && (m.body.value.seedReveal = new Uint8Array(32).fill(1))),
      'a reveal that does not match the commitment',
    );
    await refuse(
      2,
      edited(vs.bytes, (m) => {
        if (m.body.case === 'viewSignature') {
          const s = m.body.value.signature.slice();
          s[5] = s[5]! ^ 1;
          m.body.value.signature = s;
        }
      }),
      'a bad view signature',
    );
    await refuse(
      2,
      edited(vs.bytes, (m) => m.body.case === 'viewSignature' && (m.body.value.nextSeedCommitment = new Uint8Array(0))),
      'no next commitment',
    );
    await refuse(
      2,
      edited(replies.find((r) => r.from === 3)!.bytes, (m) => (m.sender = 2)),
      "client 3's view signature replayed by 2",
    );
    const body: ClientBody = { case: 'shareKeys', value: { selfMaskCommitment: new Uint8Array(32), shares: [] } };
    await refuse(2, encodeClientMessage(d.config.roundId, 2 as ClientId, body), 'ShareKeys during the view stage');
    for (const r of replies) assert.equal(await d.toServer(r.from, r.bytes), undefined);
    await refuse(2, vs.bytes, 'the same view signature twice');
    assert.equal(viewAttempt(d.server), 1, 'no refusal cost a view attempt');
    assert.equal(stageOf(d.server), 'share');
    // share
    replies = await d.collectReplies();
    const sk = replies.find((r) => r.from === 4)!;
    await refuse(
      4,
      edited(sk.bytes, (m) => m.body.case === 'shareKeys' && (m.body.value.shares = m.body.value.shares.slice(0, d.config.threshold - 1))),
      'ShareKeys below t',
    );
    await refuse(
      4,
      edited(sk.bytes, (m) => m.body.case === 'shareKeys' && m.body.value.shares.reverse()),
      'ShareKeys not ascending',
    );
    await refuse(
      4,
      edited(sk.bytes, (m) => m.body.case === 'shareKeys' && (m.body.value.shares[0]!.peer = 4)),
      'ShareKeys to itself',
    );
    await refuse(
      4,
      edited(sk.bytes, (m) => m.body.case === 'shareKeys' && (m.body.value.shares[1]!.ciphertext = new Uint8Array(111))),
      'a short ciphertext',
    );
    for (const r of replies) assert.equal(await d.toServer(r.from, r.bytes), undefined);
    await d.until('unmask');
    // unmask
    replies = await d.collectReplies();
    const um = replies.find((r) => r.from === 5)!;
    await refuse(
      5,
      edited(um.bytes, (m) => {
        if (m.body.case === 'unmaskResponse') m.body.value.keyShares = [{ ...m.body.value.selfMaskShares[0]!, owner: 1 }];
      }),
      'a key share of a survivor',
    );
    await refuse(
      5,
      edited(um.bytes, (m) => {
        if (m.body.case === 'unmaskResponse') m.body.value.selfMaskShares.push(m.body.value.selfMaskShares[0]!);
      }),
      'two shares of one owner',
    );
    await refuse(
      5,
      edited(um.bytes, (m) => {
        if (m.body.case === 'unmaskResponse') m.body.value.selfMaskShares[0]!.share = new Uint8Array(SHARE_BYTES - 1);
      }),
      'a short share',
    );
    for (const r of replies) assert.equal(await d.toServer(r.from, r.bytes), undefined);
    await refuse(5, um.bytes, 'a second unmask response');
    assert.equal(d.server.stage, 'done', d.server.abortError?.message);
    assert.deepEqual(d.server.result!.sum, expectedSum(d.inputs, range(6), d.config.bits));
    assert.deepEqual([...d.server.result!.badShareHolders], []);
    assert.equal(d.server.result!.viewAttempts, 1);
    assert.ok(refusals.length >= 18, refusals.join('; '));
  });

  test('a member that answers the view and then aborts costs one view attempt, not the round', async () => {
    const e = await new Driver({ n: 6, mode: 'active' }).start();
    await e.until('view');
    const rs = await e.collectReplies();
    await e.toServer(6, rs.find((r) => r.from === 6)!.bytes);
    await e.toServer(6, encodeClientMessage(e.config.roundId, 6 as ClientId, { case: 'abort', value: { code: 'ERR_ABORTED' } }));
    for (const r of rs) if (r.from !== 6) await e.toServer(r.from, r.bytes);
    assert.equal(stageOf(e.server), 'view');
    assert.equal(viewAttempt(e.server), 2);
    // Attempt 1's view signature replayed at attempt 2: refused (its reveal is for attempt 1).
    assert.ok(await e.toServer(1, rs.find((r) => r.from === 1)!.bytes), 'an attempt-1 view signature replayed at attempt 2');
    assert.equal(stageOf(e.server) === 'view' && (e.server as Extract<ServerState, { stage: 'view' }>).view.answers.size, 0);
    await e.finish();
    assert.equal(e.server.stage, 'done', e.server.abortError?.message);
    assert.deepEqual([...e.server.result!.included], [1, 2, 3, 4, 5]);
    assert.deepEqual(e.server.result!.sum, expectedSum(e.inputs, range(5), e.config.bits));
  });

  test('observation (liveness): three members failing to reveal, one per attempt, abort an active round; every attempt is one more stage timeout', async () => {
    const d = await new Driver({ n: 9, mode: 'active' }).start();
    await d.until('view');
    for (const silent of [9, 8, 7]) {
      await d.toClients([silent]);
      await d.flush();
    }
    assert.equal(stageOf(d.server), 'aborted');
    assert.equal(d.server.abortError?.code, 'ERR_BELOW_THRESHOLD');
    assert.match(d.server.abortError!.message, /all 3 view attempts/);
  });
});

// ------------------------------------------------------------------------------------------------
// The view stage against a malicious server

/** The keys message an attacker builds for `to` over `advertised` for view attempt `attempt` (colluders sign in their own name). */
async function keysMessage(
  a: Attack,
  to: number,
  advertised: readonly number[],
  attempt: number,
  commitments: readonly Uint8Array[],
  reveals: readonly Uint8Array[],
  seed?: Uint8Array,
) {
  const digest = await derive.viewDigest(nodeCrypto, a.config.roundId, attempt, advertised, commitments);
  const graphSeed = seed ?? (await derive.viewGraphSeed(nodeCrypto, digest, reveals));
  const graph = buildGraph({ clients: advertised as ClientId[], degree: a.config.degree, seed: graphSeed });
  const ns = graph.neighbours(to as ClientId);
  const neighbours = ns.map((v) => ({
    client: v,
    encryptionPublicKey: a.keys.get(v)!.encryption,
    maskingPublicKey: a.keys.get(v)!.masking,
    signature: new Uint8Array(64),
  }));
  const viewSignatures = [];
  const memberKeys = [];
  for (const v of advertised) {
    if (v === to) continue;
    const c = a.colluders.get(v);
    const k = a.keys.get(v)!;
    viewSignatures.push({
      client: v,
      signature: c ? await c.identity.sign(derive.viewTranscript(digest, v as ClientId, k.encryption, k.masking)) : new Uint8Array(64),
    });
    if (!(ns as readonly number[]).includes(v)) memberKeys.push(concatBytes(k.encryption, k.masking));
  }
  return {
    body: {
      case: 'keys' as const,
      value: { graphSeed, advertised: advertised.slice(), neighbours, view: { seedReveals: reveals.slice(), viewSignatures, memberKeys } },
    },
    graph,
    digest,
  };
}

/** Runs view attempts 1..`attempts` for `victim` (everyone else a colluder), returning each attempt's commitments and reveals. */
async function viewAttempts(a: Attack, victim: number, attempts: number) {
  const members = a.config.cohort.slice() as number[];
  const round = a.config.roundId;
  const out: Array<{ commitments: Uint8Array[]; reveals: Uint8Array[]; reply: ClientMessage | undefined }> = [];
  let victimCommitment = a.commitments.get(victim)!;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const reveals = new Map<number, Uint8Array>();
    const commitments: Uint8Array[] = [];
    for (const v of members) {
      if (v === victim) {
        commitments.push(victimCommitment);
        continue;
      }
      const r = attempt === 1 ? a.reveals.get(v)! : new Uint8Array(32).fill(attempt * 16 + (v % 16));
      reveals.set(v, r);
      commitments.push(attempt === 1 ? a.commitments.get(v)! : await derive.seedCommitment(nodeCrypto, round, v as ClientId, attempt, r));
    }
    const reply = await a.deliver(victim, { case: 'viewRequest', value: { attempt, advertised: members, seedCommitments: commitments } });
    if (reply?.body.case === 'viewSignature') {
      reveals.set(victim, reply.body.value.seedReveal);
      victimCommitment = reply.body.value.nextSeedCommitment;
    }
    out.push({ commitments, reveals: members.map((v) => reveals.get(v) ?? new Uint8Array(32)), reply });
  }
  return out;
}

describe('R4: the view stage against a malicious server (defeated)', () => {
  const options = { n: 12, degree: 4, threshold: 3, corruption: 1, mode: 'active' as const, colluders: range(11).map((i) => i + 2) };

  test('re-attempts are the only grinding: each gives one fresh neighbourhood, the 4th attempt is refused, and keys for an earlier attempt are refused', async () => {
    const a = await new Attack(options).setUp();
    await a.startAll();
    const runs = await viewAttempts(a, 1, 4);
    assert.deepEqual(
      runs.slice(0, 3).map((r) => r.reply?.body.case),
      ['viewSignature', 'viewSignature', 'viewSignature'],
    );
    assert.equal(runs[3]!.reply?.body.case, 'abort');
    assert.match(a.errors.get(1)!.message, /more than 3 view attempts/);
    const neighbourhoods = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const { graph } = await keysMessage(a, 1, a.config.cohort, i + 1, runs[i]!.commitments, runs[i]!.reveals);
      neighbourhoods.add(graph.neighbours(1 as ClientId).join());
    }
    assert.ok(neighbourhoods.size >= 2, 'the attempts gave independent graphs (the documented grinding factor is the attempt cap)');

    // Keys for attempt 1 after the victim signed attempt 2: refused.
    const b = await new Attack(options).setUp();
    await b.startAll();
    const two = await viewAttempts(b, 1, 2);
    const stale = await keysMessage(b, 1, b.config.cohort, 1, two[0]!.commitments, two[0]!.reveals);
    await b.deliver(1, stale.body);
    assert.equal(b.errors.get(1)?.code, 'ERR_INCONSISTENT_VIEW');
    assert.equal(b.ciphertexts.has(1), false);

    // The attempt-2 view with the victim's attempt-1 reveal (reveal reuse): refused.
    const c = await new Attack(options).setUp();
    await c.startAll();
    const runsC = await viewAttempts(c, 1, 2);
    const reveals = runsC[1]!.reveals.slice();
    reveals[0] = runsC[0]!.reveals[0]!;
    await c.deliver(1, (await keysMessage(c, 1, c.config.cohort, 2, runsC[1]!.commitments, reveals)).body);
    assert.equal(c.errors.get(1)?.code, 'ERR_INCONSISTENT_VIEW');
    assert.match(c.errors.get(1)!.message, /reveal does not match/);
  });

  test('attempt numbers cannot be mixed: a repeated, skipped or enlarged attempt is refused, and so is the victim’s old commitment in a new attempt', async () => {
    for (const bad of ['repeat', 'skip', 'grow', 'old-commitment'] as const) {
      const a = await new Attack(options).setUp();
      await a.startAll();
      const members = a.config.cohort.filter((v) => v !== 12);
      const commitments = members.map((v) => a.commitments.get(v)!);
      const first = await a.deliver(1, { case: 'viewRequest', value: { attempt: 1, advertised: members, seedCommitments: commitments } });
      assert.equal(first?.body.case, 'viewSignature');
      const next = first!.body.case === 'viewSignature' ? first!.body.value.nextSeedCommitment : new Uint8Array(32);
      const advertised = bad === 'grow' ? a.config.cohort.slice() : members;
      const cs = advertised.map((v) => (v === 1 ? (bad === 'old-commitment' ? commitments[0]! : next) : new Uint8Array(32).fill(v)));
      const attempt = bad === 'repeat' ? 1 : bad === 'skip' ? 3 : 2;
      const reply = await a.deliver(1, { case: 'viewRequest', value: { attempt, advertised, seedCommitments: cs } });
      assert.equal(reply?.body.case, 'abort', bad);
      assert.equal(a.errors.get(1)?.code, 'ERR_INCONSISTENT_VIEW', bad);
    }
  });

  test('a forged commitment for an honest member: every client shown a view that member did not sign refuses it, and so does that member; nobody shares', async () => {
    // Honest 1..4, colluders 5, 6; t = 4, c = 1 (2t = 8 > 5 + 1).
    const a = await new Attack({ n: 6, degree: 'complete', threshold: 4, corruption: 1, mode: 'active', colluders: [5, 6] }).setUp();
    await a.startAll();
    const everyone = all(6);
    const round = a.config.roundId;
    const forgedReveal = new Uint8Array(32).fill(0x33);
    const forged = await derive.seedCommitment(nodeCrypto, round, 3 as ClientId, 1, forgedReveal);
    const real = everyone.map((v) => a.commitments.get(v)!);
    const fake = everyone.map((v) => (v === 3 ? forged : a.commitments.get(v)!));
    for (const id of [1, 2, 4])
      assert.equal(
        (await a.deliver(id, { case: 'viewRequest', value: { attempt: 1, advertised: everyone, seedCommitments: fake } }))?.body.case,
        'viewSignature',
      );
    assert.equal((await a.deliver(3, { case: 'viewRequest', value: { attempt: 1, advertised: everyone, seedCommitments: real } }))?.body.case, 'viewSignature');
    const sigs = new Map<number, Uint8Array>();
    // (the harness recorded each honest reply's reveal and signature)
    for (const id of [1, 2, 3, 4]) sigs.set(id, (a as unknown as { viewSignatures: Map<number, { signature: Uint8Array }> }).viewSignatures.get(id)!.signature);
    const sendKeys = async (to: number, commitments: Uint8Array[], reveals: Uint8Array[]) => {
      const m = await keysMessage(a, to, everyone, 1, commitments, reveals);
      for (const s of m.body.value.view.viewSignatures) if (sigs.has(s.client)) s.signature = sigs.get(s.client)!;
      return a.deliver(to, m.body);
    };
    const revealsFake = everyone.map((v) => (v === 3 ? forgedReveal : a.reveals.get(v)!));
    const revealsReal = everyone.map((v) => a.reveals.get(v)!);
    for (const id of [1, 2, 4]) await sendKeys(id, fake, revealsFake);
    await sendKeys(3, real, revealsReal);
    for (const id of [1, 2, 4]) {
      assert.equal(a.ciphertexts.has(id), false, `client ${id} shares nothing`);
      assert.equal(a.errors.get(id)?.code, 'ERR_INCONSISTENT_VIEW');
      assert.match(a.errors.get(id)!.message, /member 3 of U1 did not sign this view/);
    }
    assert.equal(a.ciphertexts.has(3), false, 'client 3 shares nothing');
    assert.equal(a.errors.get(3)?.code, 'ERR_INCONSISTENT_VIEW');
    assert.match(a.errors.get(3)!.message, /member 1 of U1 did not sign this view/);
  });

  test('a view signature from an earlier run with the same round id is refused by the server, which is left as it was', async () => {
    const id = new Uint8Array(16).fill(7);
    const first = await new Driver({ n: 6, mode: 'active', roundId: id, seed: 1 }).start();
    await first.until('view');
    const old = (await first.collectReplies()).find((r) => r.from === 3)!;
    const second = await new Driver({ n: 6, mode: 'active', roundId: id, seed: 2 }).start();
    await second.until('view');
    const refused = await second.toServer(3, old.bytes);
    assert.ok(refused, 'replayed view signature refused');
    await second.finish();
    assert.equal(second.server.stage, 'done', second.server.abortError?.message);
    assert.equal(second.server.result!.viewAttempts, 1);
    assert.deepEqual(second.server.result!.sum, expectedSum(second.inputs, range(6), second.config.bits));
  });
});

describe('R5: "signed by enough of them" — the floor counts members that signed the view (defeated)', () => {
  test('with floors.minAdvertised = 12 and a U1 of 12 of which only 4 members (2 honest, the colluders) signed the victim’s view, the victim shares nothing, whatever the graph', async () => {
    const options = { n: 20, degree: 4, threshold: 3, corruption: 1, mode: 'active' as const, colluders: [18, 19, 20], floors: { minAdvertised: 12 } };
    const padded = [1, 2, 3, 4, 5, 6, 7, 8, 9, 18, 19, 20]; // 12 members; only 2 (honest) and the colluders see this view
    for (let seed = 1; seed <= 40; seed++) {
      const a = await new Attack({ ...options, seed }).setUp();
      await a.startAll();
      for (const id of a.honestIds) if (id !== 1 && id !== 2) await a.view(id, all(20));
      await a.view(1, padded);
      await a.view(2, padded);
      await a.keysFor(1, padded);
      assert.equal(a.ciphertexts.has(1), false, `seed ${seed}: the victim shared`);
      assert.equal(a.errors.get(1)?.code, 'ERR_INCONSISTENT_VIEW', `seed ${seed}`);
      assert.match(a.errors.get(1)!.message, /member [3-9] of U1 did not sign this view/);
    }
  });
});

describe('R6: client floors (defeated attacks)', () => {
  test('maxViewAttempts, minAdvertised (semi-honest, at KeysForYou), minCorruption and minCohort are enforced', async () => {
    const a = await new Attack({ n: 8, degree: 'complete', threshold: 5, corruption: 1, mode: 'active', floors: { maxViewAttempts: 1 } }).setUp();
    await a.startAll();
    const runs = await viewAttempts(a, 1, 2);
    assert.equal(runs[1]!.reply?.body.case, 'abort');
    assert.match(a.errors.get(1)!.message, /more than 1 view attempts/);

    const b = await new Attack({ n: 8, degree: 'complete', threshold: 4, mode: 'semi-honest', floors: { minAdvertised: 7 } }).setUp();
    await b.startAll();
    await b.keysFor(1, all(6));
    assert.equal(b.errors.get(1)?.code, 'ERR_BELOW_THRESHOLD');
    assert.equal(b.ciphertexts.has(1), false);

    const c = await new Attack({ n: 8, degree: 'complete', threshold: 5, corruption: 1, mode: 'active', floors: { minCorruption: 2, minCohort: 8 } }).setUp();
    await c.startAll();
    assert.match(c.errors.get(1)!.message, /corruption budget 1 is below this client's floor of 2/);
    const d = await new Attack({ n: 8, degree: 'complete', threshold: 5, corruption: 1, mode: 'active', floors: { minCohort: 9 } }).setUp();
    await d.startAll();
    assert.match(d.errors.get(1)!.message, /cohort of 8 is below this client's floor of 9/);
  });
});

describe('R7: the event loop during a failed reconstruction (observation)', () => {
  test('a dropped client whose advertised masking key is not the one it shared makes the server run the whole 1000-attempt search (X25519 per candidate) before aborting; the longest stretch without a yield is logged', async () => {
    const stamps: number[] = [];
    const yieldToEventLoop = () => {
      stamps.push(performance.now());
      return new Promise<void>((resolve) => setImmediate(resolve));
    };
    const d = await new Driver({ n: 60, m: 8, server: { yieldToEventLoop } }).start();
    const other = await nodeCrypto.x25519(new Uint8Array(32).fill(9));
    for (const r of await d.collectReplies()) {
      const bytes = r.from === 1 ? edited(r.bytes, (m) => m.body.case === 'advertiseKeys' && (m.body.value.maskingPublicKey = other.publicKey)) : r.bytes;
      assert.equal(await d.toServer(r.from, bytes), undefined);
    }
    await d.until('masked');
    await d.toClients([1]); // client 1 drops: its masking key must be reconstructed
    await d.flush();
    await d.until('unmask');
    const last = await d.collectReplies();
    for (const r of last.slice(0, -1)) await d.toServer(r.from, r.bytes);
    stamps.length = 0;
    const t0 = performance.now();
    await d.toServer(last.at(-1)!.from, last.at(-1)!.bytes);
    const t1 = performance.now();
    assert.equal(stageOf(d.server), 'aborted');
    assert.equal(d.server.abortError?.code, 'ERR_RECONSTRUCTION_FAILED');
    const marks = [t0, ...stamps, t1];
    let gap = 0;
    for (let i = 1; i < marks.length; i++) gap = Math.max(gap, marks[i]! - marks[i - 1]!);
    console.log(
      `# R7: n = 60, t = ${d.config.threshold}: the failed unmasking took ${(t1 - t0).toFixed(1)} ms with ${stamps.length} yields; longest stretch without one ${gap.toFixed(1)} ms`,
    );
    assert.ok(gap < 1000, `longest stretch without yielding: ${gap.toFixed(1)} ms`);
  });
});

/** The stage, read without narrowing the state (assert.equal narrows its argument, and the driver's state moves on). */
function stageOf(s: ServerState): string {
  return s.stage;
}

/** The view attempt a server state is at (0 outside active mode's view and later stages). */
function viewAttempt(s: ServerState): number {
  return s.stage === 'view' ? s.view.attempt : 'view' in s && s.view !== undefined ? s.view.attempt : 0;
}
