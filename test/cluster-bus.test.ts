/**
 * The fencing the cluster's guarantees rest on (src/cluster/bus.ts), against a real Redis: a worker
 * that lost its shard's lease — paused past it, partitioned — and then wakes and commits writes
 * nothing at all (no checkpoint, no acknowledgement, no frame, no result), while the lease's holder
 * writes everything in one step; a lease held by another cannot be taken or renewed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { acquireLease, commit, connect, ensureGroup, keys, readGroup, renewLease } from '../src/cluster/bus.js';
import { startRedis, type TestRedis } from './redisHarness.js';

let redis: TestRedis;
let r: Redis;
before(async () => {
  redis = await startRedis();
  r = connect(redis.url, 'bus-test');
});
after(async () => {
  r.disconnect();
  await redis.stop();
});

test('a commit by a worker whose lease another worker took writes nothing; the holder’s commit writes checkpoint, acks, frames and result together', async () => {
  const k = keys('bus');
  const lease = k.shardLease('r', 0);
  const input = k.shardIn('r', 0);
  await ensureGroup(r, input, 'w');
  await r.xadd(input, '*', 'h', '{"k":"f"}');
  const [entry] = await readGroup(r, input, 'w', 'old', '>', 100);
  assert.ok(entry, 'an input entry read by the old owner, pending');

  // The old owner's lease lapsed (it was paused); the new owner took it.
  assert.equal(await acquireLease(r, lease, 'new', 10_000), true);
  assert.equal(await acquireLease(r, lease, 'old', 10_000), false, 'a lease held by another cannot be taken');
  assert.equal(await renewLease(r, lease, 'old', 10_000), false, 'nor renewed');

  const step = (owner: string) =>
    commit(r, k, {
      lease,
      owner,
      checkpoint: { key: k.shardCkpt('r', 0), bytes: new TextEncoder().encode(`state of ${owner}`) },
      input: { key: input, group: 'w', acks: [entry.id] },
      out: [{ key: k.gatewayOut('g'), h: { k: 'frame', from: owner }, b: new Uint8Array([1, 2, 3]) }],
      set: [{ key: k.shardResult('r', 0), value: `result of ${owner}` }],
    });

  assert.equal(await step('old'), false, 'the fenced commit reports it wrote nothing');
  assert.equal(await r.get(k.shardCkpt('r', 0)), null, 'no checkpoint');
  assert.equal(await r.get(k.shardResult('r', 0)), null, 'no result');
  assert.equal(await r.xlen(k.gatewayOut('g')), 0, 'no frame');
  const pending = (await r.call('XPENDING', [input, 'w'])) as [number, ...unknown[]];
  assert.equal(pending[0], 1, 'the input entry is still pending: a successor replays it');

  assert.equal(await step('new'), true);
  assert.equal(await r.get(k.shardCkpt('r', 0)), 'state of new');
  assert.equal(await r.get(k.shardResult('r', 0)), 'result of new');
  assert.equal(await r.xlen(k.gatewayOut('g')), 1);
  assert.equal(((await r.call('XPENDING', [input, 'w'])) as [number])[0], 0, 'acknowledged in the same step');
});
