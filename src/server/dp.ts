/**
 * Differential privacy in the service: the DP options, the service's encoding (one scale for every
 * round, so apps can encode before they know the cohort), each round's plan and RoundConfig.dp, and
 * the privacy ledger — per completed round the ε its released noise implies, the cumulative RDP over
 * the history (persisted in every round record, so a restart continues from it), and the budget
 * that stops new rounds. Aborted rounds release nothing and cost nothing.
 *
 * Accounting unit: one client of the population (add/remove one client). Each round's RDP is
 * mechanismRdp of the noise actually released in its sum (result.noise.releasedVariance, in ring
 * units) with the plan's sensitivities Δ₂, Δ₁, amplified at q = cohort / population when a
 * population is given (else q = 1); RDP adds up over rounds; ε is epsilonFromRdp at δ.
 */
import { DEFAULT_RDP_ORDERS, epsilonFromRdp, mechanismRdp, type Mechanism } from '../dp/accountant.js';
import { planDp, type DpPlan } from '../dp/plan.js';
import { planWithEncoding, type DpEncoding } from '../dp/encoding.js';
import { dpMinHonest, isCompleteGraph, type Degree, type DpRoundConfig } from '../protocol/config.js';
import type { NoiseReport } from '../protocol/noise.js';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { DpMechanism } from '../wire/gen/secagg/v1/secagg_pb.js';
import type { DpEncodingSchema } from '../wire/gen/secagg/v1/service_pb.js';

/** ServiceOptions.dp: what an operator sets (docs/service.md, "Differential privacy"). */
export interface DpServiceOptions {
  /** 'skellam' (default) or 'dgauss' (the distributed discrete Gaussian). */
  readonly mechanism?: 'skellam' | 'dgauss';
  /** z > 0: every released sum carries noise of std ≥ z·c per coordinate (in the update's units). Required. */
  readonly noiseMultiplier: number;
  /** c > 0: every client's update is clipped to this L2 norm. Required. */
  readonly l2Clip: number;
  /** Clients reveal their excess noise once the survivors are known and the server removes it (Skellam only; default true for Skellam). */
  readonly removable?: boolean;
  /**
   * Size of the population the cohorts are drawn from: each round is accounted as a Poisson sample
   * at q = cohort / population. Default: no amplification (q = 1). Only sound when membership of a
   * round is as random and as secret as Poisson sampling assumes (docs/privacy.md).
   */
  readonly population?: number;
  /** δ at which ε is reported (default 1e-5). */
  readonly delta?: number;
  /** Stop starting rounds once one more (at its planned noise) would take ε at budget.delta (default `delta`) above budget.epsilon. Default: no budget. */
  readonly budget?: { readonly epsilon: number; readonly delta?: number };
}

/** DpServiceOptions with its defaults. */
export interface ResolvedDp {
  readonly mechanism: 'skellam' | 'dgauss';
  readonly noiseMultiplier: number;
  readonly l2Clip: number;
  readonly removable: boolean;
  readonly population: number | undefined;
  readonly delta: number;
  readonly budget: { readonly epsilon: number; readonly delta: number } | undefined;
}

/** Check ServiceOptions.dp (TypeError / RangeError naming the option) and fill in its defaults. */
export function resolveDp(dp: unknown): ResolvedDp {
  if (typeof dp !== 'object' || dp === null) throw new TypeError('dp must be an object { noiseMultiplier, l2Clip, … }');
  const d = dp as Partial<Record<keyof DpServiceOptions, unknown>>;
  const mechanism = d.mechanism ?? 'skellam';
  if (mechanism !== 'skellam' && mechanism !== 'dgauss') throw new RangeError(`dp.mechanism must be 'skellam' or 'dgauss', got ${String(mechanism)}`);
  const positive = (v: unknown, name: string): number => {
    if (typeof v !== 'number') throw new TypeError(`${name} must be a number`);
    if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`${name} must be a finite number > 0, got ${v}`);
    return v;
  };
  const unit = (v: unknown, name: string): number => {
    if (typeof v !== 'number') throw new TypeError(`${name} must be a number`);
    if (!(v > 0 && v < 1)) throw new RangeError(`${name} must be in (0, 1), got ${v}`);
    return v;
  };
  const noiseMultiplier = positive(d.noiseMultiplier, 'dp.noiseMultiplier');
  const l2Clip = positive(d.l2Clip, 'dp.l2Clip');
  const removable = d.removable ?? mechanism === 'skellam';
  if (typeof removable !== 'boolean') throw new TypeError('dp.removable must be a boolean');
  if (removable && mechanism !== 'skellam') throw new RangeError("dp.removable needs dp.mechanism 'skellam' (the discrete Gaussian cannot be split exactly)");
  let population: number | undefined;
  if (d.population !== undefined) {
    if (typeof d.population !== 'number') throw new TypeError('dp.population must be a number');
    if (!Number.isSafeInteger(d.population) || d.population < 1) throw new RangeError(`dp.population must be a positive integer, got ${d.population}`);
    population = d.population;
  }
  const delta = d.delta === undefined ? 1e-5 : unit(d.delta, 'dp.delta');
  let budget: ResolvedDp['budget'];
  if (d.budget !== undefined) {
    if (typeof d.budget !== 'object' || d.budget === null) throw new TypeError('dp.budget must be { epsilon, delta? }');
    const b = d.budget as { epsilon?: unknown; delta?: unknown };
    budget = { epsilon: positive(b.epsilon, 'dp.budget.epsilon'), delta: b.delta === undefined ? delta : unit(b.delta, 'dp.budget.delta') };
  }
  return { mechanism, noiseMultiplier, l2Clip, removable, population, delta, budget };
}

