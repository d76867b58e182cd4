/**
 * The client's control-frame protocol (client/session.ts) as a pure state machine: control frames
 * and answers in, actions out — no socket, no server.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create } from '@bufbuild/protobuf';
import { createSession, sessionStep, type SessionAction, type SessionConfig, type SessionEvent, type SessionState } from '../src/client/session.js';
import { CLOSE, decodeControl, type ControlBody } from '../src/transport/frames.js';
import { ControlSchema } from '../src/wire/gen/secagg/v1/service_pb.js';
import { DpMechanism, Mode } from '../src/wire/gen/secagg/v1/secagg_pb.js';
import { decodeClientMessage } from '../src/wire/codec.js';
import { ClientError } from '../src/client/errors.js';

const control = (body: ControlBody): SessionEvent => ({ type: 'control', control: create(ControlSchema, { body }) });
const challenge = (mode: Mode, serverId = 'srv') => control({ case: 'challenge', value: { version: 1, mode, nonce: new Uint8Array(32).fill(7), serverId } });
const welcome = control({ case: 'welcome', value: { clientId: 5, identity: 'alice', maxFrameBytes: 1000 } });
const roundId = new Uint8Array(16).fill(3);
const assignment = (roundNumber = 1) =>
  control({
    case: 'assignment',
    value: { roundNumber, roundId, clientId: 5, bits: 8, dimension: 3, maxFrameBytes: 1000, stageTimeoutMs: 1000, directory: [] },
  });
const finished = (roundNumber = 1) =>
  control({ case: 'finished', value: { roundNumber, roundId, completed: true, included: true, code: '', reason: '', survivors: 4 } });

/** Feed events in order; the last step's state and every action. */
function feed(config: Partial<SessionConfig>, ...events: SessionEvent[]): { state: SessionState; actions: SessionAction[] } {
  let state = createSession({ token: 'tok', active: false, wanted: 1, ...config });
  const actions: SessionAction[] = [];
  for (const e of events) {
    const step = sessionStep(state, e);
    state = step.state;
    actions.push(...step.actions);
  }
  return { state, actions };
}

const kinds = (actions: readonly SessionAction[]) =>
  actions.map((a) => (a.type === 'emit' ? `emit:${a.event.type}` : a.type === 'close' ? `close:${a.code}:${a.reason}` : a.type));
const sentHello = (actions: readonly SessionAction[]) => {
  const a = actions.find((x) => x.type === 'send');
  assert.ok(a && a.type === 'send');
  const c = decodeControl(a.frame);
  assert.equal(c.body.case, 'hello');
  return c.body.value as { token: string; proof?: { signature: Uint8Array } };
};

test('session: semi-honest — challenge → hello with the token, welcome, assignment → input asked, input → round started, finished → report and leave once enough rounds', () => {
  let r = feed({}, challenge(Mode.SEMI_HONEST));
  assert.equal(r.state.phase, 'awaiting-welcome');
  assert.equal(sentHello(r.actions).token, 'tok');
  assert.equal(sentHello(r.actions).proof, undefined);
  r = feed({}, challenge(Mode.SEMI_HONEST), welcome, assignment());
  assert.deepEqual(kinds(r.actions), ['send', 'welcomed', 'emit:welcome', 'emit:assigned', 'get-input']);
  assert.equal(r.state.round?.round, 1);
  assert.equal(r.state.round?.roundId, '03'.repeat(16));
  const input = Uint32Array.of(1, 2, 255);
  r = feed({}, challenge(Mode.SEMI_HONEST), welcome, assignment(), { type: 'input', input });
  const start = r.actions.at(-1)!;
  assert.ok(start.type === 'start-round' && start.input === input && start.clientId === 5 && start.directory === undefined);
  r = feed({ wanted: 2 }, challenge(Mode.SEMI_HONEST), welcome, assignment(), { type: 'input', input }, finished(7), finished(1));
  assert.equal(r.state.reports.length, 1, "another round's 'finished' is ignored");
  assert.deepEqual(kinds(r.actions).slice(-2), ['end-round', 'emit:finished']);
  assert.equal(r.state.phase, 'ready', 'one more round wanted');
  r = feed({ wanted: 1 }, challenge(Mode.SEMI_HONEST), welcome, assignment(), { type: 'input', input }, finished(1));
  assert.deepEqual(kinds(r.actions).slice(-1), [`close:${CLOSE.NORMAL}:done`]);
  assert.equal(r.state.phase, 'leaving');
  assert.deepEqual(r.state.reports[0], {
    round: 1,
    roundId: '03'.repeat(16),
    clientId: 5,
    bits: 8,
    dimension: 3,
    completed: true,
    included: true,
    code: undefined,
    reason: undefined,
    survivors: 4,
  });
});

