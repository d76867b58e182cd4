/**
 * The PostgreSQL round store against a real PostgreSQL (pgHarness.ts: one throwaway server for
 * this file, each test in a schema of its own): the RoundStore contract of storeSuite.ts, then what
 * only a shared database has — several coordinators on one history, a layout made once and
 * versioned, a database that cannot be reached — and the service and CLI opening it from a URL.
 * (That a memory-store server never loads pg is checked with better-sqlite3 in sqlite-lazy.test.ts.)
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer as createTcpServer, connect, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { isPostgresUrl, postgresStore, StoreSchemaError, StoreUnavailableError } from '../src/server/pgStore.js';
import { createServer, silentLogger } from '../src/server/index.js';
import type { RoundStore } from '../src/server/store.js';
import { describeRoundStore, record } from './storeSuite.js';
import { assertSum, nextResult, nodeClient, startServer, vector } from './serviceHelpers.js';
import { startPostgres } from './pgHarness.js';
import { freePort } from '../src/cluster/daemon.js';

const db = await startPostgres();
after(() => db.stop());

let schemas = 0;
/** A schema no other test uses: a fresh, empty store. */
const freshSchema = () => `t${++schemas}`;

describeRoundStore(
  'PostgreSQL store',
  async () => {
    const schema = freshSchema();
    let store = await postgresStore(db.url, { schema });
    return {
      store,
      // A restart: the pool closed, a new store on the same database and schema.
      reopen: async () => {
        await store.close();
        return (store = await postgresStore(db.url, { schema }));
      },
    };
  },
  { persistent: true },
);

