import type { KeystreamSink } from './provider.js';
import { checkKeystreamArgs, wordsOf } from './keystream-common.js';

const CHUNK_WORDS = 65536; // 256 KiB per encrypt() call: each call is an async round-trip
const ZEROS = new Uint8Array(4 * CHUNK_WORDS);

/** The 128-bit big-endian counter block for a word offset (4 words per AES block). */
function counterBlock(offsetWords: number): Uint8Array {
  const block = new Uint8Array(16);
  let b = offsetWords / 4; // offsets are multiples of CHUNK_WORDS, so this is an integer
  for (let i = 15; i >= 8 && b > 0; i--) {
    block[i] = b % 256;
    b = Math.floor(b / 256);
  }
  return block;
}

/** AES-128-CTR keystream from WebCrypto: the same bytes as the node path, for browsers. */
export async function aesCtrKeystreamWeb(key: Uint8Array, words: number, sink: KeystreamSink): Promise<void> {
  checkKeystreamArgs(key, words);
  const subtle = globalThis.crypto.subtle;
  const cryptoKey = await subtle.importKey('raw', key as Uint8Array<ArrayBuffer>, { name: 'AES-CTR' }, false, ['encrypt']);
  for (let offset = 0; offset < words; offset += CHUNK_WORDS) {
    const n = Math.min(CHUNK_WORDS, words - offset);
    const out = await subtle.encrypt(
      { name: 'AES-CTR', counter: counterBlock(offset) as Uint8Array<ArrayBuffer>, length: 128 },
      cryptoKey,
      n === CHUNK_WORDS ? ZEROS : ZEROS.subarray(0, 4 * n),
    );
    sink(wordsOf(new Uint8Array(out), n), offset);
  }
}