/** What the service's rounds are shaped by (ServiceOptions fields). */
export interface DpShape {
  readonly bits: number;
  readonly dimension: number;
  readonly maxClients: number;
}

/**
 * The service's encoding: the largest scale whose wrap bound holds for a sum of `maxClients`
 * clients each adding the noise of the fewest honest clients any round can have (`minHonest`, the
 * smallest t − C over the cohorts this server can draw). Throws RangeError naming dp when none does.
 */
export function serviceEncoding(dp: ResolvedDp, shape: DpShape, minHonest: number): { encoding: DpEncoding; plan: DpPlan } {
  if ((shape.dimension & (shape.dimension - 1)) !== 0)
    throw new RangeError(
      `dimension must be a power of two with dp (the rotation works on 2^k coordinates), got ${shape.dimension}: use ${2 ** Math.ceil(Math.log2(shape.dimension))} and let shorter updates be padded (encodeForRound)`,
    );
  let plan: DpPlan;
  try {
    plan = planDp({
      clients: shape.maxClients,
      minClients: Math.min(minHonest, shape.maxClients),
      dimension: shape.dimension,
      clip: dp.l2Clip,
      noiseMultiplier: dp.noiseMultiplier,
      bits: shape.bits,
      mechanism: dp.mechanism,
    });
  } catch (e) {
    throw new RangeError(`dp: ${(e as Error).message} (dimension ${shape.dimension}, bits ${shape.bits}, maxClients ${shape.maxClients})`, { cause: e });
  }
  const encoding: DpEncoding = {
    version: 1,
    mechanism: plan.mechanism,
    dimension: plan.paddedDimension,
    bits: plan.bits,
    clip: plan.clip,
    scale: plan.scale,
    beta: plan.beta,
    noiseMultiplier: plan.noiseMultiplier,
  };
  return { encoding, plan };
}

/** The encoding as RoundAssignment.dp_encoding carries it (every DP round's assignment; GET /dp answers the same as JSON). */
export function wireDpEncoding(e: DpEncoding): MessageInitShape<typeof DpEncodingSchema> {
  return {
    version: e.version,
    mechanism: e.mechanism === 'skellam' ? DpMechanism.SKELLAM : DpMechanism.DISCRETE_GAUSSIAN,
    dimension: e.dimension,
    bits: e.bits,
    clip: e.clip,
    scale: e.scale,
    beta: e.beta,
    noiseMultiplier: e.noiseMultiplier,
  };
}

/** One round's plan: its cohort, t − C, the service's scale. Throws (SecAggError) when this cohort's noise would break the wrap bound. */
export function roundPlan(
  dp: ResolvedDp,
  encoding: DpEncoding,
  round: { cohort: number; threshold: number; corruption: number; degree: Degree },
): { plan: DpPlan; config: DpRoundConfig; minHonest: number } {
  const minHonest = dpMinHonest({ threshold: round.threshold, corruption: round.corruption });
  const plan = planWithEncoding(encoding, { clients: round.cohort, minClients: minHonest });
  // Removal only over the complete graph (validateConfig: on SecAgg+ graphs survivors cannot be checked).
  return {
    plan,
    minHonest,
    config: { mechanism: plan.mechanism, targetVariance: plan.releasedVariance, removable: dp.removable && isCompleteGraph(round.degree, round.cohort) },
  };
}

/**
 * The noise a completed round released: the state machine's result.noise (NoiseReport,
 * protocol/noise.ts), of which the service reads the mechanism, releasedVariance (guaranteed from
 * honest clients, ring units) and clientVariance (v0).
 */