/** Run `sql` on the test database directly (not through the store). */
async function sql<R extends Record<string, unknown>>(text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('PostgreSQL: four stores opened at once on one new schema (coordinators starting together) make the layout once; two of them beginning 60 rounds concurrently get distinct numbers and both see every record', async () => {
  const schema = freshSchema();
  const stores = await Promise.all(range(1, 4).map(() => postgresStore(db.url, { schema })));
  try {
    assert.deepEqual(await sql(`SELECT version FROM ${schema}.schema_version`), [{ version: 1 }], 'one version row');
    const [a, b] = stores as [RoundStore, RoundStore];
    const ids = await Promise.all(range(0, 59).map((i) => (i % 2 ? a : b).begin(record(i))));
    assert.equal(new Set(ids).size, 60, 'no number given twice');
    assert.deepEqual(
      [...ids].sort((x, y) => x - y),
      range(1, 60),
    );
    for (const s of stores) {
      assert.deepEqual(
        (await s.list({ limit: 1000 })).map((r) => r.id),
        range(1, 60).reverse(),
      );
      assert.deepEqual(await s.countOutcomes(), { running: 60, completed: 0, aborted: 0 });
    }
    // What one saves the other reads, sum included.
    const first = ids[0]!;
    await a.save({ ...record(0), id: first, outcome: 'completed', endedAt: 5000, included: [1, 2], sum: new Uint32Array([1, 0xffffffff, 3, 4]) });
    const seen = (await b.get(first))!;
    assert.equal(seen.outcome, 'completed');
    assert.deepEqual(seen.sum, new Uint32Array([1, 0xffffffff, 3, 4]));
    // save is an upsert: a record no store began is inserted, and begin skips the number it took.
    await b.save({ ...record(61), id: 61, outcome: 'aborted', code: 'ERR_TIMEOUT', reason: 'x', endedAt: 6000 });
    assert.equal((await a.get(61))!.code, 'ERR_TIMEOUT');
    assert.equal(await a.begin(record(62)), 62, 'the number a save took is not given out again');
    // Saving twice replaces (no second row).
    await b.save({ ...record(61), id: 61, outcome: 'aborted', code: 'ERR_SHUTDOWN', reason: 'y', endedAt: 6001 });
    assert.deepEqual(await sql(`SELECT count(*)::int AS n, max(code) AS code FROM ${schema}.rounds WHERE id = 61`), [{ n: 1, code: 'ERR_SHUTDOWN' }]);
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
});

test('PostgreSQL: the layout is versioned — a schema written by a newer secagg is refused with StoreSchemaError; the URL’s ?schema= picks the schema; a bad schema name is a RangeError', async () => {
  const schema = freshSchema();
  await (await postgresStore(db.url, { schema })).close();
  const columns = await sql<{ column_name: string; data_type: string }>(
    'SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position',
    [schema, 'rounds'],
  );
  assert.deepEqual(Object.fromEntries(columns.map((c) => [c.column_name, c.data_type])), {
    id: 'bigint',
    round_id: 'text',
    params: 'jsonb',
    started_at: 'double precision',
    ended_at: 'double precision',
    outcome: 'text',
    code: 'text',
    reason: 'text',
    stage: 'text',
    stages: 'jsonb',
    included: 'jsonb',
    sum: 'bytea',
    dp: 'jsonb',
    shards: 'jsonb',
  });
  await sql(`UPDATE ${schema}.schema_version SET version = 2`);
  await assert.rejects(postgresStore(db.url, { schema }), (e: unknown) => {
    assert.ok(e instanceof StoreSchemaError);
    assert.equal(e.code, 'ERR_STORE_SCHEMA');
    assert.equal(e.found, 2);
    assert.match(e.message, /has layout version 2; this secagg reads up to 1: upgrade secagg/);
    return true;
  });
  const viaUrl = freshSchema();
  const store = await postgresStore(`${db.url}?schema=${viaUrl}`);
  assert.equal(await store.begin(record(0)), 1);
  await store.close();
  assert.deepEqual(await sql(`SELECT count(*)::int AS n FROM ${viaUrl}.rounds`), [{ n: 1 }]);
  for (const bad of ['a-b', '1x', 'x'.repeat(64), 'a"; DROP TABLE x; --']) await assert.rejects(postgresStore(db.url, { schema: bad }), RangeError, bad);
  assert.ok(isPostgresUrl('postgres://h/db') && isPostgresUrl('postgresql://h/db') && !isPostgresUrl('history.db') && !isPostgresUrl('postgres.db'));
});

test('PostgreSQL: a role with only USAGE on the schema and SELECT, INSERT, UPDATE on its tables uses a layout an administrator made (no DDL once it exists)', async () => {
  const schema = freshSchema();
  await (await postgresStore(db.url, { schema })).close();
  await sql(`CREATE ROLE writer_${schema} LOGIN; GRANT USAGE ON SCHEMA ${schema} TO writer_${schema};
    GRANT SELECT, INSERT, UPDATE ON ${schema}.rounds, ${schema}.schema_version TO writer_${schema}`);
  const store = await postgresStore(db.url.replace('postgres@', `writer_${schema}@`), { schema });
  try {
    const id = await store.begin(record(0));
    await store.save({ ...record(0), id, outcome: 'completed', included: [1, 2], sum: new Uint32Array(4) });
    await store.begin(record(1));
    assert.deepEqual(await store.abortUnfinished('ERR_INTERRUPTED', 'restart', 3), [2]);
    assert.deepEqual(await store.countOutcomes(), { running: 0, completed: 1, aborted: 1 });
  } finally {
    await store.close();
  }
  // It may not make a layout: pg's own error, not StoreUnavailableError.
  await assert.rejects(postgresStore(db.url.replace('postgres@', `writer_${schema}@`), { schema: freshSchema() }), (e: unknown) => {
    assert.ok(!(e instanceof StoreUnavailableError));
    assert.equal((e as { code?: string }).code, '42501'); // insufficient_privilege
    return true;
  });
});

/** A TCP proxy to the test database that the test can take down (every connection cut, new ones refused) and bring back. */
async function proxy(): Promise<{ port: number; down: () => void; up: () => void; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let isDown = false;
  const server: Server = createTcpServer((client) => {
    client.on('error', () => undefined);
    if (isDown) return void client.destroy();
    const upstream = connect(db.port, db.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const down = () => {
    isDown = true;
    for (const s of sockets) s.destroy();
  };
  return {
    port: (server.address() as { port: number }).port,
    down,
    up: () => void (isDown = false),
    close: async () => {
      down();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test('PostgreSQL: a database that cannot be reached is a StoreUnavailableError naming host and port — refused, silent (connect timeout), and lost after opening', async () => {
  const nothing = await freePort();
  const refused = (e: unknown) => {
    assert.ok(e instanceof StoreUnavailableError, String(e));
    assert.equal(e.code, 'ERR_STORE_UNAVAILABLE');
    assert.equal(e.message, `the PostgreSQL store cannot reach 127.0.0.1:${nothing} (ECONNREFUSED)`);
    assert.deepEqual([e.host, e.port], ['127.0.0.1', nothing]);
    return true;
  };
  await assert.rejects(postgresStore(`postgres://postgres:secret@127.0.0.1:${nothing}/postgres`), refused);
  await assert.rejects(postgresStore({ host: '127.0.0.1', port: nothing, user: 'postgres' }), refused);
  // A server that accepts the connection and never answers: the connect timeout, not a hang.
  const held: Socket[] = [];
  const silent = createTcpServer((s) => held.push(s)).listen(0, '127.0.0.1');
  await once(silent, 'listening');
  const silentPort = (silent.address() as { port: number }).port;
  try {
    const t0 = Date.now();
    await assert.rejects(postgresStore({ host: '127.0.0.1', port: silentPort, user: 'postgres' }, { connectTimeoutMs: 300 }), (e: unknown) => {
      assert.ok(e instanceof StoreUnavailableError, String(e));
      assert.match(e.message, new RegExp(`^the PostgreSQL store cannot reach 127\\.0\\.0\\.1:${silentPort} \\(.*timeout`));
      return true;
    });
    assert.ok(Date.now() - t0 < 5000, 'gave up after about the timeout');
  } finally {
    for (const s of held) s.destroy();
    silent.close();
  }
  // Open through a proxy, then lose the database: the next calls reject with the typed error.
  const p = await proxy();
  const store = await postgresStore({ host: '127.0.0.1', port: p.port, user: 'postgres', database: 'postgres' }, { schema: freshSchema() });
  assert.equal(await store.begin(record(0)), 1);
  p.down();
  for (const call of [() => store.get(1), () => store.begin(record(1)), () => store.countOutcomes()])
    await assert.rejects(call(), (e: unknown) => e instanceof StoreUnavailableError && e.port === p.port);
  p.up();
  assert.equal((await store.get(1))?.id, 1, 'and it works again once the database is back');
  await store.close();
  await p.close();
});

test('PostgreSQL: ServiceOptions.historyFile takes a postgres:// URL — the server keeps its history there (a round left running is aborted at start) and closes it', async () => {
  const schema = freshSchema();
  const url = `${db.url}?schema=${schema}`;
  const before = await postgresStore(url);
  const left = await before.begin(record(0));
  await before.close();
  const server = await createServer({ historyFile: url, tokens: ['t'], logger: silentLogger, unmaskWorkers: 0 });
  const aborted = (await server.store.get(left))!;
  assert.equal(aborted.outcome, 'aborted');
  assert.equal(aborted.code, 'ERR_INTERRUPTED');
  await server.close();
  await assert.rejects(server.store.list(), 'the store is closed with the server');
});

test('PostgreSQL: a round of the service keeps its record there — the sum (bytea) reads back as published; with the database down when a round would start, the service stays up, that round is not run (ERR_STORE, nothing stored) and the next one, once it is back, completes', {
  timeout: 30_000,
}, async () => {
  const p = await proxy();
  const store = await postgresStore({ host: '127.0.0.1', port: p.port, user: 'postgres', database: 'postgres' }, { schema: freshSchema() });
  const server = await startServer({ store, minClients: 3 });
  try {
    const m = 64;
    const bits = 16;
    const ended: Array<{ id: number; code: string | null }> = [];
    server.onRoundEnd((r) => {
      ended.push({ id: r.id, code: r.code });
      p.up(); // back after the first attempt
    });
    p.down();
    const published = nextResult(server);
    const clients = [0, 1, 2].map((i) => nodeClient(server, `c${i}`, vector(i, m, bits)));
    const result = await published;
    await Promise.all(clients.map((c) => c.done));
    assertSum(result, clients, m, bits);
    assert.deepEqual(ended[0], { id: 0, code: 'ERR_STORE' }, 'the round the history could not record');
    assert.deepEqual(ended.at(-1), { id: result.round, code: null });
    const stored = (await store.list()).map((r) => [r.id, r.outcome]);
    assert.deepEqual(stored, [[result.round, 'completed']], 'only the round that ran is in the history');
    const got = (await store.get(result.round))!;
    assert.deepEqual(got.sum, result.sum);
    assert.deepEqual(got.included, [...result.included]);
    // jsonb orders keys its own way: the stages still read back in round order (as the CLI prints them).
    assert.deepEqual(Object.keys(got.stages), ['advertise', 'share', 'masked', 'unmask']);
    assert.deepEqual(Object.keys((await store.list())[0]!.stages), ['advertise', 'share', 'masked', 'unmask']);
  } finally {
    await server.close();
    await p.close();
  }
});

const CLI = new URL('../src/cli/main.js', import.meta.url).pathname;

/** Run the CLI to its end (asynchronously: the CLI runs below run side by side). */
async function cli(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [status] = (await once(child, 'exit')) as [number | null];
  return { status, stdout, stderr };
}

test('PostgreSQL: secagg serve --history postgres://… keeps the history there and secagg rounds --history postgres://… lists it; an unreachable database is one line and exit 8', async () => {
  const nothing = await freePort();
  const unreachable = `postgres://u:pw@127.0.0.1:${nothing}/db`;
  // (secagg rounds maps the error through the same main.ts code: one child process fewer.)
  const refused = cli('serve', '--tokens', 't', '--port', '0', '--history', unreachable);
  const url = `${db.url}?schema=${freshSchema()}`;
  const seed = await postgresStore(url);
  await seed.save({ ...record(0), id: await seed.begin(record(0)), outcome: 'completed', endedAt: 2000, included: [1, 2, 3] });
  await seed.begin(record(1)); // left running: the server aborts it at start
  await seed.close();
  const serve = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--tokens', 't', '--history', url, '--log-level', 'error', '--workers', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  serve.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [line] = (await once(serve.stdout, 'data')) as [Buffer];
  const port = /"url":"ws:\/\/127\.0\.0\.1:(\d+)\/ws"/.exec(line.toString())?.[1];
  assert.ok(port, line.toString() + stderr);
  // An answer means the tick that printed the line, and installed the SIGTERM handler, is over.
  assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  serve.kill('SIGTERM');
  const [code] = (await once(serve, 'exit')) as [number | null];
  assert.equal(code, 0, stderr);
  const rounds = await cli('rounds', '--history', url, '--json');
  assert.equal(rounds.status, 0, rounds.stderr);
  const listed = JSON.parse(rounds.stdout) as Array<{ id: number; outcome: string; code: string | null }>;
  assert.deepEqual(
    listed.map((r) => [r.id, r.outcome, r.code]),
    [
      [2, 'aborted', 'ERR_INTERRUPTED'],
      [1, 'completed', null],
    ],
  );
  const r = await refused;
  assert.equal(r.status, 8, r.stderr);
  assert.equal(r.stderr, `secagg serve: the PostgreSQL store cannot reach 127.0.0.1:${nothing} (ECONNREFUSED)\n`, 'one line, and no password');
});