test('session: an input that does not fit the round is ERR_INPUT and the client leaves; a second challenge or an unexpected frame closes 4400', () => {
  for (const [input, why] of [
    [Uint32Array.of(1, 2), /3/],
    [Uint32Array.of(1, 2, 256), /2\^8/],
    [[1, 2, 3], /Uint32Array/],
  ] as const) {
    const r = feed({}, challenge(Mode.SEMI_HONEST), welcome, assignment(), { type: 'input', input });
    assert.equal(r.state.error?.code, 'ERR_INPUT');
    assert.match(r.state.error!.message, why);
    assert.equal(r.state.phase, 'leaving');
    assert.ok(!r.actions.some((a) => a.type === 'start-round'));
  }
  let r = feed({}, challenge(Mode.SEMI_HONEST), challenge(Mode.SEMI_HONEST));
  assert.deepEqual(kinds(r.actions).slice(-1), [`close:${CLOSE.MALFORMED}:a second challenge`]);
  r = feed({}, challenge(Mode.SEMI_HONEST), control({ case: 'hello', value: { version: 1, token: 'x' } }));
  assert.deepEqual(kinds(r.actions).slice(-1), [`close:${CLOSE.MALFORMED}:unexpected hello frame from the server`]);
  // Once leaving, frames change nothing.
  const after = sessionStep(r.state, welcome);
  assert.deepEqual(after.actions, []);
  assert.equal(after.state, r.state);
});

test('session: active — a semi-honest server or another server id is ERR_IDENTITY; the hello waits for the proof; a directory that fails its check aborts that round', () => {
  let r = feed({ active: true }, challenge(Mode.SEMI_HONEST));
  assert.equal(r.state.error?.code, 'ERR_IDENTITY');
  assert.deepEqual(kinds(r.actions), [`close:${CLOSE.NORMAL}:identity check failed`]);
  r = feed({ active: true, serverId: 'other' }, challenge(Mode.ACTIVE));
  assert.match(r.state.error!.message, /calls itself 'srv', expected 'other'/);
  r = feed({ active: true }, challenge(Mode.ACTIVE));
  assert.equal(r.state.phase, 'proving');
  assert.deepEqual(kinds(r.actions), ['prove'], 'no hello before the proof');
  const proof = { identityKey: new Uint8Array(32).fill(1), signature: new Uint8Array(64).fill(2), certificate: '' };
  r = feed({ active: true }, challenge(Mode.ACTIVE), { type: 'proof', proof });
  assert.deepEqual(sentHello(r.actions).proof?.signature, proof.signature);
  r = feed({ active: true, identityCheck: 'pinned' }, challenge(Mode.ACTIVE), { type: 'proof', proof }, welcome, assignment(3));
  assert.deepEqual(kinds(r.actions).slice(-1), ['check-directory']);
  assert.equal(r.state.round, undefined, 'not assigned before the check');
  const refused = sessionStep(r.state, { type: 'directory', ok: false, message: 'bob is not pinned' });
  assert.equal(refused.state.error?.code, 'ERR_IDENTITY');
  assert.equal(refused.state.error?.message, 'round 3: bob is not pinned');
  const abort = refused.actions[0]!;
  assert.ok(abort.type === 'send');
  const m = decodeClientMessage(abort.frame, 1 << 16);
  assert.equal(m.body.case, 'abort');
  assert.equal(m.sender, 5);
  assert.deepEqual(m.roundId, roundId);
  assert.deepEqual(kinds(refused.actions).slice(1), [`close:${CLOSE.NORMAL}:identity check failed`]);
  const directory = new Map([[5, proof.identityKey]]);
  const ok = sessionStep(r.state, { type: 'directory', ok: true, directory });
  assert.equal(ok.state.round?.identityCheck, 'pinned');
  const started = sessionStep(ok.state, { type: 'input', input: Uint32Array.of(1, 2, 3) }).actions[0]!;
  assert.ok(started.type === 'start-round' && started.directory === directory);
});

