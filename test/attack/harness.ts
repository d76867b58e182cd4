/**
 * A scripted malicious server. Honest clients are the real, unmodified client state machines; the
 * attacker plays the server and every colluding client: it knows the colluders' identity keys,
 * makes their round keys itself, signs whatever it likes in their name, and reads every share
 * addressed to them. It sends each honest client whatever it chooses — its own U1, graph seed,
 * survivor set and signatures — and records what the honest clients reveal.
 *
 * `stolen(v)` is what the attacker holds of honest client v's two secrets: the holders whose share
 * of b_v (self) and of s_v^SK (key) it has. Both at ≥ t means it can strip every mask off v's
 * input. Nothing here calls the library's server: the attack is built from the wire messages alone.
 */
import { fromBinary, toBinary, create } from '@bufbuild/protobuf';
import { nodeCrypto } from '../../src/crypto/node.js';
import type { Ed25519PrivateKey, X25519PrivateKey } from '../../src/crypto/provider.js';
import {
  clientContext,
  createClient,
  handleClientMessage,
  type ClientContext,
  type ClientDpPolicy,
  type ClientFloors,
  type ClientState,
} from '../../src/protocol/clientRound.js';
import { roundParameters } from '../../src/protocol/serverRound.js';
import * as derive from '../../src/protocol/derive.js';
import type { DpRoundConfig, RoundConfig } from '../../src/protocol/config.js';
import { buildGraph, type NeighbourGraph } from '../../src/graph/index.js';
import { SHARE_BYTES } from '../../src/shamir/index.js';
import { unsafeSeededRng, type Rng } from '../../src/rng.js';
import { clientId, roundId, type ClientId } from '../../src/ids.js';
import { concatBytes } from '../../src/bytes.js';
import type { SecAggError } from '../../src/errors.js';
import { PROTOCOL_VERSION, type ServerBody } from '../../src/wire/codec.js';
import { ClientMessageSchema, ServerMessageSchema, type ClientMessage } from '../../src/wire/gen/secagg/v1/secagg_pb.js';

interface Keys {
  readonly encryption: Uint8Array;
  readonly masking: Uint8Array;
}

interface Colluder {
  readonly identity: Ed25519PrivateKey;
  readonly encryption: X25519PrivateKey;
  readonly masking: X25519PrivateKey;
  readonly reveal: Uint8Array;
  readonly commitment: Uint8Array;
}

export interface AttackOptions {
  readonly n: number;
  readonly degree: number | 'complete';
  readonly threshold: number;
  readonly corruption?: number;
  readonly mode?: 'active' | 'semi-honest';
  /** Ids the attacker controls. */
  readonly colluders?: readonly number[];
  readonly floors?: Partial<ClientFloors>;
  readonly seed?: number;
  readonly m?: number;
  /** The round's DP noise (RoundConfig.dp) and C (RoundConfig.colluders). */
  readonly dp?: DpRoundConfig;
  readonly colludersBudget?: number;
  /** The honest clients' DP policy (ClientContext.dp). */
  readonly dpPolicy?: ClientDpPolicy;
}

