/**
 * The round runner (protocol/runner.ts): stage deadlines on an injected clock, a deadline that only
 * closes the stage instance it was set for, one step at a time, writes in order. Real clients and
 * the real server state machine; time moves only when the test moves it (manualClock).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { manualClock } from '../src/clock.js';
import { nodeCrypto } from '../src/crypto/node.js';
import { clientId, roundId, type ClientId } from '../src/ids.js';
import { nextMacrotask } from '../src/pace.js';
import { unsafeSeededRng } from '../src/rng.js';
import { minimumThreshold, type RoundConfig } from '../src/protocol/config.js';
import { clientContext, createClient, handleClientMessage, type ClientState } from '../src/protocol/clientRound.js';
import { createRoundRunner, type RoundEnd } from '../src/protocol/runner.js';
import { serverContext, type Outgoing, type ServerContext, type ServerState } from '../src/protocol/serverRound.js';
import { decodeServerState, encodeServerState } from '../src/protocol/stateCodec.js';
import { expectedSum, randomInputs, range } from './helpers.js';

const TIMEOUT = 1000;

function setUp(n: number, context: Partial<ServerContext> = {}) {
  const rng = unsafeSeededRng(11);
  const inputs = randomInputs(n, 4, 16, 11);
  const cohort = range(n).map((i) => clientId(i + 1));
  const config: RoundConfig = {
    roundId: roundId(rng(16)),
    bits: 16,
    dimension: 4,
    threshold: minimumThreshold('semi-honest', 'complete', n, 0),
    degree: 'complete',
    mode: 'semi-honest',
    cohort,
  };
  const clients = new Map<number, ClientState>(cohort.map((id) => [id, createClient({ id, input: inputs[id - 1]! })]));
  const clientCtx = clientContext({ crypto: nodeCrypto, rng });
  const outbox: Outgoing[] = [];
  const ends: RoundEnd[] = [];
  /** The instances a deadline closed (onDeadlineClose). */
  const deadlineCloses: string[] = [];
  const clock = manualClock(5_000);
  const runner = createRoundRunner({
    server: { config },
    context: serverContext({ crypto: nodeCrypto, rng, ...context }),
    stageTimeoutMs: TIMEOUT,
    clock,
    send: (to, bytes) => void outbox.push({ to, bytes }),
    onEnd: (end) => void ends.push(end),
    onDeadlineClose: (instance) => void deadlineCloses.push(instance),
  });
  /** Deliver what the server sent (except to `silent`); the clients' replies. */
  const replies = async (silent: readonly number[] = []): Promise<Array<{ from: ClientId; bytes: Uint8Array }>> => {
    const out: Array<{ from: ClientId; bytes: Uint8Array }> = [];
    for (const { to, bytes } of outbox.splice(0)) {
      if (silent.includes(to)) continue;
      const r = await handleClientMessage(clientCtx, clients.get(to)!, bytes);
      clients.set(to, r.state);
      if (r.outgoing) out.push({ from: to, bytes: r.outgoing });
    }
    return out;
  };
  /** One server message to one client; its reply. */
  const deliver = async (to: number, bytes: Uint8Array): Promise<Uint8Array | null> => {
    const r = await handleClientMessage(clientCtx, clients.get(to)!, bytes);
    clients.set(to, r.state);
    return r.outgoing;
  };
  return { runner, clock, inputs, ends, replies, deliver, deadlineCloses };
}

