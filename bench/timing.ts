/** Timing helpers shared by the micro-benchmarks. */
import { nodeCrypto } from '../src/crypto/node.js';

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

/**
 * This machine's PRG keystream rate right now, in bytes per ms: nodeCrypto.keystream (AES-128-CTR)
 * into a no-op sink, the best of 9 runs of 4 MiB — the floor every timing is also reported against.
 * Best, not median: on this VM a run is either ~5 GB/s or ~1.5 GB/s (page faults on the fresh
 * output buffers node:crypto allocates), and a floor should be the fastest the machine can go.
 */
export function keystreamBytesPerMs(): number {
  const key = new Uint8Array(16).fill(7);
  const words = 1 << 20;
  nodeCrypto.keystream(key, words >> 4, () => {}); // warm-up
  const rates: number[] = [];
  for (let i = 0; i < 9; i++) {
    const t = performance.now();
    nodeCrypto.keystream(key, words, () => {});
    rates.push((4 * words) / (performance.now() - t));
  }
  return Math.max(...rates);
}

/** `ms` as the keystream this machine generates in the same time ("≈ 180 KB ks"): a timing relative to the PRG floor. */
export function asKeystream(ms: number, bytesPerMs: number): string {
  const bytes = ms * bytesPerMs;
  if (bytes >= 1e9) return `≈ ${(bytes / 1e9).toFixed(2)} GB ks`;
  return bytes >= 1e6 ? `≈ ${(bytes / 1e6).toFixed(1)} MB ks` : `≈ ${(bytes / 1e3).toFixed(bytes >= 1e4 ? 0 : 1)} KB ks`;
}

export const gbps = (bytesPerMs: number): string => `${(bytesPerMs / 1e6).toFixed(2)} GB/s`;
