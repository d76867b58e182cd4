/**
 * `secagg cluster`: the whole distributed deployment on one machine, to try it out. A Redis of its
 * own (Debian's redis-server, append-only file fsynced at every write) in a temporary directory,
 * the round history in SQLite there (or a PostgreSQL of its own with --postgres), then gateways, shard workers and coordinators as `secagg`
 * child processes exactly as they run on several machines, and demo clients in worker threads
 * spread over the gateways. Each round's sum is checked against the plaintext sum of the clients
 * in it; every process and directory goes away on exit or Ctrl-C.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { connect, keys } from '../cluster/bus.js';
import { tempDir } from '../cluster/daemon.js';
import { type LocalPostgres, type LocalRedis, postgresBinaries, type RoleProcess, startPostgres, startRedis, startRoleProcess } from '../cluster/local.js';
import { parsePlan, type RoundPlan } from '../cluster/plan.js';
import { plainSum } from '../ring/vector.js';
import type { RoundRecord } from '../server/store.js';
import { UsageError, intFlag as num, parseFlags } from './args.js';
import { demoInput, startDemoClients } from './demo.js';
import { openStore } from './stores.js';

export const CLUSTER_HELP = `Usage: secagg cluster [options]

The distributed deployment on this machine, to try it out: starts a Redis of its own
(redis-server from Debian's redis-server package, appendonly yes, appendfsync always) in a
temporary directory, the round history in SQLite there, then N gateways, M shard workers and a
coordinator as 'secagg gateway | shard-worker | coordinator' processes (as on several machines,
see docs/cluster.md), and C demo clients spread over the gateways that drop out at random. Prints
each round's result checked against the plaintext sum, and the coordinator's dashboard URL.
Ctrl-C (or --rounds) stops every process and removes the temporary directories.

Options:
  --gateways N          gateways (default 2)
  --workers M           shard workers (default 2)
  --standby             a second coordinator, standing by (takes over when the first stops)
  --clients C           demo clients (default 40)
  --rounds R            exit after R rounds (default: run until Ctrl-C)
  --dim M               elements per vector (default 1000)
  --dropout P           probability that a client drops out during a round (default 0.1)
  --min-shard-size N    the privacy floor: no shard has fewer clients (default 10)
  --max-shard-size N    the largest shard (default 2 × --min-shard-size)
  --graph G             complete | harary (SecAgg+) (default complete)
  --stage-timeout MS    deadline per protocol stage (default 5000)
  --postgres            the history in a PostgreSQL of its own (initdb/postgres from
                        /usr/lib/postgresql/*/bin) when installed; else SQLite (it says which)
  --admin-port P        the coordinator's dashboard on 127.0.0.1:P (default 8081; a free port
                        if that one is taken)
  --log-dir DIR         keep every process's JSON log lines in DIR/<name>.log (default: in
                        memory; a process that stops early has its last lines printed)
  -h, --help            this text

