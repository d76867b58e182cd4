import { readFileSync } from 'node:fs';
import { parseKey } from '../identity/index.js';
import { signJwt } from '../server/token.js';
import { fail, parseFlags } from './args.js';

export const TOKEN_HELP = `Usage: secagg token --client ID (--secret S | --issuer-seed HEX) [--ttl 1h] [--audience A] [--issuer I] [--identity-key KEY]

Prints a JWT the service accepts (RFC 7519): HS256 under the service's --secret, or EdDSA under an
issuer's 32-byte Ed25519 seed whose public key the service lists. Any backend can mint the same
token with its own JWT library: docs/service.md shows the claims.

Options:
  --client ID          the token's subject: the client's identity (one connection per identity)
  --secret S           shared secret (or SECAGG_SECRET); at least 16 bytes
  --issuer-seed HEX    Ed25519 issuer seed, 64 hex digits, or @FILE holding them
  --ttl DURATION       lifetime: 90s, 30m, 12h, 7d (default 1h)
  --audience A         aud claim (the service checks it when it is configured with one)
  --issuer I           iss claim
  --identity-key KEY   active mode: bind the token to the client's Ed25519 identity key (hex or base64url)
  -h, --help           this text`;

/** 90s, 30m, 12h, 7d → ms. */
function duration(s: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(s);
  if (!m) fail(`--ttl: ${s} is not a duration like 90s, 30m, 12h or 7d`);
  const n = Number(m[1]) * { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2] as 's' | 'm' | 'h' | 'd'];
  if (n <= 0 || n > 366 * 86400e3) fail('--ttl must be between 1 s and a year');
  return n;
}

export async function runToken(argv: string[]): Promise<number> {
  const a = parseFlags(
    argv,
    {
      client: { type: 'string' },
      secret: { type: 'string' },
      'issuer-seed': { type: 'string' },
      ttl: { type: 'string' },
      audience: { type: 'string' },
      issuer: { type: 'string' },
      'identity-key': { type: 'string' },
    },
    TOKEN_HELP,
  );
  if (!a) return 0;
  if (a.client === undefined) fail('give --client ID');
  const secret = a.secret ?? process.env['SECAGG_SECRET'];
  const seedText = a['issuer-seed'];
  if ((secret === undefined) === (seedText === undefined)) fail('give exactly one of --secret (or SECAGG_SECRET) and --issuer-seed');
  const expiresAt = Date.now() + duration(a.ttl ?? '1h');
  const identityKey = a['identity-key'] === undefined ? undefined : parseKey(a['identity-key'], '--identity-key');
  let key: { secret: string } | { issuerSeed: Uint8Array };
  if (secret !== undefined) {
    if (new TextEncoder().encode(secret).length < 16) fail('--secret must be at least 16 bytes');
    key = { secret };
  } else {
    const hex = (seedText!.startsWith('@') ? readFileSync(seedText!.slice(1), 'utf8') : seedText!).trim();
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) fail('--issuer-seed must be 64 hex digits (32 bytes)');
    key = { issuerSeed: Uint8Array.from(Buffer.from(hex, 'hex')) };
  }
  const token = await signJwt({ clientId: a.client, expiresAt, ...(identityKey ? { identityKey } : {}) }, key, {
    ...(a.audience !== undefined ? { audience: a.audience } : {}),
    ...(a.issuer !== undefined ? { issuer: a.issuer } : {}),
  });
  process.stdout.write(`${token}\n`);
  return 0;
}
