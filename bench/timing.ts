/**
 * The one timing helper of the benchmarks: one call timed, repeated samples with their median, mean
 * ms per call over a time budget, and this machine's PRG keystream rate — the floor every timing is
 * also reported against (DESIGN.md, "Performance model") — with the conversions to it.
 */
import { performance } from 'node:perf_hooks';
import { nodeCrypto } from '../src/crypto/node.js';

/** The median of `xs` (NaN for none). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 === 1 ? s[(n - 1) >> 1]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

/** Milliseconds one synchronous call of `fn` takes. */
function time(fn: () => unknown): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

/** One call of `fn`, awaited: its value and the milliseconds it took. */
export async function timed<T>(fn: () => Promise<T> | T): Promise<{ value: T; ms: number }> {
  const t = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - t };
}

/** Milliseconds one awaited call of `fn` takes. */
export async function timeAsync(fn: () => unknown): Promise<number> {
  return (await timed(fn)).ms;
}

/** Repeated timings of one piece of work (ms each), and their median. */
export interface Samples {
  readonly samples: number[];
  readonly median: number;
}

/** `reps` timings of `fn` (awaited) after `warmup` untimed calls. */
export async function sample(fn: () => unknown, reps: number, warmup = 0): Promise<Samples> {
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) samples.push(await timeAsync(fn));
  return { samples, median: median(samples) };
}

export interface PerCallOptions {
  /** Keep calling for at least this long (default 300 ms). */
  readonly minMs?: number;
  /** Untimed calls first, so optimised code is measured (default 20 synchronous, 1 awaited). */
  readonly warmup?: number;
  /** Read the clock every `batch` calls only, for calls of a few µs (default 1). */
  readonly batch?: number;
}

/** Mean ms per call of `fn`, called repeatedly for at least `minMs` after `warmup` untimed calls. */
export function msPerCall(fn: () => unknown, { minMs = 300, warmup = 20, batch = 1 }: PerCallOptions = {}): number {
  for (let i = 0; i < warmup; i++) fn();
  let calls = 0;
  const start = performance.now();
  let now = start;
  while (now - start < minMs) {
    fn();
    if (++calls % batch === 0) now = performance.now();
  }
  return (now - start) / calls;
}

/** msPerCall with every call awaited before the next. */
export async function msPerCallAsync(fn: () => unknown, { minMs = 300, warmup = 1, batch = 1 }: PerCallOptions = {}): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  let calls = 0;
  const start = performance.now();
  let now = start;
  while (now - start < minMs) {
    await fn();
    if (++calls % batch === 0) now = performance.now();
  }
  return (now - start) / calls;
}

const noop = (): void => {};

/** Time `words` words of nodeCrypto.keystream (AES-128-CTR) into a no-op sink, on this thread. */
export function timeKeystream(key: Uint8Array, words: number): number {
  return time(() => nodeCrypto.keystream(key, words, noop));
}

/** This thread's keystream rate in bytes per ms (= 1e-6 GB/s): `reps` runs of `words` words after a warm-up, each rate and their median. */
export function keystreamRate(words: number, reps: number): { bytesPerMs: number; samples: number[] } {
  const key = new Uint8Array(16).fill(7);
  timeKeystream(key, Math.min(words, 1 << 18)); // warm-up
  const samples = Array.from({ length: reps }, () => (4 * words) / timeKeystream(key, words));
  return { bytesPerMs: median(samples), samples };
}

/**
 * The floor of the micro-benchmarks, in bytes per ms: the best of 9 keystream runs of 4 MiB.
 * Best, not median: on this VM a run is either ~5 GB/s or ~1.5 GB/s (page faults on the fresh
 * output buffers node:crypto allocates), and a floor should be the fastest the machine can go.
 */
export function keystreamBytesPerMs(): number {
  return Math.max(...keystreamRate(1 << 20, 9).samples);
}

/** Milliseconds this machine takes to produce `words` keystream words at `bytesPerMs`. */
export const keystreamMs = (words: number, bytesPerMs: number): number => (4 * words) / bytesPerMs;

/** A rate in bytes per ms as GB/s. */
export const toGBps = (bytesPerMs: number): number => bytesPerMs / 1e6;

export const gbps = (bytesPerMs: number): string => `${toGBps(bytesPerMs).toFixed(2)} GB/s`;

/** `ms` as the keystream this machine generates in the same time ("≈ 180 KB ks"): a timing relative to the PRG floor. */
export function asKeystream(ms: number, bytesPerMs: number): string {
  const bytes = ms * bytesPerMs;
  if (bytes >= 1e9) return `≈ ${(bytes / 1e9).toFixed(2)} GB ks`;
  return bytes >= 1e6 ? `≈ ${(bytes / 1e6).toFixed(1)} MB ks` : `≈ ${(bytes / 1e3).toFixed(bytes >= 1e4 ? 0 : 1)} KB ks`;
}
