/**
 * What `npm pack` would publish: the licence, the compiled library with its declarations, the
 * browser bundle with its declarations (and nothing else of dist/browser), the federated-learning
 * example (so `npx secagg example fl` runs from an installed package), no source maps (their
 * sources are not shipped, so they could not resolve) and no declarations for the CLI or the
 * example (programs, not APIs). better-sqlite3 is optional, so the package installs where it cannot be built.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildBrowserBundle } from './pack.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url)); // dist/test/ → the checkout

test('package: the tarball has LICENSE, the library, the browser bundle and the FL example, no .map files and no CLI or example .d.ts', () => {
  buildBrowserBundle(); // `npm run build` makes it; `npm test` runs only tsc
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const [pack] = JSON.parse(r.stdout) as [{ files: { path: string }[] }];
  const files = pack.files.map((f) => f.path);
  assert.ok(files.includes('LICENSE'));
  assert.ok(files.includes('dist/src/index.js') && files.includes('dist/src/index.d.ts'));
  assert.ok(files.includes('dist/src/cli/main.js'));
  assert.deepEqual(files.filter((f) => f.startsWith('dist/browser/')).sort(), ['dist/browser/secagg-client.min.d.ts', 'dist/browser/secagg-client.min.js']);
  assert.deepEqual(
    files.filter((f) => f.endsWith('.map')),
    [],
  );
  assert.deepEqual(
    files.filter((f) => /^dist\/src\/(cli|examples)\/.*\.d\.ts$/.test(f)),
    [],
  );
  for (const f of ['main', 'run', 'data', 'spam', 'network', 'plot']) assert.ok(files.includes(`dist/src/examples/fl/${f}.js`), f);
  assert.deepEqual(
    files.filter((f) => f.startsWith('dist/test/') || f.startsWith('dist/bench/') || f.startsWith('src/')),
    [],
  );
});

test('package: better-sqlite3 is an optional dependency; the licence is the Apache License 2.0', () => {
  const pkg = JSON.parse(readFileSync(new URL('package.json', `file://${ROOT}/`), 'utf8')) as {
    license: string;
    dependencies: Record<string, string>;
    optionalDependencies: Record<string, string>;
    scripts: Record<string, string>;
  };
  assert.equal(pkg.dependencies['better-sqlite3'], undefined);
  assert.ok(pkg.optionalDependencies['better-sqlite3']);
  // A consumer's install from the registry runs none of this package's scripts (`prepare` builds a
  // checkout and runs only for git or directory installs).
  for (const s of ['preinstall', 'install', 'postinstall']) assert.equal(pkg.scripts[s], undefined, s);
  assert.equal(pkg.license, 'Apache-2.0');
  const license = readFileSync(new URL('LICENSE', `file://${ROOT}/`), 'utf8');
  assert.match(license, /Apache License\s+Version 2\.0, January 2004/);
  assert.match(license, /END OF TERMS AND CONDITIONS/);
});

test('package: secagg/browser, unpkg and jsdelivr name the bundle; `npm run build` builds it', () => {
  const pkg = JSON.parse(readFileSync(new URL('package.json', `file://${ROOT}/`), 'utf8')) as {
    exports: Record<string, Record<string, string>>;
    unpkg: string;
    jsdelivr: string;
    files: string[];
    scripts: Record<string, string>;
  };
  assert.deepEqual(pkg.exports['./browser'], { types: './dist/browser/secagg-client.min.d.ts', default: './dist/browser/secagg-client.min.js' });
  assert.equal(pkg.unpkg, './dist/browser/secagg-client.min.js');
  assert.equal(pkg.jsdelivr, './dist/browser/secagg-client.min.js');
  assert.match(pkg.scripts['build']!, /node scripts\/build-browser\.mjs/);
  assert.equal(pkg.scripts['prepare'], 'npm run build');
});
