/**
 * The decoder fuzzer: seeded inputs (mutated corpus messages, raw corpus messages, random bytes)
 * fed to every decoder of untrusted bytes. Each decoder must accept, or refuse with a typed error —
 * a SecAggError with a code from ERROR_CODES (a TransportError with a close code for control
 * frames). Anything else is counted as untyped. Contract checks are counted as violations: the
 * fast path and the protobuf-es path of the checked decoders decide alike, and whatever a decoder
 * accepts equals what fromBinary returns.
 *
 * Input i of a run depends only on (seed, i): `inputAt` reproduces any one of them.
 * bench/fuzz.ts is the command line; test/fuzz/decoders.test.ts a short run in the test suite.
 */
import { isDeepStrictEqual } from 'node:util';
import { fromBinary } from '@bufbuild/protobuf';
import { ERROR_CODES, SecAggError } from '../../src/errors.js';
import { clientKindForStage, clientMessageLimits, entryCaps, serverMessageLimits } from '../../src/protocol/limits.js';
import { CLOSE, TransportError, decodeControl } from '../../src/transport/frames.js';
import {
  decodeClientMessage,
  decodeClientMessageChecked,
  decodeServerMessage,
  decodeServerMessageChecked,
  type CheckedDecodeOptions,
} from '../../src/wire/codec.js';
import { fastDecodeClientBody, fastDecodeClientMessage, fastDecodeServerBody, fastDecodeServerMessage } from '../../src/wire/fast.js';
import { ClientMessageSchema, ServerMessageSchema } from '../../src/wire/gen/secagg/v1/secagg_pb.js';
import {
  clientBodySchema,
  clientKinds,
  peekClientBody,
  peekServerBody,
  scanBody,
  serverBodySchema,
  serverKinds,
  type ClientKind,
  type ServerKind,
} from '../../src/wire/peek.js';
import { buildCorpus, type Corpus } from './corpus.js';
import { createSession, sessionStep, type SessionState } from '../../src/client/session.js';
import { ClientError } from '../../src/client/errors.js';
import { dpEncodingProblem } from '../../src/dp/encoding.js';
import { create } from '@bufbuild/protobuf';
import { ControlSchema } from '../../src/wire/gen/secagg/v1/service_pb.js';
import { Mode as WireMode } from '../../src/wire/gen/secagg/v1/secagg_pb.js';
import { Prng, mutate, type MutationName } from './mutate.js';
import { STAGES } from '../../src/protocol/stages.js';

/** A broken contract (not a refusal): counted apart from errors. */
export class Violation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Violation';
  }
}

export interface DecoderUnderTest {
  readonly name: string;
  /** Decode input number `i`; throw to refuse. */
  run(input: Uint8Array, i: number): unknown;
}

const KNOWN = new Set<string>(ERROR_CODES);
const CLOSE_NAMES = new Map<number, string>(Object.entries(CLOSE).map(([k, v]) => [v, k]));

/** A decision in a comparable form. */
function decision(fn: () => unknown): { ok: true; value: unknown } | { ok: false; code: string } {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (e instanceof SecAggError && KNOWN.has(e.code)) return { ok: false, code: e.code };
    throw e; // untyped: counted by the caller
  }
}

function agree(what: string, a: ReturnType<typeof decision>, b: ReturnType<typeof decision>): void {
  if (a.ok !== b.ok) throw new Violation(`${what}: ${a.ok ? 'accepted' : a.code} vs ${b.ok ? 'accepted' : b.code}`);
  if (!a.ok && !b.ok && a.code !== b.code) throw new Violation(`${what}: ${a.code} vs ${b.code}`);
  if (a.ok && b.ok && !isDeepStrictEqual(a.value, b.value)) throw new Violation(`${what}: both accepted, values differ`);
}

function equalsFromBinary(value: unknown, schema: typeof ClientMessageSchema | typeof ServerMessageSchema, input: Uint8Array, what: string): void {
  let ref: unknown;
  try {
    ref = fromBinary(schema, input);
  } catch {
    throw new Violation(`${what} accepted what fromBinary refuses`);
  }
  if (!isDeepStrictEqual(value, ref)) throw new Violation(`${what} accepted a value other than fromBinary's`);
}

