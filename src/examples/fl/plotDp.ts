/**
 * A hand-written SVG of the DP comparison (no plotting library): final accuracy against ε (log
 * scale) for distributed and central DP, with plain FedAvg and chance as lines; and accuracy per
 * round for every run.
 */
import type { DpFlResult } from './dp.js';

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** One colour per noise multiplier in the per-round panel (none is the left panel's blue or orange). */
const RAMP = ['#1b9e77', '#7570b3', '#e7298a', '#a6761d', '#66a61e', '#17becf', '#8c564b'];
const DIST = '#2c7fb8';
const CENT = '#d95f02';

function linearTicks(lo: number, hi: number, count = 5): number[] {
  const span = hi - lo || 1;
  const mag = 10 ** Math.floor(Math.log10(span / count));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => span / s <= count) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** 1, 2, 5 × powers of ten inside [lo, hi]. */
function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
    for (const k of [1, 2, 5]) {
      const v = k * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(Number(v.toPrecision(6)));
    }
  return out;
}

interface Frame {
  x0: number;
  y0: number;
  w: number;
  h: number;
}

function axes(f: Frame, title: string, xLabel: string, yLabel: string, xt: Array<[number, string]>, yt: Array<[number, string]>): string[] {
  const p: string[] = [];
  p.push(`<text x="${f.x0 + f.w / 2}" y="${f.y0 - 12}" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);
  p.push(`<rect x="${f.x0}" y="${f.y0}" width="${f.w}" height="${f.h}" fill="none" stroke="#888"/>`);
  for (const [y, label] of yt) {
    p.push(`<line x1="${f.x0}" x2="${f.x0 + f.w}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#e4e4e4"/>`);
    p.push(`<text x="${f.x0 - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end" font-size="11">${esc(label)}</text>`);
  }
  for (const [x, label] of xt) {
    p.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${f.y0}" y2="${f.y0 + f.h}" stroke="#f0f0f0"/>`);
    p.push(`<text x="${x.toFixed(1)}" y="${f.y0 + f.h + 17}" text-anchor="middle" font-size="11">${esc(label)}</text>`);
  }
  p.push(`<text x="${f.x0 + f.w / 2}" y="${f.y0 + f.h + 36}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>`);
  p.push(`<text transform="translate(${f.x0 - 44} ${f.y0 + f.h / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(yLabel)}</text>`);
  return p;
}

