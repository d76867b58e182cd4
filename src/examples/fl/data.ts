/**
 * A deterministic labelled dataset for the federated-learning example, and its non-IID split.
 *
 * No real dataset can be downloaded here, so the data is generated: C classes in D dimensions, each
 * class a mixture of two Gaussian clusters (so a hidden layer helps), with overlapping classes so
 * accuracy stays well below 100 %. Everything is a function of the seed.
 */
import { unsafeSeededRng } from '../../rng.js';

/** Uniform [0, 1) and standard normal draws from a seeded ChaCha20 stream (example data only, not secrets). */
export class SeededRandom {
  private readonly next: (n: number) => Uint8Array;
  private spare: number | undefined;
  constructor(seed: number) {
    this.next = unsafeSeededRng(seed);
  }
  uniform(): number {
    const b = this.next(8);
    const dv = new DataView(b.buffer, b.byteOffset, 8);
    return (dv.getUint32(0) * 2 ** 21 + (dv.getUint32(4) >>> 11)) / 2 ** 53;
  }
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [xs[i], xs[j]] = [xs[j]!, xs[i]!];
    }
    return xs;
  }
}

export interface Dataset {
  features: number;
  classes: number;
  /** Row-major, features per row. */
  x: Float32Array;
  y: Int32Array;
}

export interface DatasetSpec {
  features: number;
  classes: number;
  /** Distance scale of cluster centres from the origin; smaller = more overlap. */
  separation: number;
}

export const DEFAULT_SPEC: DatasetSpec = { features: 16, classes: 8, separation: 1.1 };

export interface Generator {
  spec: DatasetSpec;
  /** n samples of class `label`. */
  sample(label: number, n: number, rnd: SeededRandom): { x: Float32Array; y: Int32Array };
}

/** Cluster centres are a function of the seed; samples are drawn from a separate stream per use. */
function makeGenerator(seed: number, spec: DatasetSpec = DEFAULT_SPEC): Generator {
  const rnd = new SeededRandom(seed);
  const { features: d, classes: c, separation } = spec;
  // Two clusters per class.
  const centres: Float64Array[][] = [];
  for (let k = 0; k < c; k++) {
    const pair: Float64Array[] = [];
    for (let j = 0; j < 2; j++) {
      const mu = new Float64Array(d);
      for (let i = 0; i < d; i++) mu[i] = rnd.normal() * separation;
      pair.push(mu);
    }
    centres.push(pair);
  }
  return {
    spec,
    sample(label, n, r) {
      const x = new Float32Array(n * d);
      const y = new Int32Array(n).fill(label);
      for (let s = 0; s < n; s++) {
        const mu = centres[label]![r.int(2)]!;
        for (let i = 0; i < d; i++) x[s * d + i] = mu[i]! + r.normal();
      }
      return { x, y };
    },
  };
}

function concat(parts: Array<{ x: Float32Array; y: Int32Array }>, d: number, c: number): Dataset {
  const n = parts.reduce((a, p) => a + p.y.length, 0);
  const x = new Float32Array(n * d);
  const y = new Int32Array(n);
  let o = 0;
  for (const p of parts) {
    x.set(p.x, o * d);
    y.set(p.y, o);
    o += p.y.length;
  }
  return { features: d, classes: c, x, y };
}

export interface Partition {
  /** Each client's local data. */
  clients: Dataset[];
  /** The two classes each client mostly holds. */
  mainClasses: Array<[number, number]>;
  /** Balanced held-out test set. */
  test: Dataset;
}

/**
 * Non-IID split: client i holds `mainShare` of its examples from two classes (i mod C and a second
 * drawn at random) and the rest spread over all classes; client sizes vary in [minSize, maxSize].
 */
export function partition(options: {
  seed: number;
  clients: number;
  minSize: number;
  maxSize: number;
  testPerClass: number;
  mainShare?: number;
  spec?: DatasetSpec;
}): Partition {
  const gen = makeGenerator(options.seed, options.spec);
  const { features: d, classes: c } = gen.spec;
  const rnd = new SeededRandom(options.seed + 1);
  const mainShare = options.mainShare ?? 0.85;
  const clients: Dataset[] = [];
  const mainClasses: Array<[number, number]> = [];
  for (let i = 0; i < options.clients; i++) {
    const a = i % c;
    let b = rnd.int(c - 1);
    if (b >= a) b++;
    mainClasses.push([a, b]);
    const size = options.minSize + rnd.int(options.maxSize - options.minSize + 1);
    const parts: Array<{ x: Float32Array; y: Int32Array }> = [];
    const counts = new Array<number>(c).fill(0);
    for (let s = 0; s < size; s++) {
      const label = rnd.uniform() < mainShare ? (rnd.uniform() < 0.5 ? a : b) : rnd.int(c);
      counts[label]!++;
    }
    counts.forEach((n, label) => {
      if (n > 0) parts.push(gen.sample(label, n, rnd));
    });
    clients.push(concat(parts, d, c));
  }
  const test = concat(
    Array.from({ length: c }, (_, label) => gen.sample(label, options.testPerClass, rnd)),
    d,
    c,
  );
  return { clients, mainClasses, test };
}
