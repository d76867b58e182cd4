/**
 * `secagg privacy`: its --json output is the library's result for the same parameters, and for one
 * case an independently computed value (test/dp_reference.py, Python with exact decimal sums);
 * bad arguments are one line and exit 2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DEFAULT_RDP_ORDERS, accountRounds, discreteMechanism } from '../src/dp/index.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const REFERENCE = fileURLToPath(new URL('../../test/dp_reference.py', import.meta.url));
const NO_PYTHON = spawnSync('python3', ['--version']).status === 0 ? false : 'python3 is not installed: the independent value cannot be computed';

function run(...args: string[]) {
  return spawnSync(process.execPath, [CLI, 'privacy', ...args], { encoding: 'utf8', timeout: 60_000 });
}

function json(...args: string[]): { epsilon: number; order: number } {
  const r = run(...args, '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\{"epsilon": [0-9.e+-]+, "order": [0-9.]+\}\n$/);
  return JSON.parse(r.stdout) as { epsilon: number; order: number };
}

test('--json for the Gaussian is the library’s ε and order', () => {
  const out = json('--mechanism', 'gaussian', '--noise-multiplier', '1.1', '--sampling-rate', '0.01', '--rounds', '1000', '--delta', '1e-5');
  const lib = accountRounds({ mechanism: { kind: 'gaussian', noiseMultiplier: 1.1 }, samplingRate: 0.01, rounds: 1000, delta: 1e-5 });
  assert.deepEqual(out, { epsilon: lib.epsilon, order: lib.order });
});

test('--json for skellam and dgauss is the library’s, with the scale the bits imply', () => {
  for (const kind of ['skellam', 'dgauss'] as const) {
    const out = json(
      ...['--mechanism', kind, '--noise-multiplier', '0.8', '--sampling-rate', '0.05', '--rounds', '200', '--delta', '1e-6'],
      ...['--dimension', '4096', '--l2-clip', '0.5', '--bits', '14', '--clients', '50'],
    );
    const { mechanism } = discreteMechanism({ kind, noiseMultiplier: 0.8, l2Clip: 0.5, dimension: 4096, bits: 14, clients: 50 });
    const lib = accountRounds({ mechanism, samplingRate: 0.05, rounds: 200, delta: 1e-6 });
    assert.deepEqual(out, { epsilon: lib.epsilon, order: lib.order }, kind);
    assert.ok(Number.isInteger(out.order), 'the discrete bounds are used at integer orders only');
  }
});

test('--json matches an independent computation: Abadi et al.’s setting (q = 0.01, σ = 4, 10000 rounds, δ = 1e-5)', { skip: NO_PYTHON }, () => {
  const out = json('--mechanism', 'gaussian', '--noise-multiplier', '4', '--sampling-rate', '0.01', '--rounds', '10000', '--delta', '1e-5');
  // The optimum is at an integer order, where Python's exact decimal binomial sums apply.
  assert.ok(Number.isInteger(out.order), `order ${out.order}`);
  const orders = DEFAULT_RDP_ORDERS.filter((a) => Number.isInteger(a));
  const requests = orders.map((alpha) => JSON.stringify({ kind: 'sgm', q: 0.01, z: 4, alpha }));
  const sgm = spawnSync('python3', [REFERENCE], { input: requests.join('\n') + '\n', encoding: 'utf8' });
  assert.equal(sgm.status, 0, sgm.stderr);
  const rdp = sgm.stdout
    .trim()
    .split('\n')
    .map((l) => 10000 * (JSON.parse(l) as number));
  const conv = spawnSync('python3', [REFERENCE], { input: JSON.stringify({ kind: 'eps', orders, rdp, delta: 1e-5 }) + '\n', encoding: 'utf8' });
  const py = JSON.parse(conv.stdout) as { epsilon: number; order: number };
  assert.ok(Math.abs(out.epsilon - py.epsilon) < 1e-9 * py.epsilon, `${out.epsilon} vs Python ${py.epsilon}`);
  assert.equal(out.order, py.order);
  assert.ok(out.epsilon < 1.26, 'below the moments accountant’s 1.26 (Abadi et al. 2016, Sec. 3.1)');
});

test('the readable output names ε, δ, the order and, for discrete noise, the scale and sensitivities', () => {
  const g = run('--mechanism', 'gaussian', '--noise-multiplier', '1.1', '--sampling-rate', '0.01', '--rounds', '1000', '--delta', '1e-5');
  assert.equal(g.status, 0, g.stderr);
  assert.match(g.stdout, /^ε = [0-9.]+ at δ = 0\.00001 \(RDP order [0-9.]+\) after 1000 rounds of the Gaussian mechanism/);
  const d = run(
    ...['--mechanism', 'dgauss', '--noise-multiplier', '1', '--sampling-rate', '1', '--rounds', '1', '--delta', '1e-5'],
    ...['--dimension', '1000', '--l2-clip', '1', '--bits', '16', '--clients', '10'],
  );
  assert.equal(d.status, 0, d.stderr);
  assert.match(d.stdout, /distributed discrete Gaussian[^\n]*\n {2}scale s = [0-9.]+: l2 sensitivity [0-9.]+, l1 [0-9.e+]+, per-client σ [0-9.]+, τ = /);
});

test('help: secagg privacy --help and secagg help privacy print the usage; secagg --help lists the command', () => {
  for (const args of [
    ['privacy', '--help'],
    ['help', 'privacy'],
  ]) {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^Usage: secagg privacy --mechanism gaussian\|skellam\|dgauss --noise-multiplier Z --sampling-rate Q/);
    assert.match(r.stdout, /--bits b/);
  }
  assert.match(spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' }).stdout, /\n {2}privacy {4}/);
});

test('bad arguments: one line naming the flag, exit 2', () => {
  const base = ['--mechanism', 'gaussian', '--noise-multiplier', '1', '--sampling-rate', '0.1', '--rounds', '10', '--delta', '1e-5'];
  const discrete = ['--dimension', '100', '--l2-clip', '1', '--bits', '16', '--clients', '10'];
  const cases: [string[], RegExp][] = [
    [base.slice(0, 8), /give --delta/],
    [[...base.slice(0, 8), '--delta', '1'], /--delta must be a number in \(0, 1\), got '1'/],
    [[...base.slice(0, 4), '--sampling-rate', '1.5', ...base.slice(6)], /--sampling-rate must be a number in \[0, 1\]/],
    [[...base.slice(0, 2), '--noise-multiplier', 'abc', ...base.slice(4)], /--noise-multiplier must be a number > 0, got 'abc'/],
    [[...base.slice(0, 6), '--rounds', '0', ...base.slice(8)], /--rounds must be an integer in \[1, /],
    [['--mechanism', 'laplace', ...base.slice(2)], /--mechanism must be gaussian, skellam or dgauss, got 'laplace'/],
    [[...base, '--bits', '16'], /--bits applies to skellam and dgauss only/],
    [
      ['--mechanism', 'skellam', ...base.slice(2), '--dimension', '100', '--l2-clip', '1', '--clients', '10'],
      /needs --dimension, --l2-clip, --bits and --clients \(missing --bits\)/,
    ],
    [['--mechanism', 'skellam', ...base.slice(2), ...discrete.slice(0, 4), '--bits', '33', ...discrete.slice(6)], /--bits must be an integer in \[1, 32\]/],
    [['--mechanism', 'skellam', ...base.slice(2), ...discrete.slice(0, 4), '--bits', '3', ...discrete.slice(6)], /--bits 3 is too few for 10 clients/],
    [
      ['--mechanism', 'dgauss', '--noise-multiplier', '0.001', ...base.slice(4), ...discrete.slice(0, 4), '--bits', '6', ...discrete.slice(6)],
      /dgauss: each client's noise would have σ = s·Z·c\/√n = [0-9.e-]+ < 1\/2 integer units/,
    ],
    [[...base, '--frobnicate'], /Unknown option '--frobnicate'/],
  ];
  for (const [args, message] of cases) {
    const r = run(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stdout, '');
    const [first] = r.stderr.split('\n');
    assert.match(first!, /^secagg privacy: /);
    assert.match(first!, message, args.join(' '));
  }
});
