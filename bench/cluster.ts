/**
 * `npm run bench:cluster` (issue #13): one cluster round over loopback — a throwaway Redis
 * (test/redisHarness.ts), G gateways, W shard workers and one coordinator as `secagg <role>` child
 * processes, and N participate() clients over real WebSockets in worker threads of this process.
 * SecAgg+ (Harary graph, the recommended degree per shard), shards of at most 1,000 clients; a
 * fraction of the clients drop before the masked stage (they disconnect instead of sending their
 * masked input). Reports:
 *
 * - the sum, checked against the plaintext sum of the identities the coordinator's record names
 *   (and against what the clients themselves were told: included or not);
 * - the round's wall time (the coordinator's record, start → end) and the time of each stage as
 *   seen by polling the shards' stage keys, each also as a ratio to this machine's PRG keystream
 *   floor measured in the same run (DESIGN.md, "Performance model");
 * - peak RSS (VmHWM) and CPU time (utime + stime) of every process — Redis, each role, and this
 *   client-driver process — read from /proc, for the admission phase and for the round;
 * - bytes through Redis: the cluster's own counter (`<prefix>:stats:bytes`, what every role writes)
 *   and Redis's INFO total_net_input_bytes / total_net_output_bytes, against n·m·4 (what a design
 *   that relays every masked input through the engine would move);
 * - gateway admission: K connections opened as fast as a window of in-flight handshakes allows,
 *   each with a valid token, against one fresh gateway process (one core): welcomes per second, and
 *   per CPU-second of that gateway.
 *
 * Every client connects from its own loopback address (127.1.x.y): the gateways budget handshakes
 * per source address (maxPendingPerAddress, default 8), as real clients have distinct addresses.
 *
 *   node dist/bench/cluster.js [--clients N] [--dim M] [--gateways G] [--workers W] [--threads T]
 *                              [--dropout D] [--admit K] [--stage-timeout MS] [--out FILE]
 */
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { participate } from '../src/client/index.js';
import { signToken } from '../src/server/token.js';
import type { WebSocketConstructor } from '../src/transport/socket.js';
import { decodeControl, encodeControl } from '../src/transport/frames.js';
import { PROTOCOL_VERSION } from '../src/wire/codec.js';
import { unsafeSeededRng } from '../src/rng.js';
import { randomRingVector } from '../src/sim/random.js';
import { plainSum } from '../src/ring/vector.js';
import { connect, keys } from '../src/cluster/bus.js';
import { parsePlan, type RoundPlan } from '../src/cluster/plan.js';
import { startRedis } from '../test/redisHarness.js';
import { startRole, type RoleProcess } from '../test/clusterHelpers.js';
import { gbps, keystreamBytesPerMs, keystreamMs } from './timing.js';

const SECRET = 'bench-cluster-secret-0123456789abcdef';
const PREFIX = 'bench';
const BITS = 32;

/** Client i's input: reproducible, so the sum can be checked. */
function input(i: number, m: number): Uint32Array {
  return randomRingVector(m, BITS, unsafeSeededRng(1_000_003 + i));
}

