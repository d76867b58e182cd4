/**
 * The admin surface (dashboard, /metrics, /api/*) apart from client traffic, its tokens, and the
 * WebSocket's Origin allow-list — each played against a running service: a listener that must not
 * answer, a request without (or with the wrong) token, a page from another origin.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import type { Logger } from '../src/server/index.js';
import { PROTOCOL_VERSION } from '../src/wire/codec.js';
import { decodeControl, encodeControl, isControlFrame } from '../src/transport/frames.js';
import { parseAdmin } from '../src/cli/serve.js';
import { UsageError } from '../src/cli/args.js';
import { assertSum, nextResult, nodeClient, SECRET, startServer, token, vector } from './serviceHelpers.js';

const M = 64;
const BITS = 16;
const MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');
const ADMIN_PATHS = ['', 'index.html', 'metrics', 'api/status', 'api/rounds', 'api/rounds/1'];

const get = (url: string, bearer?: string) => fetch(url, bearer === undefined ? {} : { headers: { authorization: `Bearer ${bearer}` } });

function capturingLogger(): Logger & { lines: { level: string; msg: string; fields: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  return { lines, log: (level, msg, fields = {}) => void lines.push({ level, msg, fields }) };
}

async function oneRound(server: Awaited<ReturnType<typeof startServer>>, prefix: string): Promise<void> {
  const published = nextResult(server);
  const clients = Array.from({ length: 3 }, (_, i) => nodeClient(server, `${prefix}${i}`, vector(100 + i, M, BITS)));
  await Promise.all(clients.map((c) => c.done));
  assertSum(await published, clients, M, BITS);
}

/** Open a WebSocket (optionally with an Origin header) and say hello: the welcome's client id, or the HTTP status that refused the upgrade. */
function helloWith(url: string, origin: string | undefined, name: string): Promise<{ welcome: boolean } | { status: number }> {
  return new Promise((resolveHello, reject) => {
    const ws = new WebSocket(url, origin === undefined ? {} : { origin });
    ws.on('unexpected-response', (_req, res) => {
      resolveHello({ status: res.statusCode ?? 0 });
      ws.terminate();
    });
    ws.on('error', (e) => {
      if (!/Unexpected server response/.test(String(e))) reject(e);
    });
    ws.on('open', () => ws.send(encodeControl({ case: 'hello', value: { version: PROTOCOL_VERSION, token: token(name) } })));
    ws.on('message', (d: Buffer) => {
      const f = new Uint8Array(d);
      if (isControlFrame(f) && decodeControl(f).body.case === 'welcome') {
        resolveHello({ welcome: true });
        ws.close();
      }
    });
  });
}

