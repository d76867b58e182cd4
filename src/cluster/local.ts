/**
 * A Redis and a PostgreSQL of this machine's own, for `secagg cluster` (one machine, every role)
 * and the tests: Debian's `redis-server` and PostgreSQL's `initdb` / `postgres`, each on 127.0.0.1
 * and a free port with its files in a temporary directory, stopped (and the directory removed) by
 * `stop()` or when this process ends (daemon.ts).
 *
 * Redis defaults to what a cluster needs (docs/cluster.md, "Redis persistence"): the append-only
 * file on, fsynced at every write (`appendonly yes`, `appendfsync always`), so nothing a client was
 * sent is lost when Redis restarts or crashes. The tests that need neither pass `appendonly: false`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { type Account, type Daemon, freePort, onPath, runToEnd, startDaemon, tempDir, unprivilegedAccount } from './daemon.js';

export interface LocalRedisOptions {
  /** Keep the data in an append-only file, so it survives restart() (default true). */
  appendonly: boolean;
  /** With appendonly: fsync every write ('always', default: survives crash()) or once a second ('everysec'). */
  appendfsync: 'always' | 'everysec';
  /** How long the server may take to be ready (default 10 s). */
  timeoutMs: number;
}

export interface LocalRedis {
  /** redis://127.0.0.1:PORT */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  /** The server's process id (changes with restart()). */
  pid(): number | undefined;
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

/**
 * Start Debian's redis-server on 127.0.0.1 and a free port, its files in a new temporary directory.
 * Fails with the command to install it when redis-server is not on the PATH.
 *
 * @example
 * ```ts
 * const redis = await startRedis(); // appendonly yes, appendfsync always
 * const gw = await createGateway({ redisUrl: redis.url, service: { port: 0, secret } });
 * // …
 * await redis.stop();
 * ```
 */
export async function startRedis(options: Partial<LocalRedisOptions> = {}): Promise<LocalRedis> {
  const o: LocalRedisOptions = { appendonly: true, appendfsync: 'always', timeoutMs: 10_000, ...options };
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
      ownGroup: true,
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
      pid: () => current.child.pid,
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

export interface LocalPostgresOptions {
  /** fsync, synchronous commits and full-page writes on (default true); tests turn them off: their data dies with them. */
  durable: boolean;
  /** How long initdb + start may take (default 30 s). */
  timeoutMs: number;
}

export interface LocalPostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres (user postgres, trust: no password). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** The temporary directory (data directory in data/). */
  readonly dir: string;
  pid(): number | undefined;
  /** The server's log so far. */
  log(): string;
  /** Stop the server (fast shutdown) and remove the directory; safe to call twice. */
  stop(): Promise<void>;
}

/**
 * The directory holding initdb and postgres: SECAGG_PG_BIN if set, else the newest
 * /usr/lib/postgresql/<version>/bin (Debian), else initdb's on the PATH; undefined when none.
 */
export function postgresBinaries(): string | undefined {
  const fromEnv = process.env['SECAGG_PG_BIN'];
  if (fromEnv) return fromEnv;
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => existsSync(join(debian, v, 'bin', 'initdb')) && existsSync(join(debian, v, 'bin', 'postgres')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0] !== undefined) return join(debian, versions[0], 'bin');
  }
  const initdb = onPath('initdb');
  return initdb ? join(initdb, '..') : undefined;
}

/**
 * initdb in a new temporary directory and a postgres on 127.0.0.1 and a free port, with no Unix
 * socket. postgres refuses to run as root, so as root both run as Debian's `postgres` account (the
 * postgresql package creates it), else `nobody`; as any other user, as that user. Authentication is
 * `trust`, which is safe only because the server listens on 127.0.0.1 alone.
 */
