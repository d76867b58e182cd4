/**
 * `secagg cluster` end to end, as a user runs it: its own Redis, two gateways, two shard workers,
 * a coordinator and a standby as child processes, 24 demo clients; two rounds, each in two shards,
 * whose sums it checks against the plaintext sums. Afterwards no process it started (Redis, every
 * role) is alive and none of its temporary directories is left. A Ctrl-C (SIGINT) during the run
 * cleans up the same way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
  seconds: number;
}

/** Run `secagg cluster <args>`; `onLine` sees each stdout line (and may signal the process). */
function cluster(args: string[], onLine: (line: string, child: ReturnType<typeof spawn>) => void = () => {}): Promise<Run> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [MAIN, 'cluster', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const l of lines) onLine(l, child);
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  return new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err, seconds: (performance.now() - t0) / 1000 });
    }),
  );
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Every pid and temporary directory the run printed, and that none of them is left. */
function assertNothingLeft(out: string): void {
  const pids = [...out.matchAll(/\(pid (\d+)/g)].map((m) => Number(m[1]));
  const dirs = [...out.matchAll(/(\/\S*\/secagg-(?:cluster|redis|pg)-[A-Za-z0-9]+)/g)].map((m) => m[1]!);
  assert.ok(pids.length >= 1, `the run printed its processes:\n${out}`);
  assert.ok(dirs.some((d) => d.includes('secagg-redis-')) && dirs.some((d) => d.includes('secagg-cluster-')), `the run printed its directories:\n${out}`);
  for (const pid of pids) assert.equal(alive(pid), false, `process ${pid} is gone`);
  for (const dir of new Set(dirs)) assert.equal(existsSync(dir), false, `${dir} is removed`);
}

test('secagg cluster --rounds 2: two rounds over two shards, every sum verified, exit 0, nothing left behind', { timeout: 120_000 }, async (t) => {
  const r = await cluster([
    '--rounds',
    '2',
    '--clients',
    '24',
    '--dim',
    '50',
    '--min-shard-size',
    '8',
    '--max-shard-size',
    '12',
    '--dropout',
    '0.1',
    '--standby',
    '--stage-timeout',
    '4000',
    '--admin-port',
    '0',
  ]);
  t.diagnostic(`secagg cluster --rounds 2 …: ${r.seconds.toFixed(1)} s`);
  assert.equal(r.code, 0, `exit 0\n${r.out}\n${r.err}`);
  // The roles it started: 2 gateways, 2 workers, an active coordinator and a standby.
  assert.equal(r.out.match(/^gateway gw\d: ws:\/\/127\.0\.0\.1:\d+\/ws/gm)?.length, 2, r.out);
  assert.equal(r.out.match(/^shard-worker worker\d: \/metrics: http:\/\/127\.0\.0\.1:\d+\/metrics/gm)?.length, 2, r.out);
  assert.match(r.out, /^coordinator coord0: active, dashboard and \/metrics: http:\/\/127\.0\.0\.1:\d+\//m);
  assert.match(r.out, /^coordinator coord1: standby/m);
  assert.match(r.out, /^redis: redis:\/\/127\.0\.0\.1:\d+ \(pid \d+, appendonly yes, appendfsync always/m);
  assert.match(r.out, /^dashboard: http:\/\/127\.0\.0\.1:\d+\/$/m);
  // Two verified rounds; 17–24 clients drawn (min-clients 70 %), so two shards of 8–12.
  const rounds = [...r.out.matchAll(/^round (\d+): (\d+)\/(\d+) clients in the sum, (\d+) shard\(s\) \[([^\]]*)\], (\d+\.\d+) s, sum verified ✓$/gm)];
  assert.deepEqual(
    rounds.map((m) => Number(m[1])),
    [1, 2],
    r.out,
  );
  for (const m of rounds) {
    const [included, cohort, shards] = [Number(m[2]), Number(m[3]), Number(m[4])];
    assert.ok(cohort >= 17 && cohort <= 24 && included <= cohort && included >= 8, m[0]);
    assert.equal(shards, 2, m[0]);
    const perShard = m[5]!.split(', ').map((s) => /^(\d+)\/(\d+) by worker\d/.exec(s));
    assert.ok(
      perShard.every((x) => x && Number(x[2]) >= 8 && Number(x[2]) <= 12),
      `each shard of 8–12 clients, run by a worker: ${m[5]}`,
    );
    assert.equal(
      perShard.reduce((a, x) => a + Number(x![1]), 0),
      included,
      'the shards add up to the clients in the sum',
    );
  }
  assert.match(r.out, /^secagg cluster: 2 round\(s\), 2 verified, 0 wrong or unchecked; every process stopped/m);
  assert.doesNotMatch(r.out, /WRONG|NOT CHECKED/);
  assertNothingLeft(r.out);
});

test('secagg cluster: Ctrl-C (SIGINT) once it runs stops every process and removes its directories', { timeout: 60_000 }, async (t) => {
  let sent = false;
  const r = await cluster(
    ['--clients', '12', '--dim', '20', '--min-shard-size', '4', '--gateways', '1', '--workers', '1', '--admin-port', '0'],
    (line, child) => {
      if (!sent && line.startsWith('dashboard: ')) {
        sent = true;
        child.kill('SIGINT');
      }
    },
  );
  t.diagnostic(`secagg cluster, SIGINT after start: ${r.seconds.toFixed(1)} s`);
  assert.ok(sent, `it got as far as the dashboard line:\n${r.out}\n${r.err}`);
  assert.equal(r.signal, null, 'it exits by itself, not killed by the signal');
  assert.ok(r.code === 0 || r.code === 1, `exit 0 or 1 (1: no round completed before the Ctrl-C), got ${r.code}\n${r.err}`);
  assert.match(r.out, /every process stopped, \S+ removed$/m);
  assertNothingLeft(r.out);
});

test("the README's cluster commands use only flags their commands have; secagg cluster --help lists its own", async () => {
  const { readFileSync } = await import('node:fs');
  const { spawnSync } = await import('node:child_process');
  const { join } = await import('node:path');
  const readme = readFileSync(join(fileURLToPath(new URL('../../', import.meta.url)), 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Running on several machines'), readme.indexOf('## Federated learning'));
  // Shell lines joined over their backslash continuations.
  // Shell lines joined over their backslash continuations; inline commands end at their backquote.
  const text = section.replace(/\\\n\s*/g, ' ');
  const commands = [...text.matchAll(/secagg (coordinator|shard-worker|gateway|cluster)\b([^`\n]*)/g)];
  assert.deepEqual([...new Set(commands.map((m) => m[1]))].sort(), ['cluster', 'coordinator', 'gateway', 'shard-worker']);
  for (const m of commands) {
    const help = spawnSync(process.execPath, [MAIN, m[1]!, '--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0, help.stderr);
    for (const flag of (m[2]!.match(/--[a-z-]+/g) ?? []).filter((f) => f !== '--help'))
      assert.ok(help.stdout.includes(`  ${flag}`), `secagg ${m[1]} has ${flag}`);
  }
});
