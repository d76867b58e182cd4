/**
 * The WebSocket service over loopback: real servers, real Node clients (participate() with the ws
 * package), dropouts by disconnecting at every stage, silent clients, bad tokens, bad frames.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CLOSE } from '../src/transport/frames.js';
import { isClientError, participate as participateRaw, type ReplyStage } from '../src/client/index.js';
import { encodeClientMessage } from '../src/wire/codec.js';
import { clientMessageLimits } from '../src/protocol/limits.js';
import { clientId, roundId } from '../src/ids.js';
import { assertSum, nextResult, nodeClient, rawClient, startServer, token, vector, WS, type NodeClient } from './serviceHelpers.js';
import { signToken } from '../src/server/index.js';

const M = 64;
const BITS = 16;

describe('service: rounds over WebSocket', { timeout: 60_000 }, () => {
  test('a round with 6 Node clients completes with the plaintext sum; results are published and stored', async () => {
    const server = await startServer({ minClients: 6 });
    try {
      const published = nextResult(server);
      const clients = Array.from({ length: 6 }, (_, i) => nodeClient(server, `c${i}`, vector(i + 1, M, BITS)));
      const reports = await Promise.all(clients.map((c) => c.done));
      const result = await published;
      assert.equal(result.included.length, 6);
      assertSum(result, clients, M, BITS);
      for (const [r] of reports) {
        assert.ok(r);
        assert.equal(r.completed, true);
        assert.equal(r.included, true);
        assert.equal(r.survivors, 6);
      }
      assert.deepEqual([...result.identities].sort(), clients.map((c) => c.name).sort());
      const rec = await server.store.get(result.round);
      assert.equal(rec?.outcome, 'completed');
      assert.deepEqual(rec?.sum, result.sum);
      assert.equal(rec?.stages.advertise?.clients, 6);
      assert.ok((rec?.stages.masked?.bytesIn ?? 0) >= 6 * M * 2, 'masked-stage bytes are counted');
      const metrics = await (await fetch(server.httpUrl + 'metrics')).text();
      assert.match(metrics, /secagg_rounds_total\{outcome="completed"\} 1/);
      assert.match(metrics, /secagg_stage_duration_seconds_count\{stage="unmask"\} 1/);
      const health = (await (await fetch(server.httpUrl + 'healthz')).json()) as { status: string };
      assert.equal(health.status, 'ok');
    } finally {
      await server.close();
    }
  });

  test('clients that disconnect at each stage: the round completes without waiting for deadlines', async () => {
    // 10 clients, complete graph (k = 9 → t = 5). Drop one by disconnecting instead of sending its
    // advertise, share, masked and unmask message; the masked and unmask droppers differ in whether
    // their input is in the sum.
    const server = await startServer({ minClients: 10, stageTimeoutMs: 20_000 });
    try {
      const published = nextResult(server);
      const dropAt: Array<ReplyStage | undefined> = ['advertise', 'share', 'masked', 'unmask'];
      const clients: NodeClient[] = Array.from({ length: 10 }, (_, i) =>
        nodeClient(server, `d${i}`, vector(100 + i, M, BITS), {
          unsafeBeforeSend: (stage) => (stage === dropAt[i] ? 'disconnect' : 'send'),
        }),
      );
      const t0 = Date.now();
      const reports = await Promise.all(clients.map((c) => c.done));
      const result = await published;
      assert.ok(Date.now() - t0 < 10_000, 'no stage waited for its 20 s deadline');
      const expected = clients.filter((_, i) => !['advertise', 'share', 'masked'].includes(dropAt[i]!)).map((c) => c.clientId!);
      assert.deepEqual(
        [...result.included],
        expected.sort((a, b) => a - b),
        'the unmask dropper is in the sum; earlier droppers are not',
      );
      assertSum(result, clients, M, BITS);
      for (let i = 0; i < 4; i++) assert.equal(reports[i]![0]!.code, 'ERR_DISCONNECTED');
      for (let i = 4; i < 10; i++) assert.equal(reports[i]![0]!.included, true);
      const rec = await server.store.get(result.round);
      assert.deepEqual(
        ['advertise', 'share', 'masked', 'unmask'].map((s) => rec?.stages[s as 'advertise']?.clients),
        [9, 8, 7, 6],
        'participants per stage',
      );
    } finally {
      await server.close();
    }
  });

  test('a client that never answers: the stage deadline closes the stage and the round completes', async () => {
    const server = await startServer({ minClients: 5, stageTimeoutMs: 800 });
    try {
      const published = nextResult(server);
      const clients = Array.from({ length: 5 }, (_, i) =>
        nodeClient(server, `s${i}`, vector(200 + i, M, BITS), { unsafeBeforeSend: (stage) => (i === 0 && stage === 'masked' ? 'silent' : 'send') }),
      );
      const t0 = Date.now();
      const reports = await Promise.all(clients.map((c) => c.done));
      const result = await published;
      assert.ok(Date.now() - t0 >= 700, 'the masked stage waited for its deadline');
      assert.equal(result.included.length, 4);
      assert.ok(!result.included.includes(clients[0]!.clientId!));
      assertSum(result, clients, M, BITS);
      assert.equal(reports[0]![0]!.completed, true);
      assert.equal(reports[0]![0]!.included, false, 'the silent client learns it is not in the sum');
    } finally {
      await server.close();
    }
  });

  test('too many dropouts abort the round: recorded with the reason, nothing published', async () => {
    const server = await startServer({ minClients: 4 });
    try {
      let published = 0;
      server.onResult(() => published++);
      const ended = new Promise<string>((r) => server.onRoundEnd((rec) => r(`${rec.outcome} ${rec.code}`)));
      const clients = Array.from({ length: 4 }, (_, i) =>
        nodeClient(server, `a${i}`, vector(300 + i, M, BITS), { unsafeBeforeSend: (stage) => (i < 3 && stage === 'share' ? 'disconnect' : 'send') }),
      );
      const reports = await Promise.all(clients.map((c) => c.done));
      assert.equal(await ended, 'aborted ERR_BELOW_THRESHOLD');
      assert.equal(published, 0);
      assert.equal(reports[3]![0]!.completed, false);
      assert.equal(reports[3]![0]!.code, 'ERR_BELOW_THRESHOLD');
    } finally {
      await server.close();
    }
  });
});

describe('service: authentication and limits', { timeout: 30_000 }, () => {
  test('wrong, forged and expired tokens are refused with 4401; a static token is accepted', async () => {
    const server = await startServer({ tokens: ['static-token-1'], autoStart: false });
    try {
      const input = vector(1, M, BITS);
      const refused = async (tok: string, reason: string) =>
        assert.rejects(participate(tok), (e: unknown) => {
          assert.ok(isClientError(e, 'ERR_UNAUTHORIZED'), String(e));
          assert.equal(e.closeCode, CLOSE.UNAUTHORIZED);
          assert.match(e.message, new RegExp(reason));
          return true;
        });
      const participate = (tok: string) => participateRaw({ url: server.url, token: tok, input, WebSocket: WS, reconnect: { maxAttempts: 0 } });
      await refused('not-a-token', 'invalid token');
      await refused(signToken({ clientId: 'mallory', expiresAt: Date.now() + 60_000 }, 'another-secret-0123456789'), 'invalid token');
      const good = token('alice');
      await refused(good.slice(0, -2) + (good.endsWith('AA') ? 'BB' : 'AA'), 'invalid token');
      await refused(signToken({ clientId: 'bob', expiresAt: Date.now() - 1 }, 'test-secret-0123456789abcdef'), 'token expired');
      const raw = await rawClient(server);
      raw.hello('static-token-1');
      const welcome = (await raw.control('welcome')) as { clientId: number; identity: string };
      assert.ok(welcome.clientId >= 1);
      assert.match(welcome.identity, /^token:/);
      raw.ws.close();
    } finally {
      await server.close();
    }
  });

  test('a client whose identity is already connected fails fast with ERR_REJECTED instead of retrying', async () => {
    const server = await startServer({ autoStart: false });
    try {
      const a = await rawClient(server);
      a.hello(token('dave'));
      await a.control('welcome');
      const events: string[] = [];
      await assert.rejects(
        participateRaw({ url: server.url, token: token('dave'), input: vector(1, M, BITS), WebSocket: WS, onEvent: (e) => events.push(e.type) }),
        (e: unknown) => {
          assert.ok(isClientError(e, 'ERR_REJECTED'), String(e));
          assert.equal(e.closeCode, CLOSE.DUPLICATE_IDENTITY);
          return true;
        },
      );
      assert.ok(!events.includes('reconnecting'), events.join());
      a.ws.close();
    } finally {
      await server.close();
    }
  });

  test('two connections with one identity: the second is closed with 4409', async () => {
    const server = await startServer({ autoStart: false });
    try {
      const a = await rawClient(server);
      a.hello(token('carol'));
      await a.control('welcome');
      const b = await rawClient(server);
      b.hello(token('carol'));
      const closed = await b.closed;
      assert.equal(closed.code, CLOSE.DUPLICATE_IDENTITY);
      assert.match(closed.reason, /already connected/);
      // Once the first leaves, the identity may connect again.
      a.ws.close();
      await a.closed;
      await new Promise((r) => setTimeout(r, 50));
      const c = await rawClient(server);
      c.hello(token('carol'));
      await c.control('welcome');
      c.ws.close();
    } finally {
      await server.close();
    }
  });

  test('handshake timeout, malformed hello, oversized hello, text frames and rate limits close only that connection', async () => {
    // maxRefusedMessages: the chatty client's frames (outside a round) must meet the rate limit first.
    const server = await startServer({ autoStart: false, handshakeTimeoutMs: 300, maxMessagesPerSecond: 5, maxRefusedMessages: 1000 });
    try {
      const bystander = await rawClient(server);
      bystander.hello(token('bystander'));
      await bystander.control('welcome');

      const silent = await rawClient(server);
      assert.equal((await silent.closed).code, CLOSE.HANDSHAKE_TIMEOUT);

      const garbage = await rawClient(server);
      garbage.ws.send(new Uint8Array([0, 0xff, 0xff, 0xff, 0x0f]));
      const g = await garbage.closed;
      assert.equal(g.code, CLOSE.MALFORMED);
      assert.match(g.reason, /malformed control frame/);

      const notHello = await rawClient(server);
      notHello.ws.send(new Uint8Array([8, 1, 18, 2, 1, 2]));
      assert.equal((await notHello.closed).code, CLOSE.MALFORMED);

      // Refused by ws from the frame header (the pre-authentication cap), so without a reason.
      const big = await rawClient(server);
      big.ws.send(new Uint8Array(5000));
      const b = await big.closed;
      assert.equal(b.code, CLOSE.TOO_BIG);

      const text = await rawClient(server);
      text.ws.send('hello');
      assert.equal((await text.closed).code, CLOSE.MALFORMED);

      const chatty = await rawClient(server);
      chatty.hello(token('chatty'));
      await chatty.control('welcome');
      for (let i = 0; i < 20; i++) chatty.ws.send(new Uint8Array([8, 1]));
      assert.equal((await chatty.closed).code, CLOSE.RATE_LIMITED);

      // An authenticated connection sending more than any round could need: ws's maxPayload (1009).
      const huge = await rawClient(server);
      huge.hello(token('huge'));
      const w = (await huge.control('welcome')) as { maxFrameBytes: number };
      huge.ws.send(new Uint8Array(w.maxFrameBytes + 1).fill(8));
      assert.equal((await huge.closed).code, CLOSE.TOO_BIG);

      const st = await server.status();
      assert.equal(st.connections, 1, 'only the well-behaved connection is left');
      assert.equal(bystander.ws.readyState, bystander.ws.OPEN);
      const metrics = await (await fetch(server.httpUrl + 'metrics')).text();
      assert.match(metrics, /secagg_connections_closed_total\{reason="handshake_timeout"\} 1/);
      assert.match(metrics, /secagg_connections_closed_total\{reason="rate_limited"\} 1/);
      bystander.ws.close();
    } finally {
      await server.close();
    }
  });

  test('malformed and oversized protocol frames in a round close that connection; the round goes on', async () => {
    const server = await startServer({ minClients: 8, stageTimeoutMs: 5000 });
    try {
      const published = nextResult(server);
      const clients = Array.from({ length: 5 }, (_, i) => nodeClient(server, `n${i}`, vector(400 + i, M, BITS)));
      const bad = await rawClient(server);
      bad.hello(token('bad'));
      const big = await rawClient(server);
      big.hello(token('big'));
      const fat = await rawClient(server);
      fat.hello(token('fat'));
      const assignment = (await bad.control('assignment')) as { roundId: Uint8Array; clientId: number; maxFrameBytes: number };
      await bad.protocolFrame(1);
      // A frame that claims to be a ClientMessage but is not one.
      bad.ws.send(new Uint8Array([8, 1, 0x12, 0x7f, 1, 2, 3]));
      const b = await bad.closed;
      assert.equal(b.code, CLOSE.MALFORMED);
      assert.match(b.reason, /ERR_DECODE/);
      const bigAssignment = (await big.control('assignment')) as { roundId: Uint8Array; clientId: number; maxFrameBytes: number };
      await big.protocolFrame(1);
      // Over the round's limit (derived from its parameters) but under ws's global maxPayload.
      const padded = encodeClientMessage(bigAssignment.roundId, bigAssignment.clientId, {
        case: 'maskedInput',
        value: { vector: new Uint8Array(bigAssignment.maxFrameBytes) },
      });
      big.ws.send(padded);
      const g = await big.closed;
      assert.equal(g.code, CLOSE.TOO_BIG);
      assert.match(g.reason, /round's limit/);
      // Under the stage's frame limit (the advertise stage allows an AdvertiseKeys) but over the
      // limit of its own kind (an abort): the decoder's typed ERR_TOO_BIG closes it with 1009.
      const fatAssignment = (await fat.control('assignment')) as { roundId: Uint8Array; clientId: number };
      await fat.protocolFrame(1);
      const limits = clientMessageLimits({
        roundId: roundId(fatAssignment.roundId),
        bits: BITS,
        dimension: M,
        threshold: 2,
        degree: 'complete',
        mode: 'semi-honest',
        cohort: Array.from({ length: 8 }, (_, i) => clientId(i + 1)),
      });
      const fatAbort = encodeClientMessage(fatAssignment.roundId, fatAssignment.clientId, { case: 'abort', value: { code: 'x'.repeat(limits.abort) } });
      assert.ok(fatAbort.length > limits.abort && fatAbort.length <= limits.advertiseKeys, `${fatAbort.length} in (${limits.abort}, ${limits.advertiseKeys}]`);
      fat.ws.send(fatAbort);
      const f = await fat.closed;
      assert.equal(f.code, CLOSE.TOO_BIG);
      assert.match(f.reason, /^ERR_TOO_BIG: abort message of \d+ bytes exceeds the limit of \d+/);
      assert.ok(assignment.maxFrameBytes < 10_000, `the round's frame limit (${assignment.maxFrameBytes}) follows its parameters`);
      const result = await published;
      await Promise.all(clients.map((c) => c.done));
      assert.equal(result.included.length, 5);
      assertSum(result, clients, M, BITS);
    } finally {
      await server.close();
    }
  });

  test('input that does not fit the round is refused on the client with ERR_INPUT', async () => {
    const server = await startServer({ minClients: 3 });
    try {
      const ok = [nodeClient(server, 'i0', vector(1, M, BITS)), nodeClient(server, 'i1', vector(2, M, BITS))];
      const wrong = nodeClient(server, 'i2', vector(3, M + 1, BITS));
      await assert.rejects(wrong.done, (e: unknown) => isClientError(e, 'ERR_INPUT'));
      await Promise.all(ok.map((c) => c.done)); // the others' round aborts (below threshold) and ends
    } finally {
      await server.close();
    }
  });

  test('reconnects with back-off until the server is up', async () => {
    const first = await startServer({ autoStart: false });
    const port = first.port;
    await first.close();
    const input = vector(9, M, BITS);
    const events: string[] = [];
    const c = participateRaw({
      url: `ws://127.0.0.1:${port}/ws`,
      token: token('late'),
      input,
      WebSocket: WS,
      reconnect: { initialDelayMs: 100, maxDelayMs: 200, maxAttempts: 50 },
      onEvent: (e) => events.push(e.type),
    });
    await new Promise((r) => setTimeout(r, 400));
    const server = await startServer({ port, minClients: 3 });
    try {
      const others = [nodeClient(server, 'o1', vector(10, M, BITS)), nodeClient(server, 'o2', vector(11, M, BITS))];
      const [report] = await c;
      await Promise.all(others.map((o) => o.done));
      assert.equal(report?.included, true);
      assert.ok(events.includes('reconnecting'));
    } finally {
      await server.close();
    }
  });
});
