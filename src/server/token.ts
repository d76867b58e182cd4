/**
 * Bearer tokens. Two kinds are accepted: tokens from a configured list (each names an identity),
 * and HMAC-SHA256-signed tokens `st1.<payload>.<mac>` carrying `{ clientId, expiresAt }` (base64url
 * JSON, expiresAt in ms since the epoch), made with `signToken`. Comparison is constant-time.
 *
 * Active mode: a token is bound to the client's long-term Ed25519 identity key — signed tokens carry
 * `identityKey` (base64url) in their payload, static tokens map to `{ identity, identityKey }` — and
 * the client must prove at hello that it holds that key (server.ts).
 */
import { createHmac, timingSafeEqual, createHash } from 'node:crypto';
import { fromBase64url, parseKey, toBase64url, IDENTITY_KEY_BYTES } from '../identity/index.js';

export interface TokenClaims {
  /** The identity the token stands for (one connection per identity per round). */
  readonly clientId: string;
  /** Expiry, ms since the epoch. */
  readonly expiresAt: number;
  /** Active mode: the Ed25519 identity public key (32 bytes, or hex / base64url) the token is bound to. */
  readonly identityKey?: Uint8Array | string;
}

/** A static token's identity, optionally bound to an identity key (required in active mode). */
export interface StaticTokenEntry {
  readonly identity: string;
  readonly identityKey?: Uint8Array | string;
}

const PREFIX = 'st1';

const b64url = (b: Buffer): string => b.toString('base64url');

/**
 * Sign a token for `clientId` valid until `expiresAt`.
 *
 * @example
 * ```ts
 * const token = signToken({ clientId: 'phone-17', expiresAt: Date.now() + 3600_000 }, secret);
 * ```
 */
export function signToken(claims: TokenClaims, secret: string | Uint8Array): string {
  if (typeof claims.clientId !== 'string' || claims.clientId.length === 0 || claims.clientId.length > 200)
    throw new RangeError('clientId must be a string of 1..200 characters');
  if (!Number.isFinite(claims.expiresAt)) throw new TypeError('expiresAt must be a number (ms since the epoch)');
  if (secret.length < 16) throw new RangeError('secret must be at least 16 bytes');
  const body: { clientId: string; expiresAt: number; identityKey?: string } = { clientId: claims.clientId, expiresAt: claims.expiresAt };
  if (claims.identityKey !== undefined) body.identityKey = toBase64url(keyBytes(claims.identityKey));
  const payload = b64url(Buffer.from(JSON.stringify(body)));
  return `${PREFIX}.${payload}.${b64url(createHmac('sha256', secret).update(`${PREFIX}.${payload}`).digest())}`;
}

export type TokenCheck =
  | {
      readonly ok: true;
      readonly identity: string;
      /** The bound identity key, when the token has one. */
      readonly identityKey?: Uint8Array;
      /**
       * When the token stops being valid, ms since the epoch (Infinity for static tokens). The server
       * keeps it on the connection and checks it again whenever it draws a cohort.
       */
      readonly expiresAt: number;
    }
  | { readonly ok: false; readonly reason: 'invalid' | 'expired' };

function keyBytes(k: Uint8Array | string): Uint8Array {
  if (typeof k === 'string') return parseKey(k, 'identityKey');
  if (!(k instanceof Uint8Array) || k.length !== IDENTITY_KEY_BYTES) throw new RangeError('identityKey must be 32 bytes');
  return k;
}

export interface TokenVerifierOptions {
  /** Accepted static tokens: token → identity (or `{ identity, identityKey }`), or a list of tokens, each its own identity. */
  readonly tokens?: ReadonlyMap<string, string | StaticTokenEntry> | readonly string[];
  /** Secret for signed tokens; without it only static tokens are accepted. */
  readonly secret?: string | Uint8Array;
  /** Clock, for tests. */
  readonly now?: () => number;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Build the check the server runs on every hello. */
export function createTokenVerifier(options: TokenVerifierOptions): (token: string) => TokenCheck {
  const now = options.now ?? Date.now;
  const statics = new Map<string, { identity: string; identityKey?: Uint8Array }>(); // sha256(token) hex → identity
  const list = options.tokens ?? [];
  if (Array.isArray(list))
    for (const t of list as readonly string[]) statics.set(digest(t).toString('hex'), { identity: `token:${digest(t).toString('hex').slice(0, 12)}` });
  else
    for (const [t, id] of list as ReadonlyMap<string, string | StaticTokenEntry>)
      statics.set(
        digest(t).toString('hex'),
        typeof id === 'string'
          ? { identity: id }
          : { identity: id.identity, ...(id.identityKey !== undefined ? { identityKey: keyBytes(id.identityKey) } : {}) },
      );
  const secret = options.secret;
  return (token) => {
    if (typeof token !== 'string' || token.length === 0 || token.length > 2048) return { ok: false, reason: 'invalid' };
    // Hashing first makes the map lookup independent of how much of the token matches.
    const known = statics.get(digest(token).toString('hex'));
    if (known !== undefined) return { ok: true, ...known, expiresAt: Infinity };
    if (secret === undefined) return { ok: false, reason: 'invalid' };
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== PREFIX) return { ok: false, reason: 'invalid' };
    const expected = createHmac('sha256', secret).update(`${PREFIX}.${parts[1]}`).digest();
    const got = Buffer.from(parts[2]!, 'base64url');
    if (got.length !== expected.length || !timingSafeEqual(got, expected)) return { ok: false, reason: 'invalid' };
    let claims: unknown;
    try {
      claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    } catch {
      return { ok: false, reason: 'invalid' };
    }
    const c = claims as { clientId?: unknown; expiresAt?: unknown; identityKey?: unknown };
    if (typeof c.clientId !== 'string' || typeof c.expiresAt !== 'number') return { ok: false, reason: 'invalid' };
    let identityKey: Uint8Array | undefined;
    if (c.identityKey !== undefined) {
      identityKey = typeof c.identityKey === 'string' ? fromBase64url(c.identityKey) : undefined;
      if (identityKey === undefined || identityKey.length !== IDENTITY_KEY_BYTES) return { ok: false, reason: 'invalid' };
    }
    if (c.expiresAt <= now()) return { ok: false, reason: 'expired' };
    return { ok: true, identity: c.clientId, expiresAt: c.expiresAt, ...(identityKey ? { identityKey } : {}) };
  };
}
