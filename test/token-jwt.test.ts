/**
 * Standard JWTs: a token minted outside Node — by Python's standard library, in a child process —
 * is accepted by the verifier and by a running service; expiry (with clock skew), audience, issuer
 * and algorithm are enforced; EdDSA tokens verify under an issuer's Ed25519 key and under no other;
 * `secagg token` prints one the service takes.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTokenVerifier, signJwt, signToken } from '../src/server/token.js';
import { identityPublicKey } from '../src/identity/index.js';
import { assertSum, nextResult, nodeClient, SECRET, startServer, vector } from './serviceHelpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'src', 'cli', 'main.js');

/** HS256 with nothing but Python's standard library (hmac, hashlib, base64, json): what any backend can do. */
function pythonJwt(claims: Record<string, unknown>, secret: string, header: Record<string, unknown> = { alg: 'HS256', typ: 'JWT' }): string {
  const program = [
    'import base64, hashlib, hmac, json, sys',
    'b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()',
    'header, claims, secret = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3].encode()',
    'signing = b(json.dumps(header).encode()) + "." + b(json.dumps(claims).encode())',
    'print(signing + "." + b(hmac.new(secret, signing.encode(), hashlib.sha256).digest()))',
  ].join('\n');
  return execFileSync('python3', ['-c', program, JSON.stringify(header), JSON.stringify(claims), secret], { encoding: 'utf8' }).trim();
}

const nowSec = () => Math.floor(Date.now() / 1000);

describe('JWT verification', () => {
  test('a token minted by Python is accepted; expiry, skew, audience, issuer and algorithm are enforced', async () => {
    const verify = createTokenVerifier({ secret: SECRET, jwt: { audience: 'secagg', issuer: 'https://backend.example', clockToleranceSec: 30 } });
    const base = { sub: 'alice', aud: 'secagg', iss: 'https://backend.example' };
    const ok = await verify(pythonJwt({ ...base, exp: nowSec() + 600 }, SECRET));
    assert.equal(ok.ok, true);
    assert.equal(ok.ok && ok.identity, 'alice');
    assert.ok(ok.ok && Math.abs(ok.expiresAt - (nowSec() + 630) * 1000) < 2000, 'expiry (with the skew allowed) is kept for later checks');
    // Expired 10 s ago: inside the 30 s skew. Expired 60 s ago: refused as expired.
    assert.equal((await verify(pythonJwt({ ...base, exp: nowSec() - 10 }, SECRET))).ok, true);
    assert.deepEqual(await verify(pythonJwt({ ...base, exp: nowSec() - 60 }, SECRET)), { ok: false, reason: 'expired' });
    const refused = async (token: string, why: string) => assert.deepEqual(await verify(token), { ok: false, reason: 'invalid' }, why);
    await refused(pythonJwt({ ...base, aud: 'another-service', exp: nowSec() + 600 }, SECRET), 'another audience');
    await refused(pythonJwt({ ...base, iss: 'https://evil.example', exp: nowSec() + 600 }, SECRET), 'another issuer');
    await refused(pythonJwt({ sub: 'alice', aud: 'secagg', iss: 'https://backend.example' }, SECRET), 'no exp');
    await refused(pythonJwt({ aud: 'secagg', iss: 'https://backend.example', exp: nowSec() + 600 }, SECRET), 'no sub');
    await refused(pythonJwt({ ...base, exp: nowSec() + 600 }, 'another-secret-0123456789'), 'another secret');
    await refused(pythonJwt({ ...base, exp: nowSec() + 600 }, SECRET, { alg: 'HS512', typ: 'JWT' }), 'an algorithm not allowed (the MAC is HS256 anyway)');
    const good = pythonJwt({ ...base, exp: nowSec() + 600 }, SECRET);
    const [h, p, sig] = good.split('.');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${p}.`;
    await refused(none, 'alg none');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...base, sub: 'mallory', exp: nowSec() + 600 })).toString('base64url')}.${sig}`;
    await refused(forged, 'a payload the MAC does not cover');
    await refused('a.b.c', 'garbage');
    // The older st1. tokens still pass under the same secret.
    assert.equal((await verify(signToken({ clientId: 'bob', expiresAt: Date.now() + 60_000 }, SECRET))).ok, true);
  });

  test('EdDSA: an issuer-signed token verifies under that issuer key only; HS256 needs the secret', async () => {
    const issuerSeed = new Uint8Array(32).fill(5);
    const otherSeed = new Uint8Array(32).fill(6);
    const issuerKey = await identityPublicKey(issuerSeed);
    const identityKey = await identityPublicKey(new Uint8Array(32).fill(9));
    const token = await signJwt({ clientId: 'carol', expiresAt: Date.now() + 60_000, identityKey }, { issuerSeed }, { audience: 'secagg' });
    assert.equal(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).alg, 'EdDSA');
    const verify = createTokenVerifier({ jwt: { publicKeys: [issuerKey], audience: 'secagg' } });
    const got = await verify(token);
    assert.equal(got.ok && got.identity, 'carol');
    assert.deepEqual(got.ok && [...got.identityKey!], [...identityKey], 'the identity key the token binds (active mode)');
    const other = await signJwt({ clientId: 'carol', expiresAt: Date.now() + 60_000 }, { issuerSeed: otherSeed }, { audience: 'secagg' });
    assert.deepEqual(await verify(other), { ok: false, reason: 'invalid' }, 'signed by another key');
    const hs = await signJwt({ clientId: 'dave', expiresAt: Date.now() + 60_000 }, { secret: SECRET }, { audience: 'secagg' });
    assert.deepEqual(await verify(hs), { ok: false, reason: 'invalid' }, 'HS256 without a configured secret');
    assert.equal((await createTokenVerifier({ secret: SECRET, jwt: { audience: 'secagg' } })(hs)).ok, true);
  });
});

describe('JWTs at the service', () => {
  test('clients holding Python-minted tokens, and one from `secagg token`, complete a round', async () => {
    const server = await startServer({ jwt: { audience: 'secagg' }, minClients: 4 });
    try {
      const m = 64;
      const fromCli = execFileSync(process.execPath, [CLI, 'token', '--secret', SECRET, '--client', 'cli-client', '--ttl', '10m', '--audience', 'secagg'], {
        encoding: 'utf8',
      }).trim();
      assert.equal(fromCli.split('.').length, 3);
      const tokens = [
        ...['p1', 'p2', 'p3'].map((sub) => [sub, pythonJwt({ sub, aud: 'secagg', exp: nowSec() + 600 }, SECRET)] as const),
        ['cli-client', fromCli] as const,
      ];
      const result = nextResult(server);
      const clients = tokens.map(([name, tok], i) => nodeClient(server, name, vector(40 + i, m, 16), { token: tok, rounds: 1 }));
      const r = await result;
      assert.equal(r.included.length, 4);
      assertSum(r, clients, m, 16);
      await Promise.all(clients.map((c) => c.done));
    } finally {
      await server.close();
    }
  });
});
