/**
 * Wire codec timings for the four messages that grow with the number of neighbours, at 499
 * neighbours (a complete graph of 500): protobuf-es (toBinary(create()) / fromBinary) against the
 * hand-written fast path in src/wire/fast.ts, in µs per message.
 * Run: node dist/bench/codec.js
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ClientMessageSchema, ServerMessageSchema } from '../src/wire/gen/secagg/v1/secagg_pb.js';
import { PROTOCOL_VERSION, type ClientBody, type ServerBody } from '../src/wire/codec.js';
import { fastDecodeClientMessage, fastDecodeServerMessage, fastEncodeClientMessage, fastEncodeServerMessage } from '../src/wire/fast.js';
import { GRAPH_SEED_BYTES, KEY_BYTES, SHARE_CIPHERTEXT_BYTES, SIGNATURE_BYTES } from '../src/protocol/limits.js';
import { SHARE_BYTES } from '../src/shamir/index.js';
import { cryptoRng } from '../src/rng.js';
import { gbps, keystreamBytesPerMs, msPerCall } from './timing.js';

const K = 499;
const ids = Array.from({ length: K + 1 }, (_, i) => i + 1);
const neighbourIds = ids.slice(1);
const roundId = cryptoRng(16);
const sender = 1;

const shareKeys: ClientBody = {
  case: 'shareKeys',
  value: { selfMaskCommitment: cryptoRng(32), shares: neighbourIds.map((peer) => ({ peer, ciphertext: cryptoRng(SHARE_CIPHERTEXT_BYTES) })) },
};
const half = Math.floor(K / 2);
const unmaskResponse: ClientBody = {
  case: 'unmaskResponse',
  value: {
    selfMaskShares: neighbourIds.slice(0, half).map((owner) => ({ owner, share: cryptoRng(SHARE_BYTES) })),
    keyShares: neighbourIds.slice(half).map((owner) => ({ owner, share: cryptoRng(SHARE_BYTES) })),
  },
};
const keys: ServerBody = {
  case: 'keys',
  value: {
    graphSeed: cryptoRng(GRAPH_SEED_BYTES),
    advertised: ids,
    neighbours: neighbourIds.map((client) => ({
      client,
      encryptionPublicKey: cryptoRng(KEY_BYTES),
      maskingPublicKey: cryptoRng(KEY_BYTES),
      signature: cryptoRng(SIGNATURE_BYTES),
    })),
  },
};
const shares: ServerBody = { case: 'shares', value: { shares: neighbourIds.map((peer) => ({ peer, ciphertext: cryptoRng(SHARE_CIPHERTEXT_BYTES) })) } };

interface Row {
  name: string;
  pbEncode: () => Uint8Array;
  fastEncode: () => Uint8Array | undefined;
  pbDecode: (b: Uint8Array) => unknown;
  fastDecode: (b: Uint8Array) => unknown;
}
const clientRow = (name: string, body: ClientBody): Row => ({
  name,
  pbEncode: () => toBinary(ClientMessageSchema, create(ClientMessageSchema, { version: PROTOCOL_VERSION, roundId, sender, body })),
  fastEncode: () => fastEncodeClientMessage(roundId, sender, body),
  pbDecode: (b) => fromBinary(ClientMessageSchema, b),
  fastDecode: fastDecodeClientMessage,
});
const serverRow = (name: string, body: ServerBody): Row => ({
  name,
  pbEncode: () => toBinary(ServerMessageSchema, create(ServerMessageSchema, { version: PROTOCOL_VERSION, roundId, body })),
  fastEncode: () => fastEncodeServerMessage(roundId, body),
  pbDecode: (b) => fromBinary(ServerMessageSchema, b),
  fastDecode: fastDecodeServerMessage,
});
const rows = [
  clientRow(`ShareKeys (${K} × ${SHARE_CIPHERTEXT_BYTES} B)`, shareKeys),
  clientRow(`UnmaskResponse (${K} × ${SHARE_BYTES} B)`, unmaskResponse),
  serverRow(`KeysForYou (${K} neighbours, signed)`, keys),
  serverRow(`SharesForYou (${K} × ${SHARE_CIPHERTEXT_BYTES} B)`, shares),
];

const us = (ms: number): string => (ms * 1000).toFixed(1);
const x = (a: number, b: number): string => `${(a / b).toFixed(1)}×`;
// Each fast timing also as a ratio to generating the message's own bytes of keystream, measured now.
const rate = keystreamBytesPerMs();
const table: string[][] = [
  ['message', 'bytes', 'encode pb µs', 'encode fast µs', 'speed-up', 'decode pb µs', 'decode fast µs', 'speed-up', 'fast enc / ks', 'fast dec / ks'],
];
for (const r of rows) {
  const bytes = r.pbEncode();
  const fast = r.fastEncode();
  // A benchmark of a path that is not taken, or not equal, would measure nothing useful.
  if (fast === undefined || Buffer.compare(fast, bytes) !== 0) throw new Error(`${r.name}: fast encoding differs`);
  if (r.fastDecode(bytes) === undefined) throw new Error(`${r.name}: fast decoder declined`);
  const pe = msPerCall(r.pbEncode);
  const fe = msPerCall(r.fastEncode);
  const pd = msPerCall(() => r.pbDecode(bytes));
  const fd = msPerCall(() => r.fastDecode(bytes));
  const ks = bytes.length / rate; // ms to generate as many keystream bytes as the message has
  table.push([r.name, String(bytes.length), us(pe), us(fe), x(pe, fe), us(pd), us(fd), x(pd, fd), x(fe, ks), x(fd, ks)]);
}

console.log(`PRG keystream floor in this run: ${gbps(rate)}; "/ ks" = time ÷ time to generate the message's bytes of keystream`);
const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
for (const [i, row] of table.entries()) {
  console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
  if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
}
