/**
 * A short run of the state-machine fuzzer (test/fuzz/roundCorpus.ts; the long one is
 * `node dist/bench/fuzz-rounds.js`): handleServerMessage, handleServerDeadline and
 * handleClientMessage never throw, return only typed errors, leave the server state unchanged on a
 * refusal and keep their other contracts, on 5,000 seeded inputs. The harness's own checks are
 * tested too: a copy is independent of its original, the snapshot sees a change in any Map, and a
 * handler that changes its state before refusing, or throws, is caught.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { SecAggError } from '../../src/errors.js';
import { ClientMessageSchema } from '../../src/wire/gen/secagg/v1/secagg_pb.js';
import { handleServerMessage, type ServerContext, type ServerState } from '../../src/protocol/serverRound.js';
import { encodeServerState } from '../../src/protocol/stateCodec.js';
import { handleClientMessage } from '../../src/protocol/clientRound.js';
import {
  badCount,
  buildRoundCorpus,
  cloneClientState,
  cloneServerState,
  formatRoundReport,
  runRoundFuzz,
  snapshotClient,
  snapshotServer,
  type RoundFuzzCorpus,
} from './roundCorpus.js';
import { CLIENT_STAGES as ALL_CLIENT_STAGES, STAGES } from '../../src/protocol/stages.js';

let corpus: Promise<RoundFuzzCorpus> | undefined;
const getCorpus = () => (corpus ??= buildRoundCorpus());

const SERVER_STAGES: readonly string[] = STAGES;
const CLIENT_STAGES: readonly string[] = ALL_CLIENT_STAGES.filter((s) => s !== 'aborted');

test('state-machine fuzz, 5,000 inputs: no crash, no untyped error, no state change on refusal, no broken contract', async () => {
  const c = await getCorpus();
  const r = await runRoundFuzz({ inputs: 5_000, seed: 20260101, corpus: c, batchSize: 40, deadlineRate: 0.08 });
  const bad = badCount(r);
  assert.deepEqual(bad, { crashes: 0, untyped: 0, stateChanges: 0, violations: 0 }, formatRoundReport(r));
  assert.equal(r.inputs, 5_000);
  const consumedWrongly = Object.values(r.rows).reduce((a, x) => a + x.preMutated, 0);
  assert.equal(
    consumedWrongly,
    0,
    'a client refusal that aborts consumes the previous state (marked, its data untouched); one that does not leaves it as it was',
  );
  // Every handler at every stage was reached, accepted some inputs and refused others.
  for (const s of SERVER_STAGES) {
    const row = r.rows[`server ${s}`];
    assert.ok(row && row.accepted > 0 && Object.keys(row.refused).length >= 4, `server ${s}: ${JSON.stringify(row)}`);
  }
  for (const s of CLIENT_STAGES) {
    const row = r.rows[`client ${s}`];
    assert.ok(row && row.accepted > 0 && Object.keys(row.refused).length >= 3, `client ${s}: ${JSON.stringify(row)}`);
  }
  const deadlines = Object.values(r.rows).filter((x) => x.handler === 'deadline');
  assert.ok(deadlines.reduce((a, x) => a + x.tried, 0) > 50, 'deadlines delivered');
  assert.ok(Object.values(r.rows).reduce((a, x) => a + x.sumsChecked, 0) > 0, 'some rounds finished and their sums were checked');
  // The protocol's own refusals were reached, not only the decoder's.
  const codes = new Set(Object.values(r.rows).flatMap((x) => Object.keys(x.refused)));
  for (const code of [
    'ERR_DUPLICATE_SENDER',
    'ERR_UNKNOWN_SENDER',
    'ERR_STAGE_MISMATCH',
    'ERR_ROUND_MISMATCH',
    'ERR_NOT_NEIGHBOUR',
    'ERR_INCONSISTENT_VIEW',
    'ERR_SIGNATURE_INVALID',
  ])
    assert.ok(codes.has(code), `${code} never returned`);
});

test('state-machine fuzz: a batch replays alone exactly as in the whole run', async () => {
  const c = await getCorpus();
  const whole = await runRoundFuzz({ inputs: 600, seed: 7, corpus: c, batchSize: 100, batches: (b) => b === 3 || b === 4 });
  const three = await runRoundFuzz({ inputs: 600, seed: 7, corpus: c, batchSize: 100, batches: (b) => b === 3 });
  const four = await runRoundFuzz({ inputs: 600, seed: 7, corpus: c, batchSize: 100, batches: (b) => b === 4 });
  const again = await runRoundFuzz({ inputs: 600, seed: 7, corpus: c, batchSize: 100, batches: (b) => b === 3 });
  assert.deepEqual(three.rows, again.rows);
  const tried = (x: typeof whole) => Object.values(x.rows).reduce((a, y) => a + y.tried, 0);
  assert.equal(tried(whole), tried(three) + tried(four));
});

test('state copies are independent, and the snapshot sees every change', async () => {
  const c = await getCorpus();
  const share = c.serverPoints.find((p) => p.label === 'share/partial' && p.round.spec.mode === 'active')!;
  const sctx = share.round.serverCtx;
  const copy = cloneServerState(share.state);
  assert.equal(snapshotServer(copy), share.snapshot);
  // An honest reply not yet delivered is accepted, and changes the copy only.
  assert.equal(copy.stage, 'share');
  const delivered = new Set(copy.shared.keys());
  const reply = share.round.replies.get('share')!.find((w) => !delivered.has(w.from))!;
  const step = await handleServerMessage(sctx, copy, reply.from, reply.bytes);
  assert.equal(step.error, undefined);
  assert.notEqual(snapshotServer(step.state), share.snapshot);
  assert.equal(snapshotServer(share.state), share.snapshot);
  // The copy was consumed: a second call with it is refused, and it can no longer be encoded.
  await assert.rejects(handleServerMessage(sctx, copy, reply.from, reply.bytes), TypeError);
  assert.throws(() => encodeServerState(copy), TypeError);
  // In-place changes deep in the state show.
  const probe = cloneServerState(share.state);
  probe.stage === 'share' && probe.quit.add(1);
  assert.notEqual(snapshotServer(probe), share.snapshot);
  const probe2 = cloneServerState(share.state);
  const first = [...(probe2.stage === 'share' ? probe2.shared.values() : [])][0]!;
  [...first.ciphertexts.values()][0]![5]! ^= 1;
  assert.notEqual(snapshotServer(probe2), share.snapshot);
  const masked = c.serverPoints.find((p) => p.label === 'masked/partial')!;
  const probe3 = cloneServerState(masked.state);
  assert.equal(probe3.stage, 'masked');
  probe3.sum.addChunk(new Uint32Array([1]), 0, 1);
  assert.notEqual(snapshotServer(probe3), masked.snapshot);
  assert.equal(snapshotServer(masked.state), masked.snapshot);
  // Clients too.
  const cp = c.clientPoints.find((p) => p.state.stage === 'awaiting-shares')!;
  const cc = cloneClientState(cp.state);
  assert.equal(snapshotClient(cc), cp.snapshot);
  const s = await handleClientMessage(cp.round.clientCtx.get(cp.id)!, cc, cp.message);
  assert.equal(s.error, undefined);
  assert.equal(s.state.stage, cp.round.spec.mode === 'active' ? 'awaiting-consistency' : 'awaiting-unmask');
  assert.equal(snapshotClient(cp.state), cp.snapshot);
  await assert.rejects(handleClientMessage(cp.round.clientCtx.get(cp.id)!, cc, cp.message), TypeError);
});

test('the harness catches a handler that changes its state before refusing, or throws, or leaks an untyped error', async () => {
  const c = await getCorpus();
  const changes = await runRoundFuzz({
    inputs: 800,
    seed: 3,
    corpus: c,
    batchSize: 40,
    handlers: {
      server: async (ctx: ServerContext, state: ServerState, from: number, bytes: Uint8Array) => {
        const step = await handleServerMessage(ctx, state, from, bytes);
        if (step.error?.code === 'ERR_DECODE' && step.state.stage !== 'done' && step.state.stage !== 'aborted') step.state.quit.add(from); // refuses, but remembers the sender
        return step;
      },
    },
  });
  assert.ok(badCount(changes).stateChanges > 0, 'a state change on refusal is seen');
  const throws = await runRoundFuzz({
    inputs: 800,
    seed: 3,
    corpus: c,
    batchSize: 40,
    handlers: {
      client: async (ctx, state, bytes) => {
        const step = await handleClientMessage(ctx, state, bytes);
        if (step.error?.code === 'ERR_SIZE') throw new RangeError('boom');
        if (step.error?.code === 'ERR_DECODE') return { ...step, error: new SecAggError('ERR_INTERNAL', 'x', { cause: new TypeError('y') }) };
        return step;
      },
    },
  });
  assert.ok(badCount(throws).crashes > 0, 'a throw is seen');
  assert.ok(badCount(throws).untyped > 0, 'an untyped error is seen');
});

/** The corpus restricted to its DP rounds (RoundSpec.dp). */
async function dpCorpus(): Promise<RoundFuzzCorpus> {
  const c = await getCorpus();
  const rounds = c.rounds.filter((r) => r.spec.dp !== undefined);
  return { ...c, rounds, serverPoints: rounds.flatMap((r) => r.serverPoints), clientPoints: rounds.flatMap((r) => r.clientPoints) };
}

