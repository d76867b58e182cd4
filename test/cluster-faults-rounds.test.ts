/**
 * Issue #13, faults 4 and 6, over a real Redis with the roles in this process:
 * - Redis restarted or crashed (SIGKILL) mid-round (append-only file, fsync on every write): the round ends with the
 *   exact sum or a typed abort, and the next round completes with the exact sum;
 * - a shard below minShardSize is never formed: too few waiting clients start nothing, and a cohort
 *   that cannot be split into shards of at least the floor is refused before anything is sent;
 * - a shard's sum is never published alone: with one shard aborted, 'completed-shards:MIN'
 *   publishes the completed shards' sum marked partial, 'abort' publishes nothing and records the
 *   failed shard's code; no record or result carries a shard's sum.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { createCoordinator, type ClusterResult, type Coordinator, type CoordinatorOptions } from '../src/cluster/coordinator.js';
import { createGateway, type Gateway } from '../src/cluster/gateway.js';
import { createShardWorker, type ShardWorker } from '../src/cluster/worker.js';
import { connect, keys } from '../src/cluster/bus.js';
import { parsePlan } from '../src/cluster/plan.js';
import type { RoundRecord } from '../src/server/store.js';
import { memoryStore } from '../src/server/store.js';
import type { Logger } from '../src/server/logger.js';
import { startRedis, type TestRedis } from './redisHarness.js';
import { QUIET, SECRET, clusterClient, expectedSum, sameWords, vector, type ClusterClient } from './clusterHelpers.js';
import { settle, sleep, slowClient, waitFor, waitForStage } from './faultHelpers.js';

const M = 16;
const BITS = 32;
const LEASE = 1500;
/** Clients that give up soon once the gateway has gone (the test is over). */
const ONE_TRY = { reconnect: { maxAttempts: 1, initialDelayMs: 100, maxDelayMs: 200 } };

interface Cluster {
  readonly gateway: Gateway;
  readonly workers: ShardWorker[];
  readonly coordinator: Coordinator;
  readonly results: ClusterResult[];
  readonly ended: RoundRecord[];
  close(): Promise<void>;
}

async function startCluster(redis: TestRedis, prefix: string, o: Partial<CoordinatorOptions> & { minShardSize: number }): Promise<Cluster> {
  const gateway = await createGateway({
    redisUrl: redis.url,
    prefix,
    id: 'g',
    service: { port: 0, secret: SECRET, dimension: M, bits: BITS, maxClients: o.maxShardSize ?? 100, ...QUIET },
  });
  const workers = await Promise.all(
    [0, 1].map((i) => createShardWorker({ redisUrl: redis.url, prefix, id: `w${i}`, leaseMs: LEASE, unmaskWorkers: 0, ...QUIET })),
  );
  const coordinator = await createCoordinator({
    redisUrl: redis.url,
    prefix,
    id: 'coord',
    store: memoryStore(),
    dimension: M,
    bits: BITS,
    startDelayMs: 200,
    stageTimeoutMs: 3000,
    leaseMs: LEASE,
    ...QUIET,
    ...o,
  });
  const results: ClusterResult[] = [];
  const ended: RoundRecord[] = [];
  coordinator.onResult((x) => results.push(x));
  coordinator.onRoundEnd((x) => ended.push(x));
  return {
    gateway,
    workers,
    coordinator,
    results,
    ended,
    async close() {
      await coordinator.close();
      await Promise.all(workers.map((w) => w.close()));
      await gateway.close();
    },
  };
}

function capture(): Logger & { entries: { level: string; msg: string; fields: Record<string, unknown> }[] } {
  const entries: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  return { entries, log: (level, msg, fields = {}) => void entries.push({ level, msg, fields }) };
}

/** No result or record of any kind carries a shard's sum: only the round's total. */
function assertNoShardSums(x: { shards?: readonly object[] | undefined }): void {
  for (const s of x.shards ?? []) assert.ok(!('sum' in s), `a shard summary with a sum: ${JSON.stringify(s)}`);
}

