/**
 * Helpers for the cluster's fault tests (test/cluster-faults*.test.ts): honest slow clients (a
 * WebSocket that holds a chosen stage's reply for a while, like a slow network), a watch on a
 * shard's stage key in Redis, role processes started and always stopped, and polling. Registers no
 * tests.
 */
import WebSocket from 'ws';
import type { Redis } from 'ioredis';
import type { ReplyStage } from '../src/client/index.js';
import type { WebSocketConstructor, WebSocketLike } from '../src/transport/socket.js';
import { keys } from '../src/cluster/bus.js';
import { clusterClient, startRole, type ClusterClient, type RoleProcess } from './clusterHelpers.js';
import type { ParticipateOptions } from '../src/client/index.js';

export const sleep = (ms: number): Promise<void> => new Promise((ok) => setTimeout(ok, ms));

/** Poll `f` every `everyMs` until it returns a value other than undefined; fails after `ms` saying `what`. */
export async function waitFor<T>(what: string, ms: number, f: () => Promise<T | undefined> | T | undefined, everyMs = 25): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * A participate() client whose reply in the stages `holdMs(stage)` names is held that long before it
 * goes on the wire (a slow link, not a protocol change: the bytes are the ones the client made).
 * Replies keep their order.
 */
export function slowClient(
  url: string,
  name: string,
  input: Uint32Array,
  holdMs: (stage: ReplyStage) => number,
  extra: Partial<ParticipateOptions> = {},
): ClusterClient {
  let next = 0;
  const Slow = class implements WebSocketLike {
    private readonly ws: WebSocket;
    private queue: Promise<void> = Promise.resolve();
    private held = 0;
    constructor(u: string) {
      this.ws = new WebSocket(u);
    }
    get binaryType(): string {
      return this.ws.binaryType;
    }
    set binaryType(v: string) {
      this.ws.binaryType = v as WebSocket['binaryType'];
    }
    get readyState(): number {
      return this.ws.readyState;
    }
    send(data: Uint8Array): void {
      const d = next;
      next = 0;
      if (d === 0 && this.held === 0) {
        this.ws.send(data);
        return;
      }
      this.held++;
      this.queue = this.queue
        .then(() => sleep(d))
        .then(() => {
          this.held--;
          if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data);
        });
    }
    close(code?: number, reason?: string): void {
      this.ws.close(code, reason);
    }
    addEventListener(type: string, listener: (event: never) => void): void {
      this.ws.addEventListener(type as 'open', listener as () => void);
    }
  };
  const user = extra.unsafeBeforeSend;
  return clusterClient(url, name, input, {
    ...extra,
    WebSocket: Slow as unknown as WebSocketConstructor,
    unsafeBeforeSend: (stage, bytes) => {
      const decision = user ? user(stage, bytes) : 'send';
      if (decision === 'send') next = holdMs(stage);
      return decision;
    },
  });
}

export interface StageRecord {
  readonly rid: string;
  readonly stage: string;
  readonly worker: string;
  readonly owners: number;
}

/** The current round's shard `s` stage record in Redis, or undefined (no round, not written yet). */
export async function shardStage(r: Redis, prefix: string, s: number): Promise<StageRecord | undefined> {
  const k = keys(prefix);
  const rid = await r.get(k.current);
  if (!rid) return undefined;
  const v = await r.get(k.shardStage(rid, s));
  if (!v) return undefined;
  const st = JSON.parse(v) as { stage: string; worker: string; owners: number };
  return { rid, stage: st.stage, worker: st.worker, owners: st.owners };
}

/** Wait until the current round's shard `s` is in `stage`. */
export function waitForStage(r: Redis, prefix: string, s: number, stage: string, ms: number): Promise<StageRecord> {
  return waitFor(`shard ${s} in stage ${stage}`, ms, async () => {
    const st = await shardStage(r, prefix, s);
    return st?.stage === stage ? st : undefined;
  });
}

/** Role processes started by a test, all stopped (SIGKILL) by `stopAll`, even when the test failed. */
export class Roles {
  readonly all: RoleProcess[] = [];
  async start(args: string[]): Promise<RoleProcess> {
    const p = await startRole(args);
    this.all.push(p);
    return p;
  }
  byId(id: string): RoleProcess | undefined {
    return this.all.find((p) => p.info['id'] === id);
  }
  async stopAll(): Promise<void> {
    // SIGKILL ends a stopped (SIGSTOP) process too.
    await Promise.all(this.all.map((p) => p.kill('SIGKILL')));
  }
}

/** Swallow a client's end (a client of a killed gateway rejects): the test reads its reports when it needs them. */
export function settle(c: ClusterClient): Promise<unknown> {
  return c.done.catch((e: unknown) => e);
}
