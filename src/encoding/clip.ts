/**
 * Clipping with a report: how many values were changed and by how much the L2 norm was scaled.
 * Clipping is part of what a client's update becomes, so it is never done silently.
 */
import type { ClipMode } from './plan.js';

export interface ClipReport {
  mode: ClipMode;
  /** Elements in the vector. */
  elements: number;
  /** Elements whose value clipping changed (L2 mode: every nonzero element when the vector was scaled). */
  clipped: number;
  /** max |x_i| before clipping. */
  maxAbs: number;
  /** ‖x‖₂ before clipping. */
  l2Norm: number;
  /** The factor the vector was multiplied by (L2 mode; 1 when the norm was already ≤ clip, and always 1 in value mode). */
  scale: number;
}

/** Anything that indexes like a float vector: Float32Array, Float64Array, number[]. */
export type FloatVector = ArrayLike<number>;

/**
 * Clip a copy of `values` to [−clip, clip] per element ('value') or to L2 norm ≤ clip ('l2').
 * Throws RangeError on NaN or ±Infinity (a diverged update must not be averaged in unnoticed).
 */
export function clipVector(values: FloatVector, clip: number, mode: ClipMode = 'value'): { values: Float64Array; report: ClipReport } {
  if (values === null || typeof values !== 'object' || typeof values.length !== 'number') throw new TypeError('values must be an array-like of numbers');
  if (!(clip > 0) || !Number.isFinite(clip)) throw new RangeError(`clip must be a finite number > 0, got ${clip}`);
  const m = values.length;
  const out = new Float64Array(m);
  let maxAbs = 0;
  let sq = 0;
  for (let i = 0; i < m; i++) {
    const x = values[i]!;
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new RangeError(`values[${i}] = ${String(x)} is not a finite number`);
    out[i] = x;
    const a = Math.abs(x);
    if (a > maxAbs) maxAbs = a;
    sq += x * x;
  }
  // Norm without overflow for huge values: rescale when the plain sum of squares overflowed.
  let l2Norm = Math.sqrt(sq);
  if (!Number.isFinite(l2Norm)) {
    let s = 0;
    for (let i = 0; i < m; i++) s += (out[i]! / maxAbs) ** 2;
    l2Norm = maxAbs * Math.sqrt(s);
  }
  let clipped = 0;
  let scale = 1;
  if (mode === 'value') {
    for (let i = 0; i < m; i++) {
      const x = out[i]!;
      if (x > clip) {
        out[i] = clip;
        clipped++;
      } else if (x < -clip) {
        out[i] = -clip;
        clipped++;
      }
    }
  } else if (mode === 'l2') {
    if (l2Norm > clip) {
      scale = clip / l2Norm;
      for (let i = 0; i < m; i++) {
        const x = out[i]!;
        if (x === 0) continue;
        // Rounding could leave |x·scale| a hair above clip; the overflow analysis relies on ≤ clip.
        out[i] = Math.max(-clip, Math.min(clip, x * scale));
        clipped++;
      }
    }
  } else throw new RangeError(`clip mode must be 'value' or 'l2', got ${String(mode)}`);
  return { values: out, report: { mode, elements: m, clipped, maxAbs, l2Norm, scale } };
}
