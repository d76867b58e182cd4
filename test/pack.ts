/**
 * The published package, as tests need it: the browser bundle built (`npm test` runs only tsc, not
 * `npm run build`), and the tarball `npm pack` makes, extracted where a consumer's node_modules
 * would hold it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, rename } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test). */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Run scripts/build-browser.mjs (the step of `npm run build` after tsc); returns what it printed. */
export function buildBrowserBundle(): string {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-browser.mjs')], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `build-browser.mjs failed: ${r.stderr}`);
  return r.stdout;
}

/**
 * `npm pack` the checkout into `dir` (the bundle must be built: scripts are not run) and extract the
 * tarball to `<dir>/node_modules/<name>`; returns that directory and the package's name and version.
 */
export async function packAndExtract(dir: string): Promise<{ packageDir: string; name: string; version: string }> {
  await mkdir(dir, { recursive: true });
  const r = spawnSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const [pack] = JSON.parse(r.stdout) as [{ filename: string; name: string; version: string }];
  const modules = join(dir, 'node_modules');
  await mkdir(modules, { recursive: true });
  const tar = spawnSync('tar', ['-xzf', join(dir, pack.filename), '-C', modules], { encoding: 'utf8' });
  assert.equal(tar.status, 0, tar.stderr);
  const packageDir = join(modules, pack.name);
  await rename(join(modules, 'package'), packageDir);
  return { packageDir, name: pack.name, version: pack.version };
}
