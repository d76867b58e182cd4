/**
 * Published test vectors, run against every provider (and the web provider's @noble fallbacks, which
 * a browser without X25519/Ed25519 in WebCrypto would use).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isSecAggError } from '../src/errors.js';
import type { CryptoProvider } from '../src/crypto/provider.js';
import { nodeCrypto } from '../src/crypto/node.js';
import { createWebCrypto, webCrypto } from '../src/crypto/web.js';
import { isSmallOrderX25519 } from '../src/crypto/lowOrder.js';
import { unsafeSeededRng } from '../src/rng.js';

const PROVIDERS: readonly CryptoProvider[] = [nodeCrypto, webCrypto, createWebCrypto({ useSubtle: false })];

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const range = (from: number, to: number): Uint8Array => Uint8Array.from({ length: to - from + 1 }, (_, i) => from + i);
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function isCode(code: string): (e: unknown) => boolean {
  return (e) => isSecAggError(e) && e.code === code;
}

for (const p of PROVIDERS) {
  describe(`crypto vectors: ${p.name}`, () => {
    // RFC 7748 §5.2: X25519 on arbitrary u-coordinates (test 2's u has the top bit set, which must
    // be masked) and the iterated test.
    test('X25519 RFC 7748 §5.2 test 1', async () => {
      const k = await p.x25519(hex('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4'));
      const out = await k.agree(hex('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c'));
      assert.equal(toHex(out), 'c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552');
    });

    test('X25519 RFC 7748 §5.2 test 2 (high bit of u masked)', async () => {
      const k = await p.x25519(hex('4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d'));
      const out = await k.agree(hex('e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493'));
      assert.equal(toHex(out), '95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957');
    });

    test('X25519 RFC 7748 §5.2 iterated, 1 and 1000 iterations', async () => {
      let k = hex('0900000000000000000000000000000000000000000000000000000000000000');
      let u = k;
      for (let i = 1; i <= 1000; i++) {
        const next = await (await p.x25519(k)).agree(u);
        u = k;
        k = next;
        if (i === 1) assert.equal(toHex(k), '422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079');
      }
      assert.equal(toHex(k), '684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51');
    });

    test('X25519 RFC 7748 §6.1 Alice and Bob', async () => {
      const alice = await p.x25519(hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
      const bob = await p.x25519(hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'));
      assert.equal(toHex(alice.publicKey), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
      assert.equal(toHex(bob.publicKey), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
      const k = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
      assert.equal(toHex(await alice.agree(bob.publicKey)), k);
      assert.equal(toHex(await bob.agree(alice.publicKey)), k);
    });

    test('X25519 rejects low-order and malformed peer keys with ERR_INVALID_KEY', async () => {
      const k = await p.x25519(hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
      const bad = [
        '0000000000000000000000000000000000000000000000000000000000000000', // u = 0
        '0100000000000000000000000000000000000000000000000000000000000000', // u = 1, order 4
        'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', // order 8
        'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // u = p ≡ 0
      ];
      for (const u of bad) await assert.rejects(k.agree(hex(u)), isCode('ERR_INVALID_KEY'), u);
      await assert.rejects(k.agree(new Uint8Array(31)), isCode('ERR_INVALID_KEY'));
      await assert.rejects(k.agree(new Uint8Array(33)), isCode('ERR_INVALID_KEY'));
    });

    test('X25519 private key must be 32 bytes', async () => {
      await assert.rejects(p.x25519(new Uint8Array(31)), RangeError);
    });

    // RFC 5869 Appendix A, test cases 1–3 (SHA-256).
    test('HKDF-SHA256 RFC 5869 test case 1', async () => {
      const okm = await p.hkdf(new Uint8Array(22).fill(0x0b), range(0x00, 0x0c), range(0xf0, 0xf9), 42);
      assert.equal(toHex(okm), '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
    });

    test('HKDF-SHA256 RFC 5869 test case 2 (long inputs)', async () => {
      const okm = await p.hkdf(range(0x00, 0x4f), range(0x60, 0xaf), range(0xb0, 0xff), 82);
      assert.equal(
        toHex(okm),
        'b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c' +
          '59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71' +
          'cc30c58179ec3e87c14c01d5c1f3434f1d87',
      );
    });

    test('HKDF-SHA256 RFC 5869 test case 3 (empty salt and info)', async () => {
      const okm = await p.hkdf(new Uint8Array(22).fill(0x0b), new Uint8Array(0), new Uint8Array(0), 42);
      assert.equal(toHex(okm), '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8');
    });

    test('HKDF length is bounded by 255 * HashLen', async () => {
      await assert.rejects(p.hkdf(new Uint8Array(32), new Uint8Array(0), new Uint8Array(0), 255 * 32 + 1), RangeError);
      await assert.rejects(p.hkdf(new Uint8Array(32), new Uint8Array(0), new Uint8Array(0), 0), RangeError);
    });

    // RFC 8032 §7.1, TEST 1–3.
    const ED_VECTORS = [
      {
        sk: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
        pk: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
        msg: '',
        sig: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
      },
      {
        sk: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
        pk: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
        msg: '72',
        sig: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
      },
      {
        sk: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
        pk: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
        msg: 'af82',
        sig: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
      },
    ];
    ED_VECTORS.forEach((v, i) => {
      test(`Ed25519 RFC 8032 §7.1 test ${i + 1}`, async () => {
        const key = await p.ed25519(hex(v.sk));
        assert.equal(toHex(key.publicKey), v.pk);
        const msg = hex(v.msg);
        const sig = await key.sign(msg);
        assert.equal(toHex(sig), v.sig);
        assert.equal(await p.ed25519Verify(hex(v.pk), msg, hex(v.sig)), true);

        // Any single flipped bit in signature, message or public key must fail.
        for (const bit of [0, 255, 256, 511]) {
          const s = hex(v.sig);
          s[bit >> 3]! ^= 1 << (bit & 7);
          assert.equal(await p.ed25519Verify(hex(v.pk), msg, s), false, `sig bit ${bit}`);
        }
        const m2 = msg.length === 0 ? Uint8Array.of(0) : Uint8Array.from(msg);
        if (msg.length > 0) m2[0]! ^= 0x01;
        assert.equal(await p.ed25519Verify(hex(v.pk), m2, hex(v.sig)), false, 'message changed');
        const pk2 = hex(v.pk);
        pk2[0]! ^= 0x01;
        assert.equal(await p.ed25519Verify(pk2, msg, hex(v.sig)), false, 'public key changed');
      });
    });

    test('Ed25519 verify returns false (never throws) on malformed input', async () => {
      const v = ED_VECTORS[0]!;
      const pk = hex(v.pk);
      const sig = hex(v.sig);
      const msg = new Uint8Array(0);
      assert.equal(await p.ed25519Verify(pk.subarray(0, 31), msg, sig), false);
      assert.equal(await p.ed25519Verify(pk, msg, sig.subarray(0, 63)), false);
      assert.equal(await p.ed25519Verify(pk, msg, new Uint8Array(65)), false);
      // y = 2^255 - 1 is not a canonical field element / not on the curve.
      assert.equal(await p.ed25519Verify(new Uint8Array(32).fill(0xff), msg, sig), false);
      // S >= L must be rejected (malleability): S' = S + L satisfies the verification equation
      // just as S does, so only the explicit S < L check refuses it.
      const L = 2n ** 252n + 27742317777372353535851937790883648493n;
      let s = 0n;
      for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]!);
      let sPlusL = s + L;
      const bigS = Uint8Array.from(sig);
      for (let i = 32; i < 64; i++, sPlusL >>= 8n) bigS[i] = Number(sPlusL & 0xffn);
      assert.equal(sPlusL, 0n, 'S + L still fits in 32 bytes');
      assert.equal(await p.ed25519Verify(pk, msg, bigS), false);
      assert.equal(await p.ed25519Verify('nope' as unknown as Uint8Array, msg, sig), false);
    });

    test('SHA-256("abc") (FIPS 180-2 B.1) and the empty string', async () => {
      assert.equal(toHex(await p.sha256(enc('abc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
      assert.equal(toHex(await p.sha256(new Uint8Array(0))), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    });

    test('SHA-256 of one million "a" (FIPS 180-2 B.3; large input path)', async () => {
      const out = await p.sha256(new Uint8Array(1_000_000).fill(0x61));
      assert.equal(toHex(out), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
    });

    // AES-256-GCM: McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", revised 2005,
    // Appendix B, Test Case 16 (256-bit key, 60-byte plaintext, 20-byte AAD, 96-bit IV).
    const GCM16 = {
      key: 'feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308',
      iv: 'cafebabefacedbaddecaf888',
      pt: 'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72' + '1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39',
      aad: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
      ct: '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa' + '8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662',
      tag: '76fc6ece0f4e1768cddf8853bb2d551b',
    };

    test('AES-256-GCM known answer (GCM spec test case 16)', async () => {
      const sealed = await p.aeadSeal(hex(GCM16.key), hex(GCM16.iv), hex(GCM16.pt), hex(GCM16.aad));
      assert.equal(toHex(sealed), GCM16.ct + GCM16.tag);
      const opened = await p.aeadOpen(hex(GCM16.key), hex(GCM16.iv), hex(GCM16.ct + GCM16.tag), hex(GCM16.aad));
      assert.equal(toHex(opened), GCM16.pt);
    });

    test('AES-256-GCM round trip, and any tampering → ERR_AEAD_OPEN_FAILED', async () => {
      const key = range(1, 32);
      const nonce = range(100, 111);
      const aad = enc('round 7, 3 -> 9');
      const pt = enc('shares of s_u and b_u for neighbour 9');
      const ct = await p.aeadSeal(key, nonce, pt, aad);
      assert.equal(ct.length, pt.length + 16);
      assert.deepEqual(await p.aeadOpen(key, nonce, ct, aad), pt);
      // empty plaintext still authenticates the AAD
      const empty = await p.aeadSeal(key, nonce, new Uint8Array(0), aad);
      assert.equal(empty.length, 16);
      assert.equal((await p.aeadOpen(key, nonce, empty, aad)).length, 0);

      const fail = isCode('ERR_AEAD_OPEN_FAILED');
      for (const i of [0, pt.length - 1, pt.length, ct.length - 1]) {
        const t = Uint8Array.from(ct);
        t[i]! ^= 0x80;
        await assert.rejects(p.aeadOpen(key, nonce, t, aad), fail, `byte ${i}`);
      }
      const otherKey = Uint8Array.from(key);
      otherKey[31]! ^= 1;
      await assert.rejects(p.aeadOpen(otherKey, nonce, ct, aad), fail, 'key');
      const otherNonce = Uint8Array.from(nonce);
      otherNonce[0]! ^= 1;
      await assert.rejects(p.aeadOpen(key, otherNonce, ct, aad), fail, 'nonce');
      await assert.rejects(p.aeadOpen(key, nonce, ct, enc('round 7, 3 -> 8')), fail, 'aad');
      await assert.rejects(p.aeadOpen(key, nonce, ct.subarray(0, ct.length - 1), aad), fail, 'truncated');
      await assert.rejects(p.aeadOpen(key, nonce, ct.subarray(0, 15), aad), fail, 'shorter than tag');
    });

    test('AES-256-GCM refuses wrong key and nonce sizes as caller bugs', async () => {
      await assert.rejects(p.aeadSeal(new Uint8Array(16), new Uint8Array(12), new Uint8Array(1), new Uint8Array(0)), RangeError);
      await assert.rejects(p.aeadSeal(new Uint8Array(32), new Uint8Array(16), new Uint8Array(1), new Uint8Array(0)), RangeError);
    });

    // The PRG is AES-128-CTR with a zero counter block. With key = 0 the first block is
    // AES-128_0(0^128) = 66e94bd4ef8a2c3b884cfa59ca342b2e (FIPS-197-style known answer, e.g.
    // NIST AESAVS GFSbox/VarTxt all-zero case), and block 1 is AES_0(0…01).
    test('keystream: first block is AES-128(0, 0^128), read little-endian', async () => {
      const out = new Uint32Array(4);
      await p.keystream(new Uint8Array(16), 4, (chunk, offset) => out.set(chunk, offset));
      const bytes = new Uint8Array(out.buffer);
      assert.equal(toHex(bytes), '66e94bd4ef8a2c3b884cfa59ca342b2e');
      assert.equal(out[0], 0xd44be966); // little-endian word read
    });
  });
}

describe('small-order X25519 keys (the server’s table lookup) against the providers’ own key agreement', () => {
  const P = (1n << 255n) - 19n;
  const le = (u: bigint): Uint8Array => {
    const out = new Uint8Array(32);
    for (let i = 0; i < 32; i++) out[i] = Number((u >> BigInt(8 * i)) & 0xffn);
    return out;
  };
  const withTopBit = (b: Uint8Array): Uint8Array => {
    const c = b.slice();
    c[31]! |= 0x80;
    return c;
  };
  const order8 = [
    325606250916557431795983626356110631294008115727848805560023387167927233504n,
    39382357235489614581723060781553021112529911719440698176882885853963445705823n,
  ];
  // Every u-coordinate within 300 of 0, of p, and within 50 of each order-8 point, each with the top
  // bit clear and set, and 200 random keys: the table says "small order" exactly when the
  // provider's key agreement refuses the key, for two independent X25519 implementations.
  const candidates: Uint8Array[] = [];
  for (let d = 0n; d <= 300n; d++) candidates.push(le(d));
  for (let d = -300n; d <= 18n; d++) candidates.push(le(P + d));
  for (const u of order8) for (let d = -50n; d <= 50n; d++) candidates.push(le(u + d));
  const rng = unsafeSeededRng(7);
  for (let i = 0; i < 200; i++) candidates.push(rng(32));
  const all = candidates.flatMap((c) => [c, withTopBit(c)]);

  for (const p of [nodeCrypto, createWebCrypto({ useSubtle: false })]) {
    test(`${p.name}: ${all.length} keys, refused by the key agreement exactly when the table names them`, async () => {
      const k = await p.x25519(rng(32));
      let small = 0;
      for (const key of all) {
        const refused = await k.agree(key).then(
          () => false,
          (e: unknown) => (isCode('ERR_INVALID_KEY')(e) ? true : Promise.reject(e)),
        );
        assert.equal(isSmallOrderX25519(key), refused, toHex(key));
        if (refused) small++;
      }
      assert.equal(small, 14, 'seven values, each with the top bit clear and set');
    });
  }
  test('only 32-byte keys can be of small order', () => {
    assert.equal(isSmallOrderX25519(new Uint8Array(31)), false);
    assert.equal(isSmallOrderX25519(new Uint8Array(33)), false);
  });
});
