/**
 * `secagg serve` as a child process with a SQLite history: a server killed mid-round and restarted
 * records that round as aborted (never publishes its sum); SIGTERM aborts the running round after
 * the grace period and records why; `secagg rounds` shows both.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { participate } from '../src/client/index.js';
import { SECRET, token, vector, WS } from './serviceHelpers.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const MAIN = resolve(HERE, '..', 'src', 'cli', 'main.js');

interface Child {
  proc: ChildProcess;
  url: string;
  http: string;
  exited: Promise<number | null>;
  logs: string[];
}

async function serve(history: string, extra: string[] = []): Promise<Child> {
  const proc = spawn(
    process.execPath,
    [
      MAIN,
      'serve',
      '--port',
      '0',
      '--secret',
      SECRET,
      '--history',
      history,
      '--min-clients',
      '4',
      '--start-delay',
      '50',
      '--dim',
      '64',
      '--bits',
      '16',
      '--stage-timeout',
      '60000',
      '--workers',
      '0',
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const logs: string[] = [];
  createInterface({ input: proc.stderr! }).on('line', (l) => logs.push(l));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const first = await new Promise<string>((ok, fail) => {
    createInterface({ input: proc.stdout! }).once('line', ok);
    proc.once('exit', (code) => fail(new Error(`serve exited with ${code}: ${logs.join('\n')}`)));
  });
  const { url, dashboard } = JSON.parse(first) as { url: string; dashboard: string };
  return { proc, url, http: dashboard, exited, logs };
}

async function waitForStage(http: string, stage: string): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const st = (await (await fetch(http + 'api/status')).json()) as { round: { round: number; stage: string } | null };
    if (st.round?.stage === stage) return st.round.round;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`the round never reached ${stage}`);
}

/** 4 clients, one of which never sends its masked input: the round waits in 'masked' (60 s deadline). */
function stuckRound(url: string, prefix: string) {
  return Array.from({ length: 4 }, (_, i) =>
    participate({
      url,
      token: token(`${prefix}${i}`),
      input: vector(i + 1, 64, 16),
      WebSocket: WS,
      reconnect: { maxAttempts: 0 },
      unsafeBeforeSend: (stage) => (i === 0 && stage === 'masked' ? 'silent' : 'send'),
    }),
  );
}

const cli = async (args: string[]) => (await promisify(execFile)(process.execPath, [MAIN, ...args])).stdout;

let dir: string | undefined;
const children: Child[] = [];

describe('service: restarts and shutdown (secagg serve, SQLite history)', { timeout: 40_000 }, () => {
  after(async () => {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('killed mid-round, restarted: the round is recorded as aborted and no sum is ever published', async () => {
    dir = await mkdtemp(join(tmpdir(), 'secagg-history-'));
    const history = join(dir, 'history.db');
    const a = await serve(history);
    children.push(a);
    const clients = stuckRound(a.url, 'k');
    const round = await waitForStage(a.http, 'masked');
    a.proc.kill('SIGKILL');
    await a.exited;
    const reports = await Promise.all(clients);
    for (const [r] of reports) assert.equal(r?.code, 'ERR_DISCONNECTED');

    const b = await serve(history);
    children.push(b);
    const rec = (await (await fetch(`${b.http}api/rounds/${round}`)).json()) as Record<string, unknown>;
    assert.equal(rec['outcome'], 'aborted');
    assert.equal(rec['code'], 'ERR_INTERRUPTED');
    assert.equal(rec['sum'], null);
    assert.ok(
      b.logs.some((l) => l.includes('interrupted by a restart')),
      'the restart is logged',
    );
    // The metrics' round totals go on from the history; the CLI's build info names the package's version.
    const metrics = await (await fetch(`${b.http}metrics`)).text();
    assert.match(metrics, /^secagg_rounds_total\{outcome="aborted"\} 1$/m);
    assert.match(metrics, /^secagg_rounds_total\{outcome="completed"\} 0$/m);
    assert.match(metrics, /^secagg_last_completed_round_timestamp_seconds 0$/m);
    assert.match(metrics, /^secagg_build_info\{version="\d+\.\d+\.\d+[^"]*",node="v[\d.]+"\} 1$/m);

    // SIGTERM: the running round gets --grace (default here 10 s; this server has 60 s stages) …
    b.proc.kill('SIGTERM');
    assert.equal(await b.exited, 0);
  });

  test('SIGTERM aborts the running round after the grace period and records why; secagg rounds shows it', async () => {
    const history = join(dir!, 'history.db');
    const c = await serve(history, ['--grace', '200']);
    children.push(c);
    const clients = stuckRound(c.url, 't');
    const round = await waitForStage(c.http, 'masked');
    c.proc.kill('SIGTERM');
    assert.equal(await c.exited, 0);
    const reports = await Promise.all(clients);
    for (const [r] of reports) {
      assert.equal(r?.completed, false);
      assert.equal(r?.code, 'ERR_SHUTDOWN', 'clients are told why the round ended');
    }
    const shown = JSON.parse(await cli(['rounds', '--history', history, '--id', String(round), '--json'])) as Record<string, unknown>;
    assert.equal(shown['outcome'], 'aborted');
    assert.equal(shown['code'], 'ERR_SHUTDOWN');
    assert.match(String(shown['reason']), /SIGTERM/);
    assert.equal(shown['sum'], null);
    assert.equal((shown['stages'] as Record<string, { clients: number }>)['advertise']?.clients, 4);
    const list = await cli(['rounds', '--history', history]);
    assert.match(list, /ERR|aborted/);
    assert.equal(list.trim().split('\n').length, 1 + round, 'a header and one line per round');
  });
});
