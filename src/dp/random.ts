/**
 * Buffered uniform randomness over an injected `Rng` for the samplers: 32-bit words, exact
 * uniform integers below m ≤ 2^53 (rejection, never a modulo bias), 53-bit uniforms in [0, 1), and
 * exact Bernoulli(a/b) trials. The samplers call this millions of times per vector, so it pulls
 * up to 64 KiB from the Rng at once and reads words from a typed array.
 */
import { cryptoRng, type Rng } from '../rng.js';

/** Refills start small (a short vector should not cost 64 KiB of keystream) and double up to 64 KiB. */
const FIRST_WORDS = 256;
const MAX_WORDS = 16384;
const TWO32 = 4294967296;
const TWO21 = 2097152;
const TWO53 = 9007199254740992;

export class RandomSource {
  private readonly rng: Rng;
  private words: Uint32Array = new Uint32Array(0);
  private pos = 0;
  private bits = 0;
  private bitCount = 0;
  private next = FIRST_WORDS;

  constructor(rng: Rng = cryptoRng) {
    if (typeof rng !== 'function') throw new TypeError('rng must be a function (length) => Uint8Array');
    this.rng = rng;
  }

  private refill(): void {
    const n = this.next;
    this.next = Math.min(MAX_WORDS, 2 * n);
    const bytes = this.rng(4 * n);
    if (!(bytes instanceof Uint8Array) || bytes.length !== 4 * n) throw new TypeError('rng returned the wrong number of bytes');
    // Little-endian words; on a big-endian host the order of bits differs but every word is still uniform.
    this.words = bytes.byteOffset % 4 === 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset, n) : new Uint32Array(bytes.slice().buffer);
    this.pos = 0;
  }

  /** A uniform 32-bit word. */
  uint32(): number {
    if (this.pos === this.words.length) this.refill();
    return this.words[this.pos++]!;
  }

  /** A fair coin (one bit of a buffered word). */
  bit(): number {
    if (this.bitCount === 0) {
      this.bits = this.uint32();
      this.bitCount = 32;
    }
    const b = this.bits & 1;
    this.bits >>>= 1;
    this.bitCount--;
    return b;
  }

  /** Uniform in [0, 1) on the grid of multiples of 2^−53. */
  uniform(): number {
    return ((this.uint32() >>> 11) * TWO32 + this.uint32()) / TWO53;
  }

  /** Exactly uniform integer in [0, m) for an integer 1 ≤ m ≤ 2^53 (rejection sampling). */
  below(m: number): number {
    if (m === 1) return 0;
    if (m <= TWO32) {
      // Accept words below the largest multiple of m that fits in 32 bits.
      const limit = TWO32 - (TWO32 % m);
      for (;;) {
        const w = this.uint32();
        if (w < limit) return w % m;
      }
    }
    // 53 random bits; accept below the largest multiple of m ≤ 2^53.
    const limit = TWO53 - (TWO53 % m);
    for (;;) {
      const w = (this.uint32() % TWO21) * TWO32 + this.uint32();
      if (w < limit) return w % m;
    }
  }

  /**
   * Exact Bernoulli(a/b) for safe integers 0 ≤ a ≤ b, b ≥ 1: one 32-bit word U·2^32 against the
   * correctly rounded a/b decides unless U falls within ~2^−32 of it; then the exact comparison
   * continues in BigInt (see resolve). Certain outcomes and b = 2 cost no word.
   */
  bernoulli(a: number, b: number): boolean {
    if (a === 0) return false;
    if (a === b) return true;
    if (b === 2) return this.bit() === 1;
    const w = this.decide(a / b);
    return w < 0 ? w === YES : this.resolve(w, BigInt(a), BigInt(b));
  }

  /**
   * The first step of an exact Bernoulli(x) for x = N/D known in floating point as `approx` with
   * relative error ≤ 2^−46: YES (−1) or NO (−2) when one uniform word decides, else that word, to be
   * passed to resolve() with the exact N and D.
   */
  decide(approx: number): number {
    const w = this.uint32();
    const slack = approx * 2 ** -45 + 2 ** -1000;
    if ((w + 1) / TWO32 <= approx - slack) return YES;
    if (w / TWO32 >= approx + slack) return NO;
    return w;
  }

  /**
   * Exact Bernoulli(n/d) for BigInts 0 ≤ n ≤ d, given the first word w of U ∈ [0, 1): U ∈
   * [u/2^k, (u+1)/2^k) after k bits; another 32 bits until that interval lies on one side of n/d.
   */
  resolve(w: number, n: bigint, d: bigint): boolean {
    let u = BigInt(w);
    let scale = 1n << 32n;
    for (;;) {
      const ns = n * scale;
      if ((u + 1n) * d <= ns) return true;
      if (u * d >= ns) return false;
      u = (u << 32n) | BigInt(this.uint32());
      scale <<= 32n;
    }
  }
}

/** decide(): U < x for sure. */
export const YES = -1;
/** decide(): U ≥ x for sure. */
const NO = -2;
