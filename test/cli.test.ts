import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function run(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
}

test('secagg simulate verifies a round with dropouts and prints the stats table', () => {
  const r = run('simulate', '--clients', '12', '--dim', '500', '--bits', '16', '--dropout', '0.25', '--quiet');
  assert.equal(r.status, 0, r.stderr);
  for (const s of ['advertise', 'share', 'masked', 'unmask', 'expansion factor', 'equals the plaintext sum'])
    assert.ok(r.stdout.includes(s), `output mentions ${s}:\n${r.stdout}`);
});

test('secagg simulate --json in active mode on a SecAgg+ graph', () => {
  const r = run('simulate', '--clients', '14', '--dim', '64', '--degree', '6', '--mode', 'active', '--dropout', '0.1', '--json');
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { ok: boolean; included: number; stats: { degree: number; mode: string } };
  assert.equal(out.ok, true);
  assert.equal(out.stats.degree, 6);
  assert.equal(out.stats.mode, 'active');
  assert.ok(out.included >= 12);
});

test('bad arguments exit 2 with a message; too many dropouts abort with a typed code', () => {
  const bad = run('simulate', '--clients', 'many');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--clients must be an integer/);
  const unknown = run('frobnicate');
  assert.equal(unknown.status, 2);
  const aborted = run('simulate', '--clients', '6', '--dim', '8', '--dropout', '0.8', '--json');
  assert.equal(aborted.status, 2);
  assert.equal(JSON.parse(aborted.stdout).code, 'ERR_BELOW_THRESHOLD');
});

test('secagg example fl runs the federated-learning example and passes its flags through', () => {
  const out = `${process.env.TMPDIR ?? '/tmp'}/secagg-cli-fl-${process.pid}`;
  const r = run('example', 'fl', '--rounds', '1', '--clients', '4', '--out', out);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /4 clients, 1 rounds/);
  assert.match(r.stdout, /final: secure [\d.]+% .* plain [\d.]+%/);
  const unknown = run('example', 'nope');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /available: fl/);
});