test('session: a close mid-round reports the round as not included (ERR_DISCONNECTED); 4401 is ERR_UNAUTHORIZED; cancel closes with ERR_CANCELLED', () => {
  let r = feed(
    {},
    challenge(Mode.SEMI_HONEST),
    welcome,
    assignment(),
    { type: 'input', input: Uint32Array.of(1, 2, 3) },
    { type: 'closed', code: 1006, reason: 'gone' },
  );
  assert.equal(r.state.phase, 'closed');
  assert.equal(r.state.reports.length, 1);
  assert.equal(r.state.reports[0]!.code, 'ERR_DISCONNECTED');
  assert.equal(r.state.reports[0]!.included, false);
  assert.equal(r.state.reports[0]!.reason, 'connection closed: 1006 gone');
  assert.deepEqual(kinds(r.actions).slice(-1), ['emit:finished']);
  assert.equal(r.state.error, undefined);
  r = feed({}, challenge(Mode.SEMI_HONEST), { type: 'closed', code: CLOSE.UNAUTHORIZED, reason: 'invalid token' });
  assert.equal(r.state.error?.code, 'ERR_UNAUTHORIZED');
  assert.equal(r.state.reports.length, 0);
  r = feed({}, challenge(Mode.SEMI_HONEST), welcome, { type: 'cancel', cause: 'stop' }, { type: 'closed', code: CLOSE.UNAUTHORIZED, reason: 'x' });
  assert.equal(r.state.error?.code, 'ERR_CANCELLED', 'the first reason to fail is kept');
  assert.ok(kinds(r.actions).includes(`close:${CLOSE.NORMAL}:cancelled`));
  // The abort code of the round's protocol reaches the report when the server gives none.
  let s = feed({}, challenge(Mode.SEMI_HONEST), welcome, assignment(), { type: 'input', input: Uint32Array.of(1, 2, 3) }).state;
  s = sessionStep(s, {
    type: 'control',
    control: create(ControlSchema, { body: { case: 'finished', value: { roundNumber: 1, roundId, completed: false } } }),
    abortCode: 'ERR_BELOW_THRESHOLD',
  }).state;
  assert.equal(s.reports[0]!.code, 'ERR_BELOW_THRESHOLD');
});

// ---------------------------------------------------------------------------------------------
// A DP round's encoding in the assignment (RoundAssignment.dp_encoding → RoundInfo.dpEncoding)

const goodEncoding = {
  version: 1,
  mechanism: DpMechanism.SKELLAM,
  dimension: 64,
  bits: 24,
  clip: 2,
  scale: 1000,
  beta: Math.exp(-0.5),
  noiseMultiplier: 0.5,
};
const dpAssignment = (dpEncoding: Partial<typeof goodEncoding> | undefined, over: { bits?: number; dimension?: number } = {}) =>
  control({
    case: 'assignment',
    value: {
      roundNumber: 4,
      roundId,
      clientId: 5,
      bits: over.bits ?? 24,
      dimension: over.dimension ?? 64,
      maxFrameBytes: 1000,
      stageTimeoutMs: 1000,
      directory: [],
      ...(dpEncoding ? { dpEncoding: { ...goodEncoding, ...dpEncoding } } : {}),
    },
  });

