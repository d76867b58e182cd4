/**
 * The service's front door under attack, on a real createServer over loopback: sockets that never
 * authenticate, oversized frames before the welcome, a cohort member flooding refused messages,
 * tokens that expire while their connection waits, round results over HTTP, the client's trust
 * mode in active mode, and the corruption budget's threshold.
 *
 * Attackers connect from other loopback addresses (127.0.0.2, …) than the honest clients
 * (127.0.0.1), so that the per-address handshake budget can tell them apart.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { CLOSE, MAX_CONTROL_BYTES } from '../src/transport/frames.js';
import { encodeClientMessage } from '../src/wire/codec.js';
import { createServer, signToken, type PublishedResult, type RoundRecord, type SecAggServer } from '../src/server/index.js';
import { addressKey } from '../src/server/server.js';
import { isClientError, participate, type ClientEvent, type RoundInfo } from '../src/client/index.js';
import type { Logger } from '../src/server/logger.js';
import {
  assertSum,
  boundToken,
  makeIdentity,
  nextResult,
  nodeClient,
  rawClient,
  SECRET,
  startServer,
  token,
  vector,
  WS,
  type NodeClient,
} from './serviceHelpers.js';

const M = 64;
const BITS = 16;
const MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `cond` every 20 ms; fail after `timeoutMs` (a bound that only catches a hang). */
async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** `p`, or a failure naming `what` after `ms` (a bound that only catches a hang). */
function within<T>(p: Promise<T>, what: string, ms = 20_000): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)))]).finally(() =>
    clearTimeout(t),
  );
}

/** A WebSocket from `localAddress` that never says hello: 'open' once upgraded, 'refused' on an HTTP 503. */
function silentSocket(server: SecAggServer, localAddress: string): Promise<{ ws: WebSocket; outcome: 'open' | 'refused' }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(server.url, { localAddress });
    ws.once('open', () => resolve({ ws, outcome: 'open' }));
    ws.once('unexpected-response', (_req, res) => {
      if (res.statusCode === 503) resolve({ ws, outcome: 'refused' });
      else reject(new Error(`unexpected HTTP ${res.statusCode}`));
      res.resume();
      ws.terminate();
    });
    ws.once('error', (e) => reject(e));
  });
}

/** Log lines captured in order. */
function capturingLogger(): Logger & { lines: Array<{ msg: string; fields: Record<string, unknown> }> } {
  const lines: Array<{ msg: string; fields: Record<string, unknown> }> = [];
  return { lines, log: (_level, msg, fields = {}) => void lines.push({ msg, fields }) };
}

