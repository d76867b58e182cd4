/**
 * Round history in an embedded SQLite file (better-sqlite3, synchronous; every write is one small
 * statement, well under a millisecond). Survives restarts: a round found still 'running' when the
 * server opens the file was interrupted and is recorded as aborted — its sum is never published.
 */
import { createRequire } from 'node:module';
import type DatabaseConstructor from 'better-sqlite3';
import { dpHistoryOf, type RoundOutcome, type RoundRecord, type RoundStore } from './store.js';

/** An optional package a feature needs is not installed. */
export class MissingDependencyError extends Error {
  readonly code = 'ERR_MISSING_DEPENDENCY';
  /** The npm package to install. */
  readonly dependency: string;
  constructor(dependency: string, feature: string, options: { cause?: unknown; notBuilt?: boolean } = {}) {
    super(
      options.notBuilt
        ? `${feature} needs the native binding of ${dependency}, which is installed but not built (its install script did not run or failed): npm rebuild ${dependency}`
        : `${feature} needs the optional package ${dependency}: npm install ${dependency}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'MissingDependencyError';
    this.dependency = dependency;
  }
}

let loaded: typeof DatabaseConstructor | undefined;

/**
 * better-sqlite3, loaded the first time a SQLite store is opened — never when the package is
 * imported: a service that keeps its history in memory (or in another engine) must neither load a
 * native module it does not use nor fail to start where that module cannot be built. It is a
 * CommonJS package, so require() loads it synchronously and sqliteStore() stays synchronous.
 */
function loadDatabase(): typeof DatabaseConstructor {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  // Resolved first, so only the package itself being absent is reported as missing; a package that
  // is there but fails to load (a native build for another Node) throws its own error.
  try {
    require.resolve('better-sqlite3');
  } catch (e) {
    throw new MissingDependencyError('better-sqlite3', 'the SQLite store', { cause: e });
  }
  loaded = require('better-sqlite3') as typeof DatabaseConstructor;
  return loaded;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS rounds (
  id INTEGER PRIMARY KEY,
  round_id TEXT NOT NULL,
  params TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  ended_at INTEGER,
  outcome TEXT NOT NULL,
  code TEXT,
  reason TEXT,
  stage TEXT NOT NULL,
  stages TEXT NOT NULL,
  included TEXT,
  sum BLOB,
  dp TEXT,
  shards TEXT
);`;

interface Row {
  id: number;
  round_id: string;
  params: string;
  started_at: number;
  ended_at: number | null;
  outcome: string;
  code: string | null;
  reason: string | null;
  stage: string;
  stages: string;
  included: string | null;
  sum?: Buffer | null;
  dp?: string | null;
  shards?: string | null;
}

function fromRow(r: Row): RoundRecord {
  const rec: RoundRecord = {
    id: r.id,
    roundId: r.round_id,
    params: JSON.parse(r.params) as RoundRecord['params'],
    startedAt: r.started_at,
    endedAt: r.ended_at,
    outcome: r.outcome as RoundRecord['outcome'],
    code: r.code,
    reason: r.reason,
    stage: r.stage,
    stages: JSON.parse(r.stages) as RoundRecord['stages'],
    included: r.included === null ? null : (JSON.parse(r.included) as number[]),
  };
  if (typeof r.dp === 'string') rec.dp = JSON.parse(r.dp) as NonNullable<RoundRecord['dp']>;
  if (typeof r.shards === 'string') rec.shards = JSON.parse(r.shards) as NonNullable<RoundRecord['shards']>;
  if (r.sum !== undefined) rec.sum = r.sum === null ? null : new Uint32Array(new Uint8Array(r.sum).buffer);
  return rec;
}

/**
 * The native addon could not be found or loaded: installed with --ignore-scripts (or where npm
 * blocks dependency install scripts), a failed build, or a build for another Node ABI.
 */
const BINDING_FAILURE =
  /Could not locate the bindings file|NODE_MODULE_VERSION|was compiled against a different Node|invalid ELF header|cannot open shared object|wrong ELF class/;

/**
 * Open (or create) the history file at `path`. Throws MissingDependencyError when better-sqlite3
 * is not installed, or installed without its native binding.
 */
export function sqliteStore(path: string): RoundStore {
  const Database = loadDatabase();
  let db: InstanceType<typeof DatabaseConstructor>;
  try {
    db = new Database(path);
  } catch (e) {
    if (e instanceof Error && BINDING_FAILURE.test(e.message))
      throw new MissingDependencyError('better-sqlite3', 'the SQLite store', { cause: e, notBuilt: true });
    throw e;
  }
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec(SCHEMA);
  // Older files lack the columns added since: dp (DP rounds; their rows read as no DP) and shards
  // (a cluster round's shard outcomes; their rows read as one-process rounds).
  const columns = (db.prepare('PRAGMA table_info(rounds)').all() as Array<{ name: string }>).map((c) => c.name);
  if (!columns.includes('dp')) db.exec('ALTER TABLE rounds ADD COLUMN dp TEXT');
  if (!columns.includes('shards')) db.exec('ALTER TABLE rounds ADD COLUMN shards TEXT');
  const insert = db.prepare(
    `INSERT INTO rounds (round_id, params, started_at, ended_at, outcome, code, reason, stage, stages, included, sum, dp, shards)
     VALUES (@round_id, @params, @started_at, @ended_at, @outcome, @code, @reason, @stage, @stages, @included, @sum, @dp, @shards)`,
  );
  const update = db.prepare(
    `UPDATE rounds SET ended_at=@ended_at, outcome=@outcome, code=@code, reason=@reason, stage=@stage, stages=@stages,
     included=@included, sum=@sum, dp=@dp, shards=@shards WHERE id=@id`,
  );
  const toRow = (r: Omit<RoundRecord, 'id'>) => ({
    round_id: r.roundId,
    params: JSON.stringify(r.params),
    started_at: r.startedAt,
    ended_at: r.endedAt,
    outcome: r.outcome,
    code: r.code,
    reason: r.reason,
    stage: r.stage,
    stages: JSON.stringify(r.stages),
    included: r.included === null ? null : JSON.stringify(r.included),
    sum: r.sum ? Buffer.from(r.sum.buffer, r.sum.byteOffset, r.sum.byteLength) : null,
    dp: r.dp ? JSON.stringify(r.dp) : null,
    shards: r.shards ? JSON.stringify(r.shards) : null,
  });
  const getOne = db.prepare('SELECT * FROM rounds WHERE id = ?');
  const listSome = db.prepare(
    'SELECT id, round_id, params, started_at, ended_at, outcome, code, reason, stage, stages, included, dp, shards FROM rounds ORDER BY id DESC LIMIT ?',
  );
  const latestDpRow = db.prepare('SELECT dp FROM rounds WHERE dp LIKE \'%"cumulativeRdp":[%\' ORDER BY id DESC LIMIT 1');
  const outcomes = db.prepare('SELECT outcome, COUNT(*) AS n FROM rounds GROUP BY outcome');
  const unfinished = db.prepare("SELECT id FROM rounds WHERE outcome = 'running'");
  const abortOne = db.prepare("UPDATE rounds SET outcome='aborted', code=?, reason=?, ended_at=?, sum=NULL, included=NULL WHERE id=?");
  return {
    async begin(record) {
      return Number(insert.run(toRow(record)).lastInsertRowid);
    },
    async save(record) {
      update.run({ ...toRow(record), id: record.id });
    },
    async get(id) {
      const r = getOne.get(id) as Row | undefined;
      return r && fromRow(r);
    },
    async list(options = {}) {
      return (listSome.all(options.limit ?? 100) as Row[]).map(fromRow);
    },
    async countOutcomes() {
      const counts: Record<RoundOutcome, number> = { running: 0, completed: 0, aborted: 0 };
      for (const { outcome, n } of outcomes.all() as Array<{ outcome: string; n: number }>)
        if (outcome === 'running' || outcome === 'completed' || outcome === 'aborted') counts[outcome] = n;
      return counts;
    },
    async abortUnfinished(code, reason, at) {
      const ids = (unfinished.all() as Array<{ id: number }>).map((r) => r.id);
      db.transaction(() => {
        for (const id of ids) abortOne.run(code, reason, at, id);
      })();
      return ids;
    },
    async latestDp() {
      const r = latestDpRow.get() as { dp: string } | undefined;
      return r && dpHistoryOf({ dp: JSON.parse(r.dp) as NonNullable<RoundRecord['dp']> });
    },
    async close() {
      db.close();
    },
  };
}
