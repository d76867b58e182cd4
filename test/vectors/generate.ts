/**
 * Protocol test vectors: every derived key, nonce, AAD and signed transcript for fixed inputs, PRG
 * words at block and chunk edges, Shamir shares from a fixed seed, the encoded bytes of each
 * message kind, and the digest of a whole seeded round's transcript in each mode.
 *
 *   npm run vectors      # = node dist/test/vectors/generate.js --write: rewrites test/vectors/protocol.json (review the diff: it is a protocol change)
 *
 * Tests only read the file (test/vectors.test.ts): a change to a label, a byte order or an encoding
 * then fails them, instead of passing a replay test that compares two runs of the same code.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeCrypto } from '../../src/crypto/node.js';
import type { ClientId, RoundId } from '../../src/ids.js';
import * as derive from '../../src/protocol/derive.js';
import { RingAccumulator } from '../../src/ring/accumulator.js';
import { unsafeSeededRng } from '../../src/rng.js';
import { splitSecret } from '../../src/shamir/index.js';
import { simulateRound } from '../../src/sim/simulate.js';
import { configOf, encodeClientBodies, encodeServerBodies, largestClientBodies, largestServerBodies } from '../fuzz/corpus.js';
import { Prng } from '../fuzz/mutate.js';
import { randomInputs } from '../helpers.js';

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
/** 0, 1, 2, … (mod 256) from `start`: inputs anyone can rebuild. */
const counting = (n: number, start = 0): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);

/** The fixed inputs of the derivation vectors. */
export const INPUTS = {
  round: counting(16) as RoundId,
  u: 3 as ClientId,
  v: 7 as ClientId,
  shared: counting(32, 0x40),
  seed: counting(32, 0x80),
  encryptionKey: counting(32, 0xa0),
  maskingKey: counting(32, 0xc0),
  reveal: counting(32, 0xe0),
  attempt: 2,
  advertised: [3, 7, 11, 65535],
  survivors: [3, 7, 65535],
  prgKey: counting(16, 0x10),
  identity: counting(32, 0x20),
} as const;

/** PRG words kept: the first, around the first AES blocks, and around 2^14 and 2^16 words. */
export const PRG_WORDS = 70_000;
export const PRG_AT = [0, 1, 2, 3, 4, 5, 7, 8, 16383, 16384, 16385, 65535, 65536, 65537, 69999];

export async function computeVectors(): Promise<Record<string, unknown>> {
  const c = nodeCrypto;
  const I = INPUTS;
  const commitments = I.advertised.map((x, i) => counting(32, 16 * i + x));
  const viewDigest = await derive.viewDigest(c, I.round, I.attempt, I.advertised, commitments);
  const derivation = {
    shareKey: hex(await derive.shareKey(c, I.shared, I.round, I.v, I.u)),
    shareNonce: hex(derive.shareNonce(I.u, I.v)),
    sharesAad: hex(derive.sharesAad(I.round, I.u, I.v)),
    pairwiseMaskKey: hex(await derive.pairwiseMaskKey(c, I.shared, I.round, I.v, I.u)),
    selfMaskKey: hex(await derive.selfMaskKey(c, I.seed, I.round, I.u)),
    selfMaskCommitment: hex(await derive.selfMaskCommitment(c, I.seed, I.round, I.u)),
    advertiseTranscript: hex(derive.advertiseTranscript(I.round, I.u, I.encryptionKey, I.maskingKey)),
    seedCommitment: hex(await derive.seedCommitment(c, I.round, I.u, I.attempt, I.reveal)),
    viewDigest: hex(viewDigest),
    viewGraphSeed: hex(await derive.viewGraphSeed(c, viewDigest, commitments)),
    viewTranscript: hex(derive.viewTranscript(viewDigest, I.u, I.encryptionKey, I.maskingKey)),
    consistencyTranscript: hex(derive.consistencyTranscript(I.round, viewDigest, I.survivors)),
    sharePlaintext: hex(derive.sharePlaintext(I.u, I.v, counting(44, 1), counting(44, 101))),
  };
  // Ed25519 is deterministic (RFC 8032): the signatures a client with this identity seed sends.
  const identity = await c.ed25519(I.identity);
  const signatures = {
    identityPublicKey: hex(identity.publicKey),
    advertise: hex(await identity.sign(derive.advertiseTranscript(I.round, I.u, I.encryptionKey, I.maskingKey))),
    view: hex(await identity.sign(derive.viewTranscript(viewDigest, I.u, I.encryptionKey, I.maskingKey))),
    consistency: hex(await identity.sign(derive.consistencyTranscript(I.round, viewDigest, I.survivors))),
  };
  const acc = new RingAccumulator(PRG_WORDS);
  await acc.addPrg(c, I.prgKey, 1);
  const words = acc.view();
  const prg = Object.fromEntries(PRG_AT.map((i) => [String(i), words[i]!]));
  const shamir = splitSecret({ secret: I.seed, holders: [1, 2, 3, 5, 65535], threshold: 3, rng: unsafeSeededRng(9) }).map(hex);
  const messages: Record<string, string> = {};
  for (const mode of ['semi-honest', 'active'] as const) {
    const config = configOf({ clients: 6, degree: 4, bits: 20, dimension: 5, mode, ids: 'low' });
    for (const { kind, bytes } of encodeClientBodies(config, largestClientBodies(config, new Prng(2)))) messages[`${mode} client ${kind}`] = hex(bytes);
    for (const { kind, bytes } of encodeServerBodies(config, largestServerBodies(config, new Prng(3)))) messages[`${mode} server ${kind}`] = hex(bytes);
  }
  const rounds: Record<string, { transcript: string; sum: number[] }> = {};
  for (const mode of ['semi-honest', 'active'] as const) {
    const h = createHash('sha256');
    const r = await simulateRound({
      inputs: randomInputs(8, 40, 20, 3),
      bits: 20,
      degree: 4,
      mode,
      dropouts: { masked: [2] },
      rng: unsafeSeededRng(42),
      interceptServer: (to, bytes) => {
        h.update(Uint8Array.of(to)).update(bytes);
        return bytes;
      },
    });
    rounds[mode] = { transcript: h.digest('hex'), sum: [...r.sum] };
  }
  return { derivation, signatures, prg, shamir, messages, rounds };
}

export const VECTORS_FILE = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'vectors', 'protocol.json');

// Written only on request: the test runner also loads this file, and must never rewrite the pins.
if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--write')) {
  const v = await computeVectors();
  writeFileSync(VECTORS_FILE, JSON.stringify(v, null, 1) + '\n');
  process.stdout.write(`wrote ${VECTORS_FILE}\n`);
}
