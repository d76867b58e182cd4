/**
 * Running a database server (Redis, PostgreSQL) from its installed binary as a child that cannot
 * outlive this process: a free loopback port, a temporary directory, the server's output kept, and
 * a ready check. `secagg cluster` (cli/cluster.ts, through local.ts) and the test harnesses
 * (test/redisHarness.ts, test/pgHarness.ts) share it.
 *
 * A server started here dies with this process three ways: `stop()`; a `process.on('exit')` hook
 * (a test that throws, a command that returns); and, where util-linux's `setpriv` is on the PATH
 * (Debian: always, it is Essential), the kernel's parent-death signal (`setpriv --pdeathsig KILL`),
 * which also covers this process being killed with SIGKILL. A directory left behind by a process
 * that was killed anyway is removed by the next one that starts (its owner's pid is recorded in
 * it, and the server is killed only if its command line names that directory).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';

/** A TCP port on 127.0.0.1 that was free a moment ago (the caller retries if it is taken meanwhile). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** `name` as found on the PATH, else undefined. */
export function onPath(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return undefined;
}

export interface Account {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/**
 * The account a server that refuses root (PostgreSQL) runs as: undefined when this process is
 * not root (the server runs as the current user, e.g. a CI's sudo user); as root, the first of
 * `names` this machine has (Debian's postgresql package creates `postgres`; `nobody` is everywhere).
 */
export function unprivilegedAccount(names: readonly string[]): Account | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of names) {
    let line: string;
    try {
      line = execFileSync('getent', ['passwd', name], { encoding: 'utf8' });
    } catch {
      continue;
    }
    const [, , uid, gid] = line.trim().split(':');
    if (uid !== undefined && gid !== undefined && Number(uid) !== 0) return { name, uid: Number(uid), gid: Number(gid) };
  }
  throw new Error(`running as root, and none of the accounts ${names.join(', ')} exists to run the server as (useradd one)`);
}

/** Every directory from `dir` up to / can be entered by other users (o+x), so `account` reaches a directory made in it. */
function traversable(dir: string): boolean {
  for (let d = dir; ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (dirname(d) === d) return true;
  }
}

const OWNER = 'owner.pid';
const SERVER = 'server.pid';

/**
 * Remove the directories `prefix`* that a process which no longer exists left behind, killing
 * their server if it still runs (only a process whose command line names the directory).
 */
function sweep(parent: string, prefix: string): void {
  let names: string[];
  try {
    names = readdirSync(parent).filter((n) => n.startsWith(prefix));
  } catch {
    return;
  }
  for (const name of names) {
    const dir = join(parent, name);
    const owner = readPid(join(dir, OWNER));
    if (owner === undefined || alive(owner)) continue;
    const server = readPid(join(dir, SERVER));
    try {
      if (server !== undefined && readFileSync(`/proc/${server}/cmdline`, 'utf8').includes(dir)) process.kill(server, 'SIGKILL');
    } catch {
      // the server is gone
    }
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // another user's
    }
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8'));
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A fresh directory `prefix`XXXXXX, owned by `account` when given, whose owner is this process. */
export function tempDir(prefix: string, account: Account | undefined): string {
  // As root the server runs as another account, which must be able to enter the directory.
  const parent = account && !traversable(tmpdir()) ? '/tmp' : tmpdir();
  sweep(parent, prefix);
  const dir = mkdtempSync(join(parent, prefix));
  writeFileSync(join(dir, OWNER), String(process.pid));
  if (account) chownSync(dir, account.uid, account.gid);
  return dir;
}

/** The environment of a server: this one without the libpq PG* variables and with the C locale. */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { LC_ALL: 'C', LANG: 'C' };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && !k.startsWith('LC_') && k !== 'LANG') env[k] = v;
  return env;
}

/** Run a setup command (initdb) to its end as `account`; its output is in the error when it fails. */
export function runToEnd(command: string, args: readonly string[], cwd: string, account: Account | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd,
      env: serverEnv(),
      ...(account ? { uid: account.uid, gid: account.gid } : {}),
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (out += d));
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${out}`)),
    );
  });
}

export interface Daemon {
  readonly child: ChildProcess;
  /** The last 64 KiB of the server's output. */
  log(): string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  /** Send `signal`, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(signal: NodeJS.Signals, graceMs?: number): Promise<void>;
}

/**
 * Start `command` as `account` (pid recorded in `dir`) and resolve once its output matches `ready`;
 * reject with its output if it exits first or `timeoutMs` passes.
 */
export function startDaemon(params: {
  command: string;
  args: readonly string[];
  dir: string;
  account: Account | undefined;
  ready: RegExp;
  timeoutMs: number;
  /**
   * Its own process group (default false): a Ctrl-C in the terminal, which signals the whole
   * foreground group, then reaches only this process, which stops the server when it is done with it.
   */
  ownGroup?: boolean;
}): Promise<Daemon> {
  const setpriv = onPath('setpriv');
  const [command, args] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', params.command, ...params.args]] : [params.command, params.args];
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: params.dir,
    env: serverEnv(),
    detached: params.ownGroup === true,
    // uid/gid are applied before setpriv runs, so the parent-death signal it sets survives.
    ...(params.account ? { uid: params.account.uid, gid: params.account.gid } : {}),
  });
  let out = '';
  const onData = (d: Buffer) => {
    out += d.toString();
    if (out.length > 1 << 16) out = out.slice(-(1 << 16));
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // The test process is ending without stop(): kill the server and remove what it leaves.
  const onExit = () => {
    try {
      child.kill('SIGKILL');
      rmSync(params.dir, { recursive: true, force: true });
    } catch {
      // gone already (or a file it was still writing): the next sweep removes the rest
    }
  };
  process.once('exit', onExit);
  void exited.then(() => process.off('exit', onExit));
  if (child.pid !== undefined) writeFileSync(join(params.dir, SERVER), String(child.pid));
  const daemon: Daemon = {
    child,
    log: () => out,
    exited,
    async stop(signal, graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${params.command} was not ready within ${params.timeoutMs} ms:\n${out}`));
    }, params.timeoutMs);
    const check = () => {
      if (!params.ready.test(out)) return;
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.stderr!.off('data', check);
      resolve(daemon);
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${params.command} exited (${child.signalCode ?? `exit ${child.exitCode}`}) before it was ready:\n${out}`));
    });
  });
}
