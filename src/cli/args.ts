/**
 * Argument helpers every `secagg` command shares. Kept free of the service so that loading a
 * command's flags never loads the server stack (ws, SQLite, worker threads).
 */

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
