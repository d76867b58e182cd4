/**
 * The shard planner (src/graph/shards.ts): plans over many random cohorts, floors and caps, checked
 * against the rules written out here (every shard ≥ the floor and ≤ the cap, sizes within one, the
 * fewest shards, each shard's degree and threshold recomputed with recommendParameters /
 * completeGraphParameters, a config the protocol accepts); the refusals; the assignment of clients
 * to shards; and the example table of docs/protocol.md ("Sharding"), recomputed.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { assignToShards, completeGraphParameters, DEFAULT_MAX_SHARD_SIZE, planShards, recommendParameters, type ShardPlanRequest } from '../src/graph/index.js';
import { isSecAggError, SecAggError } from '../src/errors.js';
import { clientId, roundId } from '../src/ids.js';
import { unsafeSeededRng } from '../src/rng.js';
import { minimumThreshold, validateConfig, type RoundConfig } from '../src/protocol/config.js';

const rates = { dropoutRate: 0.1, corruptionRate: 0.05, securityBits: 40 } as const;

/** What the planner must give a shard of `size`, computed here from the parameter finder itself. */
function expectedFor(req: ShardPlanRequest, size: number) {
  const r = {
    clients: size,
    dropoutRate: req.dropoutRate,
    corruptionRate: req.corruptionRate,
    securityBits: req.securityBits,
    ...(req.correctnessBits !== undefined ? { correctnessBits: req.correctnessBits } : {}),
  };
  return req.graph === 'complete' ? completeGraphParameters(r) : recommendParameters(r);
}

function throwsInvalid(f: () => unknown, ...mentions: readonly (string | number)[]): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(isSecAggError(e, 'ERR_INVALID_PARAMETERS'), `expected ERR_INVALID_PARAMETERS, got ${String(e)}`);
    for (const m of mentions) assert.ok(e.message.includes(String(m)), `the message names ${m}: ${e.message}`);
    return true;
  });
}

const request = fc.record({
  clients: fc.integer({ min: 1, max: 20_000 }),
  minShardSize: fc.integer({ min: 3, max: 600 }),
  maxExtra: fc.integer({ min: 0, max: 1500 }),
  graph: fc.constantFrom('complete' as const, 'harary' as const),
  dropoutRate: fc.double({ min: 0, max: 0.3, noNaN: true }),
  corruptionRate: fc.double({ min: 0, max: 0.1, noNaN: true }),
  securityBits: fc.integer({ min: 20, max: 40 }),
});

