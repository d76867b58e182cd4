/** The round history stores, each against the one RoundStore contract (storeSuite.ts). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryStore } from '../src/server/store.js';
import { sqliteStore } from '../src/server/sqliteStore.js';
import { describeRoundStore } from './storeSuite.js';

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
