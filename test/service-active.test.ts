/**
 * Active mode over the service: long-term Ed25519 identities bound to tokens, proof of possession at
 * hello, the directory checked by clients against a pinned directory or issuer certificates, and
 * WebSocket keep-alive dropping connections that stop answering pings.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { CLOSE, encodeControl } from '../src/transport/frames.js';
import { isClientError, participate, type ClientEvent, type ReplyStage, type RoundInfo } from '../src/client/index.js';
import { helloTranscript, identityPublicKey } from '../src/identity/index.js';
import { PROTOCOL_VERSION } from '../src/wire/codec.js';
import { nodeCrypto } from '../src/crypto/node.js';
import type { Challenge } from '../src/wire/gen/secagg/v1/service_pb.js';
import type { WebSocketConstructor } from '../src/transport/socket.js';
import type { StaticTokenEntry } from '../src/server/index.js';
import {
  assertSum,
  boundToken,
  ISSUER_SEED,
  makeIdentity,
  nextResult,
  nodeClient,
  rawClient,
  startServer,
  tamperingProxy,
  token,
  vector,
  WS,
  type NodeClient,
  type TestIdentity,
} from './serviceHelpers.js';

const M = 64;
const BITS = 16;

async function identities(prefix: string, n: number): Promise<TestIdentity[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => makeIdentity(`${prefix}${i}`)));
}

const pinnedOf = (ids: readonly TestIdentity[]): Map<string, Uint8Array> => new Map(ids.map((x) => [x.name, x.key]));

describe('service: active mode', { timeout: 60_000 }, () => {
  test('an active round with a pinned directory completes with the correct sum while a client drops at the consistency check', async () => {
    const server = await startServer({ mode: 'active', minClients: 6 });
    try {
      const ids = await identities('p', 6);
      const published = nextResult(server);
      const assigned: RoundInfo[] = [];
      const clients = ids.map((id, i) =>
        nodeClient(server, id.name, vector(400 + i, M, BITS), {
          token: boundToken(id.name, id.key),
          identity: id.seed,
          directory: pinnedOf(ids),
          unsafeBeforeSend: (stage: ReplyStage) => (i === 0 && stage === 'consistency' ? 'disconnect' : 'send'),
          onEvent: (e: ClientEvent) => (e.type === 'assigned' ? assigned.push(e.round) : undefined),
        }),
      );
      const reports = await Promise.all(clients.map((c) => c.done));
      const result = await published;
      assert.equal(result.params.mode, 'active');
      // A client that drops before signing the survivor set is not in U4, but its masked input is in U3: it is in the sum.
      assert.equal(result.included.length, 6);
      assertSum(result, clients, M, BITS);
      assert.deepEqual(
        [...(result.identityKeys ?? [])].sort(),
        ids.map((x) => Buffer.from(x.key).toString('hex')).sort(),
        'the published identity keys are the proven ones',
      );
      assert.equal(assigned.length, 6, 'every client accepted its assignment');
      assert.ok(assigned.every((r) => r.identityCheck === 'pinned'));
      assert.equal(reports[0]![0]!.code, 'ERR_DISCONNECTED');
      for (const r of reports.slice(1)) assert.equal(r[0]!.included, true);
      const rec = await server.store.get(result.round);
      assert.equal(rec?.stages.consistency?.clients, 5, 'five clients signed the survivor set');
    } finally {
      await server.close();
    }
  });

  test('issuer-certified identities: the server checks certificates at hello, clients check every peer; a client dropping at masked is left out', async () => {
    const issuerKey = await identityPublicKey(ISSUER_SEED);
    const server = await startServer({ mode: 'active', minClients: 5, issuerKey });
    try {
      const ids = await identities('q', 5);
      const published = nextResult(server);
      const assigned: RoundInfo[] = [];
      const clients = ids.map((id, i) =>
        nodeClient(server, id.name, vector(500 + i, M, BITS), {
          token: boundToken(id.name, id.key),
          identity: id.seed,
          issuerKey,
          certificate: id.certificate,
          unsafeBeforeSend: (stage: ReplyStage) => (i === 2 && stage === 'masked' ? 'disconnect' : 'send'),
          onEvent: (e: ClientEvent) => (e.type === 'assigned' ? assigned.push(e.round) : undefined),
        }),
      );
      await Promise.all(clients.map((c) => c.done));
      const result = await published;
      assert.equal(result.included.length, 4);
      assert.ok(!result.included.includes(clients[2]!.clientId!));
      assertSum(result, clients, M, BITS);
      assert.equal(assigned.length, 5, 'every client accepted its assignment');
      assert.ok(assigned.every((r) => r.identityCheck === 'issuer'));

      // Without a certificate (or with one for another name) the server refuses the hello.
      const other = await makeIdentity('q-nocert');
      await assert.rejects(
        participate({
          url: server.url,
          token: boundToken(other.name, other.key),
          identity: other.seed,
          trust: 'server',
          input: vector(1, M, BITS),
          WebSocket: WS,
        }),
        (e: unknown) => isClientError(e, 'ERR_UNAUTHORIZED') && /invalid certificate/.test(e.message),
      );
      await assert.rejects(
        participate({
          url: server.url,
          token: boundToken(other.name, other.key),
          identity: other.seed,
          trust: 'server',
          certificate: ids[0]!.certificate,
          input: vector(1, M, BITS),
          WebSocket: WS,
        }),
        (e: unknown) => isClientError(e, 'ERR_UNAUTHORIZED') && /certificate is for another identity/.test(e.message),
      );
    } finally {
      await server.close();
    }
  });

  test('a token bound to another identity key is refused (signed and static tokens); unbound tokens too', async () => {
    const [alice, mallory] = await identities('t', 2);
    const server = await startServer({
      mode: 'active',
      tokens: new Map<string, string | StaticTokenEntry>([
        ['static-alice', { identity: 'alice', identityKey: alice!.key }],
        ['static-unbound', 'nobody'],
      ]),
    });
    try {
      const input = vector(1, M, BITS);
      const refused = async (tok: string, seed: Uint8Array, pattern: RegExp) =>
        assert.rejects(participate({ url: server.url, token: tok, identity: seed, trust: 'server', input, WebSocket: WS }), (e: unknown) => {
          assert.ok(isClientError(e, 'ERR_UNAUTHORIZED'), String(e));
          assert.equal(e.closeCode, CLOSE.UNAUTHORIZED);
          assert.match(e.message, pattern);
          return true;
        });
      // Mallory holds a token bound to Alice's key but only her own key.
      await refused(boundToken(alice!.name, alice!.key), mallory!.seed, /bound to another identity key/);
      await refused('static-alice', mallory!.seed, /bound to another identity key/);
      await refused(token('plain'), mallory!.seed, /not bound to an identity key/);
      await refused('static-unbound', mallory!.seed, /not bound to an identity key/);
      // Without an identity at all, the client cannot take part.
      await assert.rejects(
        participate({ url: server.url, token: boundToken(alice!.name, alice!.key), input, WebSocket: WS }),
        (e: unknown) => isClientError(e, 'ERR_UNAUTHORIZED') && /identity proof required/.test(e.message),
      );
      // The static token with the right key is welcomed.
      const welcomed = new Promise<string>((resolve) => {
        const ac = new AbortController();
        void participate({
          url: server.url,
          token: 'static-alice',
          identity: alice!.seed,
          trust: 'server',
          input,
          WebSocket: WS,
          signal: ac.signal,
          onEvent: (e) => {
            if (e.type === 'welcome') {
              resolve(e.identity);
              ac.abort();
            }
          },
        }).catch(() => {});
      });
      assert.equal(await welcomed, 'alice');
    } finally {
      await server.close();
    }
  });

  test('a client that cannot prove possession of its identity key is refused: wrong signer, replayed proof, no proof', async () => {
    const [alice, mallory] = await identities('x', 2);
    const server = await startServer({ mode: 'active' });
    try {
      const tok = boundToken(alice!.name, alice!.key);
      const hello = async (signer: Uint8Array, nonceOf?: (c: Challenge) => Uint8Array) => {
        const raw = await rawClient(server);
        const ch = (await raw.control('challenge')) as Challenge;
        assert.equal(ch.nonce.length, 32);
        const nonce = nonceOf ? nonceOf(ch) : ch.nonce;
        const transcript = await helloTranscript({ version: PROTOCOL_VERSION, nonce, serverId: ch.serverId, token: tok, identityKey: alice!.key }, nodeCrypto);
        const signature = await (await nodeCrypto.ed25519(signer)).sign(transcript);
        raw.ws.send(encodeControl({ case: 'hello', value: { version: PROTOCOL_VERSION, token: tok, proof: { identityKey: alice!.key, signature } } }));
        return { raw, ch };
      };
      // Claims Alice's key, signs with Mallory's.
      const a = await hello(mallory!.seed);
      assert.deepEqual(await a.raw.closed, { code: CLOSE.UNAUTHORIZED, reason: 'identity proof does not verify' });
      // A proof recorded on one connection does not verify on another (fresh nonce per connection).
      const first = await hello(alice!.seed);
      await first.raw.control('welcome');
      const firstNonce = first.ch.nonce;
      first.raw.ws.close();
      await first.raw.closed;
      const replay = await hello(alice!.seed, () => firstNonce);
      assert.deepEqual(await replay.raw.closed, { code: CLOSE.UNAUTHORIZED, reason: 'identity proof does not verify' });
      // No proof at all.
      const bare = await rawClient(server);
      bare.hello(tok);
      assert.deepEqual(await bare.closed, { code: CLOSE.UNAUTHORIZED, reason: 'identity proof required' });
      const metrics = await (await fetch(server.httpUrl + 'metrics')).text();
      assert.match(metrics, /secagg_connections_closed_total\{reason="unauthorized_bad_proof"\} 2/);
    } finally {
      await server.close();
    }
  });

  test('one connection per identity key: a second name bound to a connected key is refused with 4409', async () => {
    const [k] = await identities('d', 1);
    const server = await startServer({
      mode: 'active',
      tokens: new Map<string, StaticTokenEntry>([
        ['one', { identity: 'one', identityKey: k!.key }],
        ['two', { identity: 'two', identityKey: k!.key }],
      ]),
    });
    try {
      const ac = new AbortController();
      const welcomed = new Promise<void>((resolve) => {
        void participate({
          url: server.url,
          token: 'one',
          identity: k!.seed,
          trust: 'server',
          input: vector(1, M, BITS),
          WebSocket: WS,
          signal: ac.signal,
          onEvent: (e) => e.type === 'welcome' && resolve(),
        }).catch(() => {});
      });
      await welcomed;
      const closes: number[] = [];
      await assert.rejects(
        participate({
          url: server.url,
          token: 'two',
          identity: k!.seed,
          trust: 'server',
          input: vector(1, M, BITS),
          WebSocket: WS,
          reconnect: { maxAttempts: 0 },
          onEvent: (e) => e.type === 'disconnected' && closes.push(e.code),
        }),
      );
      assert.deepEqual(closes, [CLOSE.DUPLICATE_IDENTITY]);
      ac.abort();
    } finally {
      await server.close();
    }
  });

  test('a server that substitutes an identity key in the directory makes honest clients abort (pinned directory, issuer key)', async () => {
    const issuerKey = await identityPublicKey(ISSUER_SEED);
    const server = await startServer({ mode: 'active', minClients: 4, stageTimeoutMs: 3000 });
    const evil = await makeIdentity('evil');
    const ids = await identities('v', 4);
    // The "server" the clients talk to replaces v3's key with one it holds.
    const proxy = await tamperingProxy(server.url, (ctl) => {
      if (ctl.body.case === 'assignment') for (const e of ctl.body.value.directory) if (e.identity === 'v3') e.identityKey = evil.key;
      return ctl;
    });
    try {
      let published = 0;
      server.onResult(() => published++);
      const ended = new Promise<string>((r) => server.onRoundEnd((rec) => r(`${rec.outcome}`)));
      const assigned: RoundInfo[] = [];
      const clients: NodeClient[] = ids.map((id, i) => {
        const c = nodeClient(server, id.name, vector(600 + i, M, BITS), {
          url: proxy.url,
          token: boundToken(id.name, id.key),
          identity: id.seed,
          reconnect: { maxAttempts: 0 },
          // v0, v1: a pinned directory; v2 and v3 (the victim): the issuer key.
          certificate: id.certificate,
          ...(i < 2 ? { directory: pinnedOf(ids) } : { issuerKey }),
          onEvent: (e: ClientEvent) => (e.type === 'assigned' ? assigned.push(e.round) : undefined),
        });
        return c;
      });
      const outcomes = await Promise.allSettled(clients.map((c) => c.done));
      for (const [i, o] of outcomes.entries()) {
        assert.equal(o.status, 'rejected', `client v${i} aborted`);
        const e = (o as PromiseRejectedResult).reason as unknown;
        assert.ok(isClientError(e, 'ERR_IDENTITY'), `v${i}: ${String(e)}`);
        if (i < 2) assert.match(e.message, /gives v3 the key .* the pinned directory/);
        else assert.match(e.message, /(certificate of client \d+ is for another identity or key)|(own identity key)/);
      }
      assert.equal(assigned.length, 0, 'no client accepted the assignment');
      assert.equal(await ended, 'aborted');
      assert.equal(published, 0);
    } finally {
      await proxy.close();
      await server.close();
    }
  });

  test("with trust: 'server' the client takes the server at its word (documented degradation)", async () => {
    const server = await startServer({ mode: 'active', minClients: 3 });
    const evil = await makeIdentity('evil2');
    const ids = await identities('w', 3);
    const proxy = await tamperingProxy(server.url, (ctl) => {
      if (ctl.body.case === 'assignment') for (const e of ctl.body.value.directory) if (e.identity === 'w2') e.identityKey = evil.key;
      return ctl;
    });
    try {
      const assigned: Array<RoundInfo | undefined> = [];
      const clients = ids.slice(0, 2).map((id, i) =>
        nodeClient(server, id.name, vector(700 + i, M, BITS), {
          url: proxy.url,
          token: boundToken(id.name, id.key),
          identity: id.seed,
          trust: 'server',
          reconnect: { maxAttempts: 0 },
          onEvent: (e: ClientEvent) => (e.type === 'assigned' ? assigned.push(e.round) : undefined),
        }),
      );
      // w2 connects directly (its own entry is intact).
      const direct = nodeClient(server, 'w2', vector(702, M, BITS), {
        token: boundToken('w2', ids[2]!.key),
        identity: ids[2]!.seed,
        trust: 'server',
        reconnect: { maxAttempts: 0 },
      });
      await Promise.allSettled([...clients, direct].map((c) => c.done));
      assert.equal(assigned.length, 2, 'both proxied clients accepted the substituted directory');
      assert.ok(assigned.every((r) => r?.identityCheck === 'server'));
    } finally {
      await proxy.close();
      await server.close();
    }
  });

  test('a client with an identity refuses a semi-honest server', async () => {
    const server = await startServer();
    try {
      const [id] = await identities('s', 1);
      await assert.rejects(
        participate({ url: server.url, token: token(id!.name), identity: id!.seed, trust: 'server', input: vector(1, M, BITS), WebSocket: WS }),
        (e: unknown) => isClientError(e, 'ERR_IDENTITY') && /semi-honest/.test(e.message),
      );
    } finally {
      await server.close();
    }
  });
});

describe('service: keep-alive', { timeout: 30_000 }, () => {
  test('a connection that stops answering pings is dropped and counted as a dropout, long before the stage deadline', async () => {
    const server = await startServer({ minClients: 5, stageTimeoutMs: 20_000, keepAliveIntervalMs: 400 });
    try {
      // A ws client that answers pings only until told to stop: a half-open connection from the server's side.
      let mute = false;
      class Muted extends WebSocket {
        constructor(url: string) {
          super(url, { autoPong: false });
          this.on('ping', (d: Buffer) => {
            if (!mute) this.pong(d);
          });
        }
      }
      const published = nextResult(server);
      const clients = Array.from({ length: 5 }, (_, i) =>
        nodeClient(server, `k${i}`, vector(800 + i, M, BITS), {
          ...(i === 0
            ? {
                WebSocket: Muted as unknown as WebSocketConstructor,
                reconnect: { maxAttempts: 0 },
                unsafeBeforeSend: (stage: ReplyStage) => {
                  if (stage !== 'masked') return 'send';
                  mute = true;
                  return 'silent';
                },
              }
            : {}),
        }),
      );
      const t0 = Date.now();
      const result = await published;
      assert.ok(Date.now() - t0 < 10_000, 'the masked stage did not wait for its 20 s deadline');
      assert.equal(result.included.length, 4);
      assert.ok(!result.included.includes(clients[0]!.clientId!));
      assertSum(result, clients, M, BITS);
      const reports = await Promise.all(clients.map((c) => c.done));
      assert.equal(reports[0]![0]!.included, false);
      const metrics = await (await fetch(server.httpUrl + 'metrics')).text();
      assert.match(metrics, /secagg_connections_closed_total\{reason="keepalive_timeout"\} 1/);
      const rec = await server.store.get(result.round);
      assert.equal(rec?.stages.masked?.clients, 4);
    } finally {
      await server.close();
    }
  });

  test('live clients answer pings and stay connected across intervals', async () => {
    const server = await startServer({ minClients: 3, keepAliveIntervalMs: 100, autoStart: false });
    try {
      const ac = new AbortController();
      let welcomed = 0;
      const all = Array.from({ length: 3 }, (_, i) =>
        participate({
          url: server.url,
          token: token(`l${i}`),
          input: vector(i, M, BITS),
          WebSocket: WS,
          signal: ac.signal,
          onEvent: (e) => void (e.type === 'welcome' && welcomed++),
        }).catch(() => {}),
      );
      await new Promise((r) => setTimeout(r, 600));
      assert.equal(welcomed, 3);
      assert.equal((await server.status()).waiting, 3, 'nobody was dropped');
      ac.abort();
      await Promise.all(all);
    } finally {
      await server.close();
    }
  });
});