describe('planShards', () => {
  it('property: floor, cap, sizes within one, fewest shards, every client placed, parameters per size as recommended', () => {
    fc.assert(
      fc.property(request, ({ maxExtra, ...r }) => {
        const req: ShardPlanRequest = { ...r, maxShardSize: r.minShardSize + maxExtra };
        const n = req.clients;
        const min = req.minShardSize;
        const max = req.maxShardSize!;
        if (n < min) return throwsInvalid(() => planShards(req), n, min);
        const count = Math.ceil(n / max);
        if (Math.floor(n / count) < min) return throwsInvalid(() => planShards(req), n, min, max);
        // Sizes this n splits into; if the finder refuses one of them, so must the planner.
        const sizes = [...new Set([Math.floor(n / count), Math.ceil(n / count)])];
        let expected: Map<number, ReturnType<typeof expectedFor>>;
        try {
          expected = new Map(sizes.map((s) => [s, expectedFor(req, s)]));
        } catch (e) {
          assert.ok(isSecAggError(e, 'ERR_INVALID_PARAMETERS'));
          return throwsInvalid(() => planShards(req), 'a shard of');
        }
        const plan = planShards(req);
        const got = plan.shards.map((s) => s.size);
        assert.equal(plan.shards.length, count, 'the fewest shards within the cap');
        if (count > 1) assert.ok(Math.ceil(n / (count - 1)) > max, 'one shard fewer would break the cap');
        assert.equal(
          got.reduce((a, b) => a + b, 0),
          n,
          'every client is in a shard',
        );
        assert.ok(
          got.every((s) => s >= min && s <= max),
          `every shard within [${min}, ${max}]: ${got}`,
        );
        assert.ok(Math.max(...got) - Math.min(...got) <= 1, 'sizes differ by at most one');
        for (let i = 1; i < got.length; i++) assert.ok(got[i]! <= got[i - 1]!, 'largest first');
        for (const s of plan.shards) {
          const rec = expected.get(s.size)!;
          assert.deepEqual(
            { degree: s.degree, threshold: s.threshold, corruption: s.corruption, complete: s.complete },
            { degree: rec.degree, threshold: rec.threshold, corruption: rec.corruption, complete: rec.complete },
            `shard of ${s.size}`,
          );
          if (req.graph === 'complete') {
            assert.equal(s.degree, s.size - 1);
            assert.ok(s.complete);
            assert.equal(s.threshold, minimumThreshold('active', 'complete', s.size, s.corruption), "the protocol's complete-graph threshold");
          }
          // The shard's round is one the protocol accepts, in both modes.
          for (const mode of ['active', 'semi-honest'] as const) {
            const config: RoundConfig = {
              roundId: roundId(new Uint8Array(16)),
              bits: 16,
              dimension: 1,
              threshold: s.threshold,
              degree: s.complete ? 'complete' : s.degree,
              mode,
              cohort: Array.from({ length: s.size }, (_, i) => clientId(i + 1)),
              corruption: s.corruption,
            };
            validateConfig(config);
          }
        }
        assert.deepEqual(
          { clients: plan.clients, minShardSize: plan.minShardSize, maxShardSize: plan.maxShardSize, graph: plan.graph },
          { clients: n, minShardSize: min, maxShardSize: max, graph: req.graph },
        );
      }),
      { numRuns: 150, seed: 13 },
    );
  });

  it('property: a cap of at least 2·floor − 1 splits every cohort at or above the floor', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 400 }), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 30_000 }), (min, extra, more) => {
        const max = Math.min(65535, 2 * min - 1 + extra);
        const plan = planShards({ clients: min + more, minShardSize: min, maxShardSize: max, graph: 'harary', ...rates, corruptionRate: 0 });
        assert.ok(plan.shards.every((s) => s.size >= min && s.size <= max));
      }),
      { numRuns: 60, seed: 14 },
    );
  });

  it('the default cap is DEFAULT_MAX_SHARD_SIZE (1000), or 2·floor − 1 when that is larger (every cohort then splits)', () => {
    assert.equal(DEFAULT_MAX_SHARD_SIZE, 1000);
    const plan = planShards({ clients: 10_001, minShardSize: 100, graph: 'harary', ...rates });
    assert.equal(plan.maxShardSize, 1000);
    assert.deepEqual(
      plan.shards.map((s) => s.size),
      [910, 910, ...Array(9).fill(909)],
    );
    const big = planShards({ clients: 2500, minShardSize: 1200, graph: 'harary', ...rates });
    assert.equal(big.maxShardSize, 2399);
    assert.deepEqual(
      big.shards.map((s) => s.size),
      [1250, 1250],
    );
    assert.equal(planShards({ clients: 40_000, minShardSize: 40_000, graph: 'harary', ...rates, corruptionRate: 0 }).maxShardSize, 65535);
    assert.deepEqual(
      planShards({ clients: 1000, minShardSize: 100, graph: 'harary', ...rates }).shards.map((s) => s.size),
      [1000],
    );
  });

  it('refuses a cohort below the floor, with the numbers', () => {
    throwsInvalid(() => planShards({ clients: 99, minShardSize: 100, graph: 'harary', ...rates }), '99', '100');
    throwsInvalid(() => planShards({ clients: 1, minShardSize: 3, graph: 'complete', ...rates }), '1 clients', '3');
  });

  it('refuses a cohort that no shard sizes within [floor, cap] can split, with the numbers', () => {
    // 1100 clients, floor 600, cap 1000: one shard is over the cap, two hold 550 each.
    throwsInvalid(() => planShards({ clients: 1100, minShardSize: 600, maxShardSize: 1000, graph: 'harary', ...rates }), '1100', '600', '1000', '550');
    // The same floor and cap split 1200 (2 × 600) and 1000 (1 × 1000).
    assert.deepEqual(
      planShards({ clients: 1200, minShardSize: 600, maxShardSize: 1000, graph: 'harary', ...rates }).shards.map((s) => s.size),
      [600, 600],
    );
  });

  it('refuses rates no shard of that size can meet, naming the shard size', () => {
    throwsInvalid(
      () => planShards({ clients: 40, minShardSize: 10, maxShardSize: 20, graph: 'harary', dropoutRate: 0.5, corruptionRate: 0.45, securityBits: 40 }),
      'a shard of 20 clients',
    );
    throwsInvalid(
      () => planShards({ clients: 40, minShardSize: 10, maxShardSize: 20, graph: 'complete', dropoutRate: 0.5, corruptionRate: 0.45, securityBits: 40 }),
      'a shard of 20 clients',
    );
    // The complete graph's range can be empty while A + D < n − 1: t ≥ ⌊(n − 1 + A)/2⌋ + 1 but t ≤ n − 1 − D.
    throwsInvalid(() => planShards({ clients: 20, minShardSize: 20, graph: 'complete', dropoutRate: 0.35, corruptionRate: 0.3, securityBits: 40 }), 't ≤ 12');
  });

  it('refuses a malformed request as a caller bug (RangeError / TypeError naming the field)', () => {
    const ok: ShardPlanRequest = { clients: 100, minShardSize: 10, graph: 'harary', ...rates };
    for (const [patch, name] of [
      [{ clients: 0 }, 'clients'],
      [{ clients: 1.5 }, 'clients'],
      [{ minShardSize: 2 }, 'minShardSize'],
      [{ minShardSize: 70_000 }, 'minShardSize'],
      [{ maxShardSize: 9 }, 'maxShardSize'],
      [{ maxShardSize: 65_536 }, 'maxShardSize'],
      [{ graph: 'star' }, 'graph'],
      [{ dropoutRate: 1 }, 'dropoutRate'],
      [{ securityBits: 0 }, 'securityBits'],
    ] as const)
      assert.throws(
        () => planShards({ ...ok, ...patch } as ShardPlanRequest),
        (e: unknown) => e instanceof RangeError && e.message.includes(name),
        name,
      );
    assert.throws(() => planShards(null as unknown as ShardPlanRequest), TypeError);
  });
});

