/**
 * The Redis harness (redisHarness.ts) does what the distributed deployment's tests rely on: a real
 * redis-server on loopback that ioredis talks to, whose append-only data survives a restart on the
 * same port, and whose pause (SIGSTOP) makes commands time out until it resumes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { Redis } from 'ioredis';
import { startRedis } from './redisHarness.js';

test('redis harness: SET/GET over ioredis; restart and crash keep append-only data on the same port; pause times commands out, resume answers them; stop removes the directory', async () => {
  const redis = await startRedis({ appendonly: true, appendfsync: 'always' });
  // No retries and a short command timeout: a paused server is reported, not waited for.
  const client = new Redis(redis.url, { commandTimeout: 300, maxRetriesPerRequest: 0, lazyConnect: true });
  client.on('error', () => undefined); // reconnects after a restart are expected
  try {
    await client.connect();
    assert.equal(await client.set('k', 'v1'), 'OK');
    assert.equal(await client.get('k'), 'v1');

    await redis.restart();
    assert.equal(await client.get('k'), 'v1', 'the append-only file brought the key back (ioredis reconnected to the same port)');
    await client.set('k', 'v2');
    await redis.crash();
    assert.equal(await client.get('k'), 'v2', 'appendfsync always: a SIGKILL loses nothing');

    redis.pause();
    const t0 = Date.now();
    await assert.rejects(client.get('k'), /Command timed out/);
    assert.ok(Date.now() - t0 < 2000);
    redis.resume();
    assert.equal(await client.get('k'), 'v2', 'answers again after resume');
  } finally {
    client.disconnect();
    await redis.stop();
  }
  assert.ok(!existsSync(redis.dir), 'the directory is gone');
  await redis.stop(); // twice is fine
});

test('redis harness: without appendonly nothing is saved — a restart comes back empty', async () => {
  const redis = await startRedis();
  const client = new Redis(redis.url, { maxRetriesPerRequest: 0 });
  client.on('error', () => undefined);
  try {
    await client.set('k', 'v');
    await redis.restart();
    assert.equal(await client.get('k'), null);
  } finally {
    client.disconnect();
    await redis.stop();
  }
});