export class Attack {
  readonly config: RoundConfig;
  readonly honest = new Map<number, ClientState>();
  /** Each honest client's context (given to every call). */
  readonly contexts = new Map<number, ClientContext>();
  readonly colluders = new Map<number, Colluder>();
  readonly inputs = new Map<number, Uint32Array>();
  readonly directory = new Map<number, Uint8Array>();
  readonly keys = new Map<number, Keys>();
  readonly commitments = new Map<number, Uint8Array>();
  readonly reveals = new Map<number, Uint8Array>();
  /** Each honest client's view signature, by the digest it signed. */
  readonly viewSignatures = new Map<number, { digest: Uint8Array; signature: Uint8Array }>();
  /** Honest client's ShareKeys ciphertexts, by recipient. */
  readonly ciphertexts = new Map<number, Map<number, Uint8Array>>();
  readonly masked = new Map<number, Uint8Array>();
  /** The senders whose ciphertexts the attacker forwarded to each honest client: the neighbours it masks with. */
  readonly partners = new Map<number, number[]>();
  /** Each honest client's neighbours in the graph it was given. */
  readonly neighboursOf = new Map<number, readonly number[]>();
  readonly consistency = new Map<number, Uint8Array>();
  /** The excess DP noise each honest client revealed, one entry per unmask response (empty bytes: none). */
  readonly excess = new Map<number, Uint8Array[]>();
  /** What the attacker holds of each honest owner's secrets: holder → share, per kind. */
  private readonly shares = new Map<number, { self: Map<number, Uint8Array>; key: Map<number, Uint8Array> }>();
  /** The last error each honest client reported. */
  readonly errors = new Map<number, SecAggError>();
  private readonly rng: Rng;
  private readonly identitySeeds = new Map<number, Uint8Array>();
  private readonly digests = new Map<number, Uint8Array>();

  constructor(readonly o: AttackOptions) {
    this.rng = unsafeSeededRng(o.seed ?? 11);
    const cohort = Array.from({ length: o.n }, (_, i) => clientId(i + 1));
    this.config = {
      roundId: roundId(this.rng(16)),
      bits: 16,
      dimension: o.m ?? 8,
      threshold: o.threshold,
      degree: o.degree,
      mode: o.mode ?? 'active',
      cohort,
      ...(o.corruption !== undefined ? { corruption: o.corruption } : {}),
      ...(o.colludersBudget !== undefined ? { colluders: o.colludersBudget } : {}),
      ...(o.dp !== undefined ? { dp: o.dp } : {}),
    };
  }

  get t(): number {
    return this.config.threshold;
  }

  isColluder(id: number): boolean {
    return this.colluders.has(id);
  }

  get honestIds(): number[] {
    return [...this.honest.keys()];
  }

  async setUp(): Promise<this> {
    const colluding = new Set(this.o.colluders ?? []);
    for (const id of this.config.cohort) {
      const seed = this.rng(32);
      this.identitySeeds.set(id, seed);
      const identity = await nodeCrypto.ed25519(seed);
      this.directory.set(id, identity.publicKey);
      if (colluding.has(id)) {
        const reveal = this.rng(32);
        this.colluders.set(id, {
          identity,
          encryption: await nodeCrypto.x25519(this.rng(32)),
          masking: await nodeCrypto.x25519(this.rng(32)),
          reveal,
          commitment: await derive.seedCommitment(nodeCrypto, this.config.roundId, id, 1, reveal),
        });
      }
    }
    for (const id of this.config.cohort) {
      if (colluding.has(id)) continue;
      const input = new Uint32Array(this.config.dimension).map((_, i) => (id * 1000 + i) & 0xffff);
      this.inputs.set(id, input);
      this.honest.set(id, createClient({ id, input }));
      this.contexts.set(
        id,
        clientContext({
          crypto: nodeCrypto,
          rng: unsafeSeededRng((this.o.seed ?? 11) * 7919 + id),
          ...(this.config.mode === 'active' ? { identity: this.identitySeeds.get(id)!, directory: this.directory } : {}),
          ...(this.o.floors ? { floors: this.o.floors } : {}),
          ...(this.o.dpPolicy ? { dp: this.o.dpPolicy } : {}),
        }),
      );
    }
    for (const [id, c] of this.colluders) {
      this.keys.set(id, { encryption: c.encryption.publicKey, masking: c.masking.publicKey });
      this.commitments.set(id, c.commitment);
      this.reveals.set(id, c.reveal);
    }
    return this;
  }

