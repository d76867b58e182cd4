/**
 * Real messages of every kind, built with the library's own encoders: the seed corpus of the
 * fuzzer, and the largest honest message of each kind for a round (which the per-kind limits of
 * protocol/limits.ts must admit).
 */
import { ERROR_CODES } from '../../src/errors.js';
import { maxNeighbourhood, type Degree, type DpRoundConfig, type Mode, type RoundConfig } from '../../src/protocol/config.js';
import {
  COMMITMENT_BYTES,
  GRAPH_SEED_BYTES,
  KEY_BYTES,
  SEED_BYTES,
  SHARE_CIPHERTEXT_BYTES,
  SIGNATURE_BYTES,
  clampAbortReason,
} from '../../src/protocol/limits.js';
import { elementBytes } from '../../src/ring/vector.js';
import { SHARE_BYTES } from '../../src/shamir/index.js';
import { encodeControl, type ControlBody } from '../../src/transport/frames.js';
import { encodeClientMessage, encodeServerMessage, type ClientBody, type ServerBody } from '../../src/wire/codec.js';
import { DpMechanism, Mode as WireMode } from '../../src/wire/gen/secagg/v1/secagg_pb.js';
import type { ClientKind, ServerKind } from '../../src/wire/peek.js';
import type { ClientId, RoundId } from '../../src/ids.js';
import { Prng } from './mutate.js';

export interface RoundShape {
  readonly clients: number;
  readonly degree: Degree;
  readonly bits: number;
  readonly dimension: number;
  readonly mode: Mode;
  /** Ids from 1 (small varints) or ending at 65535 (the largest, three-byte varints). Default 'high'. */
  readonly ids?: 'low' | 'high';
  /** A DP round (RoundConfig.dp): RoundStart carries DpParameters, and removable noise an unmask response's excess. */
  readonly dp?: DpRoundConfig;
}

/** A valid RoundConfig of this shape (threshold: the smallest the bound allows, or more). */
export function configOf(s: RoundShape, rng: Prng = new Prng(1)): RoundConfig {
  const first = s.ids === 'low' ? 1 : 65535 - s.clients + 1;
  const cohort = Array.from({ length: s.clients }, (_, i) => (first + i) as ClientId);
  const k = maxNeighbourhood(s.degree, s.clients);
  return {
    roundId: rng.bytes(16) as RoundId,
    bits: s.bits,
    dimension: s.dimension,
    threshold: Math.min(k, Math.floor(k / 2) + 1),
    degree: s.degree,
    mode: s.mode,
    cohort,
    corruption: 0,
    ...(s.dp ? { dp: s.dp } : {}),
  };
}

const LONGEST_CODE = ERROR_CODES.reduce((a, b) => (b.length > a.length ? b : a));

/**
 * The largest honest body of each client kind in this round: full neighbourhoods (k entries), the
 * largest ids of the cohort, active mode's signatures and commitments.
 */
export function largestClientBodies(c: RoundConfig, rng: Prng = new Prng(2)): Record<ClientKind, ClientBody> {
  const k = maxNeighbourhood(c.degree, c.cohort.length);
  const peers = c.cohort.slice(-k - 1, -1).reverse(); // k ids, the largest but the sender's
  const b = (n: number) => rng.bytes(n);
  const half = Math.floor(k / 2);
  return {
    advertiseKeys: {
      case: 'advertiseKeys',
      value: { encryptionPublicKey: b(KEY_BYTES), maskingPublicKey: b(KEY_BYTES), signature: b(SIGNATURE_BYTES), seedCommitment: b(COMMITMENT_BYTES) },
    },
    shareKeys: {
      case: 'shareKeys',
      value: { selfMaskCommitment: b(COMMITMENT_BYTES), shares: peers.map((peer) => ({ peer, ciphertext: b(SHARE_CIPHERTEXT_BYTES) })) },
    },
    maskedInput: { case: 'maskedInput', value: { vector: b(elementBytes(c.bits) * c.dimension) } },
    consistencySignature: { case: 'consistencySignature', value: { signature: b(SIGNATURE_BYTES) } },
    unmaskResponse: {
      case: 'unmaskResponse',
      value: {
        selfMaskShares: peers.slice(0, half).map((owner) => ({ owner, share: b(SHARE_BYTES) })),
        keyShares: peers.slice(half).map((owner) => ({ owner, share: b(SHARE_BYTES) })),
        // Removable DP noise: the excess, m elements packed like the masked input.
        excessNoise: c.dp?.removable === true ? b(elementBytes(c.bits) * c.dimension) : new Uint8Array(0),
      },
    },
    abort: { case: 'abort', value: { code: LONGEST_CODE } },
    viewSignature: { case: 'viewSignature', value: { signature: b(SIGNATURE_BYTES), seedReveal: b(SEED_BYTES), nextSeedCommitment: b(COMMITMENT_BYTES) } },
  };
}

