import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

test('secagg demo falls back to a free port when 8080 is taken, and exits after its rounds', async () => {
  // Hold port 8080 (if something else already holds it, the situation is the same).
  const blocker = createHttpServer();
  await new Promise<void>((ok) => blocker.once('error', () => ok()).listen(8080, '127.0.0.1', ok));
  try {
    // A failed first start must not leave anything behind that keeps the process alive: a hang
    // here ends in the timeout's signal instead of an exit code.
    const r = spawnSync(process.execPath, [CLI, 'demo', '--rounds', '1', '--clients', '6'], { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' });
    assert.equal(r.signal, null, `the demo did not exit by itself:\n${r.stdout}\n${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /port 8080 is in use/);
    assert.match(r.stdout, /1 round\(s\), 0 wrong sum\(s\)/);
  } finally {
    blocker.close();
  }
});
