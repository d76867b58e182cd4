/**
 * Time, injected. The round runner's stage deadlines read the time and set timers only through a
 * Clock, so a test can move time by hand (manualClock) instead of sleeping, and a deadline that
 * fires in the middle of a stage change is a plain unit test. (The service's connection timers —
 * handshake timeout, keep-alive, start delay — still use the runtime's timers directly.)
 * Browser-safe: only the timer functions every runtime has.
 */

/** An opaque timer handle: whatever `setTimer` returned, given back to `clearTimer`. */
export type TimerHandle = unknown;

export interface Clock {
  /** Milliseconds since the epoch (the real clock: Date.now()). */
  now(): number;
  /** Call `fn` once after `ms` milliseconds. */
  setTimer(ms: number, fn: () => void): TimerHandle;
  /** Cancel a timer that has not fired; a handle that has fired or was cleared is ignored. */
  clearTimer(handle: TimerHandle): void;
}

/** The default clock: Date.now and the runtime's setTimeout. */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimer: (ms, fn) => setTimeout(fn, ms),
  clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface ManualClock extends Clock {
  /** Timers set and not yet fired or cleared. */
  readonly pending: number;
  /** Move time forward by `ms`, firing every timer that falls due, in due order (ties: in the order they were set). */
  advance(ms: number): void;
}

/**
 * A clock that moves only when told to: for tests. Timers fire synchronously inside advance();
 * work they start (e.g. a deadline queued in a round runner) still runs on the microtask queue.
 *
 * @example
 * ```ts
 * const clock = manualClock();
 * clock.setTimer(100, () => console.log('fired'));
 * clock.advance(99); // nothing
 * clock.advance(1);  // fired
 * ```
 */
export function manualClock(start = 0): ManualClock {
  let now = start;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => now,
    setTimer(ms, fn) {
      const id = ++seq;
      timers.set(id, { at: now + Math.max(0, ms), fn });
      return id;
    },
    clearTimer(handle) {
      timers.delete(handle as number);
    },
    get pending() {
      return timers.size;
    },
    advance(ms) {
      const until = now + ms;
      for (;;) {
        // The earliest timer due by `until`; a timer set by one that fires is considered too.
        let next: number | undefined;
        for (const [id, t] of timers) if (t.at <= until && (next === undefined || t.at < timers.get(next)!.at)) next = id;
        if (next === undefined) break;
        const t = timers.get(next)!;
        timers.delete(next);
        now = t.at;
        t.fn();
      }
      now = until;
    },
  };
}
