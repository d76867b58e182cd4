/** Shared helpers of test/service*.test.ts: a server on loopback, Node clients over real WebSockets. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { createServer, signToken, silentLogger, type PublishedResult, type SecAggServer, type ServiceOptions } from '../src/server/index.js';
import { participate, type ParticipateOptions, type RoundReport } from '../src/client/index.js';
import type { WebSocketConstructor } from '../src/transport/socket.js';
import { WebSocketServer } from 'ws';
import type { AddressInfo } from 'node:net';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { decodeControl, encodeControl, isControlFrame } from '../src/transport/frames.js';
import { ControlSchema, type Control } from '../src/wire/gen/secagg/v1/service_pb.js';
import { identityPublicKey, issueCertificate } from '../src/identity/index.js';
import { PROTOCOL_VERSION } from '../src/wire/codec.js';
import { unsafeSeededRng } from '../src/rng.js';
import { randomRingVector } from '../src/sim/random.js';
import { plaintextSum } from './helpers.js';

export const SECRET = 'test-secret-0123456789abcdef';
export const WS = WebSocket as unknown as WebSocketConstructor;

export const token = (clientId: string, ttlMs = 60_000): string => signToken({ clientId, expiresAt: Date.now() + ttlMs }, SECRET);

export async function startServer(options: Partial<ServiceOptions> = {}): Promise<SecAggServer> {
  return createServer({
    secret: SECRET,
    logger: silentLogger,
    unmaskWorkers: 0,
    startDelayMs: 100,
    stageTimeoutMs: 5000,
    dimension: 64,
    bits: 16,
    ...options,
  });
}

export function vector(seed: number, m: number, bits: number): Uint32Array {
  return randomRingVector(m, bits, unsafeSeededRng(seed));
}

export { plaintextSum } from './helpers.js';

export interface NodeClient {
  readonly name: string;
  readonly input: Uint32Array;
  clientId?: number;
  readonly done: Promise<RoundReport[]>;
}

/** Start a participate() client named `name` (its identity); its ClientId is filled in on welcome. */
export function nodeClient(server: SecAggServer, name: string, input: Uint32Array, extra: Partial<ParticipateOptions> = {}): NodeClient {
  const c: { name: string; input: Uint32Array; clientId?: number; done: Promise<RoundReport[]> } = { name, input, done: Promise.resolve([]) };
  c.done = participate({
    url: server.url,
    token: token(name),
    input,
    WebSocket: WS,
    ...extra,
    onEvent: (e) => {
      if (e.type === 'welcome') c.clientId = e.clientId;
      extra.onEvent?.(e);
    },
  });
  return c;
}

export function nextResult(server: SecAggServer): Promise<PublishedResult> {
  return new Promise((resolve) => {
    const off = server.onResult((r) => {
      off();
      resolve(r);
    });
  });
}

/** A raw WebSocket that speaks only what a test tells it to. */
export interface RawClient {
  readonly ws: WebSocket;
  readonly frames: Uint8Array[];
  readonly closed: Promise<{ code: number; reason: string }>;
  hello(tok: string): void;
  /** Wait for a control frame of this kind. */
  control(kind: string, timeoutMs?: number): Promise<unknown>;
  /** Wait for the n-th protocol (non-control) frame. */
  protocolFrame(n?: number, timeoutMs?: number): Promise<Uint8Array>;
}

export async function rawClient(server: SecAggServer): Promise<RawClient> {
  const ws = new WebSocket(server.url);
  const frames: Uint8Array[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (d: Buffer) => {
    frames.push(new Uint8Array(d));
    for (const w of waiters) w();
  });
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  await new Promise<void>((ok, fail) => ws.once('open', () => ok()).once('error', fail));
  const waitFor = <T>(pick: () => T | undefined, timeoutMs: number, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const v = pick();
        if (v !== undefined) {
          waiters.delete(check);
          clearTimeout(t);
          resolve(v);
        }
      };
      const t = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  return {
    ws,
    frames,
    closed,
    hello: (tok) => ws.send(encodeControl({ case: 'hello', value: { version: PROTOCOL_VERSION, token: tok } })),
    control: (kind, timeoutMs = 5000) =>
      waitFor(
        () =>
          frames
            .filter(isControlFrame)
            .map((f) => decodeControl(f).body)
            .find((b) => b.case === kind)?.value,
        timeoutMs,
        `${kind} frame`,
      ),
    protocolFrame: (n = 1, timeoutMs = 5000) => waitFor(() => frames.filter((f) => !isControlFrame(f))[n - 1], timeoutMs, `protocol frame ${n}`),
  };
}

