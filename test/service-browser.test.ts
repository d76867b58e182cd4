/**
 * The service with browser clients: the ESM client bundle (src/client, esbuild, platform browser)
 * runs participate() in headless Chromium over the page's own WebSocket (the dashboard's page, for
 * its origin), next to Node clients. The dashboard itself is tested in dashboard.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { bundleForBrowser, launchChromium, CHROMIUM, type Chromium } from './chromium.js';
import type { SecAggServer } from '../src/server/index.js';
import type * as ClientModule from '../src/client/index.js';
import { assertSum, nextResult, nodeClient, startServer, token, vector, type NodeClient } from './serviceHelpers.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const M = 256;
const BITS = 24;

declare const secaggClient: typeof ClientModule;

let server: SecAggServer;
let browser: Chromium | undefined;
let page: Page;
let bundleInputs: string[] = [];

async function waitingCount(n: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if ((await server.status()).waiting >= n) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`fewer than ${n} clients waiting`);
}

describe('service with headless Chromium clients', { timeout: 60_000 }, () => {
  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} not found: install it with apt-get install -y chromium`);
    server = await startServer({ autoStart: false, dimension: M, bits: BITS, stageTimeoutMs: 2500 });
    const bundled = await bundleForBrowser(join(HERE, '..', 'src', 'client', 'index.js'));
    bundleInputs = bundled.inputs;
    const js = bundled.js;
    browser = await launchChromium({ width: 1200, height: 900 });
    page = browser.page;
    await page.goto(server.httpUrl);
    // Load the ESM bundle in the dashboard's page (same origin as the WebSocket).
    await page.evaluate(async (code) => {
      const url = URL.createObjectURL(new Blob([code], { type: 'text/javascript' }));
      (globalThis as { secaggClient?: unknown }).secaggClient = await import(url);
    }, js);
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  test('the client bundle is browser-only (web crypto provider, no Node module)', () => {
    assert.ok(bundleInputs.some((p) => p.endsWith('src/crypto/web.js')));
    assert.deepEqual(
      bundleInputs.filter((p) => /crypto\/node\.js$|keystream-node\.js$|^node:|\/src\/node\/|\/src\/server\/|node_modules\/ws\//.test(p)),
      [],
    );
  });

  test('a round mixing 5 Chromium clients and 3 Node clients completes with the correct sum', async () => {
    const published = nextResult(server);
    const browserInputs = Array.from({ length: 5 }, (_, i) => vector(500 + i, M, BITS));
    const browserTokens = browserInputs.map((_, i) => token(`browser-${i}`));
    const inPage = page.evaluate(
      ({ url, tokens, inputs }) => Promise.all(tokens.map((t, i) => secaggClient.participate({ url, token: t, input: Uint32Array.from(inputs[i]!) }))),
      { url: server.url, tokens: browserTokens, inputs: browserInputs.map((v) => Array.from(v)) },
    );
    const nodes = Array.from({ length: 3 }, (_, i) => nodeClient(server, `node-${i}`, vector(600 + i, M, BITS)));
    await waitingCount(8);
    assert.equal(await server.startRound(), 1);
    const browserReports = (await inPage).map((r) => r[0]!);
    await Promise.all(nodes.map((c) => c.done));
    const result = await published;
    assert.equal(result.included.length, 8);
    for (const r of browserReports) assert.equal(r.included, true);
    const all: NodeClient[] = [
      ...nodes,
      ...browserReports.map((r, i) => ({ name: `browser-${i}`, input: browserInputs[i]!, clientId: r.clientId, done: Promise.resolve([]) })),
    ];
    assertSum(result, all, M, BITS);
    assert.equal(result.identities.filter((s) => s.startsWith('browser-')).length, 5);
  });
});