test('runner: a stage closes at its deadline on the injected clock, not a millisecond before; the next stage gets a fresh deadline', async () => {
  const { runner, clock, inputs, ends, replies, deadlineCloses } = setUp(4);
  runner.start();
  await runner.idle();
  assert.equal(runner.deadlineAt, 5_000 + TIMEOUT);
  for (const r of await replies([4])) assert.equal(await runner.message(r.from, r.bytes), undefined);
  assert.equal(runner.state.stage, 'advertise', 'client 4 has not answered: the stage waits for it');
  clock.advance(TIMEOUT - 1);
  await runner.idle();
  assert.equal(runner.state.stage, 'advertise');
  clock.advance(1);
  await runner.idle();
  assert.equal(runner.state.stage, 'share', 'closed with the three that answered');
  assert.deepEqual(deadlineCloses, ['advertise'], 'onDeadlineClose: the deadline closed advertise');
  assert.equal(runner.deadlineAt, 5_000 + 2 * TIMEOUT);
  while (!runner.finished) {
    for (const r of await replies()) await runner.message(r.from, r.bytes);
    await runner.idle();
  }
  assert.equal(ends.length, 1);
  const end = ends[0]!;
  assert.equal(end.outcome, 'completed');
  if (end.outcome === 'completed') assert.deepEqual(end.result.sum, expectedSum(inputs, [0, 1, 2], 16));
  assert.equal(clock.pending, 0, 'no timer outlives the round');
  assert.deepEqual(deadlineCloses, ['advertise'], 'every later stage closed with all its answers');
});

test('runner: a deadline that fires while the step closing its stage is still queued closes nothing else (the next stage is not closed at once)', async () => {
  const { runner, clock, inputs, ends, replies, deadlineCloses } = setUp(5);
  runner.start();
  await runner.idle();
  for (const r of await replies()) await runner.message(r.from, r.bytes);
  assert.equal(runner.state.stage, 'share');
  const shares = await replies();
  // Every member's ShareKeys is queued — the last one closes 'share' — and the share deadline fires
  // before any of them ran: its close is queued behind the step that already closes the stage.
  const handled = shares.map((r) => runner.message(r.from, r.bytes));
  clock.advance(TIMEOUT);
  await Promise.all(handled);
  await runner.idle();
  // Had the stale deadline run, it would have closed 'masked' with no masked input: an abort.
  assert.equal(runner.state.stage, 'masked', (runner.state as ServerState).abortError?.message);
  assert.equal(ends.length, 0);
  assert.deepEqual(deadlineCloses, [], 'the stale deadline closed nothing, so onDeadlineClose was not called');
  while (!runner.finished) {
    for (const r of await replies()) await runner.message(r.from, r.bytes);
    await runner.idle();
  }
  assert.equal(ends[0]?.outcome, 'completed');
  if (ends[0]?.outcome === 'completed') assert.deepEqual(ends[0].result.sum, expectedSum(inputs, range(5), 16));
});

test('runner: one step at a time — a message that arrives while a stage change yields is handled only after it returns', async () => {
  let yields = 0;
  let yielding = false;
  let arrive: (() => void) | undefined;
  const yieldToEventLoop = async () => {
    yields++;
    yielding = true;
    // A frame arrives from the network in the middle of the stage change.
    const f = arrive;
    arrive = undefined;
    f?.();
    await nextMacrotask();
    yielding = false;
  };
  // 72 clients: the share stage's close routes 72·71 entries, more than one slice, so it yields.
  const { runner, ends, replies } = setUp(72, { yieldToEventLoop });
  runner.start();
  await runner.idle();
  const advertised = await replies();
  for (const r of advertised) await runner.message(r.from, r.bytes);
  const shares = await replies();
  yields = 0;
  const seen: boolean[] = [];
  let late: Promise<unknown> | undefined;
  // A late AdvertiseKeys (refused) that arrives during the first yield.
  arrive = () => (late = runner.message(advertised[0]!.from, advertised[0]!.bytes, { begin: () => (seen.push(yielding), true) }));
  await Promise.all(shares.map((r) => runner.message(r.from, r.bytes)));
  assert.ok(yields > 0 && late !== undefined, 'the stage change yielded and the message arrived then (else this test checks nothing)');
  assert.equal(((await late) as { code?: string } | undefined)?.code, 'ERR_STAGE_MISMATCH');
  assert.deepEqual(seen, [false], 'the late message ran after the stage change had returned, not inside one of its yields');
  assert.equal(runner.state.stage, 'masked');
  assert.equal(ends.length, 0);
});

