import { readFileSync } from 'node:fs';
import {
  createServer,
  isPostgresUrl,
  memoryStore,
  MissingDependencyError,
  postgresStore,
  sqliteStore,
  type RoundStore,
  type SecAggServer,
  type ServiceOptions,
  type StaticTokenEntry,
} from '../server/index.js';
import { parseKey } from '../identity/index.js';
import { isLoopback } from '../server/options.js';
import { jsonLogger, type LogLevel } from '../server/logger.js';
import type { Degree } from '../protocol/config.js';
import { fail, intFlag as num, parseFlags } from './args.js';

export const SERVE_HELP = `Usage: secagg serve [options]

Runs the aggregation service: the clients' WebSocket (/ws) and /healthz on --port, and the admin
surface (dashboard at /, /metrics, /api/status, /api/rounds) where --admin says. Logs are JSON lines on stderr. SIGTERM/SIGINT let the running round finish
within --grace, else abort it and record why.

Options:
  --port P               TCP port (default 8080; 0 = any free port)
  --host H               interface (default 127.0.0.1)
  --secret S             shared secret for HS256 JWTs and st1. tokens (or env SECAGG_SECRET)
  --tls-cert FILE        PEM certificate chain: serve HTTPS and wss:// (with --tls-key)
  --tls-key FILE         PEM private key of --tls-cert
  --jwt-audience A       JWTs must carry this aud
  --jwt-issuer I         JWTs must carry this iss
  --jwt-keys K[,K…]      Ed25519 public keys (hex or base64url) whose EdDSA JWTs are accepted
  --tokens LIST|@FILE    static bearer tokens, comma-separated, or one per line in FILE as
                         'TOKEN [NAME [IDENTITY_KEY_HEX]]' (active mode needs the key)
  --mode M               semi-honest | active (default semi-honest). Active: clients have Ed25519
                         identities, tokens are bound to them, clients prove possession at hello
  --issuer-key HEX|@FILE active mode: the identity issuer's public key; clients must present a
                         certificate from it (forwarded to their peers)
  --server-id ID         name signed into identity proofs (default secagg:HOST:PORT)
  --keepalive MS         WebSocket ping interval; no pong by the next ping drops the connection
                         (default 15000; 0 = off)
  --min-clients N        start a round when N clients wait (default 3)
  --max-clients N        cohort cap, sampled at random (default 1000)
  --start-delay MS       gather this long after min-clients is reached (default 500)
  --dim M                elements per vector (default 1000)
  --bits B               ring Z_{2^B} (default 32)
  --degree K|complete|recommended   neighbour graph (default complete)
  --threshold T          Shamir threshold (default: the smallest that meets the neighbourhood
                         bound for the cohort, degree and --corruption)
  --corruption C         colluding clients tolerated per neighbourhood (default 0); raises the
                         threshold (active: 2t > k + C; semi-honest: t > C) and is sent to clients
  --stage-timeout MS     deadline per protocol stage (default 30000)
  --handshake-timeout MS a connection must finish its hello within this (default 5000)
  --max-pending N        connections still in their handshake, in all (default 256)
  --max-pending-per-address N
                         of them from one IPv4 address / IPv6 /64 (default 8; raise it behind a
                         reverse proxy, where every client has the proxy's address)
  --max-refused N        close a connection after N refused protocol messages in a round (default 8)
  --admin WHERE          the admin surface: client-port | off | [HOST:]PORT (a listener of its own;
                         HOST default 127.0.0.1). Default: client-port when --host is loopback,
                         else 127.0.0.1:8081 — never on a client port other machines can reach
                         unless asked for
  --admin-token LIST     bearer tokens (comma-separated, or env SECAGG_ADMIN_TOKEN) that /metrics
                         and /api/* require (the dashboard page takes one as #token=…)
  --allowed-origins LIST browser origins (https://app.example.com, comma-separated; * = any) that
                         may open the WebSocket; others get HTTP 403. Default: any
  --results-token LIST   bearer tokens (comma-separated, or env SECAGG_RESULTS_TOKEN) that
                         /api/rounds and /api/rounds/:id (the sums) require; default: open
  --rounds R             stop starting rounds after R (default: no limit)
  --dp-noise-multiplier Z  differential privacy: clients add integer noise so every released sum
                         carries noise of std ≥ Z·C per coordinate (turns DP on; needs --dp-clip and
                         a power-of-two --dim). ε per round and cumulative in the history, /metrics
                         and the dashboard; apps encode with GET /dp (docs/service.md)
  --dp-clip C            L2 clip of every client's update
  --dp-mechanism M       skellam | dgauss (default skellam)
  --dp-removable yes|no  remove the excess noise once the survivors are known (default yes for skellam)
  --dp-population N      clients the cohorts are drawn from: account rounds as Poisson samples at
                         q = cohort/N (default: no amplification, q = 1)
  --dp-delta D           δ of the reported ε (default 1e-5)
  --dp-budget E          stop starting rounds once one more would take ε (at --dp-delta) above E
  --history FILE|URL     round history: a SQLite file (default secagg-history.db; '' = in memory)
                         or a postgres://USER@HOST:PORT/DB URL (PostgreSQL; ?schema=NAME, default
                         secagg; the password from PGPASSWORD or ~/.pgpass). SQLite needs the
                         optional better-sqlite3; without it the default falls back to memory (one
                         warning line) and an explicit FILE is an error (exit 7). A database that
                         cannot be reached is exit 8
  --workers W            unmasking worker threads (default: cores)
  --grace MS             on SIGTERM, time the running round gets to finish (default 10000)
  --log-level L          debug | info | warn | error (default info)
  -h, --help             this text`;

