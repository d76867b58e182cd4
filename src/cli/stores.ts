/** The history a command was pointed at: memory, a SQLite file, or a PostgreSQL URL (shared by processes). */
import { memoryStore, sqliteStore, type RoundStore } from '../server/index.js';

export async function openStore(where: string | undefined): Promise<RoundStore> {
  if (where === undefined || where === 'memory') return memoryStore();
  // pg is loaded only for a postgres:// URL.
  const { isPostgresUrl, postgresStore } = await import('../server/pgStore.js');
  if (isPostgresUrl(where)) return postgresStore(where);
  return sqliteStore(where);
}