function path(points: Array<[number, number]>, colour: string, width: number, dash = ''): string {
  const d = points.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${x.toFixed(1)},${y.toFixed(1)}`).join(' ');
  return `<path d="${d}" fill="none" stroke="${colour}" stroke-width="${width}"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`;
}

export function renderDpSvg(result: DpFlResult): string {
  const W = 1160;
  const H = 550;
  const acc = (m: { accuracy: number }) => 100 * m.accuracy;
  const chance = 100 / result.data.classes;
  const plainAcc = acc(result.plain.final);
  const all = [
    ...result.distributed.map((d) => acc(d.final)),
    ...result.central.map((c) => acc(c.final)),
    plainAcc,
    chance,
    ...result.distributed.flatMap((d) => d.rounds.map((r) => acc(r.metrics))),
    ...result.central.flatMap((d) => d.rounds.map((r) => acc(r.metrics))),
    ...result.plain.rounds.map((r) => acc(r.metrics)),
    acc(result.initial),
  ];
  const yLo = Math.max(0, Math.floor(Math.min(...all) / 10) * 10);
  const yHi = Math.min(100, Math.ceil((Math.max(...all) + 3) / 10) * 10); // room above the plain-FedAvg line
  const body: string[] = [];

  // Left: final accuracy vs ε.
  const L: Frame = { x0: 80, y0: 90, w: 470, h: 320 };
  const eps = [...result.distributed.map((d) => d.epsilon), ...result.central.map((c) => c.epsilon)].filter((e) => Number.isFinite(e) && e > 0);
  const eLo = Math.min(...eps) / 1.3;
  const eHi = Math.max(...eps) * 1.3;
  const ex = (e: number) => L.x0 + ((Math.log(e) - Math.log(eLo)) / (Math.log(eHi) - Math.log(eLo))) * L.w;
  const ly = (v: number) => L.y0 + L.h - ((v - yLo) / (yHi - yLo)) * L.h;
  body.push(
    ...axes(
      L,
      'final test accuracy vs ε',
      `ε after ${result.options.rounds} rounds (δ = ${result.delta}; log scale)`,
      'accuracy (%)',
      logTicks(eLo, eHi).map((t) => [ex(t), String(t)]),
      linearTicks(yLo, yHi).map((t) => [ly(t), t.toFixed(0)]),
    ),
  );
  body.push(
    path(
      [
        [L.x0, ly(plainAcc)],
        [L.x0 + L.w, ly(plainAcc)],
      ],
      '#333',
      1.5,
      '6 4',
    ),
  );
  body.push(
    `<text x="${L.x0 + L.w - 6}" y="${(ly(plainAcc) - 6).toFixed(1)}" text-anchor="end" font-size="11" fill="#333">plain FedAvg (ε = ∞) ${plainAcc.toFixed(1)}%</text>`,
  );
  body.push(
    path(
      [
        [L.x0, ly(chance)],
        [L.x0 + L.w, ly(chance)],
      ],
      '#999',
      1.5,
      '2 3',
    ),
  );
  body.push(`<text x="${L.x0 + 6}" y="${(ly(chance) - 6).toFixed(1)}" font-size="11" fill="#777">chance ${chance.toFixed(1)}%</text>`);
  const dPts = result.distributed.map((d) => [ex(d.epsilon), ly(acc(d.final))] as [number, number]);
  const cPts = result.central.map((c) => [ex(c.epsilon), ly(acc(c.final))] as [number, number]);
  body.push(path(cPts, CENT, 2, '7 4'));
  body.push(path(dPts, DIST, 2.5));
  for (const [x, y] of cPts) body.push(`<rect x="${(x - 4).toFixed(1)}" y="${(y - 4).toFixed(1)}" width="8" height="8" fill="${CENT}"/>`);
  for (const [k, [x, y]] of dPts.entries()) {
    body.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="5" fill="${DIST}"/>`);
    body.push(
      `<text x="${x.toFixed(1)}" y="${(y + 19).toFixed(1)}" text-anchor="middle" font-size="11" fill="${DIST}">z=${result.distributed[k]!.noiseMultiplier}</text>`,
    );
  }
  const legendL = [
    { label: 'distributed DP (client Skellam noise, SecAgg, dropouts)', colour: DIST, dash: '', w: 2.5 },
    { label: 'central DP (server Gaussian noise, same ε)', colour: CENT, dash: '7 4', w: 2 },
  ];
  legendL.forEach((s, i) => {
    const y = L.y0 + L.h + 62 + 18 * i;
    body.push(
      path(
        [
          [L.x0, y],
          [L.x0 + 36, y],
        ],
        s.colour,
        s.w,
        s.dash,
      ),
    );
    body.push(`<text x="${L.x0 + 42}" y="${y + 4}" font-size="12">${esc(s.label)}</text>`);
  });

  // Right: accuracy per round, one colour per z (solid: distributed, dashed: central).
  const R: Frame = { x0: 660, y0: 90, w: 470, h: 320 };
  const n = result.options.rounds;
  const rx = (r: number) => R.x0 + (r / n) * R.w;
  const ry = ly; // same y scale and frame height
  body.push(
    ...axes(
      R,
      'test accuracy per round',
      'round',
      'accuracy (%)',
      linearTicks(0, n, Math.min(n, 10))
        .filter((t) => Number.isInteger(t))
        .map((t) => [rx(t), String(t)]),
      linearTicks(yLo, yHi).map((t) => [ry(t), t.toFixed(0)]),
    ),
  );
  const curve = (rounds: ReadonlyArray<{ metrics: { accuracy: number } }>) =>
    [[rx(0), ry(acc(result.initial))] as [number, number]].concat(rounds.map((r, i) => [rx(i + 1), ry(acc(r.metrics))] as [number, number]));
  body.push(path(curve(result.plain.rounds), '#333', 2.5));
  result.central.forEach((c, k) => body.push(path(curve(c.rounds), RAMP[k % RAMP.length]!, 1.5, '6 4')));
  result.distributed.forEach((d, k) => body.push(path(curve(d.rounds), RAMP[k % RAMP.length]!, 2.5)));
  const legendR = [
    { label: 'plain FedAvg', colour: '#333', dash: '' },
    ...result.distributed.map((d, k) => ({ label: `z=${d.noiseMultiplier} (ε ${d.epsilon.toPrecision(3)})`, colour: RAMP[k % RAMP.length]!, dash: '' })),
  ];
  legendR.forEach((s, i) => {
    const x = R.x0 + (i % 3) * 160;
    const y = R.y0 + R.h + 62 + 18 * Math.floor(i / 3);
    body.push(
      path(
        [
          [x, y],
          [x + 30, y],
        ],
        s.colour,
        2.5,
        s.dash,
      ),
    );
    body.push(`<text x="${x + 36}" y="${y + 4}" font-size="12">${esc(s.label)}</text>`);
  });
  const rowsR = Math.ceil(legendR.length / 3);
  body.push(
    `<text x="${R.x0}" y="${R.y0 + R.h + 62 + 18 * rowsR + 4}" font-size="12" fill="#444">solid: distributed DP; dashed, same colour: central DP at the same ε</text>`,
  );

  const o = result.options;
  const task = result.data.task === 'spam' ? 'spam filtering (SpamAssassin, one client per mailbox)' : 'synthetic non-IID data';
  body.unshift(
    `<text x="${W / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold">DP-FedAvg: distributed DP inside secure aggregation vs central DP vs plain FedAvg</text>`,
    `<text x="${W / 2}" y="48" text-anchor="middle" font-size="12" fill="#444">${esc(
      `${task}; ${result.population} clients, all in every round (sampling rate 1), ${Math.round(100 * o.dropoutRate)}% dropouts per round, protocol threshold ${result.threshold}; ` +
        `${result.parameters} parameters, L2 clip ${o.l2Clip}, ring 2^${o.bits}`,
    )}</text>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${body.join('\n')}\n</svg>\n`;
}
