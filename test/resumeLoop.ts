/**
 * A round driven one event at a time (one message to a client, one message to the server, or one
 * deadline), so a test can stop it after any event, write every state down, and go on from the
 * decoded states — in this process or in another one (test/resume-child.ts). Helper only: no tests.
 */
import { clientContext, handleClientMessage, type ClientContext, type ClientState } from '../src/protocol/clientRound.js';
import { handleServerDeadline, handleServerMessage, serverContext, type Outgoing, type ServerContext, type ServerState } from '../src/protocol/serverRound.js';
import { decodeClientState, decodeServerState, encodeClientState, encodeServerState } from '../src/protocol/stateCodec.js';
import { STAGES, type Stage } from '../src/protocol/stages.js';
import { nodeCrypto } from '../src/crypto/node.js';
import { unsafeSeededRng } from '../src/rng.js';
import type { ClientId } from '../src/ids.js';

/** Everything a round is between two events: the states and the messages in flight. */
export interface Round {
  server: ServerState;
  clients: Map<number, ClientState>;
  /** Server messages not yet delivered. */
  toClients: Outgoing[];
  /** Client messages not yet delivered. */
  toServer: Array<{ from: ClientId; bytes: Uint8Array }>;
  /** Clients that go silent once the server reaches this stage (they get nothing from then on). */
  readonly silentFrom: ReadonlyMap<number, Stage>;
}

/** The contexts of one process: its own crypto and RNG, the directory and identities (long-term, not round state). */
export interface Contexts {
  readonly server: ServerContext;
  readonly clients: ReadonlyMap<number, ClientContext>;
}

export function contextsFor(
  ids: readonly number[],
  seed: number,
  directory?: ReadonlyMap<number, Uint8Array>,
  identities?: ReadonlyMap<number, Uint8Array>,
): Contexts {
  return {
    server: serverContext({ crypto: nodeCrypto, rng: unsafeSeededRng(seed), ...(directory ? { directory } : {}) }),
    clients: new Map(
      ids.map((id) => [
        id,
        clientContext({
          crypto: nodeCrypto,
          rng: unsafeSeededRng(seed * 1009 + id),
          ...(directory && identities ? { directory, identity: identities.get(id)! } : {}),
        }),
      ]),
    ),
  };
}

function silent(r: Round, to: number): boolean {
  const from = r.silentFrom.get(to);
  const stage = r.server.stage;
  return from !== undefined && (stage === 'done' || stage === 'aborted' || STAGES.indexOf(from) <= STAGES.indexOf(stage));
}

/**
 * One event: the next server message to a client, else the next client message to the server,
 * else the stage's deadline. False once the round is over and nothing is in flight.
 */
export async function step(r: Round, ctx: Contexts): Promise<boolean> {
  const out = r.toClients.shift();
  if (out !== undefined) {
    if (silent(r, out.to)) return true;
    const c = await handleClientMessage(ctx.clients.get(out.to)!, r.clients.get(out.to)!, out.bytes);
    r.clients.set(out.to, c.state);
    if (c.outgoing) r.toServer.push({ from: out.to, bytes: c.outgoing });
    return true;
  }
  const over = r.server.stage === 'done' || r.server.stage === 'aborted';
  const msg = r.toServer.shift();
  if (msg !== undefined) {
    if (over) return true;
    const s = await handleServerMessage(ctx.server, r.server, msg.from, msg.bytes);
    r.server = s.state;
    r.toClients.push(...s.outgoing);
    return true;
  }
  if (over) return false;
  const s = await handleServerDeadline(ctx.server, r.server);
  r.server = s.state;
  r.toClients.push(...s.outgoing);
  return true;
}

/** Runs events until the round is over; returns how many it took. */
export async function runToEnd(r: Round, ctx: Contexts, limit = 10_000): Promise<number> {
  let n = 0;
  while (await step(r, ctx)) if (++n > limit) throw new Error('the round does not end');
  return n;
}

/** The round written down: every state encoded, the messages in flight as bytes. */
export interface Written {
  readonly server: Uint8Array;
  readonly clients: ReadonlyArray<readonly [number, Uint8Array]>;
  readonly toClients: ReadonlyArray<readonly [number, Uint8Array]>;
  readonly toServer: ReadonlyArray<readonly [number, Uint8Array]>;
  readonly silentFrom: ReadonlyArray<readonly [number, Stage]>;
}

export function writeDown(r: Round): Written {
  return {
    server: encodeServerState(r.server),
    clients: [...r.clients].map(([id, s]) => [id, encodeClientState(s)] as const),
    toClients: r.toClients.map((o) => [o.to, o.bytes.slice()] as const),
    toServer: r.toServer.map((o) => [o.from, o.bytes.slice()] as const),
    silentFrom: [...r.silentFrom],
  };
}

export function readBack(w: Written): Round {
  return {
    server: decodeServerState(w.server),
    clients: new Map(w.clients.map(([id, b]) => [id, decodeClientState(b)])),
    toClients: w.toClients.map(([to, bytes]) => ({ to: to as ClientId, bytes })),
    toServer: w.toServer.map(([from, bytes]) => ({ from: from as ClientId, bytes })),
    silentFrom: new Map(w.silentFrom),
  };
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

/** As JSON (the bytes in base64), for a file another process reads. */
export function toJson(w: Written): string {
  return JSON.stringify({
    server: b64(w.server),
    clients: w.clients.map(([id, b]) => [id, b64(b)]),
    toClients: w.toClients.map(([id, b]) => [id, b64(b)]),
    toServer: w.toServer.map(([id, b]) => [id, b64(b)]),
    silentFrom: w.silentFrom,
  });
}

export function fromJson(text: string): Written {
  const j = JSON.parse(text) as {
    server: string;
    clients: [number, string][];
    toClients: [number, string][];
    toServer: [number, string][];
    silentFrom: [number, Stage][];
  };
  return {
    server: unb64(j.server),
    clients: j.clients.map(([id, s]) => [id, unb64(s)] as const),
    toClients: j.toClients.map(([id, s]) => [id, unb64(s)] as const),
    toServer: j.toServer.map(([id, s]) => [id, unb64(s)] as const),
    silentFrom: j.silentFrom,
  };
}
