/** Injected randomness: the same seed replays a whole round byte for byte; another seed does not. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { simulateRound } from '../src/sim/simulate.js';
import { unsafeSeededRng } from '../src/rng.js';
import { randomInputs } from './helpers.js';

async function transcript(seed: number, mode: 'semi-honest' | 'active'): Promise<{ digest: string; sum: Uint32Array }> {
  const h = createHash('sha256');
  const inputs = randomInputs(8, 40, 20, 3);
  const r = await simulateRound({
    inputs,
    bits: 20,
    degree: 4,
    mode,
    dropouts: { masked: [2] },
    rng: unsafeSeededRng(seed),
    interceptServer: (to, bytes) => {
      h.update(Uint8Array.of(to)).update(bytes);
      return bytes;
    },
  });
  return { digest: h.digest('hex'), sum: r.sum };
}

for (const mode of ['semi-honest', 'active'] as const) {
  test(`${mode}: a seeded round replays byte for byte`, async () => {
    const a = await transcript(42, mode);
    const b = await transcript(42, mode);
    const c = await transcript(43, mode);
    assert.equal(a.digest, b.digest);
    assert.notEqual(a.digest, c.digest);
    assert.deepEqual(a.sum, c.sum, 'the sum does not depend on the randomness');
  });
}