  /** Deliver one server message to an honest client; returns its reply, decoded (undefined if none). */
  async deliver(to: number, body: ServerBody, config = this.config): Promise<ClientMessage | undefined> {
    const msg = create(ServerMessageSchema, { version: PROTOCOL_VERSION, roundId: config.roundId, body });
    const r = await handleClientMessage(this.contexts.get(to)!, this.honest.get(to)!, toBinary(ServerMessageSchema, msg));
    this.honest.set(to, r.state);
    if (r.error) this.errors.set(to, r.error);
    if (!r.outgoing) return undefined;
    const reply = fromBinary(ClientMessageSchema, r.outgoing);
    this.record(to, reply);
    return reply;
  }

  stage(id: number): string {
    return this.honest.get(id)!.stage;
  }

  private record(from: number, m: ClientMessage): void {
    const b = m.body;
    switch (b.case) {
      case 'advertiseKeys':
        this.keys.set(from, { encryption: b.value.encryptionPublicKey, masking: b.value.maskingPublicKey });
        this.commitments.set(from, b.value.seedCommitment);
        break;
      case 'viewSignature':
        this.reveals.set(from, b.value.seedReveal);
        this.viewSignatures.set(from, { digest: this.digests.get(from)!, signature: b.value.signature });
        break;
      case 'shareKeys':
        this.ciphertexts.set(from, new Map(b.value.shares.map((s) => [s.peer, s.ciphertext])));
        break;
      case 'maskedInput':
        this.masked.set(from, b.value.vector);
        break;
      case 'consistencySignature':
        this.consistency.set(from, b.value.signature);
        break;
      case 'unmaskResponse':
        for (const s of b.value.selfMaskShares) this.held(s.owner).self.set(from, s.share);
        for (const s of b.value.keyShares) this.held(s.owner).key.set(from, s.share);
        this.excess.set(from, [...(this.excess.get(from) ?? []), b.value.excessNoise]);
        break;
      default:
        break;
    }
  }

  private held(owner: number) {
    let h = this.shares.get(owner);
    if (!h) this.shares.set(owner, (h = { self: new Map(), key: new Map() }));
    return h;
  }

  /** Holders whose share of each of v's secrets the attacker has (colluders' decrypted shares included). */
  stolen(v: number): { self: number; key: number } {
    const h = this.shares.get(v);
    return { self: h?.self.size ?? 0, key: h?.key.size ?? 0 };
  }

  /**
   * Honest clients whose input the attacker can unmask: it holds t shares of b_u, and for every
   * neighbour u masked with it knows the pairwise key — through s_u, s_v (t key shares) or v being
   * a colluder. This catches the "mask partners" lie, where no holder is asked for both kinds of
   * share of one owner.
   */
  exposedInputs(): number[] {
    const t = this.t;
    return this.honestIds.filter((u) => {
      if (!this.masked.has(u)) return false;
      const s = this.stolen(u);
      if (s.self < t) return false;
      if (s.key >= t) return true;
      return (this.partners.get(u) ?? []).every((v) => this.isColluder(v) || this.stolen(v).key >= t);
    });
  }

  /** Both secrets of some honest client reconstructible by the attacker? */
  anyCompromised(): number[] {
    return this.honestIds.filter((v) => {
      const s = this.stolen(v);
      return s.self >= this.t && s.key >= this.t;
    });
  }

  // ---- the stages, as the attacker runs them ----

  async roundStart(to: number, config = this.config): Promise<ClientMessage | undefined> {
    return this.deliver(to, { case: 'roundStart', value: roundParameters(config) }, config);
  }

  async startAll(): Promise<void> {
    for (const id of this.honestIds) await this.roundStart(id);
  }

  private async digestOf(advertised: readonly number[]): Promise<Uint8Array> {
    return derive.viewDigest(
      nodeCrypto,
      this.config.roundId,
      1,
      advertised,
      advertised.map((v) => this.commitments.get(v) ?? new Uint8Array(32)),
    );
  }

