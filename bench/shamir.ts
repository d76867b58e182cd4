/**
 * Shamir timings for the server/client sizes that matter: split (client, per secret), reconstruct
 * from exactly t shares with cold vs cached Lagrange coefficients (server, per secret), and
 * verified reconstruction from all n shares (includes checking the n − t spares).
 * Run: node dist/bench/shamir.js
 */
import { cryptoRng } from '../src/rng.js';
import { LagrangeCache, combineShares, reconstructVerified, splitSecret } from '../src/shamir/index.js';

function timeIt(fn: () => void, minMs = 300): number {
  fn(); // warm-up
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

async function timeAsync(fn: () => Promise<unknown>, minMs = 300): Promise<number> {
  await fn();
  let iters = 0;
  const start = performance.now();
  let now = start;
  while (now - start < minMs) {
    await fn();
    iters++;
    now = performance.now();
  }
  return (now - start) / iters;
}

function fmt(ms: number): string {
  return ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(1)} µs`;
}

const cases: Array<[number, number]> = [
  [100, 51],
  [500, 251],
  [1000, 501],
];

for (const [n, t] of cases) {
  const holders = Array.from({ length: n }, (_, i) => i + 1);
  const secret = cryptoRng(32);
  const shares = splitSecret({ secret, holders, threshold: t, rng: cryptoRng });
  const split = timeIt(() => splitSecret({ secret, holders, threshold: t, rng: cryptoRng }));

  const sub = holders.slice(0, t);
  const subShares = shares.slice(0, t);
  const cold = timeIt(() => combineShares({ holders: sub, shares: subShares }));
  const cache = new LagrangeCache();
  const cached = timeIt(() => combineShares({ holders: sub, shares: subShares, cache }));
  const verified = await timeAsync(() => reconstructVerified({ holders, shares, threshold: t, verify: () => true, cache }));

  // One bad share inside the canonical subset: exercises the swap-in search.
  const bad = shares.slice();
  const corrupt = new Uint8Array(bad[0]!);
  corrupt[0] = corrupt[0]! ^ 1;
  bad[0] = corrupt;
  const expect = Buffer.from(secret);
  const verify = (s: Uint8Array) => expect.equals(s);
  const oneBad = await timeAsync(() => reconstructVerified({ holders, shares: bad, threshold: t, verify, cache }), 200);

  console.log(
    `shamir n=${n} t=${t}: split ${fmt(split)}; combine t shares cold ${fmt(cold)}, cached ${fmt(cached)}; ` +
      `reconstructVerified all n ${fmt(verified)}; with 1 bad share ${fmt(oneBad)}`,
  );
}
