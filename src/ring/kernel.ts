/**
 * A tiny WebAssembly SIMD kernel for the hot loop: dst[i] += src[i] (or -=) over uint32 lanes.
 * Plain JS adds ~0.7–1.3 G words/s, slower than the AES-CTR keystream itself (~1 G words/s), so in
 * JS the add would double the cost of masking; i32x4 runs at several G words/s and keeps masking
 * near the keystream floor. The module is assembled here from its opcodes (no toolchain, no
 * binary blob) and exports its memory, which the accumulator uses as working space.
 *
 * Both functions take byte offsets and a byte count that is a multiple of 64 (4 × 16-byte lanes per
 * iteration); callers pad their regions to 64 bytes.
 */

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128, as i32.const wants: 64 must be 0xc0 0x00, since 0x40 alone reads as -64. */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function section(id: number, content: number[]): number[] {
  return [id, ...leb(content.length), ...content];
}

function name(s: string): number[] {
  return [...leb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
}

const LOCAL_GET = 0x20,
  LOCAL_SET = 0x21,
  I32_CONST = 0x41,
  I32_ADD = 0x6a,
  I32_SUB = 0x6b,
  I32_EQZ = 0x45;
const SIMD = 0xfd,
  V128_LOAD = 0x00,
  V128_STORE = 0x0b,
  I32X4_ADD = 0xae,
  I32X4_SUB = 0xb1;

/** Body of `(dst, src, nbytes)`: four 16-byte lanes per iteration. */
function laneLoop(op: number): number[] {
  const memarg = (offset: number) => [4, ...leb(offset)]; // align 2^4 = 16 (a hint only)
  const lanes: number[] = [];
  for (let k = 0; k < 4; k++) {
    lanes.push(
      LOCAL_GET,
      0,
      LOCAL_GET,
      0,
      SIMD,
      V128_LOAD,
      ...memarg(16 * k),
      LOCAL_GET,
      1,
      SIMD,
      V128_LOAD,
      ...memarg(16 * k),
      SIMD,
      ...leb(op),
      SIMD,
      V128_STORE,
      ...memarg(16 * k),
    );
  }
  const body = [
    0, // no locals
    0x02,
    0x40, // block
    0x03,
    0x40, // loop
    LOCAL_GET,
    2,
    I32_EQZ,
    0x0d,
    1, // br_if 1 (exit) when nbytes == 0
    ...lanes,
    LOCAL_GET,
    0,
    I32_CONST,
    ...sleb(64),
    I32_ADD,
    LOCAL_SET,
    0,
    LOCAL_GET,
    1,
    I32_CONST,
    ...sleb(64),
    I32_ADD,
    LOCAL_SET,
    1,
    LOCAL_GET,
    2,
    I32_CONST,
    ...sleb(64),
    I32_SUB,
    LOCAL_SET,
    2,
    0x0c,
    0, // br 0 (continue)
    0x0b,
    0x0b,
    0x0b, // end loop, end block, end func
  ];
  return [...leb(body.length), ...body];
}

function assemble(): Uint8Array<ArrayBuffer> {
  const bytes = [
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, [1, 0x60, 3, 0x7f, 0x7f, 0x7f, 0]), // type (i32,i32,i32) -> ()
    ...section(3, [2, 0, 0]), // two functions of type 0
    ...section(5, [1, 0, 1]), // one memory, min 1 page
    ...section(7, [3, ...name('memory'), 2, 0, ...name('add'), 0, 0, ...name('sub'), 0, 1]),
    ...section(10, [2, ...laneLoop(I32X4_ADD), ...laneLoop(I32X4_SUB)]),
  ];
  return new Uint8Array(bytes);
}

export interface Kernel {
  readonly memory: WebAssembly.Memory;
  /** dst += src over `nbytes` (multiple of 64), byte offsets into memory. */
  add(dst: number, src: number, nbytes: number): void;
  sub(dst: number, src: number, nbytes: number): void;
}

let compiled: WebAssembly.Module | null | undefined;

/** A fresh kernel instance (own memory), or null where WebAssembly SIMD is unavailable. */
export function createKernel(): Kernel | null {
  if (compiled === undefined) {
    try {
      compiled = typeof WebAssembly === 'object' ? new WebAssembly.Module(assemble()) : null;
    } catch {
      compiled = null;
    }
  }
  if (compiled === null) return null;
  const exports = new WebAssembly.Instance(compiled, {}).exports as unknown as Kernel;
  return exports;
}

/** Exposed for tests that check the JS fallback against the kernel. */
export const unsafeAssembleKernel: () => Uint8Array<ArrayBuffer> = assemble;
