/**
 * The stage table (protocol/stages.ts) agrees with itself and with the wire schema: every message
 * kind the schema has is placed, each client kind belongs to the one server stage that names it,
 * and each server kind is accepted by the client stage that first receives it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clientKinds, serverKinds } from '../src/wire/peek.js';
import {
  CLIENT_KIND_STAGE,
  CLIENT_STAGE_ACCEPTS,
  CLIENT_STAGES,
  REPLY_STAGE,
  SERVER_KIND_STAGE,
  STAGE_CLIENT_KIND,
  STAGES,
  clientKindForStage,
  stagesOf,
} from '../src/protocol/stages.js';

test('every wire message kind has its place, and the two directions of each map agree', () => {
  assert.deepEqual(Object.keys(CLIENT_KIND_STAGE).sort(), [...clientKinds].sort(), 'every client kind of the schema is placed');
  assert.deepEqual(Object.keys(SERVER_KIND_STAGE).sort(), [...serverKinds].sort(), 'every server kind of the schema is placed');
  for (const stage of STAGES) {
    const kind = STAGE_CLIENT_KIND[stage];
    assert.equal(CLIENT_KIND_STAGE[kind], stage, `${kind} belongs to ${stage}`);
    assert.equal(clientKindForStage(stage), kind);
  }
  assert.equal(clientKindForStage('done'), undefined);
  assert.equal(clientKindForStage('constructor'), undefined, 'not an inherited property');
  for (const [kind, stage] of Object.entries(SERVER_KIND_STAGE)) {
    if (stage === 'any') continue;
    assert.ok((CLIENT_STAGE_ACCEPTS[stage] as readonly string[]).includes(kind), `${stage} accepts ${kind}`);
  }
  const accepted = new Set(CLIENT_STAGES.flatMap((s) => CLIENT_STAGE_ACCEPTS[s]));
  for (const kind of serverKinds) if (SERVER_KIND_STAGE[kind] !== 'any') assert.ok(accepted.has(kind), `some client stage accepts ${kind}`);
});

test('each mode runs its stages in order, and a client replies in the stage its message belongs to', () => {
  assert.deepEqual(stagesOf('active'), ['advertise', 'view', 'share', 'masked', 'consistency', 'unmask']);
  assert.deepEqual(stagesOf('semi-honest'), ['advertise', 'share', 'masked', 'unmask']);
  const replies = CLIENT_STAGES.map((s) => REPLY_STAGE[s]).filter((s) => s !== undefined);
  assert.deepEqual(replies, [...STAGES], 'the client stages answer the server stages in round order');
});
