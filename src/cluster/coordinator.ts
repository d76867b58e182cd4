/**
 * The coordinator: one active at a time (a lease in Redis), any number on standby. The active one
 * draws each round's cohort from every live gateway's waiting clients, plans the shards (each an
 * independent SecAgg instance of at least `minShardSize` clients), hands the shards to the workers
 * through the `jobs` stream, waits for every shard's result, adds the shard sums and records and
 * publishes the round. A standby that takes the lease over goes on with the round in Redis.
 *
 * The coordinator learns each shard's sum, so the shard is the privacy unit. It never publishes or
 * records a shard's sum on its own: only the round's total, and only under the shard policy (every
 * shard completed, or — `completed-shards` — the completed ones, reported as such, when they hold
 * at least `minClients` clients).
 */
import { randomBytes, randomInt } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Redis } from 'ioredis';
import { SecAggError, isSecAggError } from '../errors.js';
import { toHex } from '../identity/index.js';
import { validateConfig, type Mode } from '../protocol/config.js';
import { stagesOf } from '../protocol/stages.js';
import { maxClientMessageBytes } from '../protocol/limits.js';
import { planShards } from '../graph/shards.js';
import { jsonLogger, type Logger } from '../server/logger.js';
import { Metrics } from '../server/metrics.js';
import { createHttpHandler } from '../server/http.js';
import { memoryStore, type RoundRecord, type RoundStore, type ShardSummary } from '../server/store.js';
import type { ClusterStatus, ServiceStatus } from '../server/types.js';
import { acquireLease, bytesToWords, connect, keys, releaseLease, type Keys } from './bus.js';
import { parsePlan, shardConfig, type PlanMember, type PlanShard, type RoundPlan, type ShardPolicy } from './plan.js';
import type { ShardResult } from './worker.js';

export interface CoordinatorOptions {
  readonly redisUrl: string;
  readonly prefix?: string;
  readonly id?: string;
  /** The coordinator lease: a standby takes over this long after the active one stops renewing (default 3000 ms). */
  readonly leaseMs?: number;
  /** The history (default: in memory; give a PostgreSQL store so every coordinator shares it). */
  readonly store?: RoundStore;
  readonly dimension: number;
  readonly bits?: number;
  readonly mode?: Mode;
  /** γ: the fraction of a shard's clients that may collude with the server (default 0). */
  readonly corruptionRate?: number;
  /** σ: a shard leaks more than its sum with probability ≤ 2^−σ (default 40). */
  readonly securityBits?: number;
  /** Each shard's graph: 'complete' (SecAgg) or 'harary' (SecAgg+, the recommended degree). */
  readonly graph?: 'complete' | 'harary';
  /** Expected fraction of clients that drop, for the shards' parameters (default 0.05). */
  readonly dropoutRate?: number;
  readonly minClients?: number;
  readonly maxClients?: number;
  /** The privacy floor: no shard has fewer clients (default 100; tests set it lower). */
  readonly minShardSize: number;
  readonly maxShardSize?: number;
  readonly startDelayMs?: number;
  readonly stageTimeoutMs?: number;
  readonly maxRounds?: number;
  readonly autoStart?: boolean;
  readonly policy?: ShardPolicy;
  readonly logger?: Logger;
  /** The dashboard, /metrics and /api/* on this listener; undefined: none. */
  readonly admin?: { readonly port: number; readonly host?: string };
  readonly adminTokens?: readonly string[];
}

/** A completed cluster round, as subscribers receive it. */
export interface ClusterResult {
  readonly round: number;
  readonly rid: string;
  /** Σ inputs mod 2^bits over the included clients of the counted shards. */
  readonly sum: Uint32Array;
  /** Clients in the sum. */
  readonly included: number;
  readonly identities: readonly string[];
  /** True when shards aborted and the sum is over the completed ones only (policy 'completed-shards'). */
  readonly partial: boolean;
  readonly shards: readonly ShardSummary[];
}

export interface Coordinator {
  readonly id: string;
  readonly adminUrl: string | undefined;
  readonly store: RoundStore;
  isActive(): boolean;
  onResult(listener: (r: ClusterResult) => void): () => void;
  onRoundEnd(listener: (r: RoundRecord) => void): () => void;
  clusterStatus(): Promise<ClusterStatus>;
  close(): Promise<void>;
}

