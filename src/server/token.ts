/**
 * Bearer tokens. Three kinds are accepted:
 * - tokens from a configured list (each names an identity), compared in constant time;
 * - standard JWTs (RFC 7519), verified with `jose`: HS256 under the shared `secret`, or EdDSA
 *   (Ed25519) under one of the issuer `publicKeys`. `sub` is the client's identity, `exp` is
 *   required, `aud` / `iss` are checked when configured, with `clockToleranceSec` of skew (default
 *   30 s). Any backend can mint them (a few lines of Python's standard library do: docs/service.md);
 *   `signJwt` and `secagg token` mint them here;
 * - the older HMAC-SHA256 tokens `st1.<payload>.<mac>` carrying `{ clientId, expiresAt }` (made with
 *   `signToken`), still accepted under the same `secret`.
 *
 * Active mode: a token is bound to the client's long-term Ed25519 identity key — signed tokens carry
 * `identityKey` (base64url) in their payload, static tokens map to `{ identity, identityKey }` — and
 * the client must prove at hello that it holds that key (server.ts).
 */
import { createHmac, timingSafeEqual, createHash } from 'node:crypto';
import { errors as joseErrors, importJWK, jwtVerify, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import { fromBase64url, identityPublicKey, parseKey, toBase64url, IDENTITY_KEY_BYTES } from '../identity/index.js';

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

/** What JWTs must carry besides `sub` and `exp`, and whose keys sign them. */
export interface JwtOptions {
  /** Required `aud` (the token's audience must include it). */
  readonly audience?: string;
  /** Required `iss`. */
  readonly issuer?: string;
  /** Ed25519 public keys (32 bytes, or hex / base64url) whose EdDSA signatures are accepted. */
  readonly publicKeys?: readonly (Uint8Array | string)[];
  /** Clock skew allowed on `exp`, `nbf` and `iat`, seconds (default 30). */
  readonly clockToleranceSec?: number;
}

export interface TokenVerifierOptions {
  /** Accepted static tokens: token → identity (or `{ identity, identityKey }`), or a list of tokens, each its own identity. */
  readonly tokens?: ReadonlyMap<string, string | StaticTokenEntry> | readonly string[];
  /** Secret for HS256 JWTs and `st1.` tokens; without it (and without `jwt.publicKeys`) only static tokens are accepted. */
  readonly secret?: string | Uint8Array;
  readonly jwt?: JwtOptions;
  /** Clock, for tests. */
  readonly now?: () => number;
}

/** The claim that binds a JWT to an active-mode identity key (base64url of the 32-byte Ed25519 key). */
export const IDENTITY_KEY_CLAIM = 'secagg_identity_key';

/**
 * Mint a JWT for `clientId` valid until `expiresAt`: HS256 under a shared secret, or EdDSA under an
 * issuer's 32-byte Ed25519 seed (whose public key the server lists in `jwt.publicKeys`).
 *
 * @example
 * ```ts
 * const token = await signJwt({ clientId: 'phone-17', expiresAt: Date.now() + 3600_000 }, { secret }, { audience: 'secagg' });
 * ```
 */
export async function signJwt(
  claims: TokenClaims,
  key: { readonly secret: string | Uint8Array } | { readonly issuerSeed: Uint8Array },
  options: { readonly audience?: string; readonly issuer?: string } = {},
): Promise<string> {
  if (typeof claims.clientId !== 'string' || claims.clientId.length === 0 || claims.clientId.length > 200)
    throw new RangeError('clientId must be a string of 1..200 characters');
  if (!Number.isFinite(claims.expiresAt)) throw new TypeError('expiresAt must be a number (ms since the epoch)');
  const payload: JWTPayload = claims.identityKey !== undefined ? { [IDENTITY_KEY_CLAIM]: toBase64url(keyBytes(claims.identityKey)) } : {};
  let jwt = new SignJWT(payload)
    .setSubject(claims.clientId)
    .setIssuedAt()
    .setExpirationTime(Math.floor(claims.expiresAt / 1000));
  if (options.audience !== undefined) jwt = jwt.setAudience(options.audience);
  if (options.issuer !== undefined) jwt = jwt.setIssuer(options.issuer);
  if ('secret' in key) {
    const secret = secretBytes(key.secret);
    return jwt.setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(secret);
  }
  if (!(key.issuerSeed instanceof Uint8Array) || key.issuerSeed.length !== 32) throw new RangeError('issuerSeed must be a 32-byte Ed25519 seed');
  const pub = await identityPublicKey(key.issuerSeed);
  const priv = await importJWK({ kty: 'OKP', crv: 'Ed25519', d: toBase64url(key.issuerSeed), x: toBase64url(pub) }, 'EdDSA');
  return jwt.setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' }).sign(priv);
}

function secretBytes(secret: string | Uint8Array): Uint8Array {
  const b = typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
  if (b.length < 16) throw new RangeError('secret must be at least 16 bytes');
  return b;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Build the check the server runs on every hello. */
export function createTokenVerifier(options: TokenVerifierOptions): (token: string) => Promise<TokenCheck> {
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
  const jwt = jwtVerifier(options);
  return async (token) => {
    if (typeof token !== 'string' || token.length === 0 || token.length > 2048) return { ok: false, reason: 'invalid' };
    // Hashing first makes the map lookup independent of how much of the token matches.
    const known = statics.get(digest(token).toString('hex'));
    if (known !== undefined) return { ok: true, ...known, expiresAt: Infinity };
    const parts = token.split('.');
    if (parts.length !== 3) return { ok: false, reason: 'invalid' };
    if (parts[0] !== PREFIX) return jwt(token);
    if (secret === undefined) return { ok: false, reason: 'invalid' };
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

/** The JWT check: HS256 under the secret, EdDSA under the issuer keys; nothing else (no `none`, no RSA). */
function jwtVerifier(options: TokenVerifierOptions): (token: string) => Promise<TokenCheck> {
  const o = options.jwt ?? {};
  const tolerance = o.clockToleranceSec ?? 30;
  if (!Number.isFinite(tolerance) || tolerance < 0 || tolerance > 3600) throw new RangeError('jwt.clockToleranceSec must be in [0, 3600]');
  // HS256 keys shorter than 16 bytes are refused for signing; such a secret verifies no JWT either.
  const raw = options.secret === undefined ? undefined : typeof options.secret === 'string' ? new TextEncoder().encode(options.secret) : options.secret;
  const hmac = raw !== undefined && raw.length >= 16 ? raw : undefined;
  const publicKeys: Promise<CryptoKey | Uint8Array>[] = (o.publicKeys ?? []).map((k) =>
    importJWK({ kty: 'OKP', crv: 'Ed25519', x: toBase64url(keyBytes(k)) }, 'EdDSA'),
  );
  const now = options.now ?? Date.now;
  return async (token) => {
    let header: { alg?: unknown };
    try {
      header = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { alg?: unknown };
    } catch {
      return { ok: false, reason: 'invalid' };
    }
    const keys = header.alg === 'HS256' ? (hmac ? [hmac] : []) : header.alg === 'EdDSA' ? await Promise.all(publicKeys) : [];
    const verifyOptions = {
      algorithms: [header.alg as string],
      clockTolerance: tolerance,
      currentDate: new Date(now()),
      requiredClaims: ['sub', 'exp'],
      ...(o.audience !== undefined ? { audience: o.audience } : {}),
      ...(o.issuer !== undefined ? { issuer: o.issuer } : {}),
    };
    for (const key of keys) {
      try {
        const { payload } = await jwtVerify(token, key, verifyOptions);
        const sub = payload.sub;
        if (typeof sub !== 'string' || sub.length === 0 || sub.length > 200 || typeof payload.exp !== 'number') return { ok: false, reason: 'invalid' };
        const bound = payload[IDENTITY_KEY_CLAIM];
        let identityKey: Uint8Array | undefined;
        if (bound !== undefined) {
          identityKey = typeof bound === 'string' ? fromBase64url(bound) : undefined;
          if (identityKey === undefined || identityKey.length !== IDENTITY_KEY_BYTES) return { ok: false, reason: 'invalid' };
        }
        return { ok: true, identity: sub, expiresAt: payload.exp * 1000 + tolerance * 1000, ...(identityKey ? { identityKey } : {}) };
      } catch (e) {
        if (e instanceof joseErrors.JWTExpired) return { ok: false, reason: 'expired' };
        // Another key may have signed it (several issuer keys); a bad claim fails under every key.
        if (e instanceof joseErrors.JWTClaimValidationFailed) return { ok: false, reason: 'invalid' };
      }
    }
    return { ok: false, reason: 'invalid' };
  };
}
