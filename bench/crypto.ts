/**
 * Per-primitive speed of each crypto provider, plus the raw alternatives the web provider chose
 * between (WebCrypto vs @noble). Run: node dist/bench/crypto.js [--quick]
 *
 * "seq" awaits each call before the next (how a simple client loop behaves); "par" keeps 64 calls
 * in flight (Promise.all), which lets WebCrypto overlap its thread-pool round-trips.
 */
import { randomBytes } from 'node:crypto';
import { hkdf as nobleHkdf } from '@noble/hashes/hkdf.js';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { gcm as nobleGcm } from '@noble/ciphers/aes.js';
import type { CryptoProvider } from '../src/crypto/provider.js';
import { nodeCrypto } from '../src/crypto/node.js';
import { createWebCrypto, webCrypto } from '../src/crypto/web.js';
import { asKeystream, gbps, keystreamBytesPerMs, msPerCallAsync } from './timing.js';

const QUICK = process.argv.includes('--quick');
const BUDGET_MS = QUICK ? 100 : 400;
const PAR = 64;

type Op = () => unknown;

// Warm-up calls also run the providers' lazy feature detection.
const timeSeq = (op: Op): Promise<number> => msPerCallAsync(op, { minMs: BUDGET_MS, warmup: 5, batch: 4 });
const timePar = async (op: Op): Promise<number> => (await msPerCallAsync(() => Promise.all(Array.from({ length: PAR }, op)), { minMs: BUDGET_MS })) / PAR;

interface Row {
  primitive: string;
  impl: string;
  seq: number;
  par: number | undefined;
  unit?: string;
  perOp?: number; // bytes per op, for throughput rows
}

const rows: Row[] = [];

async function measure(primitive: string, impl: string, op: Op, opts: { par?: boolean; bytes?: number } = {}): Promise<void> {
  const seq = await timeSeq(op);
  const par = opts.par === false ? undefined : await timePar(op);
  const row: Row = { primitive, impl, seq, par };
  if (opts.bytes !== undefined) row.perOp = opts.bytes;
  rows.push(row);
  printRow(row);
}

const fmtOps = (ms: number): string => {
  const ops = 1000 / ms;
  return ops >= 1e6 ? `${(ops / 1e6).toFixed(2)}M` : ops >= 1e3 ? `${(ops / 1e3).toFixed(1)}k` : ops.toFixed(0);
};
const fmtUs = (ms: number): string => `${(ms * 1000).toFixed(ms * 1000 < 10 ? 2 : 1)} µs`;

function printRow(r: Row): void {
  const cell = (ms: number | undefined): string => {
    if (ms === undefined) return '-'.padStart(26);
    const tp = r.perOp === undefined ? '' : ` ${(r.perOp / (ms / 1000) / 1e9).toFixed(2)} GB/s`;
    return `${fmtOps(ms).padStart(7)}/s ${fmtUs(ms).padStart(11)}${tp}`.padStart(26);
  };
  console.log(`| ${r.primitive.padEnd(24)} | ${r.impl.padEnd(16)} | ${cell(r.seq)} | ${cell(r.par)} | ${asKeystream(r.seq, rate).padStart(16)} |`);
}

const nobleOnly = createWebCrypto({ useSubtle: false });
const providers: readonly CryptoProvider[] = [nodeCrypto, webCrypto, nobleOnly];
const subtle = globalThis.crypto.subtle;

const rate = keystreamBytesPerMs();
console.log(
  `node ${process.version}, ${QUICK ? 'quick' : 'full'} run; PRG keystream floor in this run: ${gbps(rate)} ("seq as ks": the keystream generated in one op's time)`,
);
console.log(
  `| ${'primitive'.padEnd(24)} | ${'impl'.padEnd(16)} | ${'seq (ops/s, per op)'.padStart(26)} | ${'par x64 (ops/s, per op)'.padStart(26)} | ${'seq as ks'.padStart(16)} |`,
);
console.log(`|${'-'.repeat(26)}|${'-'.repeat(18)}|${'-'.repeat(28)}|${'-'.repeat(28)}|${'-'.repeat(18)}|`);

