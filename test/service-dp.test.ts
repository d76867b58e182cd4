/**
 * Differential privacy in the service (#12 part 5): the dp options and their errors; the budget
 * decision and the ledger against the accountant called here independently (accountRounds /
 * mechanismRdp / epsilonFromRdp with the plan's sensitivities and the released variance); the
 * encoding an app uses; a real service with real clients: RoundConfig.dp in every round, the
 * record's ε, the budget stopping rounds (status, metrics, one log line), and a restart continuing
 * the spent ε from the SQLite history.
 */
import { describe, test } from 'node:test';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveOptions, type ServiceOptions } from '../src/server/options.js';
import { budgetDecision, DpLedger, resolveDp, roundPlan, serviceEncoding, accountedMechanism } from '../src/server/dp.js';
import { silentLogger, type PublishedResult, type SecAggServer } from '../src/server/index.js';
import { isClientError, participate, type RoundInfo, type RoundReport } from '../src/client/index.js';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';
import type { AddressInfo } from 'node:net';
import { decodeControl, encodeControl, isControlFrame } from '../src/transport/frames.js';
import { DpMechanism, Mode } from '../src/wire/gen/secagg/v1/secagg_pb.js';
import { PROTOCOL_VERSION } from '../src/wire/codec.js';
import {
  accountRounds,
  centre,
  DEFAULT_RDP_ORDERS,
  decodeDpMean,
  epsilonFromRdp,
  mechanismRdp,
  encodeForRound,
  planDp,
  planForEncoding,
  roundSeed,
  dpPolicyFor,
  type DpEncoding,
} from '../src/index.js';
import { nextResult, startServer, tamperingProxy, token, WS } from './serviceHelpers.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const resolve = (o: Partial<ServiceOptions>) => resolveOptions({ logger: silentLogger, unmaskWorkers: 0, ...o });

describe('ServiceOptions.dp', () => {
  test('defaults: skellam, removable, δ 1e−5, no population, no budget; the encoding is the largest scale for maxClients', () => {
    const o = resolve({ dimension: 64, bits: 16, minClients: 4, maxClients: 8, dp: { noiseMultiplier: 1, l2Clip: 1 } });
    const dp = resolveDp(o.dp);
    assert.deepEqual(dp, { mechanism: 'skellam', noiseMultiplier: 1, l2Clip: 1, removable: true, population: undefined, delta: 1e-5, budget: undefined });
    const { encoding, plan } = serviceEncoding(dp, o, 3);
    assert.equal(plan.clients, 8);
    assert.equal(plan.minClients, 3);
    assert.deepEqual(Object.keys(encoding).sort(), ['beta', 'bits', 'clip', 'dimension', 'mechanism', 'noiseMultiplier', 'scale', 'version']);
    assert.equal(resolveDp({ noiseMultiplier: 1, l2Clip: 1, mechanism: 'dgauss' }).removable, false);
    assert.deepEqual(resolveDp({ noiseMultiplier: 1, l2Clip: 1, delta: 1e-6, budget: { epsilon: 3 } }).budget, { epsilon: 3, delta: 1e-6 });
  });

  test('each bad value is refused naming the option', () => {
    const base = { dimension: 64, bits: 16 };
    const cases: Array<[unknown, RegExp, ErrorConstructor]> = [
      [5, /^dp must be an object/, TypeError],
      [{ l2Clip: 1 }, /dp\.noiseMultiplier must be a number/, TypeError],
      [{ noiseMultiplier: 0, l2Clip: 1 }, /dp\.noiseMultiplier must be a finite number > 0/, RangeError],
      [{ noiseMultiplier: 1 }, /dp\.l2Clip must be a number/, TypeError],
      [{ noiseMultiplier: 1, l2Clip: -1 }, /dp\.l2Clip/, RangeError],
      [{ noiseMultiplier: 1, l2Clip: 1, mechanism: 'gaussian' }, /dp\.mechanism must be 'skellam' or 'dgauss'/, RangeError],
      [{ noiseMultiplier: 1, l2Clip: 1, mechanism: 'dgauss', removable: true }, /dp\.removable needs dp\.mechanism 'skellam'/, RangeError],
      [{ noiseMultiplier: 1, l2Clip: 1, removable: 'yes' }, /dp\.removable must be a boolean/, TypeError],
      [{ noiseMultiplier: 1, l2Clip: 1, population: 2.5 }, /dp\.population must be a positive integer/, RangeError],
      [{ noiseMultiplier: 1, l2Clip: 1, delta: 1 }, /dp\.delta must be in \(0, 1\)/, RangeError],
      [{ noiseMultiplier: 1, l2Clip: 1, budget: 3 }, /dp\.budget must be \{ epsilon, delta\? \}/, TypeError],
      [{ noiseMultiplier: 1, l2Clip: 1, budget: { epsilon: 0 } }, /dp\.budget\.epsilon/, RangeError],
      [{ noiseMultiplier: 1, l2Clip: 1, budget: { epsilon: 1, delta: 0 } }, /dp\.budget\.delta/, RangeError],
    ];
    for (const [dp, message, type] of cases)
      assert.throws(
        () => resolve({ ...base, dp: dp as ServiceOptions['dp'] }),
        (e: Error) => e instanceof type && message.test(e.message),
        JSON.stringify(dp),
      );
    assert.throws(() => resolve({ dimension: 100, bits: 16, dp: { noiseMultiplier: 1, l2Clip: 1 } }), /dimension must be a power of two with dp.*use 128/);
    assert.throws(
      () => resolve({ dimension: 64, bits: 4, dp: { noiseMultiplier: 1, l2Clip: 1 } }),
      (e: Error) => e instanceof RangeError && /^dp: DP plan refused/.test(e.message),
    );
  });
});

