import { createCipheriv } from 'node:crypto';
import type { KeystreamSink } from './provider.js';
import { checkKeystreamArgs, wordsOf } from './keystream-common.js';

const CHUNK_WORDS = 16384; // 64 KiB per update(): measured fastest here (4 KiB chunks are 2–3× slower)
const ZEROS = new Uint8Array(4 * CHUNK_WORDS);
const ZERO_IV = new Uint8Array(16);

/** AES-128-CTR keystream from node:crypto (OpenSSL, AES-NI). Synchronous. */
export function aesCtrKeystreamNode(key: Uint8Array, words: number, sink: KeystreamSink): void {
  checkKeystreamArgs(key, words);
  const cipher = createCipheriv('aes-128-ctr', key, ZERO_IV);
  for (let offset = 0; offset < words; offset += CHUNK_WORDS) {
    const n = Math.min(CHUNK_WORDS, words - offset);
    const out = cipher.update(n === CHUNK_WORDS ? ZEROS : ZEROS.subarray(0, 4 * n));
    sink(wordsOf(out, n), offset);
  }
}
