#!/usr/bin/env node
import { runSimulate, SIMULATE_HELP } from './simulate.js';
import { UsageError } from './args.js';

type Runner = (argv: string[]) => Promise<number>;
/** Service commands load on demand, so `simulate` never pulls in ws or SQLite. */
const SERVICE_COMMANDS: Record<string, () => Promise<Runner>> = {
  serve: async () => (await import('./serve.js')).runServe,
  client: async () => (await import('./client.js')).runClient,
  rounds: async () => (await import('./rounds.js')).runRounds,
  demo: async () => (await import('./demo.js')).runDemo,
  token: async () => (await import('./token.js')).runToken,
};

const HELP = `Usage: secagg <command> [options]

Commands:
  simulate   run one secure-aggregation round in process and verify it
  serve      run the aggregation service (HTTP + WebSocket, dashboard, metrics, history)
  client     take part in rounds of a service with a vector
  rounds     list the rounds in a service's history, or show one
  demo       a local service with N clients, dropouts and verified results
  token      print a JWT the service accepts (HS256 under its secret, or EdDSA under an issuer key)
  example fl federated training of a TF.js classifier, secure vs plain FedAvg (--network: over the service)

Run 'secagg <command> --help' for a command's options.

${SIMULATE_HELP}`;

/** `secagg example fl [...]`: the federated-learning example, run as its own process (it parses its own flags). */
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
    process.stderr.write('secagg example fl: the example is not in this installation (it ships with the repository: npm run example:fl)\n');
    return 2;
  }
  const { spawn } = await import('node:child_process');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...rest], { stdio: 'inherit' });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'simulate':
      try {
        return await runSimulate(rest);
      } catch (e) {
        if (!(e instanceof UsageError)) throw e;
        process.stderr.write(`secagg simulate: ${e.message}\n\nRun 'secagg simulate --help' for the options.\n`);
        return 2;
      }
    case 'serve':
    case 'client':
    case 'rounds':
    case 'demo':
    case 'token':
      try {
        return await (await SERVICE_COMMANDS[command]!())(rest);
      } catch (e) {
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
      process.stdout.write(HELP + '\n');
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`secagg: unknown command '${command}'\n\n${HELP}\n`);
      return 2;
  }
}

// exitCode, not exit(): exit() can cut off output still queued for a pipe.
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`secagg: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 70;
  },
);