describe('fault: Redis restarted or crashed mid-round (append-only, fsync always)', () => {
  let redis: TestRedis;
  before(async () => {
    redis = await startRedis({ appendonly: true, appendfsync: 'always' });
  });
  after(async () => {
    await redis?.stop();
  });

  for (const how of ['restart', 'crash'] as const)
    test(`${how === 'restart' ? 'restarted (SIGTERM)' : 'crashed (SIGKILL)'}: the round ends exactly or typed-aborted, and the next round completes with the exact sum`, async (t) => {
      const N = 10;
      const prefix = `r-${how}`;
      const r = connect(redis.url, 'test');
      const c = await startCluster(redis, prefix, { minShardSize: N, maxShardSize: N, minClients: N, maxRounds: 2 });
      try {
        const clients: ClusterClient[] = [];
        for (let i = 0; i < N; i++) {
          let round = 0;
          const cl = slowClient(c.gateway.url, `c${i}`, vector(300 + i, M, BITS), (stage) => (round === 1 && stage === 'share' ? 1000 : 0), {
            rounds: 2,
            onEvent: (e) => {
              if (e.type === 'assigned') round = e.round.round;
            },
          });
          clients.push(cl);
          void settle(cl);
        }
        await waitForStage(r, prefix, 0, 'share', 20_000);
        await (how === 'restart' ? redis.restart() : redis.crash());
        const first = await waitFor('round 1 to end', 30_000, () => c.ended.find((x) => x.id === 1));
        t.diagnostic(`round 1 across the restart: ${first.outcome}${first.code ? ` (${first.code}: ${first.reason})` : ''}`);
        if (first.outcome === 'completed') {
          const res = c.results.find((x) => x.round === 1);
          assert.ok(res, 'a completed round is published');
          assert.ok(sameWords(res.sum, expectedSum(clients, res.identities, M, BITS)), 'round 1: the exact sum of its included clients');
          assert.ok(sameWords(first.sum!, res.sum));
        } else {
          assert.match(String(first.code), /^ERR_[A-Z_]+$/, `round 1 aborted with a typed code: ${JSON.stringify(first)}`);
          assert.equal(
            c.results.find((x) => x.round === 1),
            undefined,
            'an aborted round publishes nothing',
          );
          assert.equal(first.sum ?? null, null);
        }
        const second = await waitFor('round 2 to end', 30_000, () => c.ended.find((x) => x.id === 2));
        assert.equal(second.outcome, 'completed', `round 2: ${JSON.stringify(second)}`);
        const res2 = await waitFor('round 2 result', 5000, () => c.results.find((x) => x.round === 2));
        assert.equal(res2.included, N, 'every client is in the next round');
        assert.ok(sameWords(res2.sum, expectedSum(clients, res2.identities, M, BITS)), 'round 2: the exact sum');
        const reports = await Promise.all(clients.map((x) => x.done));
        for (const rep of reports) assert.equal(rep[1]?.included, true);
      } finally {
        await c.close();
        r.disconnect();
      }
    });
});

