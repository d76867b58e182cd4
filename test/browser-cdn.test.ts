/**
 * The published browser bundle as a page gets it from an npm CDN: the package is packed (`npm pack`)
 * and extracted, a local server serves it at /npm/<name>@<version>/… with a CDN's CORS headers, and
 * a page from another origin — the HTML example of docs/browser.md, taken from the markdown, with its
 * token endpoint the guide's jose snippet — imports the minified bundle by URL and takes part in a
 * round of a real service next to Node clients. The same page on a genuinely insecure origin
 * (http://insecure.test, mapped to 127.0.0.1 by Chromium's resolver) has no crypto.subtle: the
 * guide's page refuses (requireWebCrypto), the default warns once and still gets the sum right. A
 * consumer project's tsc resolves the bundle's types from the extracted package.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ConsoleMessage, Page } from 'playwright-core';
import { launchChromium, CHROMIUM, CHROMIUM_MISSING, ROOT, type Chromium } from './chromium.js';
import { buildBrowserBundle, packAndExtract } from './pack.js';
import type { SecAggServer } from '../src/server/index.js';
import type * as ClientModule from '../src/client/index.js';
import { nextResult, nodeClient, plaintextSum, SECRET, startServer, token, vector } from './serviceHelpers.js';

const M = 16; // the guide's example sends 16 numbers below 2^16
const BITS = 16;
const INSECURE_HOST = 'insecure.test';
/** What the guide's page loads and connects to; the test serves both locally. */
const DOC_SERVICE_URL = 'wss://secagg.example.com/ws';

interface Requests {
  readonly path: string;
  readonly origin: string | undefined;
}

let tmp: string;
let consumerDir: string;
let packageDir: string;
let cdnBase: string; // http://127.0.0.1:P/npm/secagg@0.1.0
let docCdnBase: string; // https://cdn.jsdelivr.net/npm/secagg@0.1.0
let bundlePath: string;
let html: string;
let secaggToken: (userId: string) => Promise<string>;
let server: SecAggServer;
let cdn: Server;
let site: Server;
let sitePort: number;
let browser: Chromium | undefined;
const cdnRequests: Requests[] = [];
const tokenRequests: string[] = [];

const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
};

async function listen(s: Server): Promise<number> {
  await new Promise<void>((ok, fail) => s.once('error', fail).listen(0, '127.0.0.1', ok));
  return (s.address() as AddressInfo).port;
}

const close = (s: Server | undefined): Promise<void> => new Promise((ok) => (s ? s.close(() => ok()) : ok()));

