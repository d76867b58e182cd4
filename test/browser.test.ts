/**
 * The client in a real browser: the library's client side, bundled with esbuild for the browser
 * platform (so '#crypto-default' is the WebCrypto/@noble provider), served from 127.0.0.1 and run in
 * headless Chromium (/usr/bin/chromium, driven by playwright-core). Node runs the server and some
 * clients with the node provider and relays the encoded bytes to the browser clients, so a round
 * mixes both providers on the wire. Chromium missing is a failure, not a skip: install it with
 * `apt-get install -y chromium`.
 */
import { randomRingVector } from '../src/sim/random.js';
import { plaintextSum } from './helpers.js';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { bundleForBrowser, launchChromium, CHROMIUM, CHROMIUM_MISSING, ROOT, type Chromium } from './chromium.js';
import { nodeCrypto } from '../src/crypto/node.js';
import { defaultThreshold } from '../src/graph/index.js';
import { clientId, roundId, type ClientId } from '../src/ids.js';
import { effectiveDegree, type Degree, type Mode, type RoundConfig } from '../src/protocol/config.js';
import { clientContext, createClient, handleClientMessage, type ClientContext, type ClientState } from '../src/protocol/clientRound.js';
import { serverContext, type Outgoing } from '../src/protocol/serverRound.js';
import { createRoundRunner } from '../src/protocol/runner.js';
import { unsafeSeededRng } from '../src/rng.js';
import type { BrowserApi, DeliverResult } from './browser/entry.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/test
const ENTRY = join(HERE, 'browser', 'entry.js');
const OUT_DIR = join(ROOT, 'test-output', 'browser');

const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

type Api = BrowserApi;
declare const secagg: Api;

let httpServer: Server | undefined;
let browser: Chromium | undefined;
let page: Page;
let bundleInputs: string[] = [];

