/**
 * The cluster (src/cluster/) over a real Redis: 2 gateways, 3 shard workers and a coordinator,
 * with clients on both gateways, give the exact sum of the survivors' inputs, on the complete graph
 * and on SecAgg+'s sparse graph, with dropouts; a shard below minShardSize is never formed; no
 * shard's sum is kept or published alone.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCoordinator, type Coordinator } from '../src/cluster/coordinator.js';
import { createGateway, type Gateway } from '../src/cluster/gateway.js';
import { createShardWorker, type ShardWorker } from '../src/cluster/worker.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryStore } from '../src/server/store.js';
import { selfSigned, trusting } from './serviceHelpers.js';
import { startRedis, type TestRedis } from './redisHarness.js';
import { QUIET, SECRET, clusterClient, expectedSum, nextClusterResult, sameWords, vector, type ClusterClient } from './clusterHelpers.js';

const M = 64;
const BITS = 32;

interface Cluster {
  gateways: Gateway[];
  workers: ShardWorker[];
  coordinator: Coordinator;
  close(): Promise<void>;
}

async function startCluster(
  redis: TestRedis,
  prefix: string,
  o: { minShardSize: number; maxShardSize: number; graph: 'complete' | 'harary'; minClients: number; dropoutRate?: number },
): Promise<Cluster> {
  const gateways = await Promise.all(
    [0, 1].map((i) =>
      createGateway({
        redisUrl: redis.url,
        prefix,
        id: `gw${i}`,
        service: { port: 0, secret: SECRET, dimension: M, bits: BITS, maxClients: o.maxShardSize, ...QUIET },
      }),
    ),
  );
  const workers = await Promise.all([0, 1, 2].map((i) => createShardWorker({ redisUrl: redis.url, prefix, id: `w${i}`, unmaskWorkers: 0, ...QUIET })));
  const coordinator = await createCoordinator({
    redisUrl: redis.url,
    prefix,
    id: 'coord',
    store: memoryStore(),
    dimension: M,
    bits: BITS,
    graph: o.graph,
    minShardSize: o.minShardSize,
    maxShardSize: o.maxShardSize,
    minClients: o.minClients,
    startDelayMs: 300,
    stageTimeoutMs: 4000,
    dropoutRate: o.dropoutRate ?? 0.1,
    ...QUIET,
  });
  return {
    gateways,
    workers,
    coordinator,
    async close() {
      await coordinator.close();
      await Promise.all(workers.map((w) => w.close()));
      await Promise.all(gateways.map((g) => g.close()));
    },
  };
}

/** `p`, or a failure after `ms` that says what the history holds (an aborted round's reason). */
async function withTimeout<T>(p: Promise<T>, ms: number, history: () => Promise<unknown>): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => void history().then((h) => reject(new Error(`no result in ${ms} ms; history: ${JSON.stringify(h)}`))), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(t);
  }
}

describe('cluster: 2 gateways, 3 shard workers, one coordinator over a real Redis', () => {
  let redis: TestRedis;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });

  const cases = [
    { graph: 'complete', clients: 30, shard: 10, dropoutRate: 0.1 },
    { graph: 'harary', clients: 60, shard: 30, dropoutRate: 0.2 },
  ] as const;
  for (const { graph, clients: n, shard, dropoutRate } of cases) {
    const shards = n / shard;
    const drops = n / 10;
    test(`${graph} graph: ${n} clients over both gateways in ${shards} shards, ${drops} dropping before masking: the exact sum of the ${n - drops}`, async () => {
      const c = await startCluster(redis, `t-${graph}`, { minShardSize: shard, maxShardSize: shard, graph, minClients: n, dropoutRate });
      try {
        const result = withTimeout(nextClusterResult(c.coordinator), 30_000, () => c.coordinator.store.list());
        const clients: ClusterClient[] = [];
        for (let i = 0; i < n; i++) {
          const gw = c.gateways[i % 2]!;
          const drop = i % 10 === 3; // one in ten leaves after sharing its keys
          clients.push(
            clusterClient(
              gw.url,
              `c${i}`,
              vector(1000 + i, M, BITS),
              drop ? { unsafeBeforeSend: (stage) => (stage === 'masked' ? 'disconnect' : 'send') } : {},
            ),
          );
        }
        const r = await result;
        assert.equal(r.shards.length, shards);
        for (const s of r.shards) assert.equal(s.clients, shard);
        if (graph === 'harary')
          assert.ok(
            r.shards.every((s) => s.degree < shard - 1),
            'SecAgg+: a sparse graph in every shard',
          );
        assert.equal(r.partial, false);
        assert.equal(r.included, n - drops, 'the clients that left before masking are not in the sum');
        for (let i = 0; i < n; i++) assert.equal(r.identities.includes(`c${i}`), i % 10 !== 3, `c${i}`);
        assert.ok(sameWords(r.sum, expectedSum(clients, r.identities, M, BITS)), 'the sum is the plaintext sum of the survivors');
        // The history keeps the round's total and each shard's outcome, never a shard's sum.
        const rec = await c.coordinator.store.get(1);
        assert.equal(rec?.outcome, 'completed');
        assert.equal(rec?.shards?.length, shards);
        assert.ok(rec?.shards?.every((s) => !('sum' in s)));
        assert.ok(sameWords(rec!.sum!, r.sum));
      } finally {
        await c.close();
      }
    });
  }

  test('a gateway with a certificate serves wss:// only: clients that trust it complete a round over TLS with the exact sum; a plain ws:// client does not get in', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'secagg-gw-tls-'));
    const prefix = 't-tls';
    const tls = selfSigned(dir);
    const gateway = await createGateway({
      redisUrl: redis.url,
      prefix,
      id: 'tls',
      service: { port: 0, secret: SECRET, dimension: M, bits: BITS, maxClients: 8, tls, ...QUIET },
    });
    const workers = [await createShardWorker({ redisUrl: redis.url, prefix, id: 'w', unmaskWorkers: 0, ...QUIET })];
    const coordinator = await createCoordinator({
      redisUrl: redis.url,
      prefix,
      store: memoryStore(),
      dimension: M,
      bits: BITS,
      minShardSize: 4,
      maxShardSize: 8,
      minClients: 5,
      startDelayMs: 200,
      stageTimeoutMs: 4000,
      ...QUIET,
    });
    try {
      assert.match(gateway.url, /^wss:\/\//);
      const result = withTimeout(nextClusterResult(coordinator), 30_000, () => coordinator.store.list());
      const clients = Array.from({ length: 5 }, (_, i) => clusterClient(gateway.url, `tls${i}`, vector(4000 + i, M, BITS), { WebSocket: trusting(tls.cert) }));
      const r = await result;
      assert.equal(r.included, 5);
      assert.ok(sameWords(r.sum, expectedSum(clients, r.identities, M, BITS)));
      // Plain ws:// to the TLS port: no welcome, the client gives up with a connection error.
      const plain = clusterClient(gateway.url.replace('wss://', 'ws://'), 'plain', vector(1, M, BITS), { reconnect: { maxAttempts: 1, maxDelayMs: 50 } });
      await assert.rejects(plain.done);
    } finally {
      await coordinator.close();
      await Promise.all(workers.map((w) => w.close()));
      await gateway.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
