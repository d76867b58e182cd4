/**
 * What a page without crypto.subtle (not a secure context) pays: the web provider with WebCrypto vs
 * its @noble fallback (createWebCrypto({ useSubtle: false }), what such a page gets), in headless
 * Chromium, for the primitives of a client's round. Run: node dist/bench/browser-fallback.js
 * (docs/browser.md quotes its output).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { launchChromium } from '../test/chromium.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench

// Runs in the page: ms per call of each primitive, for both providers.
const ENTRY = `
import { createWebCrypto } from '../src/crypto/web.js';
async function perCall(op, minMs = 300) {
  await op();
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < minMs) { await op(); n++; }
  return (performance.now() - t0) / n;
}
globalThis.measure = async () => {
  const rows = [];
  const key16 = new Uint8Array(16).fill(1), key32 = new Uint8Array(32).fill(2), nonce = new Uint8Array(12), kib = new Uint8Array(1024);
  for (const crypto of [createWebCrypto(), createWebCrypto({ useSubtle: false })]) {
    const mine = await crypto.x25519(new Uint8Array(32).fill(3));
    const peer = (await crypto.x25519(new Uint8Array(32).fill(4))).publicKey;
    rows.push({ provider: crypto.name, op: 'AES-128-CTR keystream, 1M words (4 MB)', ms: await perCall(() => crypto.keystream(key16, 1_000_000, () => {})) });
    rows.push({ provider: crypto.name, op: 'X25519 agree', ms: await perCall(() => mine.agree(peer)) });
    rows.push({ provider: crypto.name, op: 'AES-256-GCM seal, 1 KiB', ms: await perCall(() => crypto.aeadSeal(key32, nonce, kib, nonce)) });
  }
  return rows;
};`;

const bundle = await build({
  stdin: { contents: ENTRY, resolveDir: HERE, loader: 'js' },
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'es2022',
  write: false,
});
const js = bundle.outputFiles[0]!.text;
const server = createServer((req, res) => {
  if (req.url === '/bench.js') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(js);
  res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><script type="module" src="/bench.js"></script>');
});
await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
const browser = await launchChromium({ width: 800, height: 600 });
try {
  await browser.page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`); // a secure context: WebCrypto present
  await browser.page.waitForFunction(() => 'measure' in globalThis);
  const rows = (await browser.page.evaluate('measure()')) as { provider: string; op: string; ms: number }[];
  console.log(`${await browser.page.evaluate(() => navigator.userAgent)}\n`);
  for (const op of [...new Set(rows.map((r) => r.op))]) {
    const web = rows.find((r) => r.op === op && r.provider === 'web')!.ms;
    const noble = rows.find((r) => r.op === op && r.provider === 'web-noble')!.ms;
    console.log(`${op.padEnd(42)} WebCrypto ${web.toFixed(3).padStart(9)} ms   @noble ${noble.toFixed(3).padStart(9)} ms   ×${(noble / web).toFixed(1)}`);
  }
} finally {
  await browser.close();
  server.close();
}