const metric = async (server: SecAggServer, line: RegExp): Promise<number | undefined> => {
  const text = await (await fetch(server.httpUrl + 'metrics')).text();
  const m = new RegExp(`^${line.source} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

describe('service front door: connections before authentication', { timeout: 60_000 }, () => {
  test('sockets that never send a hello cannot lock out clients: their handshakes have their own budget per address', async () => {
    // maxConnections is the authenticated budget: exactly the three honest clients. Before the fix
    // the attacker's silent sockets took those slots and the clients were closed with 4503.
    const server = await startServer({ minClients: 3, maxConnections: 3, handshakeTimeoutMs: 30_000 });
    const attackers: WebSocket[] = [];
    try {
      const outcomes = await Promise.all(Array.from({ length: 20 }, () => silentSocket(server, '127.0.0.2')));
      attackers.push(...outcomes.map((o) => o.ws));
      assert.equal(outcomes.filter((o) => o.outcome === 'open').length, 8, 'maxPendingPerAddress (default 8) handshakes from one address');
      assert.equal(outcomes.filter((o) => o.outcome === 'refused').length, 12, 'the rest are refused before the upgrade');
      assert.equal(await metric(server, /secagg_pending_connections/), 8);
      assert.equal(((await (await fetch(server.httpUrl + 'healthz')).json()) as { pending: number }).pending, 8);
      assert.equal(await metric(server, /secagg_connections_closed_total\{reason="pending_per_address"\}/), 12);

      const published = nextResult(server);
      const clients = Array.from({ length: 3 }, (_, i) => nodeClient(server, `honest${i}`, vector(10 + i, M, BITS), { reconnect: { maxAttempts: 0 } }));
      const reports = await Promise.all(clients.map((c) => c.done));
      const result = await published;
      assert.ok(
        reports.every(([r]) => r?.included === true),
        'every honest client joined at its first attempt and is in the sum',
      );
      assert.equal(result.included.length, 3);
      assertSum(result, clients, M, BITS);
      assert.equal(attackers.filter((w) => w.readyState === WebSocket.OPEN).length, 8, "the attacker's pending sockets are still only waiting");
    } finally {
      for (const w of attackers) w.terminate();
      await server.close();
    }
  });

  test('the overall handshake budget holds across addresses, and a slot is free again once its socket goes', async () => {
    const server = await startServer({ autoStart: false, maxPendingConnections: 10, handshakeTimeoutMs: 30_000 });
    const sockets: WebSocket[] = [];
    try {
      const a = await Promise.all(Array.from({ length: 8 }, () => silentSocket(server, '127.0.0.2')));
      const b = await Promise.all(Array.from({ length: 8 }, () => silentSocket(server, '127.0.0.3')));
      sockets.push(...a.map((o) => o.ws), ...b.map((o) => o.ws));
      assert.equal(a.filter((o) => o.outcome === 'open').length, 8);
      assert.equal(b.filter((o) => o.outcome === 'open').length, 2, 'maxPendingConnections = 10 in all');
      assert.equal(await metric(server, /secagg_connections_closed_total\{reason="pending_full"\}/), 6);
      assert.equal((await silentSocket(server, '127.0.0.4')).outcome, 'refused', 'a new address too, while the budget is spent');
      for (const o of a) o.ws.close();
      await until(async () => (await server.status()).connections === 2, 'the closed handshakes to leave the budget');
      const again = await silentSocket(server, '127.0.0.4');
      sockets.push(again.ws);
      assert.equal(again.outcome, 'open');
      // An authenticated connection leaves the pending budget: a hello frees its slot.
      const raw = await rawClient(server);
      raw.hello(token('authenticated'));
      await raw.control('welcome');
      assert.equal(await metric(server, /secagg_pending_connections/), 3);
      raw.ws.close();
    } finally {
      for (const w of sockets) w.terminate();
      await server.close();
    }
  });

  test('a frame over the control cap before the welcome is refused from its header (1009): nothing like its size is buffered', async () => {
    // The round's frames here are 64 MiB (2^24 elements of 32 bits), so the old single limit
    // (the round's largest message) let a 48 MiB frame be buffered in full before the hello check.
    const server = await startServer({ bits: 32, dimension: 1 << 24, autoStart: false, handshakeTimeoutMs: 30_000 });
    let sock: Socket | undefined;
    try {
      const frameBytes = 48 << 20;
      sock = connect({ host: '127.0.0.1', port: server.port, localAddress: '127.0.0.5' });
      const s = sock;
      await new Promise<void>((ok, fail) => s.once('connect', ok).once('error', fail));
      s.write(
        `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
      // Read the 101 and the server's frames (unmasked); note the close frame's code.
      let buf = Buffer.alloc(0);
      let upgraded = false;
      let closeCode: number | undefined;
      let ended = false;
      const onData = (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (!upgraded) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          assert.match(buf.subarray(0, end).toString('latin1'), /^HTTP\/1\.1 101/);
          buf = buf.subarray(end + 4);
          upgraded = true;
        }
        while (buf.length >= 2) {
          const opcode = buf[0]! & 0x0f;
          let len = buf[1]! & 0x7f;
          let off = 2;
          if (len === 126) {
            if (buf.length < 4) return;
            len = buf.readUInt16BE(2);
            off = 4;
          } else if (len === 127) return; // the server sends nothing that large here
          if (buf.length < off + len) return;
          if (opcode === 8) closeCode = buf.readUInt16BE(off);
          buf = buf.subarray(off + len);
        }
      };
      s.on('data', onData);
      s.on('end', () => (ended = true));
      s.on('close', () => (ended = true));
      s.on('error', () => (ended = true));
      await until(() => upgraded, 'the upgrade');

      // A binary frame announcing 48 MiB (zero mask key), then the payload, streamed with
      // back-pressure in 256 KiB chunks of one reused buffer, until the server closes.
      const header = Buffer.alloc(14);
      header[0] = 0x82;
      header[1] = 0x80 | 127;
      header.writeUInt32BE(0, 2);
      header.writeUInt32BE(frameBytes, 6);
      const chunk = Buffer.alloc(256 << 10);
      const rss0 = process.memoryUsage.rss();
      let peak = rss0;
      let sent = 0;
      s.write(header);
      while (sent < frameBytes && closeCode === undefined && !ended) {
        const ok = s.write(chunk);
        sent += chunk.length;
        peak = Math.max(peak, process.memoryUsage.rss());
        if (!ok) await Promise.race([new Promise((r) => s.once('drain', r)), until(() => closeCode !== undefined || ended, 'drain or close', 20_000)]);
      }
      await until(() => closeCode !== undefined, 'the close frame', 20_000);
      peak = Math.max(peak, process.memoryUsage.rss());
      assert.equal(closeCode, CLOSE.TOO_BIG);
      assert.ok(peak - rss0 < 16 << 20, `RSS grew by ${((peak - rss0) / 2 ** 20).toFixed(1)} MiB for a ${frameBytes >> 20} MiB frame`);
      assert.equal(await metric(server, /secagg_connections_closed_total\{reason="too_big"\}/), 1);
      await until(async () => (await server.status()).connections === 0, 'the socket to leave');
      assert.ok(MAX_CONTROL_BYTES < 1 << 20);
    } finally {
      sock?.destroy();
      await server.close();
    }
  });
});