describe('assignToShards', () => {
  it('property: every client exactly once, in-shard ids 1..size, shard sizes as planned', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 3000 }), fc.integer({ min: 3, max: 50 }), fc.integer({ min: 0, max: 200 }), fc.integer(), (n, min, extra, seed) => {
        fc.pre(n >= min);
        const max = 2 * min - 1 + extra;
        const plan = planShards({ clients: n, minShardSize: min, maxShardSize: max, graph: 'complete', dropoutRate: 0, corruptionRate: 0, securityBits: 40 });
        const keys = Array.from({ length: n }, (_, i) => `client-${i}`);
        const { shards } = assignToShards(keys, plan, unsafeSeededRng(seed));
        assert.equal(shards.length, plan.shards.length);
        const seen = new Set<string>();
        shards.forEach((members, s) => {
          assert.equal(members.length, plan.shards[s]!.size);
          members.forEach((m, i) => {
            assert.equal(m.id, i + 1, 'in-shard ids are 1..size in order');
            assert.equal(m.shard, s);
            assert.ok(!seen.has(m.key), `${m.key} placed once`);
            seen.add(m.key);
          });
        });
        assert.equal(seen.size, n, 'every client placed');
      }),
      { numRuns: 100, seed: 15 },
    );
  });

  it('is a function of the rng: the same seed deals the same shards, another seed others', () => {
    const plan = planShards({ clients: 60, minShardSize: 10, maxShardSize: 20, graph: 'harary', ...rates, corruptionRate: 0 });
    const keys = Array.from({ length: 60 }, (_, i) => i * 7);
    const deal = (seed: number) => assignToShards(keys, plan, unsafeSeededRng(seed)).shards.map((m) => m.map((x) => x.key));
    assert.deepEqual(deal(1), deal(1));
    assert.notDeepEqual(deal(1), deal(2));
    assert.notDeepEqual(deal(1).flat(), keys, 'shuffled, not dealt in order');
  });

  it('every position is equally likely (χ² over 6000 deals, 5 degrees of freedom)', () => {
    const plan = planShards({ clients: 6, minShardSize: 3, maxShardSize: 3, graph: 'complete', dropoutRate: 0, corruptionRate: 0, securityBits: 40 });
    const keys = ['a', 'b', 'c', 'd', 'e', 'f'];
    const rng = unsafeSeededRng(99);
    const counts = new Array(6).fill(0);
    const trials = 6000;
    for (let i = 0; i < trials; i++) {
      const flat = assignToShards(keys, plan, rng).shards.flat();
      counts[flat.findIndex((m) => m.key === 'a')]++;
    }
    const e = trials / 6;
    const chi2 = counts.reduce((a, c) => a + (c - e) ** 2 / e, 0);
    assert.ok(chi2 < 20.5, `χ² = ${chi2.toFixed(2)} (p < 0.001 above 20.5): ${counts}`);
  });

  it('refuses keys that do not match the plan (RangeError), and a bad rng (TypeError)', () => {
    const plan = planShards({ clients: 10, minShardSize: 5, graph: 'complete', dropoutRate: 0, corruptionRate: 0, securityBits: 40 });
    const keys = Array.from({ length: 10 }, (_, i) => i);
    assert.throws(() => assignToShards(keys.slice(1), plan, unsafeSeededRng(1)), /9 clients, the plan places 10/);
    assert.throws(() => assignToShards([...keys.slice(1), 1], plan, unsafeSeededRng(1)), /distinct/);
    assert.throws(() => assignToShards(keys, plan, (() => new Uint8Array(1)) as never), TypeError);
    assert.throws(() => assignToShards('abc' as never, plan, unsafeSeededRng(1)), TypeError);
  });
});

