/**
 * Round history in PostgreSQL (the `pg` client, pure JavaScript), for a history that outlives one
 * machine or that several processes share: the coordinators of the distributed deployment write
 * to one database, so round numbers come from the database (an IDENTITY column), never from a
 * counter in a process, and `save` is an upsert. SQLite (sqliteStore.ts) stays the embedded
 * default for one process.
 *
 * Layout, in a schema of its own (default `secagg`; the URL's `schema` parameter or
 * `options.schema` picks another, e.g. one per deployment sharing a database): a table `rounds`
 * (sums as bytea, the JSON parts as jsonb, times as ms since the epoch in double precision) and a
 * one-row table `schema_version`. Opening a store creates what is missing, under an advisory lock
 * so that coordinators starting together do not race; where everything exists it runs no DDL, so
 * a role with only SELECT/INSERT/UPDATE on the tables can use a schema an administrator made.
 *
 * `pg` is loaded the first time a store is opened (a dynamic import), never when this module is
 * imported: a service without PostgreSQL never loads it.
 */
import { createRequire } from 'node:module';
import type { Pool, PoolConfig } from 'pg';
import { MissingDependencyError } from './sqliteStore.js';
import { dpHistoryOf, SERVICE_STAGES, type RoundOutcome, type RoundRecord, type RoundStore } from './store.js';

/** The layout this code reads and writes; a database with a newer one is refused (StoreSchemaError). */
const SCHEMA_VERSION = 1;

export interface PostgresStoreOptions {
  /**
   * The PostgreSQL schema (namespace) of the tables: letters, digits and _, not starting with a
   * digit, at most 63. Default: the connection URL's `schema` query parameter, else 'secagg'.
   */
  schema: string;
  /**
   * How long connecting may take before the store gives up with StoreUnavailableError (ms,
   * default 10000; pg's own default is to wait forever). A PoolConfig's connectionTimeoutMillis wins.
   */
  connectTimeoutMs: number;
}

/** The database cannot be reached (refused, unknown host, timed out, connection lost). */
export class StoreUnavailableError extends Error {
  readonly code = 'ERR_STORE_UNAVAILABLE';
  /** Where the store tried to connect (a host name or address, or a Unix socket directory). */
  readonly host: string;
  readonly port: number;
  constructor(host: string, port: number, cause: unknown) {
    // The errno (ECONNREFUSED, ENOTFOUND) where there is one, else what pg or the server said.
    const errno = cause instanceof Error ? (cause as { code?: unknown }).code : undefined;
    const why = typeof errno === 'string' && /^E[A-Z_]+$/.test(errno) ? errno : cause instanceof Error ? cause.message : String(cause);
    super(`the PostgreSQL store cannot reach ${host}:${port} (${why})`, { cause });
    this.name = 'StoreUnavailableError';
    this.host = host;
    this.port = port;
  }
}

/** The database holds a store layout this version of secagg does not know (written by a newer one). */
export class StoreSchemaError extends Error {
  readonly code = 'ERR_STORE_SCHEMA';
  /** The version found in the database and the newest this code reads. */
  readonly found: number;
  readonly supported: number;
  constructor(schema: string, found: number) {
    super(`the PostgreSQL store in schema "${schema}" has layout version ${found}; this secagg reads up to ${SCHEMA_VERSION}: upgrade secagg`);
    this.name = 'StoreSchemaError';
    this.found = found;
    this.supported = SCHEMA_VERSION;
  }
}

/** A `postgres://` or `postgresql://` URL (what `--history` and ServiceOptions.historyFile take for this store). */
export function isPostgresUrl(s: string): boolean {
  return /^postgres(ql)?:\/\//i.test(s);
}

type Pg = typeof import('pg');
let loading: Promise<Pg> | undefined;

/**
 * pg, imported the first time a store is opened. Resolved first, so only the package itself being
 * absent is reported as missing; a package that is there but fails to load throws its own error.
 */