describe('service front door: a cohort member flooding refused messages', { timeout: 60_000 }, () => {
  test('is closed after its refusal budget (1008); nothing it queued is handled after; the round completes with the exact sum', async () => {
    const logger = capturingLogger();
    const dim = 1 << 18; // masked inputs of 1 MiB
    const server = await createServer({
      secret: SECRET,
      logger,
      unmaskWorkers: 0,
      startDelayMs: 100,
      stageTimeoutMs: 20_000,
      dimension: dim,
      bits: 32,
      minClients: 5,
      maxClients: 5,
    });
    try {
      const published = nextResult(server);
      const honest: NodeClient[] = Array.from({ length: 4 }, (_, i) => nodeClient(server, `h${i}`, vector(500 + i, dim, 32)));
      const flooder = await rawClient(server);
      flooder.hello(token('flooder'));
      const a = (await flooder.control('assignment', 10_000)) as { roundId: Uint8Array; clientId: number; maxFrameBytes: number };
      await flooder.protocolFrame(1, 10_000); // RoundStart: the round is in its advertise stage
      // 4 masked inputs (1 MiB each: the wrong stage, and far over the advertise stage's limit),
      // then 36 small messages of the wrong stage, in one burst.
      const big = encodeClientMessage(a.roundId, a.clientId, { case: 'maskedInput', value: { vector: new Uint8Array(4 * dim) } });
      const small = encodeClientMessage(a.roundId, a.clientId, { case: 'unmaskResponse', value: { selfMaskShares: [], keyShares: [] } });
      assert.ok(big.length <= a.maxFrameBytes && big.length > 1 << 20, 'the big frames fit the round but not the stage');
      for (let i = 0; i < 4; i++) flooder.ws.send(big);
      for (let i = 0; i < 36; i++) flooder.ws.send(small);
      const health = await fetch(server.httpUrl + 'healthz');
      assert.equal(health.status, 200, 'the server answers /healthz during the flood');
      const closed = await within(flooder.closed, "the flooder's close");
      assert.equal(closed.code, CLOSE.POLICY);
      assert.match(closed.reason, /refused messages|frames waiting/);

      const result = await published;
      await Promise.all(honest.map((c) => c.done));
      assert.ok(!result.included.includes(a.clientId), 'the flooder is not in the sum');
      assert.equal(result.included.length, 4);
      assertSum(result, honest, dim, 32);

      const mine = (l: { fields: Record<string, unknown> }) => l.fields['clientId'] === a.clientId;
      const closing = logger.lines.findIndex((l) => l.msg === 'closing connection' && mine(l) && l.fields['code'] === CLOSE.POLICY);
      assert.ok(closing >= 0, 'the policy close is logged');
      const refused = logger.lines.filter((l) => l.msg === 'message refused' && mine(l));
      assert.ok(refused.length >= 1 && refused.length <= 8, `${refused.length} refusals, at most the budget of 8`);
      assert.equal(
        logger.lines.slice(closing + 1).filter((l) => l.msg === 'message refused' && mine(l)).length,
        0,
        'no message of the flooder is handled once it is closed',
      );
      assert.ok(
        refused.some((l) => l.fields['code'] === 'ERR_SIZE'),
        'the masked inputs were refused by the stage limit, unread',
      );
      const total = (await (await fetch(server.httpUrl + 'metrics')).text()).match(/^secagg_messages_refused_total\{code="[A-Z_]+"\} \d+$/gm) ?? [];
      assert.equal(
        total.reduce((s, l) => s + Number(l.split(' ')[1]), 0),
        logger.lines.filter((l) => l.msg === 'message refused').length,
        'the metric counts exactly the logged refusals',
      );
      assert.equal(((await (await fetch(server.httpUrl + 'healthz')).json()) as { status: string }).status, 'ok');
    } finally {
      await server.close();
    }
  });

  test('an honest round leaves every refusal counter at zero', async () => {
    const server = await startServer({ minClients: 4 });
    try {
      const published = nextResult(server);
      const clients = Array.from({ length: 4 }, (_, i) => nodeClient(server, `q${i}`, vector(600 + i, M, BITS)));
      await Promise.all(clients.map((c) => c.done));
      assertSum(await published, clients, M, BITS);
      const text = await (await fetch(server.httpUrl + 'metrics')).text();
      assert.doesNotMatch(text, /^secagg_messages_refused_total\{/m);
      assert.doesNotMatch(text, /reason="refused_messages"/);
    } finally {
      await server.close();
    }
  });
});

describe('service front door: token expiry', { timeout: 30_000 }, () => {
  test('a client whose token expires while it waits is closed (4401) when the next cohort is drawn, and is not in it', async () => {
    const server = await startServer({ minClients: 3, autoStart: false });
    try {
      const clients = Array.from({ length: 3 }, (_, i) => nodeClient(server, `e${i}`, vector(700 + i, M, BITS)));
      const expiresAt = Date.now() + 1500;
      const late = nodeClient(server, 'late', vector(799, M, BITS), {
        token: signToken({ clientId: 'late', expiresAt }, SECRET),
        reconnect: { maxAttempts: 0 },
      });
      await until(async () => (await server.status()).waiting === 4, 'four welcomed clients');
      assert.ok(Date.now() < expiresAt, 'the short token was valid at hello');
      await sleep(expiresAt - Date.now() + 50);
      const published = nextResult(server);
      const round = await server.startRound();
      assert.ok(round !== undefined);
      await assert.rejects(late.done, (e: unknown) => {
        assert.ok(isClientError(e, 'ERR_UNAUTHORIZED'), String(e));
        assert.equal(e.closeCode, CLOSE.UNAUTHORIZED);
        assert.match(e.message, /token expired/);
        return true;
      });
      const result = await published;
      await Promise.all(clients.map((c) => c.done));
      assert.equal((await server.store.get(round))?.params.cohort, 3, 'the expired connection was not drawn');
      assert.ok(late.clientId !== undefined && !result.included.includes(late.clientId));
      assertSum(result, clients, M, BITS);
      assert.equal(await metric(server, /secagg_connections_closed_total\{reason="unauthorized_expired"\}/), 1);
    } finally {
      await server.close();
    }
  });
});

describe('service front door: round results over HTTP', { timeout: 60_000 }, () => {
  const get = (url: string, bearer?: string) => fetch(url, bearer === undefined ? {} : { headers: { authorization: `Bearer ${bearer}` } });

  test('with resultsTokens, /api/rounds and /api/rounds/:id need one of them (401 otherwise); by default they are open', async () => {
    const server = await startServer({ minClients: 3, resultsTokens: ['results-secret-1', 'results-secret-2'] });
    const open = await startServer({ minClients: 3 });
    try {
      for (const s of [server, open]) {
        const published = nextResult(s);
        const clients = Array.from({ length: 3 }, (_, i) => nodeClient(s, `r${i}`, vector(800 + i, M, BITS)));
        await Promise.all(clients.map((c) => c.done));
        assertSum(await published, clients, M, BITS);
      }
      for (const path of ['api/rounds', 'api/rounds/1']) {
        const none = await get(server.httpUrl + path);
        assert.equal(none.status, 401, path);
        assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
        assert.equal((await get(server.httpUrl + path, 'results-secret-3')).status, 401, `${path}: a wrong token`);
        assert.equal((await get(server.httpUrl + path, token('r0'))).status, 401, `${path}: a client's token is not a results token`);
        assert.equal((await fetch(server.httpUrl + path, { headers: { authorization: 'Basic cmVzdWx0cy1zZWNyZXQtMQ==' } })).status, 401);
      }
      const list = await get(server.httpUrl + 'api/rounds', 'results-secret-2');
      assert.equal(list.status, 200);
      assert.equal(((await list.json()) as unknown[]).length, 1);
      const one = await get(server.httpUrl + 'api/rounds/1', 'results-secret-1');
      assert.equal(one.status, 200);
      const body = (await one.json()) as { sum: number[] };
      assert.deepEqual(body.sum, Array.from((await server.store.get(1))!.sum!));
      // The dashboard's status and the health check stay open (no sums in them).
      assert.equal((await get(server.httpUrl + 'api/status')).status, 200);
      assert.equal((await get(server.httpUrl + 'healthz')).status, 200);
      // Default: no results tokens, open (documented: for a server on loopback).
      const dflt = await get(open.httpUrl + 'api/rounds/1');
      assert.equal(dflt.status, 200);
      assert.equal(((await dflt.json()) as { sum: number[] }).sum.length, M);
    } finally {
      await server.close();
      await open.close();
    }
  });

  test('secagg serve --results-token and --corruption', async () => {
    const proc = spawn(
      process.execPath,
      [
        MAIN,
        'serve',
        '--port',
        '0',
        '--history',
        '',
        '--workers',
        '0',
        '--results-token',
        'cli-results-a,cli-results-b',
        '--corruption',
        '1',
        '--min-clients',
        '4',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SECAGG_SECRET: SECRET } },
    );
    const logs: string[] = [];
    createInterface({ input: proc.stderr! }).on('line', (l) => logs.push(l));
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      const line = await new Promise<string>((ok, fail) => {
        createInterface({ input: proc.stdout! }).once('line', ok);
        proc.once('exit', (code) => fail(new Error(`serve exited with ${code}: ${logs.join('\n')}`)));
      });
      const { dashboard } = JSON.parse(line) as { dashboard: string };
      assert.equal((await get(dashboard + 'api/rounds')).status, 401);
      assert.equal((await get(dashboard + 'api/rounds', 'cli-results-b')).status, 200);
      assert.ok(
        logs.some((l) => /"msg":"listening"/.test(l) && /"corruption":1/.test(l)),
        logs.join('\n'),
      );
    } finally {
      proc.kill('SIGTERM');
      await exited;
    }
    // An unsafe threshold for every cohort is a usage error (exit 2), not a server that runs unsafely.
    const bad = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '--history', '', '--degree', '3', '--threshold', '2', '--min-clients', '6'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SECAGG_SECRET: SECRET },
    });
    let err = '';
    bad.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    assert.equal(await new Promise((r) => bad.once('exit', r)), 2);
    assert.match(err, /unsafe for every cohort/);
  });
});