test('DP rounds in the corpus: each noise kind is fuzzed, finished rounds release inputs + noise − the excess accepted, and the contracts hold', async () => {
  const c = await dpCorpus();
  const kinds = new Set(c.rounds.map((r) => `${r.spec.dp!.mechanism}${r.spec.dp!.removable ? '+removable' : ''}`));
  assert.deepEqual([...kinds].sort(), ['dgauss', 'skellam', 'skellam+removable']);
  // Every honest unmask response of a removable round carries its excess; the others none.
  for (const r of c.rounds) assert.equal(r.honestExcess.size > 0, r.spec.dp!.removable, r.spec.name);
  const r = await runRoundFuzz({ inputs: 4_000, seed: 20260102, corpus: c, batchSize: 40, deadlineRate: 0.08 });
  assert.deepEqual(badCount(r), { crashes: 0, untyped: 0, stateChanges: 0, violations: 0 }, formatRoundReport(r));
  for (const spec of c.rounds.map((x) => x.spec)) assert.ok((r.byRound[spec.name]?.inputs ?? 0) > 0, `${spec.name} was fuzzed`);
  const tally = Object.values(r.byRound);
  assert.ok(tally.reduce((a, t) => a + t.sums, 0) > 0, 'some DP rounds finished and their release was checked');
  assert.ok(tally.reduce((a, t) => a + t.excess, 0) > 0, 'unmask responses carrying excess noise were accepted');
});

test('the harness catches a server that does not subtract the excess noise of the unmask responses it accepts', async () => {
  const c = await dpCorpus();
  const r = await runRoundFuzz({
    inputs: 4_000,
    seed: 20260102,
    corpus: c,
    batchSize: 40,
    deadlineRate: 0.08,
    handlers: {
      // The real handler, but every unmask response's excess is zeroed before it sees it.
      server: async (ctx: ServerContext, state: ServerState, from: number, bytes: Uint8Array) => {
        let b = bytes;
        try {
          const m = fromBinary(ClientMessageSchema, bytes);
          if (m.body.case === 'unmaskResponse' && m.body.value.excessNoise.length > 0) {
            m.body.value.excessNoise = new Uint8Array(m.body.value.excessNoise.length);
            b = toBinary(ClientMessageSchema, m);
          }
        } catch {
          // not a message: as given
        }
        return handleServerMessage(ctx, state, from, b);
      },
    },
  });
  assert.ok(badCount(r).violations > 0, 'a wrong DP release is seen');
  assert.ok(
    r.failures.some((f) => f.kind === 'violation' && /^wrong sum/.test(f.detail)),
    formatRoundReport(r),
  );
});