/** A fenced block of docs/browser.md: the first ```lang block containing `marker`. */
function docBlock(markdown: string, lang: string, marker: string): string {
  const blocks = [...markdown.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
  const block = blocks.find((b) => b.includes(marker));
  assert.ok(block, `docs/browser.md has a \`\`\`${lang} block with ${marker}`);
  return block;
}

/** The page's log (<pre id="log">) once a line matches `done`. */
async function logUntil(page: Page, done: RegExp): Promise<string> {
  const source = done.source;
  await page.waitForFunction((s) => new RegExp(s, 'm').test(document.getElementById('log')?.textContent ?? ''), source, { timeout: 30_000 });
  return (await page.textContent('#log')) ?? '';
}

async function waiting(n: number): Promise<void> {
  for (let i = 0; i < 800; i++) {
    if ((await server.status()).waiting >= n) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`fewer than ${n} clients waiting`);
}

declare const secaggClient: typeof ClientModule;

describe('the published browser bundle, loaded from a CDN by a page of another origin', { timeout: 120_000 }, () => {
  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(CHROMIUM_MISSING);
    buildBrowserBundle();
    tmp = await mkdtemp(join(tmpdir(), 'secagg-cdn-'));
    consumerDir = join(tmp, 'consumer');
    const packed = await packAndExtract(consumerDir);
    packageDir = packed.packageDir;
    const pkg = JSON.parse(await readFile(join(packageDir, 'package.json'), 'utf8')) as { jsdelivr: string; exports: Record<string, { default: string }> };
    bundlePath = pkg.exports['./browser']!.default.replace(/^\.\//, '');

    // The guide: its page, and its backend's token function (run from inside the checkout, where jose resolves).
    const guide = await readFile(join(ROOT, 'docs', 'browser.md'), 'utf8');
    html = docBlock(guide, 'html', '<script type="module">');
    const tokenModule = docBlock(guide, 'js', 'export async function secaggToken');
    const backendDir = await mkdtemp(join(ROOT, 'dist', 'browser-cdn-'));
    await writeFile(join(backendDir, 'secagg-token.mjs'), tokenModule);
    process.env['SECAGG_SECRET'] = SECRET;
    ({ secaggToken } = (await import(pathToFileURL(join(backendDir, 'secagg-token.mjs')).href)) as { secaggToken: typeof secaggToken });
    await rm(backendDir, { recursive: true, force: true });

    // The CDN: the extracted package under /npm/<name>@<version>/, readable from any origin.
    const prefix = `/npm/${packed.name}@${packed.version}`;
    cdn = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://cdn');
      cdnRequests.push({ path: url.pathname, origin: header(req.headers, 'origin') });
      const cors = { 'access-control-allow-origin': '*', 'cross-origin-resource-policy': 'cross-origin' };
      if (!url.pathname.startsWith(`${prefix}/`) && url.pathname !== prefix) return void res.writeHead(404, cors).end();
      // /npm/secagg@v alone serves the package's "jsdelivr" file, as jsDelivr does.
      const rel = url.pathname === prefix ? pkg.jsdelivr : url.pathname.slice(prefix.length + 1);
      const file = normalize(join(packageDir, rel));
      if (!file.startsWith(packageDir + sep) || !existsSync(file)) return void res.writeHead(404, cors).end();
      void readFile(file).then((body) =>
        res
          .writeHead(200, {
            ...cors,
            'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
            'cache-control': 'public, max-age=31536000, immutable',
          })
          .end(body),
      );
    });
    cdnBase = `http://127.0.0.1:${await listen(cdn)}${prefix}`;
    docCdnBase = `https://cdn.jsdelivr.net${prefix}`;

    // The site: the guide's page (its CDN and service URLs pointed at the local ones) and its backend's token endpoint.
    let users = 0;
    site = createServer((req, res) => {
      if (req.method === 'GET' && req.url === '/') {
        assert.ok(html.includes(docCdnBase) && html.includes(DOC_SERVICE_URL), 'the guide page loads the CDN bundle and names a service URL');
        const page = html.replaceAll(docCdnBase, cdnBase).replaceAll(DOC_SERVICE_URL, server.url);
        return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
      }
      if (req.method === 'GET' && req.url === '/blank')
        return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><title>blank</title>');
      if (req.method === 'POST' && req.url === '/secagg-token') {
        const user = `web-user-${++users}`;
        tokenRequests.push(user);
        return void secaggToken(user).then((t) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: t })));
      }
      res.writeHead(404).end();
    });
    sitePort = await listen(site);
    // The service admits WebSockets from the site's pages only (the guide's "Origins").
    server = await startServer({
      autoStart: false,
      dimension: M,
      bits: BITS,
      stageTimeoutMs: 5000,
      jwt: { audience: 'secagg' },
      allowedOrigins: [`http://localhost:${sitePort}`, `http://${INSECURE_HOST}:${sitePort}`],
    });

    browser = await launchChromium({ width: 900, height: 700 }, { args: [`--host-resolver-rules=MAP ${INSECURE_HOST} 127.0.0.1`] });
  });

  after(async () => {
    await browser?.close();
    await close(site);
    await close(cdn);
    await server?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  test('the guide page on http://localhost imports the min bundle from the CDN origin and its input is in the sum', async () => {
    const page = browser!.page;
    const warnings = collectWarnings(page);
    const siteOrigin = `http://localhost:${sitePort}`;
    const published = nextResult(server);
    const nodes = [nodeClient(server, 'node-a', vector(11, M, BITS)), nodeClient(server, 'node-b', vector(12, M, BITS))];
    await page.goto(`${siteOrigin}/`);
    assert.equal(await page.evaluate(() => isSecureContext), true, 'http://localhost is a secure context');
    await waiting(3);
    assert.equal(await server.startRound(), 1);
    const log = await logUntil(page, /^(done|error):/);
    await Promise.all(nodes.map((c) => c.done));
    const result = await published;

    assert.doesNotMatch(log, /^error:/m, log);
    assert.match(log, /^done: round 1, in the sum$/m);
    const input = Uint32Array.from(/^input: ([\d,]+)$/m.exec(log)![1]!.split(',').map(Number));
    assert.equal(input.length, M);
    assert.equal(result.included.length, 3);
    assert.deepEqual([...result.identities].sort(), ['node-a', 'node-b', tokenRequests[0]!].sort(), "the page's identity is its backend's user");
    assert.deepEqual(result.sum, plaintextSum([input, ...nodes.map((c) => c.input)], M, BITS), "the sum includes the page's input");

    // Loaded cross-origin, as from a CDN: the page's origin asked for the minified bundle.
    assert.deepEqual(
      cdnRequests.filter((r) => r.path.endsWith('.js')),
      [{ path: `${new URL(cdnBase).pathname}/${bundlePath}`, origin: siteOrigin }],
    );
    assert.deepEqual(warnings, [], 'no warning in a secure context');
  });

  test('a page from an origin the service does not list is refused at every upgrade (403): no connection, participate() gives up with ERR_CONNECT', async () => {
    const page = browser!.page;
    const before = (await server.status()).connections;
    await page.goto(`http://127.0.0.1:${sitePort}/blank`); // another origin than http://localhost:P
    const outcome = await page.evaluate(
      async ({ bundle, url, tok }) => {
        const m = (await import(bundle)) as typeof ClientModule;
        try {
          await m.participate({ url, token: tok, input: new Uint32Array(16), reconnect: { maxAttempts: 1, initialDelayMs: 10, maxDelayMs: 10 } });
          return 'joined';
        } catch (e) {
          return `${(e as { code?: string }).code}: ${(e as Error).message}`;
        }
      },
      { bundle: `${cdnBase}/${bundlePath}`, url: server.url, tok: token('wrong-origin') },
    );
    // Browsers hide the refused upgrade's status from the page (a failed WebSocket, nothing more), so the client retries as after a network error.
    assert.match(outcome, /^ERR_CONNECT: gave up after 1 attempts/);
    assert.equal((await server.status()).connections, before, 'no WebSocket was opened');
    const metrics = await (await fetch(`${server.adminUrl}metrics`)).text();
    assert.match(metrics, /^secagg_connections_closed_total\{reason="origin"\} 2$/m, 'both upgrades refused for their origin');
  });

  test('/npm/<name>@<version> alone serves the bundle (the package\'s "jsdelivr" field), and it is the bundle the page ran', async () => {
    const page = browser!.page;
    const [bare, file] = await page.evaluate(
      ([a, b]) => Promise.all([fetch(a!).then((r) => r.text()), fetch(b!).then((r) => r.text())]),
      [cdnBase, `${cdnBase}/${bundlePath}`],
    );
    assert.equal(bare, file);
    assert.equal(file, await readFile(join(ROOT, bundlePath), 'utf8'), 'the packed bundle is the one the build wrote');
    assert.match(file, /^\/\*! secagg\/client \d+\.\d+\.\d+ \| Apache-2\.0/);
    const code = file.slice(0, file.indexOf('/*! Bundled license information'));
    assert.ok(code.length > 100_000 && code.split('\n').length < 20, `minified: ${code.split('\n').length} lines of code`);
  });

  test('on an insecure origin the guide page (requireWebCrypto: true) refuses with ERR_NO_WEBCRYPTO before connecting', async () => {
    const page = browser!.page;
    const before = (await server.status()).connections;
    await page.goto(`http://${INSECURE_HOST}:${sitePort}/`);
    assert.equal(await page.evaluate(() => isSecureContext), false, `http://${INSECURE_HOST} is not a secure context`);
    assert.equal(await page.evaluate(() => typeof crypto.subtle), 'undefined', 'no crypto.subtle there');
    const log = await logUntil(page, /^(done|error):/);
    assert.match(log, /^error: ERR_NO_WEBCRYPTO: WebCrypto is unavailable: this page is not a secure context/m, log);
    assert.doesNotMatch(log, /^event:/m, 'no connection was made');
    assert.equal((await server.status()).connections, before);
  });

  test('on an insecure origin by default: one warning per page (console) or per call (onWarning), and the sum is right', async () => {
    const page = browser!.page;
    const warnings = collectWarnings(page);
    await page.goto(`http://${INSECURE_HOST}:${sitePort}/blank`); // the same insecure origin, without the guide's script
    assert.equal(await page.evaluate(() => isSecureContext), false);
    await page.evaluate(async (url) => {
      (globalThis as { secaggClient?: unknown }).secaggClient = await import(url);
    }, `${cdnBase}/${bundlePath}`);
    const browserInputs = [21, 22, 23].map((seed) => vector(seed, M, BITS));
    const published = nextResult(server);
    // Page clients: the first with onWarning, the other two with the default console.warn.
    const inPage = page.evaluate(
      async ({ url, tokens, inputs }) => {
        const hooked: { code: string; message: string }[] = [];
        const reports = await Promise.all(
          tokens.map((t, i) =>
            secaggClient.participate({ url, token: t, input: Uint32Array.from(inputs[i]!), ...(i === 0 ? { onWarning: (w) => void hooked.push(w) } : {}) }),
          ),
        );
        return { hooked, included: reports.map((r) => r[0]!.included) };
      },
      { url: server.url, tokens: ['page-0', 'page-1', 'page-2'].map((n) => token(n)), inputs: browserInputs.map((v) => Array.from(v)) },
    );
    const nodes = [nodeClient(server, 'node-c', vector(31, M, BITS)), nodeClient(server, 'node-d', vector(32, M, BITS))];
    await waiting(5);
    assert.equal(await server.startRound(), 2);
    const { hooked, included } = await inPage;
    await Promise.all(nodes.map((c) => c.done));
    const result = await published;

    assert.deepEqual(included, [true, true, true]);
    assert.equal(result.included.length, 5);
    assert.deepEqual(result.sum, plaintextSum([...browserInputs, ...nodes.map((c) => c.input)], M, BITS), 'the JavaScript fallback gives the same sum');
    assert.equal(hooked.length, 1, 'onWarning: once for its participate() call');
    assert.equal(hooked[0]!.code, 'WARN_NO_WEBCRYPTO');
    assert.match(hooked[0]!.message, /not a secure context.*slower.*not constant-time/);
    assert.equal(warnings.length, 1, `console.warn once for the page's two other clients: ${JSON.stringify(warnings)}`);
    assert.equal(warnings[0], `secagg: ${hooked[0]!.message}`);
  });

  test("a consumer's tsc resolves secagg/browser's types from the extracted package, and they reject a wrong call", async () => {
    // The declarations name @bufbuild/protobuf's types (a dependency, installed next to the package).
    await symlink(join(ROOT, 'node_modules', '@bufbuild'), join(consumerDir, 'node_modules', '@bufbuild'), 'dir');
    const good = [
      "import { participate, isClientError, type ClientWarning, type ParticipateOptions, type RoundReport } from 'secagg/browser';",
      'const options: ParticipateOptions = {',
      "  url: 'wss://secagg.example.com/ws',",
      "  token: 'token',",
      '  input: new Uint32Array(16),',
      '  requireWebCrypto: true,',
      '  onWarning: (w: ClientWarning) => console.log(w.code, w.message),',
      '};',
      'export const reports: Promise<RoundReport[]> = participate(options);',
      "export const refused = (e: unknown): boolean => isClientError(e, 'ERR_NO_WEBCRYPTO');",
    ].join('\n');
    const bad = "import { participate } from 'secagg/browser';\nexport const r = participate({ url: 'wss://x/ws', token: 1, input: [1, 2] });\n";
    for (const resolution of ['bundler', 'nodenext'] as const) {
      const dir = join(consumerDir, resolution);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
      const compilerOptions = {
        strict: true,
        noEmit: true,
        skipLibCheck: false, // check the package's declarations (not TypeScript's own lib files)
        skipDefaultLibCheck: true,
        types: [],
        target: 'ES2022',
        lib: ['ES2022', 'DOM'],
        module: resolution === 'bundler' ? 'ESNext' : 'NodeNext',
        moduleResolution: resolution,
      };
      await writeFile(join(dir, 'good.ts'), good);
      await writeFile(join(dir, 'bad.ts'), bad);
      await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['good.ts', 'bad.ts'] }));
      const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 120_000,
      });
      const errors = r.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
      assert.notEqual(r.status, 0, `${resolution}: the wrong call compiled`);
      assert.ok(errors.length > 0 && errors.every((l) => l.startsWith('bad.ts(')), `${resolution}: errors only in bad.ts:\n${r.stdout}`);
      assert.ok(
        errors.some((l) => /TS2322/.test(l)),
        `${resolution}: the wrong types are refused (TS2322)`,
      );
    }
  });
});

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The page's console.warn lines from now on. */
function collectWarnings(page: Page): string[] {
  const out: string[] = [];
  const listener = (m: ConsoleMessage) => {
    if (m.type() === 'warning') out.push(m.text());
  };
  page.on('console', listener);
  return out;
}