export function parseDegree(v: string | undefined): Degree | 'recommended' {
  if (v === undefined || v === 'complete') return 'complete';
  if (v === 'recommended') return 'recommended';
  return num(v, 'degree', 0, 2, 65534);
}

export async function runServe(argv: string[]): Promise<number> {
  const a = parseFlags(
    argv,
    {
      port: { type: 'string' },
      host: { type: 'string' },
      secret: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'jwt-audience': { type: 'string' },
      'jwt-issuer': { type: 'string' },
      'jwt-keys': { type: 'string' },
      tokens: { type: 'string' },
      mode: { type: 'string' },
      'issuer-key': { type: 'string' },
      'server-id': { type: 'string' },
      keepalive: { type: 'string' },
      'min-clients': { type: 'string' },
      'max-clients': { type: 'string' },
      'start-delay': { type: 'string' },
      dim: { type: 'string' },
      bits: { type: 'string' },
      degree: { type: 'string' },
      threshold: { type: 'string' },
      corruption: { type: 'string' },
      'stage-timeout': { type: 'string' },
      'handshake-timeout': { type: 'string' },
      'max-pending': { type: 'string' },
      'max-pending-per-address': { type: 'string' },
      'max-refused': { type: 'string' },
      'results-token': { type: 'string' },
      admin: { type: 'string' },
      'admin-token': { type: 'string' },
      'allowed-origins': { type: 'string' },
      rounds: { type: 'string' },
      'dp-noise-multiplier': { type: 'string' },
      'dp-clip': { type: 'string' },
      'dp-mechanism': { type: 'string' },
      'dp-removable': { type: 'string' },
      'dp-population': { type: 'string' },
      'dp-delta': { type: 'string' },
      'dp-budget': { type: 'string' },
      history: { type: 'string' },
      workers: { type: 'string' },
      grace: { type: 'string' },
      'log-level': { type: 'string' },
    },
    SERVE_HELP,
  );
  if (!a) return 0;
  const level = (a['log-level'] ?? 'info') as LogLevel;
  if (!['debug', 'info', 'warn', 'error'].includes(level)) fail(`--log-level must be debug, info, warn or error`);
  const mode = (a.mode ?? 'semi-honest') as 'semi-honest' | 'active';
  if (mode !== 'semi-honest' && mode !== 'active') fail(`--mode must be semi-honest or active, got '${mode}'`);
  let tokens: string[] | Map<string, string | StaticTokenEntry> = [];
  if (a.tokens !== undefined) {
    const lines = (a.tokens.startsWith('@') ? readFileSync(a.tokens.slice(1), 'utf8').split('\n') : a.tokens.split(','))
      .map((s) => s.trim())
      .filter((s) => s && !s.startsWith('#'));
    if (lines.some((l) => /\s/.test(l))) {
      const map = new Map<string, string | StaticTokenEntry>();
      for (const l of lines) {
        const [tok, name, key] = l.split(/\s+/);
        let identityKey: Uint8Array | undefined;
        try {
          identityKey = key !== undefined ? parseKey(key, 'identity key') : undefined;
        } catch (e) {
          fail(`--tokens: ${(e as Error).message}`);
        }
        map.set(tok!, identityKey ? { identity: name!, identityKey } : (name ?? tok!));
      }
      tokens = map;
    } else tokens = lines;
  }
  let issuerKey: Uint8Array | undefined;
  if (a['issuer-key'] !== undefined) {
    if (mode !== 'active') fail('--issuer-key is for --mode active');
    try {
      issuerKey = parseKey(a['issuer-key'].startsWith('@') ? readFileSync(a['issuer-key'].slice(1), 'utf8') : a['issuer-key'], '--issuer-key');
    } catch (e) {
      fail((e as Error).message);
    }
  }
  const secret = a.secret ?? process.env['SECAGG_SECRET'];
  const jwtKeys = list(a['jwt-keys']);
  for (const k of jwtKeys) {
    try {
      parseKey(k, '--jwt-keys');
    } catch (e) {
      fail((e as Error).message);
    }
  }
  if (secret === undefined && jwtKeys.length === 0 && (Array.isArray(tokens) ? tokens.length : tokens.size) === 0)
    fail('give --secret (or SECAGG_SECRET), --jwt-keys and/or --tokens: no client could authenticate');
  if (secret !== undefined && secret.length < 16) fail('--secret must be at least 16 characters');
  const history = a.history ?? 'secagg-history.db';
  const resultsTokens = list(a['results-token'] ?? process.env['SECAGG_RESULTS_TOKEN']);
  if (a['results-token'] !== undefined && resultsTokens.length === 0) fail('--results-token: give at least one token');
  const adminTokens = list(a['admin-token'] ?? process.env['SECAGG_ADMIN_TOKEN']);
  if (a['admin-token'] !== undefined && adminTokens.length === 0) fail('--admin-token: give at least one token');
  const host = a.host ?? '127.0.0.1';
  const origins = a['allowed-origins'] !== undefined ? list(a['allowed-origins']) : undefined;
  if (origins !== undefined && origins.length === 0) fail('--allowed-origins: give at least one origin (or *)');
  const options: Partial<ServiceOptions> = {
    port: num(a.port, 'port', 8080, 0, 65535),
    host,
    tokens,
    ...(secret !== undefined ? { secret } : {}),
    ...tlsOption(a['tls-cert'], a['tls-key']),
    jwt: {
      ...(a['jwt-audience'] !== undefined ? { audience: a['jwt-audience'] } : {}),
      ...(a['jwt-issuer'] !== undefined ? { issuer: a['jwt-issuer'] } : {}),
      ...(jwtKeys.length > 0 ? { publicKeys: jwtKeys } : {}),
    },
    minClients: num(a['min-clients'], 'min-clients', 3, 3, 65535),
    maxClients: num(a['max-clients'], 'max-clients', 1000, 3, 65535),
    startDelayMs: num(a['start-delay'], 'start-delay', 500, 0, 3_600_000),
    dimension: num(a.dim, 'dim', 1000, 1, 1 << 26),
    bits: num(a.bits, 'bits', 32, 1, 32),
    degree: parseDegree(a.degree),
    ...(a.threshold !== undefined ? { threshold: num(a.threshold, 'threshold', 0, 2, 65534) } : {}),
    corruption: num(a.corruption, 'corruption', 0, 0, 65533),
    stageTimeoutMs: num(a['stage-timeout'], 'stage-timeout', 30_000, 10, 86_400_000),
    handshakeTimeoutMs: num(a['handshake-timeout'], 'handshake-timeout', 5_000, 100, 600_000),
    maxPendingConnections: num(a['max-pending'], 'max-pending', 256, 1, 1_000_000),
    maxPendingPerAddress: num(a['max-pending-per-address'], 'max-pending-per-address', 8, 1, 1_000_000),
    maxRefusedMessages: num(a['max-refused'], 'max-refused', 8, 1, 1_000_000),
    resultsTokens,
    adminTokens,
    admin: parseAdmin(a.admin, host),
    ...(origins !== undefined ? { allowedOrigins: origins } : {}),
    ...(a.rounds !== undefined ? { maxRounds: num(a.rounds, 'rounds', 0, 1, 1e9) } : {}),
    ...(a.workers !== undefined ? { unmaskWorkers: num(a.workers, 'workers', 0, 0, 64) } : {}),
    logger: jsonLogger({ level }),
    mode,
    ...(issuerKey ? { issuerKey } : {}),
    ...(a['server-id'] !== undefined ? { serverId: a['server-id'] } : {}),
    keepAliveIntervalMs: num(a.keepalive, 'keepalive', 15_000, 0, 86_400_000),
    ...dpOption(a),
  };
  const grace = num(a.grace, 'grace', 10_000, 0, 86_400_000);
  // Opened last, so that a bad flag never leaves a database connection behind.
  const store = history !== '' ? await openHistory(history, a.history !== undefined) : undefined;
  let server: SecAggServer;
  try {
    server = await createServer({ ...options, ...(store ? { store } : {}) });
  } catch (e) {
    // createServer closes the store only when it cannot listen; an open pool would keep the process alive.
    await store?.close().catch(() => undefined);
    // Options no round could use (e.g. a threshold below the bound for every cohort) are a usage error.
    if (e instanceof RangeError || e instanceof TypeError) fail(e.message);
    throw e;
  }
  process.stdout.write(JSON.stringify({ url: server.url, dashboard: server.adminUrl ?? null, mode }) + '\n');
  await untilSignal(server, grace);
  return 0;
}

