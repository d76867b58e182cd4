#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { runSimulate } from './simulate.js';
import { EXIT, UsageError } from './args.js';

type Runner = (argv: string[]) => Promise<number>;
/** Service commands load on demand, so `simulate` never pulls in ws or SQLite. */
const SERVICE_COMMANDS: Record<string, () => Promise<Runner>> = {
  serve: async () => (await import('./serve.js')).runServe,
  client: async () => (await import('./client.js')).runClient,
  rounds: async () => (await import('./rounds.js')).runRounds,
  demo: async () => (await import('./demo.js')).runDemo,
  token: async () => (await import('./token.js')).runToken,
  privacy: async () => (await import('./privacy.js')).runPrivacy,
  gateway: async () => (await import('./roles.js')).runGateway,
  'shard-worker': async () => (await import('./roles.js')).runShardWorker,
  coordinator: async () => (await import('./roles.js')).runCoordinator,
  cluster: async () => (await import('./cluster.js')).runCluster,
};

const HELP = `Usage: secagg <command> [options]

Commands:
  simulate   run one secure-aggregation round in process and verify it
  serve      run the aggregation service (HTTP + WebSocket, dashboard, metrics, history)
  client     take part in rounds of a service with a vector
  rounds     list the rounds in a service's history, or show one
  demo       a local service with N clients, dropouts and verified results
  token      print a JWT the service accepts (HS256 under its secret, or EdDSA under an issuer key)
  privacy    the (ε, δ) of rounds of noisy sums: Gaussian, Skellam or distributed discrete Gaussian
  gateway, shard-worker, coordinator
             the roles of a cluster coordinated through Redis (docs/cluster.md)
  cluster    the cluster on this machine: its own Redis, gateways, shard workers, a coordinator
             and demo clients, with verified sums (needs redis-server)
  example fl federated training of a TF.js classifier, secure vs plain FedAvg (--task spam: the
             SpamAssassin corpus by mailbox; --network: over the service; needs @tensorflow/tfjs)

Options:
  -h, --help     this text
  -V, --version  the version of secagg

Run 'secagg <command> --help' for a command's options.

Exit codes: 0 success, 1 the command ran but its check failed, 2 bad arguments, 5 the port is in
use or may not be opened, 6 a file is missing or unreadable, 7 an optional dependency (the SQLite
binding) is missing, 8 the history database (PostgreSQL) cannot be reached; 'secagg client --help'
lists the client's own.`;

/** dist/src/cli/main.js → the package's package.json, both in a checkout and in node_modules. */
function version(): string {
  return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/**
 * The one line (and exit code) for an error that the environment caused: a busy port, a missing
 * file, a missing optional dependency. Anything else is a bug and keeps its stack.
 */
function environmentFailure(e: unknown): { code: number; message: string } | undefined {
  if (!(e instanceof Error)) return undefined;
  const err = e as Error & { code?: unknown; syscall?: unknown; address?: unknown; port?: unknown; path?: unknown };
  if (err.code === 'ERR_MISSING_DEPENDENCY') return { code: EXIT.DEPENDENCY, message: err.message };
  if (err.code === 'ERR_STORE_UNAVAILABLE') return { code: EXIT.STORE, message: err.message };
  if (err.syscall === 'listen' && (err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL')) {
    const where = `${String(err.address ?? '')}:${String(err.port ?? '')}`;
    const why =
      err.code === 'EADDRINUSE' ? 'is already in use' : err.code === 'EACCES' ? 'may not be opened by this user' : 'is not an address of this machine';
    return { code: EXIT.LISTEN, message: `${where} ${why} (${err.code}): pick another with --port / --host` };
  }
  if (typeof err.path === 'string' && (err.code === 'ENOENT' || err.code === 'EACCES' || err.code === 'EISDIR' || err.code === 'ENOTDIR'))
    return {
      code: EXIT.FILE,
      message: `${err.path}: ${err.code === 'ENOENT' ? 'no such file' : err.code === 'EACCES' ? 'permission denied' : 'not a regular file'} (${err.code})`,
    };
  return undefined;
}

/**
 * A reader that goes away (`secagg rounds --json | head -1`) is not an error: stop writing and
 * exit quietly instead of dying on EPIPE.
 */
function quietOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}

/**
 * `secagg example fl [...]`: the federated-learning example, run as its own process (it parses its
 * own flags, and says which package to install when @tensorflow/tfjs or the spam corpus is missing).
 */
async function runExample(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name !== 'fl') {
    process.stderr.write(`secagg example: unknown example '${name ?? ''}'; available: fl\n`);
    return 2;
  }
  const { existsSync } = await import('node:fs');
  const { fileURLToPath } = await import('node:url');
  const script = fileURLToPath(new URL('../examples/fl/main.js', import.meta.url));
  if (!existsSync(script)) {
    process.stderr.write(`secagg example fl: ${script} is missing: this installation of secagg is incomplete (reinstall it)\n`);
    return 2;
  }
  const { spawn } = await import('node:child_process');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...rest], { stdio: 'inherit' });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

const COMMAND_NAMES = { simulate: 1, serve: 1, client: 1, rounds: 1, demo: 1, privacy: 1, cluster: 1 } as const;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'simulate':
    case 'serve':
    case 'client':
    case 'rounds':
    case 'demo':
    case 'token':
    case 'privacy':
    case 'gateway':
    case 'shard-worker':
    case 'coordinator':
    case 'cluster':
      try {
        return await (command === 'simulate' ? runSimulate : await SERVICE_COMMANDS[command]!())(rest);
      } catch (e) {
        const env = environmentFailure(e);
        if (env) {
          process.stderr.write(`secagg ${command}: ${env.message}\n`);
          return env.code;
        }
        if (!(e instanceof UsageError)) throw e;
        process.stderr.write(`secagg ${command}: ${e.message}\n\nRun 'secagg ${command} --help' for the options.\n`);
        return 2;
      }
    case 'example':
      return runExample(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      if (command === 'help' && rest[0] !== undefined && rest[0] in COMMAND_NAMES) return main([rest[0], '--help']);
      (command === undefined ? process.stderr : process.stdout).write(HELP + '\n');
      return command === undefined ? 2 : 0;
    case '-V':
    case '--version':
      process.stdout.write(version() + '\n');
      return 0;
    default:
      process.stderr.write(`secagg: unknown command '${command}'\n\nRun 'secagg --help' for the commands.\n`);
      return 2;
  }
}

quietOnClosedPipe(process.stdout);
quietOnClosedPipe(process.stderr);
// exitCode, not exit(): exit() can cut off output still queued for a pipe.
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const env = environmentFailure(e);
    process.stderr.write(env ? `secagg: ${env.message}\n` : `secagg: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = env ? env.code : EXIT.INTERNAL;
  },
);