describe('service front door: participate() trust mode in active mode', { timeout: 30_000 }, () => {
  test("without a directory, an issuer key or trust: 'server' participate() throws a TypeError before connecting", async () => {
    const server = await startServer({ mode: 'active', minClients: 3 });
    try {
      const id = await makeIdentity('t-none');
      const base = { url: server.url, token: boundToken(id.name, id.key), identity: id.seed, input: vector(1, M, BITS), WebSocket: WS };
      await assert.rejects(participate(base), (e: unknown) => e instanceof TypeError && /trust: 'server'/.test(e.message));
      await assert.rejects(participate({ ...base, trust: 'pinned' }), (e: unknown) => e instanceof TypeError && /needs directory/.test(e.message));
      await assert.rejects(participate({ ...base, trust: 'issuer' }), (e: unknown) => e instanceof TypeError && /needs issuerKey/.test(e.message));
      await assert.rejects(
        participate({ ...base, trust: 'server', issuerKey: id.key }),
        (e: unknown) => e instanceof TypeError && /contradicts/.test(e.message),
      );
      await assert.rejects(participate({ ...base, trust: 'nobody' as 'server' }), TypeError);
      const { identity: _drop, ...semiHonest } = base;
      await assert.rejects(participate({ ...semiHonest, trust: 'server' }), (e: unknown) => e instanceof TypeError && /active mode/.test(e.message));
      const st = await server.status();
      assert.equal(st.connections, 0, 'nothing connected');
    } finally {
      await server.close();
    }
  });

  test("with trust: 'server' an active round runs as before, reported as identityCheck 'server'", async () => {
    const server = await startServer({ mode: 'active', minClients: 3 });
    try {
      const ids = await Promise.all(['ts0', 'ts1', 'ts2'].map((n) => makeIdentity(n)));
      const assigned: RoundInfo[] = [];
      const published = nextResult(server);
      const clients = ids.map((id, i) =>
        nodeClient(server, id.name, vector(900 + i, M, BITS), {
          token: boundToken(id.name, id.key),
          identity: id.seed,
          trust: 'server',
          onEvent: (e: ClientEvent) => (e.type === 'assigned' ? void assigned.push(e.round) : undefined),
        }),
      );
      const reports = await Promise.all(clients.map((c) => c.done));
      const result = await published;
      assert.ok(reports.every(([r]) => r?.included === true));
      assertSum(result, clients, M, BITS);
      assert.equal(assigned.length, 3);
      assert.ok(assigned.every((r) => r.identityCheck === 'server'));
    } finally {
      await server.close();
    }
  });
});

