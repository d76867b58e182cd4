/**
 * Red-team review 2: the active-mode view proof that every other member of U1 signed the client's
 * view (clientRound.ts checkViewProof / checkViewSignatures, serverRound.ts sendKeys,
 * ViewProof.member_keys), and the server's event-loop slicing (LagrangeCache.prepareUniverse, the
 * serialised in-thread unmasker, the pacer yields in the stage changes).
 *
 * Every test drives the real state machines (and, for the service, the real createServer with real
 * participate() clients over WebSockets). The attacker is the scripted malicious server of
 * harness.ts, or a bad client against an honest server.
 *
 * Convention: a test marked `test.todo` is a SUCCESSFUL ATTACK. Its body asserts the secure
 * behaviour, so it fails today (node:test reports it as a todo, not a failure). Every plain `test`
 * is an attack that the code currently defeats; it must pass.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Attack } from './harness.js';
import type { ClientState } from '../../src/protocol/clientRound.js';
import { Driver } from '../driver.js';
import { expectedSum, range } from '../helpers.js';
import { nodeClient, startServer, vector, type NodeClient } from '../serviceHelpers.js';
import { nodeCrypto } from '../../src/crypto/node.js';
import * as derive from '../../src/protocol/derive.js';
import { buildGraph } from '../../src/graph/index.js';
import { concatBytes } from '../../src/bytes.js';
import { serverMessageLimits, entryCaps } from '../../src/protocol/limits.js';
import { nextMacrotask, sequentialUnmasker, type MaskJob, type Unmasker, type UnmaskPlan } from '../../src/protocol/serverRound.js';
import { RingAccumulator } from '../../src/ring/accumulator.js';
import { unsafeSeededRng } from '../../src/rng.js';
import { peekServerBody } from '../../src/wire/peek.js';
import { SecAggError } from '../../src/errors.js';
import type { ClientId } from '../../src/ids.js';
import type { WebSocketConstructor } from '../../src/transport/socket.js';
import type { RoundRecord } from '../../src/server/index.js';

const all = (n: number) => range(n).map((i) => i + 1);

// ------------------------------------------------------------------------------------------------
// V: the view proof against a malicious server

type Sig = { client: number; signature: Uint8Array };
interface KeysBody {
  case: 'keys';
  value: {
    graphSeed: Uint8Array;
    advertised: number[];
    neighbours: { client: number; encryptionPublicKey: Uint8Array; maskingPublicKey: Uint8Array; signature: Uint8Array }[];
    view: { seedReveals: Uint8Array[]; viewSignatures: Sig[]; memberKeys: Uint8Array[] };
  };
}

/**
 * An attack round in which every honest member really signed the view over `advertised`
 * (attempt 1); returns the honest keys message for `to` (real signatures, colluders sign for
 * themselves) so that a test can tamper with it before delivering it.
 */
async function honestKeys(a: Attack, to: number, advertised: readonly number[]): Promise<{ body: KeysBody; ns: readonly number[]; digest: Uint8Array }> {
  const commitments = advertised.map((v) => a.commitments.get(v)!);
  const digest = await derive.viewDigest(nodeCrypto, a.config.roundId, 1, advertised, commitments);
  const reveals = advertised.map((v) => a.reveals.get(v)!);
  const graphSeed = await derive.viewGraphSeed(nodeCrypto, digest, reveals);
  const graph = buildGraph({ clients: advertised as ClientId[], degree: a.config.degree, seed: graphSeed });
  const ns = graph.neighbours(to as ClientId) as readonly number[];
  const neighbours = ns.map((v) => ({
    client: v,
    encryptionPublicKey: a.keys.get(v)!.encryption,
    maskingPublicKey: a.keys.get(v)!.masking,
    signature: new Uint8Array(64),
  }));
  const viewSignatures: Sig[] = [];
  const memberKeys: Uint8Array[] = [];
  for (const v of advertised) {
    if (v === to) continue;
    const k = a.keys.get(v)!;
    const c = a.colluders.get(v);
    const signature = c ? await c.identity.sign(derive.viewTranscript(digest, v as ClientId, k.encryption, k.masking)) : a.viewSignatures.get(v)!.signature;
    viewSignatures.push({ client: v, signature });
    if (!ns.includes(v)) memberKeys.push(concatBytes(k.encryption, k.masking));
  }
  return {
    body: { case: 'keys', value: { graphSeed, advertised: advertised.slice(), neighbours, view: { seedReveals: reveals, viewSignatures, memberKeys } } },
    ns,
    digest,
  };
}

