import { randomRingVector } from '../sim/random.js';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import WebSocket from 'ws';
import { participate, isClientError, type RoundInfo, type ParticipateOptions } from '../client/index.js';
import { generateIdentity, identityPublicKey, parseKey, toHex } from '../identity/index.js';
import type { WebSocketConstructor } from '../transport/socket.js';
import { UsageError, fail, intFlag as num, parseFlags } from './args.js';

export const CLIENT_HELP = `Usage: secagg client --url URL --token TOKEN [--input FILE | --random M] [options]

Connects to an aggregation service, waits for a round and contributes a vector. Prints one JSON
report per round on stdout.

Options:
  --url URL        ws://host:port/ws of the service
  --token TOKEN    bearer token (or env SECAGG_TOKEN)
  --ca FILE        PEM CA certificate(s) to trust for a wss:// service (besides the system's)
  --input FILE     the vector: a JSON array of integers, or raw little-endian uint32
  --random M       a random vector of M elements (< 2^bits of the round)
  --rounds R       rounds to take part in (default 1)
  --dp-min-variance V
                   refuse (before sending anything) a round whose differential-privacy noise
                   is below V per coordinate in ring units, or that has none
  -h, --help       this text

Active mode (servers run with --mode active):
  --identity FILE        the long-term Ed25519 identity seed (hex); created (mode 0600) when FILE
                         does not exist. The token must be bound to its public key.
  --show-identity        print the identity's public key (hex) and exit
  --directory FILE       pinned directory: JSON { "name": "public key hex", ... } from a source you
                         trust; every cohort member's key must match it
  --issuer-key HEX|@FILE pinned issuer public key: every cohort member needs its certificate
  --certificate C|@FILE  this client's certificate from the issuer
  --server-id ID         refuse a server whose challenge names another id
  --trust MODE           pinned | issuer | pinned+issuer | server: what the cohort's keys are
                         checked against (default: implied by --directory / --issuer-key). With
                         neither, --trust server must be given: it takes the server's directory as
                         sent, with no protection against a server substituting keys (docs/service.md).

Exit code 0 when the input was in every round's sum, 1 when a round ended without it, 2 for bad
arguments, 3 when the server refused the token or could not be reached, 4 when an identity check
failed (the server's directory does not match the pinned directory / issuer certificates).`;

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

