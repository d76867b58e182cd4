/**
 * Neighbour graphs over the clients of one round.
 *
 * The complete graph gives SecAgg (Bonawitz et al., CCS 2017). A Harary graph H(k, n) laid on a
 * seeded random permutation of the clients gives SecAgg+ (Bell et al., CCS 2020): every client
 * talks to k others instead of n − 1. Everything here is a pure function of (clients, degree,
 * seed), so the server and every client derive the identical graph without exchanging it.
 */
import { chacha20 } from '@noble/ciphers/chacha.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { abytes } from '../errors.js';
import { MAX_CLIENT_ID, type ClientId } from '../ids.js';

/** Bytes in the server-published graph seed. */
export const GRAPH_SEED_BYTES = 32;

/**
 * Domain separation for the permutation stream: the same round seed may feed other derivations,
 * and a versioned label lets a future layout change without silently colliding with this one.
 */
const PERMUTATION_INFO = utf8ToBytes('secagg/v1/graph/harary-permutation');

export interface NeighbourGraph {
  /** 'complete' for SecAgg, 'harary' for SecAgg+. */
  readonly kind: 'complete' | 'harary';
  /** Every client's number of neighbours (the graph is regular). Never counts the client itself. */
  readonly degree: number;
  /** All clients of the graph, sorted ascending. */
  readonly clients: readonly ClientId[];
  /** Whether `u` is a vertex of this graph. */
  has(u: number): boolean;
  /**
   * The neighbours of `u`, sorted ascending, never containing `u`. Throws RangeError for a client
   * that is not in the graph: asking is a caller bug, not a protocol event.
   */
  neighbours(u: ClientId): readonly ClientId[];
  /** Symmetric; false when u === v or either is not in the graph. */
  isNeighbour(u: number, v: number): boolean;
}

export interface BuildGraphOptions {
  /** Clients that advertised keys (U1): distinct ids, any order. */
  readonly clients: readonly ClientId[];
  /**
   * Requested degree k ≥ 2 (1 only for two clients), or 'complete'. k ≥ n − 1 yields the
   * complete graph. An odd k with an odd
   * number of clients is rounded up to k + 1, because no k-regular graph on n vertices exists when
   * k·n is odd (the degree sum must be even).
   */
  readonly degree: number | 'complete';
  /** 32 bytes published by the server for this round. */
  readonly seed: Uint8Array;
}

export function buildGraph(options: BuildGraphOptions): NeighbourGraph {
  const { clients, degree, seed } = options;
  abytes(seed, 'seed', GRAPH_SEED_BYTES);
  const sorted = sortedDistinctClients(clients);
  const n = sorted.length;
  if (degree !== 'complete') {
    if (typeof degree !== 'number' || !Number.isSafeInteger(degree)) throw new TypeError(`degree must be an integer or 'complete'`);
    if (degree < 1) throw new RangeError(`degree must be ≥ 1, got ${degree}`);
    // A 1-regular graph on more than 2 clients is a set of disjoint pairs: the server would learn
    // every pair's sum.
    if (degree < 2 && n > 2) throw new RangeError(`degree 1 disconnects ${n} clients into pairs; use ≥ 2`);
  }
  let k = degree === 'complete' ? n - 1 : Math.min(degree, n - 1);
  if (k % 2 === 1 && n % 2 === 1) k += 1; // stays ≤ n − 1 because n − 1 is even here
  if (k >= n - 1) return new CompleteGraph(sorted);
  return new HararyGraph(sorted, k, seededPermutation(sorted, seed));
}

function sortedDistinctClients(clients: readonly ClientId[]): ClientId[] {
  if (!Array.isArray(clients)) throw new TypeError('clients must be an array of client ids');
  if (clients.length < 2) throw new RangeError(`a graph needs at least 2 clients, got ${clients.length}`);
  if (clients.length > MAX_CLIENT_ID) throw new RangeError(`at most ${MAX_CLIENT_ID} clients, got ${clients.length}`);
  // A typed array sorts numerically and fast; ids fit in 16 bits.
  const ids = new Uint16Array(clients.length);
  for (let i = 0; i < clients.length; i++) {
    const c: unknown = clients[i];
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 1 || c > MAX_CLIENT_ID)
      throw new RangeError(`clients[${i}] is not a client id in [1, ${MAX_CLIENT_ID}]: ${String(c)}`);
    ids[i] = c;
  }
  ids.sort();
  for (let i = 1; i < ids.length; i++) if (ids[i] === ids[i - 1]) throw new RangeError(`duplicate client id ${ids[i]}`);
  return Array.from(ids) as ClientId[];
}

/**
 * Fisher–Yates over the sorted clients, driven by ChaCha20 keyed with HKDF(seed). Starting from
 * the sorted list is what makes the result independent of the order clients were listed in.
 * Indices use rejection sampling so every permutation is equally likely (a plain `x % m` would
 * favour small indices by up to m/2^32). Exported for the uniformity test, not from the barrel.
 * @internal
 */
