/** The round history stores, each against the one RoundStore contract (storeSuite.ts). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryStore } from '../src/server/store.js';
import { sqliteStore } from '../src/server/sqliteStore.js';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeRoundStore, record } from './storeSuite.js';

describeRoundStore('memory store', async () => ({ store: memoryStore() }));

describeRoundStore(
  'SQLite store',
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'secagg-store-'));
    const file = join(dir, 'history.db');
    let store = sqliteStore(file);
    return {
      store,
      reopen: async () => {
        await store.close();
        return (store = sqliteStore(file));
      },
      dispose: () => rmSync(dir, { recursive: true, force: true }),
    };
  },
  { persistent: true },
);

test('SQLite: a history file written before rounds had a dp column opens, reads back without DP entries, and takes new rounds', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'secagg-store-old-'));
  const file = join(dir, 'old.db');
  try {
    const Database = createRequire(import.meta.url)('better-sqlite3') as typeof import('better-sqlite3');
    const db = new Database(file);
    // The schema before DP (no dp column), with one completed round.
    db.exec(`CREATE TABLE rounds (id INTEGER PRIMARY KEY, round_id TEXT NOT NULL, params TEXT NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER,
      outcome TEXT NOT NULL, code TEXT, reason TEXT, stage TEXT NOT NULL, stages TEXT NOT NULL, included TEXT, sum BLOB)`);
    db.prepare(
      `INSERT INTO rounds (round_id, params, started_at, ended_at, outcome, stage, stages, included) VALUES (?, ?, 1, 2, 'completed', 'done', '{}', '[1,2]')`,
    ).run('00'.repeat(16), JSON.stringify(record(0).params));
    db.close();
    const store = sqliteStore(file);
    const old = (await store.get(1))!;
    assert.equal(old.outcome, 'completed');
    assert.ok(!('dp' in old));
    assert.equal(await store.latestDp(), undefined);
    assert.equal(await store.begin(record(1)), 2);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
