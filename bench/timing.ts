/** Timing helper shared by the micro-benchmarks. */

/** Mean ms per call of `fn`, run repeatedly for at least `minMs` after `warmup` untimed calls (so optimised code is measured). */
export function timeIt(fn: () => unknown, minMs = 300, warmup = 20): number {
  for (let i = 0; i < warmup; i++) fn();
  let iters = 0;
  const start = performance.now();
  let now = start;
  while (now - start < minMs) {
    fn();
    iters++;
    now = performance.now();
  }
  return (now - start) / iters;
}