describe('fault: shard floor and publication', () => {
  let redis: TestRedis;
  let r: Redis;
  before(async () => {
    redis = await startRedis();
    r = connect(redis.url, 'test');
  });
  after(async () => {
    r?.disconnect();
    await redis?.stop();
  });

  /** Nothing of a round exists in Redis under `prefix`: no current round, no plan, no job, no assignment. */
  async function nothingSent(prefix: string): Promise<void> {
    const k = keys(prefix);
    assert.equal(await r.get(k.current), null, 'no current round');
    assert.deepEqual(await r.keys(`${prefix}:round:*`), [], 'no plan');
    assert.deepEqual(await r.keys(`${prefix}:s:*`), [], 'no shard key');
    assert.equal(await r.xlen(k.jobs), 0, 'no shard job');
    assert.equal(await r.xlen(k.gatewayOut('g')), 0, 'nothing sent to the gateway');
  }

  test('fewer waiting clients than minShardSize: no round starts', async () => {
    const prefix = 'few';
    const c = await startCluster(redis, prefix, { minShardSize: 6, maxShardSize: 12 });
    const clients: ClusterClient[] = [];
    try {
      for (let i = 0; i < 5; i++) clients.push(clusterClient(c.gateway.url, `c${i}`, vector(i, M, BITS), ONE_TRY));
      await waitFor('5 waiting clients', 10_000, () => (c.gateway.status().waiting === 5 ? true : undefined));
      await sleep(1500); // well past the start delay
      assert.deepEqual(await c.coordinator.store.list(), [], 'no round in the history');
      assert.equal(c.gateway.status().inRound, 0);
      await nothingSent(prefix);
    } finally {
      await c.close();
      await Promise.all(clients.map(settle));
    }
  });

  test('a cohort that cannot be split into shards of at least the floor: refused before anything is sent', async () => {
    const prefix = 'split';
    const log = capture();
    // 8 clients, floor 6, cap 7: one shard is too big, two are too small.
    const c = await startCluster(redis, prefix, { minShardSize: 6, maxShardSize: 7, minClients: 8, logger: log });
    const clients: ClusterClient[] = [];
    try {
      for (let i = 0; i < 8; i++) clients.push(clusterClient(c.gateway.url, `c${i}`, vector(i, M, BITS), ONE_TRY));
      await waitFor('the refusal', 10_000, () =>
        log.entries.find((e) => e.level === 'error' && String(e.fields['error']).startsWith('ERR_INVALID_PARAMETERS')),
      );
      await sleep(300);
      assert.deepEqual(await c.coordinator.store.list(), [], 'no round in the history');
      assert.ok(!log.entries.some((e) => e.msg === 'cluster round started'));
      assert.equal(c.gateway.status().waiting, 8, 'every client still waits');
      await nothingSent(prefix);
    } finally {
      await c.close();
      await Promise.all(clients.map(settle));
    }
  });

  /**
   * 12 clients in 2 shards of 6; every member of shard 0 (read from the plan in Redis) leaves at
   * the masked stage, so shard 0 aborts below its threshold while shard 1 completes.
   */
  async function oneShardAborts(prefix: string, policy: CoordinatorOptions['policy']) {
    const N = 12;
    const c = await startCluster(redis, prefix, { minShardSize: 6, maxShardSize: 6, minClients: N, maxRounds: 1, ...(policy ? { policy } : {}) });
    const k = keys(prefix);
    let victims: Set<string> | undefined;
    let late = false;
    const clients: ClusterClient[] = [];
    try {
      const watch = waitFor('the plan', 20_000, async () => {
        const rid = await r.get(k.current);
        if (!rid) return undefined;
        const plan = parsePlan(await r.get(k.plan(rid)));
        victims = new Set(plan.shards[0]!.members.map((m) => m.identity));
        return plan;
      });
      for (let i = 0; i < N; i++) {
        const name = `c${i}`;
        clients.push(
          clusterClient(c.gateway.url, name, vector(100 + i, M, BITS), {
            unsafeBeforeSend: (stage) => {
              if (stage !== 'masked') return 'send';
              if (!victims) late = true;
              return victims?.has(name) ? 'disconnect' : 'send';
            },
            ...ONE_TRY,
          }),
        );
      }
      const plan = await watch;
      const rec = await waitFor('the round to end', 30_000, () => c.ended.find((x) => x.id === 1));
      assert.equal(late, false, 'the victims were known before the masked stage');
      await sleep(100);
      const stored = await c.coordinator.store.get(1);
      return { c, plan, rec, stored, clients };
    } finally {
      await c.close();
      await Promise.all(clients.map(settle));
    }
  }

  test("completed-shards:MIN with one shard aborted: the completed shard's sum, marked partial", async () => {
    const { c, plan, rec, clients } = await oneShardAborts('partial', { kind: 'completed-shards', minClients: 5 });
    assert.equal(rec.outcome, 'completed', `record: ${JSON.stringify(rec)}`);
    assert.match(String(rec.reason), /^partial: /);
    assert.equal(c.results.length, 1);
    const res = c.results[0]!;
    assert.equal(res.partial, true);
    const shard1 = plan.shards[1]!.members.map((m) => m.identity).sort();
    assert.deepEqual([...res.identities].sort(), shard1, "only the completed shard's clients are counted");
    assert.equal(res.included, 6);
    assert.ok(sameWords(res.sum, expectedSum(clients, res.identities, M, BITS)), 'the sum is the plaintext sum of the counted clients');
    assert.ok(sameWords(rec.sum!, res.sum));
    const [s0, s1] = res.shards;
    assert.equal(s0?.outcome, 'aborted');
    assert.equal(s0?.counted, false);
    assert.match(String(s0?.code), /^ERR_/);
    assert.equal(s1?.outcome, 'completed');
    assert.equal(s1?.counted, true);
    assertNoShardSums(res);
    assertNoShardSums(rec);
  });

  test("policy 'abort' with one shard aborted: nothing is published, the record is aborted with the failed shard's code", async () => {
    const { c, rec, stored } = await oneShardAborts('abort', undefined);
    assert.equal(rec.outcome, 'aborted', `record: ${JSON.stringify(rec)}`);
    assert.equal(c.results.length, 0, 'nothing published');
    assert.equal(rec.sum ?? null, null, 'no sum recorded');
    assert.equal(rec.included, null);
    const s0 = rec.shards?.[0];
    assert.equal(s0?.outcome, 'aborted');
    assert.match(String(s0?.code), /^ERR_/);
    assert.equal(rec.code, s0?.code, "the round's code is the failed shard's");
    assert.equal(rec.shards?.[1]?.outcome, 'completed');
    assert.equal(rec.shards?.[1]?.counted, false, 'the completed shard is not counted');
    assertNoShardSums(rec);
    assert.equal(stored?.outcome, 'aborted');
    assert.equal(stored?.sum ?? null, null);
  });
});
