/**
 * Round history stores: the outcome totals a restarted server starts its metrics from must count
 * the whole history, not the newest page that `list` returns.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryStore, type RoundOutcome, type RoundRecord, type RoundStore } from '../src/server/store.js';
import { sqliteStore } from '../src/server/sqliteStore.js';

function record(i: number): Omit<RoundRecord, 'id'> {
  return {
    roundId: i.toString(16).padStart(32, '0'),
    params: { bits: 16, dimension: 4, threshold: 2, degree: 2, mode: 'semi-honest', cohort: 3 },
    startedAt: 1000 + i,
    endedAt: null,
    outcome: 'running',
    code: null,
    reason: null,
    stage: 'advertise',
    stages: {},
    included: null,
  };
}

/** 250 rounds: every 3rd aborted, every 7th (not aborted) left running, the rest completed. */
async function fill(store: RoundStore): Promise<Record<RoundOutcome, number>> {
  const want: Record<RoundOutcome, number> = { running: 0, completed: 0, aborted: 0 };
  for (let i = 0; i < 250; i++) {
    const id = await store.begin(record(i));
    const outcome: RoundOutcome = i % 3 === 0 ? 'aborted' : i % 7 === 0 ? 'running' : 'completed';
    want[outcome]++;
    if (outcome === 'running') continue;
    await store.save({
      ...record(i),
      id,
      outcome,
      endedAt: 2000 + i,
      ...(outcome === 'aborted' ? { code: 'ERR_TIMEOUT', reason: 'test' } : { included: [1, 2], sum: new Uint32Array([i, 0, 0, 0]) }),
    });
  }
  return want;
}

test('memory store: outcome totals cover the whole history, beyond one page of list()', async () => {
  const store = memoryStore();
  const want = await fill(store);
  assert.equal((await store.list()).length, 100);
  assert.deepEqual(await store.countOutcomes(), want);
  const interrupted = await store.abortUnfinished('ERR_INTERRUPTED', 'restart', 9999);
  assert.equal(interrupted.length, want.running);
  assert.deepEqual(await store.countOutcomes(), { running: 0, completed: want.completed, aborted: want.aborted + want.running });
});

test('SQLite store: outcome totals cover the whole history and survive reopening', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'secagg-store-'));
  try {
    const file = join(dir, 'history.db');
    let store = sqliteStore(file);
    const want = await fill(store);
    assert.equal((await store.list()).length, 100);
    assert.deepEqual(await store.countOutcomes(), want);
    await store.close();
    store = sqliteStore(file);
    assert.deepEqual(await store.countOutcomes(), want);
    await store.abortUnfinished('ERR_INTERRUPTED', 'restart', 9999);
    assert.deepEqual(await store.countOutcomes(), { running: 0, completed: want.completed, aborted: want.aborted + want.running });
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