function loadPg(): Promise<Pg> {
  loading ??= (async () => {
    try {
      createRequire(import.meta.url).resolve('pg');
    } catch (e) {
      throw new MissingDependencyError('pg', 'the PostgreSQL store', { cause: e });
    }
    return await import('pg');
  })().catch((e: unknown) => {
    loading = undefined;
    throw e;
  });
  return loading;
}

/** Errors of the connection rather than of a statement: the network's, pg's, and SQLSTATE class 08 / 57P0x. */
function isConnectionError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  if (
    typeof code === 'string' &&
    (/^E(CONNREFUSED|CONNRESET|HOSTUNREACH|NETUNREACH|TIMEDOUT|PIPE|ADDRNOTAVAIL|NOTFOUND|AI_AGAIN)$/.test(code) || /^(08|57P0)/.test(code))
  )
    return true;
  return /^Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(e.message);
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** The `schema` query parameter of a connection URL, if any. */
function urlSchema(url: string): string | undefined {
  try {
    return new URL(url).searchParams.get('schema') ?? undefined;
  } catch {
    return undefined; // pg reports a URL it cannot parse
  }
}

interface Row {
  id: string;
  round_id: string;
  params: RoundRecord['params'];
  started_at: number;
  ended_at: number | null;
  outcome: RoundOutcome;
  code: string | null;
  reason: string | null;
  stage: string;
  stages: RoundRecord['stages'];
  included: number[] | null;
  sum?: Buffer | null;
  dp: NonNullable<RoundRecord['dp']> | null;
  shards: NonNullable<RoundRecord['shards']> | null;
}

/**
 * jsonb keeps an object's keys in its own order (shortest first), not the order written: put the
 * stages back in round order, which the CLI and the dashboard show them in.
 */
function inRoundOrder(stages: RoundRecord['stages']): RoundRecord['stages'] {
  const known: readonly string[] = SERVICE_STAGES;
  const out: Record<string, unknown> = {};
  for (const s of SERVICE_STAGES) if (s in stages) out[s] = stages[s];
  for (const [s, v] of Object.entries(stages)) if (!known.includes(s)) out[s] = v;
  return out as RoundRecord['stages'];
}

function fromRow(r: Row): RoundRecord {
  const rec: RoundRecord = {
    id: Number(r.id),
    roundId: r.round_id,
    params: r.params,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    outcome: r.outcome,
    code: r.code,
    reason: r.reason,
    stage: r.stage,
    stages: inRoundOrder(r.stages),
    included: r.included,
  };
  if (r.dp !== null) rec.dp = r.dp;
  if (r.shards !== null && r.shards !== undefined) rec.shards = r.shards;
  // A fresh, aligned copy: a Buffer from pg may sit at any offset of a shared pool.
  if (r.sum !== undefined) rec.sum = r.sum === null ? null : new Uint32Array(new Uint8Array(r.sum).buffer);
  return rec;
}

/** PostgreSQL text cannot hold U+0000: it is stored as U+FFFD. */
const text = (s: string | null): string | null => (s === null ? null : s.replaceAll('\0', '\uFFFD'));
const json = (v: unknown): string | null => (v === null || v === undefined ? null : JSON.stringify(v));

/** The 13 values of a record after its id, in COLUMNS order. */
function values(r: Omit<RoundRecord, 'id'>): unknown[] {
  return [
    text(r.roundId),
    json(r.params),
    r.startedAt,
    r.endedAt,
    r.outcome,
    text(r.code),
    text(r.reason),
    text(r.stage),
    json(r.stages),
    json(r.included),
    r.sum ? Buffer.from(r.sum.buffer, r.sum.byteOffset, r.sum.byteLength) : null,
    json(r.dp),
    json(r.shards),
  ];
}

const COLUMNS = 'round_id, params, started_at, ended_at, outcome, code, reason, stage, stages, included, sum, dp, shards';
const PLACEHOLDERS = (from: number) =>
  ['text', 'jsonb', 'float8', 'float8', 'text', 'text', 'text', 'text', 'jsonb', 'jsonb', 'bytea', 'jsonb', 'jsonb']
    .map((t, i) => `$${from + i}::${t}`)
    .join(', ');
