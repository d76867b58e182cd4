/**
 * One round of the service: a cohort of welcomed connections, the round's parameters, its record
 * (store, metrics, logs), its frame limits, and the protocol driven through a RoundRunner
 * (protocol/runner.ts) with a deadline per stage. It sends the round assignment and the 'finished'
 * control frame; the service decides who waits for the next round.
 */
import { nodeCrypto } from '../crypto/node.js';
import type { Clock } from '../clock.js';
import { roundId } from '../ids.js';
import { cryptoRng } from '../rng.js';
import { effectiveDegree, type RoundConfig } from '../protocol/config.js';
import { maxClientMessageBytes, maxClientMessageBytesForStage } from '../protocol/limits.js';
import { createRoundRunner, type RoundEnd, type RoundRunner } from '../protocol/runner.js';
import { serverContext, stageCounts } from '../protocol/serverRound.js';
import { isStage } from '../protocol/stages.js';
import { encodeClientMessage } from '../wire/codec.js';
import { peekClientBody } from '../wire/peek.js';
import { CLOSE, encodeControl } from '../transport/frames.js';
import { toHex } from '../identity/index.js';
import type { WorkerUnmasker } from '../node/workerUnmasker.js';
import { CLOSE_ON_REFUSAL, type Conn, type Connections } from './connection.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { cohortParameters, type ServiceOptions } from './options.js';
import type { RoundRecord, RoundStore, StageRecord } from './store.js';
import type { LiveRound, PublishedResult } from './types.js';
import { roundPlan, wireDpEncoding, type DpLedger, type ReleasedNoise, type RoundDp } from './dp.js';

/** The privacy budget does not allow this round (DpLedger.decide): nothing was sent or recorded. */
export class DpBudgetExhausted extends Error {
  readonly spent: number;
  readonly after: number;
  constructor(spent: number, after: number, budget: { epsilon: number; delta: number }) {
    super(
      `privacy budget exhausted: ε = ${spent.toPrecision(4)} spent, one more round would make it ${after.toPrecision(4)} > the budget ε = ${budget.epsilon} (δ = ${budget.delta}); no further rounds start`,
    );
    this.name = 'DpBudgetExhausted';
    this.spent = spent;
    this.after = after;
  }
}

export interface ServiceRoundOptions {
  readonly options: ServiceOptions;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly store: RoundStore;
  readonly connections: Connections;
  readonly unmasker: WorkerUnmasker | undefined;
  /** The cohort, in ascending client id. */
  readonly members: readonly Conn[];
  /** DP rounds: the service's privacy ledger (plans the round, checks the budget, accounts the release). */
  readonly dp?: DpLedger | undefined;
  /** Where the stage deadlines run (default: the real clock). */
  readonly clock?: Clock;
  /**
   * The round ended and is recorded: `back` are the members still in the round's connection
   * phase (they got the 'finished' frame), `published` the result of a completed round.
   */
  readonly onFinished: (end: { readonly record: RoundRecord; readonly published: PublishedResult | undefined; readonly back: readonly Conn[] }) => void;
}

export interface ServiceRound {
  readonly record: RoundRecord;
  readonly finished: boolean;
  /** Resolves once the round has ended and onFinished has run. */
  readonly done: Promise<void>;
  /** Whether `c` is this round's member for its client id. */
  has(c: Conn): boolean;
  /**
   * Record the round, send the assignments and start the protocol; resolves to the round's number,
   * or undefined when the history could not record it: the round then ends at once, aborted with
   * ERR_STORE before any client was assigned, and its members wait for the next one.
   */
  begin(): Promise<number | undefined>;
  /** A protocol frame of a member. */
  frame(c: Conn, bytes: Uint8Array): void;
  /** A member's connection is gone: for the state machine, that client aborted. */
  memberGone(c: Conn): void;
  /** The round as the status API shows it. */
  live(now: number): LiveRound;
  /** End the round now, recorded as aborted with ERR_SHUTDOWN (no step still queued can complete it). */
  shutdown(reason: string): Promise<void>;
  /** Resolves once everything queued for the round has run. */
  idle(): Promise<void>;
}

