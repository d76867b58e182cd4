/**
 * Issue #13, faults 2, 3 and 5, over a real Redis with the faulty role as a real process:
 * - a gateway SIGKILLed in the masked stage: its clients are dropouts, the round completes over the
 *   other gateway's clients with the exact sum;
 * - the active coordinator SIGKILLed mid-round: the standby (another process, same prefix, same
 *   SQLite history file) takes the lease over and records the round, completed with the exact sum;
 * - a gateway cut off from Redis (SIGSTOP) for longer than its alive time, from the masked stage on:
 *   its clients are dropouts, the round completes exactly over the others, and the partial sum the
 *   gateway sends when it wakes (SIGCONT) is refused, not counted.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { createCoordinator, type ClusterResult, type Coordinator } from '../src/cluster/coordinator.js';
import { createGateway, type Gateway } from '../src/cluster/gateway.js';
import { createShardWorker, type ShardWorker } from '../src/cluster/worker.js';
import { connect } from '../src/cluster/bus.js';
import { memoryStore } from '../src/server/store.js';
import { sqliteStore } from '../src/server/sqliteStore.js';
import type { Logger } from '../src/server/logger.js';
import { plainSum } from '../src/ring/vector.js';
import { startRedis, type TestRedis } from './redisHarness.js';
import { QUIET, SECRET, expectedSum, sameWords, vector, type ClusterClient } from './clusterHelpers.js';
import { Roles, settle, sleep, slowClient, waitFor, waitForStage } from './faultHelpers.js';

const M = 16;
const BITS = 32;
const LEASE = 1500;
/** The gateway's alive time (its default: the CLI has no flag for it). */
const GATEWAY_ALIVE = 3000;

interface Captured {
  readonly level: string;
  readonly msg: string;
  readonly fields: Record<string, unknown>;
}
function capture(): Logger & { entries: Captured[] } {
  const entries: Captured[] = [];
  return { entries, log: (level, msg, fields = {}) => void entries.push({ level, msg, fields }) };
}

const gatewayArgs = (redis: TestRedis, prefix: string, id: string, n: number) => [
  'gateway',
  '--redis',
  redis.url,
  '--prefix',
  prefix,
  '--id',
  id,
  '--port',
  '0',
  '--secret',
  SECRET,
  '--dim',
  String(M),
  '--bits',
  String(BITS),
  '--max-shard-size',
  String(n),
];

