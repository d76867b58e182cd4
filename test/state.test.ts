/**
 * Protocol state as data: a round stopped after any event (a message to a client, a message to the
 * server, a deadline), every state encoded, decoded and finished — here and in another process —
 * gives the same result as the round that never stopped, in both modes and both graph kinds; the
 * decoders refuse every malformed encoding with a typed error; a consumed state is refused; the
 * client's input can come from a provider called with the round's config.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeCrypto } from '../src/crypto/node.js';
import { isSecAggError } from '../src/errors.js';
import { clientId, roundId } from '../src/ids.js';
import { minimumThreshold, type Degree, type DpRoundConfig, type Mode, type RoundConfig } from '../src/protocol/config.js';
import { clientContext, createClient, handleClientMessage, type ClientState } from '../src/protocol/clientRound.js';
import { handleServerMessage, serverContext, startServerRound, type ServerState } from '../src/protocol/serverRound.js';
import { decodeClientState, decodeServerState, encodeClientState, encodeServerState, STATE_FORMAT_VERSION } from '../src/protocol/stateCodec.js';
import type { Stage } from '../src/protocol/stages.js';
import { encodeServerMessage } from '../src/wire/codec.js';
import { unsafeSeededRng } from '../src/rng.js';
import { expectedSum, randomInputs } from './helpers.js';
import { contextsFor, readBack, runToEnd, step, toJson, writeDown, type Contexts, type Round } from './resumeLoop.js';

interface Spec {
  readonly name: string;
  readonly mode: Mode;
  readonly degree: Degree;
  readonly n: number;
  readonly silentFrom: ReadonlyArray<readonly [number, Stage]>;
  /** A DP round: the resumed clients draw other noise (their contexts' rngs differ), so the sums are compared up to it. */
  readonly dp?: DpRoundConfig;
}

/**
 * Dropouts at several stages in each: a member silent at the view stage (a second view attempt), one
 * that never sends its masked input (its key is reconstructed), one that does not answer the unmask
 * request (the others' shares suffice).
 */
const SPECS: readonly Spec[] = [
  {
    name: 'semi-honest, complete graph',
    mode: 'semi-honest',
    degree: 'complete',
    n: 6,
    silentFrom: [
      [6, 'masked'],
      [5, 'unmask'],
    ],
  },
  {
    name: 'semi-honest, Harary graph (k = 6)',
    mode: 'semi-honest',
    degree: 6,
    n: 10,
    silentFrom: [
      [10, 'masked'],
      [9, 'unmask'],
    ],
  },
  {
    name: 'active, complete graph',
    mode: 'active',
    degree: 'complete',
    n: 8,
    silentFrom: [
      [8, 'view'],
      [7, 'masked'],
      [6, 'unmask'],
    ],
  },
  {
    name: 'active, Harary graph (k = 6)',
    mode: 'active',
    degree: 6,
    n: 10,
    silentFrom: [
      [10, 'masked'],
      [9, 'unmask'],
    ],
  },
];

/** DP rounds, for the every-event harness (their sums differ run to run by the noise, so the child-process suites, which compare sums exactly, keep to SPECS). */
const DP_SPECS: readonly Spec[] = [
  {
    name: 'semi-honest, complete graph, removable Skellam noise (clients hold P1, P2, then the excess)',
    mode: 'semi-honest',
    degree: 'complete',
    n: 6,
    silentFrom: [
      [6, 'masked'],
      [5, 'unmask'],
    ],
    dp: { mechanism: 'skellam', targetVariance: 40, removable: true },
  },
];

const M = 6;
const BITS = 16;

interface Setup {
  readonly round: Round;
  readonly ctx: Contexts;
  readonly inputs: Uint32Array[];
  readonly ids: number[];
  readonly directory?: Map<number, Uint8Array>;
  readonly identities?: Map<number, Uint8Array>;
}

