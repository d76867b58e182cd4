/**
 * The one mapping between a RoundConfig and the wire's RoundParameters (what RoundStart carries),
 * used by the server to announce a round and by the client to read it back.
 */
import { SecAggError } from '../errors.js';
import type { ClientId, RoundId } from '../ids.js';
import { create } from '@bufbuild/protobuf';
import { DpMechanism, DpParametersSchema, Mode as WireMode, type DpParameters, type RoundParameters } from '../wire/gen/secagg/v1/secagg_pb.js';
import type { DpRoundConfig, Mode, RoundConfig } from './config.js';

/** The plain fields of a RoundParameters message (no protobuf bookkeeping). */
export type RoundParametersInit = Omit<RoundParameters, '$typeName' | '$unknown'>;

/** The wire's round parameters for a config (the complete graph is degree 0 on the wire). */
export function roundParameters(config: RoundConfig): RoundParametersInit {
  return {
    roundId: config.roundId,
    bits: config.bits,
    dimension: config.dimension,
    threshold: config.threshold,
    degree: config.degree === 'complete' ? 0 : config.degree,
    mode: wireMode(config.mode),
    cohort: config.cohort.slice(),
    corruption: config.corruption ?? 0,
    colluders: config.colluders ?? 0,
    dp: config.dp ? wireDp(config.dp) : undefined,
  };
}

function wireDp(dp: DpRoundConfig): DpParameters {
  return create(DpParametersSchema, {
    mechanism: dp.mechanism === 'skellam' ? DpMechanism.SKELLAM : DpMechanism.DISCRETE_GAUSSIAN,
    targetVariance: dp.targetVariance,
    removable: dp.removable,
  });
}

function dpFromWire(dp: DpParameters): DpRoundConfig {
  const mechanism = dp.mechanism === DpMechanism.SKELLAM ? 'skellam' : dp.mechanism === DpMechanism.DISCRETE_GAUSSIAN ? 'dgauss' : undefined;
  if (mechanism === undefined) throw new SecAggError('ERR_INVALID_PARAMETERS', 'unknown DP mechanism');
  return { mechanism, targetVariance: dp.targetVariance, removable: dp.removable };
}

function wireMode(mode: Mode): WireMode {
  return mode === 'active' ? WireMode.ACTIVE : WireMode.SEMI_HONEST;
}

/**
 * The config a RoundParameters announces. Refuses an unknown mode (ERR_INVALID_PARAMETERS); the
 * caller still validates the config against its own limits and floors.
 */
export function configFromParameters(p: Pick<RoundParameters, keyof RoundParametersInit>): RoundConfig {
  const mode = p.mode === WireMode.ACTIVE ? 'active' : p.mode === WireMode.SEMI_HONEST ? 'semi-honest' : undefined;
  if (mode === undefined) throw new SecAggError('ERR_INVALID_PARAMETERS', 'unknown mode');
  // Every field of RoundConfig, optional ones too: a field added to RoundConfig does not compile
  // until it is read back here (roundParameters' return type catches the other direction).
  const all: { readonly [K in keyof RoundConfig]-?: RoundConfig[K] | undefined } = {
    roundId: p.roundId as RoundId,
    bits: p.bits,
    dimension: p.dimension,
    threshold: p.threshold,
    degree: p.degree === 0 ? 'complete' : p.degree,
    mode,
    cohort: p.cohort as ClientId[],
    corruption: p.corruption,
    colluders: p.colluders !== 0 ? p.colluders : undefined,
    dp: p.dp !== undefined ? dpFromWire(p.dp) : undefined,
  };
  const { colluders, dp, ...required } = all;
  return { ...(required as Omit<RoundConfig, 'colluders' | 'dp'>), ...(colluders !== undefined ? { colluders } : {}), ...(dp !== undefined ? { dp } : {}) };
}
