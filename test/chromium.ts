/**
 * The headless-Chromium harness the browser tests share: Debian's /usr/bin/chromium driven by
 * playwright-core (never a downloaded browser), and esbuild bundles for the browser platform, where
 * '#crypto-default' resolves to the WebCrypto/@noble provider.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_MISSING = `${CHROMIUM} not found: the browser tests need Debian's Chromium — install it with \`apt-get install -y chromium\``;
/** The repository root (tests run from dist/test). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Bundle `entry` (a compiled .js file) for browsers; returns the code and the files it pulled in. */
export async function bundleForBrowser(entry: string): Promise<{ js: string; inputs: string[] }> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'browser', // conditions browser/default/import: '#crypto-default' → crypto/web.js
    format: 'esm',
    target: 'es2022',
    write: false,
    metafile: true,
    logLevel: 'silent',
    absWorkingDir: ROOT,
  });
  return { js: result.outputFiles[0]!.text, inputs: Object.keys(result.metafile.inputs) };
}

export interface Chromium {
  readonly context: BrowserContext;
  readonly page: Page;
  close(): Promise<void>;
}

/**
 * Headless Chromium with a fresh profile and the flags this closed network needs, plus `args` (e.g.
 * `--host-resolver-rules=…`). Fails (never skips) without Chromium.
 */
export async function launchChromium(viewport: { width: number; height: number }, options: { readonly args?: readonly string[] } = {}): Promise<Chromium> {
  if (!existsSync(CHROMIUM)) throw new Error(CHROMIUM_MISSING);
  const profileDir = await mkdtemp(join(tmpdir(), 'secagg-chromium-'));
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-quic',
      '--disable-component-update',
      '--disable-sync',
      ...(options.args ?? []),
    ],
    viewport,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    async close() {
      await context.close().catch(() => {});
      await rm(profileDir, { recursive: true, force: true });
    },
  };
}
