/**
 * X25519 public keys of small order: every key whose shared secret is all zeros whatever the
 * private scalar (the clamped scalar is a multiple of the cofactor 8). After RFC 7748's masking of
 * the top bit, a u-coordinate u < 2^255 gives such a secret exactly when u mod p is the
 * u-coordinate of a point of order dividing 8 on the curve (order 8·ℓ) or its twist (order 4·ℓ'):
 * 0, 1, p − 1 and the two points of order 8. Below 2^255 that is those five and the non-canonical
 * p and p + 1 — the same seven values libsodium refuses. A table lookup instead of a trial key
 * agreement (two per client per round on the server, ~65 µs each); test/crypto-vectors.test.ts
 * checks every entry and a range around each against OpenSSL's X25519.
 */

const P = (1n << 255n) - 19n;

/** The seven values, as little-endian 32-byte strings with the top bit clear. */
const SMALL_ORDER: readonly Uint8Array[] = [
  0n,
  1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n, // order 8
  39382357235489614581723060781553021112529911719440698176882885853963445705823n, // order 8
  P - 1n,
  P,
  P + 1n,
].map((u) => {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = Number((u >> BigInt(8 * i)) & 0xffn);
  return out;
});

/** True when `publicKey` (32 bytes) is an X25519 key of small order, in any of its encodings. */
export function isSmallOrderX25519(publicKey: Uint8Array): boolean {
  if (publicKey.length !== 32) return false;
  outer: for (const s of SMALL_ORDER) {
    for (let i = 0; i < 31; i++) if (publicKey[i] !== s[i]) continue outer;
    if ((publicKey[31]! & 0x7f) === s[31]) return true;
  }
  return false;
}
