import { createKernel, type Kernel } from './kernel.js';
import { SecAggError } from '../errors.js';
import { assertBits, elementBytes, readPacked } from './vector.js';
import { LITTLE_ENDIAN as LE } from '../bytes.js';

const SCRATCH_WORDS = 16384; // 64 KiB: the keystream chunk size, stays in L2 cache
const PAD_WORDS = 16; // kernel works on 64-byte blocks

function padWords(n: number): number {
  return Math.ceil(n / PAD_WORDS) * PAD_WORDS;
}

/**
 * What addPrg needs of a crypto provider (crypto/'s CryptoProvider has it): the PRG keystream of a
 * key, delivered to `sink` in chunks valid only during the call. Declared here, not imported, so
 * ring/ imports nothing from crypto/.
 */
export interface KeystreamSource {
  keystream(key: Uint8Array, words: number, sink: (chunk: Uint32Array, offset: number) => void): void | Promise<void>;
}

/**
 * A vector of m words mod 2^32 that masks and vectors are added into. Arithmetic is modulo 2^32
 * throughout; since 2^bits divides 2^32, reducing once at the end (`toVector(bits)`) gives the
 * same result as reducing after every addition, and saves a pass per mask.
 *
 * With WebAssembly SIMD the words live in the kernel's memory and each keystream chunk is copied
 * into a cache-resident scratch block before the vector add; without it a plain JS loop is used.
 */
export class RingAccumulator {
  readonly length: number;
  private readonly kernel: Kernel | null;
  private readonly accOffset: number; // byte offsets into kernel memory
  private readonly scratchOffset: number;
  private readonly words: Uint32Array; // memory only grows in the constructor, so the views stay valid
  private readonly scratch: Uint32Array | null;

  constructor(length: number, options: { simd?: boolean } = {}) {
    if (!Number.isSafeInteger(length) || length < 1 || length > 1 << 28) throw new RangeError(`length must be in [1, 2^28], got ${length}`);
    this.length = length;
    this.kernel = options.simd === false ? null : createKernel();
    if (this.kernel) {
      const bytesNeeded = 4 * (SCRATCH_WORDS + padWords(length));
      const have = this.kernel.memory.buffer.byteLength;
      if (bytesNeeded > have) this.kernel.memory.grow(Math.ceil((bytesNeeded - have) / 65536));
      this.scratchOffset = 0;
      this.accOffset = 4 * SCRATCH_WORDS;
      this.words = new Uint32Array(this.kernel.memory.buffer, this.accOffset, length);
      this.scratch = new Uint32Array(this.kernel.memory.buffer, this.scratchOffset, SCRATCH_WORDS);
    } else {
      this.scratch = null;
      this.scratchOffset = 0;
      this.accOffset = 0;
      this.words = new Uint32Array(length);
    }
  }

  /** True when the SIMD kernel is in use (reported by benchmarks). */
  get simd(): boolean {
    return this.kernel !== null;
  }

  /** A view of the current words (mod 2^32). Valid until the accumulator is used again. */
  view(): Uint32Array {
    return this.words;
  }

  /** Add (sign 1) or subtract (sign -1) `chunk` into words [offset, offset + chunk.length). */
  addChunk(chunk: Uint32Array, offset: number, sign: 1 | -1): void {
    const n = chunk.length;
    if (offset < 0 || offset + n > this.length) throw new RangeError('chunk out of range');
    const k = this.kernel;
    if (k === null || n < 64) {
      addJs(this.words, chunk, offset, sign);
      return;
    }
    const scratch = this.scratch!;
    for (let start = 0; start < n; start += SCRATCH_WORDS) {
      const len = Math.min(SCRATCH_WORDS, n - start);
      const full = len - (len % PAD_WORDS); // kernel handles whole 64-byte blocks, JS the tail
      scratch.set(start === 0 && full === n ? chunk : chunk.subarray(start, start + full));
      const dst = this.accOffset + 4 * (offset + start);
      if (sign === 1) k.add(dst, this.scratchOffset, 4 * full);
      else k.sub(dst, this.scratchOffset, 4 * full);
      if (full !== len) addJs(this.words, chunk.subarray(start + full, start + len), offset + start + full, sign);
    }
  }

  /** Add or subtract a whole vector of the same length. */
  addVector(vector: Uint32Array, sign: 1 | -1): void {
    if (vector.length !== this.length) throw new RangeError(`vector length ${vector.length} != ${this.length}`);
    this.addChunk(vector, 0, sign);
  }

