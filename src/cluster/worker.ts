/**
 * A shard worker: runs the server state machine (through the one round runner) for the shards it
 * owns. Shard jobs reach workers through a consumer group on the `jobs` stream; a worker takes a
 * shard's lease, reads the shard's input stream through its own consumer group, and at every step
 * that changes what clients see (a stage change, messages out) commits atomically, under the lease:
 * the encoded state, the acknowledgement of the input it applied, and the frames out.
 *
 * Failover: a worker that dies stops renewing its leases. Another worker sees the shard's job
 * pending with no lease, takes the lease, loads the checkpoint, claims the input entries the dead
 * worker had read but not checkpointed (XAUTOCLAIM), replays them in stream order and goes on. What
 * the dead worker sent was committed with the checkpoint it came from, so nothing is sent twice and
 * nothing a client saw is forgotten.
 */
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { nodeCrypto } from '../crypto/node.js';
import { SecAggError } from '../errors.js';
import { createRoundRunner, type RoundEnd, type RoundRunner } from '../protocol/runner.js';
import { serverContext, stageCounts, type ServerState } from '../protocol/serverRound.js';
import { decodeServerState, encodeServerState } from '../protocol/stateCodec.js';
import { encodeClientMessage } from '../wire/codec.js';
import { createWorkerUnmasker, type WorkerUnmasker } from '../node/workerUnmasker.js';
import { toHex } from '../identity/index.js';
import type { Logger } from '../server/logger.js';
import { silentLogger } from '../server/logger.js';
import {
  acquireLease,
  append,
  bytesToWords,
  claimPending,
  commit,
  connect,
  ensureGroup,
  keys,
  readGroup,
  releaseLease,
  renewLease,
  wordsToBytes,
  type Entry,
  type Outbound,
} from './bus.js';
import { parsePlan, shardConfig, shardDirectory, type PlanMember } from './plan.js';
import { roleMetrics, type RoleMetrics } from './metrics.js';

export interface ShardWorkerOptions {
  readonly redisUrl: string;
  /** Key prefix shared by the cluster's roles (default 'secagg'). */
  readonly prefix?: string;
  /** This worker's name (default: random). */
  readonly id?: string;
  /** Lease time of a shard: a worker silent for this long loses its shards (default 10000 ms). */
  readonly leaseMs?: number;
  /** Worker threads for unmasking (default 1; 0: on the event loop). */
  readonly unmaskWorkers?: number;
  readonly logger?: Logger;
  /** /metrics and /healthz on this port (loopback); undefined: none. */
  readonly metricsPort?: number;
  readonly metricsHost?: string;
}

export interface ShardWorker {
  readonly id: string;
  /** Shards running here, as `rid/s`. */
  running(): string[];
  readonly metricsUrl: string | undefined;
  close(): Promise<void>;
}

/** What a worker keeps with the encoded state: the tag of the current masked stage (partial sums must echo it). */
interface CheckpointMeta {
  readonly tag: string;
}

function encodeCheckpoint(meta: CheckpointMeta, state: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode(JSON.stringify(meta));
  const out = new Uint8Array(4 + head.length + state.length);
  new DataView(out.buffer).setUint32(0, head.length);
  out.set(head, 4);
  out.set(state, 4 + head.length);
  return out;
}

function decodeCheckpoint(bytes: Uint8Array): { meta: CheckpointMeta; state: ServerState } {
  if (bytes.length < 4) throw new SecAggError('ERR_DECODE', 'checkpoint too short');
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  if (4 + n > bytes.length) throw new SecAggError('ERR_DECODE', 'checkpoint header overruns');
  const meta = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + n))) as CheckpointMeta;
  return { meta, state: decodeServerState(bytes.subarray(4 + n)) };
}

/** A shard's result as the worker writes it for the coordinator (the sum goes in its own key). */
export interface ShardResult {
  readonly outcome: 'completed' | 'aborted';
  readonly code: string | null;
  readonly reason: string | null;
  /** In-shard ids of the clients in the sum. */
  readonly included: readonly number[];
  readonly worker: string;
  readonly endedAt: number;
  /** How many workers ran the shard (1 + failovers). */
  readonly owners: number;
}