interface Waiting {
  readonly gw: string;
  readonly conn: number;
  readonly identity: string;
  readonly identityKey?: string;
  readonly certificate?: string;
  readonly expiresAt?: number;
}

export async function createCoordinator(co: CoordinatorOptions): Promise<Coordinator> {
  const me = co.id ?? `coord-${toHex(randomBytes(4))}`;
  const k = keys(co.prefix ?? 'secagg');
  const leaseMs = co.leaseMs ?? 3000;
  const log = co.logger ?? jsonLogger();
  const store = co.store ?? memoryStore();
  const bits = co.bits ?? 32;
  const mode = co.mode ?? 'semi-honest';
  const graph = co.graph ?? 'complete';
  const minClients = Math.max(3, co.minClients ?? co.minShardSize);
  const maxClients = co.maxClients ?? 10_000;
  const stageTimeoutMs = co.stageTimeoutMs ?? 30_000;
  const startDelayMs = co.startDelayMs ?? 1000;
  const maxRounds = co.maxRounds ?? Infinity;
  const policy: ShardPolicy = co.policy ?? { kind: 'abort' };
  if (!(co.minShardSize >= 3)) throw new RangeError('minShardSize must be ≥ 3');
  if (minClients < co.minShardSize) throw new RangeError('minClients must be ≥ minShardSize');
  const r = connect(co.redisUrl, `${me}:cmd`);
  const metrics = new Metrics();
  const resultListeners = new Set<(x: ClusterResult) => void>();
  const endListeners = new Set<(x: RoundRecord) => void>();
  let active = false;
  let closing = false;
  let roundsStarted = 0;
  let enoughSince: number | undefined;
  let watching: { plan: RoundPlan; record: RoundRecord } | undefined;
  let busy = false;

  const liveGateways = async (): Promise<string[]> => {
    const all = await r.smembers(k.gateways);
    const out: string[] = [];
    for (const gw of all) if ((await r.exists(k.gatewayAlive(gw))) === 1) out.push(gw);
    return out.sort();
  };

  const waitingClients = async (): Promise<Waiting[]> => {
    const now = Date.now();
    const out: Waiting[] = [];
    for (const gw of await liveGateways()) {
      const h = await r.hgetall(k.waiting(gw));
      for (const [conn, v] of Object.entries(h)) {
        try {
          const w = JSON.parse(v) as Omit<Waiting, 'gw' | 'conn'>;
          if (w.expiresAt !== undefined && w.expiresAt <= now) continue;
          out.push({ ...w, gw, conn: Number(conn) });
        } catch {
          // a malformed entry is not a client
        }
      }
    }
    return out;
  };

  const startRound = async (pool: Waiting[]): Promise<void> => {
    for (let i = pool.length - 1; i > 0; i--) {
      const j = randomInt(i + 1);
      [pool[i], pool[j]] = [pool[j]!, pool[i]!];
    }
    const drawn = pool.slice(0, maxClients);
    const sizes = planShards({
      clients: drawn.length,
      minShardSize: co.minShardSize,
      ...(co.maxShardSize !== undefined ? { maxShardSize: co.maxShardSize } : {}),
      dropoutRate: co.dropoutRate ?? 0.05,
      corruptionRate: co.corruptionRate ?? 0,
      securityBits: co.securityBits ?? 40,
      graph,
    });
    const rid = toHex(randomBytes(16));
    const shards: PlanShard[] = [];
    let at = 0;
    for (const [index, sh] of sizes.shards.entries()) {
      const members: PlanMember[] = drawn.slice(at, at + sh.size).map((w, i) => ({
        gw: w.gw,
        conn: w.conn,
        id: i + 1,
        identity: w.identity,
        ...(w.identityKey ? { identityKey: w.identityKey } : {}),
        ...(w.certificate ? { certificate: w.certificate } : {}),
      }));
      at += sh.size;
      const shard: PlanShard = { index, roundId: toHex(randomBytes(16)), threshold: sh.threshold, degree: sh.degree, corruption: sh.corruption, members };
      shards.push(shard);
    }
    const startedAt = Date.now();
    const base: Omit<RoundRecord, 'id'> = {
      roundId: rid,
      params: {
        bits,
        dimension: co.dimension,
        threshold: Math.min(...shards.map((s) => s.threshold)),
        degree: Math.max(...shards.map((s) => s.degree)),
        mode,
        cohort: drawn.length,
        corruption: Math.max(...shards.map((s) => s.corruption)),
      },
      startedAt,
      endedAt: null,
      outcome: 'running',
      code: null,
      reason: null,
      stage: 'advertise',
      stages: {},
      included: null,
      shards: shards.map((s) => ({ index: s.index, clients: s.members.length, threshold: s.threshold, degree: s.degree, outcome: 'running' })),
    };
    const number = await store.begin(base);
    const shape = { bits, dimension: co.dimension, mode } as RoundPlan;
    // Every shard's parameters are checked as the workers will check them, before anything is sent.
    for (const s of shards) validateConfig(shardConfig(shape, s));
    const probe = shardConfig(
      shape,
      shards.reduce((a, b) => (a.members.length >= b.members.length ? a : b)),
    );
    const plan: RoundPlan = {
      rid,
      number,
      startedAt,
      bits,
      dimension: co.dimension,
      mode,
      stageTimeoutMs,
      maxFrameBytes: maxClientMessageBytes(probe),
      deadline: startedAt + (stagesOf(mode).length + 2) * stageTimeoutMs + 5000,
      policy,
      shards,
    };
    // Fenced by the lease: WATCH makes the transaction fail if the lease changed hands since we
    // checked it (a coordinator paused past its lease must not start a round beside its successor).
    const notStarted = async () => {
      await store.save({
        ...base,
        id: number,
        endedAt: Date.now(),
        outcome: 'aborted',
        code: 'ERR_ABORTED',
        reason: 'the coordinator lost its lease before the round started',
        stage: 'aborted',
      });
      log.log('warn', 'lease lost while starting a round: nothing was sent', { coordinator: me, round: number });
    };
    await r.watch(k.coordinator);
    if ((await r.get(k.coordinator)) !== me) {
      await r.unwatch();
      return notStarted();
    }
    const m = r.multi();
    const byGw = new Map<string, string[]>();
    for (const w of drawn) {
      let l = byGw.get(w.gw);
      if (!l) byGw.set(w.gw, (l = []));
      l.push(String(w.conn));
    }
    for (const [gw, conns] of byGw) m.hdel(k.waiting(gw), ...conns);
    m.set(k.plan(rid), JSON.stringify(plan));
    m.set(k.current, rid);
    // Assignments before jobs, in each gateway's stream: a worker's first frames come after them.
    for (const gw of byGw.keys()) m.xadd(k.gatewayOut(gw), '*', 'h', JSON.stringify({ k: 'assign', rid }));
    for (const s of shards) m.xadd(k.jobs, '*', 'h', JSON.stringify({ rid, s: s.index }));
    const res = await m.exec();
    if (res === null) return notStarted();
    for (const [err] of res) if (err) throw err;
    roundsStarted++;
    metrics.roundStarted();
    watching = { plan, record: { ...base, id: number } };
    log.log('info', 'cluster round started', {
      coordinator: me,
      round: number,
      rid,
      clients: drawn.length,
      shards: shards.map((s) => ({ clients: s.members.length, threshold: s.threshold, degree: s.degree })),
      gateways: byGw.size,
    });
  };

  /** Read every shard's result; undefined for shards still running. */
  const results = async (plan: RoundPlan): Promise<(ShardResult | undefined)[]> => {
    const raw = await r.mget(...plan.shards.map((s) => k.shardResult(plan.rid, s.index)));
    return raw.map((x) => {
      if (x === null) return undefined;
      try {
        return JSON.parse(x) as ShardResult;
      } catch {
        return { outcome: 'aborted', code: 'ERR_INTERNAL', reason: 'unreadable shard result', included: [], worker: '', endedAt: Date.now(), owners: 0 };
      }
    });
  };

  interface Decision {
    readonly completed: boolean;
    readonly partial: boolean;
    readonly code: string | null;
    readonly reason: string | null;
    readonly counted: readonly number[];
    readonly results: readonly (ShardResult | null)[];
  }

  const decide = (rs: readonly (ShardResult | undefined)[]): Decision => {
    const filled: ShardResult[] = rs.map(
      (x, i) =>
        x ?? {
          outcome: 'aborted',
          code: 'ERR_ABORTED',
          reason: `shard ${i} did not end by the round's deadline`,
          included: [],
          worker: '',
          endedAt: Date.now(),
          owners: 0,
        },
    );
    const done = filled.flatMap((x, i) => (x.outcome === 'completed' ? [i] : []));
    const failed = filled.flatMap((x, i) => (x.outcome === 'completed' ? [] : [i]));
    if (failed.length === 0) return { completed: true, partial: false, code: null, reason: null, counted: done, results: filled };
    const first = filled[failed[0]!]!;
    const why = `shard${failed.length > 1 ? 's' : ''} ${failed.join(', ')} of ${filled.length} aborted (shard ${failed[0]}: ${first.code}: ${first.reason})`;
    if (policy.kind === 'completed-shards' && done.length > 0) {
      const clients = done.reduce((a, i) => a + filled[i]!.included.length, 0);
      if (clients >= policy.minClients)
        return {
          completed: true,
          partial: true,
          code: null,
          reason: `partial: ${why}; the sum is over shards ${done.join(', ')}`,
          counted: done,
          results: filled,
        };
      return {
        completed: false,
        partial: false,
        code: first.code ?? 'ERR_ABORTED',
        reason: `${why}; the completed shards hold ${clients} clients, below the policy's minimum of ${policy.minClients}`,
        counted: [],
        results: filled,
      };
    }
    return { completed: false, partial: false, code: first.code ?? 'ERR_ABORTED', reason: why, counted: [], results: filled };
  };

  const finish = async (plan: RoundPlan, record: RoundRecord, rs: readonly (ShardResult | undefined)[]) => {
    // The decision is made once (SET NX): a coordinator taking over mid-publication repeats it, never changes it.
    const proposed = decide(rs);
    await r.set(k.final(plan.rid), JSON.stringify(proposed), 'NX');
    const d = JSON.parse((await r.get(k.final(plan.rid))) ?? JSON.stringify(proposed)) as Decision;
    let sum: Uint32Array | undefined;
    const identities: string[] = [];
    let included = 0;
    if (d.completed) {
      sum = new Uint32Array(plan.dimension);
      const mask = bits === 32 ? 0xffffffff : 2 ** bits - 1;
      for (const i of d.counted) {
        const bytes = await r.getBuffer(k.shardSum(plan.rid, i));
        if (!bytes) throw new SecAggError('ERR_INTERNAL', `shard ${i}'s sum is missing`);
        const w = bytesToWords(bytes);
        if (w.length !== plan.dimension) throw new SecAggError('ERR_INTERNAL', `shard ${i}'s sum has ${w.length} words, not ${plan.dimension}`);
        for (let j = 0; j < w.length; j++) sum[j] = ((sum[j]! + w[j]!) & mask) >>> 0;
        const res = d.results[i]!;
        const byId = new Map(plan.shards[i]!.members.map((m) => [m.id, m]));
        for (const id of res.included) identities.push(byId.get(id)?.identity ?? '');
        included += res.included.length;
      }
    }
    const now = Date.now();
    const shardsSummary: ShardSummary[] = plan.shards.map((s, i) => {
      const res = d.results[i];
      return {
        index: s.index,
        clients: s.members.length,
        threshold: s.threshold,
        degree: s.degree,
        outcome: res?.outcome ?? 'aborted',
        included: res?.included.length ?? 0,
        counted: d.counted.includes(i),
        ...(res?.code ? { code: res.code } : {}),
        ...(res?.worker ? { worker: res.worker } : {}),
        ...(res?.owners ? { owners: res.owners } : {}),
      };
    });
    const rec: RoundRecord = {
      ...record,
      endedAt: now,
      outcome: d.completed ? 'completed' : 'aborted',
      code: d.code,
      reason: d.reason,
      stage: d.completed ? 'done' : 'aborted',
      // The clients in the sum, numbered across the round's shards (shard-major, 1-based).
      included: d.completed ? countedOrdinals(plan, d) : null,
      sum: sum ?? null,
      shards: shardsSummary,
    };
    await store.save(rec);
    metrics.roundEnded(rec);
    // Every gateway with members hears the end: its clients get their 'finished' frame and wait again.
    const gws = new Set(plan.shards.flatMap((s) => s.members.map((m) => m.gw)));
    const survivors = included;
    const m = r.multi();
    for (const gw of gws)
      m.xadd(
        k.gatewayOut(gw),
        '*',
        'h',
        JSON.stringify({
          k: 'finished',
          rid: plan.rid,
          completed: d.completed,
          code: d.code ?? '',
          reason: d.reason ?? '',
          survivors,
          shards: plan.shards.map((s, i) => ({ s: s.index, counted: d.counted.includes(i), included: d.results[i]?.included ?? [] })),
        }),
      );
    // The shards' leases go: a worker still running a shard the deadline gave up on stops, and
    // writes nothing more. `current` is cleared only if it is still this round (a coordinator that
    // was paused here must not clear the round its successor started since).
    for (const s of plan.shards) m.del(k.shardLease(plan.rid, s.index));
    m.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`, 1, k.current, plan.rid);
    await m.exec();
    log.log(
      d.completed ? 'info' : 'warn',
      d.completed ? (d.partial ? 'cluster round completed over some shards' : 'cluster round completed') : 'cluster round aborted',
      {
        coordinator: me,
        round: rec.id,
        rid: plan.rid,
        included,
        cohort: rec.params.cohort,
        code: d.code,
        reason: d.reason,
        ms: now - plan.startedAt,
        shards: shardsSummary.map((s) => ({ outcome: s.outcome, included: s.included, owners: s.owners ?? 0 })),
      },
    );
    if (d.completed && sum)
      for (const f of resultListeners)
        safe(log, () => f({ round: rec.id, rid: plan.rid, sum: sum.slice(), included, identities, partial: d.partial, shards: shardsSummary }));
    for (const f of endListeners) safe(log, () => f(rec));
    // The round's keys go a while later (a gateway may still be reading its last frames).
    setTimeout(() => void cleanup(r, k, plan).catch(() => {}), 2 * leaseMs).unref();
  };

  const tick = async () => {
    if (busy || closing) return;
    busy = true;
    try {
      const was = active;
      active = await acquireLease(r, k.coordinator, me, leaseMs);
      if (!active) {
        if (was) log.log('warn', 'coordinator lease lost: standing by', { coordinator: me });
        watching = undefined;
        return;
      }
      if (!was) {
        log.log('info', 'coordinator active', { coordinator: me });
        const cur = await r.get(k.current);
        if (cur) {
          const plan = parsePlan(await r.get(k.plan(cur)));
          const record = (await store.get(plan.number)) ?? undefined;
          if (record) {
            watching = { plan, record };
            log.log('info', 'took over the running round', { coordinator: me, round: plan.number, rid: plan.rid });
          } else await r.del(k.current);
        } else {
          const orphans = await store.abortUnfinished('ERR_INTERRUPTED', 'the coordinator stopped while the round was running', Date.now());
          if (orphans.length) log.log('warn', 'rounds left running by a stopped coordinator recorded as aborted', { rounds: orphans });
        }
      }
      if (watching) {
        const { plan, record } = watching;
        // Redis lost the round (restarted without its data): it cannot finish; recorded as aborted.
        if ((await r.exists(k.plan(plan.rid))) === 0) {
          watching = undefined;
          await store.save({
            ...record,
            endedAt: Date.now(),
            outcome: 'aborted',
            code: 'ERR_ABORTED',
            reason: "Redis lost the round's state",
            stage: 'aborted',
          });
          metrics.roundEnded({ ...record, outcome: 'aborted', code: 'ERR_ABORTED' } as RoundRecord);
          log.log('warn', "cluster round aborted: Redis lost the round's state", { coordinator: me, round: plan.number });
          return;
        }
        const rs = await results(plan);
        if (rs.every((x) => x !== undefined) || Date.now() > plan.deadline) {
          watching = undefined;
          await finish(plan, record, rs);
        }
        return;
      }
      if (co.autoStart === false || roundsStarted >= maxRounds) return;
      const pool = await waitingClients();
      if (pool.length < minClients) {
        enoughSince = undefined;
        return;
      }
      enoughSince ??= Date.now();
      if (pool.length >= maxClients || Date.now() - enoughSince >= startDelayMs) {
        enoughSince = undefined;
        await startRound(pool);
      }
    } catch (e) {
      log.log('error', 'coordinator step failed', { coordinator: me, error: isSecAggError(e) ? `${e.code}: ${e.message}` : String(e) });
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), 100);
  await tick();

  const clusterStatus = async (): Promise<ClusterStatus> => {
    const gwIds = (await r.smembers(k.gateways)).sort();
    const gateways = await Promise.all(
      gwIds.map(async (id) => {
        const v = await r.get(k.gatewayAlive(id));
        const info = v ? (JSON.parse(v) as { waiting?: number; connections?: number }) : {};
        return { id, alive: v !== null, waiting: info.waiting ?? 0, connections: info.connections ?? 0 };
      }),
    );
    const wIds = (await r.smembers(k.workers)).sort();
    const workers = await Promise.all(
      wIds.map(async (id) => {
        const v = await r.get(k.workerAlive(id));
        return { id, alive: v !== null, shards: v ? ((JSON.parse(v) as { shards?: string[] }).shards ?? []) : [] };
      }),
    );
    let round: ClusterStatus['round'] = null;
    const cur = await r.get(k.current);
    if (cur) {
      try {
        const plan = parsePlan(await r.get(k.plan(cur)));
        const stages = await r.mget(...plan.shards.map((s) => k.shardStage(cur, s.index)));
        round = {
          number: plan.number,
          rid: plan.rid,
          startedAt: plan.startedAt,
          deadline: plan.deadline,
          shards: plan.shards.map((s, i) => {
            const st = stages[i] ? (JSON.parse(stages[i]!) as { stage: string; worker?: string; owners?: number }) : undefined;
            return { index: s.index, clients: s.members.length, stage: st?.stage ?? 'queued', worker: st?.worker ?? null, owners: st?.owners ?? 0 };
          }),
        };
      } catch {
        round = null;
      }
    }
    return { coordinator: { id: me, active }, gateways, workers, round, redisBytes: Number((await r.get(k.bytes)) ?? 0) };
  };

  const status = async (): Promise<ServiceStatus> => {
    const cluster = await clusterStatus();
    const now = Date.now();
    return {
      now,
      connections: cluster.gateways.reduce((a, g) => a + g.connections, 0),
      waiting: cluster.gateways.reduce((a, g) => a + g.waiting, 0),
      round: null,
      totals: { ...metrics.rounds },
      recent: await store.list({ limit: 50 }),
      cluster,
    };
  };

  let http: Server | undefined;
  let adminUrl: string | undefined;
  if (co.admin) {
    http = createHttpServer(
      createHttpHandler({
        log,
        metrics,
        store,
        admin: true,
        adminTokens: co.adminTokens ?? [],
        resultsTokens: [],
        status,
        health: () => ({ connections: 0, pending: 0, waiting: 0, roundRunning: watching !== undefined }),
        closing: () => closing,
      }),
    );
    const host = co.admin.host ?? '127.0.0.1';
    await new Promise<void>((ok, fail) => http!.once('error', fail).listen(co.admin!.port, host, () => ok()));
    adminUrl = `http://${host}:${(http.address() as AddressInfo).port}/`;
  }
  log.log('info', 'coordinator ready', { coordinator: me, active, admin: adminUrl ?? 'off' });

  return {
    id: me,
    adminUrl,
    store,
    isActive: () => active,
    onResult(l) {
      resultListeners.add(l);
      return () => resultListeners.delete(l);
    },
    onRoundEnd(l) {
      endListeners.add(l);
      return () => endListeners.delete(l);
    },
    clusterStatus,
    async close() {
      if (closing) return;
      closing = true;
      clearInterval(timer);
      while (busy) await new Promise((ok) => setTimeout(ok, 20));
      if (active) await releaseLease(r, k.coordinator, me).catch(() => {});
      r.disconnect();
      if (http)
        await new Promise<void>((ok) => {
          http!.close(() => ok());
          http!.closeAllConnections();
        });
      await store.close();
    },
  };
}

/** The included clients of the counted shards, numbered across the round (shard-major, 1-based). */
function countedOrdinals(plan: RoundPlan, d: { counted: readonly number[]; results: readonly (ShardResult | null)[] }): number[] {
  const out: number[] = [];
  let base = 0;
  for (const [i, s] of plan.shards.entries()) {
    if (d.counted.includes(i)) for (const id of d.results[i]!.included) out.push(base + id);
    base += s.members.length;
  }
  return out;
}

async function cleanup(r: Redis, k: Keys, plan: RoundPlan): Promise<void> {
  const ks: string[] = [k.plan(plan.rid), k.final(plan.rid)];
  for (const s of plan.shards) {
    const i = s.index;
    ks.push(
      k.shardIn(plan.rid, i),
      k.shardCkpt(plan.rid, i),
      k.shardResult(plan.rid, i),
      k.shardSum(plan.rid, i),
      k.shardStage(plan.rid, i),
      `${k.shardLease(plan.rid, i)}:owners`,
    );
  }
  await r.del(...ks);
}

function safe(log: Logger, f: () => void): void {
  try {
    f();
  } catch (e) {
    log.log('error', 'listener threw', { error: String(e) });
  }
}