  /** Active mode: show `to` the view `advertised` (attempt 1) and take its signature and reveal. */
  async view(to: number, advertised: readonly number[]): Promise<ClientMessage | undefined> {
    const commitments = advertised.map((v) => this.commitments.get(v) ?? new Uint8Array(32));
    this.digests.set(to, await this.digestOf(advertised));
    return this.deliver(to, { case: 'viewRequest', value: { attempt: 1, advertised: advertised.slice(), seedCommitments: commitments } });
  }

  /** A member's reveal; one that never revealed (it refused its view) gets a stand-in the attacker makes up. */
  private revealOf(v: number): Uint8Array {
    return this.reveals.get(v) ?? new Uint8Array(32);
  }

  /** The graph seed an honest client computes for `advertised` (active mode), from the reveals. */
  async seedFor(advertised: readonly number[]): Promise<Uint8Array> {
    return derive.viewGraphSeed(
      nodeCrypto,
      await this.digestOf(advertised),
      advertised.map((v) => this.revealOf(v)),
    );
  }

  /**
   * Send `to` the keys of its neighbours in the graph over `advertised` (semi-honest: with the
   * attacker's `seed`; active: with `seed` or, by default, the seed the reveals give), with view
   * signatures: the attacker's own for colluders, the honest neighbour's real one (valid only if
   * that neighbour was shown the same view). Decrypts whatever `to` encrypts to colluders.
   */
  async keysFor(to: number, advertised: readonly number[], seed?: Uint8Array): Promise<NeighbourGraph> {
    const active = this.config.mode === 'active';
    const graphSeed = seed ?? (active ? await this.seedFor(advertised) : new Uint8Array(32).fill(3));
    const graph = buildGraph({ clients: advertised as ClientId[], degree: this.config.degree, seed: graphSeed });
    const digest = active ? await this.digestOf(advertised) : new Uint8Array(0);
    const ns = graph.neighbours(to as ClientId);
    this.neighboursOf.set(to, ns);
    const keyOf = (v: number): Keys => this.keys.get(v) ?? { encryption: new Uint8Array(32).fill(v), masking: new Uint8Array(32).fill(v + 100) };
    const neighbours = ns.map((v) => ({
      client: v,
      encryptionPublicKey: keyOf(v).encryption,
      maskingPublicKey: keyOf(v).masking,
      signature: new Uint8Array(64),
    }));
    let view;
    if (active) {
      // Every other member's view signature: the colluders sign whatever view they are given; an
      // honest member's is the one it really sent (valid only if it was shown this same view).
      const viewSignatures = [];
      const memberKeys = [];
      for (const v of advertised) {
        if (v === to) continue;
        const c = this.colluders.get(v);
        const k = keyOf(v);
        const signature = c
          ? await c.identity.sign(derive.viewTranscript(digest, v as ClientId, k.encryption, k.masking))
          : (this.viewSignatures.get(v)?.signature ?? new Uint8Array(64));
        viewSignatures.push({ client: v, signature });
        if (!(ns as readonly number[]).includes(v)) memberKeys.push(concatBytes(k.encryption, k.masking));
      }
      view = { seedReveals: advertised.map((v) => this.revealOf(v)), viewSignatures, memberKeys };
    }
    const reply = await this.deliver(to, { case: 'keys', value: { graphSeed, advertised: advertised.slice(), neighbours, ...(view ? { view } : {}) } });
    if (reply?.body.case === 'shareKeys') {
      for (const s of reply.body.value.shares) {
        const c = this.colluders.get(s.peer);
        if (!c) continue;
        const key = await derive.shareKey(
          nodeCrypto,
          await c.encryption.agree(this.keys.get(to)!.encryption),
          this.config.roundId,
          s.peer as ClientId,
          to as ClientId,
        );
        const pt = await nodeCrypto.aeadOpen(
          key,
          derive.shareNonce(to as ClientId, s.peer as ClientId),
          s.ciphertext,
          derive.sharesAad(this.config.roundId, to as ClientId, s.peer as ClientId),
        );
        // A colluder holds both kinds of share of `to`.
        this.held(to).key.set(s.peer, pt.slice(8, 8 + SHARE_BYTES));
        this.held(to).self.set(s.peer, pt.slice(8 + SHARE_BYTES));
      }
    }
    return graph;
  }