const GROUP = 'w';
const JOBS_GROUP = 'workers';

export async function createShardWorker(o: ShardWorkerOptions): Promise<ShardWorker> {
  const me = o.id ?? `worker-${toHex(randomBytes(4))}`;
  const k = keys(o.prefix ?? 'secagg');
  const leaseMs = o.leaseMs ?? 10_000;
  const log = o.logger ?? silentLogger;
  const r = connect(o.redisUrl, `${me}:cmd`);
  const jobsReader = connect(o.redisUrl, `${me}:jobs`);
  const unmasker: WorkerUnmasker | undefined = (o.unmaskWorkers ?? 1) > 0 ? createWorkerUnmasker({ workers: o.unmaskWorkers ?? 1 }) : undefined;
  const metrics: RoleMetrics = roleMetrics('worker');
  const shards = new Map<string, { stop: () => Promise<void> }>();
  let closing = false;

  await ensureGroup(r, k.jobs, JOBS_GROUP);
  await r.sadd(k.workers, me);
  const heartbeat = async () => {
    await r.set(k.workerAlive(me), JSON.stringify({ shards: [...shards.keys()], at: Date.now() }), 'PX', leaseMs);
  };
  await heartbeat();
  const beat = setInterval(() => void heartbeat().catch(() => {}), Math.max(200, leaseMs / 3));

  const runShard = async (jobId: string, rid: string, s: number): Promise<void> => {
    const name = `${rid}/${s}`;
    if (shards.has(name) || closing) return;
    const leaseKey = k.shardLease(rid, s);
    if (!(await acquireLease(r, leaseKey, me, leaseMs))) return;
    if ((await r.exists(k.shardResult(rid, s))) === 1) {
      await r.call('XACK', [k.jobs, JOBS_GROUP, jobId]);
      await releaseLease(r, leaseKey, me);
      return;
    }
    // The job is ours now (a failover takes it over from the dead worker's pending list).
    await r.call('XCLAIM', [k.jobs, JOBS_GROUP, me, 0, jobId, 'JUSTID']);
    const reader = connect(o.redisUrl, `${me}:${name}`);
    let stopped = false;
    let lost = false;
    const stop = async () => {
      stopped = true;
      runner?.finished === false && (await runner.abort('ERR_SHUTDOWN', 'worker stopping'));
      clearInterval(renew);
      reader.disconnect();
    };
    shards.set(name, { stop });
    let runner: RoundRunner | undefined;
    const renew = setInterval(
      () => {
        void renewLease(r, leaseKey, me, leaseMs)
          .then((ok) => {
            if (!ok && !stopped) {
              lost = true;
              log.log('warn', 'shard lease lost: another worker owns it now', { worker: me, round: rid, shard: s });
              void stop();
            }
          })
          .catch(() => {});
      },
      Math.max(100, leaseMs / 3),
    );
    try {
      const plan = parsePlan(await r.get(k.plan(rid)));
      const shard = plan.shards[s];
      if (!shard) throw new SecAggError('ERR_INTERNAL', `the plan has no shard ${s}`);
      const config = shardConfig(plan, shard);
      const byId = new Map<number, PlanMember>(shard.members.map((m) => [m.id, m]));
      const ckpt = await r.getBuffer(k.shardCkpt(rid, s));
      const resumed = ckpt ? decodeCheckpoint(ckpt) : undefined;
      const owners = Number((await r.incr(`${k.shardLease(rid, s)}:owners`)) ?? 1);
      let tag = resumed?.meta.tag ?? '';
      const inKey = k.shardIn(rid, s);
      await ensureGroup(r, inKey, GROUP);
      log.log('info', resumed ? 'shard resumed from its checkpoint' : 'shard started', {
        worker: me,
        round: rid,
        shard: s,
        stage: resumed?.state.stage ?? 'advertise',
        clients: shard.members.length,
      });
      if (resumed) metrics.inc('failovers');

      /** Input entries applied since the last commit, and frames to send with it. */
      let acks: string[] = [];
      let out: Outbound[] = [];
      let stageChanged = false;
      let chain: Promise<unknown> = Promise.resolve();
      /** Masked stage: the gateways still to deliver their partial sum. */
      let sealing: Set<string> | undefined;

      const stageRecord = (st: ServerState) =>
        JSON.stringify({ stage: st.stage, at: Date.now(), worker: me, owners, ...(stageCounts(st) ? { counts: stageCounts(st) } : {}) });

      const flush = () => {
        const st = runner!.state;
        if (st.stage === 'done' || st.stage === 'aborted') return; // the end commits on its own
        const c = {
          lease: leaseKey,
          owner: me,
          checkpoint: { key: k.shardCkpt(rid, s), bytes: encodeCheckpoint({ tag }, encodeServerState(st)) },
          input: { key: inKey, group: GROUP, acks },
          out,
          set: [{ key: k.shardStage(rid, s), value: stageRecord(st) }],
        };
        acks = [];
        out = [];
        chain = chain
          .then(() => commit(r, k, c))
          .then((ok) => {
            metrics.inc('commits');
            if (!ok && !stopped) {
              lost = true;
              log.log('warn', 'commit refused: the shard lease is gone', { worker: me, round: rid, shard: s });
              void stop();
            }
          });
      };

      const onEnd = async (end: RoundEnd) => {
        await chain.catch(() => {});
        if (lost || stopped) return;
        const result: ShardResult = {
          outcome: end.outcome,
          code: end.outcome === 'aborted' ? end.code : null,
          reason: end.outcome === 'aborted' ? end.reason : null,
          included: end.outcome === 'completed' ? [...end.result.included] : [],
          worker: me,
          endedAt: Date.now(),
          owners,
        };
        const set: { key: string; value: Uint8Array | string }[] = [
          { key: k.shardStage(rid, s), value: JSON.stringify({ stage: end.outcome === 'completed' ? 'done' : 'aborted', at: Date.now(), worker: me, owners }) },
        ];
        if (end.outcome === 'completed') set.push({ key: k.shardSum(rid, s), value: wordsToBytes(end.result.sum) });
        // The result key last: the coordinator reads the sum once it sees the result.
        set.push({ key: k.shardResult(rid, s), value: JSON.stringify(result) });
        const ok = await commit(r, k, {
          lease: leaseKey,
          owner: me,
          checkpoint: { key: k.shardCkpt(rid, s), bytes: undefined },
          input: { key: inKey, group: GROUP, acks },
          out: [...out, { key: k.events, h: { k: 'shard-end', rid, s, outcome: end.outcome } }],
          set,
        });
        if (ok) {
          await r.call('XACK', [k.jobs, JOBS_GROUP, jobId]);
          metrics.inc(end.outcome === 'completed' ? 'shardsCompleted' : 'shardsAborted');
          log.log(end.outcome === 'completed' ? 'info' : 'warn', `shard ${end.outcome}`, {
            worker: me,
            round: rid,
            shard: s,
            included: result.included.length,
            code: result.code,
            reason: result.reason,
          });
        }
      };

      runner = createRoundRunner({
        ...(resumed ? { resume: resumed.state } : { server: { config } }),
        context: serverContext({
          crypto: nodeCrypto,
          ...(plan.mode === 'active' ? { directory: shardDirectory(shard) } : {}),
          ...(unmasker ? { unmasker: unmasker.unmask } : {}),
        }),
        stageTimeoutMs: plan.stageTimeoutMs,
        send: (to, bytes) => {
          const m = byId.get(to);
          if (m) out.push({ key: k.gatewayOut(m.gw), h: { k: 'frame', rid, s, conn: m.conn }, b: bytes });
        },
        onStage: (stage, previous) => {
          stageChanged = true;
          const st = runner?.state;
          if (stage === 'masked' && st && st.stage === 'masked') {
            const perGw = new Map<string, number[]>();
            for (const u of st.u2) {
              const m = byId.get(u);
              if (!m) continue;
              let l = perGw.get(m.gw);
              if (!l) perGw.set(m.gw, (l = []));
              l.push(u);
            }
            sealing = new Set(perGw.keys());
            // Resumed in the masked stage: the gateways have its tag already, and the partial sums
            // they sent are replayed from the input stream. Nothing is announced again.
            if (previous === undefined && resumed) return;
            // Gateways add their clients' masked inputs and send one partial sum each; the tag
            // ties the partial sums to this masked stage and no other.
            tag = toHex(randomBytes(16));
            // Gateways seal a little before the stage's deadline, so their sums arrive in time.
            const sealAt = Date.now() + Math.max(plan.stageTimeoutMs - Math.min(2000, plan.stageTimeoutMs / 4), plan.stageTimeoutMs / 2);
            for (const [gw, ids] of perGw) out.push({ key: k.gatewayOut(gw), h: { k: 'masked', rid, s, tag, ids, sealAt } });
          } else if (stage !== 'masked') sealing = undefined;
        },
        onStep: () => {
          if (stageChanged || out.length > 0) {
            stageChanged = false;
            flush();
          }
        },
        onInternalError: (e) => log.log('error', 'unexpected error in a shard', { worker: me, round: rid, shard: s, error: String(e) }),
        onEnd,
      });

      const refusedTo = (from: number, code: string, reason: string) => {
        const m = byId.get(from);
        if (m) void append(r, k, [{ key: k.gatewayOut(m.gw), h: { k: 'refused', rid, s, conn: m.conn, code, reason } }]).catch(() => {});
      };

      const deliver = (e: Entry) => {
        const h = e.h;
        const begin = () => {
          acks.push(e.id);
          return true;
        };
        if (h.k === 'f' && typeof h.from === 'number' && e.b) {
          const from = h.from;
          void runner!.message(from, new Uint8Array(e.b.buffer, e.b.byteOffset, e.b.byteLength), {
            begin,
            handled: (err) => {
              if (err) {
                metrics.inc('refused');
                refusedTo(from, err.code, err.message);
              }
            },
          });
        } else if (h.k === 'gone' && typeof h.from === 'number') {
          void runner!.message(h.from, encodeClientMessage(config.roundId, h.from, { case: 'abort', value: { code: 'ERR_ABORTED' } }), { begin });
        } else if (h.k === 'partial' && typeof h.gw === 'string' && Array.isArray(h.clients) && e.b) {
          const gw = h.gw;
          if (h.tag !== tag || !sealing) {
            // A partial sum of another masked stage (a gateway that was paused, or replayed): refused, counted.
            acks.push(e.id);
            metrics.inc('refused');
            log.log('warn', 'partial sum refused: not for the current masked stage', { worker: me, round: rid, shard: s, gateway: gw });
            return;
          }
          let words: Uint32Array;
          try {
            words = bytesToWords(e.b);
          } catch {
            acks.push(e.id);
            return;
          }
          // Only the gateway a client is connected to speaks for it: a list naming another gateway's client is refused whole.
          const clients = (h.clients as unknown[]).filter((x): x is number => typeof x === 'number');
          if (clients.some((id) => byId.get(id)?.gw !== gw)) {
            acks.push(e.id);
            metrics.inc('refused');
            log.log('warn', 'partial sum refused: it names clients of another gateway', { worker: me, round: rid, shard: s, gateway: gw });
            return;
          }
          if (clients.length === 0)
            acks.push(e.id); // a gateway whose members all left: nothing to add
          else
            void runner!.partialSum(clients, words, { begin }).then((err) => {
              if (err) log.log('warn', 'partial sum refused', { worker: me, round: rid, shard: s, gateway: gw, code: err.code, reason: err.message });
            });
          sealing.delete(gw);
          // Every gateway with members in this stage has delivered: close it now, not at the deadline.
          if (sealing.size === 0) void runner!.deadline();
        } else {
          acks.push(e.id); // not ours to understand: acknowledged and dropped
        }
      };

      if (stopped) return; // stopped (lease lost, closing) while it was being set up: the finally ends the runner
      runner.start();
      // Entries a predecessor read and did not checkpoint, then new ones, in stream order.
      for (const e of await claimPending(reader, inKey, GROUP, me)) deliver(e);
      while (!stopped && !runner.finished) {
        let entries: Entry[];
        try {
          entries = await readGroup(reader, inKey, GROUP, me, '>', 500);
        } catch (e) {
          if (stopped) break;
          log.log('warn', 'reading the shard input failed; retrying', { worker: me, round: rid, shard: s, error: String(e) });
          await new Promise((ok) => setTimeout(ok, 200));
          continue;
        }
        for (const e of entries) deliver(e);
      }
      await runner.ended;
      await chain.catch(() => {});
    } catch (e) {
      log.log('error', 'shard failed', { worker: me, round: rid, shard: s, error: String(e) });
    } finally {
      clearInterval(renew);
      stopped = true;
      // A runner still going (its shard failed, or was stopped while it was being set up) is ended
      // here: its stage timer would keep the process alive, and it must not step again. With
      // `stopped` set its end commits nothing.
      if (runner && !runner.finished) await runner.abort('ERR_SHUTDOWN', 'the shard stopped on this worker').catch(() => {});
      reader.disconnect();
      shards.delete(name);
      if (!lost) await releaseLease(r, leaseKey, me).catch(() => {});
    }
  };

  /** Shard jobs pending for a worker that no longer holds their lease: take them over. */
  const reclaim = async () => {
    const pending = (await r.call('XPENDING', [k.jobs, JOBS_GROUP, '-', '+', 100])) as [string, string, number, number][];
    for (const [id] of pending ?? []) {
      const entry = (await r.callBuffer('XRANGE', [k.jobs, id, id])) as unknown[];
      const job = entry.length ? parseJob(entry[0]) : undefined;
      if (!job) {
        await r.call('XACK', [k.jobs, JOBS_GROUP, id]);
        continue;
      }
      if (shards.has(`${job.rid}/${job.s}`)) continue;
      if ((await r.exists(k.shardLease(job.rid, job.s))) === 1) continue;
      void runShard(id, job.rid, job.s);
    }
  };

  const loop = (async () => {
    let lastReclaim = 0;
    while (!closing) {
      try {
        const entries = await readGroup(jobsReader, k.jobs, JOBS_GROUP, me, '>', 500, 1);
        for (const e of entries) if (typeof e.h.rid === 'string' && typeof e.h.s === 'number') void runShard(e.id, e.h.rid, e.h.s);
        if (Date.now() - lastReclaim > leaseMs / 2) {
          lastReclaim = Date.now();
          await reclaim();
        }
      } catch (e) {
        if (closing) break;
        log.log('warn', 'reading shard jobs failed; retrying', { worker: me, error: String(e) });
        await new Promise((ok) => setTimeout(ok, 200));
      }
    }
  })();

  let http: Server | undefined;
  let metricsUrl: string | undefined;
  if (o.metricsPort !== undefined) {
    metrics.gauge('shards', () => shards.size);
    http = createHttpServer(metrics.handler(() => ({ role: 'worker', id: me, shards: [...shards.keys()] })));
    await new Promise<void>((ok, fail) => http!.once('error', fail).listen(o.metricsPort, o.metricsHost ?? '127.0.0.1', () => ok()));
    metricsUrl = `http://${o.metricsHost ?? '127.0.0.1'}:${(http.address() as AddressInfo).port}/`;
  }
  log.log('info', 'shard worker ready', { worker: me, metrics: metricsUrl ?? 'off' });

  return {
    id: me,
    running: () => [...shards.keys()],
    metricsUrl,
    async close() {
      if (closing) return;
      closing = true;
      clearInterval(beat);
      for (const sh of [...shards.values()]) await sh.stop();
      jobsReader.disconnect();
      await loop;
      await r.srem(k.workers, me).catch(() => {});
      await r.del(k.workerAlive(me)).catch(() => {});
      r.disconnect();
      await unmasker?.close();
      if (http) await new Promise((ok) => http!.close(ok));
    },
  };
}

function parseJob(item: unknown): { rid: string; s: number } | undefined {
  const [e] = (Array.isArray(item) ? [item] : []).map((x) => x as [Buffer, Buffer[]]);
  if (!e) return undefined;
  const fields = e[1];
  for (let i = 0; i + 1 < fields.length; i += 2)
    if (fields[i]!.toString() === 'h') {
      try {
        const h = JSON.parse(fields[i + 1]!.toString()) as { rid?: unknown; s?: unknown };
        if (typeof h.rid === 'string' && typeof h.s === 'number') return { rid: h.rid, s: h.s };
      } catch {
        return undefined;
      }
    }
  return undefined;
}
