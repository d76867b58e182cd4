/**
 * A hand-driven round for tests that need to step between stages: inject bad messages, play a
 * lying server, inspect state. Same state machines and encoded messages as the simulator, and the
 * server side is driven the same way: through a RoundRunner (protocol/runner.ts), without timers —
 * the test says when a stage's deadline passes.
 */
import { clientContext, createClient, handleClientMessage, type ClientContext, type ClientFloors, type ClientState } from '../src/protocol/clientRound.js';
import { serverContext, type Outgoing, type ServerContext, type ServerOptions, type ServerState } from '../src/protocol/serverRound.js';
import { createRoundRunner, type RoundRunner } from '../src/protocol/runner.js';
import { nodeCrypto } from '../src/crypto/node.js';
import { unsafeSeededRng } from '../src/rng.js';
import { clientId, roundId, type ClientId } from '../src/ids.js';
import { minimumThreshold, type Degree, type DpRoundConfig, type Mode, type RoundConfig } from '../src/protocol/config.js';
import type { SecAggError } from '../src/errors.js';
import { randomInputs } from './helpers.js';

export interface DriverOptions {
  n: number;
  m?: number;
  bits?: number;
  degree?: Degree;
  threshold?: number;
  mode?: Mode;
  seed?: number;
  corruption?: number;
  /** The round's DP noise (RoundConfig.dp). */
  dp?: DpRoundConfig;
  floors?: Partial<ClientFloors>;
  /** Fix the round id (tests of replay into a later round with the same id). */
  roundId?: Uint8Array;
  /** Extra server options and context (viewAttempts, graphSeed; unmasker, yieldToEventLoop, …). */
  server?: Partial<ServerOptions> & Partial<ServerContext>;
}

export class Driver {
  runner!: RoundRunner;
  /** The server's context, and each client's (what every protocol call is given). */
  serverCtx!: ServerContext;
  readonly clientCtx = new Map<number, ClientContext>();
  readonly clients = new Map<number, ClientState>();
  readonly inputs: Uint32Array[];
  readonly config: RoundConfig;
  /** Server messages not yet delivered, per recipient. */
  pending: Outgoing[] = [];
  /** Client replies not yet delivered to the server. */
  replies: Array<{ from: ClientId; bytes: Uint8Array }> = [];
  directory: Map<number, Uint8Array> | undefined;
  private identities = new Map<number, Uint8Array>();

  /** The server's state as of its last step. */
  get server(): ServerState {
    return this.runner.state;
  }

  constructor(private readonly o: DriverOptions) {
    const rng = unsafeSeededRng(o.seed ?? 5);
    const bits = o.bits ?? 16;
    this.inputs = randomInputs(o.n, o.m ?? 32, bits, o.seed ?? 5);
    const cohort = Array.from({ length: o.n }, (_, i) => clientId(i + 1));
    const mode = o.mode ?? 'semi-honest';
    const degree = o.degree ?? 'complete';
    this.config = {
      roundId: roundId(o.roundId ?? rng(16)),
      bits,
      dimension: o.m ?? 32,
      threshold: o.threshold ?? minimumThreshold(mode, degree, o.n, o.corruption ?? 0),
      degree,
      mode,
      cohort,
      ...(o.corruption !== undefined ? { corruption: o.corruption } : {}),
      ...(o.dp !== undefined ? { dp: o.dp } : {}),
    };
    if (this.config.mode === 'active') {
      this.directory = new Map();
      for (const id of cohort) this.identities.set(id, rng(32));
    }
  }

  async start(): Promise<this> {
    const rng = unsafeSeededRng((this.o.seed ?? 5) + 1000);
    if (this.directory) for (const [id, seed] of this.identities) this.directory.set(id, (await nodeCrypto.ed25519(seed)).publicKey);
    for (const id of this.config.cohort) {
      this.clients.set(id, createClient({ id, input: this.inputs[id - 1]! }));
      this.clientCtx.set(
        id,
        clientContext({
          crypto: nodeCrypto,
          rng,
          ...(this.directory ? { identity: this.identities.get(id)!, directory: this.directory } : {}),
          ...(this.o.floors ? { floors: this.o.floors } : {}),
        }),
      );
    }
    const { graphSeed, viewAttempts, limits, ...context } = this.o.server ?? {};
    this.serverCtx = serverContext({ crypto: nodeCrypto, rng, ...(this.directory ? { directory: this.directory } : {}), ...context });
    this.runner = createRoundRunner({
      server: {
        config: this.config,
        ...(graphSeed ? { graphSeed } : {}),
        ...(viewAttempts !== undefined ? { viewAttempts } : {}),
        ...(limits ? { limits } : {}),
      },
      context: this.serverCtx,
      send: (to, bytes) => void this.pending.push({ to, bytes }),
    });
    this.runner.start();
    await this.runner.idle();
    return this;
  }

  /** Deliver pending server messages to clients (except `silent`), queueing their replies. */
  async toClients(silent: readonly number[] = []): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    for (const { to, bytes } of pending) {
      if (silent.includes(to)) continue;
      const r = await handleClientMessage(this.clientCtx.get(to)!, this.clients.get(to)!, bytes);
      this.clients.set(to, r.state);
      if (r.outgoing) this.replies.push({ from: to, bytes: r.outgoing });
    }
  }

  /** Send one message to the server as `from`; returns the refusal, if any. */
  async toServer(from: number, bytes: Uint8Array): Promise<SecAggError | undefined> {
    return this.runner.message(from, bytes);
  }

  /** Deliver queued replies to the server; close the stage on its deadline if it is still open. */
  async flush(): Promise<void> {
    const replies = this.replies;
    this.replies = [];
    const stage = this.server.stage;
    for (const { from, bytes } of replies) await this.toServer(from, bytes);
    if (this.server.stage === stage) await this.deadline();
  }

  async deadline(): Promise<void> {
    await this.runner.deadline();
  }

  /** Run honestly until the server finishes. */
  async finish(): Promise<void> {
    while (this.server.stage !== 'done' && this.server.stage !== 'aborted') {
      await this.toClients();
      await this.flush();
    }
  }

  /** Advance honestly until the server reaches `stage` (its messages for that stage are pending). */
  async until(stage: ServerState['stage']): Promise<void> {
    while (this.server.stage !== stage) {
      if (this.server.stage === 'done' || this.server.stage === 'aborted') throw new Error(`round ended (${this.server.stage}) before ${stage}`);
      await this.toClients();
      await this.flush();
    }
  }

  /** Deliver pending messages (except to `silent`) and collect the replies without sending them to the server. */
  async collectReplies(silent: readonly number[] = []): Promise<Array<{ from: ClientId; bytes: Uint8Array }>> {
    await this.toClients(silent);
    const r = this.replies;
    this.replies = [];
    return r;
  }
}
