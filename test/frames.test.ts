/**
 * Control frames: every frame is capped at MAX_CONTROL_BYTES except a round assignment read by a
 * client (its active-mode directory grows with the cohort), which is capped at MAX_ASSIGNMENT_BYTES.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLOSE, MAX_CONTROL_BYTES, TransportError, decodeControl, encodeControl } from '../src/transport/frames.js';

const entry = (i: number) => ({ clientId: i, identityKey: new Uint8Array(32).fill(i & 0xff) });
const bigAssignment = encodeControl({
  case: 'assignment',
  value: { roundNumber: 7, clientId: 3, bits: 16, dimension: 10, directory: Array.from({ length: 200 }, (_, i) => entry(i + 1)) },
});
const bigHello = encodeControl({ case: 'hello', value: { version: 1, token: 'x'.repeat(MAX_CONTROL_BYTES + 10) } });

function closeCode(f: () => unknown): number {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof TransportError, String(e));
    return e.closeCode;
  }
  assert.fail('expected a TransportError');
}

test('a large round assignment is accepted only where assignments are expected', () => {
  assert.ok(bigAssignment.length > MAX_CONTROL_BYTES);
  const c = decodeControl(bigAssignment, { allowAssignment: true });
  assert.equal(c.body.case, 'assignment');
  assert.equal(c.body.case === 'assignment' && c.body.value.directory.length, 200);
  assert.equal(
    closeCode(() => decodeControl(bigAssignment)),
    CLOSE.TOO_BIG,
  );
});

test('any other control frame above MAX_CONTROL_BYTES is too big, even for a client', () => {
  assert.ok(bigHello.length > MAX_CONTROL_BYTES);
  assert.equal(
    closeCode(() => decodeControl(bigHello, { allowAssignment: true })),
    CLOSE.TOO_BIG,
  );
  assert.equal(
    closeCode(() => decodeControl(bigHello)),
    CLOSE.TOO_BIG,
  );
});

test('small frames decode either way; garbage is malformed', () => {
  const hello = encodeControl({ case: 'hello', value: { version: 1, token: 't' } });
  assert.equal(decodeControl(hello).body.case, 'hello');
  assert.equal(decodeControl(hello, { allowAssignment: true }).body.case, 'hello');
  assert.equal(
    closeCode(() => decodeControl(new Uint8Array([0, 0xff, 0xff]))),
    CLOSE.MALFORMED,
  );
  assert.equal(
    closeCode(() => decodeControl(new Uint8Array([1, 2, 3]))),
    CLOSE.MALFORMED,
  );
  assert.equal(
    closeCode(() => decodeControl(new Uint8Array([0]))),
    CLOSE.MALFORMED,
  );
});