async function setUp(spec: Spec, seed = 3): Promise<Setup> {
  const rng = unsafeSeededRng(seed);
  const ids = Array.from({ length: spec.n }, (_, i) => i + 1);
  const inputs = randomInputs(spec.n, M, BITS, seed);
  const config: RoundConfig = {
    roundId: roundId(rng(16)),
    bits: BITS,
    dimension: M,
    threshold: minimumThreshold(spec.mode, spec.degree, spec.n, 0),
    degree: spec.degree,
    mode: spec.mode,
    cohort: ids.map(clientId),
    ...(spec.dp ? { dp: spec.dp } : {}),
  };
  let directory: Map<number, Uint8Array> | undefined;
  let identities: Map<number, Uint8Array> | undefined;
  if (spec.mode === 'active') {
    identities = new Map(ids.map((id) => [id, rng(32)]));
    directory = new Map();
    for (const [id, s] of identities) directory.set(id, (await nodeCrypto.ed25519(s)).publicKey);
  }
  const ctx = contextsFor(ids, seed, directory, identities);
  const start = startServerRound(ctx.server, { config });
  const round: Round = {
    server: start.state,
    clients: new Map(ids.map((id) => [id, createClient({ id: clientId(id), input: inputs[id - 1]! })])),
    toClients: [...start.outgoing],
    toServer: [],
    silentFrom: new Map(spec.silentFrom),
  };
  return { round, ctx, inputs, ids, ...(directory ? { directory } : {}), ...(identities ? { identities } : {}) };
}

/** Encode, check the encoding is canonical (decode → encode gives the same bytes), decode. */
function roundTrip(r: Round): Round {
  const w = writeDown(r);
  const back = readBack(w);
  const again = writeDown(back);
  assert.deepEqual(again.server, w.server, 'the server encoding is canonical');
  for (let i = 0; i < w.clients.length; i++) assert.deepEqual(again.clients[i]![1], w.clients[i]![1], `client ${w.clients[i]![0]}'s encoding is canonical`);
  return back;
}

function resultOf(s: ServerState, dp?: DpRoundConfig): { stage: string; sum: number[] | null; included: number[] | null; noise: unknown } {
  const done = s.stage === 'done';
  return {
    stage: s.stage,
    // With DP the sum carries noise each run draws afresh: compared to Σx below, up to the noise.
    sum: done && dp === undefined ? [...s.result.sum] : null,
    included: done ? [...s.result.included] : null,
    noise: done ? (s.result.noise ?? null) : null,
  };
}

/** Σx up to noise of the reported variance: every coordinate within 8 standard deviations. */
function assertNoisySum(s: ServerState, inputs: Uint32Array[], included: number[], what: string): void {
  assert.equal(s.stage, 'done', what);
  if (s.stage !== 'done') return;
  const want = expectedSum(
    inputs,
    included.map((id) => id - 1),
    BITS,
  );
  const sd = Math.sqrt(s.result.noise!.totalVariance);
  for (let i = 0; i < M; i++) {
    let d = (s.result.sum[i]! - want[i]!) & ((1 << BITS) - 1);
    if (d >= 1 << (BITS - 1)) d -= 1 << BITS;
    assert.ok(Math.abs(d) <= 8 * sd, `${what}: coordinate ${i} is ${d} off Σx (noise sd ${sd})`);
  }
}