export function seededPermutation(sorted: readonly ClientId[], seed: Uint8Array): Uint16Array {
  const perm = Uint16Array.from(sorted);
  const next = uint32Stream(hkdf(sha256, seed, undefined, PERMUTATION_INFO, 32));
  for (let i = perm.length - 1; i > 0; i--) {
    const j = uniformBelow(next, i + 1);
    const tmp = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = tmp;
  }
  return perm;
}

function uniformBelow(next: () => number, m: number): number {
  // Largest multiple of m that fits in 2^32: accepting only below it makes x mod m exactly uniform.
  const limit = 0x1_0000_0000 - (0x1_0000_0000 % m);
  for (;;) {
    const x = next();
    if (x < limit) return x % m;
  }
}

/** Little-endian uint32 words of the ChaCha20 keystream (zero nonce: the key is single-use). */
function uint32Stream(key: Uint8Array): () => number {
  const CHUNK = 4096; // 64 ChaCha blocks per refill
  const zeros = new Uint8Array(CHUNK);
  const buf = new Uint8Array(CHUNK);
  const view = new DataView(buf.buffer);
  const nonce = new Uint8Array(12);
  let counter = 0;
  let off = CHUNK;
  return () => {
    if (off === CHUNK) {
      chacha20(key, nonce, zeros, buf, counter);
      counter += CHUNK / 64;
      off = 0;
    }
    const w = view.getUint32(off, true);
    off += 4;
    return w;
  };
}

/**
 * SecAgg's graph. Nothing of size n² is ever held: `neighbours(u)` filters the shared sorted list
 * on each call (O(n)), which is what any caller iterating the neighbours pays anyway.
 */
class CompleteGraph implements NeighbourGraph {
  readonly kind = 'complete';
  readonly degree: number;
  readonly clients: readonly ClientId[];
  readonly #members: Set<number>;

  constructor(sorted: ClientId[]) {
    this.clients = Object.freeze(sorted);
    this.degree = sorted.length - 1;
    this.#members = new Set(sorted);
  }

  has(u: number): boolean {
    return this.#members.has(u);
  }

  neighbours(u: ClientId): readonly ClientId[] {
    if (!this.has(u)) throw new RangeError(`client ${u} is not in the graph`);
    return this.clients.filter((v) => v !== u);
  }

  isNeighbour(u: number, v: number): boolean {
    return u !== v && this.has(u) && this.has(v);
  }
}

/**
 * H(k, n) on positions 0..n−1: position i is adjacent to i±1..±⌊k/2⌋ (mod n), plus the antipode
 * i + n/2 when k is odd (n is then even, see buildGraph). Client `perm[i]` sits at position i.
 * Adjacency is arithmetic on positions, so the graph itself costs O(n); neighbour lists are made
 * on first request and cached, O(n·k) at most.
 */
class HararyGraph implements NeighbourGraph {
  readonly kind = 'harary';
  readonly degree: number;
  readonly clients: readonly ClientId[];
  readonly #perm: Uint16Array;
  /** position + 1 of each client id; 0 = not a member. Ids < 2^16 and n < 2^16, so 16 bits suffice. */
  readonly #pos1: Uint16Array;
  readonly #half: number;
  readonly #antipode: boolean;
  readonly #cache = new Map<number, readonly ClientId[]>();

  constructor(sorted: ClientId[], k: number, perm: Uint16Array) {
    this.clients = Object.freeze(sorted);
    this.degree = k;
    this.#perm = perm;
    this.#half = k >> 1;
    this.#antipode = k % 2 === 1;
    this.#pos1 = new Uint16Array(MAX_CLIENT_ID + 1);
    for (let i = 0; i < perm.length; i++) this.#pos1[perm[i]!] = i + 1;
  }

  has(u: number): boolean {
    return Number.isInteger(u) && u >= 1 && u <= MAX_CLIENT_ID && this.#pos1[u] !== 0;
  }

  neighbours(u: ClientId): readonly ClientId[] {
    const hit = this.#cache.get(u);
    if (hit !== undefined) return hit;
    if (!this.has(u)) throw new RangeError(`client ${u} is not in the graph`);
    const n = this.#perm.length;
    const p = this.#pos1[u]! - 1;
    const out = new Uint16Array(this.degree);
    let w = 0;
    for (let d = 1; d <= this.#half; d++) {
      out[w++] = this.#perm[(p + d) % n]!;
      out[w++] = this.#perm[(p - d + n) % n]!;
    }
    if (this.#antipode) out[w++] = this.#perm[(p + n / 2) % n]!;
    out.sort();
    const list = Object.freeze(Array.from(out) as ClientId[]);
    this.#cache.set(u, list);
    return list;
  }

  isNeighbour(u: number, v: number): boolean {
    if (u === v || !this.has(u) || !this.has(v)) return false;
    const n = this.#perm.length;
    const diff = Math.abs(this.#pos1[u]! - this.#pos1[v]!);
    const dist = Math.min(diff, n - diff);
    return dist <= this.#half || (this.#antipode && dist === n / 2);
  }
}