test('runner: writes run in order, one after the other, and a failed one does not stop the next', async () => {
  const { runner } = setUp(3);
  const log: string[] = [];
  const slow = runner.persist(async () => {
    log.push('a start');
    for (let i = 0; i < 5; i++) await nextMacrotask();
    log.push('a end');
  });
  const failing = runner.persist(() => {
    log.push('b');
    throw new Error('disk full');
  });
  const last = runner.persist(() => void log.push('c'));
  await slow;
  await assert.rejects(failing, /disk full/);
  await last;
  assert.deepEqual(log, ['a start', 'a end', 'b', 'c']);
});

test('runner: abort() from outside ends the round at once; a step still queued cannot complete it, later messages are refused', async () => {
  const { runner, clock, ends, replies } = setUp(3);
  runner.start();
  await runner.idle();
  const pending = (await replies()).map((r) => runner.message(r.from, r.bytes));
  await runner.abort('ERR_SHUTDOWN', 'stopping');
  await Promise.all(pending);
  await runner.idle();
  assert.equal(ends.length, 1);
  assert.deepEqual(ends[0], { outcome: 'aborted', code: 'ERR_SHUTDOWN', reason: 'stopping' });
  assert.equal(runner.state.stage, 'advertise', 'nothing queued was applied after the abort');
  assert.equal(clock.pending, 0);
  assert.equal((await runner.message(1, new Uint8Array([1])))?.code, 'ERR_STAGE_MISMATCH');
});

test('runner: a round resumed from an encoded state (createRoundRunner({ resume })) finishes with the same sum, its deadline armed again', async () => {
  const { runner, inputs, replies, deliver } = setUp(6);
  runner.start();
  await runner.idle();
  for (const r of await replies()) await runner.message(r.from, r.bytes);
  for (const r of await replies()) await runner.message(r.from, r.bytes);
  assert.equal(runner.state.stage, 'masked');
  // Half the masked inputs reach this runner; then its process "stops": the state is written down.
  const masked = await replies([6]);
  for (const r of masked.slice(0, 2)) await runner.message(r.from, r.bytes);
  await runner.idle();
  const bytes = encodeServerState(runner.state);
  runner.abort('ERR_SHUTDOWN', 'this process stops');
  await runner.ended;
  // Another runner goes on from the decoded state, with its own context and clock.
  const out: Outgoing[] = [];
  const ends2: RoundEnd[] = [];
  const clock2 = manualClock(9_000);
  const resumed = createRoundRunner({
    resume: decodeServerState(bytes),
    context: serverContext({ crypto: nodeCrypto, rng: unsafeSeededRng(99) }),
    stageTimeoutMs: TIMEOUT,
    clock: clock2,
    send: (to, b) => void out.push({ to, bytes: b }),
    onEnd: (end) => void ends2.push(end),
  });
  resumed.start();
  await resumed.idle();
  assert.equal(resumed.state.stage, 'masked');
  assert.equal(out.length, 0, 'resuming sends nothing: the messages still due come from the clients');
  assert.equal(resumed.deadlineAt, 9_000 + TIMEOUT, 'the stage deadline is armed on the new clock');
  for (const r of masked.slice(2)) await resumed.message(r.from, r.bytes);
  clock2.advance(TIMEOUT); // client 6 never sent its masked input
  await resumed.idle();
  assert.equal(resumed.state.stage, 'unmask');
  // The unmask request goes out through the new runner; the clients answer it.
  const sent = out.splice(0);
  assert.ok(sent.length >= 5);
  const unmask: Array<{ from: ClientId; bytes: Uint8Array }> = [];
  for (const { to, bytes: b } of sent) {
    const r = await deliver(to, b);
    if (r) unmask.push({ from: to, bytes: r });
  }
  for (const r of unmask) await resumed.message(r.from, r.bytes);
  await resumed.ended;
  assert.equal(ends2[0]?.outcome, 'completed');
  const end = ends2[0]!;
  if (end.outcome !== 'completed') return;
  assert.deepEqual([...end.result.included], [1, 2, 3, 4, 5]);
  assert.deepEqual(end.result.sum, expectedSum(inputs, [0, 1, 2, 3, 4], 16));
  assert.throws(() => createRoundRunner({ send: () => {} }), TypeError, 'neither a round to start nor a state to resume');
});