/** The --dp-* flags as ServiceOptions.dp (none without --dp-noise-multiplier); values are checked by createServer. */
function dpOption(a: Record<string, string | boolean | undefined>): Partial<ServiceOptions> {
  const str = (k: string): string | undefined => (typeof a[k] === 'string' ? (a[k] as string) : undefined);
  const given = ['dp-clip', 'dp-mechanism', 'dp-removable', 'dp-population', 'dp-delta', 'dp-budget'].filter((k) => str(k) !== undefined);
  if (str('dp-noise-multiplier') === undefined) {
    if (given.length) fail(`--${given[0]} needs --dp-noise-multiplier`);
    return {};
  }
  const float = (k: string): number | undefined => {
    const v = str(k);
    if (v === undefined) return undefined;
    const x = Number(v);
    if (v.trim() === '' || !Number.isFinite(x)) fail(`--${k} must be a number, got '${v}'`);
    return x;
  };
  const clip = float('dp-clip');
  if (clip === undefined) fail('--dp-noise-multiplier needs --dp-clip');
  const mechanism = str('dp-mechanism');
  if (mechanism !== undefined && mechanism !== 'skellam' && mechanism !== 'dgauss') fail(`--dp-mechanism must be skellam or dgauss, got '${mechanism}'`);
  const removable = str('dp-removable');
  if (removable !== undefined && removable !== 'yes' && removable !== 'no') fail(`--dp-removable must be yes or no, got '${removable}'`);
  const population = float('dp-population');
  const delta = float('dp-delta');
  const budget = float('dp-budget');
  return {
    dp: {
      noiseMultiplier: float('dp-noise-multiplier')!,
      l2Clip: clip!,
      ...(mechanism !== undefined ? { mechanism } : {}),
      ...(removable !== undefined ? { removable: removable === 'yes' } : {}),
      ...(population !== undefined ? { population } : {}),
      ...(delta !== undefined ? { delta } : {}),
      ...(budget !== undefined ? { budget: { epsilon: budget } } : {}),
    },
  };
}

