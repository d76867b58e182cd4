/** Shared helpers of test/service*.test.ts: a server on loopback, Node clients over real WebSockets. */
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createServer, signToken, silentLogger, type PublishedResult, type SecAggServer, type ServiceOptions } from '../src/server/index.js';
import { participate, type ParticipateOptions, type RoundReport } from '../src/client/index.js';
import type { WebSocketConstructor } from '../src/transport/socket.js';
import { decodeControl, encodeControl, isControlFrame } from '../src/transport/frames.js';
import { PROTOCOL_VERSION } from '../src/wire/codec.js';
import { unsafeSeededRng } from '../src/rng.js';

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
  const v = new Uint32Array(unsafeSeededRng(seed)(4 * m).buffer);
  if (bits < 32) for (let i = 0; i < m; i++) v[i]! &= 2 ** bits - 1;
  return v;
}

export function plaintextSum(vectors: readonly Uint32Array[], m: number, bits: number): Uint32Array {
  const out = new Uint32Array(m);
  const mod = 2 ** bits;
  for (const x of vectors) for (let i = 0; i < m; i++) out[i] = (out[i]! + x[i]!) % mod;
  return out;
}

export interface NodeClient {
  readonly name: string;
  readonly input: Uint32Array;
  clientId?: number;
  readonly done: Promise<RoundReport[]>;
}

/** Start a participate() client named `name` (its identity); its ClientId is filled in on welcome. */
export function nodeClient(
  server: SecAggServer,
  name: string,
  input: Uint32Array,
  extra: Partial<ParticipateOptions> = {},
): NodeClient {
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
        () => frames.filter(isControlFrame).map((f) => decodeControl(f).body).find((b) => b.case === kind)?.value,
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
