import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SecAggError } from '../src/errors.js';
test('SecAggError carries a code', () => {
  const e = new SecAggError('ERR_DECODE', 'x');
  assert.equal(e.code, 'ERR_DECODE');
});
