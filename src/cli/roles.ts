/**
 * The cluster's role commands: `secagg gateway`, `secagg shard-worker`, `secagg coordinator`. Each
 * runs one process of a cluster coordinated through Redis (docs/cluster.md), prints one JSON line
 * on stdout when it is ready (its URLs), logs JSON lines on stderr, and stops on SIGTERM/SIGINT.
 */
import { createCoordinator } from '../cluster/coordinator.js';
import { createGateway } from '../cluster/gateway.js';
import { createShardWorker } from '../cluster/worker.js';
import { jsonLogger, type LogLevel } from '../server/logger.js';
import { openStore } from './stores.js';
import { parseKey } from '../identity/index.js';
import { list, tlsOption } from './serve.js';
import { UsageError, intFlag as num, parseFlags } from './args.js';

const COMMON = `  --redis URL            the cluster's Redis (default redis://127.0.0.1:6379, or env SECAGG_REDIS)
  --prefix P             key prefix shared by the cluster's processes (default secagg)
  --id NAME              this process's name in the cluster (default: random)
  --log-level L          debug | info | warn | error (default info)`;

export const GATEWAY_HELP = `Usage: secagg gateway [options]

A cluster gateway: the clients' WebSocket (/ws) on --port with the same handshake, tokens and limits
as 'secagg serve'; relays round members' frames to the shard workers through Redis and adds their
masked inputs into one partial sum per shard. /healthz and /metrics on the same port.

Options:
${COMMON}
  --port P               TCP port (default 8080; 0 = any free port)
  --host H               interface (default 127.0.0.1)
  --secret S             shared secret for HS256 JWTs and st1. tokens (or env SECAGG_SECRET)
  --dim M                elements per vector (must match the coordinator's; default 1000)
  --bits B               ring Z_{2^B} (default 32)
  --max-shard-size N     the largest shard (frame limits; default 1000)
  --tls-cert FILE        PEM certificate chain: serve HTTPS and wss:// (with --tls-key)
  --tls-key FILE         PEM private key of --tls-cert
  --jwt-audience A, --jwt-issuer I, --jwt-keys K[,K…]
                         JWT checks, as 'secagg serve' has them
  --allowed-origins LIST browser origins allowed to connect (as 'secagg serve')
  --handshake-timeout MS, --max-pending N, --max-pending-per-address N, --max-refused N
                         the connection limits, as 'secagg serve' has them
  --keepalive MS         WebSocket ping interval; no pong by the next ping drops the connection
                         (a dropout, in a round) (default 15000; 0 = off)`;

export const WORKER_HELP = `Usage: secagg shard-worker [options]

A cluster shard worker: takes shard jobs from Redis, runs each shard's server state machine, and
checkpoints it at every stage; takes over the shards of a worker that stopped.

Options:
${COMMON}
  --lease MS             shard lease: a silent worker loses its shards after this (default 10000;
                         shorter fails over sooner, but a worker starved of CPU for longer than
                         this loses its shards while it is still running)
  --unmask-workers N     worker threads for unmasking (default 1; 0: on the event loop)
  --metrics-port P       /metrics and /healthz on 127.0.0.1:P (default: off; 0 = any free port)`;

export const COORDINATOR_HELP = `Usage: secagg coordinator [options]

The cluster coordinator: one is active (a lease in Redis), others stand by and take over. Draws
each round's cohort from every gateway, plans the shards, adds the shard sums, records the rounds
and serves the dashboard, /metrics and /api/* on --admin.

Options:
${COMMON}
  --store WHERE          the history: postgres://… (shared by every coordinator), a SQLite file,
                         or memory (default memory)
  --dim M                elements per vector (default 1000)
  --bits B               ring Z_{2^B} (default 32)
  --graph G              complete | harary (SecAgg+, the recommended degree) (default complete)
  --min-shard-size N     the privacy floor: no shard has fewer clients (default 100)
  --max-shard-size N     the largest shard (default 1000)
  --dropout-rate D       expected fraction of clients that drop (default 0.05)
  --min-clients N        start a round when N clients wait (default --min-shard-size)
  --max-clients N        cohort cap (default 10000)
  --start-delay MS       gather this long after min-clients is reached (default 1000)
  --stage-timeout MS     deadline per protocol stage (default 30000)
  --rounds R             start at most R rounds (default: no limit)
  --policy P             abort | completed-shards:MIN (publish the completed shards' sum when
                         they hold ≥ MIN clients) (default abort)
  --lease MS             coordinator lease (default 3000)
  --admin [HOST:]PORT    dashboard, /metrics, /api/* (default 127.0.0.1:8081; off: none)
  --admin-token T        require Authorization: Bearer T there`;

const common = {
  redis: { type: 'string' },
  prefix: { type: 'string' },
  id: { type: 'string' },
  'log-level': { type: 'string' },
} as const;