export const list = (v: string | undefined): string[] =>
  (v ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t.length > 0);

/** --admin: client-port | off | [HOST:]PORT; default client-port on loopback, else 127.0.0.1:8081. */
export function parseAdmin(v: string | undefined, host: string): ServiceOptions['admin'] {
  if (v === undefined) return isLoopback(host) ? 'client-port' : { host: '127.0.0.1', port: 8081 };
  if (v === 'client-port' || v === 'off') return v;
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[^:[\]]+):)?(\d+)$/.exec(v);
  if (!m) return fail(`--admin must be client-port, off or [HOST:]PORT, got '${v}'`);
  const adminHost = m[1]?.replace(/^\[(.*)\]$/, '$1');
  return { port: num(m[2], 'admin port', 0, 0, 65535), ...(adminHost !== undefined ? { host: adminHost } : {}) };
}

/**
 * The history at `path`: PostgreSQL for a postgres:// URL, else the SQLite file. Without
 * better-sqlite3 (or its native binding) the default file falls back to the in-memory store with
 * one warning line; a file the user asked for is an error.
 */
async function openHistory(path: string, explicit: boolean): Promise<RoundStore> {
  if (isPostgresUrl(path)) return postgresStore(path);
  try {
    return sqliteStore(path);
  } catch (e) {
    if (explicit || !(e instanceof MissingDependencyError)) throw e;
    process.stderr.write(`secagg serve: round history kept in memory only (${e.message}; or pass --history '' to silence this)\n`);
    return memoryStore();
  }
}

/** Resolve after SIGTERM/SIGINT once the server has stopped (the running round finished or aborted). */
export function untilSignal(server: SecAggServer, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      void server.close({ reason: signal, graceMs }).then(resolve, resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

/** --tls-cert and --tls-key, both or neither, read at start (a missing file is one line, not a trace). */
export function tlsOption(certPath: string | undefined, keyPath: string | undefined): Partial<ServiceOptions> {
  if (certPath === undefined && keyPath === undefined) return {};
  if (certPath === undefined || keyPath === undefined) fail('give both --tls-cert and --tls-key');
  const read = (path: string, flag: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      return fail(`${flag}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  };
  return { tls: { cert: read(certPath, '--tls-cert'), key: read(keyPath, '--tls-key') } };
}