/** The largest honest body of each server kind in this round (view proof and signatures in active mode only). */
export function largestServerBodies(c: RoundConfig, rng: Prng = new Prng(3)): Record<ServerKind, ServerBody> {
  const n = c.cohort.length;
  const k = maxNeighbourhood(c.degree, n);
  const active = c.mode === 'active';
  const cohort = c.cohort.slice();
  const peers = cohort.slice(-k - 1, -1).reverse();
  const b = (len: number) => rng.bytes(len);
  return {
    roundStart: {
      case: 'roundStart',
      value: {
        roundId: c.roundId,
        bits: c.bits,
        dimension: c.dimension,
        threshold: c.threshold,
        degree: c.degree === 'complete' ? 0 : c.degree,
        mode: active ? WireMode.ACTIVE : WireMode.SEMI_HONEST,
        cohort,
        corruption: c.corruption ?? 0,
        ...(c.dp
          ? {
              dp: {
                mechanism: c.dp.mechanism === 'skellam' ? DpMechanism.SKELLAM : DpMechanism.DISCRETE_GAUSSIAN,
                targetVariance: c.dp.targetVariance,
                removable: c.dp.removable,
              },
            }
          : {}),
      },
    },
    keys: {
      case: 'keys',
      value: {
        graphSeed: b(GRAPH_SEED_BYTES),
        advertised: cohort,
        neighbours: peers.map((client) => ({ client, encryptionPublicKey: b(KEY_BYTES), maskingPublicKey: b(KEY_BYTES), signature: b(SIGNATURE_BYTES) })),
        ...(active
          ? {
              view: {
                seedReveals: cohort.map(() => b(SEED_BYTES)),
                // Every other member's signature; the keys of those that are not neighbours.
                viewSignatures: cohort.slice(0, -1).map((client) => ({ client, signature: b(SIGNATURE_BYTES) })),
                memberKeys: cohort.slice(0, Math.max(0, n - 1 - k)).map(() => b(2 * KEY_BYTES)),
              },
            }
          : {}),
      },
    },
    shares: { case: 'shares', value: { shares: peers.map((peer) => ({ peer, ciphertext: b(SHARE_CIPHERTEXT_BYTES) })) } },
    consistencyRequest: { case: 'consistencyRequest', value: { survivors: cohort } },
    unmaskRequest: {
      case: 'unmaskRequest',
      value: { survivors: cohort, signatures: active ? cohort.map((client) => ({ client, signature: b(SIGNATURE_BYTES) })) : [] },
    },
    // The server's reason is an error message, clamped; a multi-byte one at the clamp is the longest.
    aborted: { case: 'aborted', value: { code: LONGEST_CODE, reason: clampAbortReason('€'.repeat(2000)) } },
    viewRequest: { case: 'viewRequest', value: { attempt: n, advertised: cohort, seedCommitments: cohort.map(() => b(COMMITMENT_BYTES)) } },
  };
}

export interface EncodedCase<K extends string> {
  readonly kind: K;
  readonly bytes: Uint8Array;
}

export function encodeClientBodies(c: RoundConfig, bodies: Record<ClientKind, ClientBody>): EncodedCase<ClientKind>[] {
  const sender = c.cohort[c.cohort.length - 1]!;
  return (Object.keys(bodies) as ClientKind[]).map((kind) => ({ kind, bytes: encodeClientMessage(c.roundId, sender, bodies[kind]) }));
}

export function encodeServerBodies(c: RoundConfig, bodies: Record<ServerKind, ServerBody>): EncodedCase<ServerKind>[] {
  return (Object.keys(bodies) as ServerKind[]).map((kind) => ({ kind, bytes: encodeServerMessage(c.roundId, bodies[kind]) }));
}

/** A DP round with removable Skellam noise (the complete graph: removal is offered only there); the DP decoders' round. */
export const DP_SHAPE: RoundShape = {
  clients: 6,
  degree: 'complete',
  bits: 24,
  dimension: 7,
  mode: 'semi-honest',
  ids: 'low',
  dp: { mechanism: 'skellam', targetVariance: 4096, removable: true },
};