function logLevel(v: string | undefined): LogLevel {
  const l = v ?? 'info';
  if (l !== 'debug' && l !== 'info' && l !== 'warn' && l !== 'error') throw new UsageError(`--log-level must be debug, info, warn or error, got '${l}'`);
  return l;
}

const redisUrl = (v: string | undefined): string => v ?? process.env['SECAGG_REDIS'] ?? 'redis://127.0.0.1:6379';

/** Resolves on SIGTERM / SIGINT. */
const stopSignal = () =>
  new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });

/**
 * Stop a role and exit: at most `ms` for its close (a Redis that went away must not keep a stopped
 * process alive), then the process exits whatever handles are left.
 */
async function closeAndExit(name: string, close: () => Promise<void>, ms = 15_000): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = await Promise.race([
    close().then(() => false),
    new Promise<boolean>((ok) => {
      timer = setTimeout(() => ok(true), ms);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut)
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'warn', msg: `${name} did not stop within ${ms} ms: exiting` })}\n`);
  process.exit(0);
}

const ready = (fields: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ ready: true, ...fields })}\n`);

export async function runGateway(argv: string[]): Promise<number> {
  const a = parseFlags(
    argv,
    {
      ...common,
      port: { type: 'string' },
      host: { type: 'string' },
      secret: { type: 'string' },
      dim: { type: 'string' },
      bits: { type: 'string' },
      'max-shard-size': { type: 'string' },
      keepalive: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'jwt-audience': { type: 'string' },
      'jwt-issuer': { type: 'string' },
      'jwt-keys': { type: 'string' },
      'allowed-origins': { type: 'string' },
      'handshake-timeout': { type: 'string' },
      'max-pending': { type: 'string' },
      'max-pending-per-address': { type: 'string' },
      'max-refused': { type: 'string' },
    },
    GATEWAY_HELP,
  );
  if (!a) return 0;
  const secret = a.secret ?? process.env['SECAGG_SECRET'];
  const jwtKeys = list(a['jwt-keys']);
  for (const key of jwtKeys) parseKey(key, '--jwt-keys');
  if (!secret && jwtKeys.length === 0) throw new UsageError('give --secret (or env SECAGG_SECRET) and/or --jwt-keys: no client could authenticate');
  const origins = a['allowed-origins'] !== undefined ? list(a['allowed-origins']) : undefined;
  if (origins !== undefined && origins.length === 0) throw new UsageError('--allowed-origins: give at least one origin (or *)');
  const gw = await createGateway({
    redisUrl: redisUrl(a.redis),
    ...(a.prefix ? { prefix: a.prefix } : {}),
    ...(a.id ? { id: a.id } : {}),
    service: {
      port: num(a.port, 'port', 8080, 0, 65535),
      host: a.host ?? '127.0.0.1',
      ...(secret ? { secret } : {}),
      ...tlsOption(a['tls-cert'], a['tls-key']),
      jwt: {
        ...(a['jwt-audience'] !== undefined ? { audience: a['jwt-audience'] } : {}),
        ...(a['jwt-issuer'] !== undefined ? { issuer: a['jwt-issuer'] } : {}),
        ...(jwtKeys.length > 0 ? { publicKeys: jwtKeys } : {}),
      },
      ...(origins !== undefined ? { allowedOrigins: origins } : {}),
      handshakeTimeoutMs: num(a['handshake-timeout'], 'handshake-timeout', 5_000, 100, 600_000),
      maxPendingConnections: num(a['max-pending'], 'max-pending', 256, 1, 1_000_000),
      maxPendingPerAddress: num(a['max-pending-per-address'], 'max-pending-per-address', 8, 1, 1_000_000),
      maxRefusedMessages: num(a['max-refused'], 'max-refused', 8, 1, 1_000_000),
      dimension: num(a.dim, 'dim', 1000, 1, 1 << 26),
      bits: num(a.bits, 'bits', 32, 1, 32),
      maxClients: num(a['max-shard-size'], 'max-shard-size', 1000, 3, 65535),
      keepAliveIntervalMs: num(a.keepalive, 'keepalive', 15_000, 0, 86_400_000),
      logger: jsonLogger({ level: logLevel(a['log-level']) }),
    },
  });
  ready({ role: 'gateway', id: gw.id, url: gw.url, httpUrl: gw.httpUrl, pid: process.pid });
  await stopSignal();
  return closeAndExit('gateway', () => gw.close());
}