/** Set up a round over `members`. Throws when the protocol refuses the round's parameters; nothing is sent or recorded then. */
export function createServiceRound(so: ServiceRoundOptions): ServiceRound {
  const { options: o, log, metrics, store, connections } = so;
  const active = o.mode === 'active';
  const members = new Map<number, Conn>(so.members.map((c) => [c.clientId!, c]));
  const n = so.members.length;
  const { degree, threshold, clamped, neighbourhood } = cohortParameters(o, n);
  if (clamped)
    log.log('warn', 'the configured threshold does not fit this cohort: clamped', {
      threshold: o.threshold,
      used: threshold,
      cohort: n,
      neighbourhood,
      corruption: o.corruption,
    });
  const ledger = so.dp;
  const dpRound = ledger ? roundPlan(ledger.dp, ledger.encoding, { cohort: n, threshold, corruption: o.corruption, degree }) : undefined;
  if (ledger && dpRound) {
    const d = ledger.decide(dpRound.plan, dpRound.minHonest, n);
    if (!d.ok) throw new DpBudgetExhausted(d.spent, d.after, ledger.dp.budget!);
  }
  const config: RoundConfig = {
    roundId: roundId(cryptoRng(16)),
    bits: o.bits,
    dimension: o.dimension,
    threshold,
    degree,
    mode: o.mode,
    cohort: so.members.map((c) => c.clientId!),
    corruption: o.corruption,
    ...(dpRound ? { dp: dpRound.config } : {}),
  };
  const dpEntry: RoundDp | undefined = ledger && dpRound ? ledger.begin(dpRound.plan, dpRound.config, dpRound.minHonest, n) : undefined;
  // Active mode: the directory is the identity keys the members proved possession of at hello.
  const directory = active ? new Map<number, Uint8Array>(so.members.map((c) => [c.clientId!, c.identityKey!])) : undefined;
  /** The largest client message of the round (any stage): a bigger frame closes the connection (1009). */
  const maxFrame = maxClientMessageBytes(config);
  /** Per stage, the largest message a client may send in it: a bigger frame is refused unread. */
  const stageFrame = new Map<string, number>();
  /** Cohort members whose connection closed during the round. */
  const disconnected = new Set<number>();
  /** Per stage, the clients whose message was accepted: a stage may ask again (active mode's view re-attempts), a client counts once. */
  const accepted = new Map<string, Set<number>>();
  /** Members the state machine has counted as quit (their abort message, or their connection closing), in its order. */
  const quit = new Set<number>();

  const runner: RoundRunner = createRoundRunner({
    server: { config },
    context: serverContext({ crypto: nodeCrypto, ...(directory ? { directory } : {}), ...(so.unmasker ? { unmasker: so.unmasker.unmask } : {}) }),
    stageTimeoutMs: o.stageTimeoutMs,
    ...(so.clock ? { clock: so.clock } : {}),
    send: (to, bytes, stage) => {
      const c = members.get(to);
      if (c?.phase !== 'in-round') return;
      c.ws.send(bytes);
      if (isStage(stage)) {
        metrics.addBytes('out', stage, bytes.length);
        record.stages[stage]!.bytesOut += bytes.length;
      }
    },
    onStage: (stage) => enterStage(stage),
    onStep: () => {
      metrics.stageProgress(record);
    },
    onDeadline: (instance) => log.log('info', 'stage deadline passed', { round: record.id, stage: instance }),
    onDeadlineClose: () => {
      const stage = runner.state.stage;
      const rec = isStage(stage) ? record.stages[stage] : undefined;
      if (rec) rec.deadline = true;
    },
    onInternalError: (e) => log.log('error', 'unexpected error in the round', { round: record.id, error: String(e) }),
    onEnd: (end) => finish(end),
  });

  const startedAt = Date.now();
  const params = { bits: o.bits, dimension: o.dimension, threshold, degree: effectiveDegree(degree, n), mode: o.mode, cohort: n, corruption: o.corruption };
  const base: Omit<RoundRecord, 'id'> = {
    roundId: toHex(config.roundId),
    params,
    startedAt,
    endedAt: null,
    outcome: 'running',
    code: null,
    reason: null,
    stage: 'advertise',
    stages: {},
    included: null,
    ...(dpEntry ? { dp: dpEntry } : {}),
  };
  const record: RoundRecord = { ...base, id: 0 };

  // Read when the write's turn comes, after begin's: id 0 then means the history never recorded the round.
  const save = () =>
    runner
      .persist(() => (record.id === 0 ? undefined : store.save(record)))
      .catch((e: unknown) => log.log('error', 'store save failed', { round: record.id, error: String(e) }));

  /**
   * The stage `stage` is over (or the round ended in it): its end time, and its dropouts — the
   * clients it waited for that did not answer, or answered and then left, before it closed.
   */
  const closeStageRecord = (stage: string, now: number) => {
    const rec = isStage(stage) ? record.stages[stage] : undefined;
    if (!isStage(stage) || !rec || rec.endedAt !== 0) return;
    rec.endedAt = now;
    let kept = 0;
    for (const u of accepted.get(stage) ?? []) if (!quit.has(u)) kept++;
    if (rec.expected !== undefined) rec.dropped = Math.max(0, rec.expected - kept);
    metrics.observeStage(stage, (now - rec.startedAt) / 1000);
  };

  const enterStage = (stage: string) => {
    const now = Date.now();
    if (record.stage !== stage) closeStageRecord(record.stage, now);
    record.stage = stage;
    if (!isStage(stage)) return;
    const counts = stageCounts(runner.state);
    const rec: StageRecord = { clients: 0, startedAt: now, endedAt: 0, bytesIn: 0, bytesOut: 0, expected: counts?.expected ?? 0, deadline: false };
    record.stages[stage] = rec;
    void save();
  };

  /** The largest frame a client may send in `stage` of this round (cached per stage). */
  const stageFrameLimit = (stage: string): number => {
    let limit = stageFrame.get(stage);
    if (limit === undefined) {
      limit = Math.min(maxFrame, maxClientMessageBytesForStage(config, stage));
      stageFrame.set(stage, limit);
    }
    return limit;
  };

  const finish = async (end: RoundEnd) => {
    const now = Date.now();
    const rec = record;
    closeStageRecord(rec.stage, now);
    rec.endedAt = now;
    const result = end.outcome === 'completed' ? end.result : undefined;
    if (result) {
      rec.outcome = 'completed';
      rec.stage = 'done';
      rec.included = [...result.included];
      rec.sum = result.sum;
    } else {
      rec.outcome = 'aborted';
      rec.stage = 'aborted';
      rec.code = end.outcome === 'aborted' ? end.code : 'ERR_INTERNAL';
      rec.reason = end.outcome === 'aborted' ? end.reason : 'aborted';
    }
    if (ledger && dpRound && rec.dp) {
      // The noise the state machine reports in the released sum; an aborted round released nothing.
      let noise: ReleasedNoise | undefined = result?.noise;
      if (result && noise === undefined) {
        log.log('warn', 'a DP round completed without a noise report: accounted at its planned noise', { round: rec.id });
        noise = { mechanism: dpRound.config.mechanism, releasedVariance: dpRound.config.targetVariance };
      }
      ledger.end(rec.dp, dpRound.plan, noise);
      metrics.dpAccounted(ledger);
    }
    metrics.roundEnded(rec);
    await save();
    log.log(result ? 'info' : 'warn', result ? 'round completed' : 'round aborted', {
      round: rec.id,
      roundId: rec.roundId,
      outcome: rec.outcome,
      code: rec.code,
      reason: rec.reason,
      included: rec.included?.length ?? 0,
      cohort: rec.params.cohort,
      ...(rec.dp
        ? { dp: { epsilon: rec.dp.epsilon, cumulativeEpsilon: rec.dp.cumulativeEpsilon, releasedVariance: rec.dp.noise?.releasedVariance ?? null } }
        : {}),
      ms: now - rec.startedAt,
      stages: Object.fromEntries(
        Object.entries(rec.stages).map(([s, v]) => [s, { clients: v.clients, dropped: v.dropped, deadline: v.deadline, ms: v.endedAt - v.startedAt }]),
      ),
    });
    const included = new Set<number>(result?.included ?? []);
    const back: Conn[] = [];
    for (const [id, c] of members) {
      if (c.phase !== 'in-round') continue;
      c.ws.send(
        encodeControl({
          case: 'finished',
          value: {
            roundNumber: rec.id,
            roundId: config.roundId,
            completed: result !== undefined,
            included: included.has(id),
            code: rec.code ?? '',
            reason: rec.reason ?? '',
            survivors: included.size,
          },
        }),
      );
      back.push(c);
    }
    const published: PublishedResult | undefined = result && {
      round: rec.id,
      roundId: rec.roundId,
      sum: result.sum,
      included: rec.included!,
      identities: rec.included!.map((id) => members.get(id)?.identity ?? ''),
      ...(active ? { identityKeys: rec.included!.map((id) => toHex(members.get(id)?.identityKey ?? new Uint8Array(0))) } : {}),
      ...(rec.dp && ledger ? { dp: { ...structuredClone(rec.dp), encoding: ledger.encoding } } : {}),
      params: rec.params,
      stages: structuredClone(rec.stages),
      startedAt: rec.startedAt,
      endedAt: now,
    };
    so.onFinished({ record: rec, published, back });
  };

  return {
    record,
    get finished() {
      return runner.finished;
    },
    done: runner.ended,
    has: (c) => c.clientId !== undefined && members.get(c.clientId) === c,
    async begin() {
      metrics.roundStarted();
      // The first of the round's writes: every later save is queued behind it, so none can precede the round's row.
      try {
        await runner.persist(async () => {
          (record as { id: number }).id = await store.begin(base);
        });
      } catch (e) {
        // No row, no round (the history's database is down, say): a round missing from the history would
        // be missing from its totals and, with DP, from the privacy ledger after a restart. Nothing was
        // sent yet; the members get a 'finished' for a round they never had, which they ignore.
        const why = e instanceof Error ? e.message : String(e);
        log.log('error', 'the round history could not record the round: not started', { roundId: record.roundId, error: why });
        await runner.abort('ERR_STORE', `the round history could not record the round (${why})`);
        return undefined;
      }
      log.log('info', 'round started', {
        round: record.id,
        roundId: record.roundId,
        ...params,
        ...(dpEntry
          ? { dp: { mechanism: dpEntry.mechanism, targetVariance: dpEntry.targetVariance, minHonest: dpEntry.minHonest, removable: dpEntry.removable } }
          : {}),
      });
      const directoryEntries = active
        ? so.members.map((c) => ({ clientId: c.clientId!, identity: c.identity!, identityKey: c.identityKey!, certificate: c.certificate ?? '' }))
        : [];
      // A DP round: the service's encoding, so apps encode from the assignment alone (GET /dp answers the same).
      const dpEncoding = ledger ? wireDpEncoding(ledger.encoding) : undefined;
      for (const c of so.members) {
        c.ws.send(
          encodeControl({
            case: 'assignment',
            value: {
              roundNumber: record.id,
              roundId: config.roundId,
              clientId: c.clientId!,
              bits: o.bits,
              dimension: o.dimension,
              maxFrameBytes: maxFrame,
              stageTimeoutMs: o.stageTimeoutMs,
              directory: directoryEntries,
              ...(dpEncoding ? { dpEncoding } : {}),
            },
          }),
        );
      }
      runner.start();
      return record.id;
    },
    frame(c, bytes) {
      const id = c.clientId!;
      if (bytes.length > maxFrame)
        return connections.close(c, CLOSE.TOO_BIG, `frame of ${bytes.length} bytes exceeds the round's limit of ${maxFrame}`, 'too_big');
      const stage = runner.state.stage;
      // Frames are checked against the stage the round is in when they arrive: a client can only have
      // been asked for this stage's message (the server sends a stage's requests after entering it),
      // so a bigger frame is a late message of an earlier stage or junk — refused unread either way,
      // and counted, not closed: an honest client may have sent it just before the stage changed.
      const limit = stageFrameLimit(stage);
      if (bytes.length > limit)
        return connections.refused(c, 'ERR_SIZE', `frame of ${bytes.length} bytes exceeds the ${stage} stage's limit of ${limit}`, record.id);
      // Frames wait in the round's queue while earlier steps run; an honest client has one or two
      // there at a time. More would only hold memory until they are refused.
      if (c.queued >= o.maxRefusedMessages)
        return connections.close(c, CLOSE.POLICY, `more than ${o.maxRefusedMessages} frames waiting to be handled`, 'refused_messages');
      c.queued++;
      void runner.message(id, bytes, {
        begin: () => {
          c.queued--;
          // Closed for misbehaviour (e.g. its refusal budget) while this frame waited: not handled.
          return !c.discard;
        },
        handled: (error) => {
          const rec = isStage(stage) ? record.stages[stage] : undefined;
          if (isStage(stage)) metrics.addBytes('in', stage, bytes.length);
          if (rec) rec.bytesIn += bytes.length;
          if (error) {
            const close = CLOSE_ON_REFUSAL[error.code];
            if (close !== undefined) {
              metrics.refusedMessage(error.code);
              log.log('info', 'message refused', { round: record.id, conn: c.seq, clientId: id, code: error.code, reason: error.message });
              connections.close(c, close, `${error.code}: ${error.message}`, 'malformed');
            } else connections.refused(c, error.code, error.message, record.id);
          } else if (isAbort(bytes)) {
            // A client's own abort is accepted in every stage: it quits the round, it does not answer the stage.
            quit.add(id);
          } else if (rec) {
            let who = accepted.get(stage);
            if (!who) accepted.set(stage, (who = new Set()));
            who.add(id);
            rec.clients = who.size;
          }
        },
      });
    },
    memberGone(c) {
      const id = c.clientId;
      if (id === undefined || members.get(id) !== c) return;
      disconnected.add(id);
      // The transport knows this client is gone: tell the state machine, as the client's own abort would.
      void runner.message(id, encodeClientMessage(config.roundId, id, { case: 'abort', value: { code: 'ERR_ABORTED' } }), {
        handled: (error) => {
          if (!error) quit.add(id);
        },
      });
    },
    live(now) {
      return {
        round: record.id,
        roundId: record.roundId,
        stage: record.stage,
        params: record.params,
        startedAt: record.startedAt,
        stageDeadline: runner.deadlineAt,
        timeLeftMs: Math.max(0, runner.deadlineAt - now),
        stages: structuredClone(record.stages),
        disconnected: disconnected.size,
        progress: stageCounts(runner.state) ?? null,
      };
    },
    async shutdown(reason) {
      if (!runner.finished) await runner.abort('ERR_SHUTDOWN', reason);
    },
    idle: () => runner.idle(),
  };
}

/** Whether a client frame is an abort message (a frame too malformed to peek is not). */
function isAbort(bytes: Uint8Array): boolean {
  try {
    return peekClientBody(bytes).kind === 'abort';
  } catch {
    return false;
  }
}