/** n = 9, degree 4, t = 3, c = 1 (2t = 6 > 4 + 1); colluder 9; everyone shown U1 = 1..9. */
async function viewRound(seed = 3): Promise<Attack> {
  const a = await new Attack({ n: 9, degree: 4, threshold: 3, corruption: 1, mode: 'active', colluders: [9], seed }).setUp();
  await a.startAll();
  for (const id of a.honestIds) assert.equal((await a.view(id, all(9)))?.body.case, 'viewSignature');
  return a;
}

describe('V: forging "every other member signed this view" (defeated)', () => {
  test('positive control: the untampered proof is accepted and the victim shares', async () => {
    const a = await viewRound();
    const { body } = await honestKeys(a, 1, all(9));
    assert.equal(body.value.view.memberKeys.length, 8 - body.value.neighbours.length);
    const reply = await a.deliver(1, body);
    assert.equal(reply?.body.case, 'shareKeys', a.errors.get(1)?.message);
  });

  type Tamper = (b: KeysBody, ns: readonly number[], a: Attack, digest: Uint8Array) => Promise<void> | void;
  const nonNeighbours = (b: KeysBody, ns: readonly number[]) => b.value.view.viewSignatures.map((s, i) => ({ ...s, i })).filter((s) => !ns.includes(s.client));
  /** Position in memberKeys of the j-th non-neighbour signer. */
  const cases: Array<[string, Tamper, RegExp]> = [
    [
      'a non-neighbour’s signature (and its keys) left out',
      (b, ns) => {
        const victim = nonNeighbours(b, ns)[0]!;
        b.value.view.viewSignatures.splice(victim.i, 1);
        b.value.view.memberKeys.splice(0, 1);
      },
      /signature of each of the 8 other members/,
    ],
    [
      'a non-neighbour’s signature left out, its keys kept',
      (b, ns) => void b.value.view.viewSignatures.splice(nonNeighbours(b, ns)[0]!.i, 1),
      /signature of each of the 8 other members/,
    ],
    [
      'one member listed twice in place of another (duplicate signer)',
      (b, ns) => {
        const [x, y] = nonNeighbours(b, ns);
        b.value.view.viewSignatures[y!.i] = { client: x!.client, signature: x!.signature };
      },
      /signature of each of the 8 other members/,
    ],
    [
      'the victim’s own id and its own real view signature in place of a member’s',
      async (b, ns, a) => {
        const x = nonNeighbours(b, ns)[0]!;
        b.value.view.viewSignatures[x.i] = { client: 1, signature: a.viewSignatures.get(1)!.signature };
        b.value.view.viewSignatures.sort((p, q) => p.client - q.client);
        b.value.view.memberKeys[0] = concatBytes(a.keys.get(1)!.encryption, a.keys.get(1)!.masking);
      },
      /signature of each of the 8 other members/,
    ],
    [
      'the victim’s own signature added (9 signers for 8 others)',
      (b, _ns, a) => void b.value.view.viewSignatures.unshift({ client: 1, signature: a.viewSignatures.get(1)!.signature }),
      /signature of each of the 8 other members/,
    ],
    [
      'signatures in descending order (memberKeys reordered to match)',
      (b) => {
        b.value.view.viewSignatures.reverse();
        b.value.view.memberKeys.reverse();
      },
      /ascending/,
    ],
    [
      'two non-neighbours’ member_keys swapped (misalignment)',
      (b) => {
        const k = b.value.view.memberKeys;
        [k[0], k[1]] = [k[1]!, k[0]!];
      },
      /did not sign this view/,
    ],
    [
      'a member’s keys with encryption and masking key swapped',
      (b) => {
        const k = b.value.view.memberKeys[1]!;
        b.value.view.memberKeys[1] = concatBytes(k.subarray(32), k.subarray(0, 32));
      },
      /did not sign this view/,
    ],
    [
      'a neighbour also listed in member_keys (one entry too many)',
      (b) => void b.value.view.memberKeys.unshift(concatBytes(b.value.neighbours[0]!.encryptionPublicKey, b.value.neighbours[0]!.maskingPublicKey)),
      /member keys for 3 members that are not neighbours|member keys for \d+ members/,
    ],
    [
      'a neighbour’s keys in member_keys in place of the first non-neighbour’s',
      (b) => void (b.value.view.memberKeys[0] = concatBytes(b.value.neighbours[0]!.encryptionPublicKey, b.value.neighbours[0]!.maskingPublicKey)),
      /did not sign this view/,
    ],
    [
      'member keys of 128 bytes whose first 64 are the right ones (aliasing / over-long)',
      (b) => void (b.value.view.memberKeys[0] = concatBytes(b.value.view.memberKeys[0]!, new Uint8Array(64))),
      /not 64 bytes/,
    ],
    ['member keys of 63 bytes', (b) => void (b.value.view.memberKeys[0] = b.value.view.memberKeys[0]!.slice(0, 63)), /not 64 bytes/],
    ['member keys of 0 bytes', (b) => void (b.value.view.memberKeys[0] = new Uint8Array(0)), /not 64 bytes/],
    [
      'a neighbour whose view signature is bad (the honest-server path would have refused it)',
      (b) => {
        const i = b.value.view.viewSignatures.findIndex((s) => s.client === b.value.neighbours[0]!.client);
        const s = b.value.view.viewSignatures[i]!.signature.slice();
        s[0]! ^= 1;
        b.value.view.viewSignatures[i] = { client: b.value.view.viewSignatures[i]!.client, signature: s };
      },
      /did not sign this view/,
    ],
    [
      'a non-neighbour’s signature of 63 bytes',
      (b, ns) => {
        const x = nonNeighbours(b, ns)[0]!;
        b.value.view.viewSignatures[x.i] = { client: x.client, signature: x.signature.slice(0, 63) };
      },
      /did not sign this view/,
    ],
    [
      'a non-neighbour’s keys replaced by the colluder’s fresh keys, signed by the colluder in the member’s name is impossible: the colluder signs its own id',
      async (b, ns, a) => {
        const x = nonNeighbours(b, ns).find((s) => !a.isColluder(s.client))!;
        const col = a.colluders.get(9)!;
        // The colluder's identity signs the member's transcript: wrong identity for that member.
        const j = nonNeighbours(b, ns).findIndex((s) => s.client === x.client);
        b.value.view.memberKeys[j] = concatBytes(col.encryption.publicKey, col.masking.publicKey);
        const sig = await col.identity.sign(
          derive.viewTranscript((await honestKeys(a, 1, all(9))).digest, x.client as ClientId, col.encryption.publicKey, col.masking.publicKey),
        );
        b.value.view.viewSignatures[x.i] = { client: x.client, signature: sig };
      },
      /did not sign this view/,
    ],
  ];

  for (const [name, tamper, why] of cases) {
    test(`refused: ${name}`, async () => {
      const a = await viewRound();
      const { body, ns, digest } = await honestKeys(a, 1, all(9));
      assert.ok(nonNeighbours(body, ns).length >= 2, 'the victim has at least two non-neighbours');
      await tamper(body, ns, a, digest);
      const reply = await a.deliver(1, body);
      assert.equal(reply?.body.case, 'abort', name);
      assert.equal(a.ciphertexts.has(1), false, 'the victim shared nothing');
      assert.match(a.errors.get(1)!.message, why);
      assert.ok(['ERR_INCONSISTENT_VIEW', 'ERR_SIZE'].includes(a.errors.get(1)!.code), a.errors.get(1)!.code);
    });
  }

  test('refused: a member padded in with its real signature over ANOTHER view (it was shown U1 = 1..9, the victim 1..8)', async () => {
    const a = await new Attack({ n: 9, degree: 4, threshold: 3, corruption: 1, mode: 'active', colluders: [9], seed: 5 }).setUp();
    await a.startAll();
    const small = all(8);
    for (const id of [1, 2, 3, 4]) await a.view(id, small);
    for (const id of [5, 6, 7, 8]) await a.view(id, all(9)); // they hold another view
    const { body } = await honestKeys(a, 1, small); // carries 5..8's real signatures, over the 1..9 digest
    assert.equal((await a.deliver(1, body))?.body.case, 'abort');
    assert.equal(a.errors.get(1)?.code, 'ERR_INCONSISTENT_VIEW');
    assert.match(a.errors.get(1)!.message, /member [5-8] of U1 did not sign this view/);
    assert.equal(a.ciphertexts.has(1), false);
  });

  test('refused before decoding: member_keys with one entry more than the cohort (entry cap), and a proof over the keys limit', async () => {
    const a = await viewRound();
    const { body } = await honestKeys(a, 1, all(9));
    body.value.view.memberKeys = Array.from({ length: entryCaps(a.config).maxMembers + 1 }, () => new Uint8Array(0));
    assert.equal((await a.deliver(1, body))?.body.case, 'abort');
    assert.ok(['ERR_SIZE', 'ERR_DECODE'].includes(a.errors.get(1)!.code), a.errors.get(1)!.message);
    const b = await viewRound();
    const big = await honestKeys(b, 1, all(9));
    big.body.value.view.memberKeys[0] = new Uint8Array(serverMessageLimits(b.config).keys);
    assert.equal((await b.deliver(1, big.body))?.body.case, 'abort');
    assert.equal(b.errors.get(1)?.code, 'ERR_TOO_BIG');
  });

  test('observation: members moved on to a later view attempt still count in the victim’s attempt-1 U1 (it shares), but they never share back or sign its survivor set: the group left (3 honest + 2 colluders) is below t and below the quorum, and nobody reveals anything', async () => {
    // U1 = 1..12 at attempt 1, everyone signs and reveals. The server then gives only 1, 2, 3 (and
    // colluders 11, 12) the attempt-1 keys and moves 4..10 on to attempt 2 (claiming a missing
    // reveal). The victim's proof is genuine (all 11 others did sign attempt 1) so it shares; its
    // effective group is {1, 2, 3, 11, 12}: fewer than t = 7 share back, and the unmask request
    // would need > (12 + 2)/2 signatures over (round, attempt-1 digest, U3) that only 5 can give.
    const a = await new Attack({ n: 12, degree: 'complete', threshold: 7, corruption: 2, mode: 'active', colluders: [11, 12], seed: 8 }).setUp();
    await a.startAll();
    for (const id of a.honestIds) await a.view(id, all(12));
    const moved = [4, 5, 6, 7, 8, 9, 10];
    const attempt1 = new Map(a.viewSignatures);
    const reveals1 = new Map(a.reveals);
    for (const id of moved) {
      const reply = await a.deliver(id, {
        case: 'viewRequest',
        value: {
          attempt: 2,
          advertised: all(12).filter((v) => v !== 12),
          seedCommitments: all(11).map((v) => (v === id ? seedCommitmentOf(a.honest.get(id)!) : new Uint8Array(32).fill(v))),
        },
      });
      assert.equal(reply?.body.case, 'viewSignature', `member ${id} moved on to attempt 2`);
    }
    for (const [v, s] of attempt1) a.viewSignatures.set(v, s); // the attempt-1 signatures and reveals the server kept
    for (const [v, r] of reveals1) a.reveals.set(v, r);
    const { body } = await honestKeys(a, 1, all(12));
    const reply = await a.deliver(1, body);
    assert.equal(
      reply?.body.case,
      'shareKeys',
      `the attempt-1 proof is genuine: the victim shares (documented residual: a split cohort); ${a.errors.get(1)?.message}`,
    );
    // Carry the effective group {1, 2, 3} + colluders on as far as it goes.
    for (const id of [2, 3]) assert.equal((await a.deliver(id, (await honestKeys(a, id, all(12))).body))?.body.case, 'shareKeys');
    const group = [1, 2, 3];
    const survivors = [1, 2, 3, 11, 12];
    for (const id of group) {
      a.neighboursOf.set(
        id,
        all(12).filter((v) => v !== id),
      ); // complete graph: colluders 11, 12 send theirs too
      await a.sharesFor(
        id,
        group.filter((v) => v !== id),
      );
    }
    for (const id of group) if (a.stage(id) === 'awaiting-consistency') await a.consistencyFor(id, survivors);
    for (const id of group) {
      if (a.stage(id) !== 'awaiting-unmask') continue;
      const signedBy = new Map(group.map((v) => [v, survivors] as const));
      await a.unmaskFor(id, survivors, await a.signaturesOver(id, survivors, signedBy));
    }
    for (const id of group) {
      assert.equal(a.stage(id), 'aborted', `client ${id} went on: ${a.stage(id)}`);
      const s = a.stolen(id);
      assert.ok(s.self < a.t && s.key < a.t, `client ${id}'s secrets: ${JSON.stringify(s)}`);
    }
    assert.deepEqual(a.exposedInputs(), []);
    console.log(`# V-obs: the padded victim stops with: ${a.errors.get(1)?.code} ${a.errors.get(1)?.message}`);
  });
});

