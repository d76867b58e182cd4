/**
 * better-sqlite3 is loaded only when a SQLite store is opened (and pg only when a PostgreSQL store
 * is: the first check covers it too). Each check runs in a child process
 * (a fresh module cache): importing `secagg/server` and running a memory-store server must not
 * load it, and where the package is not installed at all that server still runs and opening a
 * SQLite store throws the typed MissingDependencyError with the install hint.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url)); // the checkout (dist/test/ → ../..)
const SERVER_INDEX = new URL('../src/server/index.js', import.meta.url).href;

/** Runs with `index` as the server entry; prints one JSON line. */
const childScript = (index: string) => `
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const loaded = (name = 'better-sqlite3') => Object.keys(require.cache).some((p) => p.replaceAll('\\\\', '/').includes('/node_modules/' + name + '/'));
let resolvable = true;
try { require.resolve('better-sqlite3'); } catch { resolvable = false; }
const { createServer, silentLogger, sqliteStore, MissingDependencyError } = await import(${JSON.stringify(index)});
const afterImport = loaded();
const pgAfterImport = loaded('pg');
const server = await createServer({ logger: silentLogger, unmaskWorkers: 0, tokens: ['t'] });
const health = (await fetch(server.httpUrl + 'healthz')).status;
await server.close();
const afterServer = loaded();
const pgAfterServer = loaded('pg');
let error = null;
try {
  sqliteStore(':memory:').close();
} catch (e) {
  error = { name: e.name, code: e.code, message: e.message, typed: e instanceof MissingDependencyError, dependency: e.dependency };
}
await import('pg');
console.log(JSON.stringify({ resolvable, afterImport, afterServer, health, error, afterSqlite: loaded(), pgAfterImport, pgAfterServer, pgControl: loaded('pg') }));
`;

function run(cwd: string, index: string): Record<string, unknown> {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', childScript(index)], { cwd, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

test("sqlite: importing secagg/server and running a memory-store server never loads better-sqlite3 (nor pg, the PostgreSQL store's client); opening a SQLite store does", () => {
  const out = run(ROOT, SERVER_INDEX);
  assert.equal(out['resolvable'], true, 'better-sqlite3 is installed here');
  assert.equal(out['afterImport'], false, 'not loaded by the import');
  assert.equal(out['health'], 200);
  assert.equal(out['afterServer'], false, 'not loaded by a memory-store server');
  assert.equal(out['error'], null);
  // The control: the detection sees the package once it is really loaded.
  assert.equal(out['afterSqlite'], true);
  assert.deepEqual(
    [out['pgAfterImport'], out['pgAfterServer'], out['pgControl']],
    [false, false, true],
    'pg: not by the import, not by the server; the control',
  );
});

test('sqlite: without better-sqlite3 installed the service runs on the memory store, a SQLite store is a typed MissingDependencyError, and the CLI says so in one line', () => {
  // A copy of the build whose node_modules has every package but better-sqlite3.
  const dir = mkdtempSync(join(tmpdir(), 'secagg-nosqlite-'));
  try {
    cpSync(join(ROOT, 'dist', 'src'), join(dir, 'dist', 'src'), { recursive: true });
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'secagg-fixture', type: 'module', imports: pkg['imports'] }));
    mkdirSync(join(dir, 'node_modules'));
    for (const name of readdirSync(join(ROOT, 'node_modules')))
      if (name !== 'better-sqlite3') symlinkSync(join(ROOT, 'node_modules', name), join(dir, 'node_modules', name));
    const out = run(dir, new URL(`file://${join(dir, 'dist', 'src', 'server', 'index.js')}`).href);
    assert.equal(out['resolvable'], false, 'the fixture really lacks better-sqlite3');
    assert.equal(out['health'], 200, 'the memory-store server ran');
    assert.deepEqual(out['error'], {
      name: 'MissingDependencyError',
      code: 'ERR_MISSING_DEPENDENCY',
      message: 'the SQLite store needs the optional package better-sqlite3: npm install better-sqlite3',
      typed: true,
      dependency: 'better-sqlite3',
    });
    // The CLI: the default history falls back to memory with one line; an explicit one is exit 7.
    const cli = join(dir, 'dist', 'src', 'cli', 'main.js');
    const explicit = spawnSync(process.execPath, [cli, 'serve', '--port', '0', '--tokens', 't', '--history', join(dir, 'h.db')], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(explicit.status, 7, explicit.stderr);
    assert.equal(explicit.stderr, 'secagg serve: the SQLite store needs the optional package better-sqlite3: npm install better-sqlite3\n');
    writeFileSync(join(dir, 'old.db'), '');
    const rounds = spawnSync(process.execPath, [cli, 'rounds', '--history', join(dir, 'old.db')], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    assert.equal(rounds.status, 7, rounds.stderr);
    assert.equal(rounds.stderr.trim().split('\n').length, 1, rounds.stderr);
    const serve = spawnSync(process.execPath, [cli, 'serve', '--port', '0', '--tokens', 't', '--rounds', '1', '--log-level', 'error'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 3_000,
      killSignal: 'SIGTERM',
    });
    assert.match(serve.stdout, /"url":"ws:\/\/127\.0\.0\.1:\d+\/ws"/, serve.stderr);
    assert.match(serve.stderr, /^secagg serve: round history kept in memory only \(the SQLite store needs the optional package better-sqlite3/);
    assert.equal(serve.stderr.trim().split('\n').length, 1, serve.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
