#!/usr/bin/env node
import { runSimulate, SIMULATE_HELP, UsageError } from './simulate.js';

type Runner = (argv: string[]) => Promise<number>;
/** Service commands load on demand, so `simulate` never pulls in ws or SQLite. */
const SERVICE_COMMANDS: Record<string, () => Promise<Runner>> = {
  serve: async () => (await import('./serve.js')).runServe,
  client: async () => (await import('./client.js')).runClient,
  rounds: async () => (await import('./rounds.js')).runRounds,
  demo: async () => (await import('./demo.js')).runDemo,
};

const HELP = `Usage: secagg <command> [options]

Commands:
  simulate   run one secure-aggregation round in process and verify it
  serve      run the aggregation service (HTTP + WebSocket, dashboard, metrics, history)
  client     take part in rounds of a service with a vector
  rounds     list the rounds in a service's history, or show one
  demo       a local service with N clients, dropouts and verified results

Run 'secagg <command> --help' for a command's options.

${SIMULATE_HELP}`;

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
      try {
        return await (await SERVICE_COMMANDS[command]!())(rest);
      } catch (e) {
        if (!(e instanceof UsageError)) throw e;
        process.stderr.write(`secagg ${command}: ${e.message}\n\nRun 'secagg ${command} --help' for the options.\n`);
        return 2;
      }
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
