/** The history a command was pointed at: memory, a SQLite file, or a PostgreSQL URL (shared by processes). */
import { memoryStore, sqliteStore, type RoundStore } from '../server/index.js';

const PG = '../server/pgStore.js';

export async function openStore(where: string | undefined): Promise<RoundStore> {
  if (where === undefined || where === 'memory') return memoryStore();
  if (/^postgres(ql)?:\/\//.test(where)) {
    const { postgresStore } = (await import(PG)) as { postgresStore: (url: string) => RoundStore };
    return postgresStore(where);
  }
  return sqliteStore(where);
}