describe('a round stopped after any event and finished from its encoded states gives the same sum', () => {
  for (const spec of [...SPECS, ...DP_SPECS]) {
    test(spec.name, async () => {
      // The round that never stops: how many events it takes, the stages it passes, its result.
      const ref = await setUp(spec);
      const stagesSeen = new Set<string>();
      let events = 0;
      while (await step(ref.round, ref.ctx)) {
        events++;
        stagesSeen.add(ref.round.server.stage === 'view' ? `view#${ref.round.server.view.attempt}` : ref.round.server.stage);
      }
      const want = resultOf(ref.round.server, spec.dp);
      assert.equal(want.stage, 'done', `the reference round completes: ${ref.round.server.abortError?.message}`);
      const silent = new Set(spec.silentFrom.filter(([, s]) => s !== 'unmask').map(([id]) => id));
      const included = ref.ids.filter((id) => !silent.has(id));
      assert.deepEqual(want.included, included);
      if (spec.dp) assertNoisySum(ref.round.server, ref.inputs, included, 'the reference round');
      else
        assert.deepEqual(
          want.sum,
          [
            ...expectedSum(
              ref.inputs,
              included.map((id) => id - 1),
              BITS,
            ),
          ],
          'the sum is the plain sum over the survivors',
        );
      const expectedStages = spec.mode === 'active' ? ['view#1', 'share', 'masked', 'consistency', 'unmask', 'done'] : ['share', 'masked', 'unmask', 'done'];
      for (const s of expectedStages) assert.ok(stagesSeen.has(s), `the round passes through ${s}`);
      if (spec.silentFrom.some(([, s]) => s === 'view')) assert.ok(stagesSeen.has('view#2'), 'a second view attempt');

      // Stopped after event k, written down, read back with contexts of their own, finished; the
      // round that was written down then goes on to event k + 1 (it is not touched by the copy).
      const stoppedIn = new Set<string>();
      const run = await setUp(spec);
      for (let k = 0; ; k++) {
        stoppedIn.add(run.round.server.stage);
        const resumed = roundTrip(run.round);
        await runToEnd(resumed, contextsFor(run.ids, 1000 + k, run.directory, run.identities));
        const what = `stopped after event ${k} of ${events} (server in ${run.round.server.stage})`;
        assert.deepEqual(resultOf(resumed.server, spec.dp), want, what);
        if (spec.dp) assertNoisySum(resumed.server, run.inputs, included, what);
        if (!(await step(run.round, run.ctx))) break;
      }
      assert.deepEqual(resultOf(run.round.server, spec.dp), want, 'the round that was written down at every event finishes the same');
      if (spec.dp)
        assert.deepEqual(
          [...(run.round.server as { result: { sum: Uint32Array } }).result.sum],
          [...(ref.round.server as { result: { sum: Uint32Array } }).result.sum],
          'same seeds, same noise',
        );
      for (const s of ['advertise', ...expectedStages]) assert.ok(stoppedIn.has(s.replace(/#\d$/, '')), `stopped at least once in ${s}`);
    });
  }
});

describe('a round is resumed from its encoded states in another process', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const spec of [SPECS[1]!, SPECS[2]!]) {
    test(`${spec.name}: stopped in the masked stage with half the masked inputs added, finished by a child process`, async () => {
      const s = await setUp(spec, 7);
      // Run to the masked stage, then deliver half of the masked inputs to the server.
      while (s.round.server.stage !== 'masked') assert.ok(await step(s.round, s.ctx));
      while (s.round.toClients.length > 0) assert.ok(await step(s.round, s.ctx));
      const half = Math.floor(s.round.toServer.length / 2);
      for (let i = 0; i < half; i++) assert.ok(await step(s.round, s.ctx));
      assert.equal(s.round.server.stage, 'masked');
      assert.equal(s.round.server.masked.size, half, 'the running sum holds half the masked inputs');
      const dir = mkdtempSync(join(tmpdir(), 'secagg-resume-'));
      try {
        const file = join(dir, 'round.json');
        const hexMap = (m?: Map<number, Uint8Array>) => (m ? [...m].map(([id, b]) => [id, Buffer.from(b).toString('hex')]) : undefined);
        writeFileSync(
          file,
          JSON.stringify({ round: toJson(writeDown(s.round)), ids: s.ids, seed: 99, directory: hexMap(s.directory), identities: hexMap(s.identities) }),
        );
        const out = execFileSync(process.execPath, [join(here, 'resume-child.js'), file], {
          env: { ...process.env, SECAGG_RESUME_CHILD: '1' },
          encoding: 'utf8',
        });
        const got = JSON.parse(out) as { pid: number; stage: string; sum: number[]; included: number[]; events: number };
        assert.notEqual(got.pid, process.pid);
        assert.ok(got.events > 0, 'the child had work left to do');
        assert.equal(got.stage, 'done');
        const silent = new Set(spec.silentFrom.filter(([, st]) => st !== 'unmask').map(([id]) => id));
        const included = s.ids.filter((id) => !silent.has(id));
        assert.deepEqual(got.included, included);
        assert.deepEqual(got.sum, [
          ...expectedSum(
            s.inputs,
            included.map((id) => id - 1),
            BITS,
          ),
        ]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('every stage, both modes, both graph kinds: stopped, written down, finished by another process', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const spec of SPECS) {
    test(`${spec.name}: at the start and in the middle of every stage instance`, async () => {
      const s = await setUp(spec, 5);
      const rounds: string[] = [];
      const where: string[] = [];
      const instance = () => (s.round.server.stage === 'view' ? `view#${s.round.server.view.attempt}` : s.round.server.stage);
      // The events of the whole round, then a checkpoint at the first event of each stage instance
      // and one halfway to the next.
      const probe = await setUp(spec, 5);
      const marks: Array<{ at: number; instance: string }> = [];
      let last = '';
      for (let k = 0; ; k++) {
        const now = probe.round.server.stage === 'view' ? `view#${probe.round.server.view.attempt}` : probe.round.server.stage;
        if (now !== last) marks.push({ at: k, instance: now });
        last = now;
        if (!(await step(probe.round, probe.ctx))) break;
      }
      const at = new Set<number>();
      for (let i = 0; i < marks.length; i++) {
        const next = marks[i + 1]?.at ?? marks[i]!.at;
        at.add(marks[i]!.at);
        at.add(Math.floor((marks[i]!.at + next) / 2));
      }
      for (let k = 0; ; k++) {
        if (at.has(k)) {
          rounds.push(toJson(writeDown(s.round)));
          where.push(`${instance()} after event ${k}`);
        }
        if (!(await step(s.round, s.ctx))) break;
      }
      const stages = new Set(where.map((w) => w.split(' ')[0]!.replace(/#\d$/, '')));
      for (const st of spec.mode === 'active' ? ['advertise', 'view', 'share', 'masked', 'consistency', 'unmask'] : ['advertise', 'share', 'masked', 'unmask'])
        assert.ok(stages.has(st), `a checkpoint in ${st}`);
      const dir = mkdtempSync(join(tmpdir(), 'secagg-resume-'));
      try {
        const file = join(dir, 'rounds.json');
        const hexMap = (m?: Map<number, Uint8Array>) => (m ? [...m].map(([id, b]) => [id, Buffer.from(b).toString('hex')]) : undefined);
        writeFileSync(file, JSON.stringify({ rounds, ids: s.ids, seed: 77, directory: hexMap(s.directory), identities: hexMap(s.identities) }));
        const out = execFileSync(process.execPath, [join(here, 'resume-child.js'), file], {
          env: { ...process.env, SECAGG_RESUME_CHILD: '1' },
          encoding: 'utf8',
        });
        const got = JSON.parse(out) as Array<{ pid: number; stage: string; sum: number[]; included: number[] }>;
        assert.equal(got.length, rounds.length);
        const silent = new Set(spec.silentFrom.filter(([, st]) => st !== 'unmask').map(([id]) => id));
        const included = s.ids.filter((id) => !silent.has(id));
        const sum = [
          ...expectedSum(
            s.inputs,
            included.map((id) => id - 1),
            BITS,
          ),
        ];
        got.forEach((g, i) => {
          assert.notEqual(g.pid, process.pid);
          assert.equal(g.stage, 'done', `resumed at ${where[i]}`);
          assert.deepEqual(g.included, included, `resumed at ${where[i]}`);
          assert.deepEqual(g.sum, sum, `resumed at ${where[i]}`);
        });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('the state decoders refuse malformed encodings with a typed error', () => {
  /** One encoding of each server stage and each client stage, from a round with dropouts. */
  async function samples(spec: Spec): Promise<{ server: Uint8Array[]; client: Uint8Array[] }> {
    const s = await setUp(spec);
    const server = new Map<string, Uint8Array>();
    const client = new Map<string, Uint8Array>();
    const take = () => {
      server.set(s.round.server.stage, encodeServerState(s.round.server));
      for (const c of s.round.clients.values()) client.set(c.stage, encodeClientState(c));
    };
    take();
    while (await step(s.round, s.ctx)) take();
    return { server: [...server.values()], client: [...client.values()] };
  }

  test('every truncation, every header change, and bit flips: ERR_DECODE / ERR_VERSION or a state, never another error', async () => {
    const r = unsafeSeededRng(11);
    let refused = 0;
    let decodedAfterFlip = 0;
    for (const spec of [SPECS[0]!, SPECS[3]!]) {
      const { server, client } = await samples(spec);
      assert.ok(server.length >= (spec.mode === 'active' ? 7 : 5) && client.length >= 5, `${server.length} server and ${client.length} client stages sampled`);
      for (const [bytes, decode, other] of [
        ...server.map((b) => [b, decodeServerState, decodeClientState] as const),
        ...client.map((b) => [b, decodeClientState, decodeServerState] as const),
      ]) {
        const typed = (f: () => unknown, codes: readonly string[], what: string) => {
          try {
            f();
          } catch (e) {
            assert.ok(isSecAggError(e) && codes.includes(e.code), `${what}: ${String(e)}`);
            refused++;
            return true;
          }
          return false;
        };
        assert.ok(
          typed(() => other(bytes), ['ERR_DECODE'], "the other side's decoder"),
          'a client state is not a server state, and back',
        );
        for (let len = 0; len < bytes.length; len += len < 64 ? 1 : 1 + Math.floor(bytes.length / 97))
          assert.ok(
            typed(() => decode(bytes.subarray(0, len)), ['ERR_DECODE'], `truncated to ${len}`),
            `a truncation to ${len} of ${bytes.length} bytes is refused`,
          );
        assert.ok(
          typed(() => decode(new Uint8Array([...bytes, 0])), ['ERR_DECODE'], 'a trailing byte'),
          'a trailing byte is refused',
        );
        const v = bytes.slice();
        v[4] = STATE_FORMAT_VERSION + 1;
        assert.ok(
          typed(() => decode(v), ['ERR_VERSION'], 'a later version'),
          'a later format version is refused',
        );
        const st = bytes.slice();
        st[5] = 200;
        assert.ok(
          typed(() => decode(st), ['ERR_DECODE'], 'an unknown stage'),
          'an unknown stage is refused',
        );
        for (let i = 0; i < 40; i++) {
          const flipped = bytes.slice();
          const at = r(4);
          const pos = (at[0]! | (at[1]! << 8) | (at[2]! << 16)) % bytes.length;
          flipped[pos] = flipped[pos]! ^ (1 << (at[3]! & 7));
          if (!typed(() => decode(flipped), ['ERR_DECODE', 'ERR_VERSION'], `a bit flip at ${pos}`)) decodedAfterFlip++;
        }
      }
    }
    // Every flip is refused, also inside keys or sums (which no check of the format could tell): the checksum.
    assert.ok(refused > 1000 && decodedAfterFlip === 0, `${refused} refusals; ${decodedAfterFlip} flips decoded`);
  });
});

describe('the mutation contract: a call consumes its state', () => {
  test('a consumed state, or one a call is still working on, is refused; a refusal hands the same state back, unchanged', async () => {
    const s = await setUp(SPECS[0]!);
    while (s.round.toClients.length > 0) assert.ok(await step(s.round, s.ctx));
    const state = s.round.server;
    const [a, b] = s.round.toServer;
    // Two calls at once on one state: the second is refused while the first works.
    const first = handleServerMessage(s.ctx.server, state, a!.from, a!.bytes);
    await assert.rejects(handleServerMessage(s.ctx.server, state, b!.from, b!.bytes), TypeError);
    const accepted = await first;
    assert.equal(accepted.error, undefined);
    assert.notEqual(accepted.state, state, 'an accepted message returns a new state object');
    await assert.rejects(handleServerMessage(s.ctx.server, state, b!.from, b!.bytes), TypeError, 'the consumed state is refused');
    assert.throws(() => encodeServerState(state), TypeError, 'a consumed state cannot be written down either');
    // A refusal: the same object back, its encoding unchanged, still usable.
    const before = encodeServerState(accepted.state);
    const refused = await handleServerMessage(s.ctx.server, accepted.state, a!.from, a!.bytes);
    assert.equal(refused.error?.code, 'ERR_DUPLICATE_SENDER');
    assert.equal(refused.state, accepted.state);
    assert.deepEqual(encodeServerState(refused.state), before);
    const next = await handleServerMessage(s.ctx.server, refused.state, b!.from, b!.bytes);
    assert.equal(next.error, undefined);
    // The client side too.
    const c = s.round.clients.get(1)!;
    const ctx = s.ctx.clients.get(1)!;
    const other = encodeServerMessage(new Uint8Array(16).fill(9), { case: 'shares', value: { shares: [] } });
    const ignored = await handleClientMessage(ctx, c, other);
    assert.equal(ignored.error?.code, 'ERR_ROUND_MISMATCH');
    assert.equal(ignored.state, c, 'a message for another round hands the same state back');
    const garbage = await handleClientMessage(ctx, c, new Uint8Array([1, 2, 3]));
    assert.equal(garbage.state.stage, 'aborted');
    await assert.rejects(handleClientMessage(ctx, c, other), TypeError, 'the consumed client state is refused');
  });
});

describe("the client's input from a provider called with the round's config", () => {
  async function oneRound(
    provide: (config: RoundConfig, id: number) => Uint32Array | Promise<Uint32Array>,
  ): Promise<{ server: ServerState; clients: ClientState[]; seen: RoundConfig[] }> {
    const ids = [1, 2, 3, 4, 5];
    const config: RoundConfig = {
      roundId: roundId(new Uint8Array(16).fill(4)),
      bits: 8,
      dimension: 3,
      threshold: 3,
      degree: 'complete',
      mode: 'semi-honest',
      cohort: ids.map(clientId),
    };
    const seen: RoundConfig[] = [];
    const contexts = new Map(
      ids.map((id) => [
        id,
        clientContext({
          crypto: nodeCrypto,
          rng: unsafeSeededRng(id),
          input: (c) => {
            seen.push(c);
            return provide(c, id);
          },
        }),
      ]),
    );
    const start = startServerRound(serverContext({ crypto: nodeCrypto, rng: unsafeSeededRng(0) }), { config });
    const round: Round = {
      server: start.state,
      clients: new Map(ids.map((id) => [id, createClient({ id: clientId(id) })])),
      toClients: [...start.outgoing],
      toServer: [],
      silentFrom: new Map(),
    };
    await runToEnd(round, { server: serverContext({ crypto: nodeCrypto, rng: unsafeSeededRng(0) }), clients: contexts });
    return { server: round.server, clients: [...round.clients.values()], seen };
  }

  test('the provider sees the round (after RoundStart, before anything is sent) and its vectors are summed', async () => {
    const { server, seen } = await oneRound((c, id) => new Uint32Array(c.dimension).map((_, i) => (id * 10 + i) % 2 ** c.bits));
    assert.equal(seen.length, 5);
    for (const c of seen) assert.deepEqual([c.dimension, c.bits, c.threshold, [...c.roundId]], [3, 8, 3, [...new Uint8Array(16).fill(4)]]);
    assert.equal(server.stage, 'done');
    assert.deepEqual([...server.result!.sum], [150, 155, 160]); // Σ_id (10·id + i) for id = 1..5
  });

  test('a provider that fails or gives the wrong vector makes that client abort with ERR_INVALID_PARAMETERS; no input at all too', async () => {
    for (const bad of [
      () => {
        throw new Error('model not ready');
      },
      () => new Uint32Array(2),
      () => new Uint32Array([1, 2, 256]),
      () => [1, 2, 3] as unknown as Uint32Array,
    ]) {
      const { clients, server } = await oneRound((c, id) => (id === 2 ? bad() : new Uint32Array(c.dimension)));
      const c2 = clients.find((c) => c.id === 2)!;
      assert.equal(c2.stage, 'aborted');
      assert.equal(c2.abortCode, 'ERR_INVALID_PARAMETERS');
      assert.equal(server.stage, 'done', 'the others finish without it');
      assert.deepEqual([...server.result!.included], [1, 3, 4, 5]);
    }
    const lone = createClient({ id: clientId(1) });
    const start = encodeServerMessage(new Uint8Array(16).fill(1), {
      case: 'roundStart',
      value: { roundId: new Uint8Array(16).fill(1), bits: 8, dimension: 3, threshold: 2, degree: 0, mode: 1, cohort: [1, 2, 3], corruption: 0, colluders: 0 },
    });
    const r = await handleClientMessage(clientContext({ crypto: nodeCrypto }), lone, start);
    assert.equal(r.error?.code, 'ERR_INVALID_PARAMETERS');
    assert.match(r.error!.message, /no input/);
  });
});