export async function startPostgres(options: Partial<LocalPostgresOptions> = {}): Promise<LocalPostgres> {
  const o: LocalPostgresOptions = { durable: true, timeoutMs: 30_000, ...options };
  const bin = postgresBinaries();
  if (!bin) throw new Error('PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on the PATH): apt-get install postgresql');
  const account: Account | undefined = unprivilegedAccount(['postgres', 'nobody']);
  const dir = tempDir('secagg-pg-', account);
  const data = join(dir, 'data');
  const fast = o.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'];
  try {
    await runToEnd(
      join(bin, 'initdb'),
      ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-locale', ...(o.durable ? [] : ['--no-sync']), '--no-instructions'],
      dir,
      account,
    );
    // A port that was free may be taken before postgres binds it: try a few.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      try {
        const daemon = await startDaemon({
          command: join(bin, 'postgres'),
          args: ['-D', data, '-h', '127.0.0.1', '-p', String(port), '-k', '', ...fast, '-c', 'max_connections=40', '-c', 'shared_buffers=16MB'],
          dir,
          account,
          ready: /database system is ready to accept connections/,
          timeoutMs: o.timeoutMs,
          ownGroup: true,
        });
        let stopped: Promise<void> | undefined;
        return {
          url: `postgres://postgres@127.0.0.1:${port}/postgres`,
          host: '127.0.0.1',
          port,
          dir,
          pid: () => daemon.child.pid,
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

export interface RoleProcess {
  readonly child: ChildProcess;
  /** The JSON line it printed when ready (role, id, its URLs, pid). */
  readonly info: Record<string, unknown>;
  /** The last ~500 kB of its stderr (its JSON log lines). */
  stderr(): string;
  /** Resolves when it has exited. */
  readonly exited: Promise<void>;
  /** Send `signal` (default SIGTERM), then SIGKILL after `graceMs` (default 5 s); resolves once it is gone. */
  kill(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

/**
 * Start `node MAIN <args>` — a `secagg gateway | shard-worker | coordinator` — and resolve with its
 * ready line (the first line it prints on stdout). Its stderr is kept (and appended to `logFile`
 * when given). With setpriv on the PATH it gets the parent-death signal (SIGKILL), so it cannot
 * outlive this process; `ownGroup` keeps a terminal's Ctrl-C from reaching it directly.
 */
export async function startRoleProcess(params: {
  readonly main: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly logFile?: string;
  readonly ownGroup?: boolean;
  readonly readyTimeoutMs?: number;
}): Promise<RoleProcess> {
  const setpriv = onPath('setpriv');
  const argv = [params.main, ...params.args];
  const [command, args] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', process.execPath, ...argv]] : [process.execPath, argv];
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...params.env },
    detached: params.ownGroup === true,
  });
  const name = `secagg ${params.args[0] ?? ''}`;
  let err = '';
  const file = params.logFile ? createWriteStream(params.logFile, { flags: 'a' }) : undefined;
  child.stderr!.on('data', (d: Buffer) => {
    file?.write(d);
    err += d.toString();
    if (err.length > 1_000_000) err = err.slice(-500_000);
  });
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  void exited.then(() => file?.end());
  const onExit = () => {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  };
  process.once('exit', onExit);
  void exited.then(() => process.off('exit', onExit));
  const timeoutMs = params.readyTimeoutMs ?? 20_000;
  const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} was not ready in ${timeoutMs} ms:\n${err}`));
    }, timeoutMs);
    rl.once('line', (line) => {
      clearTimeout(t);
      try {
        resolve(JSON.parse(line) as Record<string, unknown>);
      } catch {
        reject(new Error(`${name}: not a ready line: ${line}\n${err}`));
      }
    });
    child.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      reject(new Error(`${name} exited (${signal ?? `exit ${code}`}) before it was ready:\n${err}`));
    });
  });
  // Whatever it prints later on stdout is drained, so a full pipe never blocks it.
  child.stdout!.resume();
  return {
    child,
    info,
    stderr: () => err,
    exited,
    async kill(signal = 'SIGTERM', graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