/** The mechanism the accountant sees, built here from the plan's fields (not through the service's helper). */
const skellam = (plan: { l2Sensitivity: number; l1Sensitivity: number }, variance: number) =>
  ({ kind: 'skellam', l2Sensitivity: plan.l2Sensitivity, l1Sensitivity: plan.l1Sensitivity, variance }) as const;

describe('the ledger and the budget decision', () => {
  const o = resolve({
    dimension: 64,
    bits: 24,
    minClients: 4,
    maxClients: 6,
    dp: { noiseMultiplier: 0.8, l2Clip: 1, population: 100, budget: { epsilon: 50 } },
  });
  const dp = resolveDp(o.dp);
  const { encoding } = serviceEncoding(dp, o, 3);
  const { plan, config, minHonest } = roundPlan(dp, encoding, { cohort: 5, threshold: 3, corruption: 0, degree: 'complete' });

  test('a round plan: minClients = t − C, the service scale, targetVariance = (z·c·s)² = the plan’s released variance', () => {
    assert.equal(minHonest, 3);
    assert.equal(plan.minClients, 3);
    assert.equal(plan.scale, encoding.scale);
    assert.deepEqual(config, { mechanism: 'skellam', targetVariance: plan.releasedVariance, removable: true });
    // On a SecAgg+ graph the noise is not removable (validateConfig refuses it there: test/attack/dp-review.test.ts).
    assert.equal(roundPlan(dp, encoding, { cohort: 5, threshold: 3, corruption: 0, degree: 2 }).config.removable, false);
    assert.ok(Math.abs(config.targetVariance / (0.8 * encoding.scale) ** 2 - 1) < 1e-12);
  });

  test('per-round and cumulative ε equal the accountant’s, called independently with the released variance and the plan’s sensitivities; aborted rounds cost nothing', () => {
    const ledger = new DpLedger(dp, encoding);
    const q = 5 / 100;
    const released = [config.targetVariance * 1.25, config.targetVariance * 1.5];
    const entries = released.map((v) => {
      const e = ledger.begin(plan, config, minHonest, 5);
      ledger.end(e, plan, { mechanism: 'skellam', releasedVariance: v });
      return e;
    });
    const aborted = ledger.begin(plan, config, minHonest, 5);
    ledger.end(aborted, plan, undefined);
    for (const [i, e] of entries.entries()) {
      const want = accountRounds({ mechanism: skellam(plan, released[i]!), samplingRate: q, rounds: 1, delta: 1e-5 }).epsilon;
      assert.equal(e.epsilon, want);
      assert.equal(e.samplingRate, q);
    }
    const rdp = released.map((v) => mechanismRdp({ mechanism: skellam(plan, v), samplingRate: q }));
    const total = epsilonFromRdp({ orders: DEFAULT_RDP_ORDERS, rdp: rdp[0]!.map((r, i) => r + rdp[1]![i]!), delta: 1e-5 }).epsilon;
    assert.equal(entries[1]!.cumulativeEpsilon, total);
    assert.equal(aborted.epsilon, 0);
    assert.equal(aborted.noise, null);
    assert.equal(aborted.cumulativeEpsilon, total, 'an aborted round adds nothing');
    assert.equal(ledger.rounds, 2);
    // Restart: a ledger from the last cumulative RDP reports the same.
    const again = new DpLedger(dp, encoding, { cumulativeRdp: aborted.cumulativeRdp!, rounds: aborted.cumulativeRounds! });
    assert.equal(again.spent(), total);
    // The same released variance twice is the accountant's composition over 2 rounds.
    const twice = new DpLedger(dp, encoding);
    for (let i = 0; i < 2; i++) twice.end(twice.begin(plan, config, minHonest, 5), plan, { mechanism: 'skellam', releasedVariance: released[0]! });
    const two = accountRounds({ mechanism: skellam(plan, released[0]!), samplingRate: q, rounds: 2, delta: 1e-5 }).epsilon;
    assert.ok(Math.abs(twice.spent() - two) <= 1e-12 * two, `${twice.spent()} vs ${two}`);
  });

  test('budgetDecision: ok while history + the planned round stay within the budget, else not', () => {
    const one = mechanismRdp({ mechanism: skellam(plan, config.targetVariance), samplingRate: 1 });
    const eps = (k: number) => accountRounds({ mechanism: skellam(plan, config.targetVariance), samplingRate: 1, rounds: k, delta: 1e-5 }).epsilon;
    const budget = { epsilon: (eps(2) + eps(3)) / 2, delta: 1e-5 };
    const history = (k: number) => one.map((r) => r * k);
    const d1 = budgetDecision({ cumulativeRdp: history(1), roundRdp: one, budget });
    assert.equal(d1.ok, true);
    assert.ok(Math.abs(d1.after - eps(2)) < 1e-9 * eps(2));
    const d2 = budgetDecision({ cumulativeRdp: history(2), roundRdp: one, budget });
    assert.equal(d2.ok, false, 'the third round would exceed it');
    assert.ok(Math.abs(d2.spent - eps(2)) < 1e-9 * eps(2) && Math.abs(d2.after - eps(3)) < 1e-9 * eps(3));
    assert.equal(budgetDecision({ cumulativeRdp: history(50), roundRdp: one, budget: undefined }).ok, true, 'no budget: always');
  });

  test('dgauss: the accountant gets n = released / σ² clients of σ² each', () => {
    const m = accountedMechanism({ mechanism: 'dgauss', l2Sensitivity: 10, l1Sensitivity: 50, paddedDimension: 64 }, 12, 4);
    assert.deepEqual(m, { kind: 'dgauss', dimension: 64, l2Sensitivity: 10, l1Sensitivity: 50, localStddev: 2, clients: 3 });
  });
});

