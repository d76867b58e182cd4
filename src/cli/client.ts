import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { participate, isClientError, type RoundInfo } from '../client/index.js';
import type { WebSocketConstructor } from '../transport/socket.js';
import { UsageError } from './simulate.js';
import { num } from './serve.js';

export const CLIENT_HELP = `Usage: secagg client --url URL --token TOKEN [--input FILE | --random M] [options]

Connects to an aggregation service, waits for a round and contributes a vector. Prints one JSON
report per round on stdout.

Options:
  --url URL        ws://host:port/ws of the service
  --token TOKEN    bearer token (or env SECAGG_TOKEN)
  --input FILE     the vector: a JSON array of integers, or raw little-endian uint32
  --random M       a random vector of M elements (< 2^bits of the round)
  --rounds R       rounds to take part in (default 1)
  -h, --help       this text

Exit code 0 when the input was in every round's sum, 1 when a round ended without it, 2 for bad
arguments, 3 when the server refused the token or could not be reached.`;

const fail = (m: string): never => {
  throw new UsageError(m);
};

export function readVector(path: string): Uint32Array {
  const raw = readFileSync(path);
  const text = raw.toString('utf8').trim();
  if (text.startsWith('[')) {
    const arr = JSON.parse(text) as unknown;
    if (!Array.isArray(arr) || !arr.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32)) fail(`${path}: expected a JSON array of uint32`);
    return Uint32Array.from(arr as number[]);
  }
  if (raw.length % 4 !== 0) fail(`${path}: raw input must be a multiple of 4 bytes`);
  return new Uint32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
}

export function randomVector(m: number, bits: number): Uint32Array {
  const v = new Uint32Array(randomBytes(4 * m).buffer);
  if (bits < 32) for (let i = 0; i < m; i++) v[i]! &= 2 ** bits - 1;
  return v;
}

export async function runClient(argv: string[]): Promise<number> {
  let a;
  try {
    a = parseArgs({
      args: argv,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        input: { type: 'string' },
        random: { type: 'string' },
        rounds: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values;
  } catch (e) {
    return fail((e as Error).message);
  }
  if (a.help) {
    process.stdout.write(CLIENT_HELP + '\n');
    return 0;
  }
  const url = a.url ?? fail('--url is required');
  const token = a.token ?? process.env['SECAGG_TOKEN'] ?? fail('--token is required');
  if ((a.input === undefined) === (a.random === undefined)) fail('give exactly one of --input FILE and --random M');
  const fixed = a.input !== undefined ? readVector(a.input) : undefined;
  const m = a.random !== undefined ? num(a.random, 'random', 0, 1, 1 << 26) : undefined;
  const inputProvider = (r: RoundInfo): Uint32Array => {
    if (fixed) return fixed;
    if (m !== r.dimension) process.stderr.write(`secagg client: the round wants ${r.dimension} elements, --random gave ${m}\n`);
    return randomVector(m!, r.bits);
  };
  try {
    const reports = await participate({
      url,
      token,
      inputProvider,
      rounds: num(a.rounds, 'rounds', 1, 1, 1e9),
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      onEvent: (e) => {
        if (e.type === 'finished') process.stdout.write(JSON.stringify(e.report) + '\n');
        else if (e.type === 'assigned') process.stderr.write(`round ${e.round.round}: assigned as client ${e.round.clientId}\n`);
        else if (e.type === 'reconnecting') process.stderr.write(`reconnecting in ${e.delayMs} ms (attempt ${e.attempt})\n`);
      },
    });
    return reports.every((r) => r.included) ? 0 : 1;
  } catch (e) {
    if (isClientError(e)) {
      process.stderr.write(`secagg client: ${e.code}: ${e.message}\n`);
      return e.code === 'ERR_INPUT' ? 2 : 3;
    }
    throw e;
  }
}