describe('service front door: corruption budget and threshold', { timeout: 30_000 }, () => {
  test('the threshold meets 2t > k + c for the realised neighbourhood (odd degree: k + 1), corruption goes into the round', async () => {
    // Degree 3 over 6 clients: an odd U1 gives 4 neighbours. Semi-honest, c = 1: t = max(c + 1, ⌊4/2⌋ + 1) = 3
    // (the old rule, a majority of the declared 3, gave 2).
    const server = await startServer({ minClients: 6, maxClients: 6, degree: 3, corruption: 1 });
    try {
      const ended = new Promise<RoundRecord>((r) => server.onRoundEnd(r));
      const clients = Array.from({ length: 6 }, (_, i) => nodeClient(server, `k${i}`, vector(1000 + i, M, BITS)));
      const rec = await within(ended, 'the round');
      assert.equal(rec.outcome, 'completed', `${rec.code}: ${rec.reason}`);
      await Promise.all(clients.map((c) => c.done));
      const result = { round: rec.id, included: rec.included!, sum: (await server.store.get(rec.id))!.sum!, params: rec.params } as unknown as PublishedResult;
      assertSum(result, clients, M, BITS);
      assert.equal(result.params.threshold, 3);
      assert.equal(result.params.corruption, 1);
      assert.equal((await server.store.get(result.round))?.params.corruption, 1);
    } finally {
      await server.close();
    }
    // Refused at createServer when no cohort could use it.
    await assert.rejects(
      startServer({ minClients: 6, maxClients: 6, degree: 3, threshold: 2 }),
      (e: unknown) => e instanceof RangeError && /unsafe for every cohort/.test(e.message),
    );
    await assert.rejects(
      startServer({ mode: 'active', minClients: 5, threshold: 2 }),
      (e: unknown) => e instanceof RangeError && /2t > k \+ c/.test(e.message),
    );
    await assert.rejects(startServer({ degree: 4, corruption: 4 }), (e: unknown) => e instanceof RangeError && /corruption 4/.test(e.message));
    await assert.rejects(startServer({ corruption: -1 }), RangeError);
    await assert.rejects(startServer({ degree: 'recommended', threshold: 3, corruption: 3 }), RangeError);
  });

  test('addressKey: IPv4 (also mapped) as is, IPv6 by its /64', () => {
    assert.equal(addressKey('127.0.0.2'), '127.0.0.2');
    assert.equal(addressKey('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:DB8::1'), '2001:db8:0:0::/64');
    assert.equal(addressKey('::1'), '0:0:0:0::/64');
    assert.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  });
});
