/**
 * The dashboard's cluster panel in headless Chromium. Against a real cluster over a real Redis (two
 * gateways, two shard workers, a coordinator serving the dashboard): /api/status has a `cluster`
 * field with every gateway, worker and the running round's shards, and the page shows them — one
 * shard held in its masked stage by a client that never sends its input, the other done. Against a
 * fixed status: a gateway whose heartbeat lapsed shows as down and a shard run by a second worker
 * is flagged as failed over. Screenshots go to test-output/dashboard/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { createCoordinator, type Coordinator } from '../src/cluster/coordinator.js';
import { createGateway, type Gateway } from '../src/cluster/gateway.js';
import { createShardWorker, type ShardWorker } from '../src/cluster/worker.js';
import { createHttpHandler } from '../src/server/http.js';
import { silentLogger } from '../src/server/logger.js';
import { Metrics } from '../src/server/metrics.js';
import { memoryStore } from '../src/server/store.js';
import type { ClusterStatus, ServiceStatus } from '../src/server/types.js';
import { launchChromium, ROOT, type Chromium } from './chromium.js';
import { QUIET, SECRET, clusterClient, nextClusterResult, vector, type ClusterClient } from './clusterHelpers.js';
import { startRedis, type TestRedis } from './redisHarness.js';

const OUT_DIR = join(ROOT, 'test-output', 'dashboard');
const M = 32;
const BITS = 32;
const STAGE_MS = 10_000;

describe('the dashboard of a cluster', { timeout: 90_000 }, () => {
  let redis: TestRedis;
  let gateways: Gateway[] = [];
  let workers: ShardWorker[] = [];
  let coordinator: Coordinator;
  let browser: Chromium | undefined;
  let page: Page;
  const pageErrors: string[] = [];

  before(async () => {
    redis = await startRedis();
    gateways = await Promise.all(
      [0, 1].map((i) =>
        createGateway({
          redisUrl: redis.url,
          prefix: 'dash',
          id: `gw${i}`,
          service: { port: 0, secret: SECRET, dimension: M, bits: BITS, maxClients: 4, ...QUIET },
        }),
      ),
    );
    workers = await Promise.all([0, 1].map((i) => createShardWorker({ redisUrl: redis.url, prefix: 'dash', id: `w${i}`, unmaskWorkers: 0, ...QUIET })));
    coordinator = await createCoordinator({
      redisUrl: redis.url,
      prefix: 'dash',
      id: 'coord',
      store: memoryStore(),
      dimension: M,
      bits: BITS,
      minShardSize: 4,
      maxShardSize: 4,
      minClients: 8,
      maxClients: 8,
      startDelayMs: 200,
      stageTimeoutMs: STAGE_MS,
      admin: { port: 0 },
      ...QUIET,
    });
    browser = await launchChromium({ width: 1400, height: 1100 });
    page = browser.page;
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text());
    });
  });

  after(async () => {
    await browser?.close();
    await coordinator?.close();
    await Promise.all(workers.map((w) => w.close()));
    await Promise.all(gateways.map((g) => g.close()));
    await redis?.stop();
  });

  const screenshot = async (t: { diagnostic(s: string): void }, name: string) => {
    await mkdir(OUT_DIR, { recursive: true });
    const path = join(OUT_DIR, name);
    await page.screenshot({ path, fullPage: true });
    t.diagnostic(`screenshot: ${path}`);
  };

  test('a running round: /api/status.cluster and the panel show the gateways, workers, each shard and the Redis bytes', async (t) => {
    const cancel = new AbortController();
    const result = nextClusterResult(coordinator);
    // Eight clients over both gateways, two shards of four; c0 never sends its masked input, so its shard waits in 'masked'.
    const clients: ClusterClient[] = Array.from({ length: 8 }, (_, i) =>
      clusterClient(
        gateways[i % 2]!.url,
        `c${i}`,
        vector(500 + i, M, BITS),
        i === 0 ? { unsafeBeforeSend: (stage) => (stage === 'masked' ? 'silent' : 'send'), signal: cancel.signal } : {},
      ),
    );
    // c0's participate() rejects with ERR_CANCELLED once the test cancels it: that is the test's doing.
    const finished = Promise.all(clients.map((c) => c.done.catch(() => undefined)));
    const admin = coordinator.adminUrl!;
    let cluster: ClusterStatus | undefined;
    for (let i = 0; i < 300; i++) {
      const st = (await (await fetch(new URL('/api/status', admin))).json()) as ServiceStatus;
      cluster = st.cluster;
      const shards = cluster?.round?.shards ?? [];
      if (shards.length === 2 && shards.some((s) => s.stage === 'masked') && shards.some((s) => s.stage === 'done')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(cluster, '/api/status has a cluster field');
    assert.deepEqual(cluster.coordinator, { id: 'coord', active: true });
    assert.deepEqual(
      cluster.gateways.map((g) => [g.id, g.alive]),
      [
        ['gw0', true],
        ['gw1', true],
      ],
    );
    assert.equal(
      cluster.gateways.reduce((a, g) => a + g.connections, 0),
      8,
      'every client connected',
    );
    assert.deepEqual(
      cluster.workers.map((w) => [w.id, w.alive]),
      [
        ['w0', true],
        ['w1', true],
      ],
    );
    assert.ok(cluster.round, 'a round is running');
    assert.deepEqual(
      cluster.round.shards.map((s) => s.clients),
      [4, 4],
    );
    const held = cluster.round.shards.find((s) => s.stage === 'masked');
    assert.ok(held, `one shard waits in masked: ${JSON.stringify(cluster.round.shards)}`);
    assert.ok(
      cluster.round.shards.every((s) => (s.worker === 'w0' || s.worker === 'w1') && s.owners === 1),
      'each shard has one worker',
    );
    assert.ok(cluster.redisBytes > 0, 'Redis traffic is counted');

    await page.goto(admin);
    await page.waitForFunction(() => document.querySelectorAll('#cluster-shards tr[data-stage="masked"]').length === 1, undefined, { timeout: STAGE_MS / 2 });
    assert.ok(await page.locator('#cluster-section').isVisible());
    assert.equal(await page.textContent('#cluster-coordinator'), 'coord (active)');
    assert.deepEqual(
      await page.$$eval('#cluster-gateways tr', (trs) => trs.map((tr) => [(tr as HTMLElement).dataset.gateway, (tr as HTMLElement).dataset.alive])),
      [
        ['gw0', 'true'],
        ['gw1', 'true'],
      ],
    );
    assert.deepEqual(await page.$$eval('#cluster-workers tr', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.worker)), ['w0', 'w1']);
    const rows = await page.$$eval('#cluster-shards tr', (trs) =>
      trs.map((tr) => ({
        shard: (tr as HTMLElement).dataset.shard,
        stage: (tr as HTMLElement).dataset.stage,
        worker: tr.querySelector('.worker')?.textContent,
        owners: (tr as HTMLElement).dataset.owners,
      })),
    );
    assert.equal(rows.length, 2);
    const heldRow = rows.find((r) => r.shard === String(held.index))!;
    assert.equal(heldRow.stage, 'masked');
    assert.equal(heldRow.worker, held.worker);
    assert.equal(heldRow.owners, '1');
    assert.ok(Number(await page.getAttribute('#cluster-redis-bytes', 'data-bytes')) > 0, 'the Redis bytes counter');
    assert.match((await page.textContent('#idle')) ?? '', /^Cluster round #1 running in 2 shard\(s\)/);
    await screenshot(t, 'dashboard-cluster-live.png');

    // c0 leaves: its shard finishes without it, and the round completes.
    cancel.abort();
    const r = await result;
    assert.equal(r.included, 7);
    await page.waitForFunction(() => document.getElementById('totals-completed')?.textContent === '1');
    await page.waitForFunction(() => document.querySelectorAll('#cluster-shards tr').length === 0);
    assert.ok(await page.locator('#cluster-shards-empty').isVisible(), 'no round running');
    void finished;
    assert.deepEqual(pageErrors, []);
  });

  test('a gateway that is down and a shard that failed over are shown as such; every field is escaped', async (t) => {
    const status: ServiceStatus = {
      now: Date.now(),
      connections: 5,
      waiting: 0,
      round: null,
      totals: { completed: 0, aborted: 0 },
      recent: [],
      cluster: {
        coordinator: { id: 'coord-b', active: true },
        gateways: [
          { id: 'gw-a', alive: true, waiting: 0, connections: 5 },
          { id: 'gw-<b>', alive: false, waiting: 0, connections: 0 },
        ],
        workers: [
          { id: 'w-a', alive: false, shards: [] },
          { id: 'w-b', alive: true, shards: ['ab12/0', 'ab12/1'] },
        ],
        round: {
          number: 7,
          rid: 'ab12',
          startedAt: Date.now() - 3000,
          deadline: Date.now() + 30_000,
          shards: [
            { index: 0, clients: 100, stage: 'unmask', worker: 'w-b', owners: 2 },
            { index: 1, clients: 100, stage: 'share', worker: 'w-b', owners: 1 },
            { index: 2, clients: 99, stage: 'queued', worker: null, owners: 0 },
          ],
        },
        redisBytes: 2_500_000,
      },
    };
    const http: Server = createServer(
      createHttpHandler({
        log: silentLogger,
        metrics: new Metrics(),
        store: memoryStore(),
        admin: true,
        adminTokens: [],
        resultsTokens: [],
        status: async () => ({ ...status, now: Date.now() }),
        health: () => ({}),
        closing: () => false,
      }),
    );
    await new Promise<void>((ok) => http.listen(0, '127.0.0.1', () => ok()));
    try {
      await page.goto(`http://127.0.0.1:${(http.address() as AddressInfo).port}/`);
      await page.waitForFunction(() => document.querySelectorAll('#cluster-shards tr').length === 3);
      assert.deepEqual(
        await page.$$eval('#cluster-gateways tr', (trs) => trs.map((tr) => [tr.querySelector('td')?.textContent, tr.querySelector('.up,.down')?.textContent])),
        [
          ['gw-a', 'up'],
          ['gw-<b>', 'down'],
        ],
        'the id is text, not markup',
      );
      assert.equal(await page.textContent('#cluster-workers tr[data-worker="w-b"] .shards'), '2 #0 #1');
      assert.equal(await page.textContent('#cluster-workers tr[data-worker="w-a"] .down'), 'down');
      assert.equal(await page.locator('#cluster-shards tr[data-shard="0"] .flag').textContent(), 'failed over');
      assert.equal(await page.locator('#cluster-shards tr[data-shard="1"] .flag').count(), 0, 'a shard with one worker is not flagged');
      assert.equal(await page.textContent('#cluster-shards tr[data-shard="2"] .worker'), '–');
      assert.equal(await page.textContent('#cluster-redis-bytes'), '2.5 MB');
      assert.equal(await page.textContent('#cluster-coordinator'), 'coord-b (active)');
      await screenshot(t, 'dashboard-cluster-failover.png');
      assert.deepEqual(pageErrors, []);
    } finally {
      await new Promise<void>((ok) => {
        http.close(() => ok());
        http.closeAllConnections();
      });
    }
  });
});
