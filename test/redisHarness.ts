/**
 * A throwaway Redis for a test file: `const redis = await startRedis()` runs Debian's redis-server
 * on 127.0.0.1 and a free port with its files in a temporary directory; `stop()` stops it and
 * removes the directory. For the failures a distributed deployment must survive: `restart()` (same
 * port and directory, so with `appendonly` the data comes back), `crash()` (SIGKILL, then the same
 * restart) and `pause()` / `resume()` (SIGSTOP / SIGCONT: the server keeps its connections but
 * answers nothing, like a partition). Registers no tests.
 *
 * redis-server may run as root, so it runs as whoever runs the tests. It never skips: without
 * redis-server the tests that need it fail with the command to install it (.ci/run installs it).
 */
import { rmSync } from 'node:fs';
import { type Daemon, freePort, onPath, startDaemon, tempDir } from './daemon.js';

export interface RedisHarnessOptions {
  /** Keep the data in an append-only file, so it survives restart() (default false: nothing is saved). */
  appendonly: boolean;
  /** With appendonly: fsync every write ('always', survives crash()) or once a second ('everysec', Redis's default). */
  appendfsync: 'always' | 'everysec';
  /** How long the server may take to be ready (default 10 s). */
  timeoutMs: number;
}

export interface TestRedis {
  /** redis://127.0.0.1:PORT */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  /** The server's log since it last started. */
  log(): string;
  /** Stop it (SIGTERM: Redis flushes the append-only file) and start it again on the same port and directory. */
  restart(): Promise<void>;
  /** Kill it (SIGKILL, nothing flushed) and start it again on the same port and directory. */
  crash(): Promise<void>;
  /** SIGSTOP: connections stay open, commands get no answer. */
  pause(): void;
  /** SIGCONT: it answers again, the queued commands first. */
  resume(): void;
  /** Stop it and remove the directory; safe to call twice. */
  stop(): Promise<void>;
}

export async function startRedis(options: Partial<RedisHarnessOptions> = {}): Promise<TestRedis> {
  const o: RedisHarnessOptions = { appendonly: false, appendfsync: 'everysec', timeoutMs: 10_000, ...options };
  const command = onPath('redis-server');
  if (!command) throw new Error('redis-server is not installed (not on the PATH): apt-get install redis-server');
  const dir = tempDir('secagg-redis-', undefined);
  const launch = (port: number) =>
    startDaemon({
      command,
      args: [
        '--bind',
        '127.0.0.1',
        '--port',
        String(port),
        '--dir',
        dir,
        '--daemonize',
        'no',
        '--save',
        '',
        '--appendonly',
        o.appendonly ? 'yes' : 'no',
        '--appendfsync',
        o.appendfsync,
        '--protected-mode',
        'yes',
        '--logfile',
        '',
      ],
      dir,
      account: undefined,
      ready: /Ready to accept connections/,
      timeoutMs: o.timeoutMs,
    });
  try {
    let port = 0;
    let daemon: Daemon | undefined;
    for (let attempt = 1; !daemon; attempt++) {
      port = await freePort();
      try {
        daemon = await launch(port);
      } catch (e) {
        if (attempt < 3 && /Address already in use/.test(String(e))) continue;
        throw e;
      }
    }
    let current: Daemon = daemon;
    let stopped: Promise<void> | undefined;
    const again = async (signal: NodeJS.Signals) => {
      current.child.kill('SIGCONT'); // a paused server cannot act on SIGTERM
      await current.stop(signal);
      current = await launch(port);
    };
    return {
      url: `redis://127.0.0.1:${port}`,
      host: '127.0.0.1',
      port,
      dir,
      log: () => current.log(),
      restart: () => again('SIGTERM'),
      crash: () => again('SIGKILL'),
      pause: () => void current.child.kill('SIGSTOP'),
      resume: () => void current.child.kill('SIGCONT'),
      stop: () =>
        (stopped ??= (async () => {
          current.child.kill('SIGCONT');
          await current.stop('SIGTERM');
          rmSync(dir, { recursive: true, force: true });
        })()),
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