const SERVER_STAGES: readonly string[] = [...STAGES, 'done'];
/** What a client may receive in each of its stages (roughly: the fuzzer only needs a spread of sets). */
const CLIENT_EXPECTS: readonly (readonly ServerKind[])[] = [
  ['roundStart'],
  ['viewRequest', 'keys'],
  ['keys'],
  ['shares'],
  ['consistencyRequest'],
  ['unmaskRequest'],
  [],
];

/** A client session that has been welcomed and waits for a round (client/session.ts). */
function readySession(): SessionState {
  let s = createSession({ token: 't', active: false, wanted: 1 });
  for (const body of [
    { case: 'challenge' as const, value: { version: 1, mode: WireMode.SEMI_HONEST, nonce: new Uint8Array(32), serverId: 's' } },
    { case: 'welcome' as const, value: { clientId: 1, identity: 'fuzz', maxFrameBytes: 1 << 20 } },
  ])
    s = sessionStep(s, { type: 'control', control: create(ControlSchema, { body }) }).state;
  return s;
}

/**
 * A control frame read by a waiting client: decodeControl, then, for a round assignment, the
 * session's own checks (its DP encoding: client/session.ts). The contract: an assignment is either
 * accepted — the input provider is asked, with RoundInfo.dpEncoding present exactly when the frame
 * has one, in range (dpEncodingProblem) and of the round's dimension and bits — or refused with
 * ClientError ERR_DP_ENCODING (thrown here as the refusal), having sent nothing but a close.
 */
function sessionAssignment(ready: SessionState, b: Uint8Array): unknown {
  const control = decodeControl(b, { allowAssignment: true });
  if (control.body.case !== 'assignment') return control;
  const a = control.body.value;
  const step = sessionStep(ready, { type: 'control', control });
  const asked = step.actions.find((x) => x.type === 'get-input');
  if (asked !== undefined && asked.type === 'get-input') {
    const got = asked.round.dpEncoding;
    if ((got === undefined) !== (a.dpEncoding === undefined)) throw new Violation('the assignment’s DP encoding was dropped or invented');
    if (got !== undefined) {
      const why = dpEncodingProblem(got);
      if (why !== undefined) throw new Violation(`an assignment with a bad DP encoding was accepted: ${why}`);
      if (got.dimension !== a.dimension || got.bits !== a.bits) throw new Violation('an encoding of another dimension or bits was accepted');
    }
    return asked.round;
  }
  const err = step.state.error;
  if (!(err instanceof ClientError) || err.code !== 'ERR_DP_ENCODING') throw new Violation(`an assignment was neither accepted nor refused: ${err?.message}`);
  if (step.actions.some((x) => x.type !== 'close')) throw new Violation('a refused assignment sent something');
  if (a.dpEncoding === undefined) throw new Violation('an assignment without a DP encoding was refused for its encoding');
  throw err;
}