describe('docs/protocol.md "Sharding"', () => {
  it('the example table is what planShards gives', () => {
    const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## Sharding'));
    const rows = section
      .split('\n')
      .filter((l) => /^\| \d/.test(l))
      .map((l) =>
        l
          .split('|')
          .slice(1, -1)
          .map((c) => c.trim()),
      );
    assert.ok(rows.length >= 6, `rows found: ${rows.length}`);
    for (const [clients, min, graph, shards, sizes, degree, threshold, corruption] of rows) {
      const plan = planShards({ clients: Number(clients), minShardSize: Number(min), graph: graph as 'complete' | 'harary', ...rates });
      const distinct = [...new Map(plan.shards.map((s) => [s.size, s])).values()];
      assert.equal(String(plan.shards.length), shards, `${clients} clients: shards`);
      assert.equal(distinct.map((s) => s.size).join(', '), sizes, `${clients}: sizes`);
      assert.equal(distinct.map((s) => s.degree).join(', '), degree, `${clients}: degree`);
      assert.equal(distinct.map((s) => s.threshold).join(', '), threshold, `${clients}: threshold`);
      assert.equal(distinct.map((s) => s.corruption).join(', '), corruption, `${clients}: corruption`);
    }
  });
});

// A SecAggError the planner rethrows keeps the finder's error as its cause (for logs).
it('a refused shard size keeps the parameter finder’s error as its cause', () => {
  try {
    planShards({ clients: 20, minShardSize: 20, graph: 'harary', dropoutRate: 0.5, corruptionRate: 0.45, securityBits: 40 });
    assert.fail('expected a refusal');
  } catch (e) {
    assert.ok(e instanceof SecAggError && e.cause instanceof SecAggError);
  }
});