export function assertSum(result: PublishedResult, clients: readonly NodeClient[], m: number, bits: number): void {
  const byId = new Map(clients.map((c) => [c.clientId, c]));
  const inputs = result.included.map((id) => {
    const c = byId.get(id);
    assert.ok(c, `included client ${id} is one of ours`);
    return c.input;
  });
  assert.deepEqual(result.sum, plaintextSum(inputs, m, bits), 'the sum equals the plaintext sum of the included clients');
}

// ---- active mode ----

export interface TestIdentity {
  readonly name: string;
  readonly seed: Uint8Array;
  readonly key: Uint8Array;
  /** Issued by ISSUER_SEED. */
  readonly certificate: string;
}

export const ISSUER_SEED = new Uint8Array(32).fill(7);

export async function makeIdentity(
  name: string,
  seed = unsafeSeededRng(name.length * 7919 + [...name].reduce((a, ch) => a * 31 + ch.charCodeAt(0), 0))(32),
): Promise<TestIdentity> {
  const key = await identityPublicKey(seed);
  const certificate = await issueCertificate({ clientId: name, identityKey: key, expiresAt: Date.now() + 3600_000 }, ISSUER_SEED);
  return { name, seed, key, certificate };
}

/** An HMAC token for `name` bound to `key`. */
export const boundToken = (name: string, key: Uint8Array, ttlMs = 60_000): string =>
  signToken({ clientId: name, expiresAt: Date.now() + ttlMs, identityKey: key }, SECRET);

/**
 * A man in the middle posing as the server: relays frames both ways and lets `rewrite` change the
 * control frames the server sends (e.g. substitute an identity key in a round's directory).
 */
export async function tamperingProxy(upstreamUrl: string, rewrite: (ctl: Control) => Control): Promise<{ url: string; close(): Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const sockets = new Set<WebSocket>();
  wss.on('connection', (down: WebSocket) => {
    const up = new WebSocket(upstreamUrl);
    sockets.add(up).add(down);
    const pending: Buffer[] = [];
    const closeCode = (c: number) => (c === 1005 || c === 1006 || c === 1015 ? 1000 : c);
    up.on('open', () => {
      for (const f of pending) up.send(f);
      pending.length = 0;
    });
    down.on('message', (d: Buffer) => (up.readyState === WebSocket.OPEN ? up.send(d) : pending.push(d)));
    up.on('message', (d: Buffer) => {
      let bytes = new Uint8Array(d);
      if (isControlFrame(bytes)) {
        const inner = toBinary(ControlSchema, rewrite(fromBinary(ControlSchema, bytes.subarray(1))));
        bytes = new Uint8Array(inner.length + 1);
        bytes.set(inner, 1);
      }
      if (down.readyState === WebSocket.OPEN) down.send(bytes);
    });
    up.on('close', (code, reason) => down.readyState === WebSocket.OPEN && down.close(closeCode(code), reason));
    down.on('close', (code, reason) => (up.readyState === WebSocket.OPEN ? up.close(closeCode(code), reason) : up.terminate()));
    up.on('error', () => down.terminate());
    down.on('error', () => up.terminate());
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    close: async () => {
      for (const s of sockets) s.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
}

/** The ws WebSocket trusting `ca`: what a remote client given the service's CA file uses. */
export function trusting(ca: string): WebSocketConstructor {
  return class extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, { ca });
    }
  } as unknown as WebSocketConstructor;
}

/** A self-signed P-256 certificate for 127.0.0.1 / localhost, made by openssl in `dir`. */
export function selfSigned(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  return { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
}
