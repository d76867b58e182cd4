/**
 * The protocol's bytes, pinned: test/vectors/protocol.json (written by `npm run vectors`, read
 * here) must equal what the code computes now, and the key derivations, transcripts and PRG are
 * recomputed independently from their definitions (docs/protocol.md) with node:crypto alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHash, createPrivateKey, hkdfSync, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { INPUTS, PRG_AT, PRG_WORDS, VECTORS_FILE, computeVectors } from './vectors/generate.js';

interface Pinned {
  derivation: Record<string, string>;
  signatures: Record<string, string>;
  prg: Record<string, number>;
  shamir: string[];
  messages: Record<string, string>;
  rounds: Record<string, { transcript: string; sum: number[] }>;
}
const pinned = JSON.parse(readFileSync(VECTORS_FILE, 'utf8')) as Pinned;

test('every vector in test/vectors/protocol.json is what the code computes now', async () => {
  const now = (await computeVectors()) as unknown as Pinned;
  for (const part of ['derivation', 'signatures', 'prg', 'shamir', 'messages', 'rounds'] as const) {
    assert.deepEqual(now[part], pinned[part], `${part} changed: a protocol change must regenerate the vectors (npm run vectors) and say so`);
  }
  assert.equal(Object.keys(pinned.messages).length, 28, 'seven client and seven server kinds, both modes');
});

const b = (s: string) => Buffer.from(s, 'utf8');
const be32 = (...xs: number[]) => {
  const out = Buffer.alloc(4 * xs.length);
  xs.forEach((x, i) => out.writeUInt32BE(x, 4 * i));
  return out;
};
const h = (x: Uint8Array | ArrayBuffer) => Buffer.from(x instanceof ArrayBuffer ? new Uint8Array(x) : x).toString('hex');
const sha = (...parts: Uint8Array[]) => createHash('sha256').update(Buffer.concat(parts)).digest();

test('the key derivations and transcripts, recomputed from their definitions (HKDF-SHA256 with the round id as salt, labels, big-endian ids)', () => {
  const I = INPUTS;
  const d = pinned.derivation;
  const lo = Math.min(I.u, I.v);
  const hi = Math.max(I.u, I.v);
  assert.equal(d.shareKey, h(hkdfSync('sha256', I.shared, I.round, Buffer.concat([b('secagg/v1/share-key'), be32(lo, hi)]), 32)));
  assert.equal(d.pairwiseMaskKey, h(hkdfSync('sha256', I.shared, I.round, Buffer.concat([b('secagg/v1/pairwise-mask'), be32(lo, hi)]), 16)));
  assert.equal(d.selfMaskKey, h(hkdfSync('sha256', I.seed, I.round, Buffer.concat([b('secagg/v1/self-mask'), be32(I.u)]), 16)));
  assert.equal(d.selfMaskCommitment, h(sha(b('secagg/v1/self-mask-commitment'), I.round, be32(I.u), I.seed)));
  assert.equal(d.shareNonce, h(Buffer.concat([be32(I.u, I.v), Buffer.alloc(4)])));
  assert.equal(d.sharesAad, h(Buffer.concat([b('secagg/v1/shares'), I.round, be32(I.u, I.v)])));
  assert.equal(d.advertiseTranscript, h(Buffer.concat([b('secagg/v1/advertise'), I.round, be32(I.u), I.encryptionKey, I.maskingKey])));
  assert.equal(d.seedCommitment, h(sha(b('secagg/v1/graph-seed-commitment'), I.round, be32(I.u, I.attempt), I.reveal)));
  const commitments = I.advertised.map((x, i) => Uint8Array.from({ length: 32 }, (_, j) => (16 * i + x + j) & 0xff));
  const view = sha(b('secagg/v1/view'), I.round, be32(I.attempt, I.advertised.length), be32(...I.advertised), ...commitments);
  assert.equal(d.viewDigest, h(view));
  assert.equal(d.viewGraphSeed, h(sha(b('secagg/v1/graph-seed'), view, ...commitments)));
  assert.equal(d.viewTranscript, h(Buffer.concat([b('secagg/v1/view'), view, be32(I.u), I.encryptionKey, I.maskingKey])));
});

test('the PRG is AES-128-CTR from a zero counter block, read as little-endian 32-bit words', () => {
  const ks = createCipheriv('aes-128-ctr', INPUTS.prgKey, Buffer.alloc(16)).update(Buffer.alloc(4 * PRG_WORDS));
  for (const i of PRG_AT) assert.equal(pinned.prg[String(i)], ks.readUInt32LE(4 * i), `word ${i}`);
});

test('the signatures, recomputed: Ed25519 (node:crypto, from a PKCS#8 seed) over the transcripts as their definitions give them', () => {
  const I = INPUTS;
  const key = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), I.identity]), format: 'der', type: 'pkcs8' });
  const d = pinned.derivation;
  const s = pinned.signatures;
  const view = Buffer.from(d.viewDigest!, 'hex');
  const consistency = Buffer.concat([b('secagg/v1/consistency'), I.round, view, be32(I.survivors.length, ...I.survivors)]);
  assert.equal(s.advertise, h(sign(null, Buffer.from(d.advertiseTranscript!, 'hex'), key)));
  assert.equal(s.view, h(sign(null, Buffer.from(d.viewTranscript!, 'hex'), key)));
  assert.equal(d.consistencyTranscript, h(consistency), 'the consistency transcript: label, round, view digest, |U3|, U3');
  assert.equal(s.consistency, h(sign(null, consistency, key)));
});