describe('encodeForRound (what an app does with GET /dp and its RoundInfo)', () => {
  test('pads a shorter update, rotates with the round id, and decodes back to the clipped update', () => {
    const o = resolve({ dimension: 64, bits: 24, minClients: 4, maxClients: 6, dp: { noiseMultiplier: 1, l2Clip: 2 } });
    const { encoding } = serviceEncoding(resolveDp(o.dp), o, 3);
    const roundId = '0123456789abcdef0123456789abcdef';
    const update = Array.from({ length: 50 }, (_, i) => Math.sin(i) / 10);
    const { vector } = encodeForRound({ values: update, encoding, roundId });
    assert.equal(vector.length, 64);
    assert.deepEqual(roundSeed(roundId).length, 16);
    const { mean } = decodeDpMean({ sum: vector, plan: planForEncoding(encoding), seed: roundSeed(roundId), clients: 1 });
    for (let i = 0; i < 64; i++) assert.ok(Math.abs(mean[i]! - (update[i] ?? 0)) < 64 / encoding.scale, `coordinate ${i}`);
    assert.throws(() => encodeForRound({ values: new Float64Array(65), encoding, roundId }), RangeError);
  });
});

describe('a DP service with real clients', () => {
  const Z = 0.1;
  const CLIP = 1;
  const M = 64;
  const N = 4;
  const dpOptions = (epsilon: number) => ({ noiseMultiplier: Z, l2Clip: CLIP, budget: { epsilon } });
  const base = { dimension: M, bits: 24, minClients: N, maxClients: N, autoStart: false, stageTimeoutMs: 20_000 };
  /** The plan a round of N clients has, computed here with planDp from the service's scale (t = 2 for 4 clients, complete graph, c = 0). */
  const planHere = (scale: number) =>
    planDp({ clients: N, minClients: 2, dimension: M, clip: CLIP, noiseMultiplier: Z, bits: 24, mechanism: 'skellam', scale });
  const eps = (plan: { l2Sensitivity: number; l1Sensitivity: number }, variance: number, rounds: number) =>
    accountRounds({ mechanism: skellam(plan, variance), samplingRate: 1, rounds, delta: 1e-5 }).epsilon;

  async function runRound(server: SecAggServer, tag: string, update: (i: number) => number[]): Promise<PublishedResult> {
    const encoding = (await (await fetch(server.httpUrl + 'dp')).json()) as DpEncoding;
    const configs: unknown[] = [];
    const clients = Array.from({ length: N }, (_, i) =>
      participate({
        url: server.url,
        token: token(`${tag}-${i}`),
        WebSocket: WS,
        inputProvider: (round) => {
          configs.push(round);
          return encodeForRound({ values: update(i), encoding, roundId: round.roundId }).vector;
        },
      }),
    );
    for (let k = 0; k < 400 && (await server.status()).waiting < N; k++) await new Promise((r) => setTimeout(r, 25));
    const result = nextResult(server);
    assert.ok((await server.startRound()) !== undefined, 'the round started');
    const reports = await Promise.all(clients);
    assert.ok(reports.every((r) => r[0]!.completed && r[0]!.included));
    assert.equal(configs.length, N);
    return result;
  }

  test('RoundConfig.dp reaches the clients (their noise is in the sum), the record’s ε is the accountant’s, the budget stops the third round, a restart continues the spent ε', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'secagg-dp-'));
    const historyFile = join(dir, 'history.db');
    const logs: Array<{ level: string; msg: string }> = [];
    const logger = { log: (level: string, msg: string) => void logs.push({ level, msg }) };
    try {
      // The plan and the budget, from the same options, before any server runs.
      const o = resolve({ ...base, dp: dpOptions(1) });
      const { encoding } = serviceEncoding(resolveDp(o.dp), o, 2);
      const plan = planHere(encoding.scale);
      const T = plan.releasedVariance;
      const budget = (eps(plan, T, 2) + eps(plan, T, 3)) / 2;
      let server = await startServer({ ...base, historyFile, logger, dp: dpOptions(budget) });

      // Round 1: zero updates, so the centred sum is the noise alone: its variance per coordinate must be T.
      const r1 = await runRound(server, 'a', () => new Array(M).fill(0));
      assert.ok(r1.dp, 'the published result has the DP entry');
      assert.equal(r1.dp!.targetVariance, T);
      assert.equal(r1.dp!.noise!.releasedVariance, T, 'all four answered, C = 0: the removable excess is removed, exactly T is left');
      const noise = centre(r1.sum, 24);
      const s2 = noise.reduce((a, x) => a + x * x, 0) / M;
      // 64 coordinates: s²/T is chi-square(64)/64; [0.4, 1.9] leaves out < 1e-6 on either side.
      assert.ok(s2 > 0.4 * T && s2 < 1.9 * T, `noise variance ${s2} vs target ${T}`);
      const rec1 = (await server.store.get(r1.round))!;
      assert.equal(rec1.dp!.l2Sensitivity, plan.l2Sensitivity);
      assert.equal(rec1.dp!.l1Sensitivity, plan.l1Sensitivity);
      const e1 = eps(plan, rec1.dp!.noise!.releasedVariance, 1);
      assert.equal(rec1.dp!.epsilon, e1);
      assert.equal(rec1.dp!.cumulativeEpsilon, e1);

      // Round 2: a real update; the decoded mean is it, within the noise.
      const u = Array.from({ length: M }, (_, i) => (i % 2 ? 0.9 : -0.9) / 8);
      const r2 = await runRound(server, 'b', () => u);
      const { mean } = decodeDpMean({ sum: r2.sum, plan: planForEncoding(r2.dp!.encoding, N), seed: roundSeed(r2.roundId), clients: N });
      const proj = mean.reduce((a, x, i) => a + x * u[i]!, 0) / u.reduce((a, x) => a + x * x, 0);
      assert.ok(Math.abs(proj - 1) < 0.2, `projection of the decoded mean on the update: ${proj}`);
      const rec2 = (await server.store.get(r2.round))!;
      const rdp = [rec1, rec2].map((r) => mechanismRdp({ mechanism: skellam(plan, r.dp!.noise!.releasedVariance), samplingRate: 1 }));
      const e12 = epsilonFromRdp({ orders: DEFAULT_RDP_ORDERS, rdp: rdp[0]!.map((x, i) => x + rdp[1]![i]!), delta: 1e-5 }).epsilon;
      assert.equal(rec2.dp!.cumulativeEpsilon, e12);
      assert.ok(Math.abs(e12 - eps(plan, T, 2)) < 1e-9 * e12, 'two rounds of T: the accountant over 2 rounds');

      t.diagnostic(
        `T = ${T}, Δ2 = ${plan.l2Sensitivity}, Δ1 = ${plan.l1Sensitivity}; noise s² = ${s2}; ε round 1 = ${e1} (record ${rec1.dp!.epsilon}); cumulative 2 = ${e12} (record ${rec2.dp!.cumulativeEpsilon}); budget ${budget}`,
      );
      // Round 3: the budget stops it.
      const waiting = Array.from({ length: N }, (_, i) =>
        participate({ url: server.url, token: token(`c-${i}`), WebSocket: WS, inputProvider: () => new Uint32Array(M) }).catch(() => []),
      );
      for (let k = 0; k < 400 && (await server.status()).waiting < N; k++) await new Promise((r) => setTimeout(r, 25));
      assert.equal(await server.startRound(), undefined, 'the third round does not start');
      assert.equal(await server.startRound(), undefined);
      const st = await server.status();
      assert.equal(st.round, null);
      assert.deepEqual([st.dp!.exhausted, st.dp!.spent, st.dp!.budget], [true, e12, { epsilon: budget, delta: 1e-5 }]);
      const metrics = await (await fetch(server.adminUrl + 'metrics')).text();
      const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
      assert.equal(gauge('secagg_dp_budget_exhausted'), 1);
      assert.equal(gauge('secagg_dp_epsilon_spent'), e12);
      assert.equal(gauge('secagg_dp_round_epsilon'), rec2.dp!.epsilon);
      assert.equal(gauge('secagg_dp_budget_epsilon'), budget);
      assert.equal(gauge('secagg_dp_released_noise_variance'), T);
      assert.equal(logs.filter((l) => /privacy budget exhausted/.test(l.msg)).length, 1, 'one log line');
      await server.close();
      await Promise.all(waiting);

      // Restart on the same history, same budget: still spent, nothing starts.
      server = await startServer({ ...base, historyFile, logger, dp: dpOptions(budget) });
      assert.deepEqual([(await server.status()).dp!.spent, (await server.status()).dp!.exhausted], [e12, true]);
      await server.close();
      // Restart with a larger budget: the spent ε continues from the history, a third round adds to it.
      server = await startServer({ ...base, historyFile, logger, dp: dpOptions(eps(plan, T, 3) * 1.01) });
      assert.equal((await server.status()).dp!.spent, e12);
      assert.equal((await server.status()).dp!.rounds, 2);
      const r3 = await runRound(server, 'd', () => new Array(M).fill(0));
      const e3 = eps(plan, T, 3);
      assert.ok(Math.abs(r3.dp!.cumulativeEpsilon! - e3) < 1e-9 * e3, `${r3.dp!.cumulativeEpsilon} vs ${e3}`);
      await server.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a DP service round with dropouts releases exactly the planned noise', () => {
  const N = 8;
  const M = 4096; // s²/σ² ~ χ²(4096)/4096: [0.88, 1.13] leaves out < 1e-6 on either side (z = 4.9, sd √(2/4096))
  const base = { dimension: M, bits: 24, minClients: N, maxClients: N, autoStart: false, stageTimeoutMs: 20_000 };

  /** One round of N clients with zero updates; `leave(i)` names the stage at which client i disconnects instead of sending. */
  async function zeroRound(server: SecAggServer, tag: string, leave: (i: number) => string | undefined): Promise<PublishedResult> {
    const encoding = (await (await fetch(server.httpUrl + 'dp')).json()) as DpEncoding;
    const clients = Array.from({ length: N }, (_, i) =>
      participate({
        url: server.url,
        token: token(`${tag}-${i}`),
        WebSocket: WS,
        reconnect: { maxAttempts: 0 },
        unsafeBeforeSend: (stage) => (stage === leave(i) ? 'disconnect' : 'send'),
        inputProvider: (round) => encodeForRound({ values: new Array(M).fill(0), encoding, roundId: round.roundId }).vector,
      }).catch(() => []),
    );
    for (let k = 0; k < 400 && (await server.status()).waiting < N; k++) await new Promise((r) => setTimeout(r, 25));
    const result = nextResult(server);
    assert.ok((await server.startRound()) !== undefined, 'the round started');
    await Promise.all(clients);
    return result;
  }

  test('two clients leave before their masked input, then one survivor at unmask: the sum of zero updates has the variance computed here from T, t and who answered', async (t) => {
    const server = await startServer({ ...base, dp: { noiseMultiplier: 0.5, l2Clip: 1 } });
    try {
      for (const [tag, leave, unmaskDrop] of [
        ['x', (i: number) => (i < 2 ? 'masked' : undefined), 0],
        ['y', (i: number) => (i < 2 ? 'masked' : i === 2 ? 'unmask' : undefined), 1],
      ] as const) {
        const r = await zeroRound(server, tag, leave);
        const rec = (await server.store.get(r.round))!;
        const T = r.dp!.targetVariance;
        const threshold = rec.params.threshold;
        const survivors = N - 2; // |U3|: the two that left before masking are out
        assert.equal(r.included.length, survivors);
        // Each honest client added T/(t − C) (C = 0); a survivor that answered the unmask request
        // revealed the excess over T/|U3| (removed); one that left at unmask kept all of its noise.
        const expected = (survivors - unmaskDrop) * (T / survivors) + unmaskDrop * (T / threshold);
        assert.ok(Math.abs(r.dp!.noise!.releasedVariance - expected) <= 1e-9 * expected, `${r.dp!.noise!.releasedVariance} vs ${expected}`);
        if (unmaskDrop === 0) assert.ok(Math.abs(r.dp!.noise!.releasedVariance - T) <= 1e-9 * T, 'every survivor answered: exactly T');
        const noise = centre(r.sum, 24);
        const s2 = noise.reduce((a, x) => a + x * x, 0) / M;
        t.diagnostic(
          `round ${tag}: t = ${threshold}, |U3| = ${survivors}, unmask dropouts ${unmaskDrop}: T = ${T.toExponential(4)}, planned ${expected.toExponential(4)}, measured ${s2.toExponential(4)} (ratio ${(s2 / expected).toFixed(4)})`,
        );
        assert.ok(s2 > 0.88 * expected && s2 < 1.13 * expected, `measured ${s2} vs planned ${expected}`);
        // The history keeps the released variance (the ledger accounts ε from it: tested above).
        assert.equal(rec.dp!.noise!.releasedVariance, r.dp!.noise!.releasedVariance);
      }
    } finally {
      await server.close();
    }
  });
});