describe('service admin surface', { timeout: 60_000 }, () => {
  test('on a listener of its own: the client port answers only /healthz and /ws; the admin listener serves the dashboard, metrics and results, and no WebSocket', async () => {
    const server = await startServer({ minClients: 3, admin: { port: 0 } });
    try {
      await oneRound(server, 'sep');
      assert.ok(server.adminUrl, 'an admin URL');
      assert.notEqual(new URL(server.adminUrl).port, String(server.port), 'another port');
      assert.equal(new URL(server.adminUrl).hostname, '127.0.0.1');
      for (const p of ADMIN_PATHS) assert.equal((await get(server.httpUrl + p)).status, 404, `client port: /${p}`);
      assert.equal((await get(server.httpUrl + 'healthz')).status, 200);
      const page = await get(server.adminUrl);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /secagg aggregation server/);
      const metrics = await (await get(server.adminUrl + 'metrics')).text();
      assert.match(metrics, /^secagg_rounds_total\{outcome="completed"\} 1$/m);
      const one = (await (await get(server.adminUrl + 'api/rounds/1')).json()) as { sum: number[] };
      assert.deepEqual(one.sum, Array.from((await server.store.get(1))!.sum!));
      assert.equal((await get(server.adminUrl + 'healthz')).status, 200);
      // No client traffic on the admin listener.
      const wsUrl = server.adminUrl.replace(/^http/, 'ws') + 'ws';
      assert.deepEqual(await helloWith(wsUrl, undefined, 'sep-admin'), { status: 404 });
    } finally {
      await server.close();
    }
  });

  test('listening beyond loopback, the admin surface moves off the client port to 127.0.0.1 by default; asked for there, it warns without admin tokens', async () => {
    const log = capturingLogger();
    const server = await startServer({ minClients: 3, host: '0.0.0.0', logger: log });
    try {
      assert.ok(server.adminUrl);
      const admin = new URL(server.adminUrl);
      assert.equal(admin.hostname, '127.0.0.1');
      assert.notEqual(admin.port, String(server.port));
      const clientPort = `http://127.0.0.1:${server.port}/`;
      for (const p of ADMIN_PATHS) assert.equal((await get(clientPort + p)).status, 404, `client port: /${p}`);
      assert.equal((await get(server.adminUrl + 'api/status')).status, 200);
      assert.ok(log.lines.some((l) => l.level === 'warn' && /without TLS/.test(l.msg)));
      assert.ok(!log.lines.some((l) => /readable without a token/.test(l.msg)), 'the default placement (loopback) is not warned about');
      assert.equal(log.lines.find((l) => l.msg === 'listening')?.fields['admin'], server.adminUrl);
    } finally {
      await server.close();
    }
    const log2 = capturingLogger();
    const exposed = await startServer({ minClients: 3, host: '0.0.0.0', admin: 'client-port', logger: log2 });
    try {
      assert.equal(exposed.adminUrl, exposed.httpUrl);
      assert.equal((await get(`http://127.0.0.1:${exposed.port}/api/status`)).status, 200);
      assert.ok(log2.lines.some((l) => l.level === 'warn' && /readable without a token/.test(l.msg) && /with the sums/.test(l.msg)));
    } finally {
      await exposed.close();
    }
  });

  test("admin: 'off' serves it nowhere; rounds still run", async () => {
    const server = await startServer({ minClients: 3, admin: 'off' });
    try {
      assert.equal(server.adminUrl, undefined);
      await oneRound(server, 'off');
      for (const p of ADMIN_PATHS) assert.equal((await get(server.httpUrl + p)).status, 404, `/${p}`);
      assert.equal((await get(server.httpUrl + 'healthz')).status, 200);
    } finally {
      await server.close();
    }
  });

  test('admin tokens: /metrics and /api/* need one (a results token reads only /api/rounds; a client token nothing); the page loads without', async () => {
    const server = await startServer({ minClients: 3, adminTokens: ['admin-secret-1'], resultsTokens: ['results-secret-1'] });
    try {
      await oneRound(server, 'tok');
      const base = server.adminUrl!;
      assert.equal((await get(base)).status, 200, 'the page is static');
      for (const p of ['metrics', 'api/status', 'api/rounds', 'api/rounds/1', 'no/such/path']) {
        const none = await get(base + p);
        assert.equal(none.status, 401, `/${p} without a token`);
        assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
        assert.equal((await get(base + p, 'admin-secret-2')).status, 401, `/${p}: a wrong token`);
        assert.equal((await get(base + p, token('tok0'))).status, 401, `/${p}: a client's token`);
      }
      for (const p of ['metrics', 'api/status', 'api/rounds', 'api/rounds/1']) assert.equal((await get(base + p, 'admin-secret-1')).status, 200, `/${p}`);
      assert.equal((await get(base + 'api/rounds/1', 'results-secret-1')).status, 200);
      assert.equal((await get(base + 'api/rounds', 'results-secret-1')).status, 200);
      assert.equal((await get(base + 'metrics', 'results-secret-1')).status, 401, 'a results token is not an admin token');
      assert.equal((await get(base + 'api/status', 'results-secret-1')).status, 401);
      assert.equal((await get(base + 'api/rounds?limit=abc', 'admin-secret-1')).status, 400);
    } finally {
      await server.close();
    }
  });
});

describe('service WebSocket origin allow-list', { timeout: 60_000 }, () => {
  test('an upgrade from an origin not listed is refused with 403 before any WebSocket; listed origins and clients without Origin are welcomed', async () => {
    const server = await startServer({ minClients: 3, autoStart: false, allowedOrigins: ['https://app.example.com', 'http://localhost:5173'] });
    try {
      assert.deepEqual(await helloWith(server.url, 'https://evil.example', 'o1'), { status: 403 });
      assert.deepEqual(await helloWith(server.url, 'https://app.example.com.evil.example', 'o2'), { status: 403 });
      assert.deepEqual(await helloWith(server.url, 'null', 'o3'), { status: 403 }, 'a sandboxed or file:// page');
      assert.deepEqual(await helloWith(server.url, 'http://localhost:5174', 'o4'), { status: 403 }, 'another port is another origin');
      const metrics = await (await get(server.adminUrl + 'metrics')).text();
      assert.match(metrics, /^secagg_connections_closed_total\{reason="origin"\} 4$/m);
      assert.equal((await server.status()).connections, 0, 'no refused upgrade became a connection');
      assert.deepEqual(await helloWith(server.url, 'https://app.example.com', 'o5'), { welcome: true });
      assert.deepEqual(await helloWith(server.url, 'http://localhost:5173', 'o6'), { welcome: true });
      assert.deepEqual(await helloWith(server.url, undefined, 'o7'), { welcome: true }, 'no Origin: not a browser');
    } finally {
      await server.close();
    }
    const any = await startServer({ minClients: 3, autoStart: false, allowedOrigins: ['*'] });
    try {
      assert.deepEqual(await helloWith(any.url, 'https://evil.example', 'a1'), { welcome: true });
    } finally {
      await any.close();
    }
  });

  test('bad admin and origin options are refused at createServer with the option named', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ admin: 'elsewhere' }, /^admin must be/],
      [{ admin: { port: 70_000 } }, /^admin\.port /],
      [{ admin: { port: 0, host: '' } }, /^admin\.host /],
      [{ adminTokens: [''] }, /^adminTokens /],
      [{ allowedOrigins: 'https://a.example' }, /^allowedOrigins must be a list/],
      [{ allowedOrigins: ['https://a.example/'] }, /did you mean 'https:\/\/a\.example'\?/],
      [{ allowedOrigins: ['https://A.example'] }, /did you mean 'https:\/\/a\.example'\?/],
      [{ allowedOrigins: ['ftp://a.example'] }, /is not an origin/],
      [{ allowedOrigins: ['a.example'] }, /is not an origin/],
    ];
    for (const [given, message] of cases)
      await assert.rejects(
        startServer(given),
        (e: unknown) => (e instanceof TypeError || e instanceof RangeError) && message.test(e.message),
        JSON.stringify(given),
      );
  });
});