/** Every decoder of untrusted bytes, configured for the corpus's round. */
export function decoders(corpus: Corpus): DecoderUnderTest[] {
  const config = corpus.config;
  const cl = clientMessageLimits(config);
  const sl = serverMessageLimits(config);
  const caps = entryCaps(config);
  // The same checked decoders for a DP round with removable noise (its unmask responses carry the excess).
  const dpCl = clientMessageLimits(corpus.dpConfig);
  const dpSl = serverMessageLimits(corpus.dpConfig);
  const dpCaps = entryCaps(corpus.dpConfig);
  const ready = readySession();
  const LIMIT = 1 << 20;
  const clientStage = (i: number): CheckedDecodeOptions<ClientKind> => {
    const want = clientKindForStage(SERVER_STAGES[i % SERVER_STAGES.length]!);
    return { maxBytes: cl, allowed: (k) => k === 'abort' || k === want, ...caps };
  };
  const serverStage = (i: number): CheckedDecodeOptions<ServerKind> => {
    const want = CLIENT_EXPECTS[i % CLIENT_EXPECTS.length]!;
    return { maxBytes: sl, allowed: (k) => k === 'aborted' || want.includes(k), ...caps };
  };
  const allClient: CheckedDecodeOptions<ClientKind> = { maxBytes: () => LIMIT, allowed: () => true, ...caps };
  const allServer: CheckedDecodeOptions<ServerKind> = { maxBytes: () => LIMIT, allowed: () => true, ...caps };
  const fastClientKinds: ClientKind[] = ['shareKeys', 'unmaskResponse'];
  const fastServerKinds: ServerKind[] = ['keys', 'shares'];
  return [
    {
      name: 'peekClientBody',
      run: (b) => {
        const p = peekClientBody(b);
        if (p.bodyOffset + p.bodyLength > b.length || !clientKinds.includes(p.kind)) throw new Violation('peek: body outside the input');
        return p;
      },
    },
    {
      name: 'peekServerBody',
      run: (b) => {
        const p = peekServerBody(b);
        if (p.bodyOffset + p.bodyLength > b.length || !serverKinds.includes(p.kind)) throw new Violation('peek: body outside the input');
        return p;
      },
    },
    {
      name: 'decodeClientMessage',
      run: (b) => {
        const m = decodeClientMessage(b, LIMIT);
        equalsFromBinary(m, ClientMessageSchema, b, 'decodeClientMessage');
        return m;
      },
    },
    {
      name: 'decodeServerMessage',
      run: (b) => {
        const m = decodeServerMessage(b, LIMIT);
        equalsFromBinary(m, ServerMessageSchema, b, 'decodeServerMessage');
        return m;
      },
    },
    { name: 'decodeClientMessageChecked (per stage)', run: (b, i) => decodeClientMessageChecked(b, clientStage(i)) },
    { name: 'decodeServerMessageChecked (per stage)', run: (b, i) => decodeServerMessageChecked(b, serverStage(i)) },
    {
      name: 'decodeClientMessageChecked (per stage, DP round)',
      run: (b, i) => decodeClientMessageChecked(b, { ...clientStage(i), maxBytes: dpCl, ...dpCaps }),
    },
    {
      name: 'decodeServerMessageChecked (per stage, DP round)',
      run: (b, i) => decodeServerMessageChecked(b, { ...serverStage(i), maxBytes: dpSl, ...dpCaps }),
    },
    {
      // Any kind, this round's caps: the fast path against scanBody + protobuf-es.
      name: 'decodeClientMessageChecked fast = protobuf-es',
      run: (b) => {
        const fast = decision(() => decodeClientMessageChecked(b, allClient));
        agree(
          'client checked',
          fast,
          decision(() => decodeClientMessageChecked(b, { ...allClient, fastPath: false })),
        );
        if (!fast.ok) throw new SecAggError(fast.code as SecAggError['code'], 'refused');
        equalsFromBinary(fast.value, ClientMessageSchema, b, 'decodeClientMessageChecked');
        return fast.value;
      },
    },
    {
      name: 'decodeServerMessageChecked fast = protobuf-es',
      run: (b) => {
        const fast = decision(() => decodeServerMessageChecked(b, allServer));
        agree(
          'server checked',
          fast,
          decision(() => decodeServerMessageChecked(b, { ...allServer, fastPath: false })),
        );
        if (!fast.ok) throw new SecAggError(fast.code as SecAggError['code'], 'refused');
        equalsFromBinary(fast.value, ServerMessageSchema, b, 'decodeServerMessageChecked');
        return fast.value;
      },
    },
    {
      name: 'fastDecodeClientMessage',
      run: (b) => {
        const m = fastDecodeClientMessage(b, caps);
        if (m === undefined) throw new SecAggError('ERR_DECODE', 'declined'); // counted as a refusal
        equalsFromBinary(m, ClientMessageSchema, b, 'fastDecodeClientMessage');
        return m;
      },
    },
    {
      name: 'fastDecodeServerMessage',
      run: (b) => {
        const m = fastDecodeServerMessage(b, caps);
        if (m === undefined) throw new SecAggError('ERR_DECODE', 'declined');
        equalsFromBinary(m, ServerMessageSchema, b, 'fastDecodeServerMessage');
        return m;
      },
    },
    {
      // The whole input as a body of one of the fast kinds.
      name: 'fastDecodeClientBody / scanBody',
      run: (b, i) => {
        const kind = fastClientKinds[i % 2]!;
        const fast = decision(() => {
          const v = fastDecodeClientBody(kind, b, 0, b.length, caps);
          if (v === undefined) throw new SecAggError('ERR_DECODE', 'declined');
          return v.value;
        });
        // Where the fast decoder answers, the pre-scan must let the body through (or refuse it at the same entry).
        const scan = decision(() => scanBody(clientBodySchema(kind), b, 0, b.length, caps));
        if (fast.ok && !scan.ok) throw new Violation(`client body ${kind}: fast accepted, scanBody ${scan.code}`);
        if (!fast.ok && fast.code === 'ERR_SIZE' && (scan.ok || scan.code !== 'ERR_SIZE'))
          throw new Violation(`client body ${kind}: fast ERR_SIZE, scanBody ${scan.ok ? 'ok' : scan.code}`);
        if (!fast.ok) throw new SecAggError(fast.code as SecAggError['code'], 'refused');
        return fast.value;
      },
    },
    {
      name: 'fastDecodeServerBody / scanBody',
      run: (b, i) => {
        const kind = fastServerKinds[i % 2]!;
        const fast = decision(() => {
          const v = fastDecodeServerBody(kind, b, 0, b.length, caps);
          if (v === undefined) throw new SecAggError('ERR_DECODE', 'declined');
          return v.value;
        });
        const scan = decision(() => scanBody(serverBodySchema(kind), b, 0, b.length, caps));
        if (fast.ok && !scan.ok) throw new Violation(`server body ${kind}: fast accepted, scanBody ${scan.code}`);
        if (!fast.ok && fast.code === 'ERR_SIZE' && (scan.ok || scan.code !== 'ERR_SIZE'))
          throw new Violation(`server body ${kind}: fast ERR_SIZE, scanBody ${scan.ok ? 'ok' : scan.code}`);
        if (!fast.ok) throw new SecAggError(fast.code as SecAggError['code'], 'refused');
        return fast.value;
      },
    },
    {
      // scanBody on every body schema (the inputs' own kinds rarely match).
      name: 'scanBody (any kind)',
      run: (b, i) => {
        const all = [...clientKinds.map((k) => clientBodySchema(k)), ...serverKinds.map((k) => serverBodySchema(k))];
        return scanBody(all[i % all.length]!, b, 0, b.length, caps);
      },
    },
    { name: 'decodeControl', run: (b) => decodeControl(b) },
    { name: 'decodeControl (allowAssignment)', run: (b) => decodeControl(b, { allowAssignment: true }) },
    { name: 'session: control frame / assignment (DP encoding)', run: (b) => sessionAssignment(ready, b) },
  ];
}

