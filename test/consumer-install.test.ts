/**
 * A fresh consumer project installs the packed tarball on a machine without a C compiler: PATH is
 * a directory of links to every program here except the compilers and make, so better-sqlite3's
 * install script (prebuilt download, else node-gyp) fails and npm drops the optional dependency.
 * The library must not care: `secagg/client` and `secagg/server` run a whole round in the consumer
 * project, `secagg serve` starts with its in-memory history and one line saying so, and asking for
 * SQLite anyway is one typed error naming the package.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const HIDDEN = /^(cc|c\+\+|gcc|g\+\+|cpp|make|gmake|clang.*|.*-gcc(-\d+)?|.*-g\+\+(-\d+)?|gcc-\d+|g\+\+-\d+|ld|ld\..*|as|tcc)$/;

let dir = '';
let consumer = '';
let env: NodeJS.ProcessEnv = {};
let install: { status: number | null; output: string } = { status: null, output: '' };

/** A PATH directory with every program of the real PATH except compilers, linkers and make. */
function pathWithoutCompilers(into: string): string {
  mkdirSync(into);
  for (const d of (process.env['PATH'] ?? '').split(delimiter)) {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      continue;
    }
    for (const n of names) {
      if (HIDDEN.test(n) || existsSync(join(into, n))) continue;
      try {
        symlinkSync(join(d, n), join(into, n));
      } catch {
        // a name that cannot be linked (already there from an earlier PATH entry): skip
      }
    }
  }
  // node itself, wherever this test's node lives.
  if (!existsSync(join(into, 'node'))) symlinkSync(process.execPath, join(into, 'node'));
  return into;
}

describe('a consumer project installs the tarball without a compiler', { timeout: 240_000 }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'secagg-consumer-'));
    const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    assert.equal(pack.status, 0, pack.stderr);
    const [{ filename }] = JSON.parse(pack.stdout) as [{ filename: string }];
    const bin = pathWithoutCompilers(join(dir, 'bin'));
    env = { HOME: process.env['HOME'] ?? dir, PATH: bin, npm_config_update_notifier: 'false' };
    consumer = join(dir, 'consumer');
    mkdirSync(consumer);
    writeFileSync(
      join(consumer, 'package.json'),
      JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: { secagg: `file:../${basename(filename)}` } }),
    );
    // --prefer-offline: the packages come from npm's cache when `npm ci` put them there, else the registry.
    const r = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel', 'verbose'], {
      cwd: consumer,
      env,
      encoding: 'utf8',
      timeout: 200_000,
    });
    install = { status: r.status, output: `${r.stdout}\n${r.stderr}` };
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('no compiler or make on the PATH the install sees; npm install succeeds and drops better-sqlite3 (its build failed)', () => {
    const probe = spawnSync('sh', ['-c', 'command -v cc || command -v gcc || command -v c++ || command -v make || echo none'], { env, encoding: 'utf8' });
    assert.equal(probe.stdout.trim(), 'none', 'a compiler is visible to the install');
    assert.equal(install.status, 0, install.output.slice(-4000));
    assert.ok(existsSync(join(consumer, 'node_modules', 'secagg', 'dist', 'src', 'client', 'index.js')));
    assert.ok(!existsSync(join(consumer, 'node_modules', 'better-sqlite3')), 'better-sqlite3 could not have been built here');
    assert.match(install.output, /better-sqlite3@[\d.]+ install/, 'npm tried its install script');
    assert.match(install.output, /failed optional dependency .*better-sqlite3/);
  });

  test('secagg/client and secagg/server run a round in the consumer project; SQLite is one typed error naming the package', () => {
    writeFileSync(
      join(consumer, 'round.mjs'),
      `import { createServer, signToken, silentLogger, sqliteStore, MissingDependencyError } from 'secagg/server';
import { participate } from 'secagg/client';
import WebSocket from 'ws';
const secret = 'consumer-secret-0123456789';
const m = 16, bits = 16;
const server = await createServer({ secret, dimension: m, bits, minClients: 3, startDelayMs: 50, unmaskWorkers: 0, logger: silentLogger });
const published = new Promise((r) => server.onResult(r));
const inputs = [0, 1, 2].map((c) => Uint32Array.from({ length: m }, (_, i) => (c * 1000 + i * 7) % (1 << bits)));
await Promise.all(inputs.map((input, c) =>
  participate({ url: server.url, token: signToken({ clientId: 'c' + c, expiresAt: Date.now() + 60000 }, secret), input, WebSocket })));
const result = await published;
let sqlite;
try { sqliteStore('x.db'); sqlite = 'opened'; } catch (e) { sqlite = { missing: e instanceof MissingDependencyError, message: e.message }; }
await server.close();
console.log(JSON.stringify({ included: result.included.length, sum: Array.from(result.sum), inputs: inputs.map((v) => Array.from(v)), sqlite }));
`,
    );
    const r = spawnSync('node', ['round.mjs'], { cwd: consumer, env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { included: number; sum: number[]; inputs: number[][]; sqlite: { missing: boolean; message: string } };
    assert.equal(out.included, 3);
    const expected = out.inputs[0]!.map((_, i) => out.inputs.reduce((s, v) => s + v[i]!, 0) % (1 << 16));
    assert.deepEqual(out.sum, expected, 'the published sum is the plain sum of the three inputs');
    assert.equal(out.sqlite.missing, true);
    assert.match(out.sqlite.message, /better-sqlite3/);
    assert.doesNotMatch(out.sqlite.message, /\n/, 'one line');
  });

  test('the installed CLI: --version, and serve falls back to the in-memory history with one line', async () => {
    const cli = join(consumer, 'node_modules', '.bin', 'secagg');
    const version = spawnSync(cli, ['--version'], { env, encoding: 'utf8' });
    assert.equal(version.status, 0, version.stderr);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.match(version.stdout, new RegExp(pkg.version.replace(/\./g, '\\.')));
    const proc = spawn(cli, ['serve', '--port', '0', '--workers', '0'], { cwd: consumer, env: { ...env, SECAGG_SECRET: 'consumer-secret-0123456789' } });
    const stderr: string[] = [];
    createInterface({ input: proc.stderr! }).on('line', (l) => stderr.push(l));
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      const line = await new Promise<string>((ok, fail) => {
        createInterface({ input: proc.stdout! }).once('line', ok);
        proc.once('exit', (code) => fail(new Error(`serve exited with ${code}: ${stderr.join('\n')}`)));
      });
      const { url } = JSON.parse(line) as { url: string };
      assert.match(url, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
      const notes = stderr.filter((l) => !l.startsWith('{'));
      assert.equal(notes.length, 1, stderr.join('\n'));
      assert.match(notes[0]!, /^secagg serve: round history kept in memory only \(.*better-sqlite3.*\)$/);
      const health = await fetch(url.replace(/^ws/, 'http').replace(/ws$/, 'healthz'));
      assert.equal(health.status, 200);
    } finally {
      proc.kill('SIGTERM');
      await exited;
    }
  });
});
