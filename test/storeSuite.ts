/**
 * The RoundStore contract, once, for every store: `describeRoundStore(name, open)` registers the
 * same tests against a store made by `open` (store.test.ts runs it for the memory and SQLite
 * stores; a Redis or PostgreSQL store would run it too). Importing this file registers nothing:
 * node's runner loads every file under dist/test/.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RoundOutcome, RoundRecord, RoundStore } from '../src/server/store.js';

export interface StoreUnderTest {
  readonly store: RoundStore;
  /** Close and open the same store again (a restart); omitted for a store that does not persist. */
  readonly reopen?: () => Promise<RoundStore>;
  /** Remove whatever the store left behind (files). */
  readonly dispose?: () => void;
}

export function record(i: number): Omit<RoundRecord, 'id'> {
  return {
    roundId: i.toString(16).padStart(32, '0'),
    params: { bits: 16, dimension: 4, threshold: 2, degree: 2, mode: 'semi-honest', cohort: 3 },
    startedAt: 1000 + i,
    endedAt: null,
    outcome: 'running',
    code: null,
    reason: null,
    stage: 'advertise',
    stages: {},
    included: null,
  };
}

/** 250 rounds: every 3rd aborted, every 7th (not aborted) left running, the rest completed. */
async function fill(store: RoundStore): Promise<Record<RoundOutcome, number>> {
  const want: Record<RoundOutcome, number> = { running: 0, completed: 0, aborted: 0 };
  for (let i = 0; i < 250; i++) {
    const id = await store.begin(record(i));
    const outcome: RoundOutcome = i % 3 === 0 ? 'aborted' : i % 7 === 0 ? 'running' : 'completed';
    want[outcome]++;
    if (outcome === 'running') continue;
    await store.save({
      ...record(i),
      id,
      outcome,
      endedAt: 2000 + i,
      ...(outcome === 'aborted' ? { code: 'ERR_TIMEOUT', reason: 'test' } : { included: [1, 2], sum: new Uint32Array([i, 0, 0, 0]) }),
    });
  }
  return want;
}

/** A record without its sum (stores differ in whether "no sum" is absent or null). */
const withoutSum = (r: RoundRecord | undefined): Omit<RoundRecord, 'sum'> | undefined => {
  if (r === undefined) return undefined;
  const { sum: _sum, ...rest } = r;
  return rest;
};

