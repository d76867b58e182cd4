/**
 * The protocol's stages, in one place. Every other list of stages (the service's records, the
 * simulator's statistics, the CLI, the dashboard, the examples) imports it, and the maps below are
 * typed over the wire's message kinds: a new message case in proto/secagg.proto does not compile
 * until it is placed here.
 *
 * A round runs the server stages in this order, skipping the active-mode ones in semi-honest mode:
 *
 * | server stage  | clients send            | it closes by sending     | client stage that answers |
 * |---------------|-------------------------|--------------------------|---------------------------|
 * | advertise     | advertiseKeys           | viewRequest / keys       | awaiting-start            |
 * | view (active) | viewSignature           | keys (or a new view)     | awaiting-view             |
 * | share         | shareKeys               | shares                   | awaiting-keys             |
 * | masked        | maskedInput             | consistency/unmaskReq.   | awaiting-shares           |
 * | consistency   | consistencySignature    | unmaskRequest            | awaiting-consistency      |
 * | unmask        | unmaskResponse          | (the sum)                | awaiting-unmask           |
 */
import type { ClientKind, ServerKind } from '../wire/peek.js';
import type { Mode } from './config.js';

/** The server stages in which clients send a message, in round order. */
export const STAGES = ['advertise', 'view', 'share', 'masked', 'consistency', 'unmask'] as const;
export type Stage = (typeof STAGES)[number];

/** A server round's stage: one of STAGES, or over. */
export type ServerStage = Stage | 'done' | 'aborted';

/** Stages that only active mode has. */
export const ACTIVE_ONLY_STAGES: readonly Stage[] = ['view', 'consistency'];

/** The stages a round of this mode runs, in order. */
export function stagesOf(mode: Mode): readonly Stage[] {
  return mode === 'active' ? STAGES : STAGES.filter((s) => !ACTIVE_ONLY_STAGES.includes(s));
}

export function isStage(s: string): s is Stage {
  return (STAGES as readonly string[]).includes(s);
}

/**
 * Which server stage accepts each client message kind ('any': every running stage). Typed over
 * every ClientKind, so a new client message does not compile until it is given its stage.
 */
export const CLIENT_KIND_STAGE: { readonly [K in ClientKind]: Stage | 'any' } = {
  advertiseKeys: 'advertise',
  viewSignature: 'view',
  shareKeys: 'share',
  maskedInput: 'masked',
  consistencySignature: 'consistency',
  unmaskResponse: 'unmask',
  abort: 'any',
};

/**
 * The one message kind a client sends in each server stage (besides abort): CLIENT_KIND_STAGE read
 * the other way, so the two cannot disagree. Each stage must be named by exactly one kind.
 */
export const STAGE_CLIENT_KIND: { readonly [S in Stage]: ClientKind } = (() => {
  const out: Partial<Record<Stage, ClientKind>> = {};
  for (const [kind, stage] of Object.entries(CLIENT_KIND_STAGE) as [ClientKind, Stage | 'any'][]) {
    if (stage === 'any') continue;
    if (out[stage] !== undefined) throw new Error(`stage table: ${out[stage]} and ${kind} both answer ${stage}`);
    out[stage] = kind;
  }
  for (const stage of STAGES) if (out[stage] === undefined) throw new Error(`stage table: no client kind answers ${stage}`);
  return out as { readonly [S in Stage]: ClientKind };
})();

/** The message kind a client sends in this server stage (besides abort, always allowed); undefined for any other stage. */
export function clientKindForStage(stage: string): ClientKind | undefined {
  return isStage(stage) ? STAGE_CLIENT_KIND[stage] : undefined;
}

/** The client's stages: what it waits for next. */
export const CLIENT_STAGES = [
  'awaiting-start',
  'awaiting-view',
  'awaiting-keys',
  'awaiting-shares',
  'awaiting-consistency',
  'awaiting-unmask',
  'done',
  'aborted',
] as const;
export type ClientStage = (typeof CLIENT_STAGES)[number];

/**
 * The server messages each client stage accepts (besides `aborted`, always). Every ServerKind
 * is placed by SERVER_KIND_STAGE below (its type lists them all), and test/stages.test.ts checks
 * that the two tables agree.
 */
export const CLIENT_STAGE_ACCEPTS: { readonly [S in ClientStage]: readonly ServerKind[] } = {
  'awaiting-start': ['roundStart'],
  'awaiting-view': ['viewRequest'],
  'awaiting-keys': ['keys', 'viewRequest'],
  'awaiting-shares': ['shares'],
  'awaiting-consistency': ['consistencyRequest'],
  'awaiting-unmask': ['unmaskRequest'],
  done: ['unmaskRequest'],
  aborted: [],
};

/**
 * The client stage that first receives each server message kind ('any': every stage). Typed over
 * every ServerKind: a new server message does not compile until it is placed.
 */
export const SERVER_KIND_STAGE: { readonly [K in ServerKind]: ClientStage | 'any' } = {
  roundStart: 'awaiting-start',
  viewRequest: 'awaiting-view',
  keys: 'awaiting-keys',
  shares: 'awaiting-shares',
  consistencyRequest: 'awaiting-consistency',
  unmaskRequest: 'awaiting-unmask',
  aborted: 'any',
};

/** The server stage whose message a client in this stage is about to send (undefined once it has nothing more to send). */
export const REPLY_STAGE: { readonly [S in ClientStage]: Stage | undefined } = {
  'awaiting-start': 'advertise',
  'awaiting-view': 'view',
  'awaiting-keys': 'share',
  'awaiting-shares': 'masked',
  'awaiting-consistency': 'consistency',
  'awaiting-unmask': 'unmask',
  done: undefined,
  aborted: undefined,
};

/** For exhaustive switches over a union: a case left out does not compile. */
export function unreachable(x: never, what = 'value'): never {
  throw new Error(`unexpected ${what}: ${String(x)}`);
}
