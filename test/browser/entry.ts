/**
 * Browser entry for test/browser.test.ts. tsc compiles it to dist/test/browser/entry.js; the test
 * bundles that file with esbuild for the browser platform (conditions browser/default, so
 * '#crypto-default' resolves to crypto/web.js) and loads it in headless Chromium. It puts one
 * object, `secagg`, on globalThis: the real client state machines with the web provider, driven
 * from Node by page.evaluate. Bytes cross the boundary as base64 strings.
 *
 * Importing this file has no effect besides defining that global, so it is harmless under Node.
 */
import { defaultCrypto } from '#crypto-default';
import { createWebCrypto, webCrypto } from '../../src/crypto/web.js';
import type { CryptoProvider } from '../../src/crypto/provider.js';
import { clientContext, createClient, handleClientMessage, type ClientContext, type ClientState } from '../../src/protocol/clientRound.js';
import { clientId } from '../../src/ids.js';

export function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function fromBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

const hex = (s: string): Uint8Array => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
const toHex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

export interface KatResult {
  readonly name: string;
  readonly ok: boolean;
  readonly got: string;
  readonly want: string;
}

async function kats(p: CryptoProvider): Promise<KatResult[]> {
  const out: KatResult[] = [];
  const check = (name: string, got: Uint8Array | boolean, want: string) => {
    const g = typeof got === 'boolean' ? String(got) : toHex(got);
    out.push({ name: `${p.name}: ${name}`, ok: g === want, got: g, want });
  };
  // RFC 7748 §6.1: Alice and Bob.
  const alice = await p.x25519(hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
  const bob = await p.x25519(hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'));
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
  check('X25519 RFC 7748 §6.1 Alice public', alice.publicKey, '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  check('X25519 RFC 7748 §6.1 Bob public', bob.publicKey, 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  check('X25519 RFC 7748 §6.1 shared (Alice)', await alice.agree(bob.publicKey), shared);
  check('X25519 RFC 7748 §6.1 shared (Bob)', await bob.agree(alice.publicKey), shared);
  // RFC 5869 A.1 (test case 1).
  const okm = await p.hkdf(new Uint8Array(22).fill(0x0b), hex('000102030405060708090a0b0c'), hex('f0f1f2f3f4f5f6f7f8f9'), 42);
  check('HKDF-SHA256 RFC 5869 case 1', okm, '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
  // RFC 8032 §7.1 TEST 1 (empty message).
  const ed = await p.ed25519(hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60'));
  const edPub = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
  const edSig = 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b';
  check('Ed25519 RFC 8032 test 1 public key', ed.publicKey, edPub);
  check('Ed25519 RFC 8032 test 1 signature', await ed.sign(new Uint8Array(0)), edSig);
  check('Ed25519 RFC 8032 test 1 verifies', await p.ed25519Verify(hex(edPub), new Uint8Array(0), hex(edSig)), 'true');
  const badSig = hex(edSig);
  badSig[0] = badSig[0]! ^ 1;
  check('Ed25519 RFC 8032 test 1 tampered signature fails', await p.ed25519Verify(hex(edPub), new Uint8Array(0), badSig), 'false');
  return out;
}

/** Whether this browser's WebCrypto has X25519 / Ed25519 natively (else the provider uses @noble). */
async function subtleSupport(): Promise<{ x25519: boolean; ed25519: boolean }> {
  const s = globalThis.crypto?.subtle;
  const tryGen = async (name: string, usages: KeyUsage[]) => {
    try {
      await s.generateKey({ name } as Algorithm, false, usages);
      return true;
    } catch {
      return false;
    }
  };
  return { x25519: await tryGen('X25519', ['deriveBits']), ed25519: await tryGen('Ed25519', ['sign', 'verify']) };
}

export interface DeliverResult {
  readonly id: number;
  /** Reply to the server (base64), or null. */
  readonly out: string | null;
  readonly error: string | null;
  readonly stage: string;
  /** Client compute time for this message, ms (performance.now in the page). */
  readonly ms: number;
}

const clients = new Map<number, ClientState>();
const contexts = new Map<number, ClientContext>();
/** Identity seeds this page generated for its clients (active mode); only the public keys leave the page. */
const identities = new Map<number, Uint8Array>();

function log(line: string): void {
  const doc = (globalThis as { document?: Document }).document;
  if (doc === undefined) return;
  let pre = doc.getElementById('log');
  if (pre === null) {
    pre = doc.createElement('pre');
    pre.id = 'log';
    doc.body.appendChild(pre);
  }
  pre.textContent += line + '\n';
}

export const api = {
  userAgent: (): string => globalThis.navigator?.userAgent ?? '',
  defaultCryptoName: (): string => defaultCrypto.name,
  log,
  async kat(): Promise<{ support: { x25519: boolean; ed25519: boolean }; results: KatResult[] }> {
    const results = [...(await kats(webCrypto)), ...(await kats(createWebCrypto({ useSubtle: false })))];
    return { support: await subtleSupport(), results };
  },
  /** The PRG keystream of the web provider, as base64 of little-endian words. */
  async keystream(keyB64: string, words: number): Promise<string> {
    const out = new Uint32Array(words);
    await webCrypto.keystream(fromBase64(keyB64), words, (chunk, offset) => out.set(chunk, offset));
    return toBase64(new Uint8Array(out.buffer));
  },
  /** Keystream rate of the web provider (words/ms, best of 5 runs), discarding output. */
  async keystreamRate(words: number): Promise<number> {
    const key = new Uint8Array(16).fill(9);
    let x = 0;
    let best = Infinity; // best of 5: the floor, not the noise of a shared machine
    for (let i = 0; i < 6; i++) {
      const t0 = performance.now();
      await webCrypto.keystream(key, words, (chunk) => (x ^= chunk[0]!));
      if (i > 0) best = Math.min(best, performance.now() - t0); // the first run is a warm-up
    }
    return words / best + (x & 0);
  },
  /** Make Ed25519 identities in the page; returns [id, public key base64] pairs. */
  async makeIdentities(ids: number[]): Promise<Array<[number, string]>> {
    const out: Array<[number, string]> = [];
    for (const id of ids) {
      const seed = globalThis.crypto.getRandomValues(new Uint8Array(32));
      identities.set(id, seed);
      out.push([id, toBase64((await defaultCrypto.ed25519(seed)).publicKey)]);
    }
    return out;
  },
  /** Create this page's clients for a round (replacing any earlier ones). */
  createClients(specs: Array<{ id: number; input: string }>, directory?: Array<[number, string]>): void {
    clients.clear();
    const dir = directory ? new Map(directory.map(([id, pk]) => [id, fromBase64(pk)] as const)) : undefined;
    for (const { id, input } of specs) {
      const bytes = fromBase64(input);
      const vector = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
      const identity = identities.get(id);
      clients.set(id, createClient({ id: clientId(id), input: vector }));
      // No `crypto` option: the client must pick the browser's default provider by itself.
      contexts.set(id, clientContext(dir && identity ? { identity, directory: dir } : {}));
    }
  },
  /** Hand each listed client its server message, one after the other; returns their replies. */
  async deliver(batch: Array<[number, string]>): Promise<DeliverResult[]> {
    const results: DeliverResult[] = [];
    for (const [id, b64] of batch) {
      const state = clients.get(id);
      if (state === undefined) throw new Error(`no browser client ${id}`);
      const bytes = fromBase64(b64);
      const t0 = performance.now();
      const r = await handleClientMessage(contexts.get(id)!, state, bytes);
      const ms = performance.now() - t0;
      clients.set(id, r.state);
      results.push({ id, out: r.outgoing ? toBase64(r.outgoing) : null, error: r.error?.code ?? null, stage: r.state.stage, ms });
    }
    return results;
  },
};

export type BrowserApi = typeof api;

(globalThis as { secagg?: BrowserApi }).secagg = api;