export type ReleasedNoise = Pick<NoiseReport, 'mechanism' | 'releasedVariance'> & Partial<NoiseReport>;

/** A round's DP entry in its record (RoundRecord.dp). */
export interface RoundDp {
  readonly mechanism: 'skellam' | 'dgauss';
  /** The round's RoundConfig.dp.targetVariance (ring units). */
  readonly targetVariance: number;
  readonly removable: boolean;
  /** t − C: the fewest honest clients any released sum of the round holds. */
  readonly minHonest: number;
  readonly scale: number;
  readonly l2Sensitivity: number;
  readonly l1Sensitivity: number;
  readonly samplingRate: number;
  readonly delta: number;
  /** Completed rounds: the noise released (result.noise); null otherwise (an aborted round releases nothing). */
  noise: ReleasedNoise | null;
  /** ε of this round alone at δ (0 for a round that released nothing); null while running. */
  epsilon: number | null;
  /** ε of every completed round of the history so far, this one included, at δ; null while running. */
  cumulativeEpsilon: number | null;
  /** RDP at DEFAULT_RDP_ORDERS summed over the completed rounds so far (what a restart continues from); null while running. */
  cumulativeRdp: number[] | null;
  /** Completed DP rounds in the history so far, this one included; null while running. */
  cumulativeRounds: number | null;
}

/** The accountant's mechanism for a released noise of variance `variance` (ring units). */
export function accountedMechanism(
  plan: Pick<DpPlan, 'mechanism' | 'l2Sensitivity' | 'l1Sensitivity' | 'paddedDimension'>,
  variance: number,
  clientVariance: number,
): Mechanism {
  if (plan.mechanism === 'skellam') return { kind: 'skellam', l2Sensitivity: plan.l2Sensitivity, l1Sensitivity: plan.l1Sensitivity, variance };
  // n clients of σ² each: n = variance / σ² (the honest clients whose noise is in the sum).
  const clients = Math.max(1, Math.floor(variance / clientVariance + 1e-9));
  return {
    kind: 'dgauss',
    dimension: plan.paddedDimension,
    l2Sensitivity: plan.l2Sensitivity,
    l1Sensitivity: plan.l1Sensitivity,
    localStddev: Math.sqrt(clientVariance),
    clients,
  };
}

export interface BudgetDecision {
  /** Run the round: one more at its planned noise keeps ε within the budget (always, without a budget). */
  readonly ok: boolean;
  /** ε of the history at the budget's δ, and with this round added. */
  readonly spent: number;
  readonly after: number;
}

/**
 * Would a round with this one-round RDP take the cumulative ε above the budget? Pure: the
 * service's start decision, tested on its own.
 */
export function budgetDecision(params: {
  cumulativeRdp: readonly number[];
  roundRdp: readonly number[];
  budget: { epsilon: number; delta: number } | undefined;
}): BudgetDecision {
  const orders = DEFAULT_RDP_ORDERS;
  const delta = params.budget?.delta ?? 1e-5;
  const spent = epsilonFromRdp({ orders, rdp: params.cumulativeRdp, delta }).epsilon;
  const after = epsilonFromRdp({ orders, rdp: params.cumulativeRdp.map((r, i) => r + params.roundRdp[i]!), delta }).epsilon;
  return { ok: params.budget === undefined || after <= params.budget.epsilon, spent, after };
}

/** The service's privacy ledger: cumulative RDP, the budget, what status and metrics report. */
export class DpLedger {
  readonly dp: ResolvedDp;
  readonly encoding: DpEncoding;
  private rdp: number[];
  /** Completed DP rounds accounted (this process and the history it continued from). */
  rounds: number;
  lastRoundEpsilon: number | null = null;
  lastReleasedVariance: number | null = null;
  exhausted = false;

  constructor(dp: ResolvedDp, encoding: DpEncoding, history?: { cumulativeRdp: readonly number[]; rounds: number }) {
    this.dp = dp;
    this.encoding = encoding;
    const h = history?.cumulativeRdp;
    // A history whose RDP is at other orders (another version's DEFAULT_RDP_ORDERS) or damaged cannot
    // be converted: count it as everything spent (Infinity), never as nothing spent.
    this.rdp =
      h === undefined
        ? DEFAULT_RDP_ORDERS.map(() => 0)
        : h.length === DEFAULT_RDP_ORDERS.length
          ? h.map((r) => (typeof r === 'number' && r >= 0 ? r : Infinity))
          : DEFAULT_RDP_ORDERS.map(() => Infinity);
    this.rounds = history?.rounds ?? 0;
  }

