/**
 * The cluster's use of Redis, in one place: the key names, the stream entries the roles exchange,
 * the leases, and the one atomic commit of a shard worker. Every role talks to Redis only through
 * this module, so the whole wire between processes can be read here.
 *
 * Which Redis mechanism does what, and why:
 * - **Streams** carry every message between roles (XADD / XREAD / XREADGROUP): they keep order per
 *   stream, survive a reader that is away for a while, and (with AOF persistence) a Redis restart.
 * - **Consumer groups** hand shard jobs to workers (`jobs`, group `workers`) and track, per shard,
 *   which input entries a worker has read but not yet checkpointed: the pending-entries list is
 *   exactly what a successor must replay (XAUTOCLAIM), and XACK happens in the same atomic step as
 *   the checkpoint.
 * - **Leases** are keys with an expiry (SET NX PX, renewed by a script that checks the owner): one
 *   active coordinator, one owner per shard. A paused or dead owner loses its lease; a script that
 *   checks the owner fences every write it makes after that.
 * - **A Lua script** makes a worker's stage transition atomic: checkpoint, acknowledgements and the
 *   outgoing frames are written together or not at all, and only while the worker holds the lease.
 *
 * Each stream entry has two fields: `h`, a JSON header, and optionally `b`, binary bytes (a
 * protocol frame, a partial sum's words, a checkpoint).
 */
import { Redis } from 'ioredis';

export interface Entry {
  readonly id: string;
  readonly h: Record<string, unknown>;
  readonly b: Buffer | undefined;
}

export interface Outbound {
  readonly key: string;
  readonly h: Record<string, unknown>;
  readonly b?: Uint8Array | undefined;
}

/** Key names under one prefix (several clusters, or tests, can share a Redis). */
export function keys(prefix: string) {
  const p = prefix;
  return {
    coordinator: `${p}:coordinator`,
    gateways: `${p}:gateways`,
    gatewayAlive: (gw: string) => `${p}:gw:${gw}:alive`,
    waiting: (gw: string) => `${p}:gw:${gw}:waiting`,
    gatewayOut: (gw: string) => `${p}:gw:${gw}:out`,
    workers: `${p}:workers`,
    workerAlive: (w: string) => `${p}:worker:${w}:alive`,
    jobs: `${p}:jobs`,
    events: `${p}:events`,
    current: `${p}:round:current`,
    plan: (rid: string) => `${p}:round:${rid}:plan`,
    final: (rid: string) => `${p}:round:${rid}:final`,
    shardIn: (rid: string, s: number) => `${p}:s:${rid}:${s}:in`,
    shardLease: (rid: string, s: number) => `${p}:s:${rid}:${s}:lease`,
    shardCkpt: (rid: string, s: number) => `${p}:s:${rid}:${s}:ckpt`,
    shardResult: (rid: string, s: number) => `${p}:s:${rid}:${s}:result`,
    shardSum: (rid: string, s: number) => `${p}:s:${rid}:${s}:sum`,
    shardStage: (rid: string, s: number) => `${p}:s:${rid}:${s}:stage`,
    bytes: `${p}:stats:bytes`,
  };
}
export type Keys = ReturnType<typeof keys>;

/** A Redis connection with the options every role wants: retries forever, never gives up a queued command. */
export function connect(url: string, name: string): Redis {
  const r = new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    retryStrategy: (times) => Math.min(50 * times, 1000),
    lazyConnect: false,
  });
  // Errors while Redis is away are retried by ioredis; the roles see them as slow commands.
  r.on('error', () => {});
  return r;
}

const asBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** XADD arguments of one entry (after the key and id). */
function entryArgs(h: Record<string, unknown>, b?: Uint8Array): (string | Buffer)[] {
  const args: (string | Buffer)[] = ['h', JSON.stringify(h)];
  if (b !== undefined) args.push('b', asBuffer(b));
  return args;
}