export async function runClient(argv: string[]): Promise<number> {
  const a = parseFlags(
    argv,
    {
      url: { type: 'string' },
      token: { type: 'string' },
      ca: { type: 'string' },
      input: { type: 'string' },
      random: { type: 'string' },
      rounds: { type: 'string' },
      identity: { type: 'string' },
      'show-identity': { type: 'boolean' },
      directory: { type: 'string' },
      'issuer-key': { type: 'string' },
      certificate: { type: 'string' },
      'server-id': { type: 'string' },
      trust: { type: 'string' },
      'dp-min-variance': { type: 'string' },
    },
    CLIENT_HELP,
  );
  if (!a) return 0;
  const active: Partial<ParticipateOptions> = {};
  if (a.identity !== undefined) {
    const seed = loadOrCreateIdentity(a.identity);
    const pub = toHex(await identityPublicKey(seed));
    if (a['show-identity']) {
      process.stdout.write(pub + '\n');
      return 0;
    }
    process.stderr.write(`identity public key ${pub}\n`);
    Object.assign(active, { identity: seed });
  } else if (a['show-identity']) fail('--show-identity needs --identity FILE');
  const fileOrValue = (v: string) => (v.startsWith('@') ? readFileSync(v.slice(1), 'utf8').trim() : v);
  try {
    if (a.directory !== undefined) {
      const dir = JSON.parse(readFileSync(a.directory, 'utf8')) as unknown;
      if (typeof dir !== 'object' || dir === null || Array.isArray(dir) || !Object.values(dir).every((v) => typeof v === 'string'))
        fail(`${a.directory}: expected a JSON object of name → public key hex`);
      Object.assign(active, { directory: Object.fromEntries(Object.entries(dir as Record<string, string>).map(([k, v]) => [k, parseKey(v, `key of ${k}`)])) });
    }
    if (a['issuer-key'] !== undefined) Object.assign(active, { issuerKey: parseKey(fileOrValue(a['issuer-key']), '--issuer-key') });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    fail((e as Error).message);
  }
  if (a.certificate !== undefined) Object.assign(active, { certificate: fileOrValue(a.certificate) });
  if (a['server-id'] !== undefined) Object.assign(active, { serverId: a['server-id'] });
  if ((active.directory !== undefined || active.issuerKey !== undefined || a.trust !== undefined) && active.identity === undefined)
    fail('--directory, --issuer-key and --trust need --identity');
  if (a.trust !== undefined) {
    if (!['pinned', 'issuer', 'pinned+issuer', 'server'].includes(a.trust)) fail(`--trust must be pinned, issuer, pinned+issuer or server, got '${a.trust}'`);
    const given =
      active.directory !== undefined && active.issuerKey !== undefined
        ? 'pinned+issuer'
        : active.directory !== undefined
          ? 'pinned'
          : active.issuerKey !== undefined
            ? 'issuer'
            : 'server';
    if (a.trust !== given) fail(`--trust ${a.trust} does not match what was given (${given === 'server' ? 'neither --directory nor --issuer-key' : given})`);
    Object.assign(active, { trust: a.trust });
  } else if (active.identity !== undefined && active.directory === undefined && active.issuerKey === undefined)
    fail("--identity needs --directory and/or --issuer-key to check the cohort's identity keys, or --trust server to take the server's word for them");
  const url = a.url ?? fail('--url is required');
  const token = a.token ?? process.env['SECAGG_TOKEN'] ?? fail('--token is required');
  if ((a.input === undefined) === (a.random === undefined)) fail('give exactly one of --input FILE and --random M');
  let dp: ParticipateOptions['dp'];
  if (a['dp-min-variance'] !== undefined) {
    const v = Number(a['dp-min-variance']);
    if (!(v > 0 && Number.isFinite(v))) fail(`--dp-min-variance must be a positive number, got '${a['dp-min-variance']}'`);
    dp = { minTargetVariance: v, required: true };
  }
  const fixed = a.input !== undefined ? readVector(a.input) : undefined;
  const m = a.random !== undefined ? num(a.random, 'random', 0, 1, 1 << 26) : undefined;
  const inputProvider = (r: RoundInfo): Uint32Array => {
    if (fixed) return fixed;
    if (m !== r.dimension) process.stderr.write(`secagg client: the round wants ${r.dimension} elements, --random gave ${m}\n`);
    return randomRingVector(m!, r.bits);
  };
  try {
    const reports = await participate({
      url,
      token,
      inputProvider,
      ...active,
      ...(dp ? { dp } : {}),
      rounds: num(a.rounds, 'rounds', 1, 1, 1e9),
      WebSocket: socketFor(a.ca),
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
      return e.code === 'ERR_INPUT' ? 2 : e.code === 'ERR_IDENTITY' ? 4 : 3;
    }
    throw e;
  }
}

/** Read a 32-byte identity seed (hex) from `path`, or create one there (mode 0600). */
export function loadOrCreateIdentity(path: string): Uint8Array {
  if (existsSync(path)) {
    const raw = readFileSync(path);
    const text = raw.toString('utf8').trim();
    if (/^[0-9a-fA-F]{64}$/.test(text)) return Uint8Array.from(Buffer.from(text, 'hex'));
    if (raw.length === 32) return new Uint8Array(raw);
    return fail(`${path}: expected a 32-byte identity seed as 64 hex characters`);
  }
  const seed = generateIdentity();
  writeFileSync(path, toHex(seed) + '\n', { mode: 0o600, flag: 'wx' });
  process.stderr.write(`created a new identity in ${path}\n`);
  return seed;
}

/** The ws WebSocket, trusting the CA in `caFile` (PEM) as well when given: a private CA for wss://. */
function socketFor(caFile: string | undefined): WebSocketConstructor {
  if (caFile === undefined) return WebSocket as unknown as WebSocketConstructor;
  let ca: string;
  try {
    ca = readFileSync(caFile, 'utf8');
  } catch (e) {
    return fail(`--ca: cannot read ${caFile} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) fail(`--ca: ${caFile} holds no PEM certificate`);
  // Node's TLS replaces its default CAs with `ca`: add the bundled roots so public certificates still verify.
  const cas = [ca, ...rootCertificates];
  class TrustingWebSocket extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, { ca: cas });
    }
  }
  return TrustingWebSocket as unknown as WebSocketConstructor;
}
