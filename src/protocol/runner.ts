/**
 * The one way a server round is driven. The service, the simulator and the test driver all hold a
 * RoundRunner and never call the state machine (serverRound.ts) themselves: this file is the only
 * caller of startServerRound / handleServerMessage / handleServerPartialSum / handleServerDeadline
 * outside tests that play with the state machine on purpose (adversarial, fuzz, attack harness).
 *
 * What it adds to the pure state machine:
 * - **One step at a time.** handleServerMessage is not reentrant — it yields to the event loop in
 *   the middle of a stage change — so every call (message, deadline, the first step) waits in one
 *   queue per round and runs after the previous one has returned and its state is current.
 * - **Deadlines per stage instance**, through an injected Clock. A deadline closes only the stage
 *   instance (stageInstance: the stage, and the view stage's attempt) it was set for: a step that
 *   closes a stage may yield, the timer may fire meanwhile, and its queued close must not close the
 *   next stage the moment it opens.
 * - **Writes in order**: persist() chains the owner's store writes for the round, so a slow write
 *   for one stage can never land after the round's final record.
 *
 * It does no I/O of its own: messages leave through the `send` callback, and the owner learns about
 * stages and the end of the round through callbacks that run inside the queue, in step order.
 * Browser-safe.
 */
import { realClock, type Clock, type TimerHandle } from '../clock.js';
import { SecAggError } from '../errors.js';
import type { ClientId } from '../ids.js';
import {
  handleServerDeadline,
  handleServerMessage,
  handleServerPartialSum,
  serverContext,
  stageInstance,
  startServerRound,
  type RoundResult,
  type ServerContext,
  type ServerOptions,
  type ServerStage,
  type ServerState,
  type ServerStep,
} from './serverRound.js';

/** How a round ended: with a result, or aborted (by the protocol, by a bug, or by its owner). */
export type RoundEnd =
  | { readonly outcome: 'completed'; readonly result: RoundResult }
  | {
      readonly outcome: 'aborted';
      /** A SecAggError code, or the owner's own (e.g. the service's ERR_SHUTDOWN). */
      readonly code: string;
      readonly reason: string;
      /** The state machine's error, when it aborted the round. */
      readonly error?: SecAggError;
    };

export interface RoundRunnerOptions {
  /** What the round is started with (startServerRound); not needed with `resume`. */
  readonly server?: ServerOptions;
  /** What every protocol call gets: crypto, RNG, directory, unmasker (default: serverContext()). */
  readonly context?: ServerContext;
  /**
   * Go on with a round from this state (decoded with decodeServerState) instead of starting it:
   * `server` is then ignored, and start() sends nothing; the messages still due come from clients.
   */
  readonly resume?: ServerState;
  /**
   * Deadline of every stage instance, ms. Omitted: no timers — the owner decides when a stage's
   * time is up and calls deadline() (the simulator and the test driver, which run in lock-step).
   */
  readonly stageTimeoutMs?: number;
  /** Where deadlines read the time and set timers (default: the real clock). */
  readonly clock?: Clock;
  /** Deliver one server message; called in step order, once the state that produced it is current. */
  readonly send: (to: ClientId, bytes: Uint8Array, stage: ServerStage) => void;
  /** The round entered `stage` (a new view attempt of the same stage is not a new stage). */
  readonly onStage?: (stage: ServerStage, previous: ServerStage | undefined) => void;
  /** After every applied step, once its messages are sent. */
  readonly onStep?: () => void;
  /** The deadline of `instance` passed; its close is queued next. */
  readonly onDeadline?: (instance: string) => void;
  /**
   * A deadline is closing `instance` with whoever answered: called in the queue, just before the
   * close, and only when the instance was still open (not when its last answer closed it while the
   * deadline's close waited). A timer's deadline or the owner's deadline().
   */
  readonly onDeadlineClose?: (instance: string) => void;
  /**
   * The round is over. Called once, inside the queue (or from abort()); the runner waits for it, so
   * nothing queued after the last step runs before the owner has recorded the end.
   */
  readonly onEnd?: (end: RoundEnd) => void | Promise<void>;
  /** A step (or a callback) threw: a bug. The round then ends ERR_INTERNAL. */
  readonly onInternalError?: (error: unknown) => void;
}

