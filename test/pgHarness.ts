/**
 * A throwaway PostgreSQL for a test file: `const pg = await startPostgres()` runs initdb in a
 * temporary directory and a postgres on 127.0.0.1 and a free port, and `pg.stop()` stops it and
 * removes the directory. Start one per test file (initdb takes about a second) and give each test
 * its own database or schema. Registers no tests.
 *
 * It is `secagg cluster`'s own launcher (src/cluster/local.ts: as root, postgres runs as Debian's
 * `postgres` account; trust authentication on 127.0.0.1 only, no Unix socket) with durability off
 * (fsync, synchronous_commit, full_page_writes): the data dies with the test. It never skips: a
 * machine without PostgreSQL fails the tests that need it with the command to install it (.ci/run
 * installs it).
 */
import { startPostgres as startLocalPostgres, type LocalPostgres } from '../src/cluster/local.js';

export type TestPostgres = LocalPostgres;

export function startPostgres(options: { timeoutMs?: number } = {}): Promise<TestPostgres> {
  return startLocalPostgres({ durable: false, ...options });
}