/** Parse the entries of an XREAD / XREADGROUP / XAUTOCLAIM reply read with callBuffer. */
function parseEntries(items: unknown): Entry[] {
  const out: Entry[] = [];
  if (!Array.isArray(items)) return out;
  for (const item of items) {
    if (!Array.isArray(item) || item.length < 2) continue;
    const [id, fields] = item as [Buffer, Buffer[] | null];
    if (!Array.isArray(fields)) continue; // deleted entry (XAUTOCLAIM reports them with null fields)
    let h: Record<string, unknown> = {};
    let b: Buffer | undefined;
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const f = fields[i]!.toString();
      if (f === 'h') {
        try {
          const v = JSON.parse(fields[i + 1]!.toString()) as unknown;
          if (v && typeof v === 'object') h = v as Record<string, unknown>;
        } catch {
          h = {};
        }
      } else if (f === 'b') b = fields[i + 1]!;
    }
    out.push({ id: id.toString(), h, b });
  }
  return out;
}

/**
 * The entries of a one-stream XREAD / XREADGROUP reply: RESP2 gives [[key, entries]], RESP3 (a map,
 * which ioredis flattens) [key, entries].
 */
function streamReply(reply: unknown): Entry[] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  if (Array.isArray(reply[0])) return parseEntries((reply[0] as unknown[])[1]);
  return parseEntries(reply[1]);
}

/** XREAD of one stream from `after` (exclusive), blocking up to `blockMs`. */
export async function readStream(r: Redis, key: string, after: string, blockMs: number, count = 500): Promise<Entry[]> {
  return streamReply(await r.callBuffer('XREAD', ['COUNT', count, 'BLOCK', blockMs, 'STREAMS', key, after]));
}

/** XREADGROUP of one stream: `'>'` for new entries, `'0'` for this consumer's pending ones. */
export async function readGroup(r: Redis, key: string, group: string, consumer: string, from: string, blockMs: number, count = 500): Promise<Entry[]> {
  const args: (string | number)[] = ['GROUP', group, consumer, 'COUNT', count];
  if (from === '>') args.push('BLOCK', blockMs);
  args.push('STREAMS', key, from);
  return streamReply(await r.callBuffer('XREADGROUP', args));
}

/** Create a consumer group reading the stream from its start (the stream is made if missing); an existing group is kept. */
export async function ensureGroup(r: Redis, key: string, group: string): Promise<void> {
  try {
    await r.call('XGROUP', ['CREATE', key, group, '0', 'MKSTREAM']);
  } catch (e) {
    if (!String(e).includes('BUSYGROUP')) throw e;
  }
}

/** Take every entry pending in `group` (read by any consumer, not acknowledged) for `consumer`, in stream order. */
export async function claimPending(r: Redis, key: string, group: string, consumer: string): Promise<Entry[]> {
  const out: Entry[] = [];
  let cursor = '0-0';
  for (;;) {
    const reply = (await r.callBuffer('XAUTOCLAIM', [key, group, consumer, 0, cursor, 'COUNT', 1000])) as [Buffer, unknown, unknown?] | null;
    if (!reply) break;
    out.push(...parseEntries(reply[1]));
    cursor = reply[0]!.toString();
    if (cursor === '0-0') break;
  }
  out.sort((a, b) => compareIds(a.id, b.id));
  return out;
}

/** Order of two stream ids. */
function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
  return am < bm ? -1 : am > bm ? 1 : as < bs ? -1 : as > bs ? 1 : 0;
}

/** Append entries (one round trip); counts their bytes in the cluster's traffic counter. */
export async function append(r: Redis, k: Keys, entries: readonly Outbound[]): Promise<void> {
  if (entries.length === 0) return;
  const p = r.pipeline();
  let bytes = 0;
  for (const e of entries) {
    const args = entryArgs(e.h, e.b);
    for (const a of args) bytes += a.length;
    p.callBuffer('XADD', [e.key, '*', ...args]);
  }
  p.incrby(k.bytes, bytes);
  const results = await p.exec();
  for (const [err] of results ?? []) if (err) throw err;
}

