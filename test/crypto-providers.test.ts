/**
 * The providers must be interchangeable: a Node server and a browser client derive the same pairwise
 * keys, decrypt each other's shares and expand the same masks. On random inputs every primitive must
 * give byte-identical results in node:crypto, WebCrypto and the @noble fallbacks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isSecAggError } from '../src/errors.js';
import type { CryptoProvider } from '../src/crypto/provider.js';
import { nodeCrypto } from '../src/crypto/node.js';
import { SUBTLE_SHA256_MIN, createWebCrypto, webCrypto } from '../src/crypto/web.js';
import * as barrel from '../src/crypto/index.js';

const PROVIDERS: readonly CryptoProvider[] = [nodeCrypto, webCrypto, createWebCrypto({ useSubtle: false })];

const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const anyBytes = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max });

/** Results must be plain Uint8Arrays (not Buffers), and equal byte for byte. */
function assertSame(results: readonly Uint8Array[], what: string): void {
  for (const r of results) assert.equal(Object.getPrototypeOf(r), Uint8Array.prototype, `${what}: plain Uint8Array`);
  const [first, ...rest] = results;
  rest.forEach((r, i) => assert.deepEqual(r, first, `${what}: ${PROVIDERS[i + 1]!.name} vs ${PROVIDERS[0]!.name}`));
}

async function outcome<T>(p: Promise<T>): Promise<{ ok: T } | { code: string }> {
  try {
    return { ok: await p };
  } catch (e) {
    if (isSecAggError(e)) return { code: e.code };
    throw e;
  }
}

test('X25519: same public keys and shared secrets from the same scalars', async () => {
  await fc.assert(
    fc.asyncProperty(bytes(32), bytes(32), bytes(32), async (skA, skB, rawPeer) => {
      const a = await Promise.all(PROVIDERS.map((p) => p.x25519(skA)));
      const b = await Promise.all(PROVIDERS.map((p) => p.x25519(skB)));
      assertSame(
        a.map((k) => k.publicKey),
        'public key',
      );
      // Every provider's A agrees with every provider's B on one secret.
      const secrets: Uint8Array[] = [];
      for (const ka of a) for (const kb of b) secrets.push(await ka.agree(kb.publicKey), await kb.agree(ka.publicKey));
      const [s0, ...others] = secrets;
      for (const s of others) assert.deepEqual(s, s0);
      // An arbitrary 32-byte string as peer key (top bit included): same secret or same rejection.
      const outs = await Promise.all(a.map((k) => outcome(k.agree(rawPeer))));
      for (const o of outs.slice(1)) assert.deepEqual(o, outs[0]);
    }),
    { numRuns: 25 },
  );
});

test('Ed25519: same public keys and signatures, each verifies the others', async () => {
  await fc.assert(
    fc.asyncProperty(bytes(32), anyBytes(300), fc.nat(), async (seed, msg, flip) => {
      const keys = await Promise.all(PROVIDERS.map((p) => p.ed25519(seed)));
      assertSame(
        keys.map((k) => k.publicKey),
        'public key',
      );
      const sigs = await Promise.all(keys.map((k) => k.sign(msg)));
      assertSame(sigs, 'signature');
      const pk = keys[0]!.publicKey;
      const sig = sigs[0]!;
      for (const p of PROVIDERS) assert.equal(await p.ed25519Verify(pk, msg, sig), true, p.name);
      const bad = Uint8Array.from(sig);
      bad[flip % 64]! ^= 1 << (flip % 8);
      for (const p of PROVIDERS) assert.equal(await p.ed25519Verify(pk, msg, bad), false, p.name);
    }),
    { numRuns: 25 },
  );
});

test('Ed25519 verify: identical answers on random garbage', async () => {
  await fc.assert(
    fc.asyncProperty(bytes(32), anyBytes(40), bytes(64), async (pk, msg, sig) => {
      const answers = await Promise.all(PROVIDERS.map((p) => p.ed25519Verify(pk, msg, sig)));
      assert.deepEqual(
        answers,
        PROVIDERS.map(() => false),
      );
    }),
    { numRuns: 50 },
  );
});