export interface DecoderStats {
  readonly name: string;
  tried: number;
  accepted: number;
  readonly refused: Map<string, number>;
  untyped: number;
  violations: number;
  ms: number;
}

export interface FuzzFailure {
  readonly decoder: string;
  readonly index: number;
  readonly kind: 'untyped' | 'violation';
  readonly error: string;
  readonly inputHex: string;
}

export interface FuzzReport {
  readonly seed: number;
  readonly inputs: number;
  readonly stats: readonly DecoderStats[];
  readonly mutations: ReadonlyMap<string, number>;
  readonly failures: readonly FuzzFailure[];
  readonly totalMs: number;
  readonly bytesTotal: number;
  readonly largestInput: number;
}

/** Input `i` of a run with `seed`: 3% a corpus message as-is, 5% random bytes, the rest mutated. */
export function inputAt(corpus: Corpus, seed: number, i: number): { bytes: Uint8Array; steps: readonly (MutationName | 'corpus' | 'random-input')[] } {
  const rng = new Prng((Math.imul(seed >>> 0, 0x9e3779b1) ^ i) >>> 0);
  const r = rng.below(100);
  if (r < 3) return { bytes: rng.pick(corpus.all), steps: ['corpus'] };
  if (r < 8) return { bytes: rng.bytes(rng.below(rng.chance(0.9) ? 64 : 4096)), steps: ['random-input'] };
  return mutate(rng, rng.pick(corpus.all), corpus.all);
}

