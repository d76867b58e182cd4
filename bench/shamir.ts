/**
 * Shamir timings for the server/client sizes that matter: split (client, per secret), reconstruct
 * from exactly t shares with cold vs cached Lagrange coefficients (server, per secret), and
 * verified reconstruction from all n shares: the common case (all honest; the cached dual check
 * clears the n − t spares in O(n·C)), the same without a cache, and with one bad spare (the exact
 * O((n − t)·t·C) per-spare check that names it — what every call cost before the dual check).
 * Second table: a whole complete-graph round (n owners, each reconstructed from U \ {v}) with one
 * cache, before supersets (every owner O(n²): O(n³) in all) and after (dual.ts, "Supersets").
 * Run: node dist/bench/shamir.js
 */
import { cryptoRng } from '../src/rng.js';
import { LagrangeCache, combineShares, reconstructVerified, splitSecret } from '../src/shamir/index.js';
import { asKeystream, gbps, keystreamBytesPerMs, msPerCall, msPerCallAsync, timed } from './timing.js';

const rate = keystreamBytesPerMs();
console.log(`PRG keystream floor in this run: ${gbps(rate)}; each timing also as the keystream generated in the same time`);

function fmt(ms: number): string {
  return `${ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(1)} µs`} (${asKeystream(ms, rate)})`;
}

const cases: Array<[number, number]> = [
  [100, 51],
  [500, 251],
  [1000, 501],
];

const table: string[][] = [
  ['n', 't', 'split', 'combine cold', 'combine cached', 'verified all n', 'verified all n, no cache', 'exact check (1 bad spare)', '1 bad canonical'],
];

for (const [n, t] of cases) {
  const holders = Array.from({ length: n }, (_, i) => i + 1);
  const secret = cryptoRng(32);
  const shares = splitSecret({ secret, holders, threshold: t, rng: cryptoRng });
  const split = msPerCall(() => splitSecret({ secret, holders, threshold: t, rng: cryptoRng }));

  const sub = holders.slice(0, t);
  const subShares = shares.slice(0, t);
  const cold = msPerCall(() => combineShares({ holders: sub, shares: subShares }));
  const cache = new LagrangeCache();
  const cached = msPerCall(() => combineShares({ holders: sub, shares: subShares, cache }));
  const expect = Buffer.from(secret);
  const verify = (s: Uint8Array) => expect.equals(s);

  // All n shares honest, cache warm: the server's common case. The dual check clears all n shares
  // in O(n·C); the exact per-spare check must not run.
  const verified = await msPerCallAsync(() => reconstructVerified({ holders, shares, threshold: t, verify, cache }));
  if (cache.exactChecks !== 0) throw new Error('fast path not taken');
  // No cache: Lagrange coefficients and dual vectors are recomputed every time (O(n²)).
  const verifiedCold = await msPerCallAsync(() => reconstructVerified({ holders, shares, threshold: t, verify }), { minMs: 200 });

  // One bad spare (last holder, one chunk): the dual check fails and the exact O((n − t)·t·C)
  // per-spare check names it — the cost every verified reconstruction paid before the fast path.
  const badSpare = shares.slice();
  const cs = new Uint8Array(badSpare[n - 1]!);
  cs[0] = cs[0]! ^ 1;
  badSpare[n - 1] = cs;
  const before = cache.exactChecks;
  const exact = await msPerCallAsync(() => reconstructVerified({ holders, shares: badSpare, threshold: t, verify, cache }), { minMs: 200 });
  if (cache.exactChecks === before) throw new Error('exact check not taken');

  // One bad share inside the canonical subset: exercises the swap-in search (then the exact check).
  const bad = shares.slice();
  const corrupt = new Uint8Array(bad[0]!);
  corrupt[0] = corrupt[0]! ^ 1;
  bad[0] = corrupt;
  const oneBad = await msPerCallAsync(() => reconstructVerified({ holders, shares: bad, threshold: t, verify, cache }), { minMs: 200 });

  table.push([`${n}`, `${t}`, fmt(split), fmt(cold), fmt(cached), fmt(verified), fmt(verifiedCold), fmt(exact), fmt(oneBad)]);
}

printTable(table);

// The server's complete-graph case: every owner v's shares are held by U \ {v} (U = the n
// responders), one fresh LagrangeCache for the whole round as in serverRound.finish(). Without
// supersets (`supersets: false`, the code before them) every owner misses the dual-vector cache at
// O(n²) each: O(n³) for the round. With them the O(n²) part is done a constant number of times.
const rounds: string[][] = [
  ['n', 't', 'n owners each from U \\ {v}: before (no supersets)', 'after (automatic)', 'after + setUniverse(U)', 'per owner', 'O(n²) weight computations'],
];
for (const [n, t] of [
  [500, 251],
  [1000, 501],
] as const) {
  const U = Array.from({ length: n }, (_, i) => i + 1);
  const owners = U.map((v) => {
    const secret = cryptoRng(32);
    const holders = U.filter((u) => u !== v);
    const shares = splitSecret({ secret, holders, threshold: t, rng: cryptoRng });
    const expect = Buffer.from(secret);
    return { holders, shares, verify: (s: Uint8Array) => expect.equals(s) };
  });
  const once = async (opts: { supersets: boolean; universe: boolean }) => {
    const cache = new LagrangeCache({ supersets: opts.supersets });
    const { ms } = await timed(async () => {
      if (opts.universe) cache.setUniverse(U);
      for (const o of owners) await reconstructVerified({ holders: o.holders, shares: o.shares, threshold: t, verify: o.verify, cache });
    });
    if (cache.exactChecks !== 0) throw new Error('fast path not taken');
    return { ms, weights: cache.weightComputations };
  };
  const median = async (opts: { supersets: boolean; universe: boolean }) => {
    await once(opts); // warm-up
    const runs = [await once(opts), await once(opts), await once(opts)].sort((a, b) => a.ms - b.ms);
    return runs[1]!;
  };
  const auto = await median({ supersets: true, universe: false });
  const univ = await median({ supersets: true, universe: true });
  const before = await once({ supersets: false, universe: false }); // one run: O(n³), seconds
  rounds.push([`${n}`, `${t}`, fmt(before.ms), fmt(auto.ms), fmt(univ.ms), fmt(univ.ms / n), `${before.weights} → ${auto.weights} / ${univ.weights}`]);
}
console.log();
printTable(rounds);

function printTable(table: string[][]): void {
  const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  for (const [i, row] of table.entries()) {
    console.log('| ' + row.map((cell, c) => cell.padStart(widths[c]!)).join(' | ') + ' |');
    if (i === 0) console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  }
}
