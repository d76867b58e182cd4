/** A round's DP parameters: on the wire and back, and checked by validateConfig (clients add the noise: test/dp-round.test.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { RoundParametersSchema } from '../src/wire/gen/secagg/v1/secagg_pb.js';
import { configFromParameters, roundParameters } from '../src/protocol/roundParams.js';
import { dpMinHonest, validateConfig, type DpRoundConfig, type RoundConfig } from '../src/protocol/config.js';
import { clientId, roundId } from '../src/ids.js';
import { isSecAggError } from '../src/errors.js';

const base: RoundConfig = {
  roundId: roundId(new Uint8Array(16).fill(7)),
  bits: 20,
  dimension: 8,
  threshold: 4,
  degree: 'complete',
  mode: 'semi-honest',
  cohort: [1, 2, 3, 4, 5, 6].map(clientId),
  corruption: 1,
};

const wire = (c: RoundConfig) =>
  configFromParameters(fromBinary(RoundParametersSchema, toBinary(RoundParametersSchema, create(RoundParametersSchema, roundParameters(c)))));

test('dp parameters survive the wire; a config without them stays without (and encodes as before)', () => {
  for (const dp of [
    { mechanism: 'skellam', targetVariance: 12_345.5, removable: true },
    { mechanism: 'dgauss', targetVariance: 4, removable: false },
  ] as const) {
    const back = wire({ ...base, dp });
    assert.deepEqual(back.dp, dp);
  }
  const plain = wire(base);
  assert.equal('dp' in plain, false);
  const bytes = toBinary(RoundParametersSchema, create(RoundParametersSchema, roundParameters(base)));
  const withDp = toBinary(
    RoundParametersSchema,
    create(RoundParametersSchema, roundParameters({ ...base, dp: { mechanism: 'skellam', targetVariance: 1, removable: false } })),
  );
  assert.ok(withDp.length > bytes.length, 'the field is on the wire only when set');
});

test('dpMinHonest is t − C; validateConfig refuses bad DP parameters', () => {
  assert.equal(dpMinHonest(base), 3);
  assert.equal(dpMinHonest({ ...base, colluders: 2 }), 2);
  const bad: Array<[DpRoundConfig, RegExp, Partial<RoundConfig>?]> = [
    [{ mechanism: 'laplace' as 'skellam', targetVariance: 1, removable: false }, /unknown DP mechanism/],
    [{ mechanism: 'skellam', targetVariance: 0, removable: false }, /target variance/],
    [{ mechanism: 'skellam', targetVariance: Number.NaN, removable: false }, /target variance/],
    [{ mechanism: 'skellam', targetVariance: 2 ** 53, removable: false }, /target variance/],
    [{ mechanism: 'dgauss', targetVariance: 1, removable: true }, /Skellam/],
    [{ mechanism: 'skellam', targetVariance: 1, removable: false }, /must exceed the colluders/, { threshold: 4, colluders: 4 }],
  ];
  for (const [dp, message, extra] of bad)
    assert.throws(
      () => validateConfig({ ...base, ...extra, dp }),
      (e: unknown) => isSecAggError(e) && e.code === 'ERR_INVALID_PARAMETERS' && message.test(e.message),
      JSON.stringify(dp),
    );
  validateConfig({ ...base, dp: { mechanism: 'skellam', targetVariance: 1, removable: true } });
});