function classify(e: unknown): { key: string } | { untyped: string } | { violation: string } {
  if (e instanceof Violation) return { violation: e.message };
  if (e instanceof SecAggError) return KNOWN.has(e.code) ? { key: e.code } : { untyped: `SecAggError with unknown code ${String(e.code)}` };
  if (e instanceof TransportError) {
    const name = CLOSE_NAMES.get(e.closeCode);
    return name !== undefined ? { key: `close ${name}` } : { untyped: `TransportError with close code ${e.closeCode}` };
  }
  // The session's refusal of a round assignment (its DP encoding): typed, with its code.
  if (e instanceof ClientError) return { key: `client ${e.code}` };
  return { untyped: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
}

const hex = (b: Uint8Array): string => Buffer.from(b.subarray(0, 512)).toString('hex') + (b.length > 512 ? `… (${b.length} bytes)` : '');

/**
 * Runs `inputs` inputs through every decoder; never throws on a decoder's behalf. Stack traces are
 * off during the run unless `stackTraces`: capturing one costs ~9 µs here, more than most decodes,
 * and nine in ten calls refuse (`--only` replays one input with them).
 */
export function runFuzz(options: {
  inputs: number;
  seed?: number;
  maxFailures?: number;
  stackTraces?: boolean;
  onProgress?: (done: number) => void;
}): FuzzReport {
  const limit = Error.stackTraceLimit;
  if (!options.stackTraces) Error.stackTraceLimit = 0;
  try {
    return run(options);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

function run(options: { inputs: number; seed?: number; maxFailures?: number; onProgress?: (done: number) => void }): FuzzReport {
  const seed = options.seed ?? 1;
  const corpus = buildCorpus(1);
  const ds = decoders(corpus);
  const stats: DecoderStats[] = ds.map((d) => ({ name: d.name, tried: 0, accepted: 0, refused: new Map(), untyped: 0, violations: 0, ms: 0 }));
  const mutations = new Map<string, number>();
  const failures: FuzzFailure[] = [];
  const maxFailures = options.maxFailures ?? 20;
  const t0 = performance.now();
  let bytesTotal = 0;
  let largestInput = 0;
  for (let i = 0; i < options.inputs; i++) {
    const { bytes, steps } = inputAt(corpus, seed, i);
    bytesTotal += bytes.length;
    largestInput = Math.max(largestInput, bytes.length);
    for (const s of steps) mutations.set(s, (mutations.get(s) ?? 0) + 1);
    for (let j = 0; j < ds.length; j++) {
      const d = ds[j]!;
      const st = stats[j]!;
      st.tried++;
      const start = performance.now();
      try {
        d.run(bytes, i);
        st.accepted++;
      } catch (e) {
        const c = classify(e);
        if ('key' in c) st.refused.set(c.key, (st.refused.get(c.key) ?? 0) + 1);
        else {
          const kind = 'untyped' in c ? 'untyped' : 'violation';
          if (kind === 'untyped') st.untyped++;
          else st.violations++;
          if (failures.length < maxFailures)
            failures.push({ decoder: d.name, index: i, kind, error: 'untyped' in c ? c.untyped : c.violation, inputHex: hex(bytes) });
        }
      }
      st.ms += performance.now() - start;
    }
    if (options.onProgress && (i + 1) % 100_000 === 0) options.onProgress(i + 1);
  }
  return { seed, inputs: options.inputs, stats, mutations, failures, totalMs: performance.now() - t0, bytesTotal, largestInput };
}

/** The summary table: per decoder, inputs tried, accepted, refused by code, untyped errors, violations, time. */
export function formatReport(r: FuzzReport): string {
  const rows = r.stats.map((s) => [
    s.name,
    String(s.tried),
    String(s.accepted),
    [...s.refused]
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', '),
    String(s.untyped),
    String(s.violations),
    (s.ms / 1000).toFixed(1),
  ]);
  const head = ['decoder', 'tried', 'accepted', 'refused (by code)', 'untyped', 'violations', 's'];
  const width = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  const line = (cells: string[]) => cells.map((x, c) => (c === 0 || c === 3 ? x.padEnd(width[c]!) : x.padStart(width[c]!))).join(' | ');
  const out = [line(head), width.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)];
  const untyped = r.stats.reduce((a, s) => a + s.untyped, 0);
  const violations = r.stats.reduce((a, s) => a + s.violations, 0);
  const calls = r.stats.reduce((a, s) => a + s.tried, 0);
  out.push('');
  out.push(
    `inputs ${r.inputs} (seed ${r.seed}; ${(r.bytesTotal / 2 ** 20).toFixed(1)} MiB, largest ${r.largestInput} bytes), decoder calls ${calls}, ` +
      `untyped errors ${untyped} (any exception that is not a typed refusal), violations ${violations}, ${(r.totalMs / 1000).toFixed(1)} s`,
  );
  out.push(
    `mutations applied: ${[...r.mutations]
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
  for (const f of r.failures) out.push(`${f.kind} in ${f.decoder} at input ${f.index}: ${f.error}\n  ${f.inputHex}`);
  return out.join('\n');
}
