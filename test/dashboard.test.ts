/**
 * The dashboard at / in headless Chromium, against a real service and real clients over
 * WebSockets: an empty history; three completed rounds; a round aborted at the share stage (two
 * clients leave); a round slowed by the masked stage's deadline (a client stays connected and never
 * sends its input); and a live round waiting on one pending client. The page is checked against
 * what the test caused and against numbers computed here from /api/rounds; screenshots go to
 * test-output/dashboard/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { launchChromium, ROOT, type Chromium } from './chromium.js';
import type { RoundRecord, SecAggServer } from '../src/server/index.js';
import type { ReplyStage } from '../src/client/index.js';
import { nodeClient, startServer, vector } from './serviceHelpers.js';
import { memoryStore } from '../src/server/store.js';

/** A completed DP round's record as the service writes it (ε given). */
function dpRecord(i: number, startedAt: number, epsilon: number, cumulative: number): Omit<RoundRecord, 'id'> {
  return {
    roundId: i.toString(16).padStart(32, '0'),
    params: { bits: 24, dimension: M, threshold: 2, degree: 3, mode: 'semi-honest', cohort: 4, corruption: 0 },
    startedAt,
    endedAt: startedAt + 500,
    outcome: epsilon > 0 ? 'completed' : 'aborted',
    code: epsilon > 0 ? null : 'ERR_TIMEOUT',
    reason: epsilon > 0 ? null : 'test',
    stage: epsilon > 0 ? 'done' : 'aborted',
    stages: {},
    included: epsilon > 0 ? [1, 2, 3, 4] : null,
    dp: {
      mechanism: 'skellam',
      targetVariance: 1e6,
      removable: true,
      minHonest: 2,
      scale: 1000,
      l2Sensitivity: 1010,
      l1Sensitivity: 8000,
      samplingRate: 1,
      delta: 1e-5,
      noise: epsilon > 0 ? { mechanism: 'skellam', releasedVariance: 1e6 } : null,
      epsilon,
      cumulativeEpsilon: cumulative,
      cumulativeRdp: [cumulative],
      cumulativeRounds: i + 1,
    },
  };
}

const OUT_DIR = join(ROOT, 'test-output', 'dashboard');
const M = 64;
const BITS = 16;
const COHORT = 4;
/** Long enough that the live round is looked at well before its deadline; the slowed round waits this long once. */
const STAGE_MS = 8000;

let server: SecAggServer;
let browser: Chromium | undefined;
let page: Page;
const pageErrors: string[] = [];

async function waitingCount(n: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if ((await server.status()).waiting >= n) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`fewer than ${n} clients waiting`);
}

/** One round of COHORT clients; `decide(i, stage)` is client i's unsafeBeforeSend. Resolves once it started. */
async function round(
  tag: string,
  decide: (i: number, stage: ReplyStage) => 'send' | 'silent' | 'disconnect' = () => 'send',
  signals: (AbortSignal | undefined)[] = [],
): Promise<{ id: number; done: Promise<unknown> }> {
  const clients = Array.from({ length: COHORT }, (_, i) =>
    nodeClient(server, `${tag}-${i}`, vector(tag.length * 100 + i, M, BITS), {
      unsafeBeforeSend: (stage) => decide(i, stage),
      ...(signals[i] ? { signal: signals[i] } : {}),
    }),
  );
  await waitingCount(COHORT);
  const id = await server.startRound();
  assert.ok(id !== undefined, 'the round started');
  // A cancelled client's participate() rejects (ERR_CANCELLED): that is the test's doing.
  return { id, done: Promise.all(clients.map((c) => c.done.catch(() => undefined))) };
}

const text = async (sel: string): Promise<string> => (await page.textContent(sel))?.trim() ?? '';
const pad = (n: number) => String(n).padStart(2, '0');
/** Local hh:mm:ss (this process and Chromium share the time zone). */
const hms = (ms: number) => {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
};

async function screenshot(t: { diagnostic(s: string): void }, name: string): Promise<void> {
  await mkdir(OUT_DIR, { recursive: true });
  const path = join(OUT_DIR, name);
  await page.screenshot({ path, fullPage: true });
  t.diagnostic(`screenshot: ${path}`);
}

/** The tick labels and positions a chart drew on its axes (the page mirrors the canvas text in data attributes). */
async function axis(chart: string, which: 'x' | 'y'): Promise<{ labels: string[]; splits: number[] }> {
  return page.$eval(
    `#${chart}`,
    (el, w) => ({
      labels: JSON.parse((el as HTMLElement).dataset[`${w}Ticks`] ?? '[]') as string[],
      splits: JSON.parse((el as HTMLElement).dataset[`${w}Splits`] ?? '[]') as number[],
    }),
    which,
  );
}