const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/** Take a lease if nobody holds it (true), or renew it if we do. */
export async function acquireLease(r: Redis, key: string, owner: string, ttlMs: number): Promise<boolean> {
  if ((await r.call('SET', [key, owner, 'NX', 'PX', ttlMs])) === 'OK') return true;
  return (await r.eval(RENEW, 1, key, owner, ttlMs)) === 1;
}

/** Renew a lease we hold; false when it lapsed or someone else holds it now. */
export async function renewLease(r: Redis, key: string, owner: string, ttlMs: number): Promise<boolean> {
  return (await r.eval(RENEW, 1, key, owner, ttlMs)) === 1;
}

export async function releaseLease(r: Redis, key: string, owner: string): Promise<void> {
  await r.eval(RELEASE, 1, key, owner);
}

/**
 * A worker's atomic step: only while `owner` holds the lease, write the checkpoint, acknowledge the
 * applied input entries, and append the outgoing entries — all, or (lease lost) none.
 * KEYS: lease, ckpt, in-stream, then one key per outgoing entry. ARGV: owner, group, ckpt bytes (''
 * to keep the checkpoint), the number of acks, the ack ids, then per outgoing entry its h and b ('' for none).
 */
const COMMIT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3]) end
local n = tonumber(ARGV[4])
for i = 1, n do redis.call('XACK', KEYS[3], ARGV[2], ARGV[4 + i]) end
local o = 4 + n
for k = 4, #KEYS do
  local h = ARGV[o + 1]
  local b = ARGV[o + 2]
  o = o + 2
  if b == '' then redis.call('XADD', KEYS[k], '*', 'h', h) else redis.call('XADD', KEYS[k], '*', 'h', h, 'b', b) end
end
return 1`;

export interface Commit {
  readonly lease: string;
  readonly owner: string;
  readonly checkpoint: { readonly key: string; readonly bytes: Uint8Array | undefined };
  readonly input: { readonly key: string; readonly group: string; readonly acks: readonly string[] };
  readonly out: readonly Outbound[];
  /** Extra plain keys to set in the same step (e.g. a shard's result). */
  readonly set?: readonly { readonly key: string; readonly value: Uint8Array | string }[];
}

/** Run a worker's atomic step; false when the lease was lost (nothing was written). */
export async function commit(r: Redis, k: Keys, c: Commit): Promise<boolean> {
  const keysList: string[] = [c.lease, c.checkpoint.key, c.input.key];
  const argv: (string | Buffer)[] = [
    c.owner,
    c.input.group,
    c.checkpoint.bytes ? asBuffer(c.checkpoint.bytes) : '',
    String(c.input.acks.length),
    ...c.input.acks,
  ];
  let bytes = c.checkpoint.bytes?.length ?? 0;
  for (const e of c.out) {
    keysList.push(e.key);
    const h = JSON.stringify(e.h);
    argv.push(h, e.b ? asBuffer(e.b) : '');
    bytes += h.length + (e.b?.length ?? 0);
  }
  // The extra keys go through a second script call inside the same MULTI: both run, or neither.
  const m = r.multi();
  m.eval(COMMIT, keysList.length, ...keysList, ...argv);
  for (const s of c.set ?? []) {
    m.eval(
      `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[2], ARGV[2]) return 1 else return 0 end`,
      2,
      c.lease,
      s.key,
      c.owner,
      typeof s.value === 'string' ? s.value : asBuffer(s.value),
    );
    bytes += s.value.length;
  }
  m.incrby(k.bytes, bytes);
  const results = await m.exec();
  if (!results) return false;
  for (const [err] of results) if (err) throw err;
  return results[0]![1] === 1;
}

/** A Uint32Array's bytes (little-endian on every platform Node runs on) and back. */
export function wordsToBytes(w: Uint32Array): Uint8Array {
  return new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
}
export function bytesToWords(b: Uint8Array): Uint32Array {
  if (b.byteLength % 4 !== 0) throw new RangeError('a word vector must be a multiple of 4 bytes');
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return new Uint32Array(copy.buffer);
}
