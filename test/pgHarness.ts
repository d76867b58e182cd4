/**
 * A throwaway PostgreSQL for a test file: `const pg = await startPostgres()` runs initdb in a
 * temporary directory and a postgres on 127.0.0.1 and a free port, and `pg.stop()` stops it and
 * removes the directory. Start one per test file (initdb takes about a second) and give each test
 * its own database or schema. Registers no tests.
 *
 * postgres refuses to run as root, so when the tests run as root (a container, this CI) initdb and
 * postgres run as Debian's `postgres` account (the postgresql package creates it), else `nobody`;
 * as any other user (a CI's sudo user, a developer) they run as that user. Authentication is
 * `trust`, which is safe only because the server listens on 127.0.0.1 alone and has no Unix socket.
 * Durability is off (fsync, synchronous_commit, full_page_writes): the data dies with the test.
 *
 * It never skips: a machine without PostgreSQL fails the tests that need it with the command to
 * install it (.ci/run installs it). Binaries: SECAGG_PG_BIN if set, else the newest
 * /usr/lib/postgresql/<version>/bin (Debian), else initdb and postgres on the PATH.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type Account, freePort, onPath, runToEnd, startDaemon, tempDir, unprivilegedAccount } from '../src/cluster/daemon.js';

export interface TestPostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres (user postgres, trust: no password). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** The temporary directory (data directory in data/). */
  readonly dir: string;
  /** The server's log so far. */
  log(): string;
  /** Stop the server (fast shutdown) and remove the directory; safe to call twice. */
  stop(): Promise<void>;
}

/** The directory holding initdb and postgres. */
function binaries(): string {
  const fromEnv = process.env['SECAGG_PG_BIN'];
  if (fromEnv) return fromEnv;
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => existsSync(join(debian, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0] !== undefined) return join(debian, versions[0], 'bin');
  }
  const initdb = onPath('initdb');
  if (initdb) return join(initdb, '..');
  throw new Error('PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on the PATH): apt-get install postgresql');
}

export async function startPostgres(options: { timeoutMs?: number } = {}): Promise<TestPostgres> {
  const bin = binaries();
  const account: Account | undefined = unprivilegedAccount(['postgres', 'nobody']);
  const dir = tempDir('secagg-pg-', account);
  const data = join(dir, 'data');
  const timeoutMs = options.timeoutMs ?? 30_000;
  try {
    await runToEnd(
      join(bin, 'initdb'),
      ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-locale', '--no-sync', '--no-instructions'],
      dir,
      account,
    );
    // A port that was free may be taken before postgres binds it: try a few.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      try {
        const daemon = await startDaemon({
          command: join(bin, 'postgres'),
          args: [
            '-D',
            data,
            '-h',
            '127.0.0.1',
            '-p',
            String(port),
            '-k',
            '', // no Unix socket: loopback TCP only
            '-c',
            'fsync=off',
            '-c',
            'synchronous_commit=off',
            '-c',
            'full_page_writes=off',
            '-c',
            'max_connections=40',
            '-c',
            'shared_buffers=16MB',
          ],
          dir,
          account,
          ready: /database system is ready to accept connections/,
          timeoutMs,
        });
        let stopped: Promise<void> | undefined;
        return {
          url: `postgres://postgres@127.0.0.1:${port}/postgres`,
          host: '127.0.0.1',
          port,
          dir,
          log: daemon.log,
          stop: () =>
            (stopped ??= (async () => {
              await daemon.stop('SIGINT'); // fast shutdown: disconnect clients, no waiting for them
              rmSync(dir, { recursive: true, force: true });
            })()),
        };
      } catch (e) {
        if (attempt < 3 && /could not bind|Address already in use/.test(String(e))) continue;
        throw e;
      }
    }
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