/** Nearest-rank percentile, computed here independently of the page. */
function nearestRank(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

describe('the dashboard', { timeout: 120_000 }, () => {
  before(async () => {
    server = await startServer({ autoStart: false, dimension: M, bits: BITS, stageTimeoutMs: STAGE_MS });
    browser = await launchChromium({ width: 1400, height: 1000 });
    page = browser.page;
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  test('uPlot is served from the installed package, and the page loads nothing from elsewhere', async () => {
    const html = await (await fetch(server.httpUrl)).text();
    const require = createRequire(import.meta.url);
    for (const [file, type] of [
      ['uPlot.iife.min.js', 'text/javascript; charset=utf-8'],
      ['uPlot.min.css', 'text/css; charset=utf-8'],
    ] as const) {
      const path = new RegExp(`(?:src|href)="(/assets/uplot-[0-9.]+/${file.replaceAll('.', '\\.')})"`).exec(html)?.[1];
      assert.ok(path, `the page references ${file}`);
      const res = await fetch(new URL(path, server.httpUrl));
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), type);
      assert.match(res.headers.get('cache-control') ?? '', /max-age=\d+/);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), readFileSync(require.resolve(`uplot/dist/${file}`)), `${file} is the package's file`);
    }
    assert.doesNotMatch(html, /(?:src|href)="(?:https?:)?\/\//, 'no external script or stylesheet');
    assert.equal((await fetch(new URL('/assets/uplot-0.0.0/uPlot.iife.min.js', server.httpUrl))).status, 404);
  });

  test('with an empty history: axes, no percentiles, "no rounds yet", no script error', async (t) => {
    await page.goto(server.httpUrl);
    await page.waitForFunction(() => document.getElementById('conn')?.textContent?.startsWith('updated'));
    assert.ok(await page.isVisible('#history-empty'));
    assert.equal(await page.locator('#history tr').count(), 0);
    assert.equal(await text('#p-count'), '0');
    assert.equal(await text('#p50'), '–');
    assert.match(await text('#idle'), /^No round running\. 0 client\(s\) waiting\.$/);
    for (const chart of ['chart-duration', 'chart-clients', 'chart-dropouts', 'chart-bytes']) {
      assert.equal(await page.locator(`#${chart} canvas`).count(), 1, `${chart} is drawn`);
      const x = await axis(chart, 'x');
      assert.ok(x.labels.length >= 2 && x.labels.every((l) => /^\d\d:\d\d(:\d\d)?$/.test(l)), `${chart}: time ticks ${x.labels}`);
    }
    await screenshot(t, 'dashboard-empty.png');
    assert.deepEqual(pageErrors, []);
  });

  test('completed, aborted, deadline-slowed and live rounds', async (t) => {
    const completed: number[] = [];
    for (const tag of ['ok-a', 'ok-b', 'ok-c']) {
      const r = await round(tag);
      await r.done;
      completed.push(r.id);
    }
    // Aborted at the share stage: two of four leave instead of sending their shares.
    const aborted = await round('abort', (i, stage) => (i < 2 && stage === 'share' ? 'disconnect' : 'send'));
    await aborted.done;
    // Slowed: client 0 stays connected and never sends its masked input; the stage waits out its deadline.
    const slowed = await round('slow', (i, stage) => (i === 0 && stage === 'masked' ? 'silent' : 'send'));
    await slowed.done;

    // Live: client 0 again withholds its masked input; the page shows it pending.
    const cancel = new AbortController();
    const live = await round('live', (i, stage) => (i === 0 && stage === 'masked' ? 'silent' : 'send'), [cancel.signal]);
    await page.waitForFunction(
      (id) =>
        document.getElementById('live-round')?.textContent === `#${id}` &&
        document.getElementById('live-stage')?.textContent === 'masked' &&
        document.getElementById('live-answered')?.textContent === '3',
      live.id,
      { timeout: STAGE_MS / 2 },
    );
    assert.equal(await text('#live-round'), `#${live.id}`);
    assert.equal(await text('#live-pending'), '1', 'one client is expected and has not answered');
    assert.equal(await text('#live-expected'), String(COHORT));
    assert.equal(await text('#live-quit'), '0');
    assert.deepEqual((await server.status()).round?.progress, { expected: COHORT, answered: 3, quit: 0, pending: 1 });
    const left = /^(\d+\.\d) s$/.exec(await text('#live-time-left'));
    assert.ok(left && Number(left[1]) <= STAGE_MS / 1000, 'time left in the stage, in seconds');
    assert.equal(await text('#stage-clients-share'), `${COHORT} / ${COHORT}`);
    assert.equal(await page.locator('#history tr[data-outcome="running"]').count(), 1, 'the running round is in the table');
    await screenshot(t, 'dashboard-live.png');
    // The pending client leaves: the stage closes because every expected client answered or left, not by its deadline.
    cancel.abort();
    await live.done;
    completed.push(slowed.id, live.id);

    await page.waitForFunction(
      (n) => document.getElementById('totals-completed')?.textContent === String(n) && !document.getElementById('live-stage'),
      completed.length,
    );
    await page.waitForFunction(() => document.querySelectorAll('#history tr[data-outcome="running"]').length === 0);
    const records = (await (await fetch(new URL('/api/rounds', server.httpUrl))).json()) as RoundRecord[];
    assert.deepEqual(
      records.map((r) => r.id),
      [live.id, slowed.id, aborted.id, ...completed.slice(0, 3).reverse()],
    );
    const byId = new Map(records.map((r) => [r.id, r]));

    // The abort reason counts what its stage record counts (it once said 0 here while 2 had shared).
    const ab = byId.get(aborted.id)!;
    assert.equal(ab.outcome, 'aborted');
    assert.equal(ab.stages.share?.clients, 2, 'two clients shared keys');
    assert.equal(ab.reason, `clients that shared keys: ${ab.stages.share?.clients}, need at least ${ab.params.threshold + 1}`);
    assert.equal(await text(`#history tr[data-round="${aborted.id}"] td.reason`), ab.reason);

    // Dropouts per stage, as the test caused them.
    const dropouts = await page.$$eval('#history tr', (trs) =>
      trs.map((tr) => ({
        round: Number((tr as HTMLElement).dataset.round),
        cell: tr.querySelector('td.dropouts')?.textContent,
        lost: Object.fromEntries(
          Array.from(tr.querySelectorAll('td.dropouts [data-stage]'), (s) => [(s as HTMLElement).dataset.stage, Number((s as HTMLElement).dataset.dropped)]),
        ),
      })),
    );
    const want = new Map<number, Record<string, number>>([
      ...completed.slice(0, 3).map((id) => [id, {}] as const),
      [aborted.id, { share: 2 }],
      [slowed.id, { masked: 1 }],
      [live.id, { masked: 1 }],
    ]);
    for (const d of dropouts) {
      assert.deepEqual(d.lost, want.get(d.round), `round ${d.round}: clients lost per stage`);
      if (Object.keys(d.lost ?? {}).length === 0) assert.equal(d.cell, 'none');
    }

    // The deadline flag: on the slowed round only (the live round's stage closed when its client left).
    const flagged = await page.$$eval('#history tr', (trs) =>
      trs.filter((tr) => (tr as HTMLElement).dataset.deadline).map((tr) => [Number((tr as HTMLElement).dataset.round), (tr as HTMLElement).dataset.deadline]),
    );
    assert.deepEqual(flagged, [[slowed.id, 'masked']]);
    assert.deepEqual(
      records.filter((r) => Object.values(r.stages).some((s) => s?.deadline)).map((r) => r.id),
      [slowed.id],
      'the records agree',
    );
    assert.match(await text(`#history tr[data-round="${slowed.id}"] td.deadline`), /masked/);

    // Start times in the table.
    for (const r of records) assert.equal(await text(`#history tr[data-round="${r.id}"] td.started`), hms(r.startedAt), `round ${r.id} start time`);

    // Percentiles of the completed rounds' durations, against the records.
    const durations = records.filter((r) => r.outcome === 'completed').map((r) => (r.endedAt! - r.startedAt) / 1000);
    assert.equal(await text('#p-count'), String(durations.length));
    for (const p of [50, 90, 99]) {
      const shown = await page.$eval(`#p${p}`, (el) => ({ seconds: Number((el as HTMLElement).dataset.seconds), text: el.textContent }));
      assert.equal(shown.seconds, nearestRank(durations, p), `p${p}`);
      assert.equal(shown.text, `${nearestRank(durations, p).toFixed(2)} s`);
    }

    // Axes: time ticks within the rounds' start times; units on every y axis; duration on a log scale spanning the fastest and the slowest round.
    const starts = records.map((r) => r.startedAt / 1000);
    for (const chart of ['chart-duration', 'chart-clients', 'chart-dropouts', 'chart-bytes']) {
      const x = await axis(chart, 'x');
      assert.ok(x.labels.length >= 2, `${chart}: x ticks`);
      assert.ok(
        x.labels.every((l) => /^\d\d:\d\d(:\d\d)?$/.test(l)),
        `${chart}: time labels ${x.labels}`,
      );
      assert.ok(
        x.splits.every((s) => s >= Math.min(...starts) - 60 && s <= Math.max(...starts) + 60),
        `${chart}: ticks around the rounds' start times`,
      );
    }
    const y = await axis('chart-duration', 'y');
    assert.ok(
      y.labels.every((l) => / s$/.test(l)),
      `duration ticks in seconds: ${y.labels}`,
    );
    assert.equal(await page.evaluate("charts['chart-duration'].u.scales.y.distr"), 3, 'log scale');
    assert.ok(Math.min(...y.splits) <= Math.min(...durations) && Math.max(...y.splits) >= Math.max(...durations) / 10, `y ticks ${y.splits} span ${durations}`);
    assert.ok((await axis('chart-clients', 'y')).labels.every((l) => /^\d+$/.test(l)));
    assert.ok((await axis('chart-bytes', 'y')).labels.every((l) => /^\d+(\.\d)? (B|kB|MB)$/.test(l)));
    const legend = await page.$$eval('#chart-duration .u-legend .u-label', (ls) => ls.map((l) => l.textContent));
    assert.ok(
      ['completed', 'aborted', 'slowed by a deadline'].every((s) => legend.includes(s)),
      `legend: ${legend}`,
    );
    const dropLegend = await page.$$eval('#chart-dropouts .u-legend .u-label', (ls) => ls.map((l) => l.textContent));
    assert.ok(
      ['share', 'masked'].every((s) => dropLegend.includes(s)),
      `dropouts legend: ${dropLegend}`,
    );

    await screenshot(t, 'dashboard.png');
    await mkdir(OUT_DIR, { recursive: true });
    const chartPath = join(OUT_DIR, 'dashboard-duration-chart.png');
    await page.locator('#chart-duration').screenshot({ path: chartPath });
    t.diagnostic(`screenshot: ${chartPath}`);
    assert.deepEqual(pageErrors, []);
  });
  test('a DP service: ε per round and cumulative in the history table and on the ε chart, the budget', async (t) => {
    assert.ok(await page.locator('#dp-section').isHidden(), 'no privacy section without DP');
    const store = memoryStore();
    const now = Date.now();
    const eps = [0.25, 0, 0.3];
    let total = 0;
    for (const [i, e] of eps.entries()) {
      total += e;
      const r = { ...dpRecord(i, now - 60_000 + i * 10_000, e, total) };
      const id = await store.begin(r);
      await store.save({ ...r, id });
    }
    const dpServer = await startServer({ autoStart: false, dimension: M, bits: 24, store, dp: { noiseMultiplier: 1, l2Clip: 1, budget: { epsilon: 0.6 } } });
    try {
      await page.goto(dpServer.httpUrl);
      await page.waitForFunction(() => document.querySelectorAll('#history tr').length === 3);
      assert.ok(await page.locator('#dp-section').isVisible());
      const cells = await page.$$eval('#history tr', (rows) =>
        rows.map((r) => [r.querySelector('.eps-round')?.textContent ?? '', r.querySelector('.eps-total')?.textContent ?? '']),
      );
      // newest first
      assert.deepEqual(cells, [
        ['0.3', '0.55'],
        ['0', '0.25'],
        ['0.25', '0.25'],
      ]);
      assert.equal(await page.locator('#chart-epsilon canvas').count(), 1, 'the ε chart is drawn');
      assert.ok(
        (await axis('chart-epsilon', 'x')).labels.every((l) => /^\d\d:\d\d(:\d\d)?$/.test(l)),
        'on the time axis',
      );
      assert.match(await text('#dp-budget'), /^0\.6 at δ = 0\.00001$/);
      const legend = await page.$$eval('#chart-epsilon .u-legend .u-label', (els) => els.map((e) => e.textContent));
      assert.ok(
        ['ε of the round', 'ε cumulative', 'budget'].every((l) => legend.includes(l)),
        `legend ${legend}`,
      );
      await screenshot(t, 'dashboard-dp.png');
      assert.deepEqual(pageErrors, []);
    } finally {
      await dpServer.close();
    }
  });
});