  /**
   * Add or subtract a vector packed as by packVector (little-endian, elementBytes(bits) per element)
   * straight from untrusted bytes: no m-sized temporary, and nothing is added unless the length is
   * exactly `length` elements and every element is < 2^bits (checked first, so a refusal leaves the
   * words untouched). Throws SecAggError ERR_SIZE otherwise.
   */
  addPacked(bytes: Uint8Array, bits: number, sign: 1 | -1): void {
    const w = elementBytes(bits);
    const m = this.length;
    if (bytes.length !== w * m) throw new SecAggError('ERR_SIZE', `vector is ${bytes.length} bytes, expected ${w * m}`);
    if (bits % 8 !== 0) {
      // Only the top byte of each element can exceed the ring.
      const top = 2 ** (bits - 8 * (w - 1));
      for (let i = 0, o = w - 1; i < m; i++, o += w) if (bytes[o]! >= top) throw new SecAggError('ERR_SIZE', `element ${i} is not < 2^${bits}`);
    }
    const tmp = packedChunk();
    const tmpBytes = new Uint8Array(tmp.buffer);
    for (let start = 0; start < m; start += tmp.length) {
      const n = Math.min(tmp.length, m - start);
      const src = bytes.subarray(w * start, w * (start + n));
      if (w === 4 && LE) tmpBytes.set(src);
      else readPacked(src, w, tmp, n);
      this.addChunk(n === tmp.length ? tmp : tmp.subarray(0, n), start, sign);
    }
  }

  /**
   * Add a vector of ring elements from an untrusted source (e.g. a pre-summed partial sum): nothing
   * is changed unless it has exactly `length` words and every word is < 2^bits (SecAggError ERR_SIZE
   * otherwise). One pass over the input: each 64 KiB chunk is range-checked (an OR over its words)
   * and then added while it is still in cache; a bad word undoes the chunks already added (exact
   * mod 2^32), so the refusal path costs what the accepted one does, and no m-sized temporary is made.
   */
  addWords(words: Uint32Array, bits: number): void {
    assertBits(bits);
    if (!(words instanceof Uint32Array)) throw new TypeError('words must be a Uint32Array');
    const m = this.length;
    if (words.length !== m) throw new SecAggError('ERR_SIZE', `vector has ${words.length} elements, expected ${m}`);
    if (bits === 32) {
      this.addChunk(words, 0, 1);
      return;
    }
    for (let start = 0; start < m; start += SCRATCH_WORDS) {
      const end = Math.min(m, start + SCRATCH_WORDS);
      if (orOf(words, start, end) >>> bits !== 0) {
        if (start > 0) this.addChunk(words.subarray(0, start), 0, -1);
        let i = start;
        while (words[i]! >>> bits === 0) i++;
        throw new SecAggError('ERR_SIZE', `element ${i} is not < 2^${bits}`);
      }
      this.addChunk(start === 0 && end === m ? words : words.subarray(start, end), start, 1);
    }
  }

  /** Add or subtract the PRG expansion of a 16-byte key, chunk by chunk, with no m-sized temporary. */
  addPrg(crypto: KeystreamSource, key: Uint8Array, sign: 1 | -1): void | Promise<void> {
    return crypto.keystream(key, this.length, (chunk, offset) => this.addChunk(chunk, offset, sign));
  }

  /** A fresh vector reduced mod 2^bits. */
  toVector(bits: number): Uint32Array {
    assertBits(bits);
    const out = this.words.slice();
    if (bits < 32) {
      const mask = 2 ** bits - 1;
      for (let i = 0; i < out.length; i++) out[i]! &= mask;
    }
    return out;
  }
}

let packedScratch: Uint32Array | undefined;
/** One reusable chunk for decoding packed bytes (accumulators are used from one thread at a time). */
function packedChunk(): Uint32Array {
  return (packedScratch ??= new Uint32Array(SCRATCH_WORDS));
}

/** The bitwise OR of words[start, end): a word ≥ 2^bits sets a bit at or above `bits`. Four lanes: no branch, no dependency chain. */
function orOf(words: Uint32Array, start: number, end: number): number {
  let a = 0;
  let b = 0;
  let c = 0;
  let d = 0;
  let i = start;
  for (; i + 4 <= end; i += 4) {
    a |= words[i]!;
    b |= words[i + 1]!;
    c |= words[i + 2]!;
    d |= words[i + 3]!;
  }
  for (; i < end; i++) a |= words[i]!;
  return (a | b | c | d) >>> 0;
}

function addJs(words: Uint32Array, chunk: Uint32Array, offset: number, sign: 1 | -1): void {
  const n = chunk.length;
  // Uint32Array stores wrap modulo 2^32, and a sum of two words is exact in a double.
  if (sign === 1) for (let i = 0; i < n; i++) words[offset + i] = words[offset + i]! + chunk[i]!;
  else for (let i = 0; i < n; i++) words[offset + i] = words[offset + i]! - chunk[i]!;
}