/** Round shapes for the seed corpus: small, so that a million inputs take minutes, but every kind and mode, and DP rounds of each noise. */
export const CORPUS_SHAPES: readonly RoundShape[] = [
  { clients: 4, degree: 'complete', bits: 8, dimension: 6, mode: 'semi-honest', ids: 'low' },
  { clients: 7, degree: 3, bits: 16, dimension: 5, mode: 'active', ids: 'low' },
  { clients: 9, degree: 4, bits: 32, dimension: 3, mode: 'active' },
  { clients: 5, degree: 'complete', bits: 1, dimension: 16, mode: 'semi-honest' },
  // DP rounds: removable Skellam (RoundStart's DpParameters, UnmaskResponse.excess_noise), non-removable, the discrete Gaussian.
  DP_SHAPE,
  { clients: 6, degree: 'complete', bits: 12, dimension: 4, mode: 'active', dp: { mechanism: 'skellam', targetVariance: 12.5, removable: false } },
  { clients: 8, degree: 3, bits: 20, dimension: 5, mode: 'semi-honest', dp: { mechanism: 'dgauss', targetVariance: 1e6 / 3, removable: false } },
];

function controlFrames(rng: Prng): Uint8Array[] {
  const bodies: ControlBody[] = [
    { case: 'hello', value: { version: 1, token: 'token-' + 'x'.repeat(20) } },
    { case: 'hello', value: { version: 1, token: 't', proof: { identityKey: rng.bytes(32), signature: rng.bytes(64), certificate: 'cert' } } },
    { case: 'welcome', value: { clientId: 17, identity: 'alice', maxFrameBytes: 1 << 20 } },
    {
      case: 'assignment',
      value: {
        roundNumber: 3,
        roundId: rng.bytes(16),
        clientId: 5,
        bits: 16,
        dimension: 10,
        maxFrameBytes: 65536,
        stageTimeoutMs: 5000,
        directory: [1, 2, 3].map((i) => ({ clientId: i, identity: `c${i}`, identityKey: rng.bytes(32), certificate: '' })),
      },
    },
    {
      // A DP round's assignment: the service's encoding (RoundAssignment.dp_encoding).
      case: 'assignment',
      value: {
        roundNumber: 9,
        roundId: rng.bytes(16),
        clientId: 2,
        bits: 20,
        dimension: 64,
        maxFrameBytes: 65536,
        stageTimeoutMs: 5000,
        directory: [],
        dpEncoding: {
          version: 1,
          mechanism: DpMechanism.SKELLAM,
          dimension: 64,
          bits: 20,
          clip: 1.5,
          scale: 312.25,
          beta: Math.exp(-0.5),
          noiseMultiplier: 0.8,
        },
      },
    },
    { case: 'finished', value: { roundNumber: 3, roundId: rng.bytes(16), completed: true, included: true, code: '', reason: '', survivors: 12 } },
    {
      case: 'finished',
      value: { roundNumber: 4, roundId: rng.bytes(16), completed: false, code: 'ERR_BELOW_THRESHOLD', reason: 'masked inputs: 2, need at least 3' },
    },
    { case: 'challenge', value: { version: 1, mode: WireMode.ACTIVE, nonce: rng.bytes(32), serverId: 'server' } },
  ];
  return bodies.map(encodeControl);
}

export interface Corpus {
  readonly client: readonly EncodedCase<ClientKind>[];
  readonly server: readonly EncodedCase<ServerKind>[];
  readonly control: readonly Uint8Array[];
  /** Everything above, as bytes. */
  readonly all: readonly Uint8Array[];
  /** The round the checked decoders are configured for (the first active shape). */
  readonly config: RoundConfig;
  /** A DP round with removable noise (DP_SHAPE): the checked decoders again, with its limits (unmask responses carry the excess). */
  readonly dpConfig: RoundConfig;
}

/** Every kind of message for every corpus shape, plus smaller typical variants and the control frames. */
export function buildCorpus(seed = 1): Corpus {
  const rng = new Prng(seed);
  const client: EncodedCase<ClientKind>[] = [];
  const server: EncodedCase<ServerKind>[] = [];
  for (const shape of CORPUS_SHAPES) {
    const c = configOf(shape, rng);
    client.push(...encodeClientBodies(c, largestClientBodies(c, rng)));
    server.push(...encodeServerBodies(c, largestServerBodies(c, rng)));
    // A typical, not largest, variant: a partial neighbourhood, semi-honest signatures left out.
    const small = { ...c, degree: 2 as Degree };
    client.push(...encodeClientBodies(small, largestClientBodies(small, rng)).filter((x) => x.kind === 'shareKeys' || x.kind === 'unmaskResponse'));
    server.push(
      ...encodeServerBodies(small, largestServerBodies({ ...small, mode: 'semi-honest' }, rng)).filter((x) => x.kind === 'keys' || x.kind === 'shares'),
    );
  }
  const control = controlFrames(rng);
  const all = [...client.map((x) => x.bytes), ...server.map((x) => x.bytes), ...control];
  return { client, server, control, all, config: configOf(CORPUS_SHAPES[1]!, new Prng(seed)), dpConfig: configOf(DP_SHAPE, new Prng(seed)) };
}