export async function runShardWorker(argv: string[]): Promise<number> {
  const a = parseFlags(argv, { ...common, lease: { type: 'string' }, 'unmask-workers': { type: 'string' }, 'metrics-port': { type: 'string' } }, WORKER_HELP);
  if (!a) return 0;
  const w = await createShardWorker({
    redisUrl: redisUrl(a.redis),
    ...(a.prefix ? { prefix: a.prefix } : {}),
    ...(a.id ? { id: a.id } : {}),
    leaseMs: num(a.lease, 'lease', 10_000, 300, 600_000),
    unmaskWorkers: num(a['unmask-workers'], 'unmask-workers', 1, 0, 64),
    logger: jsonLogger({ level: logLevel(a['log-level']) }),
    ...(a['metrics-port'] !== undefined ? { metricsPort: num(a['metrics-port'], 'metrics-port', 0, 0, 65535) } : {}),
  });
  ready({ role: 'shard-worker', id: w.id, metricsUrl: w.metricsUrl ?? null, pid: process.pid });
  await stopSignal();
  return closeAndExit('shard worker', () => w.close());
}

function parsePolicy(v: string | undefined): { kind: 'abort' } | { kind: 'completed-shards'; minClients: number } {
  if (v === undefined || v === 'abort') return { kind: 'abort' };
  const m = /^completed-shards:(\d+)$/.exec(v);
  if (!m) throw new UsageError(`--policy must be abort or completed-shards:MIN, got '${v}'`);
  return { kind: 'completed-shards', minClients: num(m[1], 'policy minimum', 0, 1, 1e9) };
}

function parseAdmin(v: string | undefined): { port: number; host: string } | undefined {
  if (v === 'off') return undefined;
  const s = v ?? '127.0.0.1:8081';
  const m = /^(?:(.+):)?(\d+)$/.exec(s);
  if (!m) throw new UsageError(`--admin must be [HOST:]PORT or off, got '${s}'`);
  return { host: m[1] ?? '127.0.0.1', port: num(m[2], 'admin port', 0, 0, 65535) };
}

export async function runCoordinator(argv: string[]): Promise<number> {
  const a = parseFlags(
    argv,
    {
      ...common,
      store: { type: 'string' },
      dim: { type: 'string' },
      bits: { type: 'string' },
      graph: { type: 'string' },
      'min-shard-size': { type: 'string' },
      'max-shard-size': { type: 'string' },
      'dropout-rate': { type: 'string' },
      'min-clients': { type: 'string' },
      'max-clients': { type: 'string' },
      'start-delay': { type: 'string' },
      'stage-timeout': { type: 'string' },
      rounds: { type: 'string' },
      policy: { type: 'string' },
      lease: { type: 'string' },
      admin: { type: 'string' },
      'admin-token': { type: 'string', multiple: true },
    },
    COORDINATOR_HELP,
  );
  if (!a) return 0;
  const graph = a.graph ?? 'complete';
  if (graph !== 'complete' && graph !== 'harary') throw new UsageError(`--graph must be complete or harary, got '${graph}'`);
  const dropout = a['dropout-rate'] === undefined ? 0.05 : Number(a['dropout-rate']);
  if (!(dropout >= 0 && dropout < 1)) throw new UsageError('--dropout-rate must be in [0, 1)');
  const minShard = num(a['min-shard-size'], 'min-shard-size', 100, 3, 65535);
  const admin = parseAdmin(a.admin);
  const c = await createCoordinator({
    redisUrl: redisUrl(a.redis),
    ...(a.prefix ? { prefix: a.prefix } : {}),
    ...(a.id ? { id: a.id } : {}),
    store: await openStore(a.store),
    dimension: num(a.dim, 'dim', 1000, 1, 1 << 26),
    bits: num(a.bits, 'bits', 32, 1, 32),
    graph,
    dropoutRate: dropout,
    minShardSize: minShard,
    maxShardSize: num(a['max-shard-size'], 'max-shard-size', Math.max(1000, minShard), minShard, 65535),
    minClients: num(a['min-clients'], 'min-clients', minShard, minShard, 1e9),
    maxClients: num(a['max-clients'], 'max-clients', 10_000, minShard, 1e9),
    startDelayMs: num(a['start-delay'], 'start-delay', 1000, 0, 3_600_000),
    stageTimeoutMs: num(a['stage-timeout'], 'stage-timeout', 30_000, 100, 3_600_000),
    ...(a.rounds !== undefined ? { maxRounds: num(a.rounds, 'rounds', 0, 0, 1e9) } : {}),
    policy: parsePolicy(a.policy),
    leaseMs: num(a.lease, 'lease', 3000, 300, 600_000),
    ...(admin ? { admin } : {}),
    adminTokens: a['admin-token'] ?? [],
    logger: jsonLogger({ level: logLevel(a['log-level']) }),
  });
  ready({ role: 'coordinator', id: c.id, active: c.isActive(), adminUrl: c.adminUrl ?? null, pid: process.pid });
  await stopSignal();
  return closeAndExit('coordinator', () => c.close());
}