async function bundle(): Promise<string> {
  const { js, inputs } = await bundleForBrowser(ENTRY);
  bundleInputs = inputs;
  return js;
}

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>secagg in the browser</title>
<style>body{font:13px monospace;margin:12px;background:#fff}h1{font-size:16px}</style></head>
<body><h1>secagg — browser clients</h1><pre id="log"></pre>
<script type="module" src="/bundle.js"></script></body></html>`;

async function serve(js: string): Promise<string> {
  httpServer = createServer((req, res) => {
    if (req.url === '/' || req.url === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
    } else if (req.url === '/bundle.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(js);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((ok, fail) => httpServer!.once('error', fail).listen(0, '127.0.0.1', ok));
  return `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}/`;
}

const log = (line: string): Promise<void> => page.evaluate((l) => secagg.log(l), line);

// ---- one mixed round: server + some clients in Node, the others in the page ----

type Stage = 'advertise' | 'share' | 'masked' | 'consistency' | 'unmask';
const STAGES: readonly Stage[] = ['advertise', 'share', 'masked', 'consistency', 'unmask'];

interface MixedRound {
  n: number;
  browserIds: number[];
  mode: Mode;
  degree: Degree;
  m: number;
  bits: number;
  /** Client id → the stage whose message it never answers (it goes silent from then on). */
  drop: Map<number, Stage>;
  seed: number;
}

interface MixedResult {
  sum: Uint32Array;
  included: number[];
  inputs: Map<number, Uint32Array>;
  /** Client compute ms for the message each client answered at each stage. */
  ms: Record<'browser' | 'node', Partial<Record<Stage, number[]>>>;
}

async function runMixedRound(r: MixedRound): Promise<MixedResult> {
  const rng = unsafeSeededRng(r.seed);
  const ids = Array.from({ length: r.n }, (_, i) => clientId(i + 1));
  const inBrowser = new Set(r.browserIds);
  const inputs = new Map(ids.map((id) => [id as number, randomRingVector(r.m, r.bits, rng)]));

  let directory: Map<number, Uint8Array> | undefined;
  const nodeIdentity = new Map<number, Uint8Array>();
  if (r.mode === 'active') {
    // Browser clients make their identities in the page; Node clients here. Everyone gets the same directory.
    directory = new Map();
    for (const [id, pk] of await page.evaluate((list) => secagg.makeIdentities(list), r.browserIds)) directory.set(id, unb64(pk));
    for (const id of ids) {
      if (inBrowser.has(id)) continue;
      const seed = rng(32);
      nodeIdentity.set(id, seed);
      directory.set(id, (await nodeCrypto.ed25519(seed)).publicKey);
    }
  }
  const dirList = directory ? [...directory].map(([id, pk]) => [id, b64(pk)] as [number, string]) : undefined;
  await page.evaluate(([specs, dir]) => secagg.createClients(specs, dir), [
    r.browserIds.map((id) => ({ id, input: b64(new Uint8Array(inputs.get(id)!.buffer)) })),
    dirList,
  ] as const);
  const nodeClients = new Map<number, ClientState>();
  const nodeContexts = new Map<number, ClientContext>();
  for (const id of ids) {
    if (inBrowser.has(id)) continue;
    const identity = nodeIdentity.get(id);
    nodeClients.set(id, createClient({ id, input: inputs.get(id)! }));
    nodeContexts.set(id, clientContext({ crypto: nodeCrypto, ...(directory && identity ? { identity, directory } : {}) }));
  }

  const k = effectiveDegree(r.degree, r.n);
  const config: RoundConfig = {
    roundId: roundId(rng(16)),
    bits: r.bits,
    dimension: r.m,
    threshold: defaultThreshold(k),
    degree: r.degree,
    mode: r.mode,
    cohort: ids,
  };
  const outgoing: Outgoing[] = [];
  // The server side runs as everywhere else: through a round runner, the test saying when a stage's time is up.
  const runner = createRoundRunner({
    server: { config },
    context: serverContext({ crypto: nodeCrypto, ...(directory ? { directory } : {}) }),
    send: (to, bytes) => void outgoing.push({ to, bytes }),
  });
  runner.start();
  await runner.idle();
  const ms: MixedResult['ms'] = { browser: {}, node: {} };
  await log(`round: mode=${r.mode} n=${r.n} degree=${r.degree} (k=${k}, t=${config.threshold}) m=${r.m} bits=${r.bits}`);
  await log(`  browser clients: ${r.browserIds.join(', ')}; dropping: ${[...r.drop].map(([id, s]) => `${id}@${s}`).join(', ') || 'none'}`);

  while (runner.state.stage !== 'done' && runner.state.stage !== 'aborted') {
    const stage = runner.state.stage as Stage;
    const live = outgoing.splice(0).filter(({ to }) => {
      const d = r.drop.get(to);
      return d === undefined || STAGES.indexOf(d) > STAGES.indexOf(stage);
    });
    const replies: Array<{ from: ClientId; bytes: Uint8Array }> = [];
    // Browser clients: one page.evaluate for the whole stage.
    const batch = live.filter(({ to }) => inBrowser.has(to)).map(({ to, bytes }) => [to, b64(bytes)] as [number, string]);
    const answered: DeliverResult[] = batch.length ? await page.evaluate((b) => secagg.deliver(b), batch) : [];
    for (const a of answered) {
      assert.equal(a.error, null, `browser client ${a.id} at ${stage}: ${a.error}`);
      (ms.browser[stage] ??= []).push(a.ms);
      if (a.out !== null) replies.push({ from: clientId(a.id), bytes: unb64(a.out) });
    }
    for (const { to, bytes } of live) {
      if (inBrowser.has(to)) continue;
      const t0 = performance.now();
      const step = await handleClientMessage(nodeContexts.get(to)!, nodeClients.get(to)!, bytes);
      (ms.node[stage] ??= []).push(performance.now() - t0);
      assert.equal(step.error, undefined, `node client ${to} at ${stage}: ${step.error?.message}`);
      nodeClients.set(to, step.state);
      if (step.outgoing) replies.push({ from: to, bytes: step.outgoing });
    }
    for (const { from, bytes } of replies) {
      const error = await runner.message(from, bytes);
      assert.equal(error, undefined, `server refused client ${from} at ${stage}: ${error?.message}`);
    }
    if (runner.state.stage === stage) await runner.deadline(); // the silent clients' deadline passes
    const b = answered.length;
    await log(`  ${stage.padEnd(11)} browser replies ${b}, node replies ${replies.length - b} → server ${runner.state.stage}`);
  }
  const server = runner.state;
  assert.equal(server.stage, 'done', `round aborted: ${server.abortError?.code} ${server.abortError?.message}`);
  const result = server.result!;
  await log(`  done: ${result.included.length} clients in the sum [${result.included.join(', ')}]`);
  return { sum: result.sum, included: [...result.included], inputs, ms };
}

function expectedIncluded(n: number, drop: Map<number, Stage>): number[] {
  // A client is in the sum iff it sent its masked input; later dropouts do not remove it.
  const before: Stage[] = ['advertise', 'share', 'masked'];
  return Array.from({ length: n }, (_, i) => i + 1).filter((id) => !before.includes(drop.get(id)!));
}

async function checkRound(r: MixedRound): Promise<MixedResult> {
  const res = await runMixedRound(r);
  assert.deepEqual(res.included, expectedIncluded(r.n, r.drop), 'included clients');
  assert.ok(r.browserIds.filter((id) => res.included.includes(id)).length >= 4, 'browser clients are in the sum');
  assert.deepEqual(
    res.sum,
    plaintextSum(
      res.included.map((id) => res.inputs.get(id)!),
      r.m,
      r.bits,
    ),
    'sum equals the plaintext sum of the included clients',
  );
  return res;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};

const MISSING = CHROMIUM_MISSING;

// Not a skip: without Chromium this fails (and the suite below fails in its before hook).
test(`Chromium is installed at ${CHROMIUM}`, () => {
  assert.ok(existsSync(CHROMIUM), MISSING);
});

describe('browser (headless Chromium)', { timeout: 50_000 }, () => {
  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(MISSING);
    const js = await bundle();
    await mkdir(OUT_DIR, { recursive: true });
    await writeFile(join(OUT_DIR, 'bundle.js'), js);
    const url = await serve(js);
    browser = await launchChromium({ width: 1000, height: 800 });
    page = browser.page;
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(url);
    await page
      .waitForFunction(() => 'secagg' in globalThis, undefined, { timeout: 10_000 })
      .catch(() => {
        throw new Error(`the bundle did not load in the page: ${pageErrors.join('; ') || 'no page error reported'}`);
      });
  });

  after(async () => {
    await browser?.close();
    await new Promise<void>((ok) => (httpServer ? httpServer.close(() => ok()) : ok()));
  });

  test('the bundle is browser-only: web provider, no node: import', async () => {
    assert.ok(
      bundleInputs.some((p) => p.endsWith('src/crypto/web.js')),
      'crypto/web.js is in the bundle',
    );
    const nodeOnly = bundleInputs.filter((p) => /crypto\/node\.js$|keystream-node\.js$|^node:|\/src\/node\//.test(p));
    assert.deepEqual(nodeOnly, [], 'no Node-only module is bundled');
    const js = await page.evaluate(() => fetch('/bundle.js').then((r) => r.text()));
    assert.doesNotMatch(js, /(?:from|import|require)\s*\(?\s*["']node:/, 'no node: import in the bundle');
    assert.equal(await page.evaluate(() => secagg.defaultCryptoName()), 'web', "'#crypto-default' resolves to the web provider");
    const ua = await page.evaluate(() => secagg.userAgent());
    assert.match(ua, /HeadlessChrome/, 'running in headless Chromium');
    await log(`user agent: ${ua}`);
  });

  test('crypto known answers in the browser (RFC 7748, RFC 5869, RFC 8032) and the AES-CTR keystream equals node', async (t) => {
    const { support, results } = await page.evaluate(() => secagg.kat());
    t.diagnostic(`WebCrypto native: X25519 ${support.x25519}, Ed25519 ${support.ed25519}`);
    await log(`WebCrypto native X25519: ${support.x25519}, Ed25519: ${support.ed25519}`);
    for (const r of results) await log(`  ${r.ok ? 'ok  ' : 'FAIL'} ${r.name}`);
    assert.ok(results.length >= 18);
    for (const r of results) assert.ok(r.ok, `${r.name}: got ${r.got}, want ${r.want}`);
    // The PRG: byte-identical keystream across a length that is not a multiple of any chunk size.
    for (const words of [1, 7, 16385, 100_003]) {
      const key = unsafeSeededRng(words)(16);
      const browser = unb64(await page.evaluate(([k, w]) => secagg.keystream(k, w), [b64(key), words] as const));
      const node = new Uint32Array(words);
      await nodeCrypto.keystream(key, words, (chunk, offset) => node.set(chunk, offset));
      assert.deepEqual(browser, new Uint8Array(node.buffer), `keystream of ${words} words`);
    }
    await log('  ok   AES-128-CTR keystream (web) equals node:crypto for 1, 7, 16385, 100003 words');
  });

  test('mixed round, semi-honest, SecAgg+ graph: 6 browser + 6 node clients, dropouts at advertise, masked, unmask', async () => {
    await checkRound({
      n: 12,
      browserIds: [1, 3, 5, 7, 9, 11],
      mode: 'semi-honest',
      degree: 6,
      m: 1000,
      bits: 24,
      drop: new Map<number, Stage>([
        [2, 'advertise'], // node
        [5, 'masked'], // browser: shared its keys, then silent — its pairwise masks are removed
        [9, 'unmask'], // browser: in the sum, never answers the unmask request
      ]),
      seed: 11,
    });
  });

  test('mixed round, active, complete graph: 6 browser + 5 node clients, dropouts at share, consistency, unmask', async () => {
    await checkRound({
      n: 11,
      browserIds: [1, 3, 5, 7, 9, 11],
      mode: 'active',
      degree: 'complete',
      m: 1000,
      bits: 32,
      drop: new Map<number, Stage>([
        [3, 'share'], // browser
        [6, 'consistency'], // node: in the sum, never signs
        [11, 'unmask'], // browser
      ]),
      seed: 12,
    });
    await mkdir(OUT_DIR, { recursive: true });
    await page.screenshot({ path: join(OUT_DIR, 'rounds.png'), fullPage: true });
  });

  test('timing (reported, not asserted): masked stage at m = 100,000 with 20 neighbours', async (t) => {
    const m = 100_000;
    const res = await checkRound({
      n: 21,
      browserIds: [1, 2, 3, 4, 5],
      mode: 'semi-honest',
      degree: 'complete',
      m,
      bits: 32,
      drop: new Map(),
      seed: 13,
    });
    const rate = await page.evaluate((w) => secagg.keystreamRate(w), 4 * m);
    const nodeRate = await (async () => {
      const key = new Uint8Array(16).fill(9);
      let x = 0;
      let best = Infinity;
      for (let i = 0; i < 6; i++) {
        const t0 = performance.now();
        await nodeCrypto.keystream(key, 4 * m, (c) => (x ^= c[0]!));
        if (i > 0) best = Math.min(best, performance.now() - t0);
      }
      return (4 * m) / best + (x & 0);
    })();
    const fmt = (xs: number[] = []) =>
      `median ${median(xs).toFixed(1)} ms (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)}, n=${xs.length})`;
    // The expansions a client makes in the masked stage: 20 pairwise + 1 self mask of m words.
    const floor = (wordsPerMs: number) => ((21 * m) / wordsPerMs).toFixed(1);
    const lines = [
      `masked stage per client, m=${m}, 20 neighbours, bits=32:`,
      `  browser (Chromium, web provider): ${fmt(res.ms.browser.masked)}`,
      `  node (node provider):             ${fmt(res.ms.node.masked)}`,
      `  keystream floor for 21 expansions: browser ${floor(rate)} ms (${((rate * 4) / 1e6).toFixed(2)} GB/s), node ${floor(nodeRate)} ms (${((nodeRate * 4) / 1e6).toFixed(2)} GB/s)`,
      `  share stage per client: browser ${fmt(res.ms.browser.share)}; node ${fmt(res.ms.node.share)}`,
    ];
    for (const l of lines) {
      t.diagnostic(l);
      await log(l);
    }
    await page.screenshot({ path: join(OUT_DIR, 'rounds.png'), fullPage: true });
  });
});
