import { existsSync } from 'node:fs';
import { sqliteStore } from '../server/sqliteStore.js';
import { isPostgresUrl, postgresStore } from '../server/pgStore.js';
import type { RoundRecord } from '../server/store.js';
import { EXIT, intFlag as num, parseFlags } from './args.js';

export const ROUNDS_HELP = `Usage: secagg rounds [--history FILE|URL] [--id N] [--json] [--limit N]

Lists the rounds in a server's history (newest first), or shows one with --id.

Options:
  --history FILE|URL
                   the server's --history: a SQLite file (default secagg-history.db) or a
                   postgres:// URL
  --id N           show round N (with its sum under --json)
  --limit N        rounds to list (default 50)
  --json           JSON output
  -h, --help       this text`;

const secs = (r: RoundRecord) => (r.endedAt === null ? '…' : `${((r.endedAt - r.startedAt) / 1000).toFixed(2)} s`);

export async function runRounds(argv: string[]): Promise<number> {
  const a = parseFlags(argv, { history: { type: 'string' }, id: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } }, ROUNDS_HELP);
  if (!a) return 0;
  const path = a.history ?? 'secagg-history.db';
  const postgres = isPostgresUrl(path);
  if (!postgres && !existsSync(path)) {
    process.stderr.write(`secagg rounds: ${path}: no such file (ENOENT): give the server's --history FILE\n`);
    return EXIT.FILE;
  }
  const store = postgres ? await postgresStore(path) : sqliteStore(path);
  try {
    if (a.id !== undefined) {
      const r = await store.get(num(a.id, 'id', 0, 1, Number.MAX_SAFE_INTEGER));
      if (!r) {
        process.stderr.write(`secagg rounds: no round ${a.id}\n`);
        return 1;
      }
      if (a.json) process.stdout.write(JSON.stringify({ ...r, sum: r.sum ? Array.from(r.sum) : null }) + '\n');
      else {
        const lines = [
          `round ${r.id} (${r.roundId}): ${r.outcome}${r.code ? ` ${r.code}: ${r.reason}` : ''}`,
          `  started ${new Date(r.startedAt).toISOString()}, ${secs(r)}`,
          `  parameters: cohort ${r.params.cohort}, m ${r.params.dimension}, bits ${r.params.bits}, k ${r.params.degree}, t ${r.params.threshold}, ${r.params.mode}`,
          ...Object.entries(r.stages).map(
            ([s, v]) =>
              `  ${s.padEnd(12)} ${String(v.clients).padStart(6)} clients ${((v.endedAt - v.startedAt) / 1000).toFixed(3).padStart(9)} s  in ${v.bytesIn} B  out ${v.bytesOut} B`,
          ),
          `  in the sum: ${r.included ? r.included.length : 0}`,
        ];
        process.stdout.write(lines.join('\n') + '\n');
      }
      return 0;
    }
    const list = await store.list({ limit: num(a.limit, 'limit', 50, 1, 1e9) });
    if (a.json) process.stdout.write(JSON.stringify(list) + '\n');
    else {
      process.stdout.write(
        `${'#'.padStart(5)}  ${'outcome'.padEnd(10)} ${'cohort'.padStart(6)} ${'in sum'.padStart(6)} ${'m'.padStart(8)}  duration   reason\n`,
      );
      for (const r of list)
        process.stdout.write(
          `${String(r.id).padStart(5)}  ${r.outcome.padEnd(10)} ${String(r.params.cohort).padStart(6)} ${String(r.included?.length ?? '-').padStart(6)} ${String(r.params.dimension).padStart(8)}  ${secs(r).padEnd(9)}  ${r.reason ?? ''}\n`,
        );
    }
    return 0;
  } finally {
    await store.close();
  }
}