/** `open` makes a fresh, empty store for each test; `reopen` (a restart) is tested where it is given. */
export function describeRoundStore(name: string, open: () => Promise<StoreUnderTest>, options: { persistent?: boolean } = {}): void {
  describe(`${name}: the RoundStore contract`, () => {
    const withStore = async (f: (s: StoreUnderTest) => Promise<void>) => {
      const s = await open();
      try {
        await f(s);
      } finally {
        s.dispose?.();
      }
    };

    test('begin numbers rounds 1, 2, 3, …; get returns what was saved, sum included; an unknown round is undefined', () =>
      withStore(async ({ store }) => {
        assert.deepEqual([await store.begin(record(0)), await store.begin(record(1)), await store.begin(record(2))], [1, 2, 3]);
        const running = await store.get(2);
        assert.deepEqual(withoutSum(running), { ...record(1), id: 2 });
        assert.ok(!running!.sum, 'a running round has no sum');
        const done: RoundRecord = {
          ...record(1),
          id: 2,
          endedAt: 5000,
          outcome: 'completed',
          stage: 'done',
          stages: { advertise: { clients: 3, startedAt: 1001, endedAt: 1002, bytesIn: 300, bytesOut: 900 } },
          included: [1, 3],
          sum: new Uint32Array([7, 0xffffffff, 0, 42]),
        };
        await store.save(done);
        const got = await store.get(2);
        assert.deepEqual(withoutSum(got), withoutSum(done));
        assert.deepEqual(got!.sum, done.sum);
        assert.equal(await store.get(99), undefined);
        assert.deepEqual(withoutSum(await store.get(1)), { ...record(0), id: 1 }, 'the other rounds are untouched');
        await store.close();
      }));

    test('stage records keep expected, dropped and the deadline flag; one recorded before those fields reads back without them', () =>
      withStore(async ({ store }) => {
        const id = await store.begin(record(0));
        const stages: RoundRecord['stages'] = {
          // as rounds were recorded before the dashboard's per-stage dropouts: no expected / dropped / deadline
          advertise: { clients: 3, startedAt: 1001, endedAt: 1002, bytesIn: 300, bytesOut: 900 },
          share: { clients: 2, startedAt: 1002, endedAt: 1700, bytesIn: 200, bytesOut: 600, expected: 3, dropped: 1, deadline: true },
          masked: { clients: 2, startedAt: 1700, endedAt: 1710, bytesIn: 80, bytesOut: 40, expected: 2, dropped: 0, deadline: false },
        };
        await store.save({ ...record(0), id, outcome: 'aborted', code: 'ERR_BELOW_THRESHOLD', reason: 'x', endedAt: 1710, stages });
        for (const got of [(await store.get(id))!, (await store.list())[0]!]) {
          assert.deepEqual(got.stages, stages);
          assert.ok(!('dropped' in got.stages.advertise!), 'an old stage record gets no invented dropouts');
        }
        await store.close();
      }));

    test("a cluster round's shard outcomes (never a shard's sum) come back from get and list; a one-process round has none", () =>
      withStore(async ({ store }) => {
        const plain = await store.begin(record(0));
        const id = await store.begin(record(1));
        const shards: NonNullable<RoundRecord['shards']> = [
          { index: 0, clients: 12, threshold: 7, degree: 11, outcome: 'completed', included: 11, counted: true, worker: 'w0' },
          { index: 1, clients: 12, threshold: 7, degree: 11, outcome: 'completed', included: 12, counted: true, worker: 'w1', owners: 2 },
        ];
        await store.save({ ...record(1), id, outcome: 'completed', stage: 'done', endedAt: 3000, included: [1, 2, 3], sum: new Uint32Array(4), shards });
        assert.deepEqual((await store.get(id))!.shards, shards);
        assert.deepEqual((await store.list()).find((r) => r.id === id)!.shards, shards);
        assert.equal((await store.get(plain))!.shards, undefined);
        await store.close();
      }));

    test('DP entries: kept with the record (Infinity RDP orders read back as Infinity via the ledger), latestDp is the newest cumulative RDP, also after a reopen', () =>
      withStore(async (s) => {
        assert.equal(await s.store.latestDp(), undefined, 'an empty history has none');
        const dp = (rounds: number, rdp: number[] | null) => ({
          mechanism: 'skellam' as const,
          targetVariance: 1e6,
          removable: true,
          minHonest: 2,
          scale: 100,
          l2Sensitivity: 120,
          l1Sensitivity: 900,
          samplingRate: 1,
          delta: 1e-5,
          noise: rdp ? { mechanism: 'skellam' as const, releasedVariance: 1e6 } : null,
          epsilon: rdp ? 0.5 : 0,
          cumulativeEpsilon: rounds * 0.5,
          cumulativeRdp: rdp,
          cumulativeRounds: rounds,
        });
        const a = await s.store.begin(record(0));
        await s.store.save({ ...record(0), id: a, outcome: 'completed', included: [1, 2], dp: dp(1, [0.1, 0.2]) });
        const b = await s.store.begin(record(1));
        await s.store.save({ ...record(1), id: b, outcome: 'completed', included: [1, 2], dp: dp(2, [0.2, 0.4]) });
        const c = await s.store.begin({ ...record(2), dp: { ...dp(0, null), cumulativeEpsilon: null, cumulativeRounds: null } });
        assert.deepEqual((await s.store.get(b))!.dp, dp(2, [0.2, 0.4]));
        assert.deepEqual((await s.store.list())[1]!.dp, dp(2, [0.2, 0.4]));
        assert.equal((await s.store.get(c))!.dp!.cumulativeRdp, null);
        assert.deepEqual(await s.store.latestDp(), { cumulativeRdp: [0.2, 0.4], rounds: 2 }, 'the running round has no cumulative RDP yet');
        const plain = await s.store.begin(record(3));
        assert.ok(!('dp' in (await s.store.get(plain))!), 'a round without DP has no dp entry');
        if (s.reopen) {
          const again = await s.reopen();
          assert.deepEqual(await again.latestDp(), { cumulativeRdp: [0.2, 0.4], rounds: 2 });
          await again.close();
        } else await s.store.close();
      }));

    test('cluster rounds: every shard summary is kept with the record (get, list, after a reopen); a round without shards has no shards entry', () =>
      withStore(async (s) => {
        const shards: NonNullable<RoundRecord['shards']> = [
          { index: 0, clients: 10, threshold: 6, degree: 9, outcome: 'completed', included: 9, counted: true, worker: 'w0', owners: 2 },
          { index: 1, clients: 10, threshold: 6, degree: 9, outcome: 'aborted', included: 0, counted: false, code: 'ERR_BELOW_THRESHOLD' },
        ];
        const id = await s.store.begin({ ...record(0), shards: shards.map((x) => ({ ...x, outcome: 'running' as const })) });
        assert.equal((await s.store.get(id))!.shards![1]!.outcome, 'running');
        await s.store.save({ ...record(0), id, outcome: 'completed', included: [1, 2], sum: new Uint32Array([5, 6, 7, 8]), shards });
        const plain = await s.store.begin(record(1));
        const check = async (st: typeof s.store) => {
          assert.deepEqual((await st.get(id))!.shards, shards);
          assert.deepEqual((await st.list()).find((r) => r.id === id)!.shards, shards);
          assert.ok(!('shards' in (await st.get(plain))!), 'a one-process round has no shards entry');
        };
        await check(s.store);
        if (s.reopen) {
          const again = await s.reopen();
          await check(again);
          await again.close();
        } else await s.store.close();
      }));

    test('what a store returns and what it was given are copies: changing either later changes nothing stored', () =>
      withStore(async ({ store }) => {
        const id = await store.begin(record(0));
        const saved: RoundRecord = { ...record(0), id, outcome: 'completed', included: [1, 2], sum: new Uint32Array([1, 2, 3, 4]) };
        await store.save(saved);
        saved.included!.push(3);
        saved.sum![0] = 99;
        saved.outcome = 'aborted';
        const got = (await store.get(id))!;
        assert.deepEqual(got.included, [1, 2]);
        assert.deepEqual(got.sum, new Uint32Array([1, 2, 3, 4]));
        got.sum![1] = 77;
        got.included!.push(9);
        const again = (await store.get(id))!;
        assert.deepEqual(again.sum, new Uint32Array([1, 2, 3, 4]));
        assert.deepEqual(again.included, [1, 2]);
        assert.equal(again.outcome, 'completed');
        await store.close();
      }));

    test('list: newest first, 100 by default or `limit`, without sums', () =>
      withStore(async ({ store }) => {
        await fill(store);
        const page = await store.list();
        assert.equal(page.length, 100);
        assert.deepEqual(
          page.slice(0, 3).map((r) => r.id),
          [250, 249, 248],
        );
        assert.ok(
          page.every((r) => !r.sum),
          'no sums in a list',
        );
        assert.equal(page.find((r) => r.id === 248)!.included?.length, 2, 'the rest of the record is there');
        assert.deepEqual(
          (await store.list({ limit: 2 })).map((r) => r.id),
          [250, 249],
        );
        await store.close();
      }));

    test('outcome totals cover the whole history, beyond one page of list(); abortUnfinished aborts exactly the running rounds', () =>
      withStore(async ({ store }) => {
        const want = await fill(store);
        assert.deepEqual(await store.countOutcomes(), want);
        const interrupted = await store.abortUnfinished('ERR_INTERRUPTED', 'restart', 9999);
        assert.equal(interrupted.length, want.running);
        assert.deepEqual(
          interrupted,
          Array.from({ length: 250 }, (_, i) => i)
            .filter((i) => i % 3 !== 0 && i % 7 === 0)
            .map((i) => i + 1),
        );
        const one = (await store.get(interrupted[0]!))!;
        assert.equal(one.outcome, 'aborted');
        assert.equal(one.code, 'ERR_INTERRUPTED');
        assert.equal(one.reason, 'restart');
        assert.equal(one.endedAt, 9999);
        assert.ok(!one.sum);
        assert.deepEqual(await store.countOutcomes(), { running: 0, completed: want.completed, aborted: want.aborted + want.running });
        assert.deepEqual(await store.abortUnfinished('ERR_INTERRUPTED', 'again', 10_000), [], 'nothing is left running');
        await store.close();
      }));

    if (options.persistent)
      test('the same history after a restart', async () => {
        const s = await open();
        try {
          assert.ok(s.reopen, 'a persistent store under test can be reopened');
          const want = await fill(s.store);
          const before = await s.store.get(5);
          const store = await s.reopen();
          assert.deepEqual(await store.countOutcomes(), want);
          assert.deepEqual(await store.get(5), before);
          assert.equal(await store.begin(record(999)), 251, 'numbering goes on');
          await store.close();
        } finally {
          s.dispose?.();
        }
      });
  });
}