test('session: a DP assignment’s encoding reaches the input provider as RoundInfo.dpEncoding; without one there is none', () => {
  const r = feed({}, challenge(Mode.SEMI_HONEST), welcome, dpAssignment({}));
  assert.deepEqual(kinds(r.actions), ['send', 'welcomed', 'emit:welcome', 'emit:assigned', 'get-input']);
  const ask = r.actions.at(-1)!;
  assert.ok(ask.type === 'get-input');
  assert.deepEqual(ask.round.dpEncoding, {
    version: 1,
    mechanism: 'skellam',
    dimension: 64,
    bits: 24,
    clip: 2,
    scale: 1000,
    beta: Math.exp(-0.5),
    noiseMultiplier: 0.5,
  });
  assert.equal(
    feed({}, challenge(Mode.SEMI_HONEST), welcome, dpAssignment({ mechanism: DpMechanism.DISCRETE_GAUSSIAN })).state.round?.dpEncoding?.mechanism,
    'dgauss',
  );
  assert.equal(feed({}, challenge(Mode.SEMI_HONEST), welcome, dpAssignment(undefined)).state.round?.dpEncoding, undefined);
  // A refusal instead of an input (participate: a DP policy that cannot be met) leaves with its error, sending nothing.
  const refused = feed({}, challenge(Mode.SEMI_HONEST), welcome, dpAssignment({}), {
    type: 'refuse',
    error: new ClientError('ERR_DP_ENCODING', 'no policy'),
  });
  assert.deepEqual(kinds(refused.actions).slice(-1), [`close:${CLOSE.NORMAL}:round refused`]);
  assert.equal(refused.state.error?.code, 'ERR_DP_ENCODING');
});

test('session: a malformed or out-of-range DP encoding in an assignment is refused (ERR_DP_ENCODING) before anything is sent or asked', () => {
  const cases: [string, Partial<typeof goodEncoding>, { bits?: number; dimension?: number }, RegExp][] = [
    ['unknown mechanism', { mechanism: DpMechanism.UNSPECIFIED }, {}, /unknown mechanism 0/],
    ['unknown version', { version: 2 }, {}, /unknown encoding version 2/],
    ['dimension not the round’s', { dimension: 128 }, {}, /dimension 128 is not the round's 64/],
    ['bits not the round’s', { bits: 16 }, {}, /bits 16 are not the round's 24/],
    ['dimension not a power of two', { dimension: 48 }, { dimension: 48 }, /dimension must be a power of two/],
    ['bits out of range', { bits: 1 }, { bits: 1 }, /bits must be an integer in \[2, 32\]/],
    ['clip 0', { clip: 0 }, {}, /clip must be a finite number > 0/],
    ['clip NaN', { clip: Number.NaN }, {}, /clip must be a finite number > 0/],
    ['scale negative', { scale: -1000 }, {}, /scale must be a finite number > 0/],
    ['scale infinite', { scale: Number.POSITIVE_INFINITY }, {}, /scale must be a finite number > 0/],
    ['noise multiplier 0', { noiseMultiplier: 0 }, {}, /noiseMultiplier must be a finite number > 0/],
    ['β = 1', { beta: 1 }, {}, /beta must be a number in \[0, 1\)/],
    ['β negative', { beta: -0.1 }, {}, /beta must be a number in \[0, 1\)/],
    ['a scale the ring cannot hold', { scale: 2 ** 30 }, {}, /wrap probability bound/],
  ];
  for (const [name, bad, over, message] of cases)
    for (const active of [false, true]) {
      const events: SessionEvent[] = active
        ? [challenge(Mode.ACTIVE), { type: 'proof', proof: { identityKey: new Uint8Array(32), signature: new Uint8Array(64), certificate: '' } }, welcome]
        : [challenge(Mode.SEMI_HONEST), welcome];
      const before = feed({ active }, ...events);
      const r = feed({ active }, ...events, dpAssignment(bad, over));
      const after = r.actions.slice(before.actions.length);
      assert.deepEqual(kinds(after), [`close:${CLOSE.NORMAL}:bad DP encoding`], `${name} (active ${active})`);
      assert.equal(r.state.error?.code, 'ERR_DP_ENCODING', name);
      assert.match(r.state.error!.message, /^round 4: the assignment's DP encoding is refused: /, name);
      assert.match(r.state.error!.message, message, name);
      assert.equal(r.state.round, undefined, `${name}: no round`);
    }
});