  /**
   * Forward to `to` the ciphertexts honest `senders` addressed to it (the attacker's choice of U2),
   * and, unless told otherwise, a ciphertext from every colluding neighbour (colluders know their
   * own secrets, so what they encrypt does not matter).
   */
  async sharesFor(to: number, senders: readonly number[], withColluders = true): Promise<ClientMessage | undefined> {
    const from = new Map<number, Uint8Array>();
    for (const u of senders) {
      const ct = this.ciphertexts.get(u)?.get(to);
      if (ct) from.set(u, ct);
    }
    if (withColluders && this.keys.has(to))
      for (const c of this.neighboursOf.get(to) ?? []) if (this.isColluder(c)) from.set(c, await this.colluderCiphertext(c, to));
    const shares = [...from].sort((a, b) => a[0] - b[0]).map(([peer, ciphertext]) => ({ peer, ciphertext }));
    this.partners.set(
      to,
      shares.map((s) => s.peer),
    );
    return this.deliver(to, { case: 'shares', value: { shares } });
  }

  private async colluderCiphertext(from: number, to: number): Promise<Uint8Array> {
    const c = this.colluders.get(from)!;
    const round = this.config.roundId;
    const key = await derive.shareKey(nodeCrypto, await c.encryption.agree(this.keys.get(to)!.encryption), round, from as ClientId, to as ClientId);
    const pt = derive.sharePlaintext(from as ClientId, to as ClientId, new Uint8Array(SHARE_BYTES), new Uint8Array(SHARE_BYTES));
    return nodeCrypto.aeadSeal(key, derive.shareNonce(from as ClientId, to as ClientId), pt, derive.sharesAad(round, from as ClientId, to as ClientId));
  }

  /** Active: ask `to` to sign `survivors`. */
  async consistencyFor(to: number, survivors: readonly number[]): Promise<ClientMessage | undefined> {
    return this.deliver(to, { case: 'consistencyRequest', value: { survivors: survivors.slice() } });
  }

  /** The signatures over `survivors` the attacker can show `to`: honest ones made over the same set and view, and every colluder's. */
  async signaturesOver(
    to: number,
    survivors: readonly number[],
    signedBy: ReadonlyMap<number, readonly number[]>,
  ): Promise<Array<{ client: number; signature: Uint8Array }>> {
    const digest = this.viewSignatures.get(to)?.digest ?? new Uint8Array(0);
    const out: Array<{ client: number; signature: Uint8Array }> = [];
    for (const v of survivors) {
      const c = this.colluders.get(v);
      if (c) out.push({ client: v, signature: await c.identity.sign(derive.consistencyTranscript(this.config.roundId, digest, survivors)) });
      else {
        const sig = this.consistency.get(v);
        const theirs = signedBy.get(v);
        if (sig && theirs && theirs.length === survivors.length && theirs.every((x, i) => x === survivors[i])) out.push({ client: v, signature: sig });
      }
    }
    return out;
  }

  async unmaskFor(
    to: number,
    survivors: readonly number[],
    signatures: Array<{ client: number; signature: Uint8Array }> = [],
  ): Promise<ClientMessage | undefined> {
    return this.deliver(to, { case: 'unmaskRequest', value: { survivors: survivors.slice(), signatures } });
  }
}

/** Bytes of a message as the wire carries it (for tests that mutate them). */
export function serverBytes(config: RoundConfig, body: ServerBody): Uint8Array {
  return toBinary(ServerMessageSchema, create(ServerMessageSchema, { version: PROTOCOL_VERSION, roundId: config.roundId, body }));
}
