/** The README's usage example is executable documentation: it must run and give the sum it claims. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

test('README usage example runs and its comment states the result', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const block = /```ts\n(import \{ simulateRound \} from 'secagg';[\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block, 'README has the simulateRound example');
  const claimed = /\/\/ sum = \[(\d+), (\d+)\].*included = \[([\d, ]+)\]/.exec(block);
  assert.ok(claimed, 'the example states its result');
  // Written inside the package so that `import 'secagg'` resolves to this package (self-reference).
  const dir = mkdtempSync(join(ROOT, 'dist', 'readme-'));
  const file = join(dir, 'example.mjs');
  writeFileSync(file, `${block}\nconsole.log(JSON.stringify({ sum: [...sum], included }));\n`);
  const r = spawnSync(process.execPath, [file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { sum: number[]; included: number[] };
  assert.deepEqual(out.sum, [Number(claimed[1]), Number(claimed[2])]);
  assert.deepEqual(
    out.included,
    claimed[3]!.split(',').map((s) => Number(s.trim())),
  );
});
