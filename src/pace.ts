/**
 * Letting other work run during long computations: the server's slices (stage changes,
 * reconstruction, in-thread unmasking) all count their work and yield through this one helper.
 */

/** One macrotask: setImmediate where it exists (Node), else a zero-delay timeout. */
export const nextMacrotask = (): Promise<void> =>
  new Promise((resolve) => {
    const g = globalThis as { setImmediate?: (f: () => void) => unknown };
    if (typeof g.setImmediate === 'function') g.setImmediate(resolve);
    else setTimeout(resolve, 0);
  });

/**
 * A counter of work that awaits `yieldToEventLoop` each time `budget` units have run since the last
 * yield; a no-op without a yield. Each call site picks the unit and a budget of a millisecond or two.
 */
export function workPacer(budget: number, yieldToEventLoop: (() => Promise<void>) | undefined): (work: number) => Promise<void> {
  if (yieldToEventLoop === undefined) return async () => {};
  let since = 0;
  return async (work) => {
    since += work;
    if (since < budget) return;
    since = 0;
    await yieldToEventLoop();
  };
}