const sk = randomBytes(32);
const peers = Array.from({ length: 64 }, () => randomBytes(32));
const msg100 = randomBytes(100);
const ikm = randomBytes(32);
const salt = randomBytes(32);
const info = randomBytes(48);
const aeadKey = randomBytes(32);
const nonce = randomBytes(12);
const aad = randomBytes(24);
const small = randomBytes(64);
const big = randomBytes(1 << 20);

for (const p of providers) {
  const key = await p.x25519(sk);
  const peerPks = await Promise.all(peers.map(async (s) => (await p.x25519(s)).publicKey));
  let i = 0;
  await measure('x25519 import private', p.name, () => p.x25519(sk));
  await measure('x25519 agree (per peer)', p.name, () => key.agree(peerPks[i++ & 63]!));
}
for (const p of providers) {
  const key = await p.ed25519(sk);
  const sig = await key.sign(msg100);
  await measure('ed25519 import seed', p.name, () => p.ed25519(sk));
  await measure('ed25519 sign 100 B', p.name, () => key.sign(msg100));
  await measure('ed25519 verify 100 B', p.name, () => p.ed25519Verify(key.publicKey, msg100, sig));
}
for (const p of providers) await measure('hkdf-sha256 32 B', p.name, () => p.hkdf(ikm, salt, info, 32));
await measure('hkdf-sha256 32 B', 'subtle (raw)', async () => {
  const k = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  return subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info }, k, 256);
});
await measure('hkdf-sha256 32 B', 'noble (raw)', () => nobleHkdf(nobleSha256, ikm, salt, info, 32), { par: false });

for (const p of providers) await measure('sha256 64 B', p.name, () => p.sha256(small));
await measure('sha256 64 B', 'subtle (raw)', () => subtle.digest('SHA-256', small));
for (const size of [4096, 8192, 16384]) {
  const data = randomBytes(size);
  await measure(`sha256 ${size / 1024} KiB`, 'subtle (raw)', () => subtle.digest('SHA-256', data), { par: false, bytes: size });
  await measure(`sha256 ${size / 1024} KiB`, 'noble (raw)', () => nobleSha256(data), { par: false, bytes: size });
}
for (const p of providers) await measure('sha256 1 MiB', p.name, () => p.sha256(big), { par: false, bytes: big.length });

for (const p of providers) {
  const ct = await p.aeadSeal(aeadKey, nonce, msg100, aad);
  await measure('aes-256-gcm seal 100 B', p.name, () => p.aeadSeal(aeadKey, nonce, msg100, aad));
  await measure('aes-256-gcm open 100 B', p.name, () => p.aeadOpen(aeadKey, nonce, ct, aad));
}
{
  const ct = nobleGcm(aeadKey, nonce, aad).encrypt(msg100);
  await measure('aes-256-gcm seal 100 B', 'noble (raw)', () => nobleGcm(aeadKey, nonce, aad).encrypt(msg100), { par: false });
  await measure('aes-256-gcm open 100 B', 'noble (raw)', () => nobleGcm(aeadKey, nonce, aad).decrypt(ct), { par: false });
}

const M = 1 << 20;
const acc = new Uint32Array(M);
const prgKey = randomBytes(16);
for (const p of providers) {
  // The sink does the cheapest useful thing (add into an accumulator) so this is close to the
  // keystream floor the protocol benches are reported against.
  const sink = (chunk: Uint32Array, offset: number): void => {
    for (let j = 0; j < chunk.length; j++) acc[offset + j] = (acc[offset + j]! + chunk[j]!) >>> 0;
  };
  await measure(`keystream+add 2^20 words`, p.name, () => p.keystream(prgKey, M, sink), { par: false, bytes: 4 * M });
}