describe('secagg serve --admin, --admin-token, --allowed-origins', { timeout: 60_000 }, () => {
  test('parseAdmin: client-port, off, PORT, HOST:PORT, [IPv6]:PORT; the default follows --host', () => {
    assert.equal(parseAdmin(undefined, '127.0.0.1'), 'client-port');
    assert.deepEqual(parseAdmin(undefined, '0.0.0.0'), { host: '127.0.0.1', port: 8081 });
    assert.equal(parseAdmin('off', '0.0.0.0'), 'off');
    assert.equal(parseAdmin('client-port', '0.0.0.0'), 'client-port');
    assert.deepEqual(parseAdmin('9100', '0.0.0.0'), { port: 9100 });
    assert.deepEqual(parseAdmin('10.0.0.5:9100', '0.0.0.0'), { host: '10.0.0.5', port: 9100 });
    assert.deepEqual(parseAdmin('[::1]:9100', '0.0.0.0'), { host: '::1', port: 9100 });
    for (const bad of ['', 'x:y', '9100:x', '70000', 'localhost:'])
      assert.throws(
        () => parseAdmin(bad, '127.0.0.1'),
        (e: unknown) => e instanceof UsageError,
        bad,
      );
  });

  test('the CLI serves the admin surface where --admin says, behind --admin-token, and refuses origins not listed', async () => {
    const proc = spawn(
      process.execPath,
      [MAIN, 'serve', '--port', '0', '--history', '', '--workers', '0', '--admin', '127.0.0.1:0', '--allowed-origins', 'https://app.example.com'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SECAGG_SECRET: SECRET, SECAGG_ADMIN_TOKEN: 'cli-admin-a' } },
    );
    const logs: string[] = [];
    createInterface({ input: proc.stderr! }).on('line', (l) => logs.push(l));
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      const line = await new Promise<string>((ok, fail) => {
        createInterface({ input: proc.stdout! }).once('line', ok);
        proc.once('exit', (code) => fail(new Error(`serve exited with ${code}: ${logs.join('\n')}`)));
      });
      const { url, dashboard } = JSON.parse(line) as { url: string; dashboard: string };
      const clientPort = new URL(url).port;
      assert.notEqual(new URL(dashboard).port, clientPort);
      assert.equal((await get(`http://127.0.0.1:${clientPort}/metrics`)).status, 404);
      assert.equal((await get(dashboard + 'metrics')).status, 401);
      assert.equal((await get(dashboard + 'metrics', 'cli-admin-a')).status, 200);
      assert.deepEqual(await helloWith(url, 'https://evil.example', 'cli1'), { status: 403 });
      assert.deepEqual(await helloWith(url, 'https://app.example.com', 'cli2'), { welcome: true });
    } finally {
      proc.kill('SIGTERM');
      await exited;
    }
    const bad = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '--history', '', '--allowed-origins', 'https://app.example.com/'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SECAGG_SECRET: SECRET },
    });
    let err = '';
    bad.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    assert.equal(await new Promise((r) => bad.once('exit', r)), 2);
    assert.match(err, /did you mean 'https:\/\/app\.example\.com'/);
  });
});

describe('the dashboard behind admin tokens, in Chromium', { timeout: 60_000 }, () => {
  test('without a token the page says it needs one (its feed answers 401); with /#token= it shows the rounds; a wrong one is said to be refused', async () => {
    const { launchChromium } = await import('./chromium.js');
    const server = await startServer({ minClients: 3, adminTokens: ['dash-admin-1'] });
    const browser = await launchChromium({ width: 1000, height: 700 });
    try {
      await oneRound(server, 'dash');
      const page = browser.page;
      await page.goto(server.adminUrl!);
      await page.waitForFunction(() => /needs an admin token/.test(document.getElementById('conn')?.textContent ?? ''), undefined, { timeout: 10_000 });
      assert.equal(await page.textContent('#totals-completed'), '0', 'nothing shown without the token');
      await page.goto(`${server.adminUrl}#token=wrong`);
      await page.reload();
      await page.waitForFunction(() => /was refused/.test(document.getElementById('conn')?.textContent ?? ''), undefined, { timeout: 10_000 });
      await page.goto(`${server.adminUrl}#token=dash-admin-1`);
      await page.reload();
      await page.waitForFunction(() => document.getElementById('totals-completed')?.textContent === '1', undefined, { timeout: 10_000 });
    } finally {
      await browser.close();
      await server.close();
    }
  });
});