test('HKDF-SHA256: identical output', async () => {
  await fc.assert(
    fc.asyncProperty(anyBytes(100), anyBytes(100), anyBytes(100), fc.integer({ min: 1, max: 255 * 32 }), async (ikm, salt, info, len) => {
      const outs = await Promise.all(PROVIDERS.map((p) => p.hkdf(ikm, salt, info, len)));
      assert.equal(outs[0]!.length, len);
      assertSame(outs, 'hkdf');
    }),
    { numRuns: 100 },
  );
});

test('SHA-256: identical output on both sides of the small/large switch', async () => {
  const lengths = fc.oneof(
    fc.integer({ min: 0, max: 200 }),
    fc.integer({ min: SUBTLE_SHA256_MIN - 64, max: SUBTLE_SHA256_MIN + 64 }),
    fc.integer({ min: 0, max: 70000 }),
  );
  await fc.assert(
    fc.asyncProperty(lengths, fc.nat(), async (n, salt) => {
      const data = new Uint8Array(n);
      for (let i = 0; i < n; i++) data[i] = (i * 31 + salt) & 0xff;
      assertSame(await Promise.all(PROVIDERS.map((p) => p.sha256(data))), 'sha256');
    }),
    { numRuns: 60 },
  );
});

test('AES-256-GCM: identical ciphertexts, cross-provider open, identical rejection of tampering', async () => {
  await fc.assert(
    fc.asyncProperty(bytes(32), bytes(12), anyBytes(600), anyBytes(64), fc.nat(), async (key, nonce, pt, aad, where) => {
      const cts = await Promise.all(PROVIDERS.map((p) => p.aeadSeal(key, nonce, pt, aad)));
      assertSame(cts, 'ciphertext');
      const ct = cts[0]!;
      assertSame(await Promise.all(PROVIDERS.map((p) => p.aeadOpen(key, nonce, ct, aad))), 'plaintext');
      assert.deepEqual(await PROVIDERS[1]!.aeadOpen(key, nonce, ct, aad), pt);
      const bad = Uint8Array.from(ct);
      bad[where % bad.length]! ^= 1 << (where % 8);
      const outs = await Promise.all(PROVIDERS.map((p) => outcome(p.aeadOpen(key, nonce, bad, aad))));
      for (const o of outs) assert.deepEqual(o, { code: 'ERR_AEAD_OPEN_FAILED' });
    }),
    { numRuns: 100 },
  );
});

test('keystream: identical words across chunk boundaries', async () => {
  // Chunk sizes differ per implementation (16 Ki words node/noble, 64 Ki words WebCrypto), so
  // lengths straddle both to catch a wrong counter for a later chunk.
  const sizes = [0, 1, 3, 4, 5, 16383, 16384, 16385, 65535, 65536, 65537, 200_003];
  await fc.assert(
    fc.asyncProperty(bytes(16), fc.constantFrom(...sizes), async (key, words) => {
      const outs: Uint32Array[] = [];
      for (const p of PROVIDERS) {
        const out = new Uint32Array(words);
        let covered = 0;
        await p.keystream(key, words, (chunk, offset) => {
          assert.equal(offset, covered, `${p.name}: chunks in order, no gaps`);
          out.set(chunk, offset); // chunk is only valid during the call
          covered += chunk.length;
        });
        assert.equal(covered, words, `${p.name}: all words delivered`);
        outs.push(out);
      }
      for (let i = 1; i < outs.length; i++) assert.deepEqual(outs[i], outs[0], `${PROVIDERS[i]!.name} keystream`);
    }),
    { numRuns: 20 },
  );
});

test("barrel: '#crypto-default' resolves to the node provider under Node", () => {
  assert.equal(barrel.defaultCrypto, nodeCrypto);
  assert.equal(barrel.nodeCrypto, nodeCrypto);
  assert.equal(barrel.webCrypto, webCrypto);
});