export interface MessageHooks {
  /** Called when the message's turn comes; false drops it unhandled (e.g. its sender was closed meanwhile). */
  readonly begin?: () => boolean;
  /** Called with the state machine's answer, before its step is applied (undefined: accepted). */
  readonly handled?: (error: SecAggError | undefined) => void;
}

export interface RoundRunner {
  /** The round's state as of the last applied step. Read it; never drive it. */
  readonly state: ServerState;
  /** When the current stage instance's deadline passes (clock time), or 0 without one. */
  readonly deadlineAt: number;
  /** True once the round has ended (or its owner aborted it): nothing more is handled. */
  readonly finished: boolean;
  /** Resolves once onEnd has returned. */
  readonly ended: Promise<void>;
  /** Enter the first stage (onStage, deadline) and queue the first step's messages. Once. */
  start(): void;
  /**
   * Queue one client message. Resolves with the refusal (undefined: accepted) once it is handled
   * and its step applied. After the round ended it is refused without reaching the state machine.
   */
  message(from: number, bytes: Uint8Array, hooks?: MessageHooks): Promise<SecAggError | undefined>;
  /**
   * Queue a partial sum of masked inputs (handleServerPartialSum: a gateway's sum of several
   * clients' MaskedInputs, with their ids). Resolves like message(): with the refusal, or undefined
   * once it is in the sum and its step applied. `words` is read when the partial sum's turn comes:
   * do not reuse the array before the promise settles. Rejects with a TypeError, queueing nothing, when
   * `clients` is not an array or `words` not a Uint32Array (a caller bug).
   */
  partialSum(clients: readonly number[], words: Uint32Array, hooks?: MessageHooks): Promise<SecAggError | undefined>;
  /** Queue the deadline of the stage instance the round is in now (the owner's own timeout). */
  deadline(): Promise<void>;
  /** End the round now, from outside (e.g. shutdown): no step still queued can complete it. */
  abort(code: string, reason: string): Promise<void>;
  /** Resolves when everything queued so far has run. */
  idle(): Promise<void>;
  /** Run `write` after every write persisted before it (a failed one does not stop the next). */
  persist(write: () => Promise<void> | void): Promise<void>;
}

const over = (stage: ServerStage): boolean => stage === 'done' || stage === 'aborted';

/**
 * Start a round and return its runner. Throws what startServerRound throws (invalid parameters),
 * before anything is queued.
 *
 * @example
 * ```ts
 * const runner = createRoundRunner({ server: { config }, stageTimeoutMs: 30_000, send: (to, bytes) => sockets.get(to)?.send(bytes), onEnd: (end) => console.log(end.outcome) });
 * runner.start();
 * socket.on('message', (bytes) => void runner.message(from, bytes));
 * ```
 */
