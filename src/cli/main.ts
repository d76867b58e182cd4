#!/usr/bin/env node
import { runSimulate, SIMULATE_HELP, UsageError } from './simulate.js';

const HELP = `Usage: secagg <command> [options]

Commands:
  simulate   run one secure-aggregation round in process and verify it

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