/** Client i's loopback source address: one per client (127.1.0.0 + i). */
function sourceAddress(i: number): string {
  const a = 0x7f010000 + i;
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

/** A `ws` WebSocket bound to a given local address (participate() takes a one-argument constructor). */
function boundWebSocket(localAddress: string): WebSocketConstructor {
  return class extends WebSocket {
    constructor(url: string) {
      super(url, { localAddress });
    }
  } as unknown as WebSocketConstructor;
}

// ───────────────────────────── the client-driver worker threads ─────────────────────────────

interface ClientJob {
  readonly kind: 'clients';
  readonly urls: readonly string[];
  readonly ids: readonly number[];
  readonly m: number;
  readonly drops: readonly number[];
  /** Clients of this thread in their handshake at once (connect → welcome). */
  readonly window: number;
}

interface ClientOutcome {
  readonly included: number[];
  readonly completed: number;
  readonly dropped: number;
  readonly errors: string[];
}

async function clientThread(job: ClientJob): Promise<void> {
  const drops = new Set(job.drops);
  const included: number[] = [];
  const errors: string[] = [];
  let completed = 0;
  let dropped = 0;
  let welcomed = 0;
  // Handshakes in flight are capped per thread: the next client starts when one is welcomed.
  let inFlight = 0;
  const slots: (() => void)[] = [];
  const acquire = () => (inFlight < job.window ? (inFlight++, Promise.resolve()) : new Promise<void>((ok) => slots.push(ok)));
  const release = () => {
    const next = slots.shift();
    if (next) next();
    else inFlight--;
  };
  const progress = setInterval(() => parentPort!.postMessage({ type: 'progress', welcomed }), 1000);
  const runs = job.ids.map(async (i) => {
    await acquire();
    let released = false;
    const free = () => {
      if (!released) {
        released = true;
        release();
      }
    };
    const drop = drops.has(i);
    try {
      const [report] = await participate({
        url: job.urls[i % job.urls.length]!,
        token: signToken({ clientId: `c${i}`, expiresAt: Date.now() + 3_600_000 }, SECRET),
        input: input(i, job.m),
        WebSocket: boundWebSocket(sourceAddress(i)),
        connectTimeoutMs: 60_000,
        reconnect: drop ? { maxAttempts: 0 } : { maxAttempts: 30, maxDelayMs: 2000 },
        onEvent: (e) => {
          if (e.type === 'welcome') {
            welcomed++;
            free();
          }
        },
        ...(drop ? { unsafeBeforeSend: (stage: string) => (stage === 'masked' ? ('disconnect' as const) : ('send' as const)) } : {}),
      });
      if (report?.completed) completed++;
      if (report?.included) included.push(i);
    } catch (e) {
      if (drop) dropped++;
      else if (errors.length < 20) errors.push(`c${i}: ${e instanceof Error ? e.message : String(e)}`);
      else errors.push('');
    } finally {
      free();
    }
  });
  await Promise.all(runs);
  clearInterval(progress);
  parentPort!.postMessage({ type: 'done', outcome: { included, completed, dropped, errors } satisfies ClientOutcome });
}

// ───────────────────────────── the admission load generator ─────────────────────────────

interface AdmitJob {
  readonly kind: 'admit';
  readonly url: string;
  readonly ids: readonly number[];
  readonly window: number;
}

/** One bare handshake: connect, answer the challenge with a hello, wait for the welcome. Resolves with the socket (left open). */
function handshake(url: string, i: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { localAddress: sourceAddress(i) });
    ws.binaryType = 'arraybuffer';
    let n = 0;
    ws.on('message', (data: ArrayBuffer) => {
      const ctl = decodeControl(new Uint8Array(data));
      if (n++ === 0) {
        if (ctl.body.case !== 'challenge') return reject(new Error(`expected a challenge, got ${ctl.body.case}`));
        ws.send(
          encodeControl({
            case: 'hello',
            value: { version: PROTOCOL_VERSION, token: signToken({ clientId: `a${i}`, expiresAt: Date.now() + 3_600_000 }, SECRET) },
          }),
        );
      } else if (ctl.body.case === 'welcome') resolve(ws);
      else reject(new Error(`expected a welcome, got ${ctl.body.case}`));
    });
    ws.once('error', reject);
    ws.once('close', (code) => reject(new Error(`closed before the welcome: ${code}`)));
  });
}

async function admitThread(job: AdmitJob): Promise<void> {
  const open: WebSocket[] = [];
  let failed = 0;
  let next = 0;
  const errors: string[] = [];
  const t0 = performance.now();
  const lane = async () => {
    while (next < job.ids.length) {
      const i = job.ids[next++]!;
      try {
        open.push(await handshake(job.url, i));
      } catch (e) {
        failed++;
        if (errors.length < 5) errors.push(String(e));
      }
    }
  };
  await Promise.all(Array.from({ length: job.window }, lane));
  const ms = performance.now() - t0;
  parentPort!.postMessage({ type: 'admitted', welcomed: open.length, failed, ms, errors });
  // Hold the connections until told to close (closing them is not part of what is measured).
  await new Promise<void>((ok) => parentPort!.once('message', () => ok()));
  for (const ws of open) ws.terminate();
  parentPort!.postMessage({ type: 'closed' });
}

// ───────────────────────────── /proc readings ─────────────────────────────

interface ProcSample {
  /** utime + stime, seconds. */
  readonly cpuS: number;
  /** VmHWM: peak resident set, bytes. */
  readonly peakRss: number;
  readonly rss: number;
}