export function createRoundRunner(options: RoundRunnerOptions): RoundRunner {
  const clock = options.clock ?? realClock;
  const timeout = options.stageTimeoutMs;
  const ctx = options.context ?? serverContext();
  let first: ServerStep;
  if (options.resume !== undefined) first = { state: options.resume, outgoing: [] };
  else if (options.server !== undefined) first = startServerRound(ctx, options.server);
  else throw new TypeError('a round runner needs the round to start (server) or a state to resume');
  let state = first.state;
  let instance = stageInstance(state);
  let timer: TimerHandle | undefined;
  let deadlineAt = 0;
  let finished = false;
  let started = false;
  let queue: Promise<void> = Promise.resolve();
  let writes: Promise<void> = Promise.resolve();
  let resolveEnded!: () => void;
  const ended = new Promise<void>((resolve) => (resolveEnded = resolve));

  const internal = (e: unknown) => {
    try {
      options.onInternalError?.(e);
    } catch {
      // a reporter that throws must not take the queue down with it
    }
  };

  const end = async (how: RoundEnd) => {
    if (finished) return;
    // Marked first: a step still queued (or running) cannot publish a result from here on.
    finished = true;
    if (timer !== undefined) clock.clearTimer(timer);
    timer = undefined;
    try {
      await options.onEnd?.(how);
    } catch (e) {
      internal(e);
    }
    resolveEnded();
  };

  /** The deadline of the instance the round is in now; a timer of an earlier instance is dropped. */
  const arm = () => {
    if (timer !== undefined) clock.clearTimer(timer);
    timer = undefined;
    instance = stageInstance(state);
    if (timeout === undefined || over(state.stage)) return;
    const armedFor = instance;
    deadlineAt = clock.now() + timeout;
    timer = clock.setTimer(timeout, () => {
      timer = undefined;
      options.onDeadline?.(armedFor);
      void closeInstance(armedFor);
    });
  };

  const closeInstance = (armedFor: string): Promise<void> =>
    enqueue(async () => {
      if (stageInstance(state) !== armedFor || over(state.stage)) return undefined;
      options.onDeadlineClose?.(armedFor);
      return handleServerDeadline(ctx, state);
    });

  const apply = async (step: ServerStep) => {
    const before = state.stage;
    state = step.state;
    if (state.stage !== before) options.onStage?.(state.stage, before);
    if (stageInstance(state) !== instance) arm(); // a new stage, or a new view attempt
    for (const { to, bytes } of step.outgoing) options.send(to, bytes, state.stage);
    options.onStep?.();
    if (state.stage === 'done') await end({ outcome: 'completed', result: state.result });
    else if (state.stage === 'aborted') {
      const e = state.abortError;
      await end({ outcome: 'aborted', code: e.code, reason: e.message, error: e });
    }
  };

  /** Run one step at a time, in arrival order; apply what it returns (undefined: nothing to apply). */
  const enqueue = (work: () => Promise<ServerStep | undefined>): Promise<void> => {
    const job = queue.then(async () => {
      if (finished) return;
      let step: ServerStep | undefined;
      try {
        step = await work();
        if (finished || step === undefined) return;
        await apply(step);
      } catch (e) {
        internal(e);
        await end({ outcome: 'aborted', code: 'ERR_INTERNAL', reason: 'internal error' });
      }
    });
    queue = job;
    return job;
  };

  return {
    get state() {
      return state;
    },
    get deadlineAt() {
      return deadlineAt;
    },
    get finished() {
      return finished;
    },
    ended,
    start() {
      if (started) throw new Error('the round was already started');
      started = true;
      options.onStage?.(state.stage, undefined);
      arm();
      void enqueue(async () => first);
    },
    async message(from, bytes, hooks = {}) {
      let error: SecAggError | undefined;
      let handled = false;
      await enqueue(async () => {
        if (hooks.begin && !hooks.begin()) return undefined;
        handled = true;
        const step = await handleServerMessage(ctx, state, from, bytes);
        error = step.error;
        hooks.handled?.(step.error);
        return step;
      });
      // Not handled because the round was over: refused as the state machine would refuse it.
      if (!handled && finished) return new SecAggError('ERR_STAGE_MISMATCH', over(state.stage) ? `the round is ${state.stage}` : 'the round is over');
      return error;
    },
    async partialSum(clients, words, hooks = {}) {
      // Checked here too: a TypeError inside the queue would end the round as an internal error.
      if (!Array.isArray(clients)) throw new TypeError('clients must be an array of client ids');
      if (!(words instanceof Uint32Array)) throw new TypeError('words must be a Uint32Array');
      let error: SecAggError | undefined;
      let handled = false;
      await enqueue(async () => {
        if (hooks.begin && !hooks.begin()) return undefined;
        handled = true;
        const step = await handleServerPartialSum(ctx, state, { clients, words });
        error = step.error;
        hooks.handled?.(step.error);
        return step;
      });
      if (!handled && finished) return new SecAggError('ERR_STAGE_MISMATCH', over(state.stage) ? `the round is ${state.stage}` : 'the round is over');
      return error;
    },
    deadline() {
      return closeInstance(stageInstance(state));
    },
    abort(code, reason) {
      return end({ outcome: 'aborted', code, reason });
    },
    idle() {
      return queue;
    },
    persist(write) {
      const p = writes.then(write);
      writes = p.catch(() => {});
      return p;
    },
  };
}