const LISTED = 'id, round_id, params, started_at, ended_at, outcome, code, reason, stage, stages, included, dp, shards';

const ddl = (s: string) => `
CREATE TABLE IF NOT EXISTS ${s}.rounds (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  round_id text NOT NULL,
  params jsonb NOT NULL,
  started_at double precision NOT NULL,
  ended_at double precision,
  outcome text NOT NULL CHECK (outcome IN ('running', 'completed', 'aborted')),
  code text,
  reason text,
  stage text NOT NULL,
  stages jsonb NOT NULL,
  included jsonb,
  sum bytea,
  dp jsonb,
  shards jsonb
);
-- a cluster round's shard outcomes (RoundRecord.shards); added to a layout made before it
ALTER TABLE ${s}.rounds ADD COLUMN IF NOT EXISTS shards jsonb;
CREATE INDEX IF NOT EXISTS rounds_running ON ${s}.rounds (id) WHERE outcome = 'running';
CREATE TABLE IF NOT EXISTS ${s}.schema_version (version integer NOT NULL);
INSERT INTO ${s}.schema_version (version) SELECT ${SCHEMA_VERSION} WHERE NOT EXISTS (SELECT 1 FROM ${s}.schema_version);`;

/** The layout version in `s`, or undefined when the schema or its tables do not exist yet. */
async function layoutVersion(pool: Pool, s: string): Promise<number | undefined> {
  try {
    const { rows } = await pool.query<{ version: number }>(`SELECT version FROM ${s}.schema_version`);
    return rows[0]?.version;
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === '42P01' || code === '3F000') return undefined; // undefined_table, invalid_schema_name
    throw e;
  }
}

/** Create the schema and tables where missing: one opener at a time per schema (an advisory lock held to COMMIT). */
async function createLayout(pool: Pool, schema: string, s: string): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`secagg store ${schema}`]);
    // CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the schema exists: ask first.
    const { rowCount } = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    if (!rowCount) await client.query(`CREATE SCHEMA ${s}`);
    await client.query(ddl(s));
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}

/**
 * Open the history in the PostgreSQL database at `connection` (a postgres:// URL, or a pg
 * PoolConfig), creating its schema and tables where missing. Rejects with StoreUnavailableError
 * (naming the host and port) when the database cannot be reached, StoreSchemaError when it holds a
 * newer layout, and pg's own error otherwise (authentication failed, no such database, no
 * privilege); every method later rejects with StoreUnavailableError when the connection is lost.
 *
 * Round numbers are unique and increasing across every process sharing the database, and may have
 * gaps (a failed insert uses a number up). `abortUnfinished` aborts every running round in the
 * schema, whoever runs it: only the one active coordinator may start a server on it (or give
 * each server a schema of its own).
 *
 * @example
 * const store = await postgresStore('postgres://secagg@db.internal:5432/secagg');
 * const server = await createServer({ store, secret });
 */