describe('a DP service round with the discrete Gaussian', () => {
  test('8 real clients, two leave before masking: not removable, each adds T/t; the sum of zero updates has variance |U3|·T/t', async (t) => {
    const N = 8;
    const M = 4096; // χ²(4096)/4096 within [0.88, 1.13] but for < 1e-6 on either side
    const server = await startServer({
      dimension: M,
      bits: 24,
      minClients: N,
      maxClients: N,
      autoStart: false,
      stageTimeoutMs: 20_000,
      dp: { noiseMultiplier: 0.5, l2Clip: 1, mechanism: 'dgauss' },
    });
    try {
      const encoding = (await (await fetch(server.httpUrl + 'dp')).json()) as DpEncoding;
      assert.equal(encoding.mechanism, 'dgauss');
      const clients = Array.from({ length: N }, (_, i) =>
        participate({
          url: server.url,
          token: token(`dg-${i}`),
          WebSocket: WS,
          reconnect: { maxAttempts: 0 },
          dp: dpPolicyFor({ encoding, minNoiseMultiplier: 0.5 * (1 - 1e-9) }),
          unsafeBeforeSend: (stage) => (i < 2 && stage === 'masked' ? 'disconnect' : 'send'),
          inputProvider: (round) => encodeForRound({ values: new Array(M).fill(0), encoding, roundId: round.roundId }).vector,
        }).catch(() => []),
      );
      for (let k = 0; k < 400 && (await server.status()).waiting < N; k++) await new Promise((r) => setTimeout(r, 25));
      const published = nextResult(server);
      assert.ok((await server.startRound()) !== undefined);
      await Promise.all(clients);
      const r = await published;
      const rec = (await server.store.get(r.round))!;
      const T = r.dp!.targetVariance;
      const threshold = rec.params.threshold;
      assert.equal(r.dp!.removable, false, 'the discrete Gaussian is never removable');
      assert.equal(r.included.length, N - 2);
      const expected = (N - 2) * (T / threshold);
      assert.ok(Math.abs(r.dp!.noise!.releasedVariance - expected) <= 1e-9 * expected, `${r.dp!.noise!.releasedVariance} vs ${expected}`);
      const noise = centre(r.sum, 24);
      const s2 = noise.reduce((a, x) => a + x * x, 0) / M;
      t.diagnostic(
        `dgauss: t = ${threshold}, |U3| = ${N - 2}, T = ${T.toExponential(4)}, planned ${expected.toExponential(4)}, measured ${s2.toExponential(4)} (ratio ${(s2 / expected).toFixed(4)})`,
      );
      assert.ok(s2 > 0.88 * expected && s2 < 1.13 * expected, `measured ${s2} vs planned ${expected}`);
    } finally {
      await server.close();
    }
  });
});

