import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

test('secagg --version prints the package version; --help lists the commands without a command’s options', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = run(flag);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), pkg.version);
  }
  const help = run('--help');
  assert.equal(help.status, 0);
  for (const c of ['simulate', 'serve', 'client', 'rounds', 'demo', '--version']) assert.match(help.stdout, new RegExp(`\\s${c}\\s`));
  assert.doesNotMatch(help.stdout, /--clients|--dropout/, 'no simulate options in the overview');
  for (const c of ['simulate', 'serve', 'client', 'rounds', 'demo']) {
    const r = run(c, '--help');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Usage: secagg ${c} `));
    assert.equal(run('help', c).stdout, r.stdout);
  }
});

test('a reader that closes the pipe early (secagg … | head -1) ends the CLI quietly with exit 0, no EPIPE stack', async () => {
  for (const args of [['serve', '--help'], ['--help']]) {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(stderr, '');
    assert.equal(code, 0);
  }
});

test('environment failures are one line with their own exit code: a busy port (5), a missing file (6)', async () => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  try {
    const port = String((busy.address() as AddressInfo).port);
    // spawnSync would block the event loop that holds the port open: it is still bound, which is all that matters.
    const r = run('serve', '--port', port, '--tokens', 'a', '--history', '');
    assert.equal(r.status, 5, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^secagg serve: 127\.0\.0\.1:\d+ is already in use \(EADDRINUSE\)/);
  } finally {
    busy.close();
  }
  const missing = join(tmpdir(), `secagg-missing-${process.pid}`);
  for (const args of [
    ['serve', '--tokens', `@${missing}`, '--history', ''],
    ['rounds', '--history', missing],
  ]) {
    const r = run(...args);
    assert.equal(r.status, 6, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /no such file \(ENOENT\)/);
  }
});

test('secagg client fails fast, without retrying, on a bad URL, a wrong path (404) and a TLS failure', async () => {
  const http = createHttpServer((_req, res) => res.writeHead(404).end());
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  try {
    const port = (http.address() as AddressInfo).port;
    for (const [url, why] of [
      ['not a url', /bad url/],
      [`ws://127.0.0.1:${port}/nope`, /Unexpected server response: 404/],
      [`wss://127.0.0.1:${port}/ws`, /TLS failure/],
    ] as const) {
      const child = spawn(process.execPath, [CLI, 'client', '--url', url, '--token', 't', '--random', '4'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const [code] = (await once(child, 'exit')) as [number | null];
      assert.equal(code, 3, stderr);
      assert.match(stderr, why);
      assert.doesNotMatch(stderr, /reconnecting/);
    }
  } finally {
    http.close();
  }
});
