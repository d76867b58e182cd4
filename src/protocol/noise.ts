/**
 * The arithmetic of a round's differential-privacy noise (RoundConfig.dp), shared by the client and
 * the server so that both compute it from the same numbers: what each client adds, when and how
 * much of it is removable once the survivors are known, and what the released sum then carries.
 *
 * With T = targetVariance, C = colluders and h = t − C (dpMinHonest), every honest client adds
 * noise of variance v0 = T/h per coordinate: any sum the server can release holds at least t masked
 * inputs, at least h of them from honest clients, so at least h·v0 = T of noise it cannot subtract.
 * With removable Skellam noise, once a survivor set U3 is verified, r = |U3| − C honest survivors
 * are guaranteed; when r > h each survivor thins its noise to v0_r = T/r and reveals the excess, so
 * the release carries r·v0_r = T from honest clients, exactly T when C = 0 and everyone answers.
 */
import { colludersOf, dpMinHonest, type DpRoundConfig, type RoundConfig } from './config.js';

/** The per-coordinate variance each honest client adds: v0 = targetVariance / (t − C); 0 without DP. */
export function clientNoiseVariance(config: RoundConfig): number {
  if (config.dp === undefined) return 0;
  return config.dp.targetVariance / dpMinHonest(config);
}

/**
 * The thinning probability for a verified survivor set of `survivors` clients: 1 − (t − C)/r with
 * r = survivors − C, when the round's noise is removable and r > t − C; else 0 (nothing removed).
 */
export function excessProbability(config: RoundConfig, survivors: number): number {
  if (config.dp?.removable !== true) return 0;
  const h = dpMinHonest(config);
  const r = survivors - colludersOf(config);
  return r > h ? 1 - h / r : 0;
}

/** The noise actually in a released sum (RoundResult.noise). Variances per coordinate, ring units. */
export interface NoiseReport {
  readonly mechanism: DpRoundConfig['mechanism'];
  readonly removable: boolean;
  /** T: what the round asked every released sum to carry from honest clients. */
  readonly targetVariance: number;
  /** v0 = T / (t − C): what each client added. */
  readonly clientVariance: number;
  /** |U3|: the clients whose masked input (and noise) is in the sum. */
  readonly survivors: number;
  /** C: colluding clients the guarantee allows for (their noise counts for nothing). */
  readonly colluders: number;
  /** r = |U3| − C: honest clients guaranteed among the survivors. */
  readonly honest: number;
  /** Survivors whose excess was removed (each then holds v0_r = T / r); the others keep v0. */
  readonly removedFrom: number;
  /** What a survivor that removed its excess keeps: T / r (= v0 when nothing was removable). */
  readonly keptVariance: number;
  /**
   * The variance guaranteed from honest clients: the sum of the r smallest per-survivor variances
   * (any C of the survivors may be colluders who know, and can subtract, their own noise). It is
   * never below T; it is T exactly when every survivor removed its excess (or none could).
   */
  readonly releasedVariance: number;
  /** releasedVariance + the colluders' share, as if all survivors were honest: the noise really in the sum then. */
  readonly totalVariance: number;
}

/** The noise report of a round with DP, released over `survivors` clients of which `removedFrom` removed their excess. */
export function noiseReport(config: RoundConfig, survivors: number, removedFrom: number): NoiseReport | undefined {
  const dp = config.dp;
  if (dp === undefined) return undefined;
  const v0 = clientNoiseVariance(config);
  const colluders = colludersOf(config);
  const honest = survivors - colluders;
  const p = excessProbability(config, survivors);
  const keptVariance = p > 0 ? dp.targetVariance / honest : v0;
  const removed = Math.min(removedFrom, survivors);
  const low = Math.min(removed, honest);
  const releasedVariance = low * keptVariance + Math.max(0, honest - low) * v0;
  const totalVariance = removed * keptVariance + (survivors - removed) * v0;
  return {
    mechanism: dp.mechanism,
    removable: dp.removable,
    targetVariance: dp.targetVariance,
    clientVariance: v0,
    survivors,
    colluders,
    honest,
    removedFrom: removed,
    keptVariance,
    releasedVariance,
    totalVariance,
  };
}