describe('secagg client --dp-min-variance', () => {
  test('joins a round with at least that noise (exit 0), refuses one with less (exit 1, ERR_INVALID_PARAMETERS in its report); a bad value is a usage error (exit 2)', async () => {
    const M = 64;
    const N = 4;
    const server = await startServer({ dimension: M, bits: 24, minClients: N, maxClients: N, autoStart: false, dp: { noiseMultiplier: 0.5, l2Clip: 1 } });
    try {
      const encoding = (await (await fetch(server.httpUrl + 'dp')).json()) as DpEncoding;
      const T = (encoding.noiseMultiplier * encoding.clip * encoding.scale) ** 2;
      const cli = (name: string, v: string) => {
        const child = spawn(process.execPath, [CLI, 'client', '--url', server.url, '--token', token(name), '--random', String(M), '--dp-min-variance', v], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        return once(child, 'exit').then(([code]) => ({ code: code as number | null, out }));
      };
      for (const [tag, v, want] of [
        ['lax', String(T / 2), { code: 0, included: true, why: undefined }],
        ['strict', String(T * 2), { code: 1, included: false, why: 'ERR_INVALID_PARAMETERS' }],
      ] as const) {
        const others = Array.from({ length: N - 1 }, (_, i) =>
          participate({
            url: server.url,
            token: token(`${tag}-lib-${i}`),
            WebSocket: WS,
            reconnect: { maxAttempts: 0 },
            inputProvider: (round) => encodeForRound({ values: new Array(M).fill(0), encoding, roundId: round.roundId }).vector,
          }).catch(() => []),
        );
        const child = cli(`${tag}-cli`, v);
        for (let k = 0; k < 400 && (await server.status()).waiting < N; k++) await new Promise((r) => setTimeout(r, 25));
        assert.ok((await server.startRound()) !== undefined);
        const { code, out } = await child;
        await Promise.all(others);
        const report = JSON.parse(out.trim().split('\n').at(-1)!) as { included: boolean; code?: string };
        assert.deepEqual({ code, included: report.included, why: report.code }, want, out);
      }
      const bad = spawnSync(process.execPath, [CLI, 'client', '--url', server.url, '--token', 't', '--random', '4', '--dp-min-variance', 'lots'], {
        encoding: 'utf8',
      });
      assert.equal(bad.status, 2, bad.stderr);
      assert.match(bad.stderr, /--dp-min-variance must be a positive number/);
    } finally {
      await server.close();
    }
  });
});

describe('dpPolicyFor: the noise a client accepts is bound to the encoding it uses', () => {
  test('targetVariance ≥ (z·clip·scale)²: a larger published scale demands proportionally more noise; bad input is refused', () => {
    const enc: DpEncoding = { version: 1, mechanism: 'skellam', dimension: 64, bits: 24, clip: 2, scale: 1000, beta: Math.exp(-0.5), noiseMultiplier: 0.5 };
    const p = dpPolicyFor({ encoding: enc, minNoiseMultiplier: 0.5 });
    assert.equal(p.minTargetVariance, (0.5 * 2 * 1000) ** 2);
    assert.equal(p.required, true);
    assert.deepEqual(p.mechanisms, ['skellam']);
    assert.equal(dpPolicyFor({ encoding: { ...enc, scale: 10_000 }, minNoiseMultiplier: 0.5 }).minTargetVariance, 100 * p.minTargetVariance);
    assert.throws(() => dpPolicyFor({ encoding: enc, minNoiseMultiplier: 0 }), RangeError);
    assert.throws(() => dpPolicyFor({ encoding: { ...enc, scale: Number.NaN }, minNoiseMultiplier: 1 }), RangeError);
    assert.throws(() => dpPolicyFor({ encoding: {} as DpEncoding, minNoiseMultiplier: 1 }), TypeError);
  });

  test('against a real service at z = 0.5: clients asking z ≥ 0.5 join and the round completes; a client asking z ≥ 0.6 refuses the round (ERR_INVALID_PARAMETERS) and is in no sum', async () => {
    const M = 64;
    const N = 4;
    const server = await startServer({ dimension: M, bits: 24, minClients: N, maxClients: N, autoStart: false, dp: { noiseMultiplier: 0.5, l2Clip: 1 } });
    try {
      const encoding = (await (await fetch(server.httpUrl + 'dp')).json()) as DpEncoding;
      const join = (name: string, z: number) =>
        participate({
          url: server.url,
          token: token(name),
          WebSocket: WS,
          reconnect: { maxAttempts: 0 },
          dp: dpPolicyFor({ encoding, minNoiseMultiplier: z }),
          inputProvider: (round) => encodeForRound({ values: new Array(M).fill(0.01), encoding, roundId: round.roundId }).vector,
        });
      const ok = Array.from({ length: N }, (_, i) => join(`pol-${i}`, 0.5 * (1 - 1e-9)));
      for (let k = 0; k < 400 && (await server.status()).waiting < N; k++) await new Promise((r) => setTimeout(r, 25));
      const published = nextResult(server);
      assert.ok((await server.startRound()) !== undefined);
      const reports = await Promise.all(ok);
      assert.ok(reports.every((r) => r[0]!.included));
      assert.equal((await published).included.length, N);
      // Round 2: one client wants more noise than the service gives.
      const strict = join('pol-strict', 0.6).then(
        (r) => `${r[0]!.included ? 'included' : 'not included'}: ${r[0]!.code}`,
        (e: { code?: string }) => `threw ${e.code}`,
      );
      const others = Array.from({ length: N - 1 }, (_, i) => join(`pol2-${i}`, 0.5 * (1 - 1e-9)).catch(() => []));
      for (let k = 0; k < 400 && (await server.status()).waiting < N; k++) await new Promise((r) => setTimeout(r, 25));
      const ended = new Promise<{ included: readonly number[] | null }>((r) => server.onRoundEnd((rec) => r(rec)));
      assert.ok((await server.startRound()) !== undefined);
      assert.equal(await strict, 'not included: ERR_INVALID_PARAMETERS');
      const rec = await ended;
      assert.ok(rec.included === null || rec.included.length <= N - 1, 'the strict client is in no sum');
      await Promise.all(others);
    } finally {
      await server.close();
    }
  });
});

describe('the DP encoding in the round assignment (RoundInfo.dpEncoding): apps need no GET /dp', () => {
  const M = 64;
  const N = 4;
  const Z = 0.5;

  /** N clients that know nothing but the server's URL: policy and encoding from each round's assignment. */
  const fromAssignment = (server: { url: string }, tag: string, z: number, values: number[], seen: RoundInfo[], url = server.url) =>
    participate({
      url,
      token: token(tag),
      WebSocket: WS,
      reconnect: { maxAttempts: 0 },
      dp: (round) => dpPolicyFor({ encoding: round.dpEncoding, minNoiseMultiplier: z }),
      inputProvider: (round) => {
        seen.push(round);
        return encodeForRound({ values, encoding: round.dpEncoding!, roundId: round.roundId }).vector;
      },
    });

  test('a real service round: every client encodes from its assignment only, the encoding is GET /dp’s, the mean decodes; a client whose floor the round misses refuses it', async (t) => {
    const server = await startServer({ dimension: M, bits: 24, minClients: N, maxClients: N, autoStart: false, dp: { noiseMultiplier: Z, l2Clip: 1 } });
    try {
      const u = Array.from({ length: M }, (_, i) => (i % 3 ? 0.1 : -0.1));
      const seen: RoundInfo[] = [];
      const clients = Array.from({ length: N }, (_, i) => fromAssignment(server, `asg-${i}`, Z * (1 - 1e-9), u, seen));
      for (let k = 0; k < 400 && (await server.status()).waiting < N; k++) await new Promise((r) => setTimeout(r, 25));
      const published = nextResult(server);
      assert.ok((await server.startRound()) !== undefined);
      const reports = await Promise.all(clients);
      assert.ok(reports.every((r) => r[0]!.completed && r[0]!.included));
      const r = await published;
      // What GET /dp says (fetched only now, to compare): the same encoding every assignment carried.
      const published_ = (await (await fetch(server.httpUrl + 'dp')).json()) as DpEncoding;
      assert.equal(seen.length, N);
      for (const round of seen) assert.deepEqual(round.dpEncoding, published_);
      assert.deepEqual(r.dp!.encoding, published_);
      const { mean } = decodeDpMean({ sum: r.sum, plan: planForEncoding(seen[0]!.dpEncoding!, N), seed: roundSeed(r.roundId), clients: N });
      // The decoded mean is the update plus the released noise over N·s per coordinate (the rotation
      // keeps it i.i.d.): the mean squared error over 64 coordinates is χ²(64)/64 of that variance,
      // in [0.4, 1.9] but for < 1e-6 on either side (the rounding adds < 1/(4N·s²), negligible).
      const expected = r.dp!.noise!.releasedVariance / (N * seen[0]!.dpEncoding!.scale) ** 2;
      const mse = mean.reduce((a, x, i) => a + (x - u[i]!) ** 2, 0) / M;
      t.diagnostic(
        `decoded mean vs update: mean squared error ${mse.toExponential(3)}, expected ${expected.toExponential(3)} (ratio ${(mse / expected).toFixed(3)})`,
      );
      assert.ok(mse > 0.4 * expected && mse < 1.9 * expected, `mean squared error ${mse} vs ${expected}`);

      // A client asking z ≥ 0.6 of the assignment's encoding: the round's noise (z = 0.5) is too little.
      const strict = fromAssignment(server, 'asg-strict', 0.6, u, []).then(
        (rep) => `${rep[0]!.included ? 'included' : 'not included'}: ${rep[0]!.code}`,
        (e: { code?: string }) => `threw ${e.code}`,
      );
      const others = Array.from({ length: N - 1 }, (_, i) => fromAssignment(server, `asg2-${i}`, Z * (1 - 1e-9), u, []).catch(() => []));
      for (let k = 0; k < 400 && (await server.status()).waiting < N; k++) await new Promise((r) => setTimeout(r, 25));
      assert.ok((await server.startRound()) !== undefined);
      assert.equal(await strict, 'not included: ERR_INVALID_PARAMETERS');
      await Promise.all(others);
    } finally {
      await server.close();
    }
  });

  test('a server that puts a 2× scale in the assignment (and the same noise): the floor bound to the assignment refuses the round; a policy made from GET /dp refuses the mismatch (ERR_DP_ENCODING)', async () => {
    // Six clients (t = 3), two of them behind the tampering proxy: the four honest ones still make a round.
    const N6 = 6;
    const server = await startServer({ dimension: M, bits: 24, minClients: N6, maxClients: N6, autoStart: false, dp: { noiseMultiplier: Z, l2Clip: 1 } });
    // Every assignment's scale ×2, nothing else: a larger signal against the same noise. (Far larger
    // scales are refused by the session already: the ring could not hold one update, test below.)
    const proxy = await tamperingProxy(server.url, (ctl) => {
      if (ctl.body.case === 'assignment' && ctl.body.value.dpEncoding) ctl.body.value.dpEncoding.scale *= 2;
      return ctl;
    });
    try {
      const encoding = (await (await fetch(server.httpUrl + 'dp')).json()) as DpEncoding;
      const u = new Array(M).fill(0.01);
      const outcome = (p: Promise<RoundReport[]>) =>
        p.then(
          (rep) => `${rep[0]!.included ? 'included' : 'not included'}: ${rep[0]!.code}`,
          (e: { code?: string }) => `threw ${e.code}`,
        );
      const bound = outcome(fromAssignment(server, 'mitm-bound', Z * (1 - 1e-9), u, [], proxy.url));
      const fixed = outcome(
        participate({
          url: proxy.url,
          token: token('mitm-fixed'),
          WebSocket: WS,
          reconnect: { maxAttempts: 0 },
          dp: dpPolicyFor({ encoding, minNoiseMultiplier: Z * (1 - 1e-9) }),
          inputProvider: (round) => encodeForRound({ values: u, encoding: round.dpEncoding!, roundId: round.roundId }).vector,
        }),
      );
      const honest = Array.from({ length: N6 - 2 }, (_, i) => fromAssignment(server, `mitm-h${i}`, Z * (1 - 1e-9), u, []));
      for (let k = 0; k < 400 && (await server.status()).waiting < N6; k++) await new Promise((r) => setTimeout(r, 25));
      const published = nextResult(server);
      assert.ok((await server.startRound()) !== undefined);
      assert.equal(await bound, 'not included: ERR_INVALID_PARAMETERS', 'the round’s noise is 4× below the floor for the 2× scale');
      assert.equal(await fixed, 'threw ERR_DP_ENCODING', 'the assignment’s encoding is not the one the policy was made for');
      assert.ok(
        (await Promise.all(honest)).every((r) => r[0]!.included),
        'the honest clients’ round completes without the two',
      );
      assert.equal((await published).included.length, N6 - 2);
    } finally {
      await proxy.close();
      await server.close();
    }
  });

  test('a scripted server sending a malformed encoding: participate rejects with ClientError ERR_DP_ENCODING and the client sends nothing after its hello', async () => {
    const bad: Array<[string, Record<string, unknown>]> = [
      ['scale NaN', { scale: Number.NaN }],
      ['unknown mechanism', { mechanism: 0 }],
      ['dimension not the round’s', { dimension: 128 }],
      ['a clip the ring cannot hold', { clip: 2 ** 40 }],
    ];
    for (const [name, change] of bad) {
      const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
      await once(wss, 'listening');
      const received: string[] = [];
      wss.on('connection', (ws: WebSocket) => {
        ws.send(encodeControl({ case: 'challenge', value: { version: PROTOCOL_VERSION, mode: Mode.SEMI_HONEST, nonce: new Uint8Array(32), serverId: 's' } }));
        ws.on('message', (d: Buffer) => {
          const bytes = new Uint8Array(d);
          received.push(isControlFrame(bytes) ? `control:${decodeControl(bytes).body.case}` : 'protocol');
          if (received.length !== 1) return;
          ws.send(encodeControl({ case: 'welcome', value: { clientId: 3, identity: 'x', maxFrameBytes: 1 << 20 } }));
          const dpEncoding = {
            version: 1,
            mechanism: DpMechanism.SKELLAM,
            dimension: M,
            bits: 24,
            clip: 1,
            scale: 1000,
            beta: Math.exp(-0.5),
            noiseMultiplier: 0.5,
            ...change,
          };
          ws.send(
            encodeControl({
              case: 'assignment',
              value: {
                roundNumber: 1,
                roundId: new Uint8Array(16).fill(1),
                clientId: 3,
                bits: 24,
                dimension: M,
                maxFrameBytes: 1 << 20,
                stageTimeoutMs: 1000,
                directory: [],
                dpEncoding,
              },
            }),
          );
        });
      });
      let asked = 0;
      try {
        const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
        await assert.rejects(
          participate({
            url,
            token: 't',
            WebSocket: WS,
            reconnect: { maxAttempts: 0 },
            inputProvider: () => {
              asked++;
              return new Uint32Array(M);
            },
          }),
          (e: unknown) => isClientError(e, 'ERR_DP_ENCODING') && /the assignment's DP encoding is refused/.test((e as Error).message),
          name,
        );
        assert.deepEqual(received, ['control:hello'], `${name}: nothing after the hello`);
        assert.equal(asked, 0, `${name}: the input provider is never asked`);
      } finally {
        for (const c of wss.clients) c.terminate();
        await new Promise<void>((r) => wss.close(() => r()));
      }
    }
  });
});
