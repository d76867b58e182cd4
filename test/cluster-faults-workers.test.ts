/**
 * Issue #13, fault 1: a shard worker SIGKILLed in each stage of its shard (advertise, share, masked,
 * unmask) is replaced by another worker, which resumes the shard from its checkpoint; the round
 * completes with the exact sum of every client's input, and the record names two owners for the
 * shard. Real Redis, the workers as `secagg shard-worker` processes; the gateway, the coordinator
 * and the clients in this process. The clients hold the reply of the stage under test for a while
 * (a slow link), so the shard is in that stage when its worker is killed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { createCoordinator, type ClusterResult, type Coordinator } from '../src/cluster/coordinator.js';
import { createGateway, type Gateway } from '../src/cluster/gateway.js';
import { connect } from '../src/cluster/bus.js';
import { memoryStore } from '../src/server/store.js';
import { startRedis, type TestRedis } from './redisHarness.js';
import { QUIET, SECRET, expectedSum, sameWords, vector, type ClusterClient } from './clusterHelpers.js';
import { Roles, settle, slowClient, waitFor, waitForStage } from './faultHelpers.js';

const M = 16;
const BITS = 32;
const N = 10;
const PREFIX = 'kw';
const LEASE = 1500;
const HOLD = 1500;
/** The stage whose worker round k (1-based) kills. */
const STAGES = ['advertise', 'share', 'masked', 'unmask'] as const;

describe('fault: a shard worker SIGKILLed in every stage', () => {
  let redis: TestRedis;
  let r: Redis;
  let gateway: Gateway;
  let coordinator: Coordinator;
  const roles = new Roles();
  const results: ClusterResult[] = [];
  const clients: ClusterClient[] = [];
  let workerSeq = 0;
  const startWorker = () =>
    roles.start(['shard-worker', '--redis', redis.url, '--prefix', PREFIX, '--id', `w${workerSeq++}`, '--lease', String(LEASE), '--unmask-workers', '0']);

  before(async () => {
    redis = await startRedis();
    r = connect(redis.url, 'test');
    await Promise.all([startWorker(), startWorker()]);
    gateway = await createGateway({
      redisUrl: redis.url,
      prefix: PREFIX,
      id: 'gw0',
      service: { port: 0, secret: SECRET, dimension: M, bits: BITS, maxClients: N, ...QUIET },
    });
    coordinator = await createCoordinator({
      redisUrl: redis.url,
      prefix: PREFIX,
      id: 'coord',
      store: memoryStore(),
      dimension: M,
      bits: BITS,
      minShardSize: N,
      maxShardSize: N,
      minClients: N,
      startDelayMs: 200,
      stageTimeoutMs: 6000,
      maxRounds: STAGES.length,
      ...QUIET,
    });
    coordinator.onResult((x) => results.push(x));
    for (let i = 0; i < N; i++) {
      let round = 0;
      const c = slowClient(gateway.url, `c${i}`, vector(500 + i, M, BITS), (stage) => (stage === STAGES[round - 1] ? HOLD : 0), {
        rounds: STAGES.length,
        onEvent: (e) => {
          if (e.type === 'assigned') round = e.round.round;
        },
      });
      clients.push(c);
      void settle(c);
    }
  });
  after(async () => {
    await coordinator?.close();
    await gateway?.close();
    await roles.stopAll();
    r?.disconnect();
    await redis?.stop();
  });

  for (const [i, stage] of STAGES.entries()) {
    test(`killed in ${stage}: another worker resumes the shard and the sum is exact`, async () => {
      const number = i + 1;
      const st = await waitForStage(r, PREFIX, 0, stage, 20_000);
      const victim = roles.byId(st.worker);
      assert.ok(victim, `the shard's worker ${st.worker} is one of ours`);
      await victim.kill('SIGKILL');
      // A replacement, so two live workers remain for the next round's kill.
      await startWorker();
      const res = await waitFor(`round ${number}'s result`, 30_000, () => results.find((x) => x.round === number));
      const rec = await coordinator.store.get(number);
      assert.equal(rec?.outcome, 'completed', `record: ${JSON.stringify(rec)}`);
      assert.equal(res.partial, false);
      assert.equal(res.shards.length, 1);
      const shard = res.shards[0]!;
      assert.ok((shard.owners ?? 0) >= 2, `the killed shard had ${shard.owners} owners`);
      assert.notEqual(shard.worker, st.worker, 'the shard ended on another worker');
      assert.ok((rec?.shards?.[0]?.owners ?? 0) >= 2, 'the record shows the failover');
      // The successor loaded the checkpoint of the stage the shard was in, not a fresh round.
      const successor = roles.byId(shard.worker!);
      assert.ok(successor, `the shard ended on ${shard.worker}, one of ours`);
      const resumed = successor
        .stderr()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l['msg'] === 'shard resumed from its checkpoint' && l['round'] === st.rid);
      assert.equal(resumed?.['stage'], stage, `the successor resumed the shard in ${stage}`);
      // The slow clients were only slow: every one of them is in the sum.
      assert.equal(res.included, N);
      assert.ok(sameWords(res.sum, expectedSum(clients, res.identities, M, BITS)), 'the sum is the plaintext sum of the included clients');
      assert.ok(sameWords(rec!.sum!, res.sum));
    });
  }
});