const CLK_TCK = 100; // getconf CLK_TCK on Linux (USER_HZ is 100 on every architecture Node supports)

function proc(pid: number): ProcSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces, inside parentheses): state is field 3.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpuS = (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14, 15: utime, stime
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { cpuS, peakRss: kb('VmHWM'), rss: kb('VmRSS') };
  } catch {
    return undefined;
  }
}

// ───────────────────────────── the benchmark ─────────────────────────────

interface Named {
  readonly name: string;
  readonly pid: number;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

function table(headers: string[], rows: string[][], right: boolean[]): string {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (v: string[]) => `| ${v.map((x, i) => (right[i] ? x.padStart(w[i]!) : x.padEnd(w[i]!))).join(' | ')} |`;
  return [line(headers), `|${w.map((x) => '-'.repeat(x + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      clients: { type: 'string' },
      dim: { type: 'string' },
      gateways: { type: 'string' },
      workers: { type: 'string' },
      threads: { type: 'string' },
      dropout: { type: 'string' },
      admit: { type: 'string' },
      'max-shard-size': { type: 'string' },
      'min-shard-size': { type: 'string' },
      'stage-timeout': { type: 'string' },
      window: { type: 'string' },
      'log-level': { type: 'string' },
      keepalive: { type: 'string' },
      'worker-lease': { type: 'string' },
      logs: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (a.help) {
    process.stdout.write(
      'Usage: node dist/bench/cluster.js [--clients N (10000)] [--dim M (1000)] [--gateways G (2)] [--workers W (4)] [--threads T (cores)]\n' +
        '         [--dropout D (0.05)] [--admit K (2000; 0: skip)] [--max-shard-size S (1000)] [--min-shard-size S (min(100, n))]\n' +
        '         [--stage-timeout MS (600000)] [--window W (handshakes in flight per thread, 64)]\n' +
        "         [--keepalive MS (gateways' ping interval, 300000)] [--log-level L (roles, warn)] [--logs DIR (each role's stderr)] [--out FILE (test-output/bench/cluster.json)]\n",
    );
    return;
  }
  const int = (v: string | undefined, d: number) => (v === undefined ? d : Number.parseInt(v, 10));
  const n = int(a.clients, 10_000);
  const m = int(a.dim, 1000);
  const G = int(a.gateways, 2);
  const W = int(a.workers, 4);
  const threads = int(a.threads, availableParallelism());
  const dropout = a.dropout === undefined ? 0.05 : Number(a.dropout);
  const K = int(a.admit, 2000);
  const maxShard = int(a['max-shard-size'], 1000);
  const minShard = int(a['min-shard-size'], Math.min(100, n));
  const stageTimeout = int(a['stage-timeout'], 600_000);
  const window = int(a.window, 64);
  const OUT = a.out ?? 'test-output/bench/cluster.json';
  const roleLog = a['log-level'] ?? 'warn';
  // The gateways' ping interval. This process plays thousands of clients on a couple of threads: a
  // client's pong can wait behind the share computations of every other client of its thread
  // (seconds to minutes on a loaded 2-core machine), which a real device, running one client,
  // never does. At the default 15 s the gateways drop those clients as dead.
  const keepalive = int(a.keepalive, 300_000);
  // The shard workers' lease (secagg shard-worker --lease; its default 3 s when not given). On a
  // starved machine a worker that misses renewals loses its shards to another worker, which resumes
  // them from their checkpoints: counted below as failovers.
  const workerLease = a['worker-lease'];
  const t0 = performance.now();
  const log = (s: string): void => void process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${s}\n`);

  // The floor before anything of this run is running, and again at the end: the best of the two
  // (the machine is shared; a floor is the fastest it goes).
  const rateStart = keystreamBytesPerMs();
  log(`PRG floor (AES-128-CTR keystream, one thread): ${gbps(rateStart)}`);

  const redis = await startRedis();
  const r = connect(redis.url, 'bench');
  const k = keys(PREFIX);
  const redisPid = Number(/process_id:(\d+)/.exec(await r.info('server'))?.[1]);
  const roles: RoleProcess[] = [];
  const threadsRunning: Worker[] = [];
  const stopAll = async () => {
    for (const w of threadsRunning) await w.terminate();
    await Promise.all(roles.map((p) => p.kill()));
    if (a.logs) {
      mkdirSync(a.logs, { recursive: true });
      for (const p of roles) writeFileSync(`${a.logs}/${String(p.info['id'] ?? p.child.pid)}.log`, p.stderr());
    }
    r.disconnect();
    await redis.stop();
  };
  try {
    const common = ['--redis', redis.url, '--prefix', PREFIX];
    const gateways = await Promise.all(
      Array.from({ length: G }, (_, i) =>
        startRole([
          'gateway',
          ...common,
          '--id',
          `gw${i}`,
          '--port',
          '0',
          '--secret',
          SECRET,
          '--dim',
          String(m),
          '--max-shard-size',
          String(maxShard),
          '--log-level',
          roleLog,
          '--keepalive',
          String(keepalive),
        ]),
      ),
    );
    const workers = await Promise.all(
      Array.from({ length: W }, (_, i) =>
        startRole(['shard-worker', ...common, '--id', `w${i}`, '--log-level', roleLog, ...(workerLease ? ['--lease', workerLease] : [])]),
      ),
    );
    const coordinator = await startRole([
      'coordinator',
      ...common,
      '--id',
      'coord',
      '--dim',
      String(m),
      '--graph',
      'harary',
      '--min-shard-size',
      String(minShard),
      '--max-shard-size',
      String(maxShard),
      '--dropout-rate',
      String(dropout),
      '--min-clients',
      String(n),
      '--max-clients',
      String(n),
      '--start-delay',
      '0',
      '--stage-timeout',
      String(stageTimeout),
      '--rounds',
      '1',
      '--admin',
      '127.0.0.1:0',
    ]);
    roles.push(...gateways, ...workers, coordinator);
    const adminUrl = String(coordinator.info['adminUrl']);
    const procs: Named[] = [
      { name: 'redis', pid: redisPid },
      ...gateways.map((g, i) => ({ name: `gateway ${i}`, pid: g.child.pid! })),
      ...workers.map((w, i) => ({ name: `worker ${i}`, pid: w.child.pid! })),
      { name: 'coordinator', pid: coordinator.child.pid! },
      { name: `clients (${threads} threads)`, pid: process.pid },
    ];
    const snap = () => new Map(procs.map((p) => [p.name, proc(p.pid)]));
    const info = async () => {
      const s = await r.info('stats');
      const f = (name: string) => Number(new RegExp(`${name}:(\\d+)`).exec(s)?.[1] ?? 0);
      return { counter: Number((await r.get(k.bytes)) ?? 0), netIn: f('total_net_input_bytes'), netOut: f('total_net_output_bytes') };
    };
    const urls = gateways.map((g) => String(g.info['url']));
    log(`cluster up: redis ${redis.url} (pid ${redisPid}), ${G} gateways, ${W} workers, coordinator ${adminUrl}`);

    // Which clients drop: every ⌈1/dropout⌉-th, spread over the gateways and threads.
    const drops = dropout > 0 ? Array.from({ length: n }, (_, i) => i).filter((i) => Math.floor((i + 1) * dropout) > Math.floor(i * dropout)) : [];
    const atStart = { procs: snap(), redis: await info(), t: performance.now() };
    log(`${n} clients (${drops.length} drop before masking) in ${threads} threads, m = ${m}`);
    const outcomes = Promise.all(
      Array.from({ length: threads }, (_, w) => {
        const ids = Array.from({ length: n }, (_, i) => i).filter((i) => i % threads === w);
        const job: ClientJob = { kind: 'clients', urls, ids, m, drops: drops.filter((i) => i % threads === w), window };
        const worker = new Worker(fileURLToPath(import.meta.url), { workerData: job });
        threadsRunning.push(worker);
        return new Promise<ClientOutcome>((ok, fail) => {
          worker.on('message', (msg: { type: string; welcomed?: number; outcome?: ClientOutcome }) => {
            if (msg.type === 'progress') welcomedBy[w] = msg.welcomed!;
            if (msg.type === 'done') ok(msg.outcome!);
          });
          worker.once('error', fail);
        });
      }),
    );
    const welcomedBy = new Array<number>(threads).fill(0);

    // Watch the round: its start, its plan, each stage as the shards' stage keys show it, its end.
    const order = ['queued', 'advertise', 'view', 'share', 'masked', 'consistency', 'unmask', 'done', 'aborted'];
    let plan: RoundPlan | undefined;
    let atRound: { procs: ReturnType<typeof snap>; redis: Awaited<ReturnType<typeof info>>; t: number } | undefined;
    const stages: { stage: string; t: number; counter: number; netIn: number; netOut: number }[] = [];
    const peakRss = new Map<string, number>();
    const shardStages: string[] = [];
    const checkpoints: { shard: number; stage: string; bytes: number }[] = [];
    let lastLog = 0;
    let record: RoundRecordJson | undefined;
    const deadline = Date.now() + 6 * stageTimeout + 600_000;
    while (!record) {
      if (Date.now() > deadline) throw new Error('the round did not end in time');
      await new Promise((ok) => setTimeout(ok, 200));
      for (const [name, s] of snap()) if (s) peakRss.set(name, Math.max(peakRss.get(name) ?? 0, s.peakRss));
      if (!plan) {
        const rid = await r.get(k.current);
        if (rid) {
          plan = parsePlan(await r.get(k.plan(rid)));
          atRound = { procs: snap(), redis: await info(), t: performance.now() };
          log(
            `round started: ${plan.shards.length} shards (${plan.shards.map((s) => `${s.members.length}: k=${s.degree} t=${s.threshold}`).join(', ')}), admission took ${secs(atRound.t - atStart.t)}`,
          );
        } else if (performance.now() - lastLog > 5000) {
          lastLog = performance.now();
          log(`welcomed ${welcomedBy.reduce((x, y) => x + y, 0)} / ${n}`);
        }
        continue;
      }
      const raw = await r.mget(...plan.shards.map((s) => k.shardStage(plan!.rid, s.index)));
      const st = raw.map((x) => (x ? (JSON.parse(x) as { stage: string }).stage : 'queued'));
      const least = st.reduce((x, y) => (order.indexOf(y) < order.indexOf(x) ? y : x), 'done');
      // A worker writes its shard's checkpoint at each stage change: its size then, once per stage.
      for (const [si, stage] of st.entries()) {
        if (shardStages[si] === stage) continue;
        shardStages[si] = stage;
        if (stage === 'done' || stage === 'aborted' || stage === 'queued') continue;
        const len = Number(await r.strlen(k.shardCkpt(plan.rid, si)));
        checkpoints.push({ shard: si, stage, bytes: len });
      }
      if (stages.at(-1)?.stage !== least) {
        const i = await info();
        stages.push({ stage: least, t: performance.now(), ...i });
        log(`round stage: ${least} (every shard there or later)`);
      }
      const res = await fetch(`${adminUrl}api/rounds/${plan.number}`);
      if (res.ok) {
        const rec = (await res.json()) as RoundRecordJson;
        if (rec.outcome !== 'running') record = rec;
      }
    }
    const atEnd = { procs: snap(), redis: await info(), t: performance.now() };
    for (const [name, s] of atEnd.procs) if (s) peakRss.set(name, Math.max(peakRss.get(name) ?? 0, s.peakRss));
    log(`round ${record.outcome} in ${secs(record.endedAt - record.startedAt)}${record.reason ? `: ${record.reason}` : ''}`);
    const clients = await outcomes;
    const wallAll = performance.now() - atStart.t;
    const rateEnd = keystreamBytesPerMs();
    const rate = Math.max(rateStart, rateEnd);

    // The check: the record's sum against the plaintext sum of the identities it names.
    const identities: number[] = [];
    if (record.included && plan) {
      const starts: number[] = [];
      let base = 0;
      for (const s of plan.shards) {
        starts.push(base);
        base += s.members.length;
      }
      for (const ord of record.included) {
        let si = starts.length - 1;
        while (starts[si]! >= ord) si--;
        const mem = plan.shards[si]!.members.find((x) => x.id === ord - starts[si]!);
        identities.push(Number((mem?.identity ?? 'c-1').slice(1)));
      }
    }
    const expected = plainSum(
      identities.map((i) => input(i, m)),
      BITS,
      m,
    );
    const sumOk = record.outcome === 'completed' && record.sum !== null && record.sum.length === m && record.sum.every((v, j) => v === expected[j]);
    const told = clients.flatMap((c) => c.included).sort((x, y) => x - y);
    const named = [...identities].sort((x, y) => x - y);
    const agree = told.length === named.length && told.every((v, j) => v === named[j]);
    const dropSet = new Set(drops);
    const droppedNamed = named.filter((i) => dropSet.has(i)).length;
    const errors = clients.flatMap((c) => c.errors);

    // The PRG work of the round (DESIGN.md, "Performance model"): every masker expands k + 1 masks
    // (its self mask, one per neighbour), the worker one self mask per survivor and, per dropped
    // client, one pairwise mask per surviving neighbour.
    let prgWords = 0;
    for (const [si, s] of (plan?.shards ?? []).entries()) {
      const inc = (record.shards?.[si]?.included ?? 0) as number;
      const dropped = s.members.length - inc;
      prgWords += inc * (s.degree + 1) * m + inc * m + dropped * s.degree * m;
    }
    const floorMs = keystreamMs(prgWords, rate);
    const roundMs = record.endedAt - record.startedAt;
    const cores = availableParallelism();
    const relay = n * m * 4;
    const delta = (x: Awaited<ReturnType<typeof info>>, y: Awaited<ReturnType<typeof info>>) => ({
      counter: y.counter - x.counter,
      netIn: y.netIn - x.netIn,
      netOut: y.netOut - x.netOut,
    });
    const admissionBytes = delta(atStart.redis, atRound!.redis);
    const roundBytes = delta(atRound!.redis, atEnd.redis);

    const out: string[] = [];
    const k0 = plan?.shards[0];
    out.push(
      `secagg cluster bench — node ${process.version}, ${cores} cores (shared: timings are noisy), loopback, ${G} gateways, ${W} shard workers, 1 coordinator, Redis ${(/redis_version:(\S+)/.exec(await r.info('server')) ?? [])[1] ?? '?'}`,
      `n = ${n} clients, m = ${m}, bits = ${BITS}, SecAgg+ (Harary, recommended degree), ${plan?.shards.length ?? 0} shards ` +
        `(sizes ${[...new Set(plan?.shards.map((s) => s.members.length))].join('/')}, k = ${[...new Set(plan?.shards.map((s) => s.degree))].join('/')}, t = ${[...new Set(plan?.shards.map((s) => s.threshold))].join('/')}), ` +
        `${drops.length} clients (${(100 * dropout).toFixed(1)}%) drop before the masked stage`,
      `PRG floor: ${gbps(rate)} (AES-128-CTR keystream, one thread: the better of ${gbps(rateStart)} before the cluster started and ${gbps(rateEnd)} after the round); ratio = time / (floor time of the round's ${(prgWords / 1e6).toFixed(0)}M mask words ÷ ${cores} cores)`,
      '',
    );
    const ratio = (ms: number) => `${(ms / (floorMs / cores)).toFixed(0)}×`;
    out.push(
      table(
        ['measure', 'value', 'floor ratio', 'note'],
        [
          [
            'sum',
            sumOk ? 'verified' : 'WRONG',
            '',
            `${record.outcome}; ${identities.length} in the sum (${n - drops.length} expected), ${droppedNamed} droppers named; clients' own reports ${agree ? 'agree' : 'DISAGREE'} (${told.length} told included)`,
          ],
          [
            'shard failovers',
            String((record.shards ?? []).reduce((x, s) => x + Math.max(0, (s.owners ?? 1) - 1), 0)),
            '',
            `owners per shard ${(record.shards ?? []).map((s) => s.owners ?? 1).join('/')} (lease ${workerLease ?? 'default 10000'} ms): a lapsed lease hands the shard to another worker, which resumes it from its checkpoint`,
          ],
          [
            'admission (first connect → round start)',
            secs(atRound!.t - atStart.t),
            '',
            `${n} clients over ${G} gateways, ≤ ${window} handshakes in flight per thread`,
          ],
          ['round wall (record start → end)', secs(roundMs), ratio(roundMs), `floor ${floorMs.toFixed(0)} ms on one thread`],
          ...stages.map((s, i) => {
            const end = stages[i + 1]?.t ?? atEnd.t;
            return [
              `  stage ${s.stage}`,
              secs(end - s.t),
              ratio(end - s.t),
              `(polled every 200 ms) counter +${mb((stages[i + 1] ?? atEnd.redis).counter - s.counter)}`,
            ];
          }),
          [
            'all clients done (first connect → last report)',
            secs(wallAll),
            '',
            errors.length ? `${errors.length} client errors: ${errors.filter(Boolean).slice(0, 3).join('; ')}` : 'no client errors',
          ],
          [
            'bytes written to Redis, round (stats counter)',
            mb(roundBytes.counter),
            '',
            `${(roundBytes.counter / relay).toFixed(2)}× n·m·4 = ${mb(relay)}; admission phase +${mb(admissionBytes.counter)}`,
          ],
          [
            'Redis net in, round (INFO)',
            mb(roundBytes.netIn),
            '',
            `${(roundBytes.netIn / relay).toFixed(2)}× n·m·4; admission +${mb(admissionBytes.netIn)} (heartbeats, waiting lists, polling)`,
          ],
          [
            'Redis net out, round (INFO)',
            mb(roundBytes.netOut),
            '',
            `${(roundBytes.netOut / relay).toFixed(2)}× n·m·4; admission +${mb(admissionBytes.netOut)}`,
          ],
          [
            '  of which checkpoints (≈)',
            mb(checkpoints.reduce((x, c) => x + c.bytes, 0)),
            '',
            `the size of each shard's checkpoint at each stage change seen (${checkpoints.length}); per shard and stage: ${[...new Set(checkpoints.map((c) => c.stage))].map((stg) => `${stg} ${mb(checkpoints.filter((c) => c.stage === stg).reduce((x, c) => x + c.bytes, 0) / Math.max(1, checkpoints.filter((c) => c.stage === stg).length))}`).join(', ')}`,
          ],
          [
            'masked inputs through Redis (partial sums)',
            mb((plan ? plan.shards.reduce((x, s) => x + new Set(s.members.map((mm) => mm.gw)).size, 0) : 0) * m * 4),
            '',
            'one m-word vector per (shard, gateway with members in it), vs n·m·4 relayed',
          ],
        ],
        [false, true, true, false],
      ),
      '',
    );
    const procRows = procs.map((p) => {
      const s0 = atStart.procs.get(p.name);
      const s1 = atRound!.procs.get(p.name);
      const s2 = atEnd.procs.get(p.name);
      const cpu = (x: ProcSample | undefined, y: ProcSample | undefined) => (x && y ? `${(y.cpuS - x.cpuS).toFixed(1)} s` : '');
      return [
        p.name,
        String(p.pid),
        mib(peakRss.get(p.name) ?? 0),
        cpu(s0, s1),
        cpu(s1, s2),
        s2 ? `${((100 * ((s2.cpuS - (s1?.cpuS ?? 0)) * 1000)) / roundMs).toFixed(0)}%` : '',
      ];
    });
    out.push(table(['process', 'pid', 'peak RSS', 'CPU admission', 'CPU round', 'round CPU/wall'], procRows, [false, true, true, true, true, true]), '');

    // Gateway admission: a fresh gateway (its own prefix, so no coordinator draws its clients), K handshakes.
    let admission: Record<string, unknown> | undefined;
    if (K > 0) {
      const gw = await startRole([
        'gateway',
        '--redis',
        redis.url,
        '--prefix',
        `${PREFIX}-admit`,
        '--id',
        'gw-admit',
        '--port',
        '0',
        '--secret',
        SECRET,
        '--dim',
        String(m),
        '--log-level',
        'warn',
      ]);
      roles.push(gw);
      const pid = gw.child.pid!;
      const gThreads = 1;
      const aWindow = int(a.window, 128);
      const before = proc(pid)!;
      const gen0 = proc(process.pid)!;
      const tA = performance.now();
      const results = await Promise.all(
        Array.from({ length: gThreads }, (_, w) => {
          const ids = Array.from({ length: K }, (_, i) => n + i).filter((_, i) => i % gThreads === w);
          const worker = new Worker(fileURLToPath(import.meta.url), {
            workerData: { kind: 'admit', url: String(gw.info['url']), ids, window: aWindow } satisfies AdmitJob,
          });
          threadsRunning.push(worker);
          return new Promise<{ welcomed: number; failed: number; ms: number; errors: string[]; worker: Worker }>((ok, fail) => {
            worker.once('message', (msg: { welcomed: number; failed: number; ms: number; errors: string[] }) => ok({ ...msg, worker }));
            worker.once('error', fail);
          });
        }),
      );
      const wall = performance.now() - tA;
      const after = proc(pid)!;
      const gen1 = proc(process.pid)!;
      const welcomed = results.reduce((x, y) => x + y.welcomed, 0);
      const failed = results.reduce((x, y) => x + y.failed, 0);
      const gwCpu = after.cpuS - before.cpuS;
      admission = {
        K,
        window: aWindow,
        welcomed,
        failed,
        wallMs: wall,
        gatewayCpuS: gwCpu,
        generatorCpuS: gen1.cpuS - gen0.cpuS,
        gatewayPeakRss: after.peakRss,
      };
      out.push(
        table(
          ['gateway admission (one gateway process)', 'value', 'note'],
          [
            [
              'welcomes per second (wall)',
              (welcomed / (wall / 1000)).toFixed(0),
              `${welcomed} welcomed, ${failed} failed, in ${secs(wall)}; ${aWindow} handshakes in flight`,
            ],
            [
              'welcomes per gateway CPU-second',
              (welcomed / gwCpu).toFixed(0),
              `gateway CPU ${gwCpu.toFixed(2)} s (${((100 * gwCpu * 1000) / wall).toFixed(0)}% of one core); load generator (this process) ${(gen1.cpuS - gen0.cpuS).toFixed(2)} s`,
            ],
            ['gateway peak RSS', mib(after.peakRss), `holding ${welcomed} welcomed connections`],
          ],
          [false, true, false],
        ),
        '',
      );
      for (const x of results) x.worker.postMessage('close');
      if (results.some((x) => x.errors.length)) log(`admission errors: ${results.flatMap((x) => x.errors).join('; ')}`);
    }
    process.stdout.write(out.join('\n') + '\n');

    const doc = {
      node: process.version,
      cores,
      n,
      m,
      bits: BITS,
      gateways: G,
      workers: W,
      threads,
      dropout,
      drops: drops.length,
      keystreamGBps: rate / 1e6,
      keystreamGBpsStartEnd: [rateStart / 1e6, rateEnd / 1e6],
      shards: plan?.shards.map((s, i) => ({
        clients: s.members.length,
        degree: s.degree,
        threshold: s.threshold,
        included: record!.shards?.[i]?.included ?? null,
      })),
      sum: { verified: sumOk, included: identities.length, droppersNamed: droppedNamed, clientsAgree: agree, clientErrors: errors.length },
      admissionMs: atRound!.t - atStart.t,
      roundMs,
      stages: stages.map((s, i) => ({ stage: s.stage, ms: (stages[i + 1]?.t ?? atEnd.t) - s.t })),
      prgWords,
      floorMs,
      roundFloorRatio: roundMs / (floorMs / cores),
      bytes: { relayEverything: relay, round: roundBytes, admission: admissionBytes, checkpoints },
      processes: procs.map((p) => ({
        name: p.name,
        pid: p.pid,
        peakRss: peakRss.get(p.name) ?? 0,
        cpuAdmissionS: (atRound!.procs.get(p.name)?.cpuS ?? 0) - (atStart.procs.get(p.name)?.cpuS ?? 0),
        cpuRoundS: (atEnd.procs.get(p.name)?.cpuS ?? 0) - (atRound!.procs.get(p.name)?.cpuS ?? 0),
      })),
      gatewayAdmission: admission ?? null,
      k0: k0?.degree,
    };
    mkdirSync(dirname(OUT), { recursive: true });
    writeFileSync(OUT, JSON.stringify(doc, null, 1) + '\n');
    log(`wrote ${OUT}`);
    process.exitCode = sumOk && agree ? 0 : 1;
  } catch (e) {
    for (const p of roles)
      process.stderr.write(`--- ${String(p.info['role'] ?? '?')} ${String(p.info['id'] ?? '')} stderr (tail):\n${p.stderr().slice(-3000)}\n`);
    throw e;
  } finally {
    await stopAll();
  }
}

interface RoundRecordJson {
  readonly outcome: string;
  readonly reason: string | null;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly included: number[] | null;
  readonly sum: number[] | null;
  readonly shards?: { included?: number; owners?: number }[];
}

if (isMainThread) await main();
else {
  const job = workerData as ClientJob | AdmitJob;
  if (job.kind === 'clients') await clientThread(job);
  else await admitThread(job);
}