export async function postgresStore(connection: string | PoolConfig, options: Partial<PostgresStoreOptions> = {}): Promise<RoundStore> {
  if (typeof connection !== 'string' && (typeof connection !== 'object' || connection === null))
    throw new TypeError('connection must be a postgres:// URL or a pg PoolConfig');
  const fromUrl = typeof connection === 'string' ? urlSchema(connection) : undefined;
  const schema = options.schema ?? fromUrl ?? 'secagg';
  if (typeof schema !== 'string' || !IDENT.test(schema))
    throw new RangeError(`schema must be letters, digits and _ (not starting with a digit, at most 63), got ${JSON.stringify(schema)}`);
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  if (!(Number.isFinite(connectTimeoutMs) && connectTimeoutMs > 0)) throw new RangeError('connectTimeoutMs must be a number > 0');
  const { Pool, Client } = await loadPg();
  const config: PoolConfig = typeof connection === 'string' ? { connectionString: connection } : { ...connection };
  config.connectionTimeoutMillis ??= connectTimeoutMs;
  // Where pg will connect, with its defaults and PG* variables applied (a Client connects only when asked).
  const target = new Client(config) as unknown as { host: string; port: number };
  const unavailable = (e: unknown) => (isConnectionError(e) ? new StoreUnavailableError(target.host, target.port, e) : e);
  const pool = new Pool(config);
  // A connection that dies while idle (the server restarted) is reported here; the next query
  // reconnects or fails with StoreUnavailableError. Unhandled, it would end the process.
  pool.on('error', () => undefined);
  const s = `"${schema}"`;
  try {
    let version = await layoutVersion(pool, s);
    if (version === undefined) {
      await createLayout(pool, schema, s);
      version = await layoutVersion(pool, s);
    }
    if (version === undefined || version > SCHEMA_VERSION) throw new StoreSchemaError(schema, version ?? 0);
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw unavailable(e);
  }

  const query = async <R>(sql: string, params: unknown[] = []): Promise<R[]> => {
    try {
      return (await pool.query(sql, params)).rows as R[];
    } catch (e) {
      throw unavailable(e);
    }
  };
  let closed: Promise<void> | undefined;
  return {
    async begin(record) {
      // A number taken by a save() of a record this store never began is skipped, not reused.
      for (let attempt = 1; ; attempt++) {
        try {
          const [row] = await query<{ id: string }>(`INSERT INTO ${s}.rounds (${COLUMNS}) VALUES (${PLACEHOLDERS(1)}) RETURNING id`, values(record));
          return Number(row!.id);
        } catch (e) {
          if (attempt < 100 && (e as { code?: unknown }).code === '23505') continue; // unique_violation on the id
          throw e;
        }
      }
    },
    async save(record) {
      if (!Number.isSafeInteger(record.id) || record.id < 1) throw new RangeError(`record.id must be a round number ≥ 1, got ${record.id}`);
      const set = COLUMNS.split(', ')
        .map((c) => `${c} = EXCLUDED.${c}`)
        .join(', ');
      await query(`INSERT INTO ${s}.rounds (id, ${COLUMNS}) VALUES ($1, ${PLACEHOLDERS(2)}) ON CONFLICT (id) DO UPDATE SET ${set}`, [
        record.id,
        ...values(record),
      ]);
    },
    async get(id) {
      if (!Number.isSafeInteger(id) || id < 1) return undefined;
      const [row] = await query<Row>(`SELECT ${LISTED}, sum FROM ${s}.rounds WHERE id = $1`, [id]);
      return row && fromRow(row);
    },
    async list(options = {}) {
      const limit = options.limit ?? 100;
      const rows = await query<Row>(`SELECT ${LISTED} FROM ${s}.rounds ORDER BY id DESC LIMIT $1`, [
        Number.isFinite(limit) ? Math.max(0, Math.floor(limit)) : null,
      ]);
      return rows.map(fromRow);
    },
    async countOutcomes() {
      const counts: Record<RoundOutcome, number> = { running: 0, completed: 0, aborted: 0 };
      for (const { outcome, n } of await query<{ outcome: RoundOutcome; n: number }>(`SELECT outcome, count(*)::int AS n FROM ${s}.rounds GROUP BY outcome`))
        counts[outcome] = n;
      return counts;
    },
    async abortUnfinished(code, reason, at) {
      const rows = await query<{ id: string }>(
        `UPDATE ${s}.rounds SET outcome = 'aborted', code = $1, reason = $2, ended_at = $3, sum = NULL, included = NULL WHERE outcome = 'running' RETURNING id`,
        [text(code), text(reason), at],
      );
      return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
    },
    async latestDp() {
      const [row] = await query<{ dp: NonNullable<RoundRecord['dp']> }>(
        `SELECT dp FROM ${s}.rounds WHERE jsonb_typeof(dp -> 'cumulativeRdp') = 'array' ORDER BY id DESC LIMIT 1`,
      );
      return row && dpHistoryOf(row);
    },
    close() {
      closed ??= pool.end();
      return closed;
    },
  };
}