// ------------------------------------------------------------------------------------------------
// L: limits against the honest maximal message

describe('L: the keys limit against the largest honest KeysForYou (no regression)', () => {
  test('active, sparse graph (most member_keys): every KeysForYou the real server sends fits the client’s keys limit, and the round completes', async () => {
    for (const [n, degree] of [
      [30, 4],
      [31, 5],
      [25, 'complete'],
    ] as const) {
      const d = await new Driver({ n, m: 4, mode: 'active', degree, corruption: 1 }).start();
      await d.until('share');
      const limit = serverMessageLimits(d.config).keys;
      const keys = d.pending.filter((p) => peekServerBody(p.bytes).kind === 'keys');
      assert.equal(keys.length, n);
      const largest = Math.max(...keys.map((k) => k.bytes.length));
      assert.ok(largest <= limit, `n = ${n}, degree ${degree}: largest KeysForYou ${largest} B, limit ${limit} B`);
      await d.finish();
      assert.equal(d.server.stage, 'done', d.server.abortError?.message);
      assert.deepEqual(d.server.result!.sum, expectedSum(d.inputs, range(n), d.config.bits));
    }
  });
});

// ------------------------------------------------------------------------------------------------
// U: the serialised in-thread unmasker and the slicing

describe('U: the in-thread unmasker and the slicing (defeated)', () => {
  test('a failing batch neither blocks the batches queued after it nor leaves an unhandled rejection; plans of two rounds do not share a queue', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const m = 1 << 12;
      const rng = unsafeSeededRng(17);
      const good: MaskJob[] = Array.from({ length: 4 }, (_, i) => ({ key: rng(16), sign: i % 2 ? 1 : -1 }));
      const bad: MaskJob = {
        dropped: {
          round: rng(16) as never,
          client: 3 as ClientId,
          secretKey: new Uint8Array(5),
          peers: [{ client: 4 as ClientId, publicKey: rng(32), sign: 1 }],
        },
      };
      const expected = new RingAccumulator(m);
      await sequentialUnmasker(expected, good, nodeCrypto);
      const plan: UnmaskPlan = { words: 6 * m, yieldToEventLoop: nextMacrotask };
      const sum = new RingAccumulator(m);
      const p1 = sequentialUnmasker(sum, [bad], nodeCrypto, plan);
      const p2 = sequentialUnmasker(sum, good, nodeCrypto, plan);
      const [r1, r2] = await Promise.allSettled([p1, p2]);
      assert.equal(r1.status, 'rejected');
      assert.equal(r2.status, 'fulfilled', 'the batch after a failed one still runs');
      assert.deepEqual(sum.view(), expected.view());
      // A new round's plan starts its own queue even while another round's queue holds a rejection.
      const other = new RingAccumulator(m);
      await sequentialUnmasker(other, good, nodeCrypto, { words: 4 * m, yieldToEventLoop: nextMacrotask });
      assert.deepEqual(other.view(), expected.view());
      await nextMacrotask();
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  test('a round whose first unmask batch fails aborts with a typed error after the others settle; a later deadline does not unmask again', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      let calls = 0;
      let settledAfterFirst = 0;
      const unmasker: Unmasker = (sum, jobs, c, plan) => {
        calls++;
        if (calls === 1) return nextMacrotask().then(() => Promise.reject(new SecAggError('ERR_INTERNAL', 'batch 1 failed')));
        return sequentialUnmasker(sum, jobs, c, plan).then(() => void settledAfterFirst++);
      };
      // m = 2^18: 16 expansions per batch; 20 survivors → two batches.
      const d = await new Driver({ n: 20, m: 1 << 18, server: { unmasker } }).start();
      await d.finish();
      assert.equal(d.server.stage, 'aborted');
      assert.equal(d.server.abortError?.code, 'ERR_INTERNAL');
      assert.match(d.server.abortError!.message, /batch 1 failed/);
      assert.ok(calls >= 2, `${calls} batches`);
      assert.equal(settledAfterFirst, calls - 1, 'every other batch settled before the abort was returned');
      await d.deadline();
      assert.equal(d.server.stage, 'aborted');
      assert.equal(d.server.result, undefined);
      await nextMacrotask();
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  test('two rounds unmasking at the same time in one process (default in-thread unmasker, dropouts, complete graph) both give the exact sum', async () => {
    const a = await new Driver({ n: 24, m: 1 << 15, seed: 21 }).start();
    const b = await new Driver({ n: 24, m: 1 << 15, seed: 22 }).start();
    for (const d of [a, b]) {
      await d.until('masked');
      await d.toClients([3, 7]); // 3 and 7 drop before masking: their pairwise masks are removed
      await d.flush();
      await d.until('unmask');
      await d.toClients();
    }
    const replies = [a, b].map((d) => {
      const r = d.replies;
      d.replies = [];
      return r;
    });
    for (const [i, d] of [a, b].entries()) for (const r of replies[i]!.slice(0, -1)) await d.toServer(r.from, r.bytes);
    // The last response of each round, together: both finish() run interleaved.
    await Promise.all([a, b].map((d, i) => d.toServer(replies[i]!.at(-1)!.from, replies[i]!.at(-1)!.bytes)));
    for (const d of [a, b]) {
      assert.equal(d.server.stage, 'done', d.server.abortError?.message);
      const included = range(24).filter((i) => i !== 2 && i !== 6);
      assert.deepEqual(d.server.result!.sum, expectedSum(d.inputs, included, d.config.bits));
    }
  });
});

// ------------------------------------------------------------------------------------------------
// S: the service's stage deadline against the yielding stage changes

/** A WebSocket constructor that records every socket it opens (to cut one at a chosen moment). */
function recordingWebSocket(into: WebSocket[]): WebSocketConstructor {
  class Recording extends WebSocket {
    constructor(...args: ConstructorParameters<typeof WebSocket>) {
      super(...args);
      into.push(this);
    }
  }
  return Recording as unknown as WebSocketConstructor;
}

const busyUntil = (t: number) => {
  while (Date.now() < t) {
    /* spin: the load another round or a GC pause puts on the thread */
  }
};

/**
 * One service round over n clients (semi-honest, complete graph). The bad client stays silent at
 * the share stage and cuts its connection `lead` ms before the stage deadline; meanwhile the
 * thread is kept busy in slices (as load would), so the share stage's close — which now yields
 * to the event loop in slices — is still running when the deadline timer fires.
 */
async function deadlineRace(n: number, lead: number): Promise<RoundRecord> {
  const server = await startServer({
    minClients: n,
    maxClients: n,
    maxRounds: 1,
    maxPendingPerAddress: 1000,
    maxPendingConnections: 1000,
    stageTimeoutMs: 3000,
    dimension: 16,
  });
  try {
    const ended = new Promise<RoundRecord>((resolve) => server.onRoundEnd(resolve));
    const sockets: WebSocket[] = [];
    const clients: NodeClient[] = [];
    for (let i = 0; i < n; i++) {
      const bad = i === n - 1;
      clients.push(
        nodeClient(server, `c${i}`, vector(900 + i, 16, 16), {
          ...(bad ? { WebSocket: recordingWebSocket(sockets), unsafeBeforeSend: (stage) => (stage === 'share' ? 'silent' : 'send') } : {}),
        }),
      );
    }
    // Wait for the share stage with every honest member's ShareKeys in.
    let deadline = 0;
    for (;;) {
      const s = await server.status();
      if (s.round?.stage === 'share' && (s.round.stages.share?.clients ?? 0) >= n - 1) {
        deadline = s.round.stageDeadline;
        break;
      }
      if (s.round === null && s.recent.length > 0) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(deadline > 0, 'reached the share stage');
    await new Promise((r) => setTimeout(r, Math.max(0, deadline - lead - Date.now())));
    for (const ws of sockets) ws.terminate(); // the bad client leaves: the server closes 'share' now
    const stop = deadline + 60;
    await new Promise<void>((resolve) => {
      const spin = () => {
        busyUntil(Math.min(stop, Date.now() + 8));
        if (Date.now() < stop) setImmediate(spin);
        else resolve();
      };
      setImmediate(spin);
    });
    const record = await ended;
    await Promise.allSettled(clients.map((c) => c.done));
    return record;
  } finally {
    await server.close();
  }
}

describe('S: the stage deadline vs. the sliced stage changes (service)', { timeout: 240_000 }, () => {
  test('control: the same client leaving 1 s before the share deadline costs only itself (the round completes with the other 63)', async () => {
    const record = await deadlineRace(64, 1000);
    assert.equal(record.code, null, `${record.code} ${record.reason}`);
    assert.equal(record.included?.length, 63);
  });

  test('a client that leaves just before the share deadline cannot make the service close the NEXT stage (masked) at once: the round completes with the others', async () => {
    // n = 64: the share close peels 63·63 and routes 63·62 entries, 2^11 between yields: 3 yields,
    // so the deadline timer of 'share' can fire in the middle of the close.
    const outcomes: string[] = [];
    for (const lead of [4, 8, 2]) {
      const record = await deadlineRace(64, lead);
      outcomes.push(`lead ${lead} ms: ${record.outcome} ${record.code ?? ''} ${record.reason ?? ''} (last stage ${record.stage})`);
      console.log(`# S: ${outcomes.at(-1)}`);
      assert.equal(record.code, null, `the round aborted: ${outcomes.join(' | ')}`);
      assert.equal(record.included?.length, 63);
    }
  });
});

/** An active client's seed commitment for the view attempt it waits for. */
function seedCommitmentOf(s: ClientState): Uint8Array {
  if (s.stage !== 'awaiting-view' && s.stage !== 'awaiting-keys') throw new Error(`client in ${s.stage} has no view progress`);
  if (s.active === undefined) throw new Error('a semi-honest client has no seed commitment');
  return s.active.seedCommitment;
}