describe('fault: a role dies or is cut off mid-round', () => {
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

  /**
   * 12 clients in one shard, 8 on gateway A and 4 on gateway B (a process); every client holds its
   * masked input `holdMs` (and A's clients their unmask reply `unmaskHoldMs`), so the shard is in
   * the masked stage when `fault(B)` strikes.
   */
  async function twoGateways(
    prefix: string,
    o: { unmaskHoldMs: number; workerLogger?: Logger },
    fault: (b: Awaited<ReturnType<Roles['start']>>) => Promise<void>,
  ): Promise<{ res: ClusterResult; a: ClusterClient[]; b: ClusterClient[] }> {
    const N = 12;
    const roles = new Roles();
    let gateway: Gateway | undefined;
    let coordinator: Coordinator | undefined;
    const workers: ShardWorker[] = [];
    try {
      const gb = await roles.start(gatewayArgs(redis, prefix, 'gB', N));
      gateway = await createGateway({
        redisUrl: redis.url,
        prefix,
        id: 'gA',
        service: { port: 0, secret: SECRET, dimension: M, bits: BITS, maxClients: N, ...QUIET },
      });
      for (const i of [0, 1])
        workers.push(
          await createShardWorker({ redisUrl: redis.url, prefix, id: `w${i}`, leaseMs: LEASE, unmaskWorkers: 0, logger: o.workerLogger ?? QUIET.logger }),
        );
      coordinator = await createCoordinator({
        redisUrl: redis.url,
        prefix,
        id: 'coord',
        store: memoryStore(),
        dimension: M,
        bits: BITS,
        minShardSize: N,
        maxShardSize: N,
        minClients: N,
        startDelayMs: 200,
        stageTimeoutMs: 3000,
        dropoutRate: 0.34,
        maxRounds: 1,
        ...QUIET,
      });
      const results: ClusterResult[] = [];
      coordinator.onResult((x) => results.push(x));
      const a: ClusterClient[] = [];
      const b: ClusterClient[] = [];
      for (let i = 0; i < N; i++) {
        const onA = i < 8;
        const c = slowClient(
          onA ? gateway.url : String(gb.info['url']),
          `${onA ? 'a' : 'b'}${i}`,
          vector(700 + i, M, BITS),
          (stage) => (stage === 'masked' ? 1000 : stage === 'unmask' && onA ? o.unmaskHoldMs : 0),
          { reconnect: { maxAttempts: 1, initialDelayMs: 100, maxDelayMs: 200 } },
        );
        (onA ? a : b).push(c);
        void settle(c);
      }
      await waitForStage(r, prefix, 0, 'masked', 20_000);
      await fault(gb);
      const res = await waitFor('the round result', 30_000, async () => {
        if (results[0]) return results[0];
        const rec = await coordinator!.store.get(1);
        // (A completed record comes a moment before its result: the record is saved first.)
        if (rec?.outcome === 'aborted') throw new Error(`the round ended without a result: ${JSON.stringify(rec)}`);
        return undefined;
      });
      const rec = await coordinator.store.get(1);
      assert.equal(rec?.outcome, 'completed');
      assert.ok(sameWords(rec!.sum!, res.sum));
      return { res, a, b };
    } finally {
      await coordinator?.close();
      await Promise.all(workers.map((w) => w.close()));
      await gateway?.close();
      await roles.stopAll();
    }
  }

  test("a gateway SIGKILLed in the masked stage: its clients are dropouts, the sum over the other gateway's clients is exact", async () => {
    const { res, a, b } = await twoGateways('kg', { unmaskHoldMs: 0 }, async (gb) => {
      await gb.kill('SIGKILL');
    });
    assert.equal(res.partial, false);
    assert.deepEqual([...res.identities].sort(), a.map((c) => c.name).sort(), "exactly gateway A's clients are in the sum");
    assert.ok(
      b.every((c) => !res.identities.includes(c.name)),
      'no client of the killed gateway is in the sum',
    );
    assert.ok(sameWords(res.sum, expectedSum(a, res.identities, M, BITS)), 'the sum is the plaintext sum of the included clients');
  });

  test('a gateway paused (SIGSTOP) past its alive time from the masked stage: its clients are dropouts, its late partial sum is refused', async () => {
    const log = capture();
    const { res, a } = await twoGateways('pg', { unmaskHoldMs: 2000, workerLogger: log }, async (gb) => {
      gb.child.kill('SIGSTOP');
      // The masked stage closes at its deadline (3000 ms) without B; B wakes in the unmask stage.
      await sleep(GATEWAY_ALIVE + 300);
      gb.child.kill('SIGCONT');
    });
    assert.equal(res.partial, false);
    assert.deepEqual([...res.identities].sort(), a.map((c) => c.name).sort(), "exactly gateway A's clients are in the sum");
    assert.ok(sameWords(res.sum, expectedSum(a, res.identities, M, BITS)), 'the sum is the plaintext sum of the included clients');
    const refused = log.entries.filter((e) => e.msg.startsWith('partial sum refused') && e.fields['gateway'] === 'gB');
    assert.ok(refused.length >= 1, `the paused gateway's late partial sum was refused: ${JSON.stringify(log.entries.filter((e) => e.level !== 'info'))}`);
  });

  test('the active coordinator SIGKILLed mid-round: the standby takes the lease and records the round completed with the exact sum', async () => {
    const N = 10;
    const prefix = 'kc';
    const dir = mkdtempSync(join(tmpdir(), 'secagg-faults-'));
    const file = join(dir, 'history.sqlite');
    const roles = new Roles();
    let gateway: Gateway | undefined;
    const workers: ShardWorker[] = [];
    try {
      const coordArgs = (id: string, rounds: number) => [
        'coordinator',
        '--redis',
        redis.url,
        '--prefix',
        prefix,
        '--id',
        id,
        '--store',
        file,
        '--dim',
        String(M),
        '--bits',
        String(BITS),
        '--min-shard-size',
        String(N),
        '--max-shard-size',
        String(N),
        '--min-clients',
        String(N),
        '--start-delay',
        '200',
        '--stage-timeout',
        // Generous: stages close as soon as every client answered; the deadline only matters on a loaded machine.
        '10000',
        '--lease',
        String(LEASE),
        '--rounds',
        String(rounds),
        '--admin',
        'off',
      ];
      const active = await roles.start(coordArgs('cA', 1));
      assert.equal(active.info['active'], true);
      // The standby starts no round of its own: it only carries on the one it takes over.
      const standby = await roles.start(coordArgs('cB', 0));
      assert.equal(standby.info['active'], false);
      gateway = await createGateway({
        redisUrl: redis.url,
        prefix,
        id: 'g',
        service: { port: 0, secret: SECRET, dimension: M, bits: BITS, maxClients: N, ...QUIET },
      });
      for (const i of [0, 1]) workers.push(await createShardWorker({ redisUrl: redis.url, prefix, id: `w${i}`, leaseMs: LEASE, unmaskWorkers: 0, ...QUIET }));
      const clients: ClusterClient[] = [];
      for (let i = 0; i < N; i++) {
        const c = slowClient(gateway.url, `c${i}`, vector(900 + i, M, BITS), (stage) => (stage === 'share' ? 1000 : 0));
        clients.push(c);
        void settle(c);
      }
      await waitForStage(r, prefix, 0, 'share', 20_000);
      await active.kill('SIGKILL');
      const reports = await Promise.all(clients.map((c) => c.done));
      assert.ok(
        reports.every((x) => x[0]?.completed === true && x[0].included),
        `every client is in the sum: ${JSON.stringify(reports)}`,
      );
      const store = sqliteStore(file);
      try {
        const rec = await waitFor('the record of round 1 to end', 15_000, async () => {
          const x = await store.get(1);
          return x && x.outcome !== 'running' ? x : undefined;
        });
        assert.equal(rec.outcome, 'completed', `record: ${JSON.stringify(rec)}`);
        assert.deepEqual(
          rec.included,
          Array.from({ length: N }, (_, i) => i + 1),
        );
        assert.ok(
          sameWords(
            rec.sum!,
            plainSum(
              clients.map((c) => c.input),
              BITS,
              M,
            ),
          ),
          'the recorded sum is the plaintext sum of every input',
        );
        assert.equal((await store.list()).length, 1, 'one round in the history, recorded once');
      } finally {
        await store.close();
      }
      assert.match(standby.stderr(), /took over the running round/);
      assert.match(standby.stderr(), /"cluster round completed"/);
    } finally {
      await Promise.all(workers.map((w) => w.close()));
      await gateway?.close();
      await roles.stopAll();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