Exit status: 0 when at least one round completed and every completed round's sum was right
(aborted rounds are reported, not failures: a shard may lose too many clients), 1 otherwise.`;

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));
const PREFIX = 'secagg';
const BITS = 32;

/** Whether 127.0.0.1:port can be listened on right now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const lastLines = (text: string, n: number) => text.trimEnd().split('\n').slice(-n).join('\n');

interface Named {
  readonly name: string;
  readonly proc: RoleProcess;
}

export async function runCluster(argv: string[]): Promise<number> {
  const a = parseFlags(
    argv,
    {
      gateways: { type: 'string' },
      workers: { type: 'string' },
      standby: { type: 'boolean' },
      clients: { type: 'string' },
      rounds: { type: 'string' },
      dim: { type: 'string' },
      dropout: { type: 'string' },
      'min-shard-size': { type: 'string' },
      'max-shard-size': { type: 'string' },
      graph: { type: 'string' },
      'stage-timeout': { type: 'string' },
      postgres: { type: 'boolean' },
      'admin-port': { type: 'string' },
      'log-dir': { type: 'string' },
    },
    CLUSTER_HELP,
  );
  if (!a) return 0;
  const nGateways = num(a.gateways, 'gateways', 2, 1, 64);
  const nWorkers = num(a.workers, 'workers', 2, 1, 64);
  const n = num(a.clients, 'clients', 40, 3, 10_000);
  const rounds = a.rounds === undefined ? Infinity : num(a.rounds, 'rounds', 0, 1, 1e9);
  const m = num(a.dim, 'dim', 1000, 1, 1 << 24);
  const dropout = a.dropout === undefined ? 0.1 : Number(a.dropout);
  if (!(dropout >= 0 && dropout < 1)) throw new UsageError('--dropout must be in [0, 1)');
  const minShard = num(a['min-shard-size'], 'min-shard-size', 10, 3, 65535);
  const maxShard = num(a['max-shard-size'], 'max-shard-size', 2 * minShard, minShard, 65535);
  if (n < minShard) throw new UsageError(`--clients (${n}) must be at least --min-shard-size (${minShard}): no shard could be formed`);
  const graph = a.graph ?? 'complete';
  if (graph !== 'complete' && graph !== 'harary') throw new UsageError(`--graph must be complete or harary, got '${graph}'`);
  const stageTimeout = num(a['stage-timeout'], 'stage-timeout', 5000, 100, 3_600_000);
  const adminPort = num(a['admin-port'], 'admin-port', 8081, 0, 65535);
  const logDir = a['log-dir'];
  if (logDir) mkdirSync(logDir, { recursive: true });

  // Ctrl-C / SIGTERM at any point: stop what was started, in order (clients, roles, then Redis).
  let interrupt: () => void = () => {};
  let interrupted = false;
  const stopSignal = new Promise<void>((resolve) => {
    interrupt = () => {
      interrupted = true;
      resolve();
    };
  });
  const onSignal = () => interrupt();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const dir = tempDir('secagg-cluster-', undefined);
  let redis: LocalRedis | undefined;
  let pg: LocalPostgres | undefined;
  const roles: Named[] = [];
  let clients: Worker[] = [];
  let watcher: ReturnType<typeof connect> | undefined;
  let stopping = false;
  let failures = 0;
  let completed = 0;
  let ended = 0;
  try {
    redis = await startRedis({ appendonly: true, appendfsync: 'always' });
    say(`redis: ${redis.url} (pid ${redis.pid()}, appendonly yes, appendfsync always, ${redis.dir})`);
    say(`temporary directory: ${dir}`);

    let store = join(dir, 'history.db');
    if (a.postgres) {
      const bin = postgresBinaries();
      if (!bin) say('--postgres: PostgreSQL is not installed (apt-get install postgresql): the history is in SQLite instead');
      else {
        pg = await startPostgres();
        store = pg.url;
        say(`postgresql: ${pg.url} (pid ${pg.pid()}, ${pg.dir})`);
      }
    }
    if (!pg) {
      // Opened once here, so the schema exists before two coordinators open the file together.
      try {
        await (await openStore(store)).close();
        say(`history: SQLite file ${store}`);
      } catch (e) {
        if ((e as { code?: unknown }).code !== 'ERR_MISSING_DEPENDENCY') throw e;
        store = 'memory';
        say('history: in memory (the SQLite binding better-sqlite3 is not installed)');
      }
    }
    if (interrupted) return 1;

    const secret = randomBytes(24).toString('hex');
    const env = { SECAGG_SECRET: secret, SECAGG_REDIS: redis.url };
    const start = async (name: string, args: string[]): Promise<Named> => {
      const proc = await startRoleProcess({
        main: MAIN,
        args: [...args, '--id', name, '--prefix', PREFIX],
        env,
        ownGroup: true,
        ...(logDir ? { logFile: join(logDir, `${name}.log`) } : {}),
      });
      const named = { name, proc };
      roles.push(named);
      return named;
    };
    const admin = adminPort === 0 || (await portFree(adminPort)) ? adminPort : 0;
    if (admin !== adminPort) say(`port ${adminPort} is in use: the dashboard gets a free port instead`);
    const minClients = Math.max(minShard, Math.ceil(n * 0.7));
    const coordinatorArgs = (adminAt: number) => [
      'coordinator',
      '--store',
      store,
      '--dim',
      String(m),
      '--bits',
      String(BITS),
      '--graph',
      graph,
      '--min-shard-size',
      String(minShard),
      '--max-shard-size',
      String(maxShard),
      '--dropout-rate',
      String(Math.min(0.5, Math.max(0.05, dropout))),
      '--min-clients',
      String(minClients),
      '--max-clients',
      String(n),
      '--start-delay',
      '1000',
      '--stage-timeout',
      String(stageTimeout),
      ...(Number.isFinite(rounds) ? ['--rounds', String(rounds)] : []),
      '--admin',
      `127.0.0.1:${adminAt}`,
    ];
    // Everything starts at once, but a standby only once the first coordinator holds the lease.
    const [coordinator, ...others] = await Promise.all([
      start('coord0', coordinatorArgs(admin)),
      ...Array.from({ length: nWorkers }, (_, i) => start(`worker${i}`, ['shard-worker', '--metrics-port', '0', '--unmask-workers', '0'])),
      ...Array.from({ length: nGateways }, (_, i) =>
        start(`gw${i}`, ['gateway', '--port', '0', '--dim', String(m), '--bits', String(BITS), '--max-shard-size', String(maxShard)]),
      ),
    ]);
    const started = [...others, ...(a.standby ? [await start('coord1', coordinatorArgs(0))] : [])];
    const dashboard = String(coordinator!.proc.info['adminUrl']);
    for (const { name, proc } of [coordinator!, ...started]) {
      const i = proc.info;
      const where =
        i['role'] === 'gateway'
          ? `${String(i['url'])} (/metrics: ${String(i['httpUrl'])}metrics)`
          : i['role'] === 'shard-worker'
            ? `/metrics: ${String(i['metricsUrl'])}metrics`
            : `${i['active'] ? 'active' : 'standby'}, dashboard and /metrics: ${String(i['adminUrl'])}`;
      say(`${String(i['role'])} ${name}: ${where} (pid ${String(i['pid'])})`);
    }
    say(`dashboard: ${dashboard}`);
    const gatewayUrls = started.filter((r) => r.proc.info['role'] === 'gateway').map((r) => String(r.proc.info['url']));
    say(
      `secagg cluster: ${n} clients over ${nGateways} gateway(s), ${nWorkers} worker(s), m = ${m}, dropout ${dropout}, ${graph} graph, shards of ${minShard}–${maxShard}`,
    );
    if (interrupted) return 1;

    // Each round's plan (who is in which shard) is read from Redis while it is there: with the
    // record's included ordinals it names the clients in the sum, whose inputs give the plaintext sum.
    watcher = connect(redis.url, 'secagg-cluster');
    const plans = new Map<number, RoundPlan>();
    const reported = new Set<number>();
    let done!: () => void;
    const allDone = new Promise<void>((resolve) => {
      done = resolve;
    });
    const adminBase = dashboard.endsWith('/') ? dashboard : `${dashboard}/`;
    const check = async (rec: RoundRecord): Promise<string> => {
      const secs = ((rec.endedAt! - rec.startedAt) / 1000).toFixed(2);
      if (rec.outcome !== 'completed') return `round ${rec.id}: aborted — ${rec.code}: ${rec.reason}`;
      const full = (await (await fetch(new URL(`api/rounds/${rec.id}`, adminBase))).json()) as RoundRecord & { sum: number[] | null };
      const shards = full.shards ?? [];
      const shardText = shards
        .map(
          (s) => `${s.included ?? 0}/${s.clients}${s.worker ? ` by ${s.worker}` : ''}${s.owners && s.owners > 1 ? `, failed over: ${s.owners} workers` : ''}`,
        )
        .join(', ');
      const plan = plans.get(rec.id);
      let verdict: string;
      if (!plan || !full.sum || !full.included) verdict = 'NOT CHECKED ✗ (its plan was not seen)';
      else {
        const identities: string[] = [];
        for (const o of full.included) {
          let base = 0;
          for (const s of plan.shards) {
            if (o <= base + s.members.length) {
              identities.push(s.members.find((x) => x.id === o - base)?.identity ?? '');
              break;
            }
            base += s.members.length;
          }
        }
        const expected = plainSum(
          identities.map((id) => demoInput(Number(id.slice('demo-'.length)), rec.id, m)),
          BITS,
          m,
        );
        const ok = identities.every((id) => /^demo-\d+$/.test(id)) && full.sum.length === m && full.sum.every((v, j) => v === expected[j]);
        verdict = ok ? 'sum verified ✓' : 'WRONG ✗';
      }
      if (verdict !== 'sum verified ✓') failures++;
      else completed++;
      return `round ${rec.id}: ${full.included?.length ?? 0}/${rec.params.cohort} clients in the sum, ${shards.length} shard(s) [${shardText}], ${secs} s, ${verdict}`;
    };
    const poll = async () => {
      for (const key of await watcher!.keys(keys(PREFIX).plan('*'))) {
        try {
          const plan = parsePlan(await watcher!.get(key));
          plans.set(plan.number, plan);
        } catch {
          // gone meanwhile
        }
      }
      const res = await fetch(new URL('api/status', adminBase));
      const st = (await res.json()) as { recent: RoundRecord[] };
      for (const rec of [...st.recent].reverse()) {
        if (rec.outcome === 'running' || rec.endedAt === null || reported.has(rec.id)) continue;
        reported.add(rec.id);
        say(await check(rec));
        ended++;
        if (ended >= rounds) done();
      }
    };
    let polling = true;
    const pollLoop = (async () => {
      while (polling) {
        try {
          await poll();
        } catch (e) {
          if (polling) process.stderr.write(`secagg cluster: reading the round results failed: ${String(e)}\n`);
        }
        await new Promise((ok) => setTimeout(ok, 150));
      }
    })();
    // A coordinator that stops by itself ends the try-out (the standby, if any, keeps it going).
    const coordinators = roles.filter((r) => r.proc.info['role'] === 'coordinator');
    const noCoordinator = Promise.all(coordinators.map((c) => c.proc.exited));
    for (const r of roles)
      void r.proc.exited.then(() => {
        if (!stopping)
          process.stderr.write(
            `secagg cluster: ${r.name} stopped (${r.proc.child.signalCode ?? `exit ${r.proc.child.exitCode}`}); its last log lines:\n${lastLines(r.proc.stderr(), 10)}\n`,
          );
      });
    clients = startDemoClients({ urls: gatewayUrls, secret, n, m, dropout });
    await Promise.race([allDone, stopSignal, noCoordinator]);
    stopping = true;
    polling = false;
    await pollLoop;
    if (ended < rounds && !interrupted) {
      say('secagg cluster: every coordinator stopped');
      failures++;
    }
  } finally {
    stopping = true;
    // Clients first (their rounds end as dropouts), then every role, then Redis: a role that
    // loses Redis first would wait for it while it shuts down.
    await Promise.all(clients.map((w) => w.terminate()));
    watcher?.disconnect();
    await Promise.all(roles.map((r) => r.proc.kill('SIGTERM', 5000)));
    await redis?.stop();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    say(`secagg cluster: ${ended} round(s), ${completed} verified, ${failures} wrong or unchecked; every process stopped, ${dir} removed`);
  }
  return failures === 0 && completed > 0 ? 0 : 1;
}
