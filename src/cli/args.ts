/**
 * Argument helpers every `secagg` command shares. Kept free of the service so that loading a
 * command's flags never loads the server stack (ws, SQLite, worker threads).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Exit codes for failures of the environment rather than of the command line (bad arguments: 2). */
export const EXIT = { LISTEN: 5, FILE: 6, DEPENDENCY: 7, STORE: 8, INTERNAL: 70 } as const;

/** A bad command line: main.ts prints the message and exits 2. */
export class UsageError extends Error {}

export function fail(message: string): never {
  throw new UsageError(message);
}

/** An integer flag in [min, max], `def` when absent. */
export function intFlag(value: string | undefined, name: string, def: number, min: number, max: number): number {
  if (value === undefined) return def;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) fail(`--${name} must be an integer in [${min}, ${max}], got '${value}'`);
  return n;
}

type FlagSpec = NonNullable<ParseArgsConfig['options']>;
type WithHelp<O extends FlagSpec> = O & { help: { type: 'boolean'; short: 'h' } };
type Flags<O extends FlagSpec> = ReturnType<typeof parseArgs<{ args: string[]; options: WithHelp<O>; strict: true }>>['values'];

/**
 * Parse a command's flags strictly, adding `-h/--help`. Unknown or malformed flags are a
 * UsageError; with `--help` the command's help text is printed and the result is undefined (exit 0).
 */
export function parseFlags<const O extends FlagSpec>(argv: string[], options: O, help: string): Flags<O> | undefined {
  const withHelp = { ...options, help: { type: 'boolean', short: 'h' } } as WithHelp<O>;
  let values: Flags<O>;
  try {
    values = parseArgs({ args: argv, options: withHelp, strict: true }).values;
  } catch (e) {
    fail((e as Error).message);
  }
  if ((values as { help?: boolean }).help) {
    process.stdout.write(help + '\n');
    return undefined;
  }
  return values;
}