  /** q of a round with this cohort. */
  samplingRate(cohort: number): number {
    return this.dp.population === undefined ? 1 : Math.min(1, cohort / this.dp.population);
  }

  /** ε of the history at δ (dp.delta unless given). */
  spent(delta = this.dp.delta): number {
    return epsilonFromRdp({ orders: DEFAULT_RDP_ORDERS, rdp: this.rdp, delta }).epsilon;
  }

  cumulativeRdp(): number[] {
    return this.rdp.slice();
  }

  /** One round's RDP at its planned (target) noise. */
  plannedRdp(plan: DpPlan, minHonest: number, cohort: number): number[] {
    const mechanism = accountedMechanism(plan, plan.releasedVariance, plan.releasedVariance / minHonest);
    return mechanismRdp({ mechanism, samplingRate: this.samplingRate(cohort) });
  }

  /** May a round with this plan start? Sets `exhausted` when not. */
  decide(plan: DpPlan, minHonest: number, cohort: number): BudgetDecision {
    const d = budgetDecision({ cumulativeRdp: this.rdp, roundRdp: this.plannedRdp(plan, minHonest, cohort), budget: this.dp.budget });
    if (!d.ok) this.exhausted = true;
    return d;
  }

  /** The round's DP entry as it starts. */
  begin(plan: DpPlan, config: DpRoundConfig, minHonest: number, cohort: number): RoundDp {
    return {
      mechanism: config.mechanism,
      targetVariance: config.targetVariance,
      removable: config.removable,
      minHonest,
      scale: plan.scale,
      l2Sensitivity: plan.l2Sensitivity,
      l1Sensitivity: plan.l1Sensitivity,
      samplingRate: this.samplingRate(cohort),
      delta: this.dp.delta,
      noise: null,
      epsilon: null,
      cumulativeEpsilon: null,
      cumulativeRdp: null,
      cumulativeRounds: null,
    };
  }

  /**
   * The round ended: a completed round's released noise is accounted (its RDP added to the
   * history's); an aborted one released nothing and costs nothing. Fills in `entry`.
   */
  end(entry: RoundDp, plan: DpPlan, noise: ReleasedNoise | undefined): void {
    if (noise !== undefined) {
      const clientVariance =
        typeof noise.clientVariance === 'number' && noise.clientVariance > 0 ? noise.clientVariance : entry.targetVariance / entry.minHonest;
      const mechanism = accountedMechanism(plan, noise.releasedVariance, clientVariance);
      const one = mechanismRdp({ mechanism, samplingRate: entry.samplingRate });
      this.rdp = this.rdp.map((r, i) => r + one[i]!);
      this.rounds++;
      entry.noise = noise;
      entry.epsilon = epsilonFromRdp({ orders: DEFAULT_RDP_ORDERS, rdp: one, delta: entry.delta }).epsilon;
      this.lastRoundEpsilon = entry.epsilon;
      this.lastReleasedVariance = noise.releasedVariance;
    } else {
      entry.noise = null;
      entry.epsilon = 0;
    }
    entry.cumulativeEpsilon = this.spent(entry.delta);
    entry.cumulativeRdp = this.cumulativeRdp();
    entry.cumulativeRounds = this.rounds;
  }

  /** /api/status's `dp`. */
  status(): DpStatus {
    return {
      mechanism: this.dp.mechanism,
      noiseMultiplier: this.dp.noiseMultiplier,
      delta: this.dp.delta,
      spent: this.spent(),
      rounds: this.rounds,
      lastRoundEpsilon: this.lastRoundEpsilon,
      budget: this.dp.budget ?? null,
      spentAtBudgetDelta: this.dp.budget ? this.spent(this.dp.budget.delta) : null,
      exhausted: this.exhausted,
      population: this.dp.population ?? null,
      encoding: this.encoding,
    };
  }
}

/** What /api/status reports under `dp`. */
export interface DpStatus {
  readonly mechanism: 'skellam' | 'dgauss';
  readonly noiseMultiplier: number;
  /** δ of `spent` and of every round's ε. */
  readonly delta: number;
  /** ε of the completed rounds of the history, at `delta`. */
  readonly spent: number;
  readonly rounds: number;
  readonly lastRoundEpsilon: number | null;
  readonly budget: { readonly epsilon: number; readonly delta: number } | null;
  /** ε of the history at the budget's δ (what the budget is checked against). */
  readonly spentAtBudgetDelta: number | null;
  /** The budget stopped new rounds. */
  readonly exhausted: boolean;
  readonly population: number | null;
  /** What apps encode with (also at GET /dp). */
  readonly encoding: DpEncoding;
}
